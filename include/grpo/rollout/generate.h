// Generation of G samples per prompt: the rollout engine. Rows of the result are prompt-major:
// row = prompt * group_size + sample, prompts left-padded, positions starting at 0 on each
// prompt's first real token.
//
// generate() schedules sequences continuously (vLLM-style): up to sampling.max_running sequences
// decode together, one token per engine step; a sequence that ends frees its slot and its KV
// blocks at once, and the next waiting one is admitted at the next step. Prompts are prefilled in
// chunks of sampling.prefill_chunk_tokens, in their own forward beside the decode forward, once
// per group: the G samples share the prompt's blocks of the paged KV cache
// (model::PagedKVCache). When the pool (sampling.kv_cache_bytes) is full, the latest admitted
// sequences are preempted and recomputed later (prefill of prompt + tokens so far). Token t of
// sample g of prompt p draws from uniform(hash(seed, stream, step, prompt_keys[p], g, t)), so
// no token depends on scheduling, preemption or the other sequences in a batch (in exact
// arithmetic; in floating point the batch shapes change reductions at rounding level).
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
  at::Tensor response_mask;    // [rows, R] bool: sampled tokens, EOS included (not a multi-turn
                               // episode's observation tokens, which attention_mask marks real)
  at::Tensor sampling_logprobs;// [rows, R] fp32 (0 where masked)
  at::Tensor token_versions;   // [rows, R] int64: the weights version that sampled each token (0 where masked)
  /// GenerateRequest::record_routing: [rows, P + R, moe layers, top_k] int16, the experts each
  /// token was routed to when the rollout computed it, in `tokens`' columns (-1: padding, and each
  /// row's last token, which no forward reads); else undefined.
  at::Tensor routing;
  std::vector<FinishReason> finish;
  std::vector<std::vector<int64_t>> responses;  // ids per row after the prompt (observations included), EOS excluded
  int64_t rows() const { return static_cast<int64_t>(finish.size()); }

  struct Stats {
    int64_t steps = 0;            // engine steps (a prefill and/or a decode forward each)
    int64_t forwards = 0;         // model forwards that computed tokens (not lock-step idle ones)
    int64_t prefill_tokens = 0;   // tokens computed by prefill forwards (recomputation included)
    int64_t decode_tokens = 0;    // tokens computed by decode forwards
    int64_t preemptions = 0;      // sequences preempted (and recomputed later)
    double peak_kv_bytes = 0;     // most KV cache bytes in use at once (blocks held)
    double kv_bytes_allocated = 0;// what the pool's tensors held at the end
  } stats;
};

/// Where the randomness of a rollout comes from: token t of sample g of prompt p draws
/// uniform(hash(seed, stream, step, prompt_keys[p], g, t)).
struct RolloutKey {
  uint64_t seed = 0;
  uint64_t stream = 0;
  uint64_t step = 0;
};

/// Multi-turn rollouts (env/environment.h): the engine hands a row's finished turn to its
/// environment and appends the observation's ids when they come back. Called on the generating
/// thread; submit() may start work elsewhere, which ready() collects.
class TurnHandler {
 public:
  virtual ~TurnHandler() = default;
  /// Asked after each sampled token that does not end the row: does `response` (the row's ids after
  /// its prompt, observations included, EOS excluded) end a turn now?
  virtual bool ends_turn(int64_t row, const std::vector<int64_t>& response) = 0;
  /// The row's turn is over: start its environment's step.
  virtual void submit(int64_t row, const std::vector<int64_t>& response) = 0;
  struct Reply {
    int64_t row = 0;
    std::vector<int64_t> ids;  // the observation, appended to the row as it is
    bool done = false;         // the episode ends after `ids` (FinishReason::kStop)
    bool truncated = false;    // ... cut short by a limit, e.g. env.max_turns (FinishReason::kLength)
  };
  /// The replies ready now; with `wait`, at least one (blocking: the engine has nothing else to run).
  virtual std::vector<Reply> ready(bool wait) = 0;
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
  /// Optional stop rule (e.g. stop strings), asked after each generated token that is not EOS;
  /// true ends the row there (FinishReason::kStop), its last token included in the response.
  std::function<bool(int64_t row, const std::vector<int64_t>& response)> stop;
  /// Optional, generate() only: called (on the generating thread) before every engine step. It may
  /// change the model's weights in place -- an in-flight update, the keys and values already cached
  /// staying as they are (partial rollout) -- and returns the version of the weights the step
  /// samples with, recorded for every token in RolloutBatch::token_versions (without it: 0).
  std::function<int64_t()> between_steps;
  /// generate() only, an MoE model: record every token's experts (RolloutBatch::routing), for the
  /// training forward to replay them (routing replay, R3; moe.routing_replay).
  bool record_routing = false;
  /// generate() only: multi-turn episodes. A row whose turn ends waits for its observation outside
  /// the running batch, keeping its KV cache (dropped and recomputed if the pool runs short); the
  /// observation's tokens then enter the response with response_mask false and log-prob 0, and count
  /// against max_new_tokens like sampled ones. Token t of a row still draws uniform(key, row, t).
  TurnHandler* turns = nullptr;
};

/// The rollout engine (above). Expert parallel: the ranks of model.lockstep_group() keep stepping
/// together (idle forwards) while any of them has work.
RolloutBatch generate(model::Transformer& model, const GenerateRequest& request);

/// The previous lock-step engine, kept deliberately as the reference of tests and benchmarks:
/// chunks of sampling.max_running rows (0: all), each prefilled G times per prompt into a static
/// cache of (prompt + max_new_tokens) per row and decoded until its longest row ends; finished
/// rows only shrink the batch. Same keys, same tokens (exact arithmetic).
RolloutBatch generate_lockstep(model::Transformer& model, const GenerateRequest& request);

/// Whole groups taken from several batches (e.g. the rounds of DAPO's dynamic sampling) as one
/// batch: groups[k] = (batch index, group index), in output order. Prompts are re-padded on the
/// left to the widest prompt, responses on the right to the longest response width.
RolloutBatch merge_groups(const std::vector<const RolloutBatch*>& batches,
                          const std::vector<std::pair<int64_t, int64_t>>& groups, int64_t pad_id);

}  // namespace grpo::rollout
