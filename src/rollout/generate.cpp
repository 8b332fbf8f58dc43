// The lock-step reference engine (generate_lockstep) and what both engines share. Per chunk of
// rows: one prefill over the left-padded prompts, then one decode step per token for all rows
// still running (finished rows are dropped from the batch and the KV cache). The model and its
// cache may be on a GPU; the batch being built (tokens, masks, sampled log-probs) stays on the
// CPU, and each step moves one token per row across.
#include "grpo/rollout/generate.h"

#include "batch_builder.h"

#include <ATen/ATen.h>

#include "grpo/core/error.h"
#include "grpo/core/rng.h"
#include "grpo/dist/comm.h"
#include "grpo/model/transformer.h"

namespace grpo::rollout {

const char* to_string(FinishReason r) { return r == FinishReason::kStop ? "stop" : "length"; }

namespace detail {

RolloutBatch start_batch(const model::Transformer& model, const GenerateRequest& req, bool allow_empty) {
  const int64_t G = req.group_size, NP = static_cast<int64_t>(req.prompts.size());
  GRPO_CHECK(G >= 1 && (NP >= 1 || allow_empty), "generate: need at least one prompt and one sample per prompt");
  GRPO_CHECK(req.prompt_keys.size() == req.prompts.size(), "generate: one key per prompt needed");
  const int64_t N = NP * G, R = req.sampling.max_new_tokens;
  int64_t P = 0;
  for (auto& p : req.prompts) {
    GRPO_CHECK(!p.empty(), "generate: empty prompt");
    P = std::max<int64_t>(P, p.size());
  }
  GRPO_CHECK(P + R <= model.config().max_position_embeddings,
             "prompt ({} tokens) + max_new_tokens ({}) exceeds model.max_position_embeddings ({})",
             P, R, model.config().max_position_embeddings);

  // left-padded prompts, replicated G times
  std::vector<int64_t> ids(N * P, req.pad_id);
  std::vector<uint8_t> valid(N * P, 0);
  for (int64_t p = 0; p < NP; ++p) {
    const auto& pr = req.prompts[p];
    int64_t off = P - static_cast<int64_t>(pr.size());
    for (int64_t g = 0; g < G; ++g)
      for (size_t t = 0; t < pr.size(); ++t) {
        ids[(p * G + g) * P + off + t] = pr[t];
        valid[(p * G + g) * P + off + t] = 1;
      }
  }
  RolloutBatch out;
  out.group_size = G;
  out.prompt_width = P;
  out.tokens = at::full({N, P + R}, req.pad_id, at::kLong);
  out.tokens.narrow(1, 0, P).copy_(at::from_blob(ids.data(), {N, P}, at::kLong));
  out.attention_mask = at::zeros({N, P + R}, at::kBool);
  out.attention_mask.narrow(1, 0, P).copy_(at::from_blob(valid.data(), {N, P}, at::kByte).to(at::kBool));
  out.response_mask = at::zeros({N, R}, at::kBool);
  out.sampling_logprobs = at::zeros({N, R}, at::kFloat);
  out.token_versions = at::zeros({N, R}, at::kLong);
  out.finish.assign(N, FinishReason::kLength);
  out.responses.assign(N, {});
  return out;
}

float token_uniform(const GenerateRequest& req, int64_t row, int64_t t) {
  const int64_t G = req.group_size;
  return static_cast<float>(core::uniform01(core::hash_key(
      {req.key.seed, req.key.stream, req.key.step, req.prompt_keys[size_t(row / G)], uint64_t(row % G), uint64_t(t)})));
}

bool record_token(RolloutBatch& out, const GenerateRequest& req, int64_t row, int64_t t, int64_t token,
                  float logprob, int64_t version) {
  const int64_t P = out.prompt_width;
  if (version != 0) out.token_versions.accessor<int64_t, 2>()[row][t] = version;
  out.tokens.accessor<int64_t, 2>()[row][P + t] = token;
  out.attention_mask.accessor<bool, 2>()[row][P + t] = true;
  out.response_mask.accessor<bool, 2>()[row][t] = true;
  out.sampling_logprobs.accessor<float, 2>()[row][t] = logprob;
  auto& response = out.responses[size_t(row)];
  if (token == req.eos_id) {
    out.finish[size_t(row)] = FinishReason::kStop;
  } else {
    response.push_back(token);
    if (req.stop && req.stop(row, response))
      out.finish[size_t(row)] = FinishReason::kStop;
    else if (t + 1 < req.sampling.max_new_tokens)
      return false;
  }
  if (req.on_finish) req.on_finish(row, response);
  return true;
}

bool record_observation(RolloutBatch& out, const GenerateRequest& req, int64_t row, int64_t t, int64_t token) {
  auto& response = out.responses[size_t(row)];
  if (t >= req.sampling.max_new_tokens) {
    out.finish[size_t(row)] = FinishReason::kLength;
    if (req.on_finish) req.on_finish(row, response);
    return false;
  }
  out.tokens.accessor<int64_t, 2>()[row][out.prompt_width + t] = token;
  out.attention_mask.accessor<bool, 2>()[row][out.prompt_width + t] = true;
  response.push_back(token);
  return true;
}

void finish_episode(RolloutBatch& out, const GenerateRequest& req, int64_t row, bool truncated) {
  out.finish[size_t(row)] = truncated ? FinishReason::kLength : FinishReason::kStop;
  if (req.on_finish) req.on_finish(row, out.responses[size_t(row)]);
}

}  // namespace detail

RolloutBatch generate_lockstep(model::Transformer& model, const GenerateRequest& req) {
  GRPO_CHECK(!req.turns, "multi-turn episodes (GenerateRequest::turns) need the rollout engine, generate()");
  dist::Comm* lockstep = model.lockstep_group();
  RolloutBatch out = detail::start_batch(model, req, lockstep != nullptr);
  const int64_t N = out.rows(), R = req.sampling.max_new_tokens, P = out.prompt_width;

  at::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.train(false);

  // Under lock step, a rank whose rows are all done keeps taking part with idle forwards until
  // every rank of the group is done (one max-reduce of a flag per decode step).
  auto any_running = [&](bool mine) {
    if (!lockstep) return mine;
    auto f = at::scalar_tensor(mine ? 1 : 0, at::kLong).reshape({1});
    lockstep->all_reduce_max(f);
    return f.item<int64_t>() > 0;
  };
  // Rows [r0, r0 + n): one prefill, then a decode step per token for the rows still running.
  const at::Device dev = model.device();
  const auto on_dev = at::TensorOptions(dev);
  auto decode = [&](int64_t r0, int64_t n0) {
    if (n0 == 0) {  // nothing here (lock step: the others' chunk)
      model.idle_forward();  // the prefill
      while (any_running(false)) model.idle_forward();
      return;
    }
    auto cache = model.make_cache(n0, P + R);
    // (a static cache is one "block" of P + R tokens per row)
    out.stats.peak_kv_bytes = std::max(out.stats.peak_kv_bytes,
        double(n0) * double(model::PagedKVCache::block_bytes(model.cache_shape(), P + R, model.lm_head_weight().element_size())));
    out.stats.kv_bytes_allocated = out.stats.peak_kv_bytes;
    out.stats.prefill_tokens += n0 * P;
    ++out.stats.forwards;
    auto mask = out.attention_mask.narrow(0, r0, n0).narrow(1, 0, P).to(dev);
    auto pos = at::clamp_min(mask.to(at::kLong).cumsum(1) - 1, 0);  // [n0, P]
    auto next_pos = pos.select(1, P - 1) + 1;                       // [n0]
    auto hidden = model.forward(out.tokens.narrow(0, r0, n0).narrow(1, 0, P).to(dev), pos, mask, cache.get());
    auto logits = model.logits(hidden.select(1, P - 1));  // [n0, V]

    std::vector<int64_t> active(n0);  // original row of each batch row
    for (int64_t i = 0; i < n0; ++i) active[i] = r0 + i;
    auto active_mask = mask.clone();  // [n, P + t]
    for (int64_t t = 0; t < R; ++t) {
      const int64_t n = static_cast<int64_t>(active.size());
      std::vector<float> u(n);
      for (int64_t i = 0; i < n; ++i) u[i] = detail::token_uniform(req, active[i], t);
      auto s = sample_tokens(logits, at::from_blob(u.data(), {n}, at::kFloat).to(dev), req.sampling);
      auto tok = s.tokens.cpu().contiguous();  // (one small copy per step from a GPU)
      auto lp = s.logprobs.cpu().contiguous();
      const int64_t* tk = tok.data_ptr<int64_t>();
      const float* lpp = lp.data_ptr<float>();
      std::vector<int64_t> keep;
      for (int64_t i = 0; i < n; ++i)
        if (!detail::record_token(out, req, active[i], t, tk[i], lpp[i])) keep.push_back(i);
      if (keep.empty()) {
        while (any_running(false)) model.idle_forward();
        break;
      }
      any_running(true);
      auto step_tokens = s.tokens.view({n, 1});
      active_mask = at::cat({active_mask, at::ones({n, 1}, on_dev.dtype(at::kBool))}, 1);
      if (static_cast<int64_t>(keep.size()) < n) {
        auto idx = at::tensor(keep, at::kLong).to(dev);
        cache->select_rows(idx);
        step_tokens = step_tokens.index_select(0, idx);
        active_mask = active_mask.index_select(0, idx);
        next_pos = next_pos.index_select(0, idx);
        std::vector<int64_t> na;
        for (auto i : keep) na.push_back(active[i]);
        active.swap(na);
      }
      ++out.stats.forwards;
      out.stats.decode_tokens += int64_t(active.size());
      hidden = model.forward(step_tokens, next_pos.unsqueeze(1), active_mask, cache.get());
      logits = model.logits(hidden.select(1, 0));
      next_pos = next_pos + 1;
    }
  };
  // in chunks of sampling.max_running rows (the KV cache of one chunk at a time); under lock step
  // every rank runs as many chunks as the rank with the most
  const int64_t per = req.sampling.max_running > 0 ? req.sampling.max_running : std::max<int64_t>(N, 1);
  int64_t chunks = (N + per - 1) / per;
  if (lockstep) {
    auto c = at::scalar_tensor(std::max<int64_t>(chunks, 1), at::kLong).reshape({1});
    lockstep->all_reduce_max(c);
    chunks = c.item<int64_t>();
  }
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t r0 = std::min(N, c * per);
    decode(r0, std::min(per, N - r0));
  }
  model.train(was_training);
  out.stats.steps = out.stats.forwards;
  return out;
}

RolloutBatch merge_groups(const std::vector<const RolloutBatch*>& batches,
                          const std::vector<std::pair<int64_t, int64_t>>& groups, int64_t pad_id) {
  GRPO_CHECK(!batches.empty() && !groups.empty(), "merge_groups: nothing to merge");
  const int64_t G = batches[0]->group_size;
  int64_t P = 0, R = 0;
  for (auto* b : batches) {
    GRPO_CHECK(b->group_size == G, "merge_groups: group sizes differ ({} vs {})", b->group_size, G);
    P = std::max(P, b->prompt_width);
    R = std::max(R, b->response_mask.size(1));
  }
  RolloutBatch out;
  out.group_size = G;
  out.prompt_width = P;
  std::vector<at::Tensor> tok, attn, rmask, lp, ver, route;
  bool routed = true;  // every batch a group comes from recorded its routing
  for (auto [bi, gi] : groups) routed = routed && bi >= 0 && bi < int64_t(batches.size()) && batches[size_t(bi)]->routing.defined();
  for (auto [bi, gi] : groups) {
    GRPO_CHECK(bi >= 0 && bi < int64_t(batches.size()) && gi >= 0 && (gi + 1) * G <= batches[bi]->rows(),
               "merge_groups: no group {} in batch {}", gi, bi);
    const auto& b = *batches[bi];
    const int64_t pb = b.prompt_width, rb = b.response_mask.size(1);
    auto rows = b.tokens.narrow(0, gi * G, G);
    auto arows = b.attention_mask.narrow(0, gi * G, G);
    // [P - pb pads | prompt pb | response rb | R - rb pads]
    tok.push_back(at::cat({at::full({G, P - pb}, pad_id, at::kLong), rows.narrow(1, 0, pb + rb),
                           at::full({G, R - rb}, pad_id, at::kLong)}, 1));
    attn.push_back(at::cat({at::zeros({G, P - pb}, at::kBool), arows.narrow(1, 0, pb + rb),
                            at::zeros({G, R - rb}, at::kBool)}, 1));
    rmask.push_back(at::cat({b.response_mask.narrow(0, gi * G, G), at::zeros({G, R - rb}, at::kBool)}, 1));
    lp.push_back(at::cat({b.sampling_logprobs.narrow(0, gi * G, G), at::zeros({G, R - rb}, at::kFloat)}, 1));
    ver.push_back(b.token_versions.defined()
                      ? at::cat({b.token_versions.narrow(0, gi * G, G), at::zeros({G, R - rb}, at::kLong)}, 1)
                      : at::zeros({G, R}, at::kLong));
    if (routed) {
      auto rr = b.routing.narrow(0, gi * G, G);
      auto pad = [&](int64_t w) { return at::full({G, w, rr.size(2), rr.size(3)}, -1, at::kShort); };
      route.push_back(at::cat({pad(P - pb), rr.narrow(1, 0, pb + rb), pad(R - rb)}, 1));
    }
    for (int64_t r = gi * G; r < (gi + 1) * G; ++r) {
      out.finish.push_back(b.finish[size_t(r)]);
      out.responses.push_back(b.responses[size_t(r)]);
    }
  }
  out.tokens = at::cat(tok, 0);
  out.attention_mask = at::cat(attn, 0);
  out.response_mask = at::cat(rmask, 0);
  out.sampling_logprobs = at::cat(lp, 0);
  out.token_versions = at::cat(ver, 0);
  if (routed) out.routing = at::cat(route, 0);
  return out;
}

}  // namespace grpo::rollout
