#include "grpo/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/io/crc32c.h"

namespace fs = std::filesystem;

namespace grpo::train {
namespace {

// 2: the manifest lists each file's CRC-32C and size. 1 (no checksums) still loads.
constexpr int kFormatVersion = 2;
constexpr int64_t kMaxCounter = int64_t(1) << 40;  // no run takes a trillion steps

std::function<void(const std::string&)>& fault_hook() {
  static std::function<void(const std::string&)> hook;
  return hook;
}
void fault_point(const std::string& point) {
  if (fault_hook()) fault_hook()(point);
}

// Flushes a file or a directory (its entries) to the disk; errors name the path and the OS reason.
void sync_to_disk(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | (fs::is_directory(p) ? O_DIRECTORY : 0));
  GRPO_CHECK(fd >= 0, "cannot open '{}' to flush it to disk: {}", p.string(), std::strerror(errno));
  const int rc = ::fsync(fd), err = errno;
  ::close(fd);
  GRPO_CHECK(rc == 0, "cannot flush '{}' to disk: {}", p.string(), std::strerror(err));
}

// Writes `text` into a temporary file, flushes it to disk and renames it to `path`.
void write_atomically(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    GRPO_CHECK(out.good(), "cannot write '{}': {}", tmp.string(), std::strerror(errno));
    out << text;
    out.flush();
    GRPO_CHECK(out.good(), "error while writing '{}': {}", tmp.string(), std::strerror(errno));
  }
  sync_to_disk(tmp);
  fs::rename(tmp, path);
  sync_to_disk(path.parent_path());
}

int64_t json_int(const nlohmann::json& m, const char* key, const std::string& origin) {
  const auto& v = m.at(key);
  GRPO_CHECK(v.is_number_integer(), "{}: '{}' must be an integer, found {}", origin, key, v.dump());
  return v.get<int64_t>();
}

// A step or position counter: an integer in [0, 2^40].
int64_t json_counter(const nlohmann::json& m, const char* key, const std::string& origin) {
  const int64_t v = json_int(m, key, origin);
  GRPO_CHECK(v >= 0 && v <= kMaxCounter, "{}: '{}' must be a counter in [0, {}], found {}", origin, key,
             kMaxCounter, v);
  return v;
}

// Each file's CRC-32C and size, as the manifest lists them.
nlohmann::json digests_of(const fs::path& dir, const std::vector<std::string>& files) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& f : files) {
    const auto d = io::digest_file((dir / f).string());
    out[f] = {{"crc32c", io::crc32c_text(d.crc32c)}, {"bytes", d.bytes}};
  }
  return out;
}

// Every file the manifest lists has its recorded size and CRC-32C; the tensor files are listed.
void verify_files(const fs::path& dir, const nlohmann::json& files, const std::string& manifest_path) {
  GRPO_CHECK(files.is_object(), "{}: 'files' must map each file to its checksum", manifest_path);
  for (const char* needed : {"model.safetensors", "optimizer.safetensors"})
    GRPO_CHECK(files.contains(needed), "{}: 'files' does not list {}", manifest_path, needed);
  GRPO_CHECK(!fs::exists(dir / "reference.safetensors") || files.contains("reference.safetensors"),
             "{}: 'files' does not list reference.safetensors", manifest_path);
  for (const auto& [name, want] : files.items()) {
    const fs::path p = dir / name;
    GRPO_CHECK(name.find('/') == std::string::npos && fs::is_regular_file(p),
               "{}: lists '{}', which is not a file of the checkpoint", manifest_path, name);
    const auto got = io::digest_file(p.string());
    const std::string want_crc = want.at("crc32c").get<std::string>();
    const auto want_bytes = want.at("bytes").get<uint64_t>();
    GRPO_CHECK(got.bytes == want_bytes && io::crc32c_text(got.crc32c) == want_crc,
               "{} is corrupt: {} bytes with CRC-32C {}, but {} recorded {} bytes with CRC-32C {} when it "
               "was saved", p.string(), got.bytes, io::crc32c_text(got.crc32c), manifest_path, want_bytes, want_crc);
  }
}

// The manifest of `ck` (counters, RNG state, config, each file's checksum).
nlohmann::json manifest_of(const Checkpoint& ck, nlohmann::json files) {
  return {
      {"format_version", kFormatVersion},
      {"files", std::move(files)},
      {"stage", ck.state.stage},
      {"pretrain_step", ck.state.pretrain_step},
      {"rollout_step", ck.state.rollout_step},
      {"optimizer_step", ck.state.optimizer_step},
      {"ref_version", ck.state.ref_version},
      {"data_position", ck.state.data_position},
      {"pretrain_position", ck.state.pretrain_position},
      {"sft_step", ck.state.sft_step},
      {"sft_position", ck.state.sft_position},
      // The LR is a pure function of optimizer_step and the config's optim section.
      {"scheduler", {{"optimizer_step", ck.state.optimizer_step}, {"lr", ck.lr}}},
      // All randomness is counter-based (core/rng.h): the seed and the counters above are the
      // complete RNG state.
      {"rng", {{"kind", "counter-based splitmix64"}, {"seed", ck.seed}}},
      {"config", ck.config_yaml},
  };
}

}  // namespace

void set_checkpoint_fault_hook(std::function<void(const std::string&)> hook) { fault_hook() = std::move(hook); }

std::string save_checkpoint(const std::string& checkpoints_dir, const std::string& tag,
                            const Checkpoint& ck, int64_t keep) {
  fs::create_directories(checkpoints_dir);
  const std::string name = "step-" + tag;
  const fs::path final_dir = fs::path(checkpoints_dir) / name;
  const fs::path tmp_dir = fs::path(checkpoints_dir) / (name + ".tmp");
  const fs::path old_dir = fs::path(checkpoints_dir) / (name + ".old");
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);
  try {  // 1. everything into step-<tag>.tmp, flushed to disk; on failure (a full disk) nothing is left behind
    std::vector<std::string> files{"model.safetensors", "optimizer.safetensors"};
    io::save_safetensors((tmp_dir / files[0]).string(), ck.model);
    io::save_safetensors((tmp_dir / files[1]).string(), ck.optimizer);
    if (!ck.reference.empty()) {
      files.push_back("reference.safetensors");
      io::save_safetensors((tmp_dir / files.back()).string(), ck.reference);
    }
    write_atomically(tmp_dir / "manifest.json", manifest_of(ck, digests_of(tmp_dir, files)).dump(2));
    for (const auto& f : files) sync_to_disk(tmp_dir / f);
    sync_to_disk(tmp_dir);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
    fail("cannot save checkpoint {}: {}", final_dir.string(), e.what());
  }
  fault_point("written");
  // 2. an earlier checkpoint of the same tag goes aside (latest_checkpoint falls back to it) ...
  if (is_checkpoint(final_dir.string())) {
    fs::remove_all(old_dir);
    fs::rename(final_dir, old_dir);
    fault_point("old_aside");
  } else {
    fs::remove_all(final_dir);  // an incomplete directory of that name (never latest's)
  }
  // 3. ... the new one takes its name, then `latest` names it
  fs::rename(tmp_dir, final_dir);
  sync_to_disk(checkpoints_dir);
  fault_point("renamed");
  write_atomically(fs::path(checkpoints_dir) / "latest", name + "\n");
  fault_point("latest");
  fs::remove_all(old_dir);

  // retention: newest `keep` step-* directories survive; leftovers of interrupted saves go
  std::vector<fs::path> all;
  for (auto& e : fs::directory_iterator(checkpoints_dir)) {
    auto n = e.path().filename().string();
    if (!e.is_directory() || n.rfind("step-", 0) != 0) continue;
    if (n.find('.') != std::string::npos) fs::remove_all(e.path());  // step-*.tmp / step-*.old
    else all.push_back(e.path());
  }
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i + keep < all.size(); ++i)
    if (all[i] != final_dir) fs::remove_all(all[i]);
  return final_dir.string();
}

Checkpoint load_checkpoint(const std::string& dir) {
  Checkpoint ck;
  ck.path = dir;
  fs::path d(dir);
  std::string manifest_path = (d / "manifest.json").string();
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(core::read_file(manifest_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", manifest_path, e.what());
  }
  try {
    const int64_t version = json_int(m, "format_version", manifest_path);
    GRPO_CHECK(version == 1 || version == kFormatVersion, "{}: format_version {} is not supported (expected 1 "
               "to {})", manifest_path, version, kFormatVersion);
    ck.state.stage = m.at("stage").get<std::string>();
    GRPO_CHECK(ck.state.stage == "pretrain" || ck.state.stage == "sft" || ck.state.stage == "grpo",
               "{}: 'stage' must be one of pretrain, sft, grpo; found '{}'", manifest_path, ck.state.stage);
    ck.state.pretrain_step = json_counter(m, "pretrain_step", manifest_path);
    ck.state.rollout_step = json_counter(m, "rollout_step", manifest_path);
    ck.state.optimizer_step = json_counter(m, "optimizer_step", manifest_path);
    ck.state.ref_version = json_counter(m, "ref_version", manifest_path);
    ck.state.data_position = json_counter(m, "data_position", manifest_path);
    ck.state.pretrain_position = json_counter(m, "pretrain_position", manifest_path);
    if (m.contains("sft_step")) ck.state.sft_step = json_counter(m, "sft_step", manifest_path);
    if (m.contains("sft_position")) ck.state.sft_position = json_counter(m, "sft_position", manifest_path);
    GRPO_CHECK(ck.state.ref_version <= ck.state.optimizer_step, "{}: 'ref_version' {} is after 'optimizer_step' {}",
               manifest_path, ck.state.ref_version, ck.state.optimizer_step);
    if (version >= 2) verify_files(d, m.at("files"), manifest_path);
    else spdlog::warn("{}: format_version 1 has no checksums; the tensor files are not verified", manifest_path);
    GRPO_CHECK(m.at("rng").at("seed").is_number_unsigned(), "{}: rng.seed must be a non-negative integer",
               manifest_path);
    ck.seed = m.at("rng").at("seed").get<uint64_t>();
    ck.config_yaml = m.at("config").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: missing or malformed field: {}", manifest_path, e.what());
  }
  ck.model = io::load_safetensors((d / "model.safetensors").string());
  ck.optimizer = io::load_safetensors((d / "optimizer.safetensors").string());
  if (fs::exists(d / "reference.safetensors"))
    ck.reference = io::load_safetensors((d / "reference.safetensors").string());
  return ck;
}

bool is_checkpoint(const std::string& dir) { return fs::exists(fs::path(dir) / "manifest.json"); }

std::optional<std::string> latest_checkpoint(const std::string& checkpoints_dir) {
  fs::path latest = fs::path(checkpoints_dir) / "latest";
  if (!fs::exists(latest)) return std::nullopt;
  std::string name = core::read_file(latest.string());
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  fs::path dir = fs::path(checkpoints_dir) / name;
  // a save of the same tag stopped between moving the earlier checkpoint aside and renaming the
  // new one in: the earlier one is what `latest` names
  if (!is_checkpoint(dir.string()) && is_checkpoint(dir.string() + ".old")) return dir.string() + ".old";
  GRPO_CHECK(is_checkpoint(dir.string()), "{} names '{}', which has no manifest.json",
             latest.string(), name);
  return dir.string();
}

}  // namespace grpo::train
