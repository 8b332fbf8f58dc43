// A GRPO step's sequences as the training forwards see them, and the micro-batches (gradient
// accumulation inside a mini-batch) that share a forward/backward. Rows are sorted by length and
// packed into a token budget, and each forward is only as wide as its own rows need (rows packed
// to the left, as long as the longest prompt + response among them), so a short response is not
// padded to the step's longest one (with R1-Zero's one 65k-token
// sequence per micro-batch, each row costs its own length). Which rows go together changes no
// result beyond float rounding: the loss weights come from the whole mini-batch.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "grpo/core/profile.h"
#include "grpo/model/logprob.h"

namespace grpo::rollout {
struct RolloutBatch;
}
namespace grpo::model {
class Transformer;
}

namespace grpo::train {

/// Packs `rows` (ids into prompt_len / response_len: real prompt and response tokens of each row)
/// into micro-batches: rows sorted by length (prompt + response), longest first (equal lengths
/// keep their order), then filled greedily while (rows in the micro-batch) x (its longest row's
/// length) stays within `token_budget`; a row longer than the budget goes alone.
/// Every row lands in exactly one micro-batch; the result depends only on the arguments.
std::vector<std::vector<int64_t>> pack_micro_batches(const std::vector<int64_t>& rows,
                                                     const std::vector<int64_t>& prompt_len,
                                                     const std::vector<int64_t>& response_len,
                                                     int64_t token_budget);

/// The rollout's rows cut to the longest response (on the CPU): prompts left-padded, ending at
/// column P; responses from column P, R wide.
struct ResponseBatch {
  at::Tensor tokens;     // [N, P + R]
  at::Tensor resp_mask;  // [N, R] float
  at::Tensor routing;    // [N, P + R, moe layers, top_k] int16: the rollout's experts (routing replay), or undefined
  int64_t P = 0, R = 0;
  std::vector<int64_t> prompt_len, resp_len;  // real tokens of each row

  static ResponseBatch of(const rollout::RolloutBatch& batch);
  /// pack_micro_batches of `rows` (int64 ids), as tensors of ids.
  std::vector<at::Tensor> micro_batches(const at::Tensor& rows, int64_t token_budget) const;
  /// The least work of a forward over `rows` (real tokens only, logits of the response tokens;
  /// the step roofline, core/profile.h).
  core::Work forward_work(const model::Transformer& m, const at::Tensor& rows) const;
};

/// Log-probs (and entropy) [rows, R] of the response tokens of `rows` under `m` (on its device;
/// results on the CPU, differentiable), 0 beyond each row's response. One forward as wide as the
/// longest of these rows, each packed to the left (prompt, response, padding): padding only ends
/// rows, so attention is plain causal, without a mask. No rows: a forward of zero rows (expert
/// parallel's idle micro-batches take part in the collectives). `keep_logits_bytes`: LogProbOptions'.
model::TokenLogProbs response_logprobs(model::Transformer& m, const ResponseBatch& s, const at::Tensor& rows,
                                       bool with_entropy = true, double keep_logits_bytes = 0);

}  // namespace grpo::train
