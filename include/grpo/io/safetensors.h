// safetensors files: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}} padded with
// spaces to 8 bytes, then the raw little-endian tensor bytes. Used for checkpoints (model and
// optimizer state) and, in issue #3, Hugging Face weights.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace grpo::io {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// Writes tensors (any layout; written contiguous, CPU) to `path`. Names must be unique.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads every tensor of `path` into CPU tensors. A malformed file (bad header length, bad JSON,
/// unknown dtype, offsets out of range or overlapping, size not matching the shape) throws
/// grpo::Error naming the file and the tensor.
NamedTensors load_safetensors(const std::string& path,
                              std::map<std::string, std::string>* metadata = nullptr);

}  // namespace grpo::io
