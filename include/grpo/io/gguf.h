// GGUF files (llama.cpp's single-file checkpoints): a little-endian header ("GGUF", version 2 or 3,
// tensor and key counts), typed metadata key/value pairs, tensor descriptions (name, dimensions
// with the fastest first, ggml type, offset), then the aligned tensor data. The whole header is
// validated when the file is opened, so a truncated file, an unknown value type or a tensor that
// runs past the end is an error naming the file and the key or tensor before any data is used.
// Tensors are dequantized to fp32 on request: F32, F16, BF16, Q8_0, Q4_0, Q4_1 (others are an
// error naming the tensor and its type).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace grpo::io {

/// One metadata value. Arrays of strings keep their strings, arrays of numbers their values.
struct GgufValue {
  enum Type : uint32_t {
    kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
    kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
  };
  Type type = kUint8;
  Type array_type = kUint8;       // element type of an array
  int64_t integer = 0;            // integer and bool types
  double number = 0;              // float types (a float32 widened exactly)
  std::string string;
  std::vector<std::string> strings;  // array of strings
  std::vector<double> numbers;       // array of numbers or bools
  uint64_t array_size = 0;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // as stored: dims[0] is the fastest-varying (a row's length)
  uint32_t ggml_type = 0;
  uint64_t offset = 0;        // from the start of the data section
  uint64_t bytes = 0;
};

/// The name of a ggml type ("Q4_1"), or "type N" for one this reader does not know.
std::string ggml_type_name(uint32_t type);

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);
  ~GgufFile();
  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }

  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  /// Typed access: a missing key or one of another type is a grpo::Error naming the file, the key,
  /// what was expected and what was found. get_int accepts every integer type, get_float both floats.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<double> get_numbers(const std::string& key) const;
  std::optional<int64_t> find_int(const std::string& key) const;
  std::optional<std::string> find_string(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  /// The tensor dequantized to fp32, shaped with the slowest dimension first (a weight stored as
  /// dims {in, out} comes back [out, in], as PyTorch and Hugging Face hold it).
  at::Tensor dequantize(const GgufTensorInfo& tensor) const;

 private:
  struct Mapping;
  std::string path_;
  uint32_t version_ = 0;
  std::shared_ptr<Mapping> map_;
  uint64_t data_start_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace grpo::io
