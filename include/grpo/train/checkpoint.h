// Checkpoints: <run>/checkpoints/step-XXXXXX/{model.safetensors, optimizer.safetensors,
// manifest.json}. The manifest holds the counters, the resolved config and each file's CRC-32C and
// size, verified on load. A checkpoint is written into a temporary directory, flushed to disk (fsync) and
// renamed into place (an earlier checkpoint of the same name is first moved aside), and
// <run>/checkpoints/latest (the name of the newest one) is replaced atomically after it, so a
// crash at any point of a save leaves `latest` naming a complete checkpoint.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "grpo/io/safetensors.h"

namespace grpo::train {

struct TrainState {
  std::string stage = "pretrain";  // pretrain | sft | grpo
  int64_t pretrain_step = 0;       // pretrain-stage optimizer steps done
  int64_t sft_step = 0;            // SFT-stage optimizer steps done
  int64_t sft_position = 0;        // SFT examples consumed
  int64_t rollout_step = 0;        // GRPO generation rounds done
  int64_t optimizer_step = 0;      // GRPO optimizer steps done
  int64_t ref_version = 0;         // optimizer step at which the reference was last refreshed
  int64_t data_position = 0;       // GRPO training prompts consumed (the data cursor)
  int64_t pretrain_position = 0;   // pretrain-stage demonstrations consumed
};

struct Checkpoint {
  TrainState state;
  io::NamedTensors model;
  io::NamedTensors optimizer;
  io::NamedTensors reference;  // empty unless the reference differs from the initial policy
  std::string config_yaml;
  uint64_t seed = 0;
  double lr = 0;                 // learning rate of the last optimizer step (informational)
  std::string path;
};

/// Saves into `<checkpoints_dir>/step-<tag>`, updates `latest`, deletes all but the newest `keep`.
/// Returns the checkpoint directory.
std::string save_checkpoint(const std::string& checkpoints_dir, const std::string& tag,
                            const Checkpoint& ckpt, int64_t keep);

/// Fault injection for tests: `hook` is called with each point of save_checkpoint's sequence --
/// "written" (step-<tag>.tmp complete and flushed), "old_aside" (an earlier step-<tag> moved to
/// step-<tag>.old), "renamed" (the new one in place), "latest" (`latest` names it) -- and may throw
/// to stop the save there as a kill would (nothing is cleaned up). Empty: none.
void set_checkpoint_fault_hook(std::function<void(const std::string&)> hook);

/// Loads a checkpoint directory. Throws grpo::Error naming the file on anything missing or corrupt
/// (a checksum mismatch, a counter out of range, an unknown stage).
Checkpoint load_checkpoint(const std::string& dir);

/// Is `dir` a grpo checkpoint (it has a manifest.json)? The one test every caller uses.
bool is_checkpoint(const std::string& dir);

/// The directory named by `<checkpoints_dir>/latest`, if any.
std::optional<std::string> latest_checkpoint(const std::string& checkpoints_dir);

}  // namespace grpo::train
