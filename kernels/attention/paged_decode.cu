// Paged decode attention (api.h): a split kernel, one thread block per (sequence, query head, key
// split), 4 warps taking the split's keys in turn, each lane holding dim / 32 of the query and of
// the output; then a merge kernel per (sequence, query head).
#include <algorithm>
#include <cmath>

#include "kernels/attention/api.h"
#include "kernels/common/device.cuh"

namespace grpo::kernels {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxV = 512;               // largest value width (MLA's latent)
constexpr int kPerLane = kMaxV / 32;     // output elements per lane
constexpr int64_t kKeysPerSplit = 256;   // target keys per thread block

template <typename T>
__global__ void paged_decode_split(PagedDecodeArgs a, int64_t chunk, typename detail::Acc<T>::type* ws_o,
                                   typename detail::Acc<T>::type* ws_m, typename detail::Acc<T>::type* ws_l) {
  using A = typename detail::Acc<T>::type;
  extern __shared__ unsigned char smem_raw[];
  A* q_s = reinterpret_cast<A*>(smem_raw);                  // [dk + dr]
  A* o_s = q_s + (a.dk + a.dr);                             // [kWarps, dv]
  __shared__ A m_s[kWarps], l_s[kWarps];
  const int64_t bh = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
  const int64_t b = bh / a.heads, h = bh % a.heads, kvh = h / (a.heads / a.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t dq = a.dk + a.dr;
  const T* q = static_cast<const T*>(a.q) + bh * dq;
  for (int64_t i = threadIdx.x; i < dq; i += blockDim.x) q_s[i] = detail::to_acc(q[i]) * A(a.scale);
  __syncthreads();

  const int64_t len = a.lengths[b];
  const int64_t begin = split * chunk, end = min(len, begin + chunk);
  const T* kp = static_cast<const T*>(a.k);
  const T* rp = static_cast<const T*>(a.r);
  const T* vp = static_cast<const T*>(a.v);
  const int32_t* table = a.block_table + b * a.max_blocks;
  A m = -INFINITY, l = 0, acc[kPerLane];
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) acc[c] = 0;
  for (int64_t j = begin + warp; j < end; j += kWarps) {
    const int64_t slot = int64_t(table[j / a.block_size]) * a.block_size + j % a.block_size;
    const T* kj = kp + (slot * a.kv_heads + kvh) * a.dk;
    A dot = 0;
    for (int64_t i = lane; i < a.dk; i += 32) dot += q_s[i] * detail::to_acc(kj[i]);
    if (rp) {
      const T* rj = rp + (slot * a.kv_heads + kvh) * a.dr;
      for (int64_t i = lane; i < a.dr; i += 32) dot += q_s[a.dk + i] * detail::to_acc(rj[i]);
    }
    const A s = detail::warp_reduce(dot, [](A x, A y) { return x + y; });
    const A m_new = max(m, s);
    const A corr = detail::exp_acc(m - m_new), p = detail::exp_acc(s - m_new);
    l = l * corr + p;
    const T* vj = vp + (slot * a.kv_heads + kvh) * a.dv;
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) {
      const int64_t i = lane + 32 * c;
      if (i < a.dv) acc[c] = acc[c] * corr + p * detail::to_acc(vj[i]);
    }
    m = m_new;
  }
  if (lane == 0) m_s[warp] = m, l_s[warp] = l;
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int64_t i = lane + 32 * c;
    if (i < a.dv) o_s[warp * a.dv + i] = acc[c];
  }
  __syncthreads();
  A mx = -INFINITY;
  for (int w = 0; w < kWarps; ++w) mx = max(mx, m_s[w]);
  const int64_t at = bh * splits + split;
  if (mx == -INFINITY) {  // no keys in this split
    for (int64_t i = threadIdx.x; i < a.dv; i += blockDim.x) ws_o[at * a.dv + i] = 0;
    if (threadIdx.x == 0) ws_m[at] = -INFINITY, ws_l[at] = 0;
    return;
  }
  A f[kWarps], lsum = 0;
  for (int w = 0; w < kWarps; ++w) {
    f[w] = m_s[w] == -INFINITY ? A(0) : detail::exp_acc(m_s[w] - mx);
    lsum += l_s[w] * f[w];
  }
  for (int64_t i = threadIdx.x; i < a.dv; i += blockDim.x) {
    A o = 0;
    for (int w = 0; w < kWarps; ++w) o += o_s[w * a.dv + i] * f[w];
    ws_o[at * a.dv + i] = o;
  }
  if (threadIdx.x == 0) ws_m[at] = mx, ws_l[at] = lsum;
}

template <typename T>
__global__ void paged_decode_merge(PagedDecodeArgs a, int64_t splits, const typename detail::Acc<T>::type* ws_o,
                                   const typename detail::Acc<T>::type* ws_m, const typename detail::Acc<T>::type* ws_l) {
  using A = typename detail::Acc<T>::type;
  const int64_t bh = blockIdx.x;
  A mx = -INFINITY;
  for (int64_t s = 0; s < splits; ++s) mx = max(mx, ws_m[bh * splits + s]);
  T* out = static_cast<T*>(a.out) + bh * a.dv;
  A lsum = 0;
  if (mx != -INFINITY)
    for (int64_t s = 0; s < splits; ++s)
      if (ws_l[bh * splits + s] > 0) lsum += ws_l[bh * splits + s] * detail::exp_acc(ws_m[bh * splits + s] - mx);
  for (int64_t i = threadIdx.x; i < a.dv; i += blockDim.x) {
    A o = 0;
    if (lsum > 0) {
      for (int64_t s = 0; s < splits; ++s) {
        const int64_t at = bh * splits + s;
        if (ws_l[at] > 0) o += ws_o[at * a.dv + i] * detail::exp_acc(ws_m[at] - mx);
      }
      o /= lsum;
    }
    out[i] = detail::from_acc<T>(o);
  }
}

int64_t acc_bytes(DType dt) { return accumulator_of(dt) == DType::kFloat64 ? 8 : 4; }

}  // namespace

int64_t paged_decode_splits(const PagedDecodeArgs& a) {
  return std::max<int64_t>(1, std::min<int64_t>(256, (a.max_length + kKeysPerSplit - 1) / kKeysPerSplit));
}

int64_t paged_decode_workspace_bytes(const PagedDecodeArgs& a) {
  return a.batch * a.heads * paged_decode_splits(a) * (a.dv + 2) * acc_bytes(a.dt);
}

cudaError_t paged_decode_attention(const PagedDecodeArgs& a, void* workspace, cudaStream_t stream) {
  if (a.batch <= 0 || a.heads <= 0) return cudaSuccess;
  if (a.kv_heads <= 0 || a.heads % a.kv_heads != 0 || a.dv <= 0 || a.dv > kMaxV || a.dk <= 0 || a.block_size <= 0 ||
      (a.r == nullptr) != (a.dr == 0))
    return cudaErrorInvalidValue;
  const int64_t splits = paged_decode_splits(a), rows = a.batch * a.heads;
  const int64_t chunk = std::max<int64_t>(1, (a.max_length + splits - 1) / splits);
  const dim3 grid{unsigned(rows), unsigned(splits), 1};
  GRPO_DISPATCH_FLOATING(a.dt, {
    using A = typename detail::Acc<scalar_t>::type;
    A* ws_o = static_cast<A*>(workspace);
    A* ws_m = ws_o + rows * splits * a.dv;
    A* ws_l = ws_m + rows * splits;
    const size_t smem = size_t(a.dk + a.dr + kWarps * a.dv) * sizeof(A);
    paged_decode_split<scalar_t><<<grid, kWarps * 32, smem, stream>>>(a, chunk, ws_o, ws_m, ws_l);
    if (auto e = cudaGetLastError(); e != cudaSuccess) return e;
    paged_decode_merge<scalar_t><<<unsigned(rows), 128, 0, stream>>>(a, splits, ws_o, ws_m, ws_l);
  })
  return cudaGetLastError();
}

}  // namespace grpo::kernels
