// Vector helpers shared by the torch-free fp32 CPU kernels (softmax_cpu.cpp,
// paged_attention_cpu.cpp): fixed-length inner loops that GCC turns into vector code, a vectorizable
// e^x for non-positive arguments, and the multiversioning attribute that builds a function for
// AVX-512, AVX2+FMA and baseline x86-64 and picks one at load time.
#pragma once

#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
#define GRPO_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GRPO_SIMD_CLONES
#endif

namespace grpo::model::cpu::simd {

constexpr int64_t kLanes = 16;  // inner loops of fixed length, which GCC turns into vector code

// e^x for x <= 0 (x below -87 gives e^-87 ~ 1.6e-38 instead of a denormal or 0: no effect on a sum
// that holds at least one term of 1 or on p to fp32 precision). A polynomial the compiler
// vectorizes: range reduction by ln 2 and a degree-6 minimax polynomial on [-ln2/2, ln2/2],
// Cephes' expf coefficients, about 1 ulp. n = round(x / ln 2) by the 1.5 * 2^23 trick (round to
// nearest in the FPU's mode, no branch), r = x - n ln 2 in two parts.
inline __attribute__((always_inline)) float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const int32_t n = __builtin_bit_cast(int32_t, shifted) - 0x4B400000;
  const float nf = shifted - 12582912.0f;
  const float r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * __builtin_bit_cast(float, (n + 127) << 23);
}

}  // namespace grpo::model::cpu::simd
