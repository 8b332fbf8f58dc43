// Kernels of kernels/logprob/api.h. One block per row: the row's columns are strided over the
// block's threads, each keeps an online-softmax triple (m, s, q) in registers, and the triples are
// merged with warp shuffles and then across warps in shared memory. A row is owned by one block,
// so the running statistics need no atomics and the result does not depend on scheduling.
#include "kernels/logprob/api.h"

#include <math_constants.h>

#include "kernels/common/device.cuh"

namespace grpo::kernels {
namespace {

using detail::Acc;
using detail::to_acc;

constexpr int kThreads = 256;

template <typename A> struct Triple {
  A m, s, q;  // max, sum exp(v - m), sum exp(v - m) v
};

template <typename A> __device__ __forceinline__ A neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return -CUDART_INF_F; }
template <> __device__ __forceinline__ double neg_inf<double>() { return -CUDART_INF; }

template <typename A> __device__ __forceinline__ Triple<A> merge(Triple<A> a, Triple<A> b) {
  const A M = a.m > b.m ? a.m : b.m;
  if (M == neg_inf<A>()) return {M, A(0), A(0)};
  const A ea = detail::exp_acc(a.m - M), eb = detail::exp_acc(b.m - M);
  return {M, a.s * ea + b.s * eb, a.q * ea + b.q * eb};
}

template <typename T>
__global__ void __launch_bounds__(kThreads) stats_update_kernel(const T* __restrict__ z, int64_t cols, int64_t ld,
                                                                const int64_t* __restrict__ targets,
                                                                int64_t col_begin, typename Acc<T>::type inv_t,
                                                                typename Acc<T>::type* m, typename Acc<T>::type* s,
                                                                typename Acc<T>::type* q, typename Acc<T>::type* zt) {
  using A = typename Acc<T>::type;
  const int64_t row = blockIdx.x;
  const T* zr = z + row * ld;
  Triple<A> t{neg_inf<A>(), A(0), A(0)};
  for (int64_t j = threadIdx.x; j < cols; j += kThreads) {
    const A v = to_acc(zr[j]) * inv_t;
    if (v > t.m) {
      const A e = detail::exp_acc(t.m - v);  // 0 while t.m is -inf
      t.s = t.s * e + A(1);
      t.q = t.q * e + v;
      t.m = v;
    } else {
      const A e = detail::exp_acc(v - t.m);
      t.s += e;
      t.q += e * v;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    Triple<A> u{__shfl_xor_sync(0xffffffffu, t.m, o), __shfl_xor_sync(0xffffffffu, t.s, o),
                __shfl_xor_sync(0xffffffffu, t.q, o)};
    t = merge(t, u);
  }
  __shared__ Triple<A> warps[kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warps[warp] = t;
  __syncthreads();
  if (threadIdx.x != 0) return;
  Triple<A> r{m[row], s[row], q[row]};
  for (int w = 0; w < kThreads / 32; ++w) r = merge(r, warps[w]);
  m[row] = r.m;
  s[row] = r.s;
  q[row] = r.q;
  const int64_t tc = targets[row] - col_begin;
  if (tc >= 0 && tc < cols) zt[row] = to_acc(zr[tc]) * inv_t;
}

template <typename A> __global__ void stats_init_kernel(int64_t rows, A* m, A* s, A* q, A* zt) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  m[i] = neg_inf<A>();
  s[i] = A(0);
  q[i] = A(0);
  zt[i] = A(0);
}

template <typename A>
__global__ void stats_finalize_kernel(int64_t rows, const A* m, const A* s, const A* q, const A* zt, A* logp,
                                      A* lse, A* entropy) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  const A l = m[i] + log(s[i]);
  lse[i] = l;
  logp[i] = zt[i] - l;
  if (entropy) entropy[i] = l - q[i] / s[i];
}

template <typename T>
__global__ void __launch_bounds__(kThreads) grad_kernel(const T* __restrict__ z, int64_t cols, int64_t ld,
                                                        const int64_t* __restrict__ targets, int64_t col_begin,
                                                        typename Acc<T>::type inv_t,
                                                        const typename Acc<T>::type* __restrict__ lse,
                                                        const typename Acc<T>::type* __restrict__ entropy,
                                                        const typename Acc<T>::type* __restrict__ g_logp,
                                                        const typename Acc<T>::type* __restrict__ g_ent,
                                                        typename Acc<T>::type* __restrict__ dz) {
  using A = typename Acc<T>::type;
  const int64_t row = blockIdx.x;
  const T* zr = z + row * ld;
  A* dr = dz + row * cols;
  const A l = lse[row];
  const A gl = g_logp ? g_logp[row] : A(0);
  const A ge = g_ent ? g_ent[row] : A(0);
  const A H = g_ent ? entropy[row] : A(0);
  const int64_t tc = targets[row] - col_begin;
  for (int64_t j = threadIdx.x; j < cols; j += kThreads) {
    const A lp = to_acc(zr[j]) * inv_t - l;
    const A p = detail::exp_acc(lp);
    A g = -gl * p - ge * p * (lp + H);
    if (j == tc) g += gl;
    dr[j] = g * inv_t;
  }
}

inline unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

}  // namespace

cudaError_t logprob_stats_init(DType acc, int64_t rows, void* m, void* s, void* q, void* zt, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (acc == DType::kFloat64)
    stats_init_kernel<double><<<blocks_for(rows, 256), 256, 0, stream>>>(
        rows, static_cast<double*>(m), static_cast<double*>(s), static_cast<double*>(q), static_cast<double*>(zt));
  else if (acc == DType::kFloat32)
    stats_init_kernel<float><<<blocks_for(rows, 256), 256, 0, stream>>>(
        rows, static_cast<float*>(m), static_cast<float*>(s), static_cast<float*>(q), static_cast<float*>(zt));
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

cudaError_t logprob_stats_update(DType dt, const void* z, int64_t rows, int64_t cols, int64_t ld,
                                 const int64_t* targets, int64_t col_begin, double inv_temperature, void* m, void* s,
                                 void* q, void* zt, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (rows > 0x7fffffff || ld < cols) return cudaErrorInvalidValue;
  GRPO_DISPATCH_FLOATING(dt, {
    using A = typename Acc<scalar_t>::type;
    stats_update_kernel<scalar_t><<<unsigned(rows), kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(z), cols, ld, targets, col_begin, A(inv_temperature), static_cast<A*>(m),
        static_cast<A*>(s), static_cast<A*>(q), static_cast<A*>(zt));
  })
  return cudaGetLastError();
}

cudaError_t logprob_stats_finalize(DType acc, int64_t rows, const void* m, const void* s, const void* q,
                                   const void* zt, void* logp, void* lse, void* entropy, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (acc == DType::kFloat64)
    stats_finalize_kernel<double><<<blocks_for(rows, 256), 256, 0, stream>>>(
        rows, static_cast<const double*>(m), static_cast<const double*>(s), static_cast<const double*>(q),
        static_cast<const double*>(zt), static_cast<double*>(logp), static_cast<double*>(lse),
        static_cast<double*>(entropy));
  else if (acc == DType::kFloat32)
    stats_finalize_kernel<float><<<blocks_for(rows, 256), 256, 0, stream>>>(
        rows, static_cast<const float*>(m), static_cast<const float*>(s), static_cast<const float*>(q),
        static_cast<const float*>(zt), static_cast<float*>(logp), static_cast<float*>(lse),
        static_cast<float*>(entropy));
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

cudaError_t logprob_grad(DType dt, const void* z, int64_t rows, int64_t cols, int64_t ld, const int64_t* targets,
                         int64_t col_begin, double inv_temperature, const void* lse, const void* entropy,
                         const void* g_logp, const void* g_entropy, void* dz, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (rows > 0x7fffffff || ld < cols || (g_entropy && !entropy)) return cudaErrorInvalidValue;
  GRPO_DISPATCH_FLOATING(dt, {
    using A = typename Acc<scalar_t>::type;
    grad_kernel<scalar_t><<<unsigned(rows), kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(z), cols, ld, targets, col_begin, A(inv_temperature),
        static_cast<const A*>(lse), static_cast<const A*>(entropy), static_cast<const A*>(g_logp),
        static_cast<const A*>(g_entropy), static_cast<A*>(dz));
  })
  return cudaGetLastError();
}

}  // namespace grpo::kernels
