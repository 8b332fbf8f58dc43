#include "grpo/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"

namespace fs = std::filesystem;

namespace grpo::train {
namespace {

constexpr int kFormatVersion = 1;

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

// The manifest of `ck` (counters, RNG state, config).
nlohmann::json manifest_of(const Checkpoint& ck) {
  return {
      {"format_version", kFormatVersion},
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
    write_atomically(tmp_dir / "manifest.json", manifest_of(ck).dump(2));
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
    GRPO_CHECK(json_int(m, "format_version", manifest_path) == kFormatVersion,
               "{}: format_version {} is not supported (expected {})", manifest_path,
               m.at("format_version").dump(), kFormatVersion);
    ck.state.stage = m.at("stage").get<std::string>();
    ck.state.pretrain_step = json_int(m, "pretrain_step", manifest_path);
    ck.state.rollout_step = json_int(m, "rollout_step", manifest_path);
    ck.state.optimizer_step = json_int(m, "optimizer_step", manifest_path);
    ck.state.ref_version = json_int(m, "ref_version", manifest_path);
    ck.state.data_position = json_int(m, "data_position", manifest_path);
    ck.state.pretrain_position = json_int(m, "pretrain_position", manifest_path);
    if (m.contains("sft_step")) ck.state.sft_step = json_int(m, "sft_step", manifest_path);
    if (m.contains("sft_position")) ck.state.sft_position = json_int(m, "sft_position", manifest_path);
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
