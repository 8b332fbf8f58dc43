#include "grpo/train/micro_batch.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "grpo/core/error.h"
#include "grpo/model/transformer.h"
#include "grpo/rollout/generate.h"

namespace grpo::train {

std::vector<std::vector<int64_t>> pack_micro_batches(const std::vector<int64_t>& rows,
                                                     const std::vector<int64_t>& prompt_len,
                                                     const std::vector<int64_t>& response_len,
                                                     int64_t token_budget) {
  GRPO_CHECK(token_budget >= 1, "pack_micro_batches: the token budget must be positive, found {}", token_budget);
  GRPO_CHECK(prompt_len.size() == response_len.size(), "pack_micro_batches: {} prompt lengths, {} response lengths",
             prompt_len.size(), response_len.size());
  for (auto r : rows)
    GRPO_CHECK(r >= 0 && size_t(r) < prompt_len.size(), "pack_micro_batches: row {} is not one of the {} rows", r,
               prompt_len.size());
  auto length = [&](int64_t r) { return prompt_len[size_t(r)] + response_len[size_t(r)]; };
  std::vector<int64_t> order(rows);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return length(a) > length(b); });
  std::vector<std::vector<int64_t>> out;
  int64_t p = 0, r = 0;  // the longest prompt and response of the micro-batch being filled
  for (auto row : order) {
    const int64_t p2 = std::max(p, prompt_len[size_t(row)]), r2 = std::max(r, response_len[size_t(row)]);
    if (out.empty() || int64_t(out.back().size() + 1) * (p2 + r2) > token_budget) {
      out.push_back({row});
      p = prompt_len[size_t(row)], r = response_len[size_t(row)];
    } else {
      out.back().push_back(row);
      p = p2, r = r2;
    }
  }
  return out;
}

namespace {
std::vector<int64_t> to_vector(const at::Tensor& t) {
  auto c = t.to(at::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}
}  // namespace

ResponseBatch ResponseBatch::of(const rollout::RolloutBatch& batch) {
  ResponseBatch s;
  const int64_t N = batch.rows();
  s.P = batch.prompt_width;
  s.R = N == 0 ? 1 : std::max<int64_t>(1, batch.response_mask.sum(1).max().item<int64_t>());
  s.tokens = batch.tokens.narrow(1, 0, s.P + s.R);
  s.attn = batch.attention_mask.narrow(1, 0, s.P + s.R);
  s.positions = at::clamp_min(s.attn.to(at::kLong).cumsum(1) - 1, 0);
  s.resp_mask = batch.response_mask.narrow(1, 0, s.R).to(at::kFloat);
  s.prompt_len = to_vector(s.attn.narrow(1, 0, s.P).sum(1));
  s.resp_len = to_vector(batch.response_mask.sum(1));
  return s;
}

std::vector<at::Tensor> ResponseBatch::micro_batches(const at::Tensor& rows, int64_t token_budget) const {
  std::vector<at::Tensor> out;
  for (auto& mb : pack_micro_batches(to_vector(rows), prompt_len, resp_len, token_budget))
    out.push_back(at::tensor(mb, at::kLong));
  return out;
}

model::TokenLogProbs response_logprobs(model::Transformer& m, const ResponseBatch& s, const at::Tensor& rows,
                                       bool with_entropy) {
  int64_t p = s.P, r = s.R;  // the columns these rows need: [P - p, P + r)
  if (rows.numel() > 0) {
    p = r = 0;
    for (auto i : to_vector(rows)) p = std::max(p, s.prompt_len[size_t(i)]), r = std::max(r, s.resp_len[size_t(i)]);
  }
  const int64_t c0 = s.P - p, W = p + r;
  auto tok = s.tokens.index_select(0, rows).narrow(1, c0, W);
  auto pos = s.positions.index_select(0, rows).narrow(1, c0, W - 1);
  auto a = s.attn.index_select(0, rows).narrow(1, c0, W);
  // The mask: left padding, or an MoE model's statistics, which count the tokens that predict a
  // real token (a row's last token has no target: masked, it attends to itself, unused).
  at::Tensor mask;
  if (!a.narrow(1, 0, p).all().item<bool>() || !m.moe_layers().empty())
    mask = (a.narrow(1, 0, W - 1) & a.narrow(1, 1, W - 1)).to(m.device());
  const auto dev = m.device();
  auto hidden = m.forward(tok.narrow(1, 0, W - 1).to(dev), pos.to(dev), mask).narrow(1, p - 1, r);
  model::LogProbOptions lo;
  lo.with_entropy = with_entropy;
  auto out = m.token_logprobs(hidden, tok.narrow(1, p, r).to(dev), lo);
  // back on the CPU (a differentiable copy), as wide as the batch
  out.logprobs = at::constant_pad_nd(out.logprobs.to(at::kCPU), {0, s.R - r});
  if (out.entropy.defined()) out.entropy = at::constant_pad_nd(out.entropy.to(at::kCPU), {0, s.R - r});
  return out;
}

}  // namespace grpo::train
