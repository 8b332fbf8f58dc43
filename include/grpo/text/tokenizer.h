// Tokenizer interface used by every layer above text/, plus a character-level tokenizer for the
// built-in tasks. Special tokens (e.g. "<think>") are matched whole before splitting characters,
// as added tokens are in Hugging Face tokenizers; the HF byte-level BPE tokenizer implements the
// same interface in a later layer.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::text {

class JinjaChatTemplate;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Token ids of `text` (no BOS/EOS added). Throws grpo::Error on text it cannot encode.
  virtual std::vector<int64_t> encode(std::string_view text) const = 0;
  /// Text of `ids`; special tokens are written out unless skip_special.
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t eos_id() const = 0;
  virtual int64_t pad_id() const = 0;
  /// Beginning-of-sequence token, for models that expect one (Llama, DeepSeek); none by default.
  virtual std::optional<int64_t> bos_id() const { return std::nullopt; }
  /// Id of a token given by its text, if it is one token.
  virtual std::optional<int64_t> token_id(std::string_view token) const = 0;
  /// The model's own chat template (text/chat_template.h), if its files have one; a template that
  /// does not parse is a grpo::Error here, at first use, not when the tokenizer loads.
  virtual const JinjaChatTemplate* chat_template() const { return nullptr; }
};

/// One token per character of `alphabet` (ASCII), then the special tokens. Ids: specials first
/// (pad = 0, eos = 1, then the rest in order), then the alphabet. A byte outside the alphabet is an
/// error, or encodes as `unknown` when that is set (and in the alphabet).
class CharTokenizer : public Tokenizer {
 public:
  CharTokenizer(std::string alphabet, std::vector<std::string> specials = {}, char unknown = 0);
  std::vector<int64_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  int64_t eos_id() const override { return 1; }
  int64_t pad_id() const override { return 0; }
  std::optional<int64_t> token_id(std::string_view token) const override;

  static constexpr const char* kPad = "<pad>";
  static constexpr const char* kEos = "<eos>";

 private:
  std::vector<std::string> pieces_;
  int64_t num_special_ = 0;
  int64_t unknown_id_ = -1;
  int64_t char_to_id_[256];
  std::vector<std::string> specials_by_length_;  // longest first, for matching
};

/// Substitutes the prompt into a template: every "{prompt}" is replaced; "{{" and "}}" are
/// literal braces. Throws grpo::Error when the template has no {prompt} or an unknown field.
std::string apply_template(const std::string& tmpl, const std::string& prompt);

/// The R1-Zero prompt template (DeepSeek-R1, Nature 2025), with {prompt}.
extern const char* const kR1ZeroTemplate;

/// A named built-in template ("r1_zero", "plain" = "{prompt}"), or `name_or_template` itself when
/// it contains "{prompt}". Throws grpo::Error naming the unknown template otherwise.
std::string resolve_template(const std::string& name_or_template);

}  // namespace grpo::text
