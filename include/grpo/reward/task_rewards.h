// Rule-based rewards beyond answer accuracy and format (DeepSeek-R1, TinyZero, DAPO), as plain
// functions; reward.cpp registers them by name ("language", "countdown", "gsm8k", "overlong").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace grpo::reward {

/// Writing systems the language reward tells apart.
enum class Script { kNone, kLatin, kHan, kKana, kHangul, kCyrillic, kArabic, kDevanagari, kGreek, kHebrew, kThai };

/// "latin", "han" (Chinese), "japanese" (Han + kana), "hangul", "cyrillic", "arabic", "devanagari",
/// "greek", "hebrew", "thai", or a language code (en, zh, ja, ko, ru, ar, hi, el, he, th, fr,
/// de, es, ...). Throws grpo::Error otherwise.
std::vector<Script> parse_target_script(const std::string& name);

/// The dominant script(s) of `text` (Japanese: Han and kana together); empty when it has none.
std::vector<Script> dominant_scripts(const std::string& text);

/// R1's language consistency: the share of the words of `text` (a Han/kana character counts as a
/// word; LaTeX commands, math spans and code blocks are ignored) written in one of `target`.
/// 1.0 when the text has no words at all.
double language_consistency(const std::string& text, const std::vector<Script>& target);

/// Countdown (TinyZero): `expression` uses exactly the given numbers, each once, with + - * / and
/// parentheses, and equals `target` (exact rational arithmetic). nullopt if it is malformed.
std::optional<bool> countdown_correct(const std::string& expression, int64_t target,
                                      const std::vector<int64_t>& numbers);

/// The last fenced code block of a completion (```python / ```cpp / ```c++ / ```); `language`
/// gets the fence's language (lower case, may be empty). nullopt if there is none.
std::optional<std::string> last_code_block(const std::string& completion, std::string* language = nullptr);

struct CodeTest {
  std::string input, output;
};

/// Runs `code` (python or cpp) on each test in the sandbox (reward/sandbox.h) and returns the
/// fraction whose stdout equals the expected output (trailing whitespace of lines ignored).
double code_pass_rate(const std::string& code, const std::string& language, const std::vector<CodeTest>& tests,
                      double wall_seconds_per_test = 10.0);

/// DAPO's soft overlong penalty: 0 up to max_len - buffer tokens, then falling linearly to -1 at
/// max_len, and -1 beyond.
double overlong_penalty(int64_t length, int64_t max_len, int64_t buffer);

}  // namespace grpo::reward
