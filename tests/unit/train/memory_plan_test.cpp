// The memory and layout planner (grpo_plan): its byte counts against what the trainer allocates,
// configs/r1_zero.yaml on 512 GPUs, layouts and errors.
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/dist/parallel.h"
#include "grpo/io/safetensors.h"
#include "grpo/train/config.h"
#include "grpo/train/memory_plan.h"
#include "grpo/train/trainer.h"
#include "../test_util.h"

using namespace grpo;
using grpo::test_util::error_of;
using grpo::test_util::tiny_run;
using grpo::test_util::tmpdir;

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
