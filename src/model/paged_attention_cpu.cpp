// The fp32 CPU decode attention of paged_attention_cpu.h. Per (sequence, KV head): the query heads
// that share the KV head are scaled once, then each block of the cache is read once: scores for all
// those heads, an online-softmax update (running max m, sum l, rescaled accumulator), and the
// weighted values. exp is simd_cpu.h's polynomial (every argument is score - running max <= 0).
#include "paged_attention_cpu.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "simd_cpu.h"

namespace grpo::model::cpu {
namespace {

using simd::exp_nonpositive;
using simd::kLanes;

inline __attribute__((always_inline)) float dot(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= n; d += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) acc[k] += a[d + k] * b[d + k];
  float t = 0;
  for (; d < n; ++d) t += a[d] * b[d];
  for (int64_t k = 0; k < kLanes; ++k) t += acc[k];
  return t;
}

}  // namespace

GRPO_SIMD_CLONES
void paged_decode_attention(const PagedDecodeCpu& a, int64_t item_begin, int64_t item_end) {
  const int64_t KV = a.kv_heads, g = a.heads / a.kv_heads, dq = a.dk + a.dr, dv = a.dv, bs = a.block_size;
  std::vector<float> qs(static_cast<size_t>(g * dq)), acc(static_cast<size_t>(g * dv)), m(static_cast<size_t>(g)),
      l(static_cast<size_t>(g)), s(static_cast<size_t>(g * bs));
  for (int64_t item = item_begin; item < item_end; ++item) {
    const int64_t b = item / KV, h = item % KV, len = a.lengths[b];
    const float* q = a.q + (b * a.heads + h * g) * dq;
    for (int64_t i = 0; i < g * dq; ++i) qs[size_t(i)] = q[i] * a.scale;
    std::fill(acc.begin(), acc.end(), 0.0f);
    std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
    std::fill(l.begin(), l.end(), 0.0f);
    for (int64_t start = 0; start < len; start += bs) {
      const int64_t base = int64_t(a.block_table[b * a.max_blocks + start / bs]) * bs, n = std::min(bs, len - start);
      for (int64_t j = 0; j < n; ++j) {  // scores s[i, j]
        const int64_t slot = (base + j) * KV + h;
        const float* kp = a.k + slot * a.dk;
        const float* rp = a.r ? a.r + slot * a.dr : nullptr;
        for (int64_t i = 0; i < g; ++i) {
          const float* qi = qs.data() + i * dq;
          float t = dot(qi, kp, a.dk);
          if (rp) t += dot(qi + a.dk, rp, a.dr);
          s[size_t(i * bs + j)] = t;
        }
      }
      for (int64_t i = 0; i < g; ++i) {  // online softmax: s[i, j] becomes p = exp(s - m_new)
        float* si = s.data() + i * bs;
        float mb = m[size_t(i)];
        for (int64_t j = 0; j < n; ++j) mb = std::max(mb, si[j]);
        if (mb > m[size_t(i)]) {
          const float c = exp_nonpositive(m[size_t(i)] - mb);  // m = -inf: c ~ 1e-38 times l = acc = 0
          float* ai = acc.data() + i * dv;
          for (int64_t d = 0; d < dv; ++d) ai[d] *= c;
          l[size_t(i)] *= c;
          m[size_t(i)] = mb;
        }
        float sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += si[j] = exp_nonpositive(si[j] - mb);
        l[size_t(i)] += sum;
      }
      for (int64_t j = 0; j < n; ++j) {  // acc[i] += p[i, j] v[j]
        const float* vp = a.v + ((base + j) * KV + h) * dv;
        for (int64_t i = 0; i < g; ++i) {
          const float p = s[size_t(i * bs + j)];
          float* ai = acc.data() + i * dv;
          for (int64_t d = 0; d < dv; ++d) ai[d] += p * vp[d];
        }
      }
    }
    float* out = a.out + (b * a.heads + h * g) * dv;
    for (int64_t i = 0; i < g; ++i) {
      const float inv = l[size_t(i)] > 0 ? 1.0f / l[size_t(i)] : 0.0f;
      for (int64_t d = 0; d < dv; ++d) out[i * dv + d] = acc[size_t(i * dv + d)] * inv;
    }
  }
}

}  // namespace grpo::model::cpu
