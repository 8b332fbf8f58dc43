// A flat little-endian byte stream of fixed-width numbers and length-prefixed strings: what one
// process writes, another reads back (rollout ranks' messages, the sandbox helper's requests).
// Header-only and torch-free: the grpo_sandbox helper compiles it without libgrpo.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "grpo/core/error.h"

namespace grpo::core {

class ByteWriter {
 public:
  void i64(int64_t v) { raw(&v, sizeof v); }
  void f64(double v) { raw(&v, sizeof v); }
  void str(const std::string& v) {
    i64(int64_t(v.size()));
    raw(v.data(), v.size());
  }
  void raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

/// Reads `n` bytes at `p` (which must outlive it); reading past the end is a grpo::Error naming
/// `what` (the message's sender).
class ByteReader {
 public:
  ByteReader(const void* p, size_t n, std::string what) : p_(static_cast<const uint8_t*>(p)), n_(n), what_(std::move(what)) {}
  int64_t i64() {
    int64_t v;
    raw(&v, sizeof v);
    return v;
  }
  double f64() {
    double v;
    raw(&v, sizeof v);
    return v;
  }
  std::string str() {
    const int64_t n = i64();
    GRPO_CHECK(n >= 0, "{}: a message holds a negative length", what_);
    need(size_t(n));
    std::string v(reinterpret_cast<const char*>(p_ + at_), size_t(n));
    at_ += size_t(n);
    return v;
  }
  void raw(void* v, size_t n) {
    need(n);
    std::memcpy(v, p_ + at_, n);
    at_ += n;
  }
  bool done() const { return at_ == n_; }

 private:
  void need(size_t n) const {
    GRPO_CHECK(at_ + n <= n_, "{}: a message ends after {} of {} bytes", what_, n_, at_ + n);
  }
  const uint8_t* p_;
  size_t n_, at_ = 0;
  std::string what_;
};

}  // namespace grpo::core
