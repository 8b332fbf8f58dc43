// Tensor and expert parallel: the split model computes what the whole model computes in one process
// (fp64: hidden states, log-probs, gradients, cached decoding); tensor and expert parallel training,
// and checkpoints resumed with another layout, equal one process's run; the same on a shared GPU.
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/core/device.h"
#include "grpo/dist/comm.h"
#include "grpo/dist/parallel.h"
#include "grpo/io/safetensors.h"
#include "grpo/model/transformer.h"
#include "grpo/train/config.h"
#include "grpo/train/memory_plan.h"
#include "grpo/train/trainer.h"
#include "../test_util.h"
#include "workers.h"

// ---- tensor and expert parallel model: the same computation as one process

namespace {

grpo::model::ModelConfig mp_dense() {  // GQA with biases (Qwen2-like), untied LM head
  grpo::model::ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = 36;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 4;
  c.attention_bias = true;
  c.max_position_embeddings = 64;
  return c;
}

grpo::model::ModelConfig mp_moe() {  // DeepSeek-V3 shaped: MLA with q_lora, dense layer 0, MoE with a shared expert, tied
  grpo::model::ModelConfig c;
  c.model_type = "deepseek_v3";
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.q_lora_rank = 8;
  c.kv_lora_rank = 8;
  c.qk_nope_head_dim = 4;
  c.qk_rope_head_dim = 4;
  c.v_head_dim = 4;
  c.n_routed_experts = 8;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 3;
  c.moe_intermediate_size = 8;
  c.n_group = 4;
  c.topk_group = 2;
  c.first_k_dense_replace = 1;
  c.rope_interleave = true;
  c.tie_word_embeddings = true;
  c.max_position_embeddings = 64;
  return c;
}

std::unique_ptr<grpo::model::Transformer> fp64_model(const grpo::model::ModelConfig& c,
                                                     const grpo::model::Parallel& par) {
  at::manual_seed(11);
  auto m = std::make_unique<grpo::model::Transformer>(c, par);
  for (auto& p : m->named_parameters()) p.second.set_data(p.second.data().to(at::kDouble));
  return m;
}

// Each data-parallel rank's batch: 3 sequences of 7 tokens, the first left-padded.
struct MpBatch {
  at::Tensor ids, mask, targets, w_logp, w_ent;
};
MpBatch mp_batch(int64_t vocab, int64_t dp_rank) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(100 + dp_rank);
  MpBatch b;
  b.ids = at::randint(vocab, {3, 7}, g, at::kLong);
  b.mask = at::ones({3, 7}, at::kBool);
  b.mask[0].narrow(0, 0, 2).fill_(false);
  b.targets = at::randint(vocab, {3, 7}, g, at::kLong);
  b.w_logp = at::randn({3, 7}, g, at::kDouble);
  b.w_ent = at::randn({3, 7}, g, at::kDouble);
  return b;
}
at::Tensor mp_loss(grpo::model::Transformer& m, const MpBatch& b, at::Tensor* hidden, at::Tensor* logp) {
  auto pos = at::clamp_min(b.mask.to(at::kLong).cumsum(1) - 1, 0);
  auto h = m.forward(b.ids, pos, b.mask);
  grpo::model::LogProbOptions o;
  o.chunk_rows = 5;   // several chunks of rows
  o.chunk_vocab = 4;  // and of each rank's vocabulary slice
  auto lp = m.token_logprobs(h, b.targets, o);
  if (hidden) *hidden = h.detach();
  if (logp) *logp = lp.logprobs.detach();
  auto loss = (lp.logprobs * b.w_logp).sum() + (lp.entropy * b.w_ent).sum();
  auto balance = m.take_balance_loss();  // MoE models (its gradient reaches the router)
  return balance.defined() ? loss + balance : loss;
}

}  // namespace

// Declared in workers.h: what DistWorker.Run runs for the model_tp*_ep* scenarios.
void model_parallel_worker(grpo::dist::Comm& world, int64_t tp, int64_t ep, bool sequence_parallel) {
  auto groups = grpo::dist::make_groups(world, grpo::dist::make_layout(world.size(), tp, ep));
  const auto& L = groups.layout;
  const int64_t dp_rank = L.dp_rank(world.rank());
  for (auto cfg : {mp_dense(), mp_moe()}) {
    SCOPED_TRACE(cfg.model_type);
    auto whole = fp64_model(cfg, {});
    auto split = fp64_model(cfg, {groups.tp.get(), groups.ep.get()});
    // sequence parallel, with activation recomputation (its collectives run again in backward)
    split->set_sequence_parallel(sequence_parallel);
    split->set_recompute(sequence_parallel);
    for (auto* m : {whole.get(), split.get()}) m->set_balance_loss_coef(0.5);
    // the same initial weights, sliced
    auto full0 = split->full_parameters();
    auto ref0 = whole->named_parameters();
    ASSERT_EQ(full0.size(), ref0.size());
    for (size_t i = 0; i < ref0.size(); ++i) {
      EXPECT_EQ(full0[i].first, ref0[i].first);
      EXPECT_TRUE(full0[i].second.equal(ref0[i].second)) << ref0[i].first;
    }
    // grpo_plan's per-GPU counts are the elements this rank allocates
    {
      grpo::train::Config tc;
      tc.model = cfg;
      tc.grpo.prompts_per_step = 4 * L.dp();
      auto plan = grpo::train::plan_memory(tc, L, {});
      int64_t trainable = 0;
      for (auto& p : split->parameters()) trainable += p.requires_grad() ? p.numel() : 0;
      EXPECT_EQ(plan.params, split->num_parameters());
      EXPECT_EQ(plan.trainable, trainable);
      EXPECT_EQ(plan.param_bytes, double(split->num_parameters()) * 8 / 2);  // planned fp32 (this test runs fp64)
    }
    // forward + backward on this rank's batch
    auto mine = mp_batch(cfg.vocab_size, dp_rank);
    if (tp > 1) {  // sequence parallel engages exactly when asked: the stream is gathered at the end
      auto hh = split->forward(mine.ids);
      const bool gathered = grpo::test_util::graph_nodes_named(hh, "GatherSequence") > 0;
      EXPECT_EQ(gathered, sequence_parallel);
      split->take_balance_loss();  // (not this forward's)
    }
    at::Tensor h, lp;
    mp_loss(*split, mine, &h, &lp).backward();
    // the whole model on every data-parallel rank's batch (its gradient: the sum of their losses)
    at::Tensor h_ref, lp_ref;
    for (int64_t d = 0; d < L.dp(); ++d) {
      at::Tensor hd, lpd;
      mp_loss(*whole, mp_batch(cfg.vocab_size, d), &hd, &lpd).backward();
      if (d == dp_rank) h_ref = hd, lp_ref = lpd;
    }
    EXPECT_LT((h - h_ref).abs().max().item<double>(), 1e-12);
    EXPECT_LT((lp - lp_ref).abs().max().item<double>(), 1e-12);
    double worst = 0;
    std::string worst_name;
    auto ref_params = whole->named_parameters();
    auto params = split->named_parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& [name, p] = params[i];
      if (!p.requires_grad()) continue;
      auto g = p.grad().defined() ? p.grad().clone() : at::zeros_like(p);
      (split->is_expert_parameter(name) ? groups.expert_dp : groups.dp)->all_reduce_sum(g);
      auto full = split->gather_full(name, g);
      auto want = ref_params[i].second.grad();
      ASSERT_TRUE(want.defined()) << name;
      double d = (full - want).abs().max().item<double>() / (1 + want.abs().max().item<double>());
      if (d > worst) worst = d, worst_name = name;
    }
    EXPECT_LT(worst, 1e-12) << "worst gradient: " << worst_name;
    // generation: logits (gathered over tp) and a KV-cached decode step
    at::NoGradGuard ng;
    split->train(false);
    whole->train(false);
    for (auto* m : {split.get(), whole.get()}) {
      auto cache = m->make_cache(3, 9);
      auto pos = at::clamp_min(mine.mask.to(at::kLong).cumsum(1) - 1, 0);
      m->forward(mine.ids, pos, mine.mask, cache.get());
      auto step_mask = at::cat({mine.mask, at::ones({3, 1}, at::kBool)}, 1);
      auto hs = m->forward(mine.targets.narrow(1, 0, 1), pos.narrow(1, 6, 1) + 1, step_mask, cache.get());
      auto z = m->logits(hs.select(1, 0));
      if (m == split.get()) h = z;
      else EXPECT_LT((h - z).abs().max().item<double>(), 1e-12);
    }
  }
  std::cout << "model parallel rank " << world.rank() << " ok\n";
}

// Tensor parallel (tp = 2 and 4), expert parallel (ep = 2 and 4) and both (tp = 2 x ep = 2 in 4
// processes), and tp with sequence parallel and activation recomputation (7-token rows: uneven
// sequence parts): a dense GQA model and a DeepSeek-V3-shaped MLA/MoE model compute, in fp64, the
// same hidden states, log-probs, entropies, gradients and cached decoding logits as the whole model.
TEST(Dist, TensorAndExpertParallelModelEqualsOneProcess) {
  for (auto [world, tp, ep, sp] : std::vector<std::tuple<int, int, int, bool>>{
           {2, 2, 1, false}, {2, 1, 2, false}, {4, 2, 2, false}, {4, 4, 1, false}, {4, 1, 4, false},
           {2, 2, 1, true}, {4, 2, 2, true}, {4, 4, 1, true}}) {
    std::vector<int> ranks;
    for (int r = 0; r < world; ++r) ranks.push_back(r);
    const std::string scenario = "model_tp" + std::to_string(tp) + "_ep" + std::to_string(ep) + (sp ? "_sp" : "");
    auto ws = run_workers(world, ranks, scenario, 60000);
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(ws[r].rc, 0) << scenario << " rank " << r << ":\n" << ws[r].out;
      EXPECT_NE(ws[r].out.find("model parallel rank " + std::to_string(r) + " ok"), std::string::npos)
          << scenario << " rank " << r << ":\n" << ws[r].out;
      EXPECT_EQ(ws[r].out.find("Failure"), std::string::npos) << scenario << " rank " << r << ":\n" << ws[r].out;
    }
  }
}

// Tensor parallel training (a Qwen2-like dense model: GQA, untied LM head, the trainer's
// vocab-parallel log-probs): tp = 2 in 2 processes and tp = 2 x dp = 2 in 4 processes train the
// same parameters as one process (base, SFT and GRPO stages). Checkpoints hold whole tensors, so a
// layout change on resume continues the same run: one process's checkpoint resumed with tp = 2,
// and a tp = 2 checkpoint resumed by one process, both equal one process continuing.
TEST(Dist, TensorParallelTrainingAndLayoutChangingCheckpoints) {
  auto params = [](const std::string& run, int step) {
    return grpo::io::load_safetensors(fmt::format("{}/checkpoints/step-{:06d}/model.safetensors", run, step));
  };
  auto max_diff = [](const grpo::io::NamedTensors& a, const grpo::io::NamedTensors& b) {
    EXPECT_EQ(a.size(), b.size());
    double d = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      EXPECT_EQ(a[i].first, b[i].first);
      d = std::max(d, (a[i].second - b[i].second).abs().max().item<double>());
    }
    return d;
  };
  auto all_ok = [](const std::vector<Worker>& ws, const std::string& what) {
    for (size_t r = 0; r < ws.size(); ++r) ASSERT_EQ(ws[r].rc, 0) << what << " rank " << r << ":\n" << ws[r].out;
  };
  // one process: 2 rollout steps, then resumed for a third
  const std::string one = grpo::test_util::tmpdir("tp_one");
  {
    auto c = dp_run(one);
    grpo::train::Trainer t(c);
    t.run();
    c.grpo.rollout_steps = 3;
    grpo::train::Trainer t3(c);
    t3.run();
  }
  const std::string base = std::string(GRPO_TEST_TMPDIR) + "/dist_";
  for (int world : {2, 4}) {
    std::vector<int> ranks;
    for (int r = 0; r < world; ++r) ranks.push_back(r);
    auto ws = run_workers(world, ranks, "grpo_tp2_steps2", 60000);
    all_ok(ws, "tp 2 training");
    const std::string run = base + "grpo_tp2_steps2_" + std::to_string(world) + "/run";
    const double d = max_diff(params(run, 2), params(one, 2));
    EXPECT_LT(d, 2e-5) << world << " processes, tp 2";
    std::cout << world << " processes (tp 2): max |param difference| " << d << "\n";
    auto m = grpo::test_util::read_jsonl(run + "/metrics.jsonl");
    EXPECT_EQ(m.back()["processes"], world);
  }
  // tp 1 -> tp 2: one process's step-2 checkpoint, resumed by 2 processes with tp = 2
  ::setenv("GRPO_DIST_RESUME_FROM", (one + "/checkpoints/step-000002").c_str(), 1);
  auto ws = run_workers(2, {0, 1}, "grpo_tp2_steps3", 60000);
  all_ok(ws, "tp 1 -> 2 resume");
  const double up = max_diff(params(base + "grpo_tp2_steps3_2/run", 3), params(one, 3));
  // tp 2 -> tp 1: the 2-process tp = 2 step-2 checkpoint, resumed by one process
  const std::string down = grpo::test_util::tmpdir("tp_down");
  {
    auto c = dp_run(down);
    c.grpo.rollout_steps = 3;
    c.run.resume = base + "grpo_tp2_steps2_2/run/checkpoints/step-000002";
    grpo::train::Trainer t(c);
    t.run();
  }
  ::unsetenv("GRPO_DIST_RESUME_FROM");
  const double dn = max_diff(params(down, 3), params(one, 3));
  EXPECT_LT(up, 2e-5);
  EXPECT_LT(dn, 2e-5);
  std::cout << "resumed with another layout, max |param difference| at step 3: tp 1 -> 2: " << up
            << ", tp 2 -> 1: " << dn << "\n";
}

// Expert parallel in grpo_train: ep = 2 (2 processes) and ep = 2 with 2 expert-data-parallel
// replicas (4 processes, with ZeRO-1 over them) train the MoE run of one process: the same parameters (base, SFT and GRPO
// stages), losses, rewards and held-out results. tp = 2 x ep = 2 (4 processes, ZeRO-1) trains what
// tp = 2 alone trains, and so it does with activation recomputation (the tp/ep collectives run
// again in backward) and sequence parallel on both (they sum in another order than without). (tp = 2 vs one process differs by float summation order only -- exact to 1e-12 in
// fp64, Dist.TensorAndExpertParallelModelEqualsOneProcess -- which Adam turns into ~5e-5 in a
// rarely routed expert over these 43 steps; printed, not asserted.)
TEST(Dist, ExpertParallelTrainingEqualsOneProcess) {
  const std::string one = grpo::test_util::tmpdir("ep_one");
  {
    grpo::train::Trainer t(moe_run(one));
    t.run();
  }
  struct Run {
    grpo::io::NamedTensors params;
    std::vector<nlohmann::json> metrics, evals;
  };
  auto load = [](const std::string& run) {
    return Run{grpo::io::load_safetensors(run + "/checkpoints/step-000002/model.safetensors"),
               grpo::test_util::read_jsonl(run + "/metrics.jsonl"), grpo::test_util::read_jsonl(run + "/eval.jsonl")};
  };
  auto max_diff = [](const Run& a, const Run& b) {
    EXPECT_EQ(a.params.size(), b.params.size());
    double d = 0;
    for (size_t i = 0; i < std::min(a.params.size(), b.params.size()); ++i) {
      EXPECT_EQ(a.params[i].first, b.params[i].first);
      d = std::max(d, (a.params[i].second - b.params[i].second).abs().max().item<double>());
    }
    return d;
  };
  auto train = [&](int world, int tp, int ep, bool zero1 = false, bool recompute = false) {
    std::vector<int> ranks;
    for (int r = 0; r < world; ++r) ranks.push_back(r);
    const std::string scenario = "grpo_moe_tp" + std::to_string(tp) + "_ep" + std::to_string(ep) +
                                 (zero1 ? "_zero1" : "") + (recompute ? "_recompute" : "");
    auto ws = run_workers(world, ranks, scenario, 60000);
    for (int r = 0; r < world; ++r) EXPECT_EQ(ws[r].rc, 0) << scenario << " rank " << r << ":\n" << ws[r].out;
    return load(std::string(GRPO_TEST_TMPDIR) + "/dist_" + scenario + "_" + std::to_string(world) + "/run");
  };
  auto same_run = [&](const Run& got, const Run& want, const std::string& what) {
    const double d = max_diff(got, want);
    EXPECT_LT(d, 2e-5) << what;
    std::cout << what << ": max |param difference| " << d << "\n";
    ASSERT_EQ(got.metrics.size(), want.metrics.size()) << what;
    for (size_t i = 0; i < got.metrics.size(); ++i) {
      if (got.metrics[i]["stage"] == "grpo") EXPECT_EQ(got.metrics[i]["reward_mean"], want.metrics[i]["reward_mean"]) << what << " " << i;
      EXPECT_NEAR(got.metrics[i]["loss"].get<double>(), want.metrics[i]["loss"].get<double>(), 1e-5) << what << " " << i;
    }
    ASSERT_EQ(got.evals.size(), want.evals.size()) << what;
    for (size_t i = 0; i < got.evals.size(); ++i)
      for (const char* k : {"accuracy_greedy", "accuracy_sampled", "format_greedy"})
        EXPECT_EQ(got.evals[i][k], want.evals[i][k]) << what << " eval " << i << " " << k;
  };
  const Run ref = load(one);
  ASSERT_EQ(ref.evals.size(), 4u);  // after the base and SFT stages, after each rollout step
  same_run(train(2, 1, 2), ref, "ep 2 (2 processes) vs one process");
  same_run(train(4, 1, 2, true), ref, "dp 4 with ep 2 and ZeRO-1 vs one process");
  const Run tp2 = train(2, 2, 1), tp2_sp = train(2, 2, 1, false, true);
  same_run(train(4, 2, 2, true), tp2, "tp 2 x ep 2 (4 processes, ZeRO-1) vs tp 2 (2 processes)");
  same_run(train(4, 2, 2, true, true), tp2_sp,
           "tp 2 x ep 2 (4 processes, ZeRO-1, recomputation, sequence parallel) vs tp 2 (the same)");
  std::cout << "float summation order: tp 2 vs one process: max |param difference| " << max_diff(tp2, ref)
            << "; tp 2 with vs without sequence parallel: " << max_diff(tp2_sp, tp2) << "\n";
}

// The GPU paths of tensor and expert parallel training (vocab-parallel log-prob, all-to-all
// dispatch, bucketed all-reduce of GPU gradients, ZeRO-1 broadcasts) in grpo_train: 2 processes
// sharing GPU 0 (Gloo) train the MoE run that one process trains on it. GPU kernels sum in another
// order for other shapes, so the comparison is relative, as Gpu.TrainerOnGpuMatchesCpu's.
TEST(GpuDist, ParallelTrainingOnASharedGpuEqualsOneProcess) {
  if (!grpo::cuda_available()) GTEST_SKIP() << "no usable GPU: " << grpo::cuda_summary();
  const std::string one = grpo::test_util::tmpdir("gpu_mp_one");
  {
    auto c = moe_run(one);
    c.run.device = "cuda:0";
    grpo::train::Trainer t(c);
    t.run();
  }
  auto params = [](const std::string& run) {
    return grpo::io::load_safetensors(run + "/checkpoints/step-000002/model.safetensors");
  };
  const auto ref = params(one);
  WorkerEnv env({{"GRPO_DIST_DEVICE", "cuda:0"}, {"GRPO_DIST_BACKEND", "gloo"}});
  for (std::string scenario : {"grpo_moe_tp1_ep2_zero1", "grpo_moe_tp2_ep1"}) {
    auto ws = run_workers(2, {0, 1}, scenario, 120000);
    for (int r = 0; r < 2; ++r) ASSERT_EQ(ws[r].rc, 0) << scenario << " rank " << r << ":\n" << ws[r].out;
    const auto got = params(std::string(GRPO_TEST_TMPDIR) + "/dist_" + scenario + "_2/run");
    ASSERT_EQ(got.size(), ref.size());
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const auto want = ref[i].second.to(at::kDouble), diff = got[i].second.to(at::kDouble) - want;
      const double rel = diff.norm().item<double>() / std::max(want.norm().item<double>(), 1e-30);
      EXPECT_LT(rel, 1e-3) << scenario << " " << ref[i].first;
      worst = std::max(worst, rel);
    }
    std::cout << scenario << " on a shared GPU vs one process on it: worst relative parameter difference " << worst
              << "\n";
  }
}
