// Row gathers for the MoE dispatch: one block per output row (or per (token, slot) pair for
// row_dots), threads strided over the row's width, sums in the accumulator type. Every output
// element is written by exactly one thread, so there are no atomics.
#include "kernels/moe/api.h"

#include "kernels/common/device.cuh"

namespace grpo::kernels {
namespace {

using detail::Acc;
using detail::from_acc;
using detail::to_acc;

constexpr int kThreads = 128;

template <typename T>
__global__ void __launch_bounds__(kThreads) gather_rows_kernel(const T* __restrict__ src, const int64_t* __restrict__ index,
                                                               const typename Acc<T>::type* __restrict__ scale,
                                                               int64_t width, T* __restrict__ dst) {
  const int64_t i = blockIdx.x;
  const T* s = src + index[i] * width;
  T* d = dst + i * width;
  if (scale) {
    const auto a = scale[i];
    for (int64_t h = threadIdx.x; h < width; h += kThreads) d[h] = from_acc<T>(to_acc(s[h]) * a);
  } else {
    for (int64_t h = threadIdx.x; h < width; h += kThreads) d[h] = s[h];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) gather_sum_rows_kernel(const T* __restrict__ src, const int64_t* __restrict__ pos,
                                                                   const typename Acc<T>::type* __restrict__ weights,
                                                                   int k, int64_t width, T* __restrict__ dst) {
  using A = typename Acc<T>::type;
  const int64_t t = blockIdx.x;
  const int64_t* p = pos + t * k;
  const A* w = weights ? weights + t * k : nullptr;
  T* d = dst + t * width;
  for (int64_t h = threadIdx.x; h < width; h += kThreads) {
    A acc = A(0);
    for (int j = 0; j < k; ++j) acc += (w ? w[j] : A(1)) * to_acc(src[p[j] * width + h]);
    d[h] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) row_dots_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                                            const int64_t* __restrict__ pos, int k, int64_t width,
                                                            typename Acc<T>::type* __restrict__ out) {
  using A = typename Acc<T>::type;
  const int64_t tj = blockIdx.x, t = tj / k;
  const T* ar = a + t * width;
  const T* br = b + pos[tj] * width;
  A acc = A(0);
  for (int64_t h = threadIdx.x; h < width; h += kThreads) acc += to_acc(ar[h]) * to_acc(br[h]);
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  __shared__ A warps[kThreads / 32];
  if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    A r = A(0);
    for (int w = 0; w < kThreads / 32; ++w) r += warps[w];
    out[tj] = r;
  }
}

inline bool grid_ok(int64_t n) { return n <= 0x7fffffff; }

}  // namespace

cudaError_t moe_gather_rows(DType dt, const void* src, const int64_t* index, const void* scale, int64_t rows,
                            int64_t width, void* dst, cudaStream_t stream) {
  if (rows == 0 || width == 0) return cudaSuccess;
  if (!grid_ok(rows)) return cudaErrorInvalidValue;
  GRPO_DISPATCH_FLOATING(dt, {
    using A = typename Acc<scalar_t>::type;
    gather_rows_kernel<scalar_t><<<unsigned(rows), kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(src), index, static_cast<const A*>(scale), width, static_cast<scalar_t*>(dst));
  })
  return cudaGetLastError();
}

cudaError_t moe_gather_sum_rows(DType dt, const void* src, const int64_t* pos, const void* weights, int64_t tokens,
                                int k, int64_t width, void* dst, cudaStream_t stream) {
  if (tokens == 0 || width == 0) return cudaSuccess;
  if (!grid_ok(tokens) || k < 1) return cudaErrorInvalidValue;
  GRPO_DISPATCH_FLOATING(dt, {
    using A = typename Acc<scalar_t>::type;
    gather_sum_rows_kernel<scalar_t><<<unsigned(tokens), kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(src), pos, static_cast<const A*>(weights), k, width,
        static_cast<scalar_t*>(dst));
  })
  return cudaGetLastError();
}

cudaError_t moe_row_dots(DType dt, const void* a, const void* b, const int64_t* pos, int64_t tokens, int k,
                         int64_t width, void* out, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  if (!grid_ok(tokens * k) || k < 1) return cudaErrorInvalidValue;
  GRPO_DISPATCH_FLOATING(dt, {
    using A = typename Acc<scalar_t>::type;
    row_dots_kernel<scalar_t><<<unsigned(tokens * k), kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(a), static_cast<const scalar_t*>(b), pos, k, width, static_cast<A*>(out));
  })
  return cudaGetLastError();
}

}  // namespace grpo::kernels
