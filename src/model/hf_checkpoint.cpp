#include "grpo/model/hf_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/io/safetensors.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace grpo::model {
namespace {

const std::set<std::string> kFamilies{"llama", "qwen2", "qwen3", "deepseek_v3"};

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
             "{}: model_type '{}' is not supported (supported: llama, qwen2, qwen3, deepseek_v3)",
             origin, c.model_type);
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
    const std::string where = origin + ": " + key;
    GRPO_CHECK(type == "default" || (type == "yarn" && c.model_type == "deepseek_v3"),
               "{}: {}.rope_type '{}' is not supported (default; yarn for deepseek_v3)", origin, key, type);
    if (rp.contains("rope_theta")) c.rope_theta = get_num(rp, "rope_theta", where, 10000.0);
    if (type == "yarn") {
      c.rope_type = "yarn";
      c.rope_factor = get_num(rp, "factor", where, 1.0);
      c.rope_original_max_position_embeddings = get_int(rp, "original_max_position_embeddings", where);
      c.rope_beta_fast = get_num(rp, "beta_fast", where, 32.0);
      c.rope_beta_slow = get_num(rp, "beta_slow", where, 1.0);
      c.rope_mscale = get_num(rp, "mscale", where, 0.0);
      c.rope_mscale_all_dim = get_num(rp, "mscale_all_dim", where, 0.0);
      GRPO_CHECK(!rp.contains("attention_factor") || rp["attention_factor"].is_null(),
                 "{}: attention_factor is not supported (derived from mscale)", where);
      GRPO_CHECK(get_bool(rp, "truncate", where, true), "{}: truncate = false is not supported", where);
    }
  }
  if (c.model_type != "llama") {
    GRPO_CHECK(!get_bool(j, "use_sliding_window", origin, false),
               "{}: use_sliding_window = true is not supported (sliding-window attention)", origin);
  }
  bool attention_bias = get_bool(j, "attention_bias", origin, false);
  if (c.model_type == "deepseek_v3") {
    GRPO_CHECK(!attention_bias, "{}: attention_bias = true is not supported for deepseek_v3", origin);
    c.head_dim = 0;  // config.json's head_dim is qk_rope_head_dim there
    c.q_lora_rank = get_int(j, "q_lora_rank", origin, 0);
    c.kv_lora_rank = get_int(j, "kv_lora_rank", origin);
    c.qk_nope_head_dim = get_int(j, "qk_nope_head_dim", origin);
    c.qk_rope_head_dim = get_int(j, "qk_rope_head_dim", origin);
    c.v_head_dim = get_int(j, "v_head_dim", origin);
    c.rope_interleave = get_bool(j, "rope_interleave", origin, true);
    c.n_routed_experts = get_int(j, "n_routed_experts", origin, 0);
    c.n_shared_experts = get_int(j, "n_shared_experts", origin, 0);
    c.num_experts_per_tok = get_int(j, "num_experts_per_tok", origin, 0);
    c.moe_intermediate_size = get_int(j, "moe_intermediate_size", origin, 0);
    c.n_group = get_int(j, "n_group", origin, 1);
    c.topk_group = get_int(j, "topk_group", origin, 1);
    c.norm_topk_prob = get_bool(j, "norm_topk_prob", origin, true);
    c.routed_scaling_factor = get_num(j, "routed_scaling_factor", origin, 1.0);
    c.first_k_dense_replace = get_int(j, "first_k_dense_replace", origin, 0);
    if (j.contains("scoring_func") && !j["scoring_func"].is_null())
      GRPO_CHECK(j["scoring_func"] == "sigmoid", "{}: scoring_func {} is not supported (sigmoid)", origin,
                 found(j["scoring_func"]));
    if (j.contains("topk_method") && !j["topk_method"].is_null())
      GRPO_CHECK(j["topk_method"] == "noaux_tc", "{}: topk_method {} is not supported (noaux_tc)", origin,
                 found(j["topk_method"]));
    if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
      const auto& q = j["quantization_config"];
      GRPO_CHECK(q.is_object() && q.value("quant_method", "") == "fp8",
                 "{}: quantization_config: only block-scaled fp8 (quant_method fp8) is supported, found {}",
                 origin, q.dump());
    }
  } else if (c.model_type == "llama") {
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
      {"llama", "LlamaForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"},
      {"deepseek_v3", "DeepseekV3ForCausalLM"}};
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
  if (c.is_mla()) {
    json rope = {{"rope_type", c.rope_type}, {"rope_theta", c.rope_theta}};
    if (c.rope_type == "yarn") {
      rope["factor"] = c.rope_factor;
      rope["original_max_position_embeddings"] = c.rope_original_max_position_embeddings;
      rope["beta_fast"] = c.rope_beta_fast;
      rope["beta_slow"] = c.rope_beta_slow;
      rope["mscale"] = c.rope_mscale;
      rope["mscale_all_dim"] = c.rope_mscale_all_dim;
    }
    j["rope_parameters"] = rope;
    j["rope_scaling"] = c.rope_type == "yarn" ? rope : json(nullptr);
    j["head_dim"] = c.qk_rope_head_dim;
    j["q_lora_rank"] = c.q_lora_rank > 0 ? json(c.q_lora_rank) : json(nullptr);
    for (auto [k, v] : {std::pair<const char*, int64_t>{"kv_lora_rank", c.kv_lora_rank},
                        {"qk_nope_head_dim", c.qk_nope_head_dim}, {"qk_rope_head_dim", c.qk_rope_head_dim},
                        {"v_head_dim", c.v_head_dim}, {"n_routed_experts", c.n_routed_experts},
                        {"n_shared_experts", c.n_shared_experts},
                        {"num_experts_per_tok", c.num_experts_per_tok},
                        {"moe_intermediate_size", c.moe_intermediate_size}, {"n_group", c.n_group},
                        {"topk_group", c.topk_group}, {"first_k_dense_replace", c.first_k_dense_replace}})
      j[k] = v;
    j["norm_topk_prob"] = c.norm_topk_prob;
    j["routed_scaling_factor"] = c.routed_scaling_factor;
    j["rope_interleave"] = c.rope_interleave;
    j["attention_bias"] = false;
    j["scoring_func"] = "sigmoid";
    j["topk_method"] = "noaux_tc";
    j["num_nextn_predict_layers"] = 0;
  } else if (c.model_type == "llama") {
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

at::Tensor dequantize_fp8_blocks(const at::Tensor& w, const at::Tensor& scale_inv, int64_t block_rows,
                                 int64_t block_cols, const std::string& name) {
  GRPO_CHECK(w.dim() == 2 && scale_inv.dim() == 2, "{}: fp8 weight and weight_scale_inv must be 2-D, "
             "found {} and {}", name, w.sizes(), scale_inv.sizes());
  const int64_t rows = w.size(0), cols = w.size(1);
  const int64_t br = (rows + block_rows - 1) / block_rows, bc = (cols + block_cols - 1) / block_cols;
  GRPO_CHECK(scale_inv.size(0) == br && scale_inv.size(1) == bc,
             "{}: weight {} in {}x{} blocks needs weight_scale_inv [{}, {}], found {}", name, w.sizes(),
             block_rows, block_cols, br, bc, scale_inv.sizes());
  auto s = scale_inv.to(at::kFloat).repeat_interleave(block_rows, 0).narrow(0, 0, rows)
               .repeat_interleave(block_cols, 1).narrow(1, 0, cols);
  return w.to(at::kFloat) * s;
}

namespace {

// Block size of fp8 weights from config.json's quantization_config (DeepSeek-V3: 128 x 128).
std::pair<int64_t, int64_t> fp8_block(const std::string& dir) {
  auto j = json::parse(core::read_file((fs::path(dir) / "config.json").string()), nullptr, false);
  if (!j.is_object() || !j.contains("quantization_config")) return {128, 128};
  const auto& q = j["quantization_config"];
  if (q.contains("weight_block_size") && q["weight_block_size"].is_array() && q["weight_block_size"].size() == 2)
    return {q["weight_block_size"][0].get<int64_t>(), q["weight_block_size"][1].get<int64_t>()};
  return {128, 128};
}

// DeepSeek-V3's multi-token-prediction layers, stored after the last hidden layer
// (config.json's num_nextn_predict_layers; 0 when absent).
int64_t mtp_layer_count(const std::string& dir) {
  auto j = json::parse(core::read_file((fs::path(dir) / "config.json").string()), nullptr, false);
  if (!j.is_object() || !j.contains("num_nextn_predict_layers")) return 0;
  const auto& n = j["num_nextn_predict_layers"];
  GRPO_CHECK(n.is_number_integer() && n.get<int64_t>() >= 0 && n.get<int64_t>() <= 64,
             "{}/config.json: num_nextn_predict_layers must be an integer in [0, 64], found {}", dir, n.dump());
  return n.get<int64_t>();
}

}  // namespace

std::unique_ptr<Transformer> load_hf_model(const std::string& dir, const Parallel& parallel) {
  auto cfg = read_hf_config((fs::path(dir) / "config.json").string());
  auto tensors = io::load_safetensors_dir(dir);
  auto model = std::make_unique<Transformer>(cfg, parallel);
  std::set<std::string> expected;
  for (auto& [n, t] : model->named_parameters()) expected.insert(n);

  std::map<std::string, at::Tensor> by_name;
  for (auto& [n, t] : tensors) by_name[n] = t;
  // FP8 block-scaled weights (DeepSeek-V3 releases): dequantise with their weight_scale_inv.
  const std::string kScale = ".weight_scale_inv";
  std::pair<int64_t, int64_t> block{0, 0};
  for (auto it = by_name.begin(); it != by_name.end();) {
    const auto& n = it->first;
    if (n.size() > kScale.size() && n.compare(n.size() - kScale.size(), kScale.size(), kScale) == 0) {
      auto wname = n.substr(0, n.size() - kScale.size()) + ".weight";
      auto w = by_name.find(wname);
      GRPO_CHECK(w != by_name.end(), "{}: '{}' has no weight '{}'", dir, n, wname);
      if (block.first == 0) block = fp8_block(dir);
      w->second = dequantize_fp8_blocks(w->second, it->second, block.first, block.second, wname);
      it = by_name.erase(it);
    } else {
      ++it;
    }
  }
  // Multi-token-prediction layers (index >= num_hidden_layers) are not part of the policy.
  static const std::regex layer_re(R"(model\.layers\.(\d+)\..*)");
  static const std::regex expert_re(R"((model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight)");
  std::set<int64_t> mtp_layers;
  std::map<std::string, std::map<int64_t, at::Tensor>> experts;  // "<prefix>.<proj>_proj" -> e -> W
  io::NamedTensors use;
  std::vector<std::string> unexpected;
  for (auto& [n, t] : by_name) {
    std::smatch m;
    if (std::regex_match(n, m, layer_re) && std::stoll(m[1]) >= cfg.num_hidden_layers) {
      mtp_layers.insert(std::stoll(m[1]));
      continue;
    }
    if (std::regex_match(n, m, expert_re)) {
      experts[m[1].str() + "." + m[3].str() + "_proj"][std::stoll(m[2])] = t;
      continue;
    }
    if (expected.count(n)) use.emplace_back(n, t);
    else if (n == "lm_head.weight" && cfg.tie_word_embeddings) continue;  // a tied copy
    else if (n.find("rotary_emb.inv_freq") != std::string::npos) continue;  // old buffers
    else unexpected.push_back(n);
  }
  for (auto& [name, per_expert] : experts) {
    if (!expected.count(name)) {
      unexpected.push_back(name + ".*");
      continue;
    }
    std::vector<at::Tensor> stack;
    for (int64_t e = 0; e < cfg.n_routed_experts; ++e) {
      auto it = per_expert.find(e);
      GRPO_CHECK(it != per_expert.end(), "{}: missing tensor '{}'", dir,
                 fmt::format("{}.{}{}", name.substr(0, name.rfind('.')), e, name.substr(name.rfind('.')) + ".weight"));
      stack.push_back(it->second.to(at::kFloat));
    }
    GRPO_CHECK(int64_t(per_expert.size()) == cfg.n_routed_experts, "{}: {} has {} experts, config.json "
               "says n_routed_experts = {}", dir, name, per_expert.size(), cfg.n_routed_experts);
    use.emplace_back(name, at::stack(stack));
  }
  GRPO_CHECK(unexpected.empty(), "{}: unexpected tensors for a {} model: {}", dir, cfg.model_type,
             fmt::join(unexpected, ", "));
  if (!mtp_layers.empty()) {
    // only num_nextn_predict_layers layers may follow the hidden ones: more means config.json
    // describes fewer layers than the weights hold, and dropping them would change the model
    const int64_t mtp = mtp_layer_count(dir), last = *mtp_layers.rbegin();
    GRPO_CHECK(last < cfg.num_hidden_layers + mtp,
               "{}: the weights hold layers up to model.layers.{}, but config.json says num_hidden_layers = {} "
               "and num_nextn_predict_layers = {}: config.json does not describe these weights", dir, last,
               cfg.num_hidden_layers, mtp);
  }
  if (!mtp_layers.empty())
    spdlog::info("{}: skipped {} multi-token-prediction layer(s) ({}): not part of the policy", dir,
                 mtp_layers.size(), fmt::join(mtp_layers, ", "));
  model->load_parameters(use, dir);
  return model;
}

void save_hf_model(const Transformer& model, const std::string& dir, const HfExportOptions& o) {
  auto dtype = parse_dtype(o.dtype);
  fs::create_directories(dir);
  io::NamedTensors out;
  static const std::regex stacked(R"((.*\.mlp\.experts)\.(gate|up|down)_proj)");
  for (auto& [n, t] : model.full_parameters()) {
    std::smatch m;
    if (std::regex_match(n, m, stacked)) {  // HF layout: one tensor per expert
      for (int64_t e = 0; e < t.size(0); ++e)
        out.emplace_back(fmt::format("{}.{}.{}_proj.weight", m[1].str(), e, m[2].str()),
                         t[e].detach().to(dtype).contiguous());
      continue;
    }
    // e_score_correction_bias stays fp32, as transformers keeps it
    auto keep_fp32 = n.find("e_score_correction_bias") != std::string::npos;
    out.emplace_back(n, t.detach().to(keep_fp32 ? at::kFloat : dtype));
  }
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
