// Chunked log-prob/entropy with a hand-written backward. For each chunk of rows:
//   z = h W^T / tau, lse = logsumexp(z), logp = z[target] - lse, H = lse - sum(p z)
// Backward recomputes z per chunk (saving only h, W, targets and lse):
//   dL/dz = g_logp (onehot - p) - g_H p (log p + H);  dh = dz W / tau;  dW += dz^T h / tau
#include "grpo/model/logprob.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "grpo/core/error.h"
#include "grpo/core/tensor_util.h"

namespace grpo::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct ChunkedLogProb : torch::autograd::Function<ChunkedLogProb> {
  // h [N, D], w [V, D], tgt [N] -> logp [N], entropy [N] (fp32)
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& h, const at::Tensor& w,
                             const at::Tensor& tgt, int64_t chunk, double temperature,
                             bool with_entropy) {
    const int64_t N = h.size(0);
    const auto acc = at::promote_types(h.scalar_type(), at::kFloat);  // fp32 (fp64 for fp64 inputs)
    auto opts = h.options().dtype(acc);
    auto logp = at::empty({N}, opts);
    auto ent = with_entropy ? at::empty({N}, opts) : at::empty({0}, opts);
    auto lse = at::empty({N}, opts);
    const double inv_t = 1.0 / temperature;
    for (int64_t s = 0; s < N; s += chunk) {
      int64_t n = std::min(chunk, N - s);
      auto z = at::matmul(h.narrow(0, s, n), w.t()).to(acc);  // [n, V]
      if (inv_t != 1.0) z.mul_(inv_t);
      auto l = at::logsumexp(z, -1);
      lse.narrow(0, s, n).copy_(l);
      logp.narrow(0, s, n).copy_(z.gather(1, tgt.narrow(0, s, n).unsqueeze(1)).squeeze(1) - l);
      if (with_entropy) {
        auto p = at::exp(z - l.unsqueeze(1));
        ent.narrow(0, s, n).copy_(l - (p * z).sum(-1));
      }
    }
    ctx->save_for_backward({h, w, tgt, lse, ent});
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["with_entropy"] = with_entropy;
    return {logp, ent};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto h = saved[0], w = saved[1], tgt = saved[2], lse = saved[3], ent = saved[4];
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const double inv_t = 1.0 / ctx->saved_data["temperature"].toDouble();
    const bool with_entropy = ctx->saved_data["with_entropy"].toBool();
    auto g_logp = grads[0];
    auto g_ent = with_entropy ? grads[1] : at::Tensor();
    const int64_t N = h.size(0);
    auto dh = at::zeros_like(h);
    const auto acc = lse.scalar_type();
    auto dw = at::zeros(w.sizes(), w.options().dtype(acc));
    for (int64_t s = 0; s < N; s += chunk) {
      int64_t n = std::min(chunk, N - s);
      auto hc = h.narrow(0, s, n);
      auto z = at::matmul(hc, w.t()).to(acc);
      if (inv_t != 1.0) z.mul_(inv_t);
      auto p = at::exp(z - lse.narrow(0, s, n).unsqueeze(1));  // [n, V]
      at::Tensor dz;  // dL/dz for this chunk [n, V]
      if (g_logp.defined()) {
        auto g = g_logp.narrow(0, s, n).unsqueeze(1);
        dz = -p * g;
        dz.scatter_add_(1, tgt.narrow(0, s, n).unsqueeze(1), g);
      } else {
        dz = at::zeros_like(p);
      }
      if (g_ent.defined()) {
        auto logp_all = z - lse.narrow(0, s, n).unsqueeze(1);
        auto H = ent.narrow(0, s, n).unsqueeze(1);
        dz = dz - g_ent.narrow(0, s, n).unsqueeze(1) * p * (logp_all + H);
      }
      if (inv_t != 1.0) dz.mul_(inv_t);
      dh.narrow(0, s, n).copy_(at::matmul(dz.to(w.scalar_type()), w));
      dw.add_(at::matmul(dz.t(), hc.to(acc)));
    }
    return {dh, dw.to(w.scalar_type()), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

TokenLogProbs token_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                             const at::Tensor& targets, const LogProbOptions& options) {
  GRPO_CHECK(hidden.dim() == 3, "token_logprobs: hidden must be [batch, seq, hidden], found {}",
             hidden.sizes());
  GRPO_CHECK(weight.dim() == 2 && weight.size(1) == hidden.size(2),
             "token_logprobs: weight must be [vocab, {}], found {}", hidden.size(2), weight.sizes());
  GRPO_CHECK(targets.sizes() == hidden.sizes().slice(0, 2),
             "token_logprobs: targets must be [{}, {}], found {}", hidden.size(0), hidden.size(1),
             targets.sizes());
  GRPO_CHECK(options.chunk_rows > 0 && options.temperature > 0,
             "token_logprobs: chunk_rows and temperature must be positive");
  const auto B = hidden.size(0), T = hidden.size(1);
  auto h = hidden.reshape({B * T, hidden.size(2)});
  auto tgt = targets.reshape({B * T}).to(at::kLong);
  if (tgt.numel() > 0) {
    auto lo = tgt.min().item<int64_t>(), hi = tgt.max().item<int64_t>();
    GRPO_CHECK(lo >= 0 && hi < weight.size(0),
               "token_logprobs: target ids must be in [0, {}), found range [{}, {}]",
               weight.size(0), lo, hi);
  }
  auto out = ChunkedLogProb::apply(h, weight, tgt, options.chunk_rows, options.temperature,
                                   options.with_entropy);
  TokenLogProbs r;
  r.logprobs = out[0].view({B, T});
  if (options.with_entropy) r.entropy = out[1].view({B, T});
  return r;
}

}  // namespace grpo::model
