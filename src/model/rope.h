// Rotary position embedding: the rotation (rotate-half layout, or DeepSeek's interleaved pairs) as
// one autograd node, and YaRN's attention temperature, shared by the RoPE table
// (Transformer::Impl) and MLA's softmax scale.
#pragma once

#include <ATen/core/Tensor.h>

namespace grpo::model::detail {

// RoPE on `x` [.., d] with cos/sin [.., d] in the rotate-half layout (Hugging Face Llama):
// out = x cos + rotate_half(x) sin. interleave (DeepSeek): pairs (x0, x1), (x2, x3), .. each
// rotate by one frequency.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool interleave);

// YaRN's attention temperature: 0.1 * mscale * ln(scale) + 1 (1 when not extending).
double yarn_mscale(double scale, double mscale);

}  // namespace grpo::model::detail
