// safetensors, checkpoints and resume.
#include <filesystem>
#include <fstream>
#include <functional>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/device.h"
#include "grpo/core/error.h"
#include "test_util.h"
#include "grpo/io/safetensors.h"
#include "grpo/model/transformer.h"
#include "grpo/train/checkpoint.h"
#include "grpo/train/micro_batch.h"
#include "grpo/train/trainer.h"
#include "grpo/train/plan.h"
#include "grpo/train/sampling.h"
#include "grpo/data/arithmetic.h"
#include "grpo/core/rng.h"
#include "grpo/text/prompt.h"
#include "grpo/reward/math_verify.h"
#include "grpo/reward/reward.h"

#include <map>
#include <set>

namespace fs = std::filesystem;
using namespace grpo;
using grpo::test_util::error_of;
using grpo::test_util::read_jsonl;
using grpo::test_util::run_command;
using grpo::test_util::tiny_run;
using grpo::test_util::tmpdir;

namespace {


void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string with_header(const std::string& json, const std::string& data) {
  std::string s(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  return s + json + data;
}


}  // namespace

TEST(Safetensors, RoundTripAllDtypes) {
  auto dir = tmpdir("st_roundtrip");
  io::NamedTensors ts{{"f32", at::randn({3, 4})},
                      {"bf16", at::randn({5}).to(at::kBFloat16)},
                      {"i64", at::arange(7, at::kLong)},
                      {"scalar", at::scalar_tensor(3.5, at::kDouble)},
                      {"empty", at::zeros({0, 3})},
                      {"view", at::randn({4, 4}).t()}};
  io::save_safetensors(dir + "/a.safetensors", ts, {{"format", "pt"}});
  std::map<std::string, std::string> meta;
  auto back = io::load_safetensors(dir + "/a.safetensors", &meta);
  ASSERT_EQ(back.size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(back[i].first, ts[i].first);
    EXPECT_TRUE(back[i].second.equal(ts[i].second)) << ts[i].first;
    EXPECT_EQ(back[i].second.scalar_type(), ts[i].second.scalar_type());
  }
  EXPECT_EQ(meta["format"], "pt");
  // header is 8-byte aligned
  auto bytes = core::read_file(dir + "/a.safetensors");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  auto dir = tmpdir("st_bad");
  auto p = dir + "/bad.safetensors";
  write_bytes(p, "abc");
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("not a safetensors file"), std::string::npos);
  write_bytes(p, std::string("\xff\xff\xff\xff\x00\x00\x00\x00", 8) + "{}");
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("past the end"), std::string::npos);
  write_bytes(p, with_header("{not json", ""));
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("not valid JSON"), std::string::npos);
  write_bytes(p, with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", std::string(8, '\0')));
  auto e = error_of([&] { io::load_safetensors(p); });
  EXPECT_NE(e.find("outside the data section"), std::string::npos) << e;
  EXPECT_NE(e.find("'a'"), std::string::npos) << e;
  write_bytes(p, with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')));
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("shape and dtype need 12"), std::string::npos);
  write_bytes(p, with_header(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("unsupported dtype 'Q4'"), std::string::npos);
  write_bytes(p, with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                             std::string(12, '\0')));
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("overlap"), std::string::npos);
  EXPECT_NE(error_of([&] { io::load_safetensors(dir + "/missing"); }).find("cannot open"), std::string::npos);
}

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

TEST(Trainer, GradientAccumulationMatchesOneBigMicroBatch) {
  // Same rollout step with micro-batches of ~4 rows vs one micro-batch per mini-batch: the
  // aggregation weights are computed per mini-batch, so the updates agree to rounding.
  auto a = tmpdir("accum_small"), b = tmpdir("accum_big");
  auto ca = tiny_run(a, 2), cb = tiny_run(b, 2);
  ca.grpo.micro_batch_tokens = 100;
  cb.grpo.micro_batch_tokens = 1000000;
  ca.checkpoint.every = cb.checkpoint.every = 0;
  train::Trainer ta(ca), tb(cb);
  ta.run();
  tb.run();
  auto pa = ta.policy().named_parameters(), pb = tb.policy().named_parameters();
  double max_diff = 0, max_change = 0;
  auto base = train::load_checkpoint(a + "/checkpoints/step-000000").model;  // after the base stage
  for (size_t i = 0; i < pa.size(); ++i) {
    max_diff = std::max(max_diff, (pa[i].second - pb[i].second).abs().max().item<double>());
    max_change = std::max(max_change, (pa[i].second - base[i].second).abs().max().item<double>());
  }
  EXPECT_GT(max_change, 1e-5);  // GRPO did move the weights
  EXPECT_LT(max_diff, 1e-5);
}

TEST(MicroBatch, PacksRowsSortedByLengthWithinTheTokenBudget) {
  // lengths (prompt + response): row 0: 3 + 2, row 1: 3 + 9, row 2: 2 + 1, row 3: 3 + 2
  const std::vector<int64_t> p{3, 3, 2, 3}, r{2, 9, 1, 2};
  // longest first; row 0 cannot join row 1 (2 x 12 > 20); rows 0, 3 (ties in order) and 2 share
  // one micro-batch of 3 x (3 + 2) = 15 tokens
  EXPECT_EQ(train::pack_micro_batches({0, 1, 2, 3}, p, r, 20),
            (std::vector<std::vector<int64_t>>{{1}, {0, 3, 2}}));
  // the budget counts rows x the longest row (rows are packed to the left): 2 x (6 + 1) = 14
  EXPECT_EQ(train::pack_micro_batches({2, 1}, {3, 6, 1}, {9, 1, 5}, 14), (std::vector<std::vector<int64_t>>{{1, 2}}));
  EXPECT_EQ(train::pack_micro_batches({2, 1}, {3, 6, 1}, {9, 1, 5}, 13), (std::vector<std::vector<int64_t>>{{1}, {2}}));
  // a row longer than the budget goes alone; a subset of the rows, any order
  EXPECT_EQ(train::pack_micro_batches({3, 1}, p, r, 4), (std::vector<std::vector<int64_t>>{{1}, {3}}));
  EXPECT_TRUE(train::pack_micro_batches({}, p, r, 4).empty());
  // random lengths: every row once, lengths non-increasing, budget kept (or a lone row)
  core::KeyedRng rng(42);
  std::vector<int64_t> pl(300), rl(300), rows;
  for (int64_t i = 0; i < 300; ++i) pl[i] = rng.uniform_int(1, 40), rl[i] = rng.uniform_int(1, 200), rows.push_back(i);
  auto mbs = train::pack_micro_batches(rows, pl, rl, 1000);
  std::vector<int64_t> seen;
  int64_t last = std::numeric_limits<int64_t>::max();
  for (auto& mb : mbs) {
    int64_t longest = 0;
    for (auto i : mb) {
      EXPECT_LE(pl[i] + rl[i], last);
      last = pl[i] + rl[i];
      longest = std::max(longest, pl[i] + rl[i]);
      seen.push_back(i);
    }
    EXPECT_TRUE(mb.size() == 1 || int64_t(mb.size()) * longest <= 1000) << mb.size() << " x " << longest;
    EXPECT_TRUE(&mb == &mbs.back() || int64_t(mb.size() + 1) * longest > 1000) << "room for one more row";
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, rows);
  EXPECT_NE(error_of([&] { train::pack_micro_batches({4}, p, r, 10); }).find("row 4"), std::string::npos);
  EXPECT_NE(error_of([&] { train::pack_micro_batches({0}, p, r, 0); }).find("budget"), std::string::npos);
}

TEST(Trainer, NoReferenceModelWithoutKl) {
  auto a = tmpdir("no_ref");
  auto c = tiny_run(a, 1);
  c.grpo.kl_coef = 0.0;
  train::Trainer t(c);
  t.run();
  EXPECT_FALSE(fs::exists(a + "/checkpoints/step-000001/reference.safetensors"));
  auto k = tmpdir("with_ref");
  train::Trainer tk(tiny_run(k, 1));
  tk.run();
  EXPECT_TRUE(fs::exists(k + "/checkpoints/step-000001/reference.safetensors"));
}

// grpo_plan's weight and optimizer bytes for one process are what the trainer allocates: the
// policy's parameters and AdamW's exp_avg + exp_avg_sq (as saved in the checkpoint), for a dense
// and an MoE model (whose router correction bias has no optimizer state).
TEST(Plan, ByteCountsEqualWhatTheTrainerAllocates) {
  for (bool moe : {false, true}) {
    auto dir = tmpdir(moe ? "plan_moe" : "plan_dense");
    auto c = tiny_run(dir, 1);
    c.pretrain.steps = 2;
    if (moe) grpo::test_util::make_moe(c);
    train::Trainer t(c);
    t.run();
    double weights = 0, optimizer = 0;
    for (auto& p : t.policy().parameters()) weights += double(p.nbytes());
    for (auto& [name, v] : io::load_safetensors(dir + "/checkpoints/step-000001/optimizer.safetensors"))
      if (name.find(".exp_avg") != std::string::npos) optimizer += double(v.nbytes());
    auto plan = train::plan_memory(t.config(), dist::make_layout(1, 1, 1), {});
    EXPECT_EQ(plan.param_bytes, weights) << (moe ? "moe" : "dense");
    EXPECT_EQ(plan.optimizer_bytes, optimizer) << (moe ? "moe" : "dense");
    EXPECT_GT(optimizer, 0);
  }
}

// configs/r1_zero.yaml on 512 x 80 GB GPUs: with the settings the config itself gives (bf16, ZeRO-1,
// recomputation, sequence parallel, 4 sequences decoded at once), its own layout (tp 4, ep 128)
// fits, and it is the planner's best.
TEST(Plan, R1ZeroFitsOn512GpusWithItsOwnSettings) {
  auto c = train::load_config_text(
      [] {
        std::ifstream in(std::string(GRPO_SOURCE_DIR) + "/configs/r1_zero.yaml");
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      }(),
      "configs/r1_zero.yaml", {}, false);
  auto o = train::plan_options(c, 512);
  EXPECT_EQ(o.precision, "bf16");
  EXPECT_TRUE(o.zero1 && o.recompute && o.sequence_parallel);
  auto mine = train::plan_memory(c, dist::make_layout(512, c.parallel.tp, c.parallel.ep), o);
  EXPECT_TRUE(mine.fits) << mine.peak_bytes / (1 << 30) << " GiB";
  auto best = train::plan_layouts(c, o).front();
  EXPECT_TRUE(best.fits);
  EXPECT_EQ(best.layout.tp, c.parallel.tp);
  EXPECT_EQ(best.layout.ep, c.parallel.ep);
  // without recomputation nothing fits (one 66k-token sequence per micro-batch)
  o.recompute = false;
  EXPECT_FALSE(train::plan_layouts(c, o).front().fits);
}

// The planner's errors name what does not divide; R1-Zero on 512 GPUs has a valid layout table.
TEST(Plan, LayoutsAndErrors) {
  auto c = train::load_config_text(R"(
model: {vocab_size: 30, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1,
        intermediate_size: 48, max_position_embeddings: 64}
grpo: {prompts_per_step: 8}
)", "plan.yaml", {}, false);
  train::PlanOptions o;
  o.gpus = 4;
  o.tp = 2;
  EXPECT_NE(error_of([&] { train::plan_layouts(c, o); }).find("num_key_value_heads (1) is not divisible by 2"),
            std::string::npos);
  o.tp = 0;
  auto plans = train::plan_layouts(c, o);
  ASSERT_EQ(plans.size(), 1u);  // only dp 4 x tp 1 divides the heads
  EXPECT_EQ(plans[0].layout.dp(), 4);
  EXPECT_TRUE(plans[0].fits);
  // the gradient all-reduce: 2 (dp - 1) / dp of the gradient bytes, once per optimizer step
  EXPECT_DOUBLE_EQ(plans[0].dp_bytes, 2.0 * 3 / 4 * plans[0].grad_bytes);
  // a micro-batch holds whole sequences: 512-token prompts + 64 new tokens = 576, 2 per 1200 tokens;
  // activations (fp32): per layer T h (10 + 24 / tp) x 2 bytes, plus one log-prob chunk
  c.rollout.max_new_tokens = 64;
  c.grpo.micro_batch_tokens = 1200;
  const double T = 2 * 576, H = 32, chunk = 2048.0 * 30 * 4 * 3;
  auto p = train::plan_memory(c, dist::make_layout(4, 1, 1), o);
  EXPECT_EQ(p.micro_batch_tokens, 1152);
  EXPECT_DOUBLE_EQ(p.activation_bytes, T * H * 34 * 2 + chunk);
  // recomputed: the layer's input (4 bytes per element) is kept, and one layer is live
  o.recompute = true;
  p = train::plan_memory(c, dist::make_layout(4, 1, 1), o);
  EXPECT_DOUBLE_EQ(p.activation_bytes, T * H * 4 + T * H * 34 * 2 + chunk);
}

// R1 refreshes the reference every 400 optimizer steps (not rollout steps): here every 3, with 4
// optimizer steps per rollout step, so refreshes fall inside rollout steps too.
TEST(Trainer, ReferenceRefreshesExactlyEveryNOptimizerSteps) {
  auto a = tmpdir("ref_refresh");
  auto c = tiny_run(a, 3);  // 2 mini-batches x 2 epochs = 4 optimizer steps per rollout step
  c.grpo.ref_refresh_steps = 3;
  train::Trainer t(c);
  t.run();
  std::vector<int64_t> refreshed, all;
  for (auto& m : read_jsonl(a + "/metrics.jsonl")) {
    if (m["stage"] != "grpo") continue;
    for (auto& u : m["updates"]) {
      all.push_back(u["optimizer_step"].get<int64_t>());
      if (u["ref_refreshed"].get<bool>()) refreshed.push_back(u["optimizer_step"].get<int64_t>());
    }
  }
  EXPECT_EQ(all, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(refreshed, (std::vector<int64_t>{3, 6, 9, 12}));
  EXPECT_EQ(t.state().ref_version, 12);
  // the refresh copies the policy: at rollout step 3 (optimizer step 12) the saved reference is the
  // policy bit for bit; at rollout step 2 (optimizer step 8) it is the policy of step 6, not 8
  auto same = [&](const std::string& ck) {
    auto model = io::load_safetensors(a + "/checkpoints/" + ck + "/model.safetensors");
    auto ref = io::load_safetensors(a + "/checkpoints/" + ck + "/reference.safetensors");
    EXPECT_EQ(model.size(), ref.size());
    for (size_t i = 0; i < model.size(); ++i)
      if (!model[i].second.equal(ref[i].second)) return false;
    return true;
  };
  EXPECT_TRUE(same("step-000003"));
  EXPECT_FALSE(same("step-000002"));
}

// With old log-probs recomputed by the trainer, the first mini-batch of every rollout batch is
// on-policy: its ratio is exactly 1 (also with several mini-batches and epochs); later mini-batches
// follow a changed policy.
TEST(Trainer, FirstMiniBatchOfAnOnPolicyBatchHasRatioExactlyOne) {
  auto a = tmpdir("ratio_one");
  auto c = tiny_run(a, 2);
  c.grpo.clip_eps_high = 0.2;
  train::Trainer t(c);
  t.run();
  int checked = 0;
  bool later_moved = false;
  for (auto& m : read_jsonl(a + "/metrics.jsonl")) {
    if (m["stage"] != "grpo") continue;
    auto& u = m["updates"];
    ASSERT_EQ(u.size(), 4u);
    EXPECT_EQ(u[0]["ratio_min"].get<double>(), 1.0) << m["step"];
    EXPECT_EQ(u[0]["ratio_max"].get<double>(), 1.0) << m["step"];
    ++checked;
    for (size_t k = 1; k < u.size(); ++k)
      later_moved = later_moved || u[k]["ratio_max"].get<double>() != 1.0 || u[k]["ratio_min"].get<double>() != 1.0;
  }
  EXPECT_EQ(checked, 2);
  EXPECT_TRUE(later_moved);
}

// Every loss/advantage option runs through the trainer (one rollout step each) and leaves finite
// metrics; the KL-in-reward run reports its penalty, overlong filtering masks what was truncated.
TEST(Trainer, EveryGrpoVariantTrains) {
  struct Variant {
    const char* name;
    std::function<void(train::Config&)> set;
  };
  std::vector<Variant> variants{
      {"dr_grpo", [](train::Config& c) { c.grpo.advantage = "no_std"; c.grpo.loss_aggregation = "seq-mean-token-sum-norm"; }},
      {"dapo", [](train::Config& c) { c.grpo.loss_aggregation = "token-mean"; c.grpo.mask_truncated = true; c.rollout.max_new_tokens = 6; }},
      {"gspo", [](train::Config& c) { c.grpo.importance_ratio = "sequence"; c.grpo.clip_eps_low = 3e-4; c.grpo.clip_eps_high = 4e-4; }},
      {"rloo_dual", [](train::Config& c) { c.grpo.advantage = "rloo"; c.grpo.dual_clip = 3; c.grpo.ratio_cap = 5; }},
      {"batch_std_k2", [](train::Config& c) { c.grpo.advantage = "batch_std"; c.grpo.kl_estimator = "k2"; c.grpo.kl_clamp = 10; }},
      {"kl_in_reward", [](train::Config& c) { c.grpo.kl_in = "reward"; c.grpo.kl_estimator = "k1"; c.grpo.ref_refresh_steps = 0; }},
      {"entropy", [](train::Config& c) { c.grpo.entropy_coef = 0.01; c.grpo.log_ratio_clamp = 20; }},
  };
  for (auto& v : variants) {
    auto dir = tmpdir(std::string("variant_") + v.name);
    auto c = tiny_run(dir, 2);
    c.checkpoint.every = 0;
    v.set(c);
    train::Trainer t(c);
    t.run();
    auto rows = read_jsonl(dir + "/metrics.jsonl");
    const auto& last = rows.back();
    ASSERT_EQ(last["stage"], "grpo") << v.name;
    for (const char* k : {"loss", "kl", "entropy", "ratio_mean", "grad_norm", "clip_fraction"})
      EXPECT_TRUE(std::isfinite(last[k].get<double>())) << v.name << " " << k;
    EXPECT_GT(last["grad_norm"].get<double>(), 0.0) << v.name;
    if (std::string(v.name) == "kl_in_reward") {
      EXPECT_NE(last["kl_reward_penalty"].get<double>(), 0.0);
      EXPECT_EQ(last["kl"].get<double>(), 0.0);  // not in the loss
    }
    if (std::string(v.name) == "dapo") EXPECT_GT(last["truncation_rate"].get<double>(), 0.0);
  }
}

// DAPO dynamic sampling: groups with equal rewards are dropped and more prompts sampled; the
// merged batch (re-padded across rounds) recomputes the sampler's log-probs.
TEST(Trainer, DynamicSamplingKeepsOnlyGroupsWithSignal) {
  auto a = tmpdir("dynamic_sampling");
  auto c = tiny_run(a, 3);
  c.grpo.dynamic_sampling = true;
  c.grpo.dynamic_sampling_max_rounds = 4;
  c.grpo.prompts_per_step = 6;
  c.pretrain.steps = 150;  // a policy good enough that some groups are all correct
  c.checkpoint.every = 0;
  train::Trainer t(c);
  t.run();
  int64_t dropped = 0, sampled = 0, multi_round = 0;
  for (auto& m : read_jsonl(a + "/metrics.jsonl")) {
    if (m["stage"] != "grpo") continue;
    const int64_t trained = m["groups_trained"], drop = m["groups_dropped"], used = m["prompts_sampled"];
    EXPECT_EQ(used, trained + drop) << m.dump();
    EXPECT_LE(trained, 6);
    EXPECT_LE(m["sampling_rounds"].get<int64_t>(), 4);
    EXPECT_EQ(m["zero_adv_group_fraction"].get<double>(), 0.0);  // every trained group has signal
    if (trained < 6) EXPECT_EQ(m["sampling_rounds"].get<int64_t>(), 4);  // short only at the cap
    EXPECT_LT(m["old_logprob_diff_max"].get<double>(), 1e-4);      // merged rows line up
    dropped += drop;
    sampled += used;
    multi_round += m["sampling_rounds"].get<int64_t>() > 1;
  }
  EXPECT_GT(dropped, 0) << "no group was uniform: the test exercises nothing";
  EXPECT_GT(multi_round, 0);
  EXPECT_EQ(t.state().data_position, sampled);
}

// R1: responses up to 32,768 tokens, then 65,536 from optimizer step 8,200.
TEST(Trainer, ResponseLengthScheduleByOptimizerStep) {
  auto a = tmpdir("length_schedule");
  auto c = tiny_run(a, 3);  // 4 optimizer steps per rollout step
  c.grpo.length_schedule = {{"4", 8.0}, {"8", 12.0}};
  c.checkpoint.every = 0;
  train::Trainer t(c);
  t.run();
  std::vector<int64_t> limits;
  for (auto& m : read_jsonl(a + "/metrics.jsonl"))
    if (m["stage"] == "grpo") {
      limits.push_back(m["max_new_tokens"].get<int64_t>());
      EXPECT_LE(m["response_length"].get<double>(), double(limits.back()));
    }
  EXPECT_EQ(limits, (std::vector<int64_t>{16, 8, 12}));
  EXPECT_EQ(c.grpo.max_new_tokens_at(8200, 32768), 12);
  auto e = error_of([&] {
    train::load_config_text("grpo: {length_schedule: {soon: 64}}", "bad.yaml");
  });
  EXPECT_NE(e.find("grpo.length_schedule.soon"), std::string::npos) << e;
  e = error_of([&] { train::load_config_text("grpo: {length_schedule: {10: 4096}}", "bad.yaml"); });
  EXPECT_NE(e.find("max_position_embeddings"), std::string::npos) << e;
}

// ---- sampling outside training: grpo_eval / grpo_sample's library side

TEST(Sampling, MajorityVoteClustersEquivalentAnswers) {
  using reward::math::majority_vote;
  EXPECT_EQ(majority_vote({"\\boxed{3}", "so \\boxed{1/2}", "The answer is 0.5", "\\boxed{\\frac{2}{4}}", "no idea"}), 1);
  EXPECT_EQ(majority_vote({"\\boxed{3}", "\\boxed{4}"}), 0);  // a tie: the earlier cluster
  EXPECT_EQ(majority_vote({"nothing", ""}), -1);
}

TEST(Sampling, BenchmarkAndRejectionSamplingAgreeWithTheSamples) {
  auto a = tmpdir("sampling_bench");
  auto c = tiny_run(a, 2);
  c.pretrain.steps = 150;
  train::Trainer t(c);
  t.run();
  train::PolicySource src;
  src.model_dir = a + "/checkpoints/step-000002";
  auto policy = train::open_policy(src);
  auto questions = train::read_questions(policy, {}, 24);
  ASSERT_EQ(questions.size(), 24u);
  train::BenchmarkOptions bo;
  bo.k = 4;
  bo.sampling = policy.sampling;
  bo.batch_size = 5;
  auto r = train::evaluate_benchmark(policy, questions, bo);
  // pass@1 and the majority vote recomputed from the same keyed samples (any batch size)
  auto samples = train::sample_completions(policy, questions, 4, policy.sampling, bo.seed, 24);
  auto accuracy = reward::RewardRegistry::create("accuracy");
  double pass = 0, cons = 0;
  for (size_t i = 0; i < questions.size(); ++i) {
    double ok = 0;
    for (auto& s : samples.completions[i]) ok += accuracy->score(s, questions[i].answer);
    pass += ok / 4;
    auto v = reward::math::majority_vote(samples.completions[i]);
    if (v >= 0) cons += accuracy->score(samples.completions[i][size_t(v)], questions[i].answer);
  }
  EXPECT_DOUBLE_EQ(r.pass_at_1, pass / 24);
  EXPECT_DOUBLE_EQ(r.cons_at_k, cons / 24);
  EXPECT_GT(r.pass_at_1, 0.0);  // the base stage left some skill
  EXPECT_GE(r.greedy, 0.0);
  // rejection sampling keeps only passing, complete, distinct completions
  train::RejectionOptions ro;
  ro.k = 6;
  ro.sampling = policy.sampling;
  ro.max_per_question = 2;
  auto kept = train::rejection_sample(policy, questions, ro);
  ASSERT_FALSE(kept.empty());
  std::map<int64_t, std::set<std::string>> per_q;
  for (auto& k : kept) {
    EXPECT_EQ(k.scores.at("accuracy"), 1.0);
    EXPECT_EQ(k.scores.at("format"), 1.0);
    EXPECT_TRUE(reward::has_r1_format(k.completion)) << k.completion;
    EXPECT_TRUE(per_q[k.question].insert(k.completion).second) << "duplicate " << k.completion;
  }
  for (auto& [q, s] : per_q) EXPECT_LE(s.size(), 2u);

  // the command lines print / write the same
  int rc = 0;
  const std::string bin = GRPO_BIN_DIR;
  auto out = run_command(bin + "/grpo_eval --model " + src.model_dir + " -k 4 --limit 24 --batch-size 7", &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_DOUBLE_EQ(j["pass@1"].get<double>(), r.pass_at_1);
  EXPECT_DOUBLE_EQ(j["cons@k"].get<double>(), r.cons_at_k);
  EXPECT_DOUBLE_EQ(j["greedy"].get<double>(), r.greedy);
  EXPECT_EQ(j["questions"], 24);
  const std::string sft = a + "/sft.jsonl";
  out = run_command(bin + "/grpo_sample --model " + src.model_dir + " -k 6 --limit 40 --max-per-question 2 --out " + sft, &rc);
  ASSERT_EQ(rc, 0) << out;
  auto rows = read_jsonl(sft);
  ASSERT_FALSE(rows.empty());
  for (auto& row : rows) {
    EXPECT_TRUE(reward::has_r1_format(row["response"].get<std::string>()));
    EXPECT_EQ(row["prompt"], text::format_prompt(policy.prompt, row["question"].get<std::string>()));
  }
  out = run_command(bin + "/grpo_sample --model " + src.model_dir + " --keep nonsense --out " + sft, &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("unknown reward 'nonsense'"), std::string::npos) << out;
  out = run_command(bin + "/grpo_eval --model " + src.model_dir + " -k 0", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("-k must be at least 1"), std::string::npos) << out;
}

// ---- the SFT stage and stage hand-over

namespace {
// Correct, formatted demonstrations of the built-in task as SFT JSONL.
std::string write_sft_data(const std::string& dir, const train::Config& c, int64_t n) {
  data::ArithmeticTask task(c.task, uint64_t(c.run.seed));
  const std::string path = dir + "/sft.jsonl";
  std::ofstream out(path);
  for (int64_t i = 0; i < n; ++i) {
    auto p = task.train_problem(i, core::Stream::kSftData);
    out << nlohmann::json{{"question", p.question}, {"response", task.formatted(p, p.a + p.b, false)}}.dump() << "\n";
  }
  return path;
}
}  // namespace

TEST(Sft, PackingGivesTheSameLossAndTheStageTeaches) {
  auto a = tmpdir("sft_packed"), b = tmpdir("sft_unpacked");
  auto ca = tiny_run(a, 0), cb = tiny_run(b, 0);
  for (auto* c : {&ca, &cb}) {
    c->sft.data = write_sft_data(a, *c, 400);
    c->sft.steps = 60;
    c->sft.batch_size = 32;
    c->sft.lr = 3e-3;
    c->eval.num_prompts = 64;
  }
  cb.sft.packing = false;
  cb.sft.steps = 1;
  train::Trainer ta(ca), tb(cb);
  ta.run();
  tb.run();
  auto ma = read_jsonl(a + "/metrics.jsonl"), mb = read_jsonl(b + "/metrics.jsonl");
  std::vector<nlohmann::json> sa, sb;
  for (auto& m : ma) if (m["stage"] == "sft") sa.push_back(m);
  for (auto& m : mb) if (m["stage"] == "sft") sb.push_back(m);
  ASSERT_EQ(sa.size(), 60u);
  ASSERT_EQ(sb.size(), 1u);
  // the first step sees the same examples from the same weights: packed or not, the same loss
  EXPECT_NEAR(sa[0]["loss"].get<double>(), sb[0]["loss"].get<double>(), 1e-4);
  EXPECT_LT(sa[0]["rows"].get<int64_t>(), sb[0]["rows"].get<int64_t>());  // packing did pack
  EXPECT_EQ(sb[0]["rows"], 32);
  EXPECT_LT(sa.back()["loss"].get<double>(), 0.7 * sa[0]["loss"].get<double>());  // it learns
  // (that SFT raises accuracy on a model big enough is the pipeline's learning test)
  auto ev = read_jsonl(a + "/eval.jsonl");
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0]["stage"], "base");
  EXPECT_EQ(ev[1]["stage"], "sft");
  EXPECT_EQ(ta.state().sft_step, 60);
  EXPECT_EQ(train::load_checkpoint(a + "/checkpoints/step-000000").state.sft_step, 60);
  // chat-format lines train the same way; a system message needs a chat format
  auto chat = tmpdir("sft_chat");
  auto cm = tiny_run(chat, 0);
  cm.sft.data = chat + "/chat.jsonl";
  {
    std::ofstream f(cm.sft.data);
    f << R"({"messages": [{"role": "user", "content": "12+34="}, {"role": "assistant", "content": "<think>4,6</think><answer>46</answer>"}]})" << "\n";
    f << R"({"messages": [{"role": "system", "content": "add"}, {"role": "user", "content": "1+2="}, {"role": "assistant", "content": "3"}]})" << "\n";
  }
  cm.sft.question_field = cm.sft.response_field = "messages";
  cm.sft.steps = 1;
  cm.sft.batch_size = 1;  // position 0 of the seeded order: line 1
  EXPECT_NO_THROW(train::Trainer(cm).run());
  cm.sft.batch_size = 2;
  cm.run.resume = "never";
  auto se = error_of([&] { train::Trainer(cm).run(); });
  EXPECT_NE(se.find("chat.jsonl:2: a system message needs a chat format"), std::string::npos) << se;
  // a response that does not fit is an error naming the file and line
  auto bad = tmpdir("sft_bad");
  auto cc = tiny_run(bad, 0);
  cc.sft.data = bad + "/long.jsonl";
  std::ofstream(cc.sft.data) << nlohmann::json{{"question", "1+1="}, {"response", std::string(60, '1')}}.dump() << "\n";
  cc.sft.steps = 1;
  cc.sft.batch_size = 1;
  auto e = error_of([&] { train::Trainer(cc).run(); });
  EXPECT_NE(e.find("long.jsonl:1"), std::string::npos) << e;
}

TEST(Sft, InitFromHandsTheWeightsToTheNextStage) {
  auto a = tmpdir("stage_a"), b = tmpdir("stage_b");
  auto ca = tiny_run(a, 1);
  train::Trainer ta(ca);
  ta.run();
  auto cb = tiny_run(b, 0);
  cb.pretrain.steps = 0;
  cb.run.init_from = a;  // a run directory: its latest checkpoint
  train::Trainer tb(cb);
  tb.run();
  // b's starting policy is a's final one, bit for bit
  auto pa = ta.policy().named_parameters(), pb = tb.policy().named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(pa[i].second.equal(pb[i].second)) << pa[i].first;
  auto fresh = tiny_run(tmpdir("stage_fresh"), 0);
  fresh.pretrain.steps = 0;
  train::Trainer tf(fresh);
  tf.run();
  EXPECT_FALSE(tf.policy().named_parameters()[0].second.equal(pa[0].second));
  auto e = error_of([&] {
    train::load_config_text("run: {init_from: /no/such/run}", "x.yaml");
  });
  EXPECT_NE(e.find("run.init_from"), std::string::npos) << e;
}

// Mixed precision (optim.precision: bf16): the policy's trainable parameters are bf16 and AdamW
// updates fp32 masters (what the checkpoint holds). Stated tolerance: after 4 base-stage AdamW
// steps from the same initial weights, the bf16 run's update of all parameters differs from the
// fp32 run's by at most 10% of its norm, and each step's loss by at most 1%. (Element-wise, Adam
// turns bf16 rounding of near-zero gradients into flipped update signs, so no per-element bound.)
// With MoE and a router bias (kept fp32) too.
TEST(Trainer, Bf16StepsStayNearFp32) {
  for (bool moe : {false, true}) {
    SCOPED_TRACE(moe ? "moe" : "dense");
    std::vector<io::NamedTensors> params;
    std::vector<std::vector<nlohmann::json>> metrics;
    io::NamedTensors init;
    for (std::string precision : {"fp32", "bf16"}) {
      auto dir = tmpdir("bf16_" + precision + (moe ? "_moe" : ""));
      auto c = tiny_run(dir, 0);
      c.pretrain.steps = 4;
      c.eval.num_prompts = 1;
      c.optim.precision = precision;
      if (moe) grpo::test_util::make_moe(c);
      train::Trainer t(c);
      if (precision == "bf16") {
        int64_t bf = 0;
        for (auto& [name, p] : t.policy().named_parameters()) bf += p.scalar_type() == at::kBFloat16;
        EXPECT_GT(bf, 5);
      } else {
        for (auto& [name, p] : t.policy().full_parameters()) init.emplace_back(name, p.detach().clone());
      }
      t.run();
      params.push_back(io::load_safetensors(dir + "/checkpoints/step-000000/model.safetensors"));
      metrics.push_back(read_jsonl(dir + "/metrics.jsonl"));
    }
    ASSERT_EQ(params[0].size(), params[1].size());
    double update_sq = 0, diff_sq = 0, dot = 0;
    for (size_t i = 0; i < params[0].size(); ++i) {
      ASSERT_EQ(params[1][i].second.scalar_type(), at::kFloat) << params[1][i].first;  // the fp32 masters
      auto u32 = (params[0][i].second - init[i].second).to(at::kDouble);
      auto u16 = (params[1][i].second - init[i].second).to(at::kDouble);
      update_sq += u32.pow(2).sum().item<double>();
      diff_sq += (u16 - u32).pow(2).sum().item<double>();
      dot += (u16 * u32).sum().item<double>();
    }
    const double rel = std::sqrt(diff_sq / update_sq), cosine = dot / std::sqrt(update_sq * (update_sq + diff_sq));
    std::cout << (moe ? "moe" : "dense") << ": |bf16 update - fp32 update| / |fp32 update| = " << rel
              << ", cosine ~ " << cosine << "\n";
    EXPECT_GT(update_sq, 0);
    EXPECT_LE(rel, 0.10);
    ASSERT_EQ(metrics[0].size(), metrics[1].size());
    for (size_t i = 0; i < metrics[0].size(); ++i)
      EXPECT_NEAR(metrics[1][i]["loss"].get<double>(), metrics[0][i]["loss"].get<double>(),
                  0.01 * std::abs(metrics[0][i]["loss"].get<double>())) << i;
  }
}

TEST(Trainer, RunDeviceErrorsNameTheKey) {
  auto c = tiny_run(tmpdir("device_errors"), 0);
  c.run.device = "tpu";
  auto e = error_of([&] { train::Trainer t(c); });
  EXPECT_NE(e.find("run.device: expected cpu, cuda or cuda:N, found 'tpu'"), std::string::npos) << e;
  c.run.device = "cuda:x";
  e = error_of([&] { train::Trainer t(c); });
  EXPECT_NE(e.find("run.device: expected cuda:N"), std::string::npos) << e;
  c.run.device = "cuda:99";
  e = error_of([&] { train::Trainer t(c); });
  if (grpo::cuda_available()) {
    EXPECT_NE(e.find("GPU(s)"), std::string::npos) << e;
  } else {  // this machine: the reason, with what the build and the machine have
    EXPECT_NE(e.find("run.device = cuda:99: no usable GPU here (CUDA kernels built:"), std::string::npos) << e;
  }
}
