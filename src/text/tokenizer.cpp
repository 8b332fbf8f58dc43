#include "grpo/text/tokenizer.h"

#include <algorithm>

#include "grpo/core/error.h"

namespace grpo::text {

CharTokenizer::CharTokenizer(std::string alphabet, std::vector<std::string> specials, char unknown) {
  std::fill(std::begin(char_to_id_), std::end(char_to_id_), -1);
  pieces_ = {kPad, kEos};
  for (auto& s : specials) {
    GRPO_CHECK(s.size() > 1, "special token '{}' must be longer than one character", s);
    GRPO_CHECK(std::find(pieces_.begin(), pieces_.end(), s) == pieces_.end(),
               "special token '{}' given twice", s);
    pieces_.push_back(s);
  }
  num_special_ = static_cast<int64_t>(pieces_.size());
  specials_by_length_.assign(pieces_.begin(), pieces_.end());
  std::stable_sort(specials_by_length_.begin(), specials_by_length_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (unsigned char c : alphabet) {
    GRPO_CHECK(c < 128, "CharTokenizer alphabet must be ASCII");
    GRPO_CHECK(char_to_id_[c] < 0, "character '{}' appears twice in the alphabet", char(c));
    char_to_id_[c] = static_cast<int64_t>(pieces_.size());
    pieces_.push_back(std::string(1, char(c)));
  }
  if (unknown != 0) {
    unknown_id_ = char_to_id_[static_cast<unsigned char>(unknown)];
    GRPO_CHECK(unknown_id_ >= 0, "CharTokenizer: the stand-in for unknown bytes '{}' is not in the alphabet", unknown);
  }
}

std::vector<int64_t> CharTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    bool matched = false;
    if (text[i] == '<') {
      for (const auto& s : specials_by_length_) {
        if (text.compare(i, s.size(), s) == 0) {
          out.push_back(*token_id(s));
          i += s.size();
          matched = true;
          break;
        }
      }
    }
    if (matched) continue;
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (char_to_id_[c] < 0 && unknown_id_ >= 0) {
      out.push_back(unknown_id_);
      ++i;
      continue;
    }
    GRPO_CHECK(char_to_id_[c] >= 0, "character '{}' (byte {}) at offset {} is not in the vocabulary",
               std::string(1, text[i]), int(c), i);
    out.push_back(char_to_id_[c]);
    ++i;
  }
  return out;
}

std::string CharTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string out;
  for (auto id : ids) {
    GRPO_CHECK(id >= 0 && id < vocab_size(), "token id {} is outside the vocabulary [0, {})", id,
               vocab_size());
    if (skip_special && id < num_special_) continue;
    out += pieces_[id];
  }
  return out;
}

std::optional<int64_t> CharTokenizer::token_id(std::string_view token) const {
  for (size_t i = 0; i < pieces_.size(); ++i)
    if (pieces_[i] == token) return static_cast<int64_t>(i);
  return std::nullopt;
}

std::string apply_template(const std::string& tmpl, const std::string& prompt) {
  std::string out;
  bool found = false;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl.compare(i, 2, "{{") == 0) { out += '{'; ++i; continue; }
    if (tmpl.compare(i, 2, "}}") == 0) { out += '}'; ++i; continue; }
    if (tmpl[i] == '{') {
      auto end = tmpl.find('}', i);
      std::string field = tmpl.substr(i + 1, end == std::string::npos ? std::string::npos : end - i - 1);
      GRPO_CHECK(end != std::string::npos && field == "prompt",
                 "prompt template: unknown field '{{{}}}' at offset {} (only {{prompt}} exists)",
                 field, i);
      out += prompt;
      found = true;
      i = end;
      continue;
    }
    out += tmpl[i];
  }
  GRPO_CHECK(found, "prompt template '{}' has no {{prompt}}", tmpl);
  return out;
}

const char* const kR1ZeroTemplate =
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves "
    "it. The assistant first thinks about the reasoning process in the mind and then provides the "
    "user with the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> "
    "answer here </answer>. User: {prompt}. Assistant:";

std::string resolve_template(const std::string& name) {
  if (name == "r1_zero") return kR1ZeroTemplate;
  if (name == "plain") return "{prompt}";
  GRPO_CHECK(name.find("{prompt}") != std::string::npos,
             "unknown prompt template '{}': expected r1_zero, plain, or a string containing {{prompt}}", name);
  return name;
}

}  // namespace grpo::text
