// Text helpers and answer extraction shared by the math verifier's source files
// (answer_extraction.cpp: finding the answer; math_normalize.cpp: normalising; math_parse.cpp:
// parsing; math_verify.cpp: comparing). Internal: not installed.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstring>
#include <optional>
#include <string>

namespace grpo::reward::math::detail {
// Longer answers are cut (normalising) or refused (parsing): bounded work per call.
inline constexpr size_t kMaxAnswerChars = 2000;

inline std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}
inline bool starts_with(const std::string& s, size_t at, const char* p) { return s.compare(at, std::strlen(p), p) == 0; }
inline void replace_all(std::string& s, const std::string& a, const std::string& b) {
  if (a.empty()) return;
  for (size_t p = s.find(a); p != std::string::npos; p = s.find(a, p + b.size())) s.replace(p, a.size(), b);
}
inline std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
// Content of the brace group opening at s[open] == '{'; *end = index after the closing brace.
inline std::optional<std::string> braced(const std::string& s, size_t open, size_t* end) {
  if (open >= s.size() || s[open] != '{') return std::nullopt;
  int depth = 0;
  const size_t limit = std::min(s.size(), open + 20000);  // answers are short: bounded work per box
  for (size_t i = open; i < limit; ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) { ++i; continue; }
    if (s[i] == '{') ++depth;
    else if (s[i] == '}' && --depth == 0) {
      if (end) *end = i + 1;
      return s.substr(open + 1, i - open - 1);
    }
  }
  return std::nullopt;
}

/// The last number in plain text (thousands separators, decimals, percent, a/b); *begin_pos = where.
std::optional<std::string> last_number(const std::string& s, size_t* begin_pos = nullptr);
/// The answer a gold string states: a bare answer, $..$ spans joined by and/or, \boxed{}, ####.
std::optional<std::string> extract_gold(const std::string& gold);

}  // namespace grpo::reward::math::detail
