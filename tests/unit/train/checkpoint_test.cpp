// Checkpoints: atomic saves, retention and `latest`; a resumed run reproduces the uninterrupted one
// and refuses a checkpoint of another model.
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include <filesystem>
#include <fstream>
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/train/checkpoint.h"
#include "grpo/train/run_dir.h"
#include "grpo/train/config.h"
#include "grpo/train/trainer.h"
#include "../test_util.h"

namespace fs = std::filesystem;
using namespace grpo;
using grpo::test_util::error_of;
using grpo::test_util::read_jsonl;
using grpo::test_util::tiny_run;
using grpo::test_util::tmpdir;
using grpo::test_util::write_bytes;

TEST(Checkpoint, AtomicSaveRetentionAndLatest) {
  auto dir = tmpdir("ckpt");
  train::Checkpoint ck;
  ck.model = {{"w", at::ones({2})}};
  ck.state.stage = "grpo";
  for (int s = 1; s <= 3; ++s) {
    ck.state.rollout_step = s;
    train::save_checkpoint(dir, fmt::format("{:06d}", s), ck, 2);
  }
  EXPECT_FALSE(fs::exists(dir + "/step-000001"));
  EXPECT_TRUE(fs::exists(dir + "/step-000002"));
  EXPECT_EQ(*train::latest_checkpoint(dir), dir + "/step-000003");
  // a save that died half-way leaves a .tmp directory; latest still names the good one
  fs::create_directories(dir + "/step-000004.tmp");
  write_bytes(dir + "/step-000004.tmp/model.safetensors", "garbage");
  auto back = train::load_checkpoint(*train::latest_checkpoint(dir));
  EXPECT_EQ(back.state.rollout_step, 3);
  EXPECT_TRUE(back.model[0].second.equal(at::ones({2})));
  // a corrupt manifest is reported with its path
  write_bytes(dir + "/step-000003/manifest.json", "{\"format_version\": 1}");
  auto e = error_of([&] { train::load_checkpoint(dir + "/step-000003"); });
  EXPECT_NE(e.find("manifest.json"), std::string::npos) << e;
}

TEST(Resume, ReproducesTheUninterruptedRun) {
  auto a = tmpdir("resume_a"), b = tmpdir("resume_b");
  {
    train::Trainer t(tiny_run(a, 4));
    t.run();
  }
  {
    train::Trainer t(tiny_run(b, 4));  // "interrupted" after two rollout steps
    t.run([](const train::TrainState& s) { return s.rollout_step == 2; });
  }
  // the interrupted run also wrote a step that its checkpoint does not contain
  fs::remove_all(b + "/checkpoints/step-000002");
  std::ofstream(b + "/checkpoints/latest") << "step-000001\n";
  train::Trainer resumed(tiny_run(b, 4));
  resumed.run();
  EXPECT_EQ(resumed.state().rollout_step, 4);
  EXPECT_EQ(resumed.state().optimizer_step, 4 * 2 * 2);

  auto ma = read_jsonl(a + "/metrics.jsonl"), mb = read_jsonl(b + "/metrics.jsonl");
  ASSERT_EQ(ma.size(), mb.size());  // the dropped step's line was replaced, not duplicated
  for (size_t i = 0; i < ma.size(); ++i) {
    ASSERT_EQ(ma[i]["step"], mb[i]["step"]);
    if (ma[i]["stage"] != "grpo") continue;
    EXPECT_EQ(ma[i]["loss"].get<double>(), mb[i]["loss"].get<double>()) << "step " << ma[i]["step"];
    EXPECT_EQ(ma[i]["reward_mean"].get<double>(), mb[i]["reward_mean"].get<double>());
    EXPECT_EQ(ma[i]["kl"].get<double>(), mb[i]["kl"].get<double>());
  }
  EXPECT_NE(ma.back()["loss"].get<double>(), 0.0);
  EXPECT_EQ(read_jsonl(a + "/eval.jsonl").size(), read_jsonl(b + "/eval.jsonl").size());
  auto fa = train::load_checkpoint(a + "/checkpoints/step-000004");
  auto fb = train::load_checkpoint(b + "/checkpoints/step-000004");
  for (size_t i = 0; i < fa.model.size(); ++i)
    EXPECT_TRUE(fa.model[i].second.equal(fb.model[i].second)) << fa.model[i].first;
  // the run directory holds the resolved config, which loads back
  EXPECT_NO_THROW(train::load_config_file(a + "/config.yaml"));
}

TEST(Resume, RefusesACheckpointOfAnotherModel) {
  auto a = tmpdir("resume_other");
  {
    train::Trainer t(tiny_run(a, 1));
    t.run();
  }
  auto c = tiny_run(a, 2);
  c.model.hidden_size = 64;
  {
    train::Trainer t(c);
    auto e = error_of([&] { t.run(); });
    EXPECT_NE(e.find("model.hidden_size: 32 -> 64"), std::string::npos) << e;
  }
  c.run.allow_config_change = true;  // the tensors themselves do not fit either
  train::Trainer t(c);
  auto e = error_of([&] { t.run(); });
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("shape"), std::string::npos) << e;
}

// Resuming compares the config with the checkpoint's: keys that do not change the training
// (grpo.rollout_steps to extend, eval, checkpoint, run and parallel settings) may change and are
// recorded; any other change is refused with the list of keys, or with run.allow_config_change
// logged in config_changes.jsonl.
TEST(Resume, AChangedConfigIsRefusedOrRecorded) {
  auto dir = tmpdir("resume_changed");
  {
    train::Trainer t(tiny_run(dir, 1));
    t.run();
  }
  auto extended = tiny_run(dir, 2);
  extended.eval.every = 0;
  {
    train::Trainer t(extended);
    t.run([](const train::TrainState& s) { return s.rollout_step == 2; });
    EXPECT_EQ(t.state().rollout_step, 2);
  }
  auto safe = read_jsonl(dir + "/config_changes.jsonl");
  ASSERT_EQ(safe.size(), 2u);
  EXPECT_EQ(safe[0]["key"], "eval.every");
  EXPECT_EQ(safe[1]["key"], "grpo.rollout_steps");
  EXPECT_EQ(safe[1]["before"], "1");
  EXPECT_EQ(safe[1]["after"], "2");
  EXPECT_EQ(safe[1]["rollout_step"], 1);

  auto changed = tiny_run(dir, 3);
  changed.eval.every = 0;
  changed.optim.lr = 2e-5;
  changed.grpo.group_size = 8;
  {
    train::Trainer t(changed);
    auto e = error_of([&] { t.run(); });
    EXPECT_NE(e.find("2 key(s) that change the training"), std::string::npos) << e;
    EXPECT_NE(e.find("grpo.group_size: 4 -> 8"), std::string::npos) << e;
    EXPECT_NE(e.find("optim.lr: "), std::string::npos) << e;
    EXPECT_NE(e.find("--allow-config-change"), std::string::npos) << e;
    EXPECT_EQ(e.find("grpo.rollout_steps"), std::string::npos) << e;  // safe: not listed
    EXPECT_EQ(t.state().rollout_step, 0);                             // nothing trained
  }
  changed.run.allow_config_change = true;
  train::Trainer t(changed);
  t.run();
  EXPECT_EQ(t.state().rollout_step, 3);
  auto all = read_jsonl(dir + "/config_changes.jsonl");
  std::set<std::string> keys;
  for (size_t i = safe.size(); i < all.size(); ++i) keys.insert(all[i]["key"].get<std::string>());
  EXPECT_EQ(keys, (std::set<std::string>{"grpo.group_size", "grpo.rollout_steps", "optim.lr",
                                         "run.allow_config_change"}));
}

// Each file's CRC-32C is in the manifest and checked on load: a flipped byte or a truncated file
// names the file; the manifest's counters and stage are validated.
TEST(Checkpoint, ChecksumsAndManifestFieldsAreVerified) {
  auto dir = tmpdir("ckpt_crc");
  train::Checkpoint ck;
  ck.model = {{"w", at::arange(64, at::kFloat)}};
  ck.optimizer = {{"w.exp_avg", at::zeros({64})}};
  ck.state.stage = "grpo";
  ck.state.rollout_step = 7;
  ck.state.optimizer_step = 7;
  const auto path = train::save_checkpoint(dir, "000007", ck, 2);
  auto manifest = nlohmann::json::parse(grpo::core::read_file(path + "/manifest.json"));
  EXPECT_EQ(manifest["format_version"], 2);
  ASSERT_TRUE(manifest["files"].contains("model.safetensors"));
  EXPECT_EQ(manifest["files"]["model.safetensors"]["bytes"].get<uint64_t>(), fs::file_size(path + "/model.safetensors"));
  EXPECT_EQ(train::load_checkpoint(path).state.rollout_step, 7);

  const std::string model = path + "/model.safetensors";
  const std::string good = grpo::core::read_file(model);
  std::string flipped = good;
  flipped[flipped.size() - 5] ^= 0x01;  // one bit of one weight
  write_bytes(model, flipped);
  auto e = error_of([&] { train::load_checkpoint(path); });
  EXPECT_NE(e.find(model + " is corrupt"), std::string::npos) << e;
  EXPECT_NE(e.find("CRC-32C"), std::string::npos) << e;
  write_bytes(model, good.substr(0, good.size() - 4));
  e = error_of([&] { train::load_checkpoint(path); });
  EXPECT_NE(e.find(std::to_string(good.size() - 4) + " bytes"), std::string::npos) << e;
  write_bytes(model, good);
  EXPECT_NO_THROW(train::load_checkpoint(path));

  auto with = [&](const std::string& key, const nlohmann::json& value) {
    auto m = manifest;
    m[key] = value;
    write_bytes(path + "/manifest.json", m.dump(2));
    return error_of([&] { train::load_checkpoint(path); });
  };
  e = with("stage", "bogus");
  EXPECT_NE(e.find("'stage' must be one of pretrain, sft, grpo; found 'bogus'"), std::string::npos) << e;
  e = with("rollout_step", -5);
  EXPECT_NE(e.find("'rollout_step' must be a counter"), std::string::npos) << e;
  e = with("rollout_step", int64_t(1'000'000'000'000'000));
  EXPECT_NE(e.find("'rollout_step' must be a counter"), std::string::npos) << e;
  e = with("rollout_step", 1e15);
  EXPECT_NE(e.find("'rollout_step' must be an integer"), std::string::npos) << e;
  e = with("ref_version", 8);
  EXPECT_NE(e.find("'ref_version' 8 is after 'optimizer_step' 7"), std::string::npos) << e;
  e = with("files", nlohmann::json::object());
  EXPECT_NE(e.find("does not list model.safetensors"), std::string::npos) << e;
  // a checkpoint of format 1 (before checksums) still loads
  auto old = manifest;
  old.erase("files");
  old["format_version"] = 1;
  write_bytes(path + "/manifest.json", old.dump(2));
  EXPECT_EQ(train::load_checkpoint(path).state.rollout_step, 7);
}

// A kill at each point of a save's sequence (fault injection: the hook throws there and nothing is
// cleaned up), re-saving the same tag or saving a new one: `latest` names a complete checkpoint
// (the earlier or the new one), and the next save works and clears the leftovers.
TEST(Checkpoint, KillAtEachPointOfASaveLeavesLatestComplete) {
  struct Killed {};
  for (const std::string tag : {"000001", "000002"})
    for (const std::string point : {"written", "old_aside", "renamed", "latest"}) {
      if (point == "old_aside" && tag != "000001") continue;  // only a re-save moves one aside
      auto dir = tmpdir("ckpt_kill_" + tag + "_" + point);
      train::Checkpoint ck;
      ck.model = {{"w", at::ones({3})}};
      ck.optimizer = {{"w.exp_avg", at::zeros({3})}};
      ck.state.stage = "grpo";
      ck.state.rollout_step = 1;
      train::save_checkpoint(dir, "000001", ck, 3);
      ck.state.rollout_step = 2;
      ck.model = {{"w", at::full({3}, 2.0)}};
      bool stopped = false;
      train::set_checkpoint_fault_hook([&](const std::string& p) {
        if (p == point) throw Killed{};
      });
      try {
        train::save_checkpoint(dir, tag, ck, 3);
      } catch (const Killed&) {
        stopped = true;
      }
      train::set_checkpoint_fault_hook({});
      ASSERT_TRUE(stopped) << point;
      auto latest = train::latest_checkpoint(dir);
      ASSERT_TRUE(latest) << point;
      auto back = train::load_checkpoint(*latest);
      EXPECT_TRUE(back.state.rollout_step == 1 || back.state.rollout_step == 2) << point;
      EXPECT_EQ(back.model[0].second[0].item<float>() == 2.0f, back.state.rollout_step == 2) << point;
      if (point == "written") EXPECT_EQ(back.state.rollout_step, 1) << tag;  // latest not moved yet
      if (point == "latest") EXPECT_EQ(back.state.rollout_step, 2) << tag;
      ck.state.rollout_step = 3;
      train::save_checkpoint(dir, "000003", ck, 3);
      EXPECT_EQ(train::load_checkpoint(*train::latest_checkpoint(dir)).state.rollout_step, 3);
      for (auto& e : fs::directory_iterator(dir))
        EXPECT_EQ(e.path().filename().string().find('.'), std::string::npos) << "leftover " << e.path();
    }
}

// A write that fails (here: past RLIMIT_FSIZE, "File too large", as a full disk fails with "No space
// left on device") names the file and the OS reason and leaves no .tmp behind; `latest` still
// names the earlier checkpoint.
TEST(Checkpoint, AFailedWriteSaysWhyAndLeavesNothing) {
  auto dir = tmpdir("ckpt_full");
  train::Checkpoint ck;
  ck.model = {{"w", at::ones({16})}};
  ck.optimizer = {{"w.exp_avg", at::zeros({16})}};
  ck.state.stage = "grpo";
  train::save_checkpoint(dir, "000001", ck, 3);
  ck.model = {{"w", at::ones({1 << 20})}};  // 4 MiB
  ck.state.rollout_step = 2;
  struct rlimit old {};
  ::getrlimit(RLIMIT_FSIZE, &old);
  auto* previous = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 1 << 16;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto msg = error_of([&] { train::save_checkpoint(dir, "000002", ck, 3); });
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, previous);
  EXPECT_NE(msg.find("cannot save checkpoint"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::strerror(EFBIG)), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir + "/step-000002.tmp"));
  EXPECT_FALSE(fs::exists(dir + "/step-000002"));
  EXPECT_EQ(*train::latest_checkpoint(dir), dir + "/step-000001");
}

// One run directory, one run: a second writer fails at once, naming the first one's process.
TEST(Checkpoint, ASecondRunOnTheSameDirectoryIsRefused) {
  auto dir = tmpdir("run_lock");
  train::RunDir a(dir, true), b(dir, true);
  a.create();
  a.lock();
  auto msg = error_of([&] { b.lock(); });
  EXPECT_NE(msg.find("is in use by another run (process " + std::to_string(::getpid())), std::string::npos) << msg;
  a.unlock();
  b.lock();  // free again
  b.unlock();
}
