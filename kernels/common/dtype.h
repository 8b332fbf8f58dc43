// Element types the kernels accept, named without torch (the wrappers in src/ map at::ScalarType
// onto this). Accumulation is fp32 for the 16-bit types and fp32 itself, fp64 for fp64.
#pragma once

namespace grpo::kernels {

enum class DType { kFloat32, kFloat64, kBFloat16, kFloat16 };

/// The accumulator type of `t`: fp64 for fp64, fp32 otherwise.
inline constexpr DType accumulator_of(DType t) { return t == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32; }

}  // namespace grpo::kernels
