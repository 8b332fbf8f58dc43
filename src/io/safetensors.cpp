// safetensors reader (mmap, validate everything up front) and writer (8-byte aligned header).
#include "grpo/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"

namespace fs = std::filesystem;

namespace grpo::io {
namespace {

struct DType {
  const char* name;
  at::ScalarType type;
};
// Every safetensors dtype LibTorch can hold.
const DType kDTypes[] = {
    {"F64", at::kDouble},    {"F32", at::kFloat},  {"F16", at::kHalf},
    {"BF16", at::kBFloat16}, {"I64", at::kLong},   {"I32", at::kInt},
    {"I16", at::kShort},     {"I8", at::kChar},    {"U8", at::kByte},
    {"BOOL", at::kBool},     {"U16", at::kUInt16}, {"U32", at::kUInt32},
    {"U64", at::kUInt64},    {"F8_E4M3", at::kFloat8_e4m3fn}, {"F8_E5M2", at::kFloat8_e5m2},
};

const char* dtype_name(at::ScalarType t) {
  for (auto& d : kDTypes)
    if (d.type == t) return d.name;
  fail("safetensors: cannot store dtype {}", c10::toString(t));
}

constexpr uint64_t kMaxHeader = 100ull << 20;  // the format's own limit (100 MB)

}  // namespace

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && size) munmap(addr, size);
  }
};

struct SafetensorsFile::Entry {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // absolute file offsets
};

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    fail("cannot stat '{}': {}", path, std::strerror(errno));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  map_ = std::make_shared<Mapping>();
  if (size > 0) {
    void* a = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED) {
      ::close(fd);
      fail("cannot map '{}': {}", path, std::strerror(errno));
    }
    map_->addr = a;
    map_->size = size;
  }
  ::close(fd);
  const char* bytes = static_cast<const char*>(map_->addr);
  GRPO_CHECK(size >= 8, "{}: not a safetensors file (only {} bytes)", path, size);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  GRPO_CHECK(n <= size - 8, "{}: header length {} is past the end of the file ({} bytes)", path,
             n, size);
  GRPO_CHECK(n <= kMaxHeader, "{}: header length {} exceeds the format's limit of {} bytes", path,
             n, kMaxHeader);
  nlohmann::ordered_json header;  // keeps the file's order
  try {
    header = nlohmann::ordered_json::parse(bytes + 8, bytes + 8 + n);
  } catch (const std::exception& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  GRPO_CHECK(header.is_object(), "{}: header must be a JSON object", path);
  const uint64_t data_start = 8 + n, data_size = size - data_start;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      GRPO_CHECK(it->is_object(), "{}: __metadata__ must be an object", path);
      for (auto m = it->begin(); m != it->end(); ++m)
        metadata_[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
      continue;
    }
    const auto& e = *it;
    GRPO_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
               "{}: tensor '{}' needs dtype, shape and data_offsets", path, name);
    std::string dt = e["dtype"].is_string() ? e["dtype"].get<std::string>() : e["dtype"].dump();
    const DType* d = nullptr;
    for (auto& x : kDTypes)
      if (dt == x.name) d = &x;
    GRPO_CHECK(d, "{}: tensor '{}' has unsupported dtype '{}'", path, name, dt);
    auto ent = std::make_shared<Entry>();
    ent->dtype = d->type;
    GRPO_CHECK(e["shape"].is_array(), "{}: tensor '{}' shape must be a list", path, name);
    uint64_t numel = 1;
    bool overflow = false;
    for (auto& s : e["shape"]) {
      GRPO_CHECK(s.is_number_unsigned(), "{}: tensor '{}' has a bad shape entry {}", path, name, s.dump());
      uint64_t v = s.get<uint64_t>();
      GRPO_CHECK(v <= (uint64_t(1) << 62), "{}: tensor '{}' has a shape entry {} that is too large", path,
                 name, v);
      ent->shape.push_back(static_cast<int64_t>(v));
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
    uint64_t esize = c10::elementSize(d->type);
    GRPO_CHECK(!overflow && en - b == numel * esize,
               "{}: tensor '{}' has {} bytes, its shape and dtype need {}", path, name, en - b,
               overflow ? std::string("more than fits") : std::to_string(numel * esize));
    ent->begin = data_start + b;
    ent->end = data_start + en;
    ranges.emplace_back(b, en);
    names_.push_back(name);
    entries_[name] = ent;
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    GRPO_CHECK(ranges[i].first >= ranges[i - 1].second || ranges[i - 1].first == ranges[i - 1].second ||
                   ranges[i].first == ranges[i].second,
               "{}: tensor data ranges overlap ([{}, {}) and [{}, {}))", path, ranges[i - 1].first,
               ranges[i - 1].second, ranges[i].first, ranges[i].second);
}

SafetensorsFile::~SafetensorsFile() = default;

bool SafetensorsFile::contains(const std::string& name) const { return entries_.count(name) > 0; }

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = entries_.find(name);
  GRPO_CHECK(it != entries_.end(), "{}: no tensor named '{}'", path_, name);
  const Entry& e = *it->second;
  auto opts = at::TensorOptions().dtype(e.dtype);
  if (e.end == e.begin) return at::empty(e.shape, opts);
  char* p = static_cast<char*>(map_->addr) + e.begin;
  if (reinterpret_cast<uintptr_t>(p) % c10::elementSize(e.dtype) != 0) {
    auto t = at::empty(e.shape, opts);  // misaligned for the dtype: copy out
    std::memcpy(t.data_ptr(), p, e.end - e.begin);
    return t;
  }
  auto keep = map_;
  return at::from_blob(p, e.shape, [keep](void*) {}, opts);
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  auto header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    GRPO_CHECK(name != "__metadata__" && !header.contains(name),
               "safetensors: duplicate or reserved tensor name '{}'", name);
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
  SafetensorsFile f(path);
  if (metadata) *metadata = f.metadata();
  NamedTensors out;
  for (const auto& n : f.names()) out.emplace_back(n, f.tensor(n));
  return out;
}

NamedTensors load_safetensors_dir(const std::string& dir) {
  fs::path d(dir);
  fs::path index = d / "model.safetensors.index.json";
  if (!fs::exists(index)) {
    GRPO_CHECK(fs::exists(d / "model.safetensors"),
               "{}: no model.safetensors or model.safetensors.index.json", dir);
    return load_safetensors((d / "model.safetensors").string());
  }
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(core::read_file(index.string()));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", index.string(), e.what());
  }
  GRPO_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
             "{}: expected an object with a \"weight_map\"", index.string());
  std::map<std::string, std::shared_ptr<SafetensorsFile>> files;
  NamedTensors out;
  std::map<std::string, int> seen;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    GRPO_CHECK(it->is_string(), "{}: weight_map entry '{}' must name a file", index.string(), it.key());
    std::string file = it->get<std::string>();
    GRPO_CHECK(file.find('/') == std::string::npos && file.find("..") == std::string::npos,
               "{}: weight_map entry '{}' names '{}', which is not a file in this directory",
               index.string(), it.key(), file);
    auto& f = files[file];
    if (!f) f = std::make_shared<SafetensorsFile>((d / file).string());
    GRPO_CHECK(f->contains(it.key()), "{}: lists tensor '{}' in {}, which does not contain it",
               index.string(), it.key(), file);
    GRPO_CHECK(seen[it.key()]++ == 0, "{}: tensor '{}' listed twice", index.string(), it.key());
    out.emplace_back(it.key(), f->tensor(it.key()));
  }
  return out;
}

void save_safetensors_dir(const std::string& dir, const NamedTensors& tensors, uint64_t max_shard_bytes,
                          const std::map<std::string, std::string>& metadata) {
  fs::create_directories(dir);
  std::vector<NamedTensors> shards(1);
  uint64_t cur = 0, total = 0;
  for (const auto& nt : tensors) {
    uint64_t b = nt.second.numel() * nt.second.element_size();
    if (cur > 0 && cur + b > max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(nt);
    cur += b;
    total += b;
  }
  fs::remove(fs::path(dir) / "model.safetensors.index.json");
  if (shards.size() == 1) {
    save_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, metadata);
    return;
  }
  nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", nlohmann::ordered_json::object()}};
  for (size_t i = 0; i < shards.size(); ++i) {
    std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    save_safetensors((fs::path(dir) / name).string(), shards[i], metadata);
    for (auto& nt : shards[i]) index["weight_map"][nt.first] = name;
  }
  std::ofstream(fs::path(dir) / "model.safetensors.index.json") << index.dump(2) << "\n";
}

}  // namespace grpo::io
