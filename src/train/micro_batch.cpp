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
  int64_t width = 0;  // the micro-batch being filled: as wide as its first (longest) row
  for (auto row : order) {
    if (out.empty() || int64_t(out.back().size() + 1) * width > token_budget) {
      out.push_back({row});
      width = length(row);
    } else {
      out.back().push_back(row);
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
  // a response's real tokens: the sampled ones and, in a multi-turn episode, the observations
  // between them (real, but not in response_mask: no loss on them)
  const auto real = batch.attention_mask.narrow(1, s.P, batch.attention_mask.size(1) - s.P).sum(1);
  s.R = N == 0 ? 1 : std::max<int64_t>(1, real.max().item<int64_t>());
  s.tokens = batch.tokens.narrow(1, 0, s.P + s.R);
  s.resp_mask = batch.response_mask.narrow(1, 0, s.R).to(at::kFloat);
  if (batch.routing.defined()) s.routing = batch.routing.narrow(1, 0, s.P + s.R);
  s.prompt_len = to_vector(batch.attention_mask.narrow(1, 0, s.P).sum(1));
  s.resp_len = to_vector(real);
  return s;
}

std::vector<at::Tensor> ResponseBatch::micro_batches(const at::Tensor& rows, int64_t token_budget) const {
  std::vector<at::Tensor> out;
  for (auto& mb : pack_micro_batches(to_vector(rows), prompt_len, resp_len, token_budget))
    out.push_back(at::tensor(mb, at::kLong));
  return out;
}

core::Work ResponseBatch::forward_work(const model::Transformer& m, const at::Tensor& rows) const {
  auto r = rows.contiguous();
  double tokens = 0, logits = 0, attended = 0;
  for (int64_t i = 0; i < r.numel(); ++i) {
    const int64_t row = r.data_ptr<int64_t>()[i];
    const double len = double(prompt_len[size_t(row)] + resp_len[size_t(row)]);
    tokens += len, logits += double(resp_len[size_t(row)]), attended += len * (len + 1) / 2;
  }
  return m.forward_work(tokens, logits, attended);
}

model::TokenLogProbs response_logprobs(model::Transformer& m, const ResponseBatch& s, const at::Tensor& rows,
                                       bool with_entropy, double keep_logits_bytes) {
  // Each row packed to the left: its prompt, its response, then padding, W columns in all, so
  // padding only ends rows and the forward is plain causal attention (Transformer::forward); the
  // mask is passed only for an MoE model's statistics.
  const int64_t n = rows.numel();
  const auto L = at::TensorOptions(at::kLong);
  auto plen = at::tensor(s.prompt_len, L).index_select(0, rows), rlen = at::tensor(s.resp_len, L).index_select(0, rows);
  const int64_t W = n > 0 ? (plen + rlen).max().item<int64_t>() : s.P + s.R;  // (no rows: any width)
  const int64_t r = n > 0 ? rlen.max().item<int64_t>() : s.R;
  auto cols = at::arange(W, L).unsqueeze(0);
  auto src = ((s.P - plen).unsqueeze(1) + cols).clamp_max(s.P + s.R - 1);  // column in s.tokens
  auto real = cols.lt((plen + rlen).unsqueeze(1));                          // [n, W]
  auto tok = at::where(real, s.tokens.index_select(0, rows).gather(1, src), 0);
  at::Tensor mask;
  const auto dev = m.device();
  if (!m.moe_layers().empty())  // the tokens that predict a real token (a row's last one does not)
    mask = (real.narrow(1, 0, W - 1) & real.narrow(1, 1, W - 1)).to(dev);
  if (s.routing.defined() && n > 0) {  // routing replay: each input token's experts, packed like the tokens
    const int64_t L = s.routing.size(2), k = s.routing.size(3);
    auto r = s.routing.index_select(0, rows).gather(1, src.view({n, W, 1, 1}).expand({n, W, L, k}));
    r = at::where(real.view({n, W, 1, 1}), r, -1);
    m.set_routing_replay(r.narrow(1, 0, W - 1));
  }
  auto hidden = m.forward(tok.narrow(1, 0, W - 1).to(dev), {}, mask);  // (positions 0, 1, ...)
  // row i's response token t sits at column p_i + t and is predicted at column p_i - 1 + t
  auto t = at::arange(r, L).unsqueeze(0);
  auto valid = t.lt(rlen.unsqueeze(1));                                      // [n, r]
  auto at_col = ((plen - 1).unsqueeze(1) + t).clamp_max(W - 2);
  auto h = hidden.gather(1, at_col.to(dev).unsqueeze(-1).expand({n, r, hidden.size(-1)}));
  model::LogProbOptions lo;
  lo.with_entropy = with_entropy;
  lo.keep_logits_bytes = keep_logits_bytes;
  auto out = m.token_logprobs(h, tok.gather(1, at_col + 1).to(dev), lo);
  // back on the CPU (a differentiable copy), 0 beyond each row's response, as wide as the batch
  auto finish = [&](const at::Tensor& x) {
    return at::constant_pad_nd(at::where(valid, x.to(at::kCPU), 0), {0, s.R - r});
  };
  out.logprobs = finish(out.logprobs);
  if (out.entropy.defined()) out.entropy = finish(out.entropy);
  return out;
}

}  // namespace grpo::train
