// What both engines share: checking a request, the result's tensors, each token's uniform and the
// bookkeeping of a generated token (EOS, stop rule, length limit, on_finish).
#pragma once

#include "grpo/rollout/generate.h"

namespace grpo::rollout::detail {

/// Checks the request against the model (prompt + max_new_tokens within its positions) and
/// returns the result with left-padded prompts and no response yet.
RolloutBatch start_batch(const model::Transformer& model, const GenerateRequest& req, bool allow_empty);

/// The uniform of token t of output row `row`.
float token_uniform(const GenerateRequest& req, int64_t row, int64_t t);

/// Records token t of `row`; true when the row is complete (EOS, the stop rule, or the length
/// limit), after reporting it to on_finish.
/// `version`: the weights version that sampled it (GenerateRequest::between_steps).
bool record_token(RolloutBatch& out, const GenerateRequest& req, int64_t row, int64_t t, int64_t token,
                  float logprob, int64_t version = 0);

/// Records observation token t of `row` (a multi-turn episode): a real token of the sequence with
/// no loss and no log-prob. False, with the row finished (kLength, reported to on_finish), when t
/// is beyond max_new_tokens.
bool record_observation(RolloutBatch& out, const GenerateRequest& req, int64_t row, int64_t t, int64_t token);

/// Ends `row` at the environment's word (kStop, or kLength when `truncated`), reported to on_finish.
void finish_episode(RolloutBatch& out, const GenerateRequest& req, int64_t row, bool truncated);

}  // namespace grpo::rollout::detail
