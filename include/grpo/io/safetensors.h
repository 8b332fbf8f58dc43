// safetensors files: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}} padded with
// spaces to 8 bytes, then the raw little-endian tensor bytes. Used for checkpoints (model and
// optimizer state) and, in issue #3, Hugging Face weights.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace grpo::io {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// A safetensors file opened by memory mapping. The header is fully validated when the file is
/// opened (JSON, dtypes, shapes against byte ranges, ranges inside the file and not overlapping),
/// so later accesses never read out of bounds. Tensors returned by tensor() view the mapping
/// (copy-on-write) and keep it alive.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  /// Tensor names in file order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const;
  /// The tensor `name` (CPU, its stored dtype); throws grpo::Error naming file and tensor if absent.
  at::Tensor tensor(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  struct Entry;
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  std::vector<std::string> names_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  std::map<std::string, std::string> metadata_;
};

/// Writes tensors (any layout; written contiguous, CPU) to `path`. Names must be unique.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads every tensor of `path` into CPU tensors. A malformed file (bad header length, bad JSON,
/// unknown dtype, offsets out of range or overlapping, size not matching the shape) throws
/// grpo::Error naming the file and the tensor.
NamedTensors load_safetensors(const std::string& path,
                              std::map<std::string, std::string>* metadata = nullptr);

/// Loads a Hugging Face weights directory: `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json` (every listed tensor must be in its shard, no name twice).
NamedTensors load_safetensors_dir(const std::string& dir);

/// Writes `tensors` into `dir` as `model.safetensors`, or, when larger than `max_shard_bytes`,
/// as `model-0000i-of-0000n.safetensors` shards plus `model.safetensors.index.json`.
void save_safetensors_dir(const std::string& dir, const NamedTensors& tensors,
                          uint64_t max_shard_bytes = 5ull << 30,
                          const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace grpo::io
