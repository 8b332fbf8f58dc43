// safetensors reader (mmap, validate everything up front) and writer (8-byte aligned header).
#include "grpo/io/safetensors.h"
#include "grpo/io/safetensors_header.h"

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

at::ScalarType scalar_type(const std::string& name) {
  for (auto& d : kDTypes)
    if (name == d.name) return d.type;
  fail("safetensors: dtype '{}' has no LibTorch equivalent", name);
}

const char* dtype_name(at::ScalarType t) {
  for (auto& d : kDTypes)
    if (d.type == t) return d.name;
  fail("safetensors: cannot store dtype {}", c10::toString(t));
}

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
  auto header = parse_safetensors_header(static_cast<const char*>(map_->addr), size, path);
  metadata_ = std::move(header.metadata);
  for (auto& t : header.tensors) {
    auto ent = std::make_shared<Entry>();
    ent->dtype = scalar_type(t.dtype);
    ent->shape = std::move(t.shape);
    ent->begin = t.begin;
    ent->end = t.end;
    names_.push_back(t.name);
    entries_[t.name] = ent;
  }
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
  GRPO_CHECK(out.good(), "error while writing '{}': {}", path, std::strerror(errno));
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
