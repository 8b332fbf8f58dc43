// Chunked log-prob/entropy with a hand-written backward. For each chunk of rows:
//   z = h W^T / tau, lse = logsumexp(z), logp = z[target] - lse, H = lse - sum(p z)
// Backward recomputes z per chunk (saving only h, W, targets and lse):
//   dL/dz = g_logp (onehot - p) - g_H p (log p + H);  dh = dz W / tau;  dW += dz^T h / tau
// Vocab-parallel (W split by rows over a tensor-parallel group): each rank holds z for its slice
// of the vocabulary; per chunk one all-reduce-max (m) and one all-reduce-sum of
// [sum exp(z - m), sum exp(z - m) z, z[target] if the target is in the slice] give lse, log p and
// H exactly; backward sums dh over the group once. Full logits are never gathered.
#include "grpo/model/logprob.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "grpo/core/error.h"
#include "grpo/core/tensor_util.h"
#include "grpo/dist/comm.h"

namespace grpo::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct ChunkedLogProb : torch::autograd::Function<ChunkedLogProb> {
  // h [N, D], w [V, D], tgt [N] -> logp [N], entropy [N] (fp32)
  // group: the tensor-parallel group over which w's rows (vocabulary [v0, v0 + V_local)) are
  // split; nullptr: w is the whole vocabulary.
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& h, const at::Tensor& w,
                             const at::Tensor& tgt, int64_t chunk, double temperature,
                             bool with_entropy, dist::Comm* group, int64_t v0) {
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
      if (group) {
        const bool empty = z.size(1) == 0;  // a slice made only of padding rows
        auto m = empty ? at::full({n}, -std::numeric_limits<double>::infinity(), opts) : std::get<0>(z.max(-1));
        group->all_reduce_max(m);
        auto e = at::exp(z - m.unsqueeze(1));
        auto t = tgt.narrow(0, s, n) - v0;
        auto in = t.ge(0) & t.lt(z.size(1));
        auto zt = empty ? at::zeros({n}, opts)
                        : z.gather(1, t.clamp(0, z.size(1) - 1).unsqueeze(1)).squeeze(1) * in.to(acc);
        auto sums = at::stack({e.sum(-1), (e * z).sum(-1), zt}).contiguous();  // [3, n]
        group->all_reduce_sum(sums);
        auto l = m + at::log(sums[0]);
        lse.narrow(0, s, n).copy_(l);
        logp.narrow(0, s, n).copy_(sums[2] - l);
        if (with_entropy) ent.narrow(0, s, n).copy_(l - sums[1] / sums[0]);
        continue;
      }
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
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    ctx->saved_data["v0"] = v0;
    return {logp, ent};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto h = saved[0], w = saved[1], tgt = saved[2], lse = saved[3], ent = saved[4];
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const double inv_t = 1.0 / ctx->saved_data["temperature"].toDouble();
    const bool with_entropy = ctx->saved_data["with_entropy"].toBool();
    auto* group = reinterpret_cast<dist::Comm*>(ctx->saved_data["group"].toInt());
    const int64_t v0 = ctx->saved_data["v0"].toInt();
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
        if (group) {  // only targets in this rank's slice of the vocabulary (possibly empty: padding)
          auto t = tgt.narrow(0, s, n) - v0;
          auto in = (t.ge(0) & t.lt(p.size(1))).unsqueeze(1);
          if (p.size(1) > 0) dz.scatter_add_(1, t.clamp(0, p.size(1) - 1).unsqueeze(1), g * in.to(g.scalar_type()));
        } else {
          dz.scatter_add_(1, tgt.narrow(0, s, n).unsqueeze(1), g);
        }
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
    if (group) group->all_reduce_sum(dh);  // h feeds every rank's slice
    return {dh, dw.to(w.scalar_type()), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

namespace {
TokenLogProbs logprobs_impl(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                            const LogProbOptions& options, dist::Comm* group, int64_t v0, int64_t vocab) {
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
    GRPO_CHECK(lo >= 0 && hi < vocab, "token_logprobs: target ids must be in [0, {}), found range [{}, {}]",
               vocab, lo, hi);
  }
  auto out = ChunkedLogProb::apply(h, weight, tgt, options.chunk_rows, options.temperature,
                                   options.with_entropy, group, v0);
  TokenLogProbs r;
  r.logprobs = out[0].view({B, T});
  if (options.with_entropy) r.entropy = out[1].view({B, T});
  return r;
}

}  // namespace

TokenLogProbs token_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                             const at::Tensor& targets, const LogProbOptions& options) {
  return logprobs_impl(hidden, weight, targets, options, nullptr, 0, weight.size(0));
}

TokenLogProbs token_logprobs_vocab_parallel(const at::Tensor& hidden, const at::Tensor& weight_shard,
                                            const at::Tensor& targets, int64_t vocab_begin,
                                            int64_t vocab_size, dist::Comm& group,
                                            const LogProbOptions& options) {
  GRPO_CHECK(vocab_begin >= 0 && vocab_begin + weight_shard.size(0) <= vocab_size,
             "token_logprobs: vocabulary slice [{}, {}) is outside [0, {})", vocab_begin,
             vocab_begin + weight_shard.size(0), vocab_size);
  return logprobs_impl(hidden, weight_shard, targets, options, group.size() > 1 ? &group : nullptr,
                       vocab_begin, vocab_size);
}

}  // namespace grpo::model
