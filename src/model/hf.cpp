#include "grpo/model/hf.h"

#include <filesystem>
#include <fstream>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/io/safetensors.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace grpo::model {
namespace {

const std::set<std::string> kFamilies{"llama", "qwen2", "qwen3"};

std::string found(const json& v) { return v.is_string() ? "'" + v.get<std::string>() + "'" : v.dump(); }

int64_t get_int(const json& j, const char* key, const std::string& origin, std::optional<int64_t> def = {}) {
  if (!j.contains(key) || j[key].is_null()) {
    GRPO_CHECK(def.has_value(), "{}: key '{}' is missing (an integer is required)", origin, key);
    return *def;
  }
  GRPO_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() >= 0,
             "{}: key '{}': expected a non-negative integer, found {}", origin, key, found(j[key]));
  return j[key].get<int64_t>();
}

double get_num(const json& j, const char* key, const std::string& origin, double def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  GRPO_CHECK(j[key].is_number(), "{}: key '{}': expected a number, found {}", origin, key, found(j[key]));
  return j[key].get<double>();
}

bool get_bool(const json& j, const char* key, const std::string& origin, bool def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  GRPO_CHECK(j[key].is_boolean(), "{}: key '{}': expected true or false, found {}", origin, key, found(j[key]));
  return j[key].get<bool>();
}

at::ScalarType parse_dtype(const std::string& d) {
  if (d == "float32") return at::kFloat;
  if (d == "bfloat16") return at::kBFloat16;
  if (d == "float16") return at::kHalf;
  fail("unsupported export dtype '{}' (float32, bfloat16 or float16)", d);
}

}  // namespace

ModelConfig parse_hf_config(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", origin, e.what());
  }
  GRPO_CHECK(j.is_object(), "{}: expected a JSON object", origin);
  GRPO_CHECK(j.contains("model_type") && j["model_type"].is_string(), "{}: key 'model_type' is missing",
             origin);
  ModelConfig c;
  c.model_type = j["model_type"].get<std::string>();
  GRPO_CHECK(kFamilies.count(c.model_type),
             "{}: model_type '{}' is not supported (supported: llama, qwen2, qwen3; deepseek_v3 comes "
             "with the MoE policy)", origin, c.model_type);
  c.vocab_size = get_int(j, "vocab_size", origin);
  c.hidden_size = get_int(j, "hidden_size", origin);
  c.intermediate_size = get_int(j, "intermediate_size", origin);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", origin);
  c.num_attention_heads = get_int(j, "num_attention_heads", origin);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", origin, c.num_attention_heads);
  c.head_dim = get_int(j, "head_dim", origin, 0);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", origin, 2048);
  c.rms_norm_eps = get_num(j, "rms_norm_eps", origin, 1e-6);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", origin, false);
  c.initializer_range = get_num(j, "initializer_range", origin, 0.02);
  std::string act = j.value("hidden_act", std::string("silu"));
  GRPO_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (only silu)", origin, act);

  // RoPE: transformers 5 writes rope_parameters; older files rope_theta + rope_scaling
  c.rope_theta = get_num(j, "rope_theta", origin, 10000.0);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const auto& rp = j[key];
    GRPO_CHECK(rp.is_object(), "{}: key '{}': expected an object, found {}", origin, key, found(rp));
    std::string type = rp.value("rope_type", rp.value("type", std::string("default")));
    GRPO_CHECK(type == "default",
               "{}: {}.rope_type '{}' is not supported yet (only default RoPE)", origin, key, type);
    if (rp.contains("rope_theta")) c.rope_theta = get_num(rp, "rope_theta", origin + ": " + key, 10000.0);
  }
  if (c.model_type != "llama") {
    GRPO_CHECK(!get_bool(j, "use_sliding_window", origin, false),
               "{}: use_sliding_window = true is not supported (sliding-window attention)", origin);
  }
  bool attention_bias = get_bool(j, "attention_bias", origin, false);
  if (c.model_type == "llama") {
    c.attention_bias = c.attention_out_bias = attention_bias;
    c.mlp_bias = get_bool(j, "mlp_bias", origin, false);
  } else if (c.model_type == "qwen2") {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases, never an o_proj bias
  } else {                    // qwen3
    c.attention_bias = c.attention_out_bias = attention_bias;
    c.qk_norm = true;
  }
  core::ConfigSource src;
  src.record("model", origin);
  c.validate(src, "model");
  return c;
}

ModelConfig read_hf_config(const std::string& path) {
  return parse_hf_config(core::read_file(path), path);
}

std::string hf_config_json(const ModelConfig& c, const std::string& dtype) {
  static const std::map<std::string, std::string> arch{
      {"llama", "LlamaForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"}};
  GRPO_CHECK(arch.count(c.model_type), "cannot export model_type '{}'", c.model_type);
  json j = {
      {"architectures", {arch.at(c.model_type)}},
      {"model_type", c.model_type},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.resolved_head_dim()},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", c.rope_theta}}},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"initializer_range", c.initializer_range},
      {"dtype", dtype},
      {"torch_dtype", dtype},
  };
  if (c.model_type == "llama") {
    GRPO_CHECK(c.attention_bias == c.attention_out_bias && !c.qk_norm,
               "this model's biases/norms cannot be expressed as a llama config.json");
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = c.mlp_bias;
  } else if (c.model_type == "qwen2") {
    GRPO_CHECK(c.attention_bias && !c.attention_out_bias && !c.mlp_bias && !c.qk_norm,
               "this model's biases/norms cannot be expressed as a qwen2 config.json");
    j["use_sliding_window"] = false;
  } else {
    GRPO_CHECK(c.qk_norm && c.attention_bias == c.attention_out_bias && !c.mlp_bias,
               "this model's biases/norms cannot be expressed as a qwen3 config.json");
    j["attention_bias"] = c.attention_bias;
    j["use_sliding_window"] = false;
  }
  return j.dump(2) + "\n";
}

std::unique_ptr<Transformer> load_hf_model(const std::string& dir) {
  auto cfg = read_hf_config((fs::path(dir) / "config.json").string());
  auto tensors = io::load_safetensors_dir(dir);
  auto model = std::make_unique<Transformer>(cfg);
  std::set<std::string> expected;
  for (auto& [n, t] : model->named_parameters()) expected.insert(n);
  io::NamedTensors use;
  std::vector<std::string> unexpected;
  for (auto& [n, t] : tensors) {
    if (expected.count(n)) use.emplace_back(n, t);
    else if (n == "lm_head.weight" && cfg.tie_word_embeddings) continue;  // a tied copy
    else if (n.find("rotary_emb.inv_freq") != std::string::npos) continue;  // old buffers
    else unexpected.push_back(n);
  }
  GRPO_CHECK(unexpected.empty(), "{}: unexpected tensors for a {} model: {}", dir, cfg.model_type,
             fmt::join(unexpected, ", "));
  model->load_parameters(use, dir);
  return model;
}

void save_hf_model(const Transformer& model, const std::string& dir, const HfExportOptions& o) {
  auto dtype = parse_dtype(o.dtype);
  fs::create_directories(dir);
  io::NamedTensors out;
  for (auto& [n, t] : model.named_parameters()) out.emplace_back(n, t.detach().to(dtype));
  io::save_safetensors_dir(dir, out, o.max_shard_bytes);
  std::ofstream(fs::path(dir) / "config.json") << hf_config_json(model.config(), o.dtype);
  json gen = {{"_from_model_config", true}};
  if (o.bos_token_id >= 0) gen["bos_token_id"] = o.bos_token_id;
  if (o.eos_token_id >= 0) gen["eos_token_id"] = o.eos_token_id;
  std::ofstream(fs::path(dir) / "generation_config.json") << gen.dump(2) << "\n";
  if (!o.tokenizer_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                          "vocab.json", "merges.txt", "chat_template.jinja"}) {
      fs::path src = fs::path(o.tokenizer_dir) / f;
      if (fs::exists(src)) fs::copy_file(src, fs::path(dir) / f, fs::copy_options::overwrite_existing);
    }
  }
}

}  // namespace grpo::model
