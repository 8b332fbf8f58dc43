// Checkpoints: atomic saves, retention and `latest`; a resumed run reproduces the uninterrupted one
// and refuses a checkpoint of another model.
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/train/checkpoint.h"
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
  train::Trainer t(c);
  auto e = error_of([&] { t.run(); });
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("shape"), std::string::npos) << e;
}
