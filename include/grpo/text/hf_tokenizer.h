// Hugging Face tokenizer.json, byte-level BPE (GPT-2 / Llama-3 / Qwen / DeepSeek family), in C++.
// Pipeline, as in HF `tokenizers`: split off added/special tokens -> normalizer (NFC, Sequence)
// -> pre-tokenizers (Split with the file's regexes via PCRE2, ByteLevel, Digits, Sequence) ->
// BPE by merge rank -> ids. Decoding: the ByteLevel decoder, invalid UTF-8 replaced by U+FFFD
// exactly as HF (Rust's from_utf8_lossy) does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grpo/text/tokenizer.h"

namespace grpo::text {

class HfTokenizer : public Tokenizer {
 public:
  /// Loads `path` (a tokenizer.json). Unsupported components are errors naming the component.
  /// eos/pad default to the file's well-known special tokens when present; override with set_*.
  static std::unique_ptr<HfTokenizer> from_file(const std::string& path);
  /// Loads a tokenizer directory (or a tokenizer.json path): tokenizer.json, plus eos/bos/pad and
  /// the chat template from tokenizer_config.json when the directory has one (strings or {"content": ...} objects).
  /// `eos_override` (a token's text, if non-empty) replaces the EOS token.
  static std::unique_ptr<HfTokenizer> from_dir(const std::string& dir,
                                               const std::string& eos_override = "");
  static std::unique_ptr<HfTokenizer> from_json(const std::string& json_text, const std::string& origin);
  ~HfTokenizer() override;

  std::vector<int64_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const override;
  int64_t vocab_size() const override;
  int64_t eos_id() const override;
  int64_t pad_id() const override;
  std::optional<int64_t> bos_id() const override;
  std::optional<int64_t> token_id(std::string_view token) const override;
  /// From from_dir: tokenizer_config.json's chat_template or chat_template.jinja.
  const JinjaChatTemplate* chat_template() const override;
  void set_eos_id(int64_t id);
  void set_pad_id(int64_t id);
  void set_bos_id(std::optional<int64_t> id);

 private:
  HfTokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::text
