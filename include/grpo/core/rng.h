// Counter-based randomness. Every random choice in grpo is a pure function of a key (seed, stream,
// step, prompt index, sample index, position...), never of how many draws happened before it.
// So sampling does not depend on batch composition or on how prompts are spread over processes,
// and resuming from a checkpoint needs no generator state beyond the counters themselves.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace grpo::core {

/// SplitMix64 finaliser: a bijective 64-bit mixer with good avalanche.
constexpr uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Hash of a sequence of 64-bit words (order matters).
inline uint64_t hash_key(std::initializer_list<uint64_t> words) {
  uint64_t h = 0x6A09E667F3BCC909ull;
  for (uint64_t w : words) h = mix64(h ^ mix64(w));
  return h;
}

/// Uniform double in [0, 1) with 53 random bits.
inline double uniform01(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

/// Named streams, so that keys of different purposes never collide.
enum class Stream : uint64_t {
  kSampling = 1,     // rollout token sampling
  kTrainData = 2,    // training prompts
  kPretrainData = 3, // pretrain-stage demonstrations
  kEvalSampling = 4, // sampled evaluation
  kSplit = 5,        // train / held-out split
  kEvalData = 6,     // held-out prompt order
  kMiniBatchShuffle = 7,  // order of rollout rows across mini-batches
  kDatasetShuffle = 8,    // per-epoch order of JSONL datasets
  kSftData = 9,           // built-in task questions for rejection sampling / SFT data
};

/// A small deterministic generator seeded from a key, for loops that need several draws.
class KeyedRng {
 public:
  explicit KeyedRng(uint64_t key) : state_(key) {}
  uint64_t next() { return mix64(state_++ ^ 0xD1B54A32D192ED03ull); }
  double uniform() { return uniform01(next()); }
  /// Uniform integer in [lo, hi] (inclusive), lo <= hi.
  int64_t uniform_int(int64_t lo, int64_t hi) {
    uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(next() % span);
  }

 private:
  uint64_t state_;
};

}  // namespace grpo::core
