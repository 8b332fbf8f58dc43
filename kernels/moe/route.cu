// moe_route_topk: one warp per token. The warp writes the token's choice scores to shared memory,
// lanes < n_group rank their groups (sum of the two best), repeated warp arg-max picks the groups
// and then the experts. Arg-max ties go to the lower index on every step, which makes the order
// deterministic (the reference's unsorted topk order is the CPU's).
#include "kernels/moe/api.h"

#include <math_constants.h>

#include "kernels/common/device.cuh"

namespace grpo::kernels {
namespace {

constexpr int kWarps = 4;

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) {
      v = ov;
      i = oi;
    }
  }
}

__global__ void __launch_bounds__(kWarps * 32) route_kernel(const float* __restrict__ logits,
                                                            const float* __restrict__ bias, int64_t tokens,
                                                            int E, int n_group, int topk_group, int top_k,
                                                            int64_t* __restrict__ indices) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t token = int64_t(blockIdx.x) * kWarps + warp;
  if (token >= tokens) return;  // whole warps leave together: no block barrier below
  float* c = smem + warp * E;
  const float* l = logits + token * E;
  // (a NaN score -- a diverged model -- counts as -inf: every index below stays in range)
  for (int e = lane; e < E; e += 32) {
    const float v = 1.f / (1.f + expf(-l[e])) + bias[e];
    c[e] = isnan(v) ? -CUDART_INF_F : v;
  }
  __syncwarp();
  const int per_group = E / n_group;
  float gs = -CUDART_INF_F;
  if (lane < n_group) {
    float a = -CUDART_INF_F, b = -CUDART_INF_F;
    for (int e = lane * per_group; e < (lane + 1) * per_group; ++e) {
      const float v = c[e];
      if (v > a) {
        b = a;
        a = v;
      } else if (v > b) {
        b = v;
      }
    }
    gs = a + b;
  }
  unsigned keep = 0;
  bool taken = false;
  for (int r = 0; r < topk_group; ++r) {
    float v = (lane < n_group && !taken) ? gs : -CUDART_INF_F;
    int i = (lane < n_group && !taken) ? lane : 0x7fffffff;
    warp_argmax(v, i);
    keep |= 1u << i;
    if (lane == i) taken = true;
  }
  for (int e = lane; e < E; e += 32)
    if (!((keep >> (e / per_group)) & 1u)) c[e] = -CUDART_INF_F;
  __syncwarp();
  for (int r = 0; r < top_k; ++r) {
    float v = -CUDART_INF_F;
    int i = 0x7fffffff;
    for (int e = lane; e < E; e += 32)
      if (c[e] > v || (c[e] == v && e < i)) {
        v = c[e];
        i = e;
      }
    warp_argmax(v, i);
    if (lane == 0) {
      indices[token * top_k + r] = i;
      c[i] = -CUDART_INF_F;
    }
    __syncwarp();
  }
}

}  // namespace

cudaError_t moe_route_topk(const float* logits, const float* bias, int64_t tokens, int experts, int n_group,
                           int topk_group, int top_k, int64_t* indices, cudaStream_t stream) {
  if (experts < 2 || experts > kRouteMaxExperts || n_group < 1 || n_group > kRouteMaxGroups ||
      experts % n_group != 0 || experts / n_group < 2 || topk_group < 1 || topk_group > n_group || top_k < 1 ||
      top_k > kRouteMaxTopK || top_k > topk_group * (experts / n_group))
    return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  const int64_t blocks = (tokens + kWarps - 1) / kWarps;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  route_kernel<<<unsigned(blocks), kWarps * 32, size_t(kWarps) * experts * sizeof(float), stream>>>(
      logits, bias, tokens, experts, n_group, topk_group, top_k, indices);
  return cudaGetLastError();
}

}  // namespace grpo::kernels
