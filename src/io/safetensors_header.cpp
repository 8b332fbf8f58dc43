#include "grpo/io/safetensors_header.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "grpo/core/error.h"

namespace grpo::io {
namespace {
constexpr uint64_t kMaxHeader = 100ull << 20;  // the format's own limit (100 MB)
}

uint64_t safetensors_dtype_size(const std::string& d) {
  static const std::map<std::string, uint64_t> sizes{
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
      {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsHeader parse_safetensors_header(const char* bytes, uint64_t size, const std::string& path) {
  GRPO_CHECK(size >= 8, "{}: not a safetensors file (only {} bytes)", path, size);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  GRPO_CHECK(n <= size - 8, "{}: header length {} is past the end of the file ({} bytes)", path, n, size);
  GRPO_CHECK(n <= kMaxHeader, "{}: header length {} exceeds the format's limit of {} bytes", path, n, kMaxHeader);
  nlohmann::ordered_json header;  // keeps the file's order
  try {
    header = nlohmann::ordered_json::parse(bytes + 8, bytes + 8 + n);
  } catch (const std::exception& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  GRPO_CHECK(header.is_object(), "{}: header must be a JSON object", path);
  const uint64_t data_start = 8 + n, data_size = size - data_start;
  SafetensorsHeader out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      GRPO_CHECK(it->is_object(), "{}: __metadata__ must be an object", path);
      for (auto m = it->begin(); m != it->end(); ++m)
        out.metadata[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
      continue;
    }
    const auto& e = *it;
    GRPO_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
               "{}: tensor '{}' needs dtype, shape and data_offsets", path, name);
    SafetensorsEntry ent;
    ent.name = name;
    ent.dtype = e["dtype"].is_string() ? e["dtype"].get<std::string>() : e["dtype"].dump();
    const uint64_t esize = safetensors_dtype_size(ent.dtype);
    GRPO_CHECK(esize > 0, "{}: tensor '{}' has unsupported dtype '{}'", path, name, ent.dtype);
    GRPO_CHECK(e["shape"].is_array(), "{}: tensor '{}' shape must be a list", path, name);
    uint64_t numel = 1;
    bool overflow = false;
    for (auto& s : e["shape"]) {
      GRPO_CHECK(s.is_number_unsigned(), "{}: tensor '{}' has a bad shape entry {}", path, name, s.dump());
      uint64_t v = s.get<uint64_t>();
      GRPO_CHECK(v <= (uint64_t(1) << 62), "{}: tensor '{}' has a shape entry {} that is too large", path,
                 name, v);
      ent.shape.push_back(static_cast<int64_t>(v));
      if (v != 0 && numel > (uint64_t(1) << 62) / v) overflow = true;
      numel *= v;
    }
    auto& off = e["data_offsets"];
    GRPO_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
               "{}: tensor '{}' has bad data_offsets", path, name);
    uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    GRPO_CHECK(b <= en && en <= data_size,
               "{}: tensor '{}' data [{}, {}) is outside the data section ({} bytes; file truncated?)",
               path, name, b, en, data_size);
    GRPO_CHECK(!overflow && numel <= (uint64_t(1) << 62) / esize && en - b == numel * esize,
               "{}: tensor '{}' has {} bytes, its shape and dtype need {}", path, name, en - b,
               overflow ? std::string("more than fits") : std::to_string(numel * esize));
    ent.begin = data_start + b;
    ent.end = data_start + en;
    ranges.emplace_back(b, en);
    out.tensors.push_back(std::move(ent));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    GRPO_CHECK(ranges[i].first >= ranges[i - 1].second || ranges[i - 1].first == ranges[i - 1].second ||
                   ranges[i].first == ranges[i].second,
               "{}: tensor data ranges overlap ([{}, {}) and [{}, {}))", path, ranges[i - 1].first,
               ranges[i - 1].second, ranges[i].first, ranges[i].second);
  return out;
}

}  // namespace grpo::io
