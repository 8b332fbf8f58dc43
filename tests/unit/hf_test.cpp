// Hugging Face checkpoints: our forward pass against transformers' logits (fixtures made by
// tools/make_hf_fixtures.py with the pinned transformers), config.json errors, export round trip.
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "test_util.h"
#include "grpo/io/safetensors.h"
#include "grpo/model/hf.h"

namespace fs = std::filesystem;
using namespace grpo;
using grpo::test_util::error_of;

namespace {

std::string fixture(const std::string& family) {
  return std::string(GRPO_SOURCE_DIR) + "/tests/fixtures/hf/" + family;
}

std::pair<at::Tensor, at::Tensor> expected(const std::string& family) {
  io::SafetensorsFile f(fixture(family) + "/expected.safetensors");
  return {f.tensor("input_ids").clone(), f.tensor("logits").clone()};
}

class HfFamily : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(HfFamily, LogitsMatchTransformers) {
  auto model = model::load_hf_model(fixture(GetParam()));
  auto [ids, want] = expected(GetParam());
  at::NoGradGuard g;
  auto got = model->logits(model->forward(ids));
  EXPECT_EQ(got.sizes(), want.sizes());
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-4) << GetParam();
  EXPECT_GT(want.abs().max().item<double>(), 0.5);  // the fixture is not trivially small
}

// bf16 weights and activations (trainable parameters in bf16 as optim.precision bf16 makes them,
// DeepSeek-V3's router correction bias staying fp32; eval mode: the bf16 attention kernel, as
// transformers on CPU): the same ops in the same order and precision as transformers with the
// checkpoint loaded in bf16, so the same bits. (MoE: routed outputs weighed and summed in fp32,
// rounded once.)
TEST_P(HfFamily, Bf16LogitsEqualTransformersBitForBit) {
  auto model = model::load_hf_model(fixture(GetParam()));
  for (auto& p : model->parameters())
    if (p.requires_grad()) p.set_data(p.data().to(at::kBFloat16));
  model->train(false);
  io::SafetensorsFile f(fixture(GetParam()) + "/expected.safetensors");
  auto ids = f.tensor("input_ids").clone(), want = f.tensor("logits_bf16").clone();
  at::NoGradGuard g;
  auto got = model->logits(model->forward(ids));
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(got.equal(want)) << GetParam() << ": max difference " << (got - want).abs().max().item<double>()
                               << ", equal " << got.eq(want).to(at::kFloat).mean().item<double>();
  // and bf16 is not fp32 in disguise: it differs from the fp32 logits
  EXPECT_GT((want - f.tensor("logits")).abs().max().item<double>(), 1e-3);
}

TEST_P(HfFamily, KvCacheDecodingMatchesTransformers) {
  auto model = model::load_hf_model(fixture(GetParam()));
  auto [ids, want] = expected(GetParam());
  at::NoGradGuard g;
  auto cache = model->make_cache(ids.size(0), ids.size(1));
  std::vector<at::Tensor> parts{model->logits(model->forward(ids.narrow(1, 0, 4), {}, {}, cache.get()))};
  for (int64_t t = 4; t < ids.size(1); ++t)
    parts.push_back(model->logits(model->forward(ids.narrow(1, t, 1), {}, {}, cache.get())));
  EXPECT_LT((at::cat(parts, 1) - want).abs().max().item<double>(), 1e-4) << GetParam();
}

TEST_P(HfFamily, ExportRoundTripsThroughOurReader) {
  auto model = model::load_hf_model(fixture(GetParam()));
  auto dir = std::string(GRPO_TEST_TMPDIR) + "/hf_export_" + GetParam();
  fs::remove_all(dir);
  model::HfExportOptions o;
  o.max_shard_bytes = 40000;  // force several shards + index
  model::save_hf_model(*model, dir, o);
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir + "/generation_config.json"));
  auto back = model::load_hf_model(dir);
  auto a = model->named_parameters(), b = back->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second.equal(b[i].second)) << a[i].first;
  // bf16 export halves the bytes and stays close
  o.dtype = "bfloat16";
  o.max_shard_bytes = 5ull << 30;
  model::save_hf_model(*model, dir + "_bf16", o);
  auto st = io::load_safetensors(dir + "_bf16/model.safetensors");
  EXPECT_EQ(st[0].second.scalar_type(), at::kBFloat16);
  auto half = model::load_hf_model(dir + "_bf16");
  auto h = half->named_parameters();
  ASSERT_EQ(h.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {  // exactly the bf16 rounding (router bias stays fp32)
    bool fp32 = a[i].first.find("e_score_correction_bias") != std::string::npos;
    EXPECT_TRUE(h[i].second.equal(fp32 ? a[i].second : a[i].second.to(at::kBFloat16).to(at::kFloat)))
        << a[i].first;
  }
  if (model->config().n_routed_experts > 0) return;  // bf16 may flip routing: logits not comparable
  auto [ids, want] = expected(GetParam());
  at::NoGradGuard g;
  EXPECT_LT((half->logits(half->forward(ids)) - want).abs().max().item<double>(), 0.25);
}

INSTANTIATE_TEST_SUITE_P(Families, HfFamily, ::testing::Values("llama", "qwen2", "qwen3", "deepseek_v3_qlora",
                                                            "deepseek_v3_noqlora"));

TEST(HfConfig, FamilyOptions) {
  auto q2 = model::read_hf_config(fixture("qwen2") + "/config.json");
  EXPECT_TRUE(q2.attention_bias);
  EXPECT_FALSE(q2.attention_out_bias);
  EXPECT_TRUE(q2.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(q2.rope_theta, 1e6);
  auto q3 = model::read_hf_config(fixture("qwen3") + "/config.json");
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_EQ(q3.head_dim, 16);
  // older files: top-level rope_theta, no rope_parameters
  auto old = model::parse_hf_config(
      R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
          "num_hidden_layers":1,"num_attention_heads":2,"rope_theta":500000.0})", "old.json");
  EXPECT_DOUBLE_EQ(old.rope_theta, 500000.0);
  EXPECT_EQ(old.num_key_value_heads, 2);
}

TEST(HfConfig, ErrorsNameTheKeyAndValue) {
  const std::string base = R"("vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2)";
  auto e1 = error_of([&] { model::parse_hf_config(R"({"model_type":"gpt2",)" + base + "}", "c.json"); });
  EXPECT_NE(e1.find("c.json: model_type 'gpt2' is not supported"), std::string::npos) << e1;
  auto e2 = error_of([&] {
    model::parse_hf_config(R"({"model_type":"llama","rope_scaling":{"rope_type":"llama3","factor":8.0},)" + base + "}", "c.json");
  });
  EXPECT_NE(e2.find("rope_scaling.rope_type 'llama3'"), std::string::npos) << e2;
  auto e3 = error_of([&] { model::parse_hf_config(R"({"model_type":"llama","vocab_size":"ten"})", "c.json"); });
  EXPECT_NE(e3.find("key 'vocab_size'"), std::string::npos) << e3;
  EXPECT_NE(e3.find("'ten'"), std::string::npos) << e3;
  auto e4 = error_of([&] { model::parse_hf_config(R"({"model_type":"qwen2","use_sliding_window":true,)" + base + "}", "c.json"); });
  EXPECT_NE(e4.find("use_sliding_window"), std::string::npos) << e4;
  auto e5 = error_of([&] { model::parse_hf_config(R"({"model_type":"llama","hidden_act":"gelu",)" + base + "}", "c.json"); });
  EXPECT_NE(e5.find("hidden_act 'gelu'"), std::string::npos) << e5;
  auto e6 = error_of([&] { model::parse_hf_config(R"({"model_type":"llama","hidden_size":8})", "c.json"); });
  EXPECT_NE(e6.find("key 'vocab_size' is missing"), std::string::npos) << e6;
}

TEST(HfLoad, MissingAndUnexpectedTensorsAreNamed) {
  auto dir = std::string(GRPO_TEST_TMPDIR) + "/hf_bad";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(fixture("llama") + "/config.json", dir + "/config.json");
  auto tensors = io::load_safetensors(fixture("llama") + "/model.safetensors");
  auto extra = tensors;
  extra.emplace_back("model.layers.0.mlp.extra.weight", at::zeros({2}));
  io::save_safetensors(dir + "/model.safetensors", extra);
  auto e = error_of([&] { model::load_hf_model(dir); });
  EXPECT_NE(e.find("unexpected tensors"), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers.0.mlp.extra.weight"), std::string::npos) << e;
  tensors.erase(tensors.begin() + 3);
  auto missing_name = io::load_safetensors(fixture("llama") + "/model.safetensors")[3].first;
  io::save_safetensors(dir + "/model.safetensors", tensors);
  e = error_of([&] { model::load_hf_model(dir); });
  EXPECT_NE(e.find("missing tensors"), std::string::npos) << e;
  EXPECT_NE(e.find(missing_name), std::string::npos) << e;
}
