// Parsing and validation of a safetensors header, torch-free (so that it can be fuzzed on its
// own). After parse_safetensors_header() succeeds, every tensor's byte range lies inside the
// buffer, matches its shape and dtype, and no two ranges overlap.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace grpo::io {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;            // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // absolute byte offsets in the file
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // file order
  std::map<std::string, std::string> metadata;
};

/// Bytes per element of a safetensors dtype name; 0 if unknown.
uint64_t safetensors_dtype_size(const std::string& dtype);

/// Parses the header of a safetensors file held in bytes[0, size). Throws grpo::Error naming
/// `origin` and the offending tensor for anything malformed (never reads outside the buffer).
SafetensorsHeader parse_safetensors_header(const char* bytes, uint64_t size, const std::string& origin);

}  // namespace grpo::io
