// Any bytes as a safetensors file: the parser either accepts them, with every range inside the
// buffer and matching its shape, or throws grpo::Error. Never crashes or reads out of bounds.
#include <cstddef>
#include <cstdint>

#include "grpo/core/error.h"
#include "grpo/io/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto h = grpo::io::parse_safetensors_header(reinterpret_cast<const char*>(data), size, "fuzz");
    for (const auto& t : h.tensors) {
      if (t.begin > t.end || t.end > size) __builtin_trap();
      volatile uint8_t sink = 0;
      for (uint64_t i = t.begin; i < t.end; ++i) sink ^= data[i];  // touch every byte (ASan checks)
    }
  } catch (const grpo::Error&) {
  }
  return 0;
}
