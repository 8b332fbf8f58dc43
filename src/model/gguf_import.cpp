// GGUF checkpoints into Hugging Face form (model/gguf_import.h). The metadata names follow
// llama.cpp's writer (gguf-py's constants); the choices that decide the numbers (Q/K
// un-permutation, which tokens become added tokens, which split regex a `pre` type means) follow
// transformers 5.23's GGUF loader, which tests/fixtures/gguf was generated with.
#include "grpo/model/gguf_import.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "grpo/core/error.h"
#include "grpo/io/gguf.h"
#include "grpo/model/hf_checkpoint.h"
#include "grpo/model/transformer.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace grpo::model {
namespace {

// GPT-2's byte-to-character table: printable bytes stand for themselves, the rest map to 256 + n.
std::vector<std::string> byte_chars() {
  std::vector<std::string> out(256);
  int n = 0;
  auto utf8 = [](int cp) {
    std::string s;
    if (cp < 0x80) s += char(cp);
    else {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    }
    return s;
  };
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out[b] = utf8(printable ? b : 256 + n++);
  }
  return out;
}

// The code points of a UTF-8 string (the tokens come from a validated file; invalid bytes count
// as themselves, so a malformed token only fails the "in the byte alphabet" test).
std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    n = std::min(n, s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

const char* const kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The split regex of a `tokenizer.ggml.pre` type, as transformers maps it ("" = GPT-2's own
// ByteLevel regex, which transformers uses for every type it has no split for, e.g. "smollm").
std::string split_regex(const std::string& pre, const std::string& path) {
  static const std::set<std::string> llama3 = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                               "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"};
  static const std::set<std::string> qwen2 = {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"};
  static const std::set<std::string> other = {"tekken", "qwen35", "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"};
  if (llama3.count(pre)) return kLlama3Split;
  if (qwen2.count(pre)) return kQwen2Split;
  GRPO_CHECK(!other.count(pre), "{}: metadata key 'tokenizer.ggml.pre' is '{}', a pre-tokenizer grpo does not "
             "build from GGUF yet (supported: GPT-2's default, the llama3 and qwen2 families)", path, pre);
  return "";
}

std::string tokenizer_json(const io::GgufFile& f) {
  const std::string& path = f.path();
  const std::string model = f.get_string("tokenizer.ggml.model");
  GRPO_CHECK(model == "gpt2", "{}: metadata key 'tokenizer.ggml.model' is '{}'; grpo builds byte-level BPE "
             "tokenizers ('gpt2') from GGUF, not SentencePiece or unigram ones", path, model);
  const auto tokens = f.get_strings("tokenizer.ggml.tokens");
  const auto merges = f.get_strings("tokenizer.ggml.merges");
  std::vector<double> types;
  if (f.has("tokenizer.ggml.token_type")) {
    types = f.get_numbers("tokenizer.ggml.token_type");
    GRPO_CHECK(types.size() == tokens.size(), "{}: metadata key 'tokenizer.ggml.token_type' has {} entries for {} "
               "tokens", path, types.size(), tokens.size());
  }
  const auto bytes = byte_chars();
  const std::set<std::string> alphabet(bytes.begin(), bytes.end());
  auto in_alphabet = [&](const std::string& t) {
    for (auto& c : utf8_chars(t))
      if (!alphabet.count(c)) return false;
    return true;
  };
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string t = tokens[i];
    if (!in_alphabet(t)) {  // spelled as raw text: respell its UTF-8 bytes in the byte alphabet
      std::string s;
      for (unsigned char b : tokens[i]) s += bytes[b];
      t = s;
    }
    GRPO_CHECK(!vocab.contains(t), "{}: metadata key 'tokenizer.ggml.tokens': token {} ('{}') appears twice", path,
               i, tokens[i]);
    vocab[t] = i;
  }
  json merge_list = json::array();
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto sp = merges[i].find(' ');
    GRPO_CHECK(sp != std::string::npos && merges[i].find(' ', sp + 1) == std::string::npos,
               "{}: metadata key 'tokenizer.ggml.merges': merge {} ('{}') is not two tokens separated by one space",
               path, i, merges[i]);
    merge_list.push_back(json::array({merges[i].substr(0, sp), merges[i].substr(sp + 1)}));
  }
  // control tokens (type 3) are special, user-defined ones (type 4) plain added tokens; a control
  // token outside the byte alphabet is one llama.cpp mislabelled and is left out, as transformers does
  json added = json::array();
  for (size_t i = 0; i < types.size(); ++i) {
    const int t = int(types[i]);
    if (!((t == 3 && in_alphabet(tokens[i])) || (t == 4 && vocab.contains(tokens[i])))) continue;
    added.push_back({{"id", i}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", t == 3}});
  }
  const std::string split = split_regex(f.find_string("tokenizer.ggml.pre").value_or(""), path);
  json pre;
  if (split.empty()) {
    pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  } else {
    pre = {{"type", "Sequence"},
           {"pretokenizers",
            json::array({{{"type", "Split"}, {"pattern", {{"Regex", split}}}, {"behavior", "Isolated"}, {"invert", false}},
                         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                          {"use_regex", false}}})}};
  }
  json j = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
            {"normalizer", nullptr}, {"pre_tokenizer", pre}, {"post_processor", nullptr},
            {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
            {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
                       {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false},
                       {"ignore_merges", false}, {"vocab", vocab}, {"merges", merge_list}}}};
  return j.dump();
}

// The token text of a special-token id key, checked against the vocabulary.
std::optional<std::string> special(const io::GgufFile& f, const std::string& key, const std::vector<std::string>& tokens) {
  auto id = f.find_int(key);
  if (!id) return std::nullopt;
  GRPO_CHECK(*id >= 0 && *id < int64_t(tokens.size()), "{}: metadata key '{}' is {}, outside the vocabulary of {} "
             "tokens", f.path(), key, *id, tokens.size());
  return tokens[*id];
}

// llama.cpp stores Llama's q/k rows per head as (pair, half) for its RoPE; Hugging Face as (half, pair).
at::Tensor unpermute_rows(const at::Tensor& w, int64_t heads) {
  const int64_t half = w.size(0) / heads / 2;
  return w.reshape({heads, half, 2, w.size(1)}).transpose(1, 2).reshape(w.sizes()).contiguous();
}

std::string hf_tensor_name(const std::string& name, const std::string& path) {
  static const std::vector<std::pair<std::string, std::string>> leaves = {
      {"attn_norm", "input_layernorm"},     {"ffn_norm", "post_attention_layernorm"},
      {"attn_q", "self_attn.q_proj"},       {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},       {"attn_output", "self_attn.o_proj"},
      {"ffn_gate", "mlp.gate_proj"},        {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"}};
  if (name == "token_embd.weight") return "model.embed_tokens.weight";
  if (name == "output_norm.weight") return "model.norm.weight";
  if (name == "output.weight") return "lm_head.weight";
  static const std::regex blk(R"(blk\.(\d+)\.([a-z_]+)\.(weight|bias))");
  std::smatch m;
  if (std::regex_match(name, m, blk))
    for (auto& [g, h] : leaves)
      if (m[2] == g) return "model.layers." + m[1].str() + "." + h + "." + m[3].str();
  fail("{}: tensor '{}' has no place in a llama model (rope scaling tensors, vision towers and the like are not "
       "supported)", path, name);
}

}  // namespace

GgufImport import_gguf(const std::string& path) {
  io::GgufFile f(path);
  const std::string arch = f.get_string("general.architecture");
  GRPO_CHECK(arch == "llama", "{}: metadata key 'general.architecture' is '{}'; grpo imports 'llama' GGUF files "
             "(convert others with transformers and give the directory)", path, arch);
  const auto tokens = f.get_strings("tokenizer.ggml.tokens");
  const auto* embd = f.find_tensor("token_embd.weight");
  GRPO_CHECK(embd && embd->dims.size() == 2, "{}: tensor 'token_embd.weight' is missing or not 2-D", path);
  const int64_t heads = f.get_int(arch + ".attention.head_count");
  const int64_t kv_heads = f.has(arch + ".attention.head_count_kv") ? f.get_int(arch + ".attention.head_count_kv") : heads;
  GRPO_CHECK(heads > 0 && kv_heads > 0 && heads % kv_heads == 0, "{}: {} attention heads and {} key/value heads "
             "(metadata keys '{}.attention.head_count(_kv)') do not divide", path, heads, kv_heads, arch);
  const bool tied = f.find_tensor("output.weight") == nullptr;
  json cfg = {{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"vocab_size", f.has(arch + ".vocab_size") ? f.get_int(arch + ".vocab_size") : embd->dims[1]},
              {"hidden_size", f.get_int(arch + ".embedding_length")},
              {"intermediate_size", f.get_int(arch + ".feed_forward_length")},
              {"num_hidden_layers", f.get_int(arch + ".block_count")},
              {"num_attention_heads", heads},
              {"num_key_value_heads", kv_heads},
              {"max_position_embeddings", f.get_int(arch + ".context_length")},
              {"rms_norm_eps", f.get_float(arch + ".attention.layer_norm_rms_epsilon")},
              {"rope_theta", f.has(arch + ".rope.freq_base") ? f.get_float(arch + ".rope.freq_base") : 10000.0},
              {"tie_word_embeddings", tied},
              {"hidden_act", "silu"}};
  if (f.has(arch + ".rope.dimension_count")) cfg["head_dim"] = f.get_int(arch + ".rope.dimension_count");
  GRPO_CHECK(!f.has(arch + ".rope.scaling.type") || f.get_string(arch + ".rope.scaling.type") == "none",
             "{}: metadata key '{}.rope.scaling.type' is '{}': RoPE scaling from GGUF is not supported", path, arch,
             f.get_string(arch + ".rope.scaling.type"));
  GgufImport out;
  if (auto b = f.find_int("tokenizer.ggml.bos_token_id")) cfg["bos_token_id"] = out.bos_token_id = *b;
  if (auto e = f.find_int("tokenizer.ggml.eos_token_id")) cfg["eos_token_id"] = out.eos_token_id = *e;
  out.config_json = cfg.dump(2);
  out.config = parse_hf_config(out.config_json, path + " (metadata)");

  for (const auto& t : f.tensors()) {
    const std::string name = hf_tensor_name(t.name, path);
    at::Tensor w = f.dequantize(t);
    if (name.find("self_attn.q_proj.weight") != std::string::npos) w = unpermute_rows(w, heads);
    if (name.find("self_attn.k_proj.weight") != std::string::npos) w = unpermute_rows(w, kv_heads);
    out.tensors.emplace_back(name, w);
  }
  out.tokenizer_json = tokenizer_json(f);
  json tc = json::object();
  for (auto [name, key] : {std::pair{"bos_token", "bos_token_id"}, {"eos_token", "eos_token_id"},
                           {"unk_token", "unknown_token_id"}, {"pad_token", "padding_token_id"}})
    if (auto s = special(f, std::string("tokenizer.ggml.") + key, tokens)) tc[name] = *s;
  if (f.has("tokenizer.ggml.add_bos_token")) tc["add_bos_token"] = f.get_bool("tokenizer.ggml.add_bos_token");
  if (f.has("tokenizer.ggml.add_eos_token")) tc["add_eos_token"] = f.get_bool("tokenizer.ggml.add_eos_token");
  if (auto t = f.find_string("tokenizer.chat_template")) tc["chat_template"] = *t;
  tc["tokenizer_class"] = "PreTrainedTokenizerFast";
  out.tokenizer_config_json = tc.dump(2);
  return out;
}

void convert_gguf(const std::string& gguf_path, const std::string& out_dir, const HfExportOptions& options) {
  auto g = import_gguf(gguf_path);
  Transformer model(g.config);
  model.load_parameters(g.tensors, gguf_path);
  HfExportOptions o = options;
  o.tokenizer_dir.clear();
  o.bos_token_id = g.bos_token_id;
  o.eos_token_id = g.eos_token_id;
  save_hf_model(model, out_dir, o);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream os(fs::path(out_dir) / name, std::ios::binary);
    os << text;
    GRPO_CHECK(os.good(), "cannot write {}/{}", out_dir, name);
  };
  write("tokenizer.json", g.tokenizer_json);
  write("tokenizer_config.json", g.tokenizer_config_json);
}

bool is_gguf_path(const std::string& path) {
  return path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
}

std::string resolve_model_path(const std::string& path) {
  if (!is_gguf_path(path)) return path;
  struct stat st {};
  GRPO_CHECK(::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode), "'{}': no such GGUF file", path);
  const char* env = std::getenv("GRPO_CACHE_DIR");
  const char* home = std::getenv("HOME");
  const fs::path cache = env && *env ? fs::path(env) : fs::path(home ? home : "/tmp") / ".cache" / "grpo";
  const fs::path dir = cache / "gguf" / fmt::format("{}-{}-{}", fs::path(path).stem().string(), st.st_size,
                                                    static_cast<long long>(st.st_mtime));
  if (fs::exists(dir / "tokenizer_config.json")) return dir.string();
  // converted into a directory of this process, then renamed into place: ranks of one job may race
  const fs::path tmp = dir.string() + fmt::format(".tmp{}", ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  spdlog::info("converting {} into {} (once; GGUF -> Hugging Face, fp32)", path, dir.string());
  try {
    convert_gguf(path, tmp.string());
  } catch (...) {
    fs::remove_all(tmp);
    throw;
  }
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) {
    fs::remove_all(tmp);
    GRPO_CHECK(fs::exists(dir / "tokenizer_config.json"), "cannot move the converted {} into {}: {}", path,
               dir.string(), ec.message());
  }
  return dir.string();
}

}  // namespace grpo::model
