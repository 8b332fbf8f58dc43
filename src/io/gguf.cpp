// GGUF reading (io/gguf.h). The header is parsed through one bounds-checked cursor, so every
// truncation names what was being read; tensor data is memory-mapped and dequantized block by
// block in parallel. Dequantization does what ggml and transformers do, in the same float order
// (scale times quant, then plus the minimum; this file is built with -ffp-contract=off so the
// compiler cannot fuse the two into one rounding).
#include "grpo/io/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "grpo/core/error.h"

namespace grpo::io {
namespace {

constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kBF16 = 30;

struct TypeInfo {
  const char* name;
  int64_t block;   // elements per block
  int64_t bytes;   // bytes per block (0: unknown size)
};

TypeInfo type_info(uint32_t t) {
  switch (t) {
    case 0: return {"F32", 1, 4};
    case 1: return {"F16", 1, 2};
    case 2: return {"Q4_0", 32, 18};
    case 3: return {"Q4_1", 32, 20};
    case 6: return {"Q5_0", 32, 22};
    case 7: return {"Q5_1", 32, 24};
    case 8: return {"Q8_0", 32, 34};
    case 9: return {"Q8_1", 32, 36};
    case 10: return {"Q2_K", 256, 84};
    case 11: return {"Q3_K", 256, 110};
    case 12: return {"Q4_K", 256, 144};
    case 13: return {"Q5_K", 256, 176};
    case 14: return {"Q6_K", 256, 210};
    case 15: return {"Q8_K", 256, 292};
    case 24: return {"I8", 1, 1};
    case 25: return {"I16", 1, 2};
    case 26: return {"I32", 1, 4};
    case 27: return {"I64", 1, 8};
    case 28: return {"F64", 1, 8};
    case 30: return {"BF16", 1, 2};
    default: return {nullptr, 0, 0};
  }
}

const char* value_type_name(uint32_t t) {
  static const char* names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                "bool", "string", "array", "uint64", "int64", "float64"};
  return t < 13 ? names[t] : "unknown";
}

// Reads the header; every read is checked against the end of the file.
class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t size, const std::string& path) : p_(p), size_(size), path_(path) {}
  void need(uint64_t n, const std::string& what) const {
    if (n > size_ - pos_)
      fail("{}: truncated GGUF file: {} bytes, but reading {} at byte {} needs {} more", path_, size_, what,
           pos_, n);
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string(const std::string& what) {
    const uint64_t n = read<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }
  uint64_t pos() const { return pos_; }

 private:
  const uint8_t* p_;
  uint64_t size_, pos_ = 0;
  const std::string& path_;
};

GgufValue read_value(Cursor& c, uint32_t type, const std::string& key, const std::string& path, bool in_array) {
  GgufValue v;
  v.type = static_cast<GgufValue::Type>(type);
  const std::string what = "the value of metadata key '" + key + "'";
  switch (type) {
    case GgufValue::kUint8: v.integer = c.read<uint8_t>(what); break;
    case GgufValue::kInt8: v.integer = c.read<int8_t>(what); break;
    case GgufValue::kUint16: v.integer = c.read<uint16_t>(what); break;
    case GgufValue::kInt16: v.integer = c.read<int16_t>(what); break;
    case GgufValue::kUint32: v.integer = c.read<uint32_t>(what); break;
    case GgufValue::kInt32: v.integer = c.read<int32_t>(what); break;
    case GgufValue::kFloat32: v.number = c.read<float>(what); break;
    case GgufValue::kBool: {
      const uint8_t b = c.read<uint8_t>(what);
      GRPO_CHECK(b <= 1, "{}: metadata key '{}': a bool must be 0 or 1, found {}", path, key, b);
      v.integer = b;
      break;
    }
    case GgufValue::kString: v.string = c.string(what); break;
    case GgufValue::kUint64: {
      const uint64_t u = c.read<uint64_t>(what);
      GRPO_CHECK(u <= uint64_t(INT64_MAX), "{}: metadata key '{}': {} does not fit in int64", path, key, u);
      v.integer = static_cast<int64_t>(u);
      break;
    }
    case GgufValue::kInt64: v.integer = c.read<int64_t>(what); break;
    case GgufValue::kFloat64: v.number = c.read<double>(what); break;
    case GgufValue::kArray: {
      GRPO_CHECK(!in_array, "{}: metadata key '{}': arrays of arrays are not supported", path, key);
      const uint32_t et = c.read<uint32_t>(what);
      GRPO_CHECK(et <= 12 && et != GgufValue::kArray, "{}: metadata key '{}': unknown array element type {}",
                 path, key, et);
      v.array_type = static_cast<GgufValue::Type>(et);
      v.array_size = c.read<uint64_t>(what);
      // each element takes at least one byte: a count past the file's end is a truncation
      c.need(v.array_size, what);
      if (et == GgufValue::kString) v.strings.reserve(v.array_size);
      else v.numbers.reserve(v.array_size);
      for (uint64_t i = 0; i < v.array_size; ++i) {
        GgufValue e = read_value(c, et, key, path, true);
        if (et == GgufValue::kString) v.strings.push_back(std::move(e.string));
        else v.numbers.push_back(et == GgufValue::kFloat32 || et == GgufValue::kFloat64 ? e.number
                                                                                         : double(e.integer));
      }
      break;
    }
    default:
      fail("{}: metadata key '{}' has unknown value type {} (GGUF value types are 0-12)", path, key, type);
  }
  return v;
}

bool is_integer(GgufValue::Type t) {
  return t <= GgufValue::kInt32 || t == GgufValue::kUint64 || t == GgufValue::kInt64;
}

std::string describe(const GgufValue& v) {
  if (v.type == GgufValue::kArray) return fmt::format("an array of {} {}", v.array_size, value_type_name(v.array_type));
  if (v.type == GgufValue::kString) return fmt::format("a string ('{}')", v.string.substr(0, 40));
  if (is_integer(v.type) || v.type == GgufValue::kBool) return fmt::format("a {} ({})", value_type_name(v.type), v.integer);
  return fmt::format("a {} ({})", value_type_name(v.type), v.number);
}

float half(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
}

// One block of 32 elements into out[0..32).
void dequant_block(uint32_t type, const uint8_t* b, float* out) {
  switch (type) {
    case kQ8_0: {
      const float d = half(b);
      for (int j = 0; j < 32; ++j) out[j] = d * float(int8_t(b[2 + j]));
      break;
    }
    case kQ4_0: {
      const float d = half(b);
      for (int j = 0; j < 16; ++j) {
        out[j] = d * float(int(b[2 + j] & 0xF) - 8);
        out[j + 16] = d * float(int(b[2 + j] >> 4) - 8);
      }
      break;
    }
    case kQ4_1: {
      const float d = half(b), m = half(b + 2);
      for (int j = 0; j < 16; ++j) {
        const float lo = d * float(b[4 + j] & 0xF), hi = d * float(b[4 + j] >> 4);
        out[j] = lo + m;
        out[j + 16] = hi + m;
      }
      break;
    }
    default: GRPO_ASSERT(false);
  }
}

}  // namespace

std::string ggml_type_name(uint32_t type) {
  const auto info = type_info(type);
  return info.name ? info.name : fmt::format("type {}", type);
}

struct GgufFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && size) munmap(addr, size);
  }
};

GgufFile::GgufFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("'{}' is not a readable file", path);
  }
  map_ = std::make_shared<Mapping>();
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > 0) {
    void* a = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED) {
      ::close(fd);
      fail("cannot map '{}': {}", path, std::strerror(errno));
    }
    map_->addr = a;
    map_->size = size;
  }
  ::close(fd);
  const auto* base = static_cast<const uint8_t*>(map_->addr);
  Cursor c(base, size, path_);
  const uint32_t magic = c.read<uint32_t>("the magic number");
  GRPO_CHECK(magic == 0x46554747u, "{}: not a GGUF file (the first 4 bytes are not 'GGUF')", path);
  version_ = c.read<uint32_t>("the version");
  GRPO_CHECK(version_ == 2 || version_ == 3, "{}: GGUF version {} is not supported (expected 2 or 3)", path,
             version_);
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_keys = c.read<uint64_t>("the metadata key count");
  c.need(n_keys, fmt::format("{} metadata keys", n_keys));
  for (uint64_t i = 0; i < n_keys; ++i) {
    std::string key = c.string(fmt::format("the name of metadata key {} of {}", i, n_keys));
    const uint32_t type = c.read<uint32_t>("the type of metadata key '" + key + "'");
    GRPO_CHECK(!metadata_.count(key), "{}: metadata key '{}' appears twice", path, key);
    metadata_[key] = read_value(c, type, key, path, false);
  }
  c.need(n_tensors, fmt::format("{} tensor descriptions", n_tensors));
  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.string(fmt::format("the name of tensor {} of {}", i, n_tensors));
    const std::string what = "the description of tensor '" + t.name + "'";
    const uint32_t nd = c.read<uint32_t>(what);
    GRPO_CHECK(nd >= 1 && nd <= 4, "{}: tensor '{}' has {} dimensions (GGUF allows 1-4)", path, t.name, nd);
    uint64_t n = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t v = c.read<uint64_t>(what);
      GRPO_CHECK(v >= 1 && v < (1ull << 40) && n <= (1ull << 48) / v, "{}: tensor '{}' has an invalid dimension "
                 "{} (or more than 2^48 elements)", path, t.name, v);
      n *= v;
      t.dims.push_back(static_cast<int64_t>(v));
    }
    t.ggml_type = c.read<uint32_t>(what);
    t.offset = c.read<uint64_t>(what);
    const auto info = type_info(t.ggml_type);
    if (info.name) {
      GRPO_CHECK(t.dims[0] % info.block == 0, "{}: tensor '{}' ({}) has rows of {} elements, not a multiple of "
                 "its block of {}", path, t.name, info.name, t.dims[0], info.block);
      t.bytes = n / info.block * info.bytes;
    }
    tensors_.push_back(std::move(t));
  }
  int64_t alignment = 32;
  if (has("general.alignment")) {
    alignment = get_int("general.alignment");
    GRPO_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0 && alignment <= 65536,
               "{}: metadata key 'general.alignment' must be a power of two, found {}", path, alignment);
  }
  data_start_ = (c.pos() + alignment - 1) / alignment * alignment;
  for (const auto& t : tensors_) {
    GRPO_CHECK(t.offset % alignment == 0, "{}: tensor '{}' starts at data offset {}, not a multiple of the "
               "alignment {}", path, t.name, t.offset, alignment);
    const uint64_t end = data_start_ + t.offset + t.bytes;
    GRPO_CHECK(t.offset <= size && end >= t.offset && end <= size,
               "{}: truncated GGUF file: tensor '{}' ({}, {} bytes) ends at byte {}, but the file has {} bytes",
               path, t.name, ggml_type_name(t.ggml_type), t.bytes, data_start_ + t.offset + t.bytes, size);
  }
}

GgufFile::~GgufFile() = default;

namespace {
const GgufValue& value_of(const std::map<std::string, GgufValue>& m, const std::string& key,
                          const std::string& path, const char* expected) {
  auto it = m.find(key);
  GRPO_CHECK(it != m.end(), "{}: metadata key '{}' ({}) is missing", path, key, expected);
  return it->second;
}
}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  const auto& v = value_of(metadata_, key, path_, "a string");
  GRPO_CHECK(v.type == GgufValue::kString, "{}: metadata key '{}' must be a string, found {}", path_, key,
             describe(v));
  return v.string;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const auto& v = value_of(metadata_, key, path_, "an integer");
  GRPO_CHECK(is_integer(v.type), "{}: metadata key '{}' must be an integer, found {}", path_, key, describe(v));
  return v.integer;
}

double GgufFile::get_float(const std::string& key) const {
  const auto& v = value_of(metadata_, key, path_, "a number");
  GRPO_CHECK(v.type == GgufValue::kFloat32 || v.type == GgufValue::kFloat64 || is_integer(v.type),
             "{}: metadata key '{}' must be a number, found {}", path_, key, describe(v));
  return is_integer(v.type) ? double(v.integer) : v.number;
}

bool GgufFile::get_bool(const std::string& key) const {
  const auto& v = value_of(metadata_, key, path_, "a bool");
  GRPO_CHECK(v.type == GgufValue::kBool, "{}: metadata key '{}' must be a bool, found {}", path_, key, describe(v));
  return v.integer != 0;
}

std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  const auto& v = value_of(metadata_, key, path_, "an array of strings");
  GRPO_CHECK(v.type == GgufValue::kArray && v.array_type == GgufValue::kString,
             "{}: metadata key '{}' must be an array of strings, found {}", path_, key, describe(v));
  return v.strings;
}

std::vector<double> GgufFile::get_numbers(const std::string& key) const {
  const auto& v = value_of(metadata_, key, path_, "an array of numbers");
  GRPO_CHECK(v.type == GgufValue::kArray && v.array_type != GgufValue::kString,
             "{}: metadata key '{}' must be an array of numbers, found {}", path_, key, describe(v));
  return v.numbers;
}

std::optional<int64_t> GgufFile::find_int(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_int(key);
}

std::optional<std::string> GgufFile::find_string(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

at::Tensor GgufFile::dequantize(const GgufTensorInfo& t) const {
  const uint32_t type = t.ggml_type;
  GRPO_CHECK(type == kF32 || type == kF16 || type == kBF16 || type == kQ8_0 || type == kQ4_0 || type == kQ4_1,
             "{}: tensor '{}' is stored as {}, which grpo does not dequantize (supported: F32, F16, BF16, Q8_0, "
             "Q4_0, Q4_1)", path_, t.name, ggml_type_name(type));
  std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
  auto out = at::empty(shape, at::kFloat);
  const int64_t n = out.numel();
  const auto* src = static_cast<const uint8_t*>(map_->addr) + data_start_ + t.offset;
  float* dst = out.data_ptr<float>();
  if (type == kF32) {
    std::memcpy(dst, src, n * sizeof(float));
    return out;
  }
  if (type == kF16 || type == kBF16) {
    at::parallel_for(0, n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        dst[i] = type == kF16 ? float(c10::Half(bits, c10::Half::from_bits()))
                              : float(c10::BFloat16(bits, c10::BFloat16::from_bits()));
      }
    });
    return out;
  }
  const int64_t block_bytes = type_info(type).bytes, blocks = n / 32;
  at::parallel_for(0, blocks, 2048, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dequant_block(type, src + i * block_bytes, dst + i * 32);
  });
  return out;
}

}  // namespace grpo::io
