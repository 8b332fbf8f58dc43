#include "paged_attention.h"

#include <ATen/ATen.h>

#include <ATen/Parallel.h>

#include "grpo/core/error.h"
#include "kernel_dispatch.h"
#include "paged_attention_cpu.h"

#if GRPO_WITH_KERNELS
#include "kernels/attention/api.h"
#endif

namespace grpo::model::detail {

bool paged_decode_in_place(const at::Tensor& pool) {
  return use_kernels(pool) || (pool.device().is_cpu() && pool.scalar_type() == at::kFloat);
}

at::Tensor paged_decode_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& r,
                                            const at::Tensor& v, const at::Tensor& block_table,
                                            const at::Tensor& lengths, int64_t block_size, double scale) {
  const int64_t B = q.size(0), H = q.size(1), KV = k.size(1), g = H / KV;
  const auto acc = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t L = std::max<int64_t>(1, lengths.numel() ? lengths.max().item<int64_t>() : 1);
  auto j = at::arange(L, block_table.options().dtype(at::kLong));                      // [L]
  auto blocks = block_table.to(at::kLong).index_select(1, at::clamp_max(at::div(j, block_size, "floor"), block_table.size(1) - 1));
  auto slots = blocks * block_size + (j % block_size).unsqueeze(0);                    // [B, L]
  auto valid = j.unsqueeze(0) < lengths.to(at::kLong).unsqueeze(1);                    // [B, L]
  slots = at::where(valid, slots, 0).reshape({-1});
  auto gather = [&](const at::Tensor& pool) {  // [B, KV, L, d]
    return pool.index_select(0, slots).view({B, L, KV, pool.size(2)}).permute({0, 2, 1, 3}).to(acc);
  };
  auto keys = r.defined() ? at::cat({gather(k), gather(r)}, -1) : gather(k);
  auto values = gather(v);
  auto qg = q.to(acc).view({B, KV, g, q.size(2)}) * scale;                           // [B, KV, g, dq]
  auto scores = at::matmul(qg, keys.transpose(2, 3));                                 // [B, KV, g, L]
  scores = scores.masked_fill(valid.logical_not().view({B, 1, 1, L}), -std::numeric_limits<double>::infinity());
  auto p = at::softmax(scores, -1).nan_to_num(0.0);                                   // rows with no keys: 0
  return at::matmul(p, values).view({B, H, v.size(2)}).to(q.scalar_type());
}

at::Tensor paged_decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& r, const at::Tensor& v,
                                  const at::Tensor& block_table, const at::Tensor& lengths, int64_t block_size,
                                  double scale, int64_t max_length) {
  GRPO_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3 && q.size(1) % k.size(1) == 0 &&
                 q.size(2) == k.size(2) + (r.defined() ? r.size(2) : 0),
             "paged_decode_attention: q {} does not match the pools k {} / r {} / v {}", q.sizes(), k.sizes(),
             r.defined() ? r.sizes() : at::IntArrayRef{}, v.sizes());
#if GRPO_WITH_KERNELS
  if (use_kernels(q) && v.size(2) <= 512) {
    KernelLaunch launch(q);
    auto qc = q.contiguous();
    auto table = block_table.to(at::kInt).contiguous(), lens = lengths.to(at::kInt).contiguous();
    kernels::PagedDecodeArgs a;
    a.dt = kernel_dtype(q.scalar_type());
    a.batch = q.size(0);
    a.heads = q.size(1);
    a.kv_heads = k.size(1);
    a.q = qc.data_ptr();
    a.k = k.data_ptr();
    a.dk = k.size(2);
    a.r = r.defined() ? r.data_ptr() : nullptr;
    a.dr = r.defined() ? r.size(2) : 0;
    a.v = v.data_ptr();
    a.dv = v.size(2);
    a.block_table = table.data_ptr<int32_t>();
    a.max_blocks = table.size(1);
    a.lengths = lens.data_ptr<int32_t>();
    a.block_size = block_size;
    a.max_length = max_length >= 0 ? max_length : lens.numel() ? lens.max().item<int64_t>() : 0;
    a.scale = scale;
    auto out = at::empty({a.batch, a.heads, a.dv}, q.options());
    a.out = out.data_ptr();
    auto ws = at::empty({kernels::paged_decode_workspace_bytes(a)}, q.options().dtype(at::kByte));
    check_kernel(kernels::paged_decode_attention(a, ws.data_ptr(), launch.stream()), "paged_decode_attention");
    return out;
  }
#endif
  if (q.device().is_cpu() && q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat &&
      v.scalar_type() == at::kFloat && (!r.defined() || r.scalar_type() == at::kFloat) && k.is_contiguous() &&
      v.is_contiguous() && (!r.defined() || r.is_contiguous())) {
    auto qc = q.contiguous();
    auto table = block_table.to(at::kInt).contiguous(), lens = lengths.to(at::kInt).contiguous();
    cpu::PagedDecodeCpu a;
    a.q = qc.data_ptr<float>();
    a.k = k.data_ptr<float>();
    a.r = r.defined() ? r.data_ptr<float>() : nullptr;
    a.v = v.data_ptr<float>();
    a.batch = q.size(0);
    a.heads = q.size(1);
    a.kv_heads = k.size(1);
    a.dk = k.size(2);
    a.dr = r.defined() ? r.size(2) : 0;
    a.dv = v.size(2);
    a.block_table = table.data_ptr<int32_t>();
    a.max_blocks = table.size(1);
    a.lengths = lens.data_ptr<int32_t>();
    a.block_size = block_size;
    a.scale = float(scale);
    auto out = at::empty({a.batch, a.heads, a.dv}, q.options());
    a.out = out.data_ptr<float>();
    at::parallel_for(0, a.batch * a.kv_heads, 1, [&](int64_t b, int64_t e) { cpu::paged_decode_attention(a, b, e); });
    return out;
  }
  return paged_decode_attention_reference(q, k, r, v, block_table, lengths, block_size, scale);
}

}  // namespace grpo::model::detail
