// Batched generation of G samples per prompt with the model's KV cache. Rows are prompt-major:
// row = prompt * group_size + sample. Prompts of different lengths are left-padded; positions
// start at 0 on each prompt's first real token, so padding never changes a row's result.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "grpo/rollout/sampler.h"

namespace grpo::model {
class Transformer;
}

namespace grpo::rollout {

enum class FinishReason { kStop, kLength };
const char* to_string(FinishReason r);

struct RolloutBatch {
  int64_t group_size = 1;
  int64_t prompt_width = 0;    // P: padded prompt length
  at::Tensor tokens;           // [rows, P + R] int64: left-padded prompt, response, pad
  at::Tensor attention_mask;   // [rows, P + R] bool: real tokens (prompt and response)
  at::Tensor response_mask;    // [rows, R] bool: generated tokens, EOS included
  at::Tensor sampling_logprobs;// [rows, R] fp32 (0 where masked)
  std::vector<FinishReason> finish;
  std::vector<std::vector<int64_t>> responses;  // generated ids per row, EOS excluded
  int64_t rows() const { return static_cast<int64_t>(finish.size()); }
};

/// Where the randomness of a rollout comes from: token t of sample g of prompt p draws
/// uniform(hash(seed, stream, step, prompt_keys[p], g, t)).
struct RolloutKey {
  uint64_t seed = 0;
  uint64_t stream = 0;
  uint64_t step = 0;
};

struct GenerateRequest {
  std::vector<std::vector<int64_t>> prompts;  // token ids
  std::vector<uint64_t> prompt_keys;          // stable id of each prompt (e.g. dataset index)
  int64_t group_size = 1;
  SamplingParams sampling;
  RolloutKey key;
  int64_t eos_id = 1;
  int64_t pad_id = 0;
  /// Called (on the generating thread) as soon as row `row` is complete -- at its EOS, or at the
  /// length limit -- with its response ids; e.g. to start scoring it while others generate.
  std::function<void(int64_t row, const std::vector<int64_t>& response)> on_finish;
};

RolloutBatch generate(model::Transformer& model, const GenerateRequest& request);

/// Whole groups taken from several batches (e.g. the rounds of DAPO's dynamic sampling) as one
/// batch: groups[k] = (batch index, group index), in output order. Prompts are re-padded on the
/// left to the widest prompt, responses on the right to the longest response width.
RolloutBatch merge_groups(const std::vector<const RolloutBatch*>& batches,
                          const std::vector<std::pair<int64_t, int64_t>>& groups, int64_t pad_id);

}  // namespace grpo::rollout
