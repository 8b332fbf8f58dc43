// The fused CPU softmax passes of softmax_cpu.h. exp is simd_cpu.h's polynomial, valid here
// because every argument is <= 0 (z - max, log p).
#include "softmax_cpu.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "simd_cpu.h"

namespace grpo::model::cpu {
namespace {

using simd::exp_nonpositive;
using simd::kLanes;

inline __attribute__((always_inline)) float row_max(const float* row, int64_t cols) {
  float acc[kLanes];
  for (int64_t k = 0; k < kLanes; ++k) acc[k] = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= cols; j += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) acc[k] = acc[k] > row[j + k] ? acc[k] : row[j + k];
  float mx = -std::numeric_limits<float>::infinity();
  for (; j < cols; ++j) mx = mx > row[j] ? mx : row[j];
  for (int64_t k = 0; k < kLanes; ++k) mx = mx > acc[k] ? mx : acc[k];
  return mx;
}

}  // namespace

GRPO_SIMD_CLONES
void softmax_fold(const float* z, int64_t ld, int64_t row_begin, int64_t row_end, int64_t cols, const int64_t* tgt,
                  int64_t c0, float inv_t, float* m, float* s, float* q, float* zt) {
  for (int64_t i = row_begin; i < row_end; ++i) {
    const float* row = z + i * ld;
    const float M = std::max(m[i], row_max(row, cols) * inv_t);  // inv_t > 0
    float se[kLanes] = {}, qe[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= cols; j += kLanes)
      for (int64_t k = 0; k < kLanes; ++k) {
        const float za = row[j + k] * inv_t;
        const float e = exp_nonpositive(za - M);
        se[k] += e;
        qe[k] += e * za;
      }
    for (; j < cols; ++j) {
      const float za = row[j] * inv_t;
      const float e = exp_nonpositive(za - M);
      se[0] += e;
      qe[0] += e * za;
    }
    float st = 0, qt = 0;
    for (int64_t k = 0; k < kLanes; ++k) st += se[k], qt += qe[k];
    const float keep = std::exp(m[i] - M);  // 0 for the first block (m = -inf)
    s[i] = s[i] * keep + st;
    q[i] = q[i] * keep + qt;
    m[i] = M;
    const int64_t t = tgt[i] - c0;
    if (t >= 0 && t < cols) zt[i] = row[t] * inv_t;
  }
}

GRPO_SIMD_CLONES
void softmax_grad(const float* z, int64_t ld, int64_t row_begin, int64_t row_end, int64_t cols, const int64_t* tgt,
                  int64_t c0, float inv_t, const float* lse, const float* ent, const float* g_logp, const float* g_ent,
                  float* dz, int64_t ldz) {
  for (int64_t i = row_begin; i < row_end; ++i) {
    const float* row = z + i * ld;
    float* out = dz + i * ldz;
    const float l = lse[i], gl = g_logp ? g_logp[i] : 0.0f;
    // dz = -p (a lp + b) inv_t with lp = log p: a = g_H, b = g_H H + g_logp (a = 0 without g_H)
    const float a = g_ent ? g_ent[i] : 0.0f, b = g_ent ? g_ent[i] * ent[i] + gl : gl;
    for (int64_t j = 0; j < cols; ++j) {
      const float lp = row[j] * inv_t - l;
      out[j] = -exp_nonpositive(lp) * (lp * a + b) * inv_t;
    }
    const int64_t t = tgt[i] - c0;
    if (g_logp && t >= 0 && t < cols) out[t] += gl * inv_t;
  }
}

}  // namespace grpo::model::cpu
