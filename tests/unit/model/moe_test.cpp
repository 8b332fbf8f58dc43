// DeepSeek-V3 MoE: routing against transformers' DeepseekV3TopkRouter (fixtures from
// tools/make_moe_fixtures.py), the dispatch ops against a dense oracle, FP8 block dequantisation
// against transformers' reference, checkpoint details (FP8, MTP layers), aux-loss-free balancing.
#include <filesystem>
#include <fstream>
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/io/safetensors.h"
#include "grpo/model/hf_checkpoint.h"
#include "grpo/model/moe.h"
#include "grpo/model/transformer.h"
#include "grpo/train/config.h"
#include "../test_util.h"

namespace fs = std::filesystem;
using namespace grpo;
using grpo::test_util::error_of;

namespace {

std::string fixture(const std::string& name) {
  return std::string(GRPO_SOURCE_DIR) + "/tests/fixtures/" + name;
}

model::ModelConfig tiny_moe(int64_t experts = 8, int64_t groups = 4, int64_t topk_group = 2, int64_t k = 2) {
  model::ModelConfig c;
  c.model_type = "deepseek_v3";
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.kv_lora_rank = 8;
  c.qk_nope_head_dim = 4;
  c.qk_rope_head_dim = 4;
  c.v_head_dim = 4;
  c.n_routed_experts = experts;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = k;
  c.moe_intermediate_size = 8;
  c.n_group = groups;
  c.topk_group = topk_group;
  c.first_k_dense_replace = 1;
  c.rope_interleave = true;
  return c;
}

}  // namespace

class MoeFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(MoeFixture, RoutingEqualsTransformers) {
  auto model = model::load_hf_model(fixture("hf/" + GetParam()));
  io::SafetensorsFile f(fixture("hf/" + GetParam()) + "/expected.safetensors");
  at::NoGradGuard g;
  model->forward(f.tensor("input_ids").clone());
  int checked = 0, tie_rows = 0;
  for (auto layer : model->moe_layers()) {
    auto want_idx = f.tensor(fmt::format("router.{}.indices", layer)).clone();
    auto want_w = f.tensor(fmt::format("router.{}.weights", layer)).clone();
    auto got = model->last_routing(layer);
    // the same experts in the same (unsorted top-k) order, hence ties broken the same way
    EXPECT_TRUE(got.indices.equal(want_idx)) << "layer " << layer;
    EXPECT_LT((got.weights - want_w).abs().max().item<double>(), 1e-5) << "layer " << layer;
    // experts 0 and 1 have identical router rows (a tie): rows that chose exactly one of them
    auto has0 = want_idx.eq(0).any(1), has1 = want_idx.eq(1).any(1);
    tie_rows += has0.logical_xor(has1).sum().item<int64_t>();
    ++checked;
  }
  EXPECT_GE(checked, 2);
  EXPECT_GT(tie_rows, 0) << "the fixture should exercise tie-breaking";
}

TEST_P(MoeFixture, ParameterCountFromConfigMatchesTheCheckpoint) {
  auto cfg = model::read_hf_config(fixture("hf/" + GetParam()) + "/config.json");
  int64_t n = 0;
  for (auto& [name, t] : io::load_safetensors(fixture("hf/" + GetParam()) + "/model.safetensors")) n += t.numel();
  EXPECT_EQ(cfg.count_parameters(), n);
}

INSTANTIATE_TEST_SUITE_P(DeepSeekV3, MoeFixture, ::testing::Values("deepseek_v3_qlora", "deepseek_v3_noqlora"));

TEST(MoeRouting, GroupLimitedTopKClosedForm) {
  // 6 experts in 3 groups of 2, 1 group kept, top-2: group scores are sums of both (biased) scores.
  model::moe::RouterConfig c{6, 2, 3, 1, true, 2.0};
  auto logits = at::tensor({0.0f, 0.1f, 2.0f, -3.0f, 0.5f, 0.6f}).view({1, 6});
  auto bias = at::tensor({0.f, 0.f, 0.f, 0.f, 0.f, 0.f});
  auto r = model::moe::route(logits, bias, c);
  // sigmoid: .5, .525, .881, .047, .622, .646 -> groups: 1.025, .928, 1.268 -> group 2 (experts 4, 5)
  auto idx = std::get<0>(r.indices.sort(1));
  EXPECT_TRUE(idx.equal(at::tensor({4L, 5L}).view({1, 2})));
  double s4 = 1 / (1 + std::exp(-0.5)), s5 = 1 / (1 + std::exp(-0.6));
  auto w = r.weights.gather(1, std::get<1>(r.indices.sort(1)));
  EXPECT_NEAR(w[0][0].item<double>(), 2.0 * s4 / (s4 + s5), 1e-6);
  EXPECT_NEAR(w[0][1].item<double>(), 2.0 * s5 / (s4 + s5), 1e-6);
  // a bias moves the choice (group 0 wins) but the weights stay un-biased scores
  bias = at::tensor({1.f, 1.f, 0.f, 0.f, 0.f, 0.f});
  r = model::moe::route(logits, bias, c);
  EXPECT_TRUE(std::get<0>(r.indices.sort(1)).equal(at::tensor({0L, 1L}).view({1, 2})));
  double s0 = 0.5, s1 = 1 / (1 + std::exp(-0.1));
  EXPECT_NEAR(r.weights.sum().item<double>(), 2.0, 1e-6);
  EXPECT_NEAR(r.weights.max().item<double>(), 2.0 * s1 / (s0 + s1), 1e-6);
}

class MoeDispatch : public ::testing::TestWithParam<at::ScalarType> {};

// fp64: the per-expert matmul loop; fp32: the grouped GEMM path.
TEST_P(MoeDispatch, GroupedExpertsEqualADenseOracleWithGradients) {
  at::manual_seed(3);
  const auto dt = GetParam();
  const double tol = dt == at::kDouble ? 1e-10 : 2e-4;
  const int64_t N = 37, H = 12, I = 8, E = 6, k = 3;
  auto x = at::randn({N, H}, dt).requires_grad_(true);
  auto gate = at::randn({E, I, H}, dt).requires_grad_(true);
  auto up = at::randn({E, I, H}, dt).requires_grad_(true);
  auto down = at::randn({E, H, I}, dt).requires_grad_(true);
  auto idx = std::get<1>(at::rand({N, E}).topk(k, 1));
  idx.index_put_({0}, at::tensor({5L, 4L, 3L}));  // leave expert 0..2 with fewer tokens
  auto w = at::rand({N, k}, dt).requires_grad_(true);
  auto plan = model::moe::plan_dispatch(idx, E);
  int64_t total = 0;
  for (auto c : plan.counts) total += c;
  EXPECT_EQ(total, N * k);
  auto out = model::moe::unpermute(model::moe::grouped_swiglu(model::moe::permute(x, plan), gate, up, down, plan.counts), plan, w);
  // oracle: every expert on every token, combined with a dense [N, E] weight matrix
  auto dense_w = at::zeros({N, E}, dt).scatter_add(1, idx, w);
  auto all = at::einsum("eih,nh->eni", {gate, x});
  auto h = at::silu(all) * at::einsum("eih,nh->eni", {up, x});
  auto y = at::einsum("ehi,eni->enh", {down, h});
  auto ref = at::einsum("ne,enh->nh", {dense_w, y});
  EXPECT_LT((out - ref).abs().max().item<double>(), tol);
  auto go = at::randn({N, H}, dt);
  auto g1 = torch::autograd::grad({out}, {x, gate, down, w}, {go});
  auto g2 = torch::autograd::grad({ref}, {x, gate, down, w}, {go});
  for (int i = 0; i < 4; ++i) EXPECT_LT((g1[i] - g2[i]).abs().max().item<double>(), 10 * tol) << i;
}

INSTANTIATE_TEST_SUITE_P(Dtypes, MoeDispatch, ::testing::Values(at::kDouble, at::kFloat));

TEST(MoeBalance, BiasUpdateMovesLoadTowardBalance) {
  at::manual_seed(10);
  auto cfg = tiny_moe();
  cfg.initializer_range = 0.5;  // diverse tokens
  model::Transformer m(cfg);
  {  // skew the router: every token's hidden state shares a direction (embedding column 0) that
     // the router rows of experts 0 and 2 weigh heavily
    at::NoGradGuard g;
    for (auto& [name, p] : m.named_parameters()) {
      if (name == "model.embed_tokens.weight") p.select(1, 0).fill_(1.5);
      if (name == "model.layers.1.mlp.gate.weight") {
        p.normal_(0.0, 0.3);
        p[0][0] = 3.0;
        p[2][0] = 3.0;
      }
    }
  }
  m.train(true);
  auto ids = at::randint(0, cfg.vocab_size, {16, 12}, at::kLong);
  auto imbalance = [&] {
    m.reset_expert_load();
    m.forward(ids);
    auto load = m.expert_load(1).to(at::kDouble);
    return (load.max() / load.mean()).item<double>();
  };
  double before = imbalance();
  for (int step = 0; step < 300; ++step) {
    m.forward(ids);
    m.update_router_bias(0.01);
  }
  double after = imbalance();
  EXPECT_GT(before, 2.5) << "the router should start skewed";
  EXPECT_LT(after, before / 2) << "before " << before << " after " << after;
  EXPECT_LT(after, 1.6);
  std::cout << "max/mean load " << before << " -> " << after << "\n";
  // gamma = 0 freezes the bias
  auto bias = [&] {
    for (auto& [name, p] : m.named_parameters())
      if (name == "model.layers.1.mlp.gate.e_score_correction_bias") return p.clone();
    return at::Tensor();
  };
  auto b0 = bias();
  m.forward(ids);
  m.update_router_bias(0.0);
  EXPECT_TRUE(bias().equal(b0));
}

TEST(MoeBalance, SequenceBalanceLossClosedForm) {
  // 1 sequence of 2 tokens, 4 experts, k = 1: token 0 -> expert 0, token 1 -> expert 0.
  auto idx = at::tensor({0L, 0L}).view({2, 1});
  auto scores = at::tensor({0.8f, 0.2f, 0.2f, 0.8f, 0.6f, 0.2f, 0.1f, 0.1f}).view({2, 4});
  // f_0 = 4 / (1 * 2) * 2 = 4, P_0 = mean(0.8 / 2.0, 0.6 / 1.0) = 0.5 -> loss 2.0
  EXPECT_NEAR(model::moe::sequence_balance_loss(idx, scores, at::zeros({2}, at::kLong), 1, 1).item<double>(), 2.0,
              1e-6);
  // the same sequence packed with a padding token (routed to expert 1) and a second sequence of one
  // token choosing expert 1 (f_1 = 4, P_1 = 0.25): mean over the 2 sequences = (2.0 + 1.0) / 2
  auto idx_p = at::tensor({0L, 0L, 1L, 1L}).view({4, 1});
  auto sc_p = at::cat({scores, at::full({2, 4}, 0.25f)});
  auto seq = at::tensor({0L, 0L, -1L, 1L});
  EXPECT_NEAR(model::moe::sequence_balance_loss(idx_p, sc_p, seq, 2, 1).item<double>(), 1.5, 1e-6);
}

TEST(Fp8, BlockDequantisationEqualsTheReference) {
  auto w = io::load_safetensors(fixture("fp8/fp8.safetensors"));
  io::SafetensorsFile want(fixture("fp8/expected.safetensors"));
  std::map<std::string, at::Tensor> by(w.begin(), w.end());
  int n = 0;
  for (const char* name : {"a", "b", "c"}) {
    auto q = by.at(std::string(name) + ".weight");
    EXPECT_EQ(q.scalar_type(), at::kFloat8_e4m3fn);
    auto got = model::dequantize_fp8_blocks(q, by.at(std::string(name) + ".weight_scale_inv"));
    EXPECT_TRUE(got.equal(want.tensor(std::string(name) + ".weight"))) << name;
    ++n;
  }
  EXPECT_EQ(n, 3);
  auto e = error_of([&] { model::dequantize_fp8_blocks(by.at("a.weight"), by.at("b.weight_scale_inv"), 128, 128, "x.weight"); });
  EXPECT_NE(e.find("x.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("weight_scale_inv"), std::string::npos) << e;
}

TEST(Fp8, CheckpointWithFp8WeightsAndAnMtpLayerLoads) {
  // The qlora fixture rewritten as DeepSeek ships it: fp8 weights + weight_scale_inv, plus a
  // multi-token-prediction layer (index num_hidden_layers) that the policy skips.
  auto src = fixture("hf/deepseek_v3_qlora");
  auto dir = std::string(GRPO_TEST_TMPDIR) + "/deepseek_fp8";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {  // as DeepSeek-V3's config.json declares its MTP layer
    auto cfg = nlohmann::json::parse(grpo::core::read_file(src + "/config.json"));
    cfg["num_nextn_predict_layers"] = 1;
    std::ofstream(dir + "/config.json") << cfg.dump(2);
  }
  io::NamedTensors out;
  std::map<std::string, at::Tensor> expect;
  for (auto& [n, t] : io::load_safetensors(src + "/model.safetensors")) {
    if (n.find("self_attn.q_b_proj.weight") != std::string::npos || n.find("experts.3.up_proj") != std::string::npos) {
      auto q = t.to(at::kFloat8_e4m3fn);
      auto scale = at::full({(t.size(0) + 127) / 128, (t.size(1) + 127) / 128}, 0.5f);
      out.emplace_back(n, q);
      out.emplace_back(n.substr(0, n.size() - 7) + ".weight_scale_inv", scale);
      expect[n] = q.to(at::kFloat) * 0.5f;
    } else {
      out.emplace_back(n, t);
    }
  }
  out.emplace_back("model.layers.3.eh_proj.weight", at::zeros({4, 4}));
  out.emplace_back("model.layers.3.enorm.weight", at::zeros({4}));
  io::save_safetensors(dir + "/model.safetensors", out);
  auto m = model::load_hf_model(dir);
  ASSERT_EQ(expect.size(), 5u);  // q_b_proj of 3 layers + expert 3 of 2 MoE layers
  for (auto& [n, p] : m->named_parameters()) {
    if (n == "model.layers.0.self_attn.q_b_proj.weight") EXPECT_TRUE(p.equal(expect.at(n)));
    if (n == "model.layers.1.mlp.experts.up_proj")
      EXPECT_TRUE(p[3].equal(expect.at("model.layers.1.mlp.experts.3.up_proj.weight")));
  }
}

TEST(DeepSeekV3, ConfigErrorsAndThe671BCount) {
  // DeepSeek-V3-Base's config.json values (configs/r1_zero.yaml's model section holds the same)
  auto c = model::parse_hf_config(core::read_file(std::string(GRPO_SOURCE_DIR) +
                                                  "/tests/fixtures/deepseek_v3_base_config.json"),
                                  "deepseek_v3_base_config.json");
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.rope_type, "yarn");
  // 671B parameters without the multi-token-prediction module (DeepSeek-V3 report)
  EXPECT_NEAR(double(c.count_parameters()) / 1e9, 671.0, 0.5);
  // the recipe's model section says exactly what the real config.json says
  const std::string r1 = std::string(GRPO_SOURCE_DIR) + "/configs/r1_zero.yaml";
  auto recipe = train::load_config_text(core::read_file(r1), r1, {}, /*to_run=*/false);
  train::Config from_json;
  from_json.model = c;
  from_json.model.path = recipe.model.path;
  auto model_yaml = [](const train::Config& x) {
    auto y = train::to_yaml(x, false);
    auto b = y.find("model:"), e = y.find("\ntokenizer:");
    return y.substr(b, e - b);
  };
  EXPECT_EQ(model_yaml(recipe), model_yaml(from_json));
  auto e = error_of([&] {
    model::parse_hf_config(R"({"model_type":"deepseek_v3","vocab_size":10,"hidden_size":8,"intermediate_size":16,
      "num_hidden_layers":1,"num_attention_heads":2,"kv_lora_rank":4,"qk_nope_head_dim":2,"qk_rope_head_dim":2,
      "v_head_dim":2,"scoring_func":"softmax"})", "c.json");
  });
  EXPECT_NE(e.find("scoring_func 'softmax'"), std::string::npos) << e;
  auto bad_group = tiny_moe(8, 3);
  core::ConfigSource src;
  e = error_of([&] { bad_group.validate(src); });
  EXPECT_NE(e.find("model.n_group"), std::string::npos) << e;
}

// Activation recomputation (per block, reentrant) computes what the ordinary backward computes:
// a dense GQA model (no mask) and the MoE model (with its balance loss and expert loads,
// left-padded rows), fp64, the loss through log-probs and entropies; the same loss, hidden states, loads, balance
// loss and every parameter gradient, to rounding.
TEST(Recompute, SameLossGradientsAndExpertLoads) {
  for (bool moe : {false, true}) {
    SCOPED_TRACE(moe ? "moe" : "dense");
    model::ModelConfig cfg = tiny_moe();
    if (!moe) {
      cfg = model::ModelConfig{};
      cfg.model_type = "qwen2";
      cfg.vocab_size = 40, cfg.hidden_size = 16, cfg.intermediate_size = 24, cfg.num_hidden_layers = 2;
      cfg.num_attention_heads = 4, cfg.num_key_value_heads = 2, cfg.attention_bias = true;
    }
    auto make = [&] {
      at::manual_seed(4);
      auto m = std::make_unique<model::Transformer>(cfg);
      for (auto& p : m->named_parameters()) p.second.set_data(p.second.data().to(at::kDouble));
      m->set_balance_loss_coef(0.1);
      m->train(true);
      return m;
    };
    auto plain = make(), re = make();
    re->set_recompute(true);
    auto g = at::make_generator<at::CPUGeneratorImpl>(7);
    auto ids = at::randint(cfg.vocab_size, {3, 9}, g, at::kLong);
    auto mask = at::ones({3, 9}, at::kBool);
    mask[0].narrow(0, 0, 3).fill_(false);
    auto pos = at::clamp_min(mask.to(at::kLong).cumsum(1) - 1, 0);
    auto w = at::randn({3, 9}, g, at::kDouble);
    std::vector<double> losses;
    std::vector<at::Tensor> hidden;
    std::vector<int64_t> checkpoints;  // recomputed blocks in each graph (the test can fail)
    for (auto* m : {plain.get(), re.get()}) {
      auto h = moe ? m->forward(ids, pos, mask) : m->forward(ids);  // with and without a mask
      checkpoints.push_back(grpo::test_util::graph_nodes_named(h, "BlockCheckpoint"));
      auto lp = m->token_logprobs(h, ids.roll(-1, 1));
      auto loss = (lp.logprobs * w).sum() + lp.entropy.sum() * 0.1;
      if (auto bl = m->take_balance_loss(); bl.defined()) loss = loss + bl;
      loss.backward();
      losses.push_back(loss.item<double>());
      hidden.push_back(h.detach());
    }
    EXPECT_EQ(checkpoints[0], 0);
    EXPECT_EQ(checkpoints[1], cfg.num_hidden_layers);
    EXPECT_NEAR(losses[0], losses[1], 1e-12);
    EXPECT_LT((hidden[0] - hidden[1]).abs().max().item<double>(), 1e-12);
    auto a = plain->named_parameters(), b = re->named_parameters();
    ASSERT_EQ(a.size(), b.size());
    int64_t with_grad = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].second.grad().defined(), b[i].second.grad().defined()) << a[i].first;
      if (!a[i].second.grad().defined()) continue;
      ++with_grad;
      EXPECT_LT((a[i].second.grad() - b[i].second.grad()).abs().max().item<double>(), 1e-12) << a[i].first;
    }
    EXPECT_GT(with_grad, 10);
    for (auto l : plain->moe_layers()) EXPECT_TRUE(plain->expert_load(l).equal(re->expert_load(l))) << l;
  }
}
