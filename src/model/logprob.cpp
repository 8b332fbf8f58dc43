// Chunked log-prob/entropy with a hand-written backward, as an online softmax over vocabulary
// blocks. For each block of rows and each block of vocabulary columns, z = h W_c^T / tau:
//   m = running max of z,  s = sum exp(z - m),  q = sum exp(z - m) z,  z_t = z[target]
// (merging a block rescales s and q by exp(m_old - m_new)). Then lse = m + log s,
// log p = z_t - lse and H = lse - q / s. Backward recomputes z per block, saving only h, W,
// targets, lse and H (or, within LogProbOptions::keep_logits_bytes, reads the forward's z):
//   dL/dz = g_logp (onehot - p) - g_H p (log p + H);  dh = dz W / tau;  dW += dz^T h / tau
// Vocab-parallel (W split by rows over a tensor-parallel group): each rank folds its slice into
// (m, s, q, z_t); one all-reduce-max of m and one all-reduce-sum of the rescaled [s, q, z_t] give
// the whole vocabulary's statistics exactly; backward sums dh over the group once. Full logits are
// never gathered.
//
// Logits are fp32 (fp64 for fp64) whatever the model's dtype: bf16 operands, fp32 accumulation and
// result, so log-probs of a bf16 model do not carry the logits' bf16 rounding. The two gradient
// GEMMs take dz rounded to the model's dtype (as autograd through a bf16 matmul would).
// GPU tensors (libgrpo built with kernels): the block's logits come from cuBLAS and the fold and
// the gradient are one kernel pass each (kernels/logprob/). CPU tensors: the same formulas as
// LibTorch ops (the reference the GPU tests compare against).
#include "grpo/model/logprob.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "grpo/core/error.h"
#include "grpo/core/tensor_util.h"
#include "grpo/dist/comm.h"
#include "kernel_dispatch.h"
#include "softmax_cpu.h"

#include <ATen/Parallel.h>

#if GRPO_WITH_KERNELS
#include "kernels/logprob/api.h"
#endif

namespace grpo::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// a [m, k] @ b [k, n] in the accumulator type `acc` from operands of the model's dtype: bf16/fp16
// products accumulate in fp32 and the logits stay fp32 (cuBLAS's mixed-precision GEMM on GPU; the
// operands upcast on CPU, the same math), so bf16 models get log-probs from unrounded logits.
at::Tensor mm_acc(const at::Tensor& a, const at::Tensor& b, at::ScalarType acc) {
  if (a.scalar_type() == acc && b.scalar_type() == acc) return at::mm(a, b);
  if (a.is_cuda()) return at::mm(a, b, acc);
  return at::mm(a.to(acc), b.to(acc));
}

// fp32 CPU blocks go through the fused passes of softmax_cpu.h (rows contiguous in memory); other
// dtypes (fp64: the tests' reference precision) through LibTorch ops.
bool cpu_fused(const at::Tensor& z) {
  return z.device().is_cpu() && z.scalar_type() == at::kFloat && z.dim() == 2 && z.stride(1) == 1;
}

// Running softmax statistics of a block of rows, in the accumulator type: [4, n] = m, s, q, z_t.
at::Tensor init_stats(int64_t n, const at::TensorOptions& acc) {
  auto st = at::zeros({4, n}, acc);
  st[0].fill_(-std::numeric_limits<double>::infinity());
  return st;
}

// Folds the logits z [n, cols] (accumulator type) of vocabulary columns [c0, c0 + cols) into st.
void fold_block(at::Tensor& st, const at::Tensor& z, const at::Tensor& tgt, int64_t c0, double inv_t) {
  const int64_t n = z.size(0), cols = z.size(1);
  if (cols == 0) return;
#if GRPO_WITH_KERNELS
  if (detail::use_kernels(z)) {
    detail::KernelLaunch launch(z);
    auto zc = z.contiguous();
    detail::check_kernel(kernels::logprob_stats_update(detail::kernel_dtype(zc.scalar_type()), zc.data_ptr(), n,
                                                       cols, cols, tgt.data_ptr<int64_t>(), c0, inv_t,
                                                       st[0].data_ptr(), st[1].data_ptr(), st[2].data_ptr(),
                                                       st[3].data_ptr(), launch.stream()),
                         "token_logprobs");
    return;
  }
#endif
  if (cpu_fused(z)) {  // one pass per row after its max
    const float* zp = z.const_data_ptr<float>();
    const int64_t* tp = tgt.const_data_ptr<int64_t>();
    float *m = st[0].data_ptr<float>(), *s = st[1].data_ptr<float>(), *q = st[2].data_ptr<float>(),
          *zt = st[3].data_ptr<float>();
    at::parallel_for(0, n, 16, [&](int64_t b, int64_t e) {
      cpu::softmax_fold(zp, z.stride(0), b, e, cols, tp, c0, float(inv_t), m, s, q, zt);
    });
    return;
  }
  auto za = inv_t != 1.0 ? z * inv_t : z;
  auto mc = std::get<0>(za.max(-1));
  auto M = at::maximum(st[0], mc);
  auto e = (za - M.unsqueeze(1)).exp_();
  auto keep = at::exp(st[0] - M);  // 0 for the first block (m = -inf)
  st[1].mul_(keep).add_(e.sum(-1));
  st[2].mul_(keep).add_(at::linalg_vecdot(e, za));  // sum e * z per row, without an [n, cols] product
  st[0].copy_(M);
  auto t = tgt - c0;
  auto in = t.ge(0) & t.lt(cols);
  auto zt = za.gather(1, t.clamp(0, cols - 1).unsqueeze(1)).squeeze(1);
  st[3].copy_(at::where(in, zt, st[3]));
}

// dL/dz [n, cols] (accumulator type) of one block, from the forward's lse and H.
at::Tensor block_grad(const at::Tensor& z, const at::Tensor& tgt, int64_t c0, double inv_t, const at::Tensor& lse,
                      const at::Tensor& ent, const at::Tensor& g_logp, const at::Tensor& g_ent) {
  const int64_t n = z.size(0), cols = z.size(1);
#if GRPO_WITH_KERNELS
  if (detail::use_kernels(z)) {
    detail::KernelLaunch launch(z);
    auto zc = z.contiguous();
    auto dz = at::empty({n, cols}, lse.options());
    auto gl = g_logp.defined() ? g_logp.contiguous() : at::Tensor();
    auto ge = g_ent.defined() ? g_ent.contiguous() : at::Tensor();
    detail::check_kernel(kernels::logprob_grad(detail::kernel_dtype(zc.scalar_type()), zc.data_ptr(), n, cols, cols,
                                               tgt.data_ptr<int64_t>(), c0, inv_t, lse.data_ptr(),
                                               ge.defined() ? ent.data_ptr() : nullptr,
                                               gl.defined() ? gl.data_ptr() : nullptr,
                                               ge.defined() ? ge.data_ptr() : nullptr, dz.data_ptr(), launch.stream()),
                         "token_logprobs (backward)");
    return dz;
  }
#endif
  if (cpu_fused(z)) {
    auto dz = at::empty({n, cols}, z.options());
    const float* zp = z.const_data_ptr<float>();
    const int64_t* tp = tgt.const_data_ptr<int64_t>();
    const float* gl = g_logp.defined() ? g_logp.const_data_ptr<float>() : nullptr;
    const bool he = g_ent.defined();
    const float* ge = he ? g_ent.const_data_ptr<float>() : nullptr;
    const float* h = he ? ent.const_data_ptr<float>() : nullptr;
    at::parallel_for(0, n, 16, [&](int64_t b, int64_t e) {
      cpu::softmax_grad(zp, z.stride(0), b, e, cols, tp, c0, float(inv_t), lse.const_data_ptr<float>(), h, gl, ge,
                        dz.data_ptr<float>(), cols);
    });
    return dz;
  }
  // dz = -p * (g_logp + g_H (log p + H)), then + g_logp at the target; in place, few passes
  auto za = inv_t != 1.0 ? z * inv_t : z;
  auto logp_all = za - lse.unsqueeze(1);
  auto dz = at::exp(logp_all);  // p
  if (g_ent.defined()) {
    auto coef = logp_all.add_(ent.unsqueeze(1)).mul_(g_ent.unsqueeze(1));  // g_H (log p + H)
    if (g_logp.defined()) coef.add_(g_logp.unsqueeze(1));
    dz.mul_(coef).neg_();
  } else if (g_logp.defined()) {
    dz.mul_(g_logp.neg().unsqueeze(1));
  } else {
    dz.zero_();
  }
  if (g_logp.defined()) {
    auto t = tgt - c0;
    auto in = (t.ge(0) & t.lt(cols)).unsqueeze(1);
    dz.scatter_add_(1, t.clamp(0, cols - 1).unsqueeze(1), g_logp.unsqueeze(1) * in.to(g_logp.scalar_type()));
  }
  if (inv_t != 1.0) dz.mul_(inv_t);
  return dz;
}

// Whether the op makes one fp32 copy of a bf16/fp16 weight per pass on the CPU (at most 1 GiB; a
// larger head is upcast a block at a time).
bool upcast_once(const at::Tensor& w) { return double(w.numel()) * 4 <= double(1 << 30); }

struct ChunkedLogProb : torch::autograd::Function<ChunkedLogProb> {
  // h [N, D], w [V, D], tgt [N] -> logp [N], entropy [N] (fp32; fp64 for fp64 inputs)
  // group: the tensor-parallel group over which w's rows (vocabulary [v0, v0 + V)) are split;
  // nullptr: w is the whole vocabulary.
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& h, const at::Tensor& w, const at::Tensor& tgt,
                             int64_t chunk, int64_t vchunk, double temperature, bool with_entropy,
                             dist::Comm* group, int64_t v0, double keep_bytes) {
    const int64_t N = h.size(0), V = w.size(0);
    const auto acc_t = at::promote_types(h.scalar_type(), at::kFloat);
    const auto acc = h.options().dtype(acc_t);
    // the logits kept for backward (undefined: recomputed there)
    const bool keep = N > 0 && double(N) * double(V) * double(c10::elementSize(acc_t)) <= keep_bytes &&
                      (h.requires_grad() || w.requires_grad());
    auto zs = keep ? at::empty({N, V}, acc) : at::Tensor();
    // CPU with bf16/fp16 operands: LibTorch's CPU GEMMs have no fp32 output for them, so the logits'
    // GEMM runs on upcast operands (exact: every bf16 value is an fp32 value), upcast once per pass
    // rather than per block (upcast_once)
    const bool upcast = !h.is_cuda() && h.scalar_type() != acc_t;
    const auto ha = upcast ? h.to(acc_t) : h;
    const auto wa = upcast && upcast_once(w) ? w.to(acc_t) : w;
    auto logp = at::empty({N}, acc);
    auto ent = with_entropy ? at::empty({N}, acc) : at::empty({0}, acc);
    auto lse = at::empty({N}, acc);
    const double inv_t = 1.0 / temperature;
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      auto hc = ha.narrow(0, s, n);
      auto tc = tgt.narrow(0, s, n);
      auto st = init_stats(n, acc);
      for (int64_t c0 = 0; c0 < V; c0 += vchunk) {
        const int64_t cols = std::min(vchunk, V - c0);
        auto z = mm_acc(hc, wa.narrow(0, c0, cols).t(), acc_t);
        fold_block(st, z, tc, v0 + c0, inv_t);
        if (keep) zs.narrow(0, s, n).narrow(1, c0, cols).copy_(z);
      }
      if (group) {  // the whole vocabulary's statistics from every rank's slice
        auto M = st[0].clone();
        group->all_reduce_max(M);
        auto keep = at::exp(st[0] - M);  // 0 where this rank's slice is empty (m = -inf)
        auto sums = at::stack({st[1] * keep, st[2] * keep, st[3]}).contiguous();  // z_t: 0 off-slice
        group->all_reduce_sum(sums);
        st = at::stack({M, sums[0], sums[1], sums[2]});
      }
      auto l = st[0] + at::log(st[1]);
      lse.narrow(0, s, n).copy_(l);
      logp.narrow(0, s, n).copy_(st[3] - l);
      if (with_entropy) ent.narrow(0, s, n).copy_(l - st[2] / st[1]);
    }
    ctx->save_for_backward({h, w, tgt, lse, ent, zs});
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["vchunk"] = vchunk;
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["with_entropy"] = with_entropy;
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    ctx->saved_data["v0"] = v0;
    return {logp, ent};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto h = saved[0], w = saved[1], tgt = saved[2], lse = saved[3], ent = saved[4], zs = saved[5];
    const int64_t chunk = ctx->saved_data["chunk"].toInt(), vchunk = ctx->saved_data["vchunk"].toInt();
    const double inv_t = 1.0 / ctx->saved_data["temperature"].toDouble();
    const bool with_entropy = ctx->saved_data["with_entropy"].toBool();
    auto* group = reinterpret_cast<dist::Comm*>(ctx->saved_data["group"].toInt());
    const int64_t v0 = ctx->saved_data["v0"].toInt();
    auto g_logp = grads[0].defined() ? grads[0].contiguous() : grads[0];
    auto g_ent = with_entropy && grads[1].defined() ? grads[1].contiguous() : at::Tensor();
    const int64_t N = h.size(0), V = w.size(0);
    const auto acc = lse.scalar_type();
    auto dh = at::zeros_like(h);
    auto dw = at::zeros(w.sizes(), w.options().dtype(acc));
    // CPU with bf16/fp16 operands: a row block's dz [n, V] is gathered in the model's dtype and its two
    // gradient GEMMs run once over the whole vocabulary in that dtype (oneDNN's bf16 GEMM, fp32
    // accumulation, one rounding of each product: what autograd through a bf16 matmul computes);
    // recomputed logits come from operands upcast once per pass, as in forward.
    const bool upcast = !h.is_cuda() && h.scalar_type() != acc;
    const auto wa = upcast && !zs.defined() && upcast_once(w) ? w.to(acc) : w;
    auto dz_row = upcast ? at::empty({std::min(chunk, N), V}, w.options()) : at::Tensor();
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      auto hc = h.narrow(0, s, n);
      auto tc = tgt.narrow(0, s, n);
      auto gl = g_logp.defined() ? g_logp.narrow(0, s, n) : at::Tensor();
      auto ge = g_ent.defined() ? g_ent.narrow(0, s, n) : at::Tensor();
      auto dh_c = upcast ? at::Tensor() : at::zeros({n, h.size(1)}, h.options().dtype(acc));
      const auto hz = upcast && !zs.defined() ? hc.to(acc) : hc;
      for (int64_t c0 = 0; c0 < V; c0 += vchunk) {
        const int64_t cols = std::min(vchunk, V - c0);
        auto z = zs.defined() ? zs.narrow(0, s, n).narrow(1, c0, cols) : mm_acc(hz, wa.narrow(0, c0, cols).t(), acc);
        auto dz_acc = block_grad(z, tc, v0 + c0, inv_t, lse.narrow(0, s, n),
                                 with_entropy ? ent.narrow(0, s, n) : ent, gl, ge);
        if (upcast) {
          dz_row.narrow(0, 0, n).narrow(1, c0, cols).copy_(dz_acc);  // rounded to the model's dtype
          continue;
        }
        auto wc = w.narrow(0, c0, cols);
        auto dz = dz_acc.to(w.scalar_type());  // the gradient GEMMs run in the model's dtype
        if (dz.scalar_type() == acc) {  // accumulate in place (no product tensors)
          dh_c.addmm_(dz, wc);
          auto dwc = dw.narrow(0, c0, cols);
          dwc.addmm_(dz.t(), hc);
        } else {
          dh_c.add_(mm_acc(dz, wc, acc));
          dw.narrow(0, c0, cols).add_(mm_acc(dz.t(), hc, acc));
        }
      }
      if (upcast) {
        auto dzr = dz_row.narrow(0, 0, n);
        dh.narrow(0, s, n).copy_(at::mm(dzr, w));
        dw.add_(at::mm(dzr.t(), hc));
      } else {
        dh.narrow(0, s, n).copy_(dh_c);
      }
    }
    if (group) group->all_reduce_sum(dh);  // h feeds every rank's slice
    return {dh, dw.to(w.scalar_type()), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

TokenLogProbs logprobs_impl(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                            const LogProbOptions& options, dist::Comm* group, int64_t v0, int64_t vocab) {
  GRPO_CHECK(hidden.dim() == 3, "token_logprobs: hidden must be [batch, seq, hidden], found {}",
             hidden.sizes());
  GRPO_CHECK(weight.dim() == 2 && weight.size(1) == hidden.size(2),
             "token_logprobs: weight must be [vocab, {}], found {}", hidden.size(2), weight.sizes());
  GRPO_CHECK(targets.sizes() == hidden.sizes().slice(0, 2),
             "token_logprobs: targets must be [{}, {}], found {}", hidden.size(0), hidden.size(1),
             targets.sizes());
  GRPO_CHECK(options.chunk_rows >= 0 && options.chunk_vocab >= 0 && options.temperature > 0,
             "token_logprobs: chunk_rows and chunk_vocab must be >= 0 and temperature positive, found {}, {}, {}",
             options.chunk_rows, options.chunk_vocab, options.temperature);
  GRPO_CHECK(hidden.device() == weight.device() && hidden.device() == targets.device(),
             "token_logprobs: hidden ({}), weight ({}) and targets ({}) must be on one device", hidden.device().str(),
             weight.device().str(), targets.device().str());
  const auto B = hidden.size(0), T = hidden.size(1);
  auto h = hidden.reshape({B * T, hidden.size(2)});
  auto tgt = targets.reshape({B * T}).to(at::kLong).contiguous();
  if (tgt.numel() > 0) {
    auto range = at::stack({tgt.min(), tgt.max()}).cpu();
    auto lo = range[0].item<int64_t>(), hi = range[1].item<int64_t>();
    GRPO_CHECK(lo >= 0 && hi < vocab, "token_logprobs: target ids must be in [0, {}), found range [{}, {}]",
               vocab, lo, hi);
  }
  const bool cpu = hidden.device().is_cpu();
  const int64_t cr = options.chunk_rows > 0 ? options.chunk_rows : cpu ? 512 : 2048;
  const int64_t cv = options.chunk_vocab > 0 ? options.chunk_vocab : cpu ? 4096 : 32768;
  auto out = ChunkedLogProb::apply(h, weight, tgt, cr, cv, options.temperature, options.with_entropy, group, v0,
                                   options.keep_logits_bytes);
  TokenLogProbs r;
  r.logprobs = out[0].view({B, T});
  if (options.with_entropy) r.entropy = out[1].view({B, T});
  return r;
}

}  // namespace

TokenLogProbs token_logprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                             const LogProbOptions& options) {
  return logprobs_impl(hidden, weight, targets, options, nullptr, 0, weight.size(0));
}

TokenLogProbs token_logprobs_vocab_parallel(const at::Tensor& hidden, const at::Tensor& weight_shard,
                                            const at::Tensor& targets, int64_t vocab_begin, int64_t vocab_size,
                                            dist::Comm& group, const LogProbOptions& options) {
  GRPO_CHECK(vocab_begin >= 0 && vocab_begin + weight_shard.size(0) <= vocab_size,
             "token_logprobs: vocabulary slice [{}, {}) is outside [0, {})", vocab_begin,
             vocab_begin + weight_shard.size(0), vocab_size);
  return logprobs_impl(hidden, weight_shard, targets, options, group.size() > 1 ? &group : nullptr, vocab_begin,
                       vocab_size);
}

}  // namespace grpo::model
