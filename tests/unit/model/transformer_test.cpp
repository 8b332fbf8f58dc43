// The transformer and its KV cache against plain LibTorch references: parameter names, cached
// decoding, padding, packed segments, bf16 against fp32, gradients against finite differences.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "grpo/core/error.h"
#include "grpo/model/logprob.h"
#include "grpo/model/transformer.h"
#include "../test_util.h"

using namespace grpo::model;

namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 23;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;  // GQA
  c.intermediate_size = 48;
  c.max_position_embeddings = 40;
  c.initializer_range = 0.2;
  return c;
}

// tiny_config's model with DeepSeek-V3's multi-head latent attention (no low-rank query, dense MLPs)
void make_mla(ModelConfig& c) {
  c.model_type = "deepseek_v3";
  c.num_key_value_heads = c.num_attention_heads;
  c.q_lora_rank = 0;
  c.kv_lora_rank = 8;
  c.qk_nope_head_dim = 4;
  c.qk_rope_head_dim = 4;
  c.v_head_dim = 8;
}

}  // namespace

TEST(Transformer, HuggingFaceParameterNames) {
  at::manual_seed(0);
  Transformer m(tiny_config());
  std::vector<std::string> names;
  for (auto& [n, t] : m.named_parameters()) names.push_back(n);
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  EXPECT_TRUE(has("model.embed_tokens.weight"));
  EXPECT_TRUE(has("model.layers.1.self_attn.k_proj.weight"));
  EXPECT_TRUE(has("model.layers.0.mlp.down_proj.weight"));
  EXPECT_TRUE(has("model.layers.0.post_attention_layernorm.weight"));
  EXPECT_TRUE(has("model.norm.weight"));
  EXPECT_TRUE(has("lm_head.weight"));
  EXPECT_EQ(names.size(), 3u + 2u * 9u);
}

TEST(Transformer, KVCacheDecodingMatchesFullForward) {
  at::manual_seed(1);
  Transformer m(tiny_config());
  m.train(false);
  at::NoGradGuard g;
  auto ids = at::randint(0, 23, {3, 11}, at::kLong);
  auto full = m.logits(m.forward(ids));  // [3, 11, V]
  auto cache = m.make_cache(3, 11);
  // prefill 5 tokens, then one at a time
  std::vector<at::Tensor> parts{m.logits(m.forward(ids.narrow(1, 0, 5), {}, {}, cache.get()))};
  for (int64_t t = 5; t < 11; ++t)
    parts.push_back(m.logits(m.forward(ids.narrow(1, t, 1), {}, {}, cache.get())));
  auto inc = at::cat(parts, 1);
  EXPECT_LT((inc - full).abs().max().item<double>(), 1e-5);
}

TEST(Transformer, LeftPaddingDoesNotChangeRealTokens) {
  at::manual_seed(2);
  Transformer m(tiny_config());
  m.train(false);
  at::NoGradGuard g;
  auto ids = at::randint(1, 23, {1, 6}, at::kLong);
  auto ref = m.logits(m.forward(ids));
  // same sequence left-padded by 3 garbage tokens, positions starting at 0 on the first real one
  auto padded = at::cat({at::full({1, 3}, 7, at::kLong), ids}, 1);
  auto mask = at::cat({at::zeros({1, 3}, at::kBool), at::ones({1, 6}, at::kBool)}, 1);
  auto pos = at::clamp_min(mask.to(at::kLong).cumsum(1) - 1, 0);
  auto out = m.logits(m.forward(padded, pos, mask)).narrow(1, 3, 6);
  EXPECT_LT((out - ref).abs().max().item<double>(), 1e-5);
  EXPECT_FALSE(m.logits(m.forward(padded, pos, mask)).isnan().any().item<bool>());
}

// Padding only at the ends of rows (the trainer's packed micro-batches): the plain causal path
// runs, real tokens equal each row alone, and an MoE model's expert loads count real tokens only.
TEST(Transformer, RightPaddingLeavesRealTokensAndMoeLoadsAlone) {
  for (bool moe : {false, true}) {
    SCOPED_TRACE(moe ? "MoE" : "dense");
    auto c = tiny_config();
    if (moe) grpo::test_util::make_moe(c);
    at::manual_seed(3);
    Transformer m(c);
    m.train(true);  // expert loads are counted in training forwards
    at::NoGradGuard g;
    const std::vector<int64_t> len{7, 3, 5};
    auto ids = at::randint(1, 23, {3, 7}, at::kLong);
    auto mask = at::zeros({3, 7}, at::kBool);
    for (int64_t r = 0; r < 3; ++r) mask[r].narrow(0, 0, len[r]).fill_(true);
    auto whole = m.logits(m.forward(ids, {}, mask));
    std::vector<at::Tensor> loads;
    for (auto l : m.moe_layers()) loads.push_back(m.expert_load(l).clone());
    m.reset_expert_load();
    for (int64_t r = 0; r < 3; ++r) {
      auto alone = m.logits(m.forward(ids[r].narrow(0, 0, len[r]).unsqueeze(0)));
      EXPECT_LT((whole[r].narrow(0, 0, len[r]) - alone[0]).abs().max().item<double>(), 1e-5) << r;
    }
    size_t i = 0;
    for (auto l : m.moe_layers()) EXPECT_TRUE(m.expert_load(l).equal(loads[i++])) << l;
    EXPECT_EQ(m.moe_layers().empty(), !moe);
  }
}

// Packed sequences (SFT packing): segment ids keep each example to itself, positions restart.
TEST(Transformer, PackedSegmentsEqualSeparateSequences) {
  for (bool mla : {false, true}) {
    at::manual_seed(3);
    auto cfg = tiny_config();
    if (mla) make_mla(cfg);
    Transformer m(cfg);
    m.train(false);
    at::NoGradGuard g;
    auto a = at::randint(1, 23, {1, 5}, at::kLong), b = at::randint(1, 23, {1, 7}, at::kLong);
    auto ra = m.logits(m.forward(a)), rb = m.logits(m.forward(b));
    // [a | b | 2 pads]
    auto packed = at::cat({a, b, at::zeros({1, 2}, at::kLong)}, 1);
    auto seg = at::cat({at::full({1, 5}, 1, at::kLong), at::full({1, 7}, 2, at::kLong), at::zeros({1, 2}, at::kLong)}, 1);
    auto pos = at::cat({at::arange(5, at::kLong), at::arange(7, at::kLong), at::zeros({2}, at::kLong)}).view({1, 14});
    auto out = m.logits(m.forward(packed, pos, seg));
    EXPECT_LT((out.narrow(1, 0, 5) - ra).abs().max().item<double>(), 1e-5) << mla;
    EXPECT_LT((out.narrow(1, 5, 7) - rb).abs().max().item<double>(), 1e-5) << mla;
    EXPECT_FALSE(out.isnan().any().item<bool>());
    // without the segments, b's tokens would see a's: the outputs differ
    auto leaky = m.logits(m.forward(packed, pos, at::ones({1, 14}, at::kBool)));
    EXPECT_GT((leaky.narrow(1, 5, 7) - rb).abs().max().item<double>(), 1e-3) << mla;
  }
}

// bf16 models on CPU: attention runs in fp32 for short keys (LibTorch's bf16 CPU kernel is slow
// there) and in bf16 for long ones and one-token decoding. Every path must agree with the fp32
// model to bf16 accuracy, forward and backward, dense and MLA, full and cached.
TEST(Transformer, Bf16AgreesWithFp32ForShortAndLongSequences) {
  for (bool mla : {false, true}) {
    auto cfg = tiny_config();
    cfg.max_position_embeddings = 256;
    if (mla) make_mla(cfg);
    at::manual_seed(4);
    Transformer f32(cfg), b16(cfg);
    for (auto& p : f32.parameters()) p.set_data(p.data().to(at::kBFloat16).to(at::kFloat));  // same weights
    b16.copy_from(f32);
    for (auto& p : b16.parameters()) p.set_data(p.data().to(at::kBFloat16));
    // Error relative to the reference's largest magnitude. The weights are the same (rounded to
    // bf16 for both), so only activation rounding differs: 8 significant bits, u = 2^-9, through
    // two blocks of ~15 rounded ops each gives up to ~3% here (measured 1-2.9%); a wrong mask,
    // scale or layout in an attention path gives errors of order 1.
    auto rel = [](const at::Tensor& a, const at::Tensor& ref) {
      return ((a.to(at::kFloat) - ref).abs().max() / ref.abs().max()).item<double>();
    };
    for (int64_t T : {20, 230}) {  // below and above the fp32 attention cut-off
      SCOPED_TRACE(std::string(mla ? "MLA" : "dense") + " T=" + std::to_string(T));
      auto ids = at::randint(0, 23, {2, T}, at::kLong);
      auto dir = at::randn({2, T, cfg.hidden_size});
      std::vector<at::Tensor> out, grad;
      for (Transformer* m : {&f32, &b16}) {
        for (auto& p : m->parameters()) p.mutable_grad() = at::Tensor();
        auto h = m->forward(ids);
        (h.to(at::kFloat) * dir).sum().backward();
        out.push_back(h.detach());
        grad.push_back(m->named_parameters().at(2).second.grad());  // layer 0's first attention weight
      }
      EXPECT_EQ(out[1].scalar_type(), at::kBFloat16);
      EXPECT_LT(rel(out[1], out[0]), 6e-2);
      EXPECT_LT(rel(grad[1], grad[0]), 6e-2);
      // cached: prefill, then one token at a time
      at::NoGradGuard g;
      auto ref = f32.logits(f32.forward(ids));
      auto cache = b16.make_cache(2, T);
      const int64_t pre = T - 4;
      std::vector<at::Tensor> parts{b16.logits(b16.forward(ids.narrow(1, 0, pre), {}, {}, cache.get()))};
      for (int64_t t = pre; t < T; ++t) parts.push_back(b16.logits(b16.forward(ids.narrow(1, t, 1), {}, {}, cache.get())));
      EXPECT_LT(rel(at::cat(parts, 1), ref), 6e-2);
    }
  }
}

TEST(Transformer, GradientsMatchFiniteDifferences) {
  // The hand-written backward passes (RMSNorm, RoPE, chunked log-prob) checked end to end in
  // float64 against central differences of the loss.
  at::manual_seed(4);
  auto c = tiny_config();
  c.num_hidden_layers = 1;
  Transformer m(c);
  for (auto& p : m.named_parameters()) p.second.set_data(p.second.data().to(at::kDouble));
  {
    at::NoGradGuard g;  // non-trivial norm weights so their gradient path is exercised
    for (auto& p : m.named_parameters())
      if (p.first.find("norm") != std::string::npos) p.second.uniform_(0.5, 1.5);
  }
  auto ids = at::randint(0, 23, {2, 6}, at::kLong);
  auto loss_fn = [&] {
    auto h = m.forward(ids.narrow(1, 0, 5));
    auto lp = token_logprobs(h, m.lm_head_weight(), ids.narrow(1, 1, 5));
    return (lp.logprobs.sum() + 0.3 * lp.entropy.sum());
  };
  auto loss = loss_fn();
  auto params = m.parameters();
  auto grads = torch::autograd::grad({loss}, params);
  auto named = m.named_parameters();
  at::NoGradGuard g;
  for (size_t i = 0; i < params.size(); ++i) {
    auto flat = params[i].view(-1);
    for (int64_t j : {int64_t(0), flat.numel() / 2, flat.numel() - 1}) {
      double orig = flat[j].item<double>(), h = 1e-6;
      flat[j] = orig + h;
      double up = loss_fn().item<double>();
      flat[j] = orig - h;
      double down = loss_fn().item<double>();
      flat[j] = orig;
      double fd = (up - down) / (2 * h);
      EXPECT_NEAR(grads[i].view(-1)[j].item<double>(), fd, 1e-6 * (1 + std::abs(fd))) << named[i].first << "[" << j << "]";
    }
  }
}

// The step roofline's least work (ModelConfig::forward_flops, forward_weight_elements,
// kv_elements_per_token) against the counts written out by hand for a dense GQA model, and the
// MoE rules: top-k experts' matmuls per token, only reachable experts' weights read.
TEST(Transformer, ForwardWorkCountsTheMatmulsAndAttention) {
  auto c = tiny_config();  // H 32, 2 layers, 4 heads of 8, 2 KV heads, MLP 48, vocab 23
  const double tokens = 10, logits = 3, pairs = 55;
  const double per_token = 32 * (32 + 2 * 16) + 32 * 32 + 3 * 32 * 48;  // q, k, v; o; gate, up, down
  EXPECT_DOUBLE_EQ(c.forward_flops(tokens, logits, pairs),
                   2 * tokens * 2 * per_token + 2 * logits * 23 * 32 + 2 * pairs * 4 * (8 + 8) * 2);
  EXPECT_DOUBLE_EQ(c.forward_weight_elements(tokens, logits), tokens * 32 + 23 * 32 + 2 * per_token);
  EXPECT_DOUBLE_EQ(c.forward_weight_elements(tokens, 0), tokens * 32 + 2 * per_token);  // no LM head
  EXPECT_EQ(c.kv_elements_per_token(), 2 * 2 * 2 * 8);
  Transformer m(c);
  const auto w = m.forward_work(tokens, logits, pairs, 4, 6);
  EXPECT_DOUBLE_EQ(w.flops, c.forward_flops(tokens, logits, pairs));
  EXPECT_DOUBLE_EQ(w.bytes, (c.forward_weight_elements(tokens, logits) + 10.0 * 2 * 2 * 2 * 8) * 4);

  ModelConfig moe = tiny_config();
  grpo::test_util::make_moe(moe);
  ModelConfig more = moe;
  more.n_routed_experts *= 4;  // four times the experts, the same top-k
  const double router = double(more.n_routed_experts - moe.n_routed_experts) * double(moe.hidden_size);
  const int64_t moe_layers = moe.num_hidden_layers - moe.first_k_dense_replace;
  EXPECT_DOUBLE_EQ(more.forward_flops(tokens, 0, 0) - moe.forward_flops(tokens, 0, 0), 2 * tokens * router * double(moe_layers));
  // one token reaches top-k experts; many reach all of them
  const double expert = 3.0 * double(moe.hidden_size * moe.moe_intermediate_size);
  EXPECT_DOUBLE_EQ(more.forward_weight_elements(1, 0) - moe.forward_weight_elements(1, 0), router * double(moe_layers));
  EXPECT_DOUBLE_EQ(more.forward_weight_elements(1000, 0) - moe.forward_weight_elements(1000, 0) - router * double(moe_layers),
                   expert * double(more.n_routed_experts - moe.n_routed_experts) * double(moe_layers) + 1000.0 * 0);
  EXPECT_EQ(moe.kv_elements_per_token(), moe.num_hidden_layers * (moe.kv_lora_rank + moe.qk_rope_head_dim));
}
