#include "grpo/io/safetensors.h"

#include <cstring>
#include <fstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"

namespace grpo::io {
namespace {

struct DType {
  const char* name;
  at::ScalarType type;
};
const DType kDTypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},   {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort},  {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

const char* dtype_name(at::ScalarType t) {
  for (auto& d : kDTypes)
    if (d.type == t) return d.name;
  fail("safetensors: cannot store dtype {}", c10::toString(t));
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  auto header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    GRPO_CHECK(!header.contains(name), "safetensors: duplicate tensor name '{}'", name);
    auto c = t.detach().to(at::kCPU).contiguous();
    uint64_t bytes = c.numel() * c.element_size();
    header[name] = {{"dtype", dtype_name(c.scalar_type())},
                    {"shape", std::vector<int64_t>(c.sizes().begin(), c.sizes().end())},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  GRPO_CHECK(out.good(), "cannot write '{}': {}", path, std::strerror(errno));
  uint64_t n = h.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(h.data(), h.size());
  for (auto& c : data) out.write(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  out.flush();
  GRPO_CHECK(out.good(), "error while writing '{}'", path);
}

NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::string bytes = core::read_file(path);
  GRPO_CHECK(bytes.size() >= 8, "{}: not a safetensors file (only {} bytes)", path, bytes.size());
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  GRPO_CHECK(n <= bytes.size() - 8, "{}: header length {} is past the end of the file ({} bytes)",
             path, n, bytes.size());
  nlohmann::ordered_json header;  // keeps the file's order
  try {
    header = nlohmann::ordered_json::parse(bytes.begin() + 8, bytes.begin() + 8 + n);
  } catch (const std::exception& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  GRPO_CHECK(header.is_object(), "{}: header must be a JSON object", path);
  const uint64_t data_size = bytes.size() - 8 - n;
  const char* base = bytes.data() + 8 + n;
  NamedTensors out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (metadata && it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          (*metadata)[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
      continue;
    }
    const auto& e = *it;
    const std::string& name = it.key();
    GRPO_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
               "{}: tensor '{}' needs dtype, shape and data_offsets", path, name);
    std::string dt = e["dtype"].is_string() ? e["dtype"].get<std::string>() : "?";
    const DType* d = nullptr;
    for (auto& x : kDTypes)
      if (dt == x.name) d = &x;
    GRPO_CHECK(d, "{}: tensor '{}' has unsupported dtype '{}'", path, name, dt);
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (auto& s : e["shape"]) {
      GRPO_CHECK(s.is_number_unsigned(), "{}: tensor '{}' has a bad shape entry {}", path, name, s.dump());
      shape.push_back(s.get<int64_t>());
      numel *= s.get<uint64_t>();
    }
    auto& off = e["data_offsets"];
    GRPO_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
               "{}: tensor '{}' has bad data_offsets", path, name);
    uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    GRPO_CHECK(b <= en && en <= data_size, "{}: tensor '{}' data [{}, {}) is outside the data section ({} bytes)",
               path, name, b, en, data_size);
    uint64_t esize = c10::elementSize(d->type);
    GRPO_CHECK(en - b == numel * esize, "{}: tensor '{}' has {} bytes, its shape and dtype need {}", path,
               name, en - b, numel * esize);
    ranges.emplace_back(b, en);
    auto t = at::empty(shape, at::TensorOptions().dtype(d->type));
    if (numel) std::memcpy(t.data_ptr(), base + b, en - b);
    out.emplace_back(name, t);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    GRPO_CHECK(ranges[i].first >= ranges[i - 1].second, "{}: tensor data ranges overlap", path);
  return out;
}

}  // namespace grpo::io
