// Device-side helpers shared by the kernels: element loads/stores in the accumulator type, warp
// and block reductions, and the dispatch from DType to a template instantiation. Only .cu files
// include this.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/dtype.h"

namespace grpo::kernels::detail {

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T from_acc(float v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half(v); }
template <typename T> __device__ __forceinline__ T from_acc(double v);
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }

__device__ __forceinline__ float exp_acc(float v) { return __expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return exp(v); }

template <typename F, typename T> __device__ __forceinline__ T warp_reduce(T v, F op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace grpo::kernels::detail

// Calls `body` with `scalar_t` bound to the CUDA type of `dt` (inside a lambda: `body` is a
// generic lambda taking a tag). Unknown types return cudaErrorInvalidValue from the caller.
#define GRPO_DISPATCH_FLOATING(dt, ...)                                                     \
  switch (dt) {                                                                            \
    case ::grpo::kernels::DType::kFloat32: { using scalar_t = float; __VA_ARGS__ } break;  \
    case ::grpo::kernels::DType::kFloat64: { using scalar_t = double; __VA_ARGS__ } break; \
    case ::grpo::kernels::DType::kBFloat16: { using scalar_t = __nv_bfloat16; __VA_ARGS__ } break; \
    case ::grpo::kernels::DType::kFloat16: { using scalar_t = __half; __VA_ARGS__ } break; \
    default: return cudaErrorInvalidValue;                                                 \
  }
