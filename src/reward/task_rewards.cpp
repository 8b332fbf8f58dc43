#include "grpo/reward/task_rewards.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>

#include <utf8proc.h>

#include "grpo/core/error.h"
#include "grpo/reward/sandbox.h"

namespace grpo::reward {
namespace {

Script script_of(int32_t c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7) ||
      (c >= 0x1E00 && c <= 0x1EFF))
    return Script::kLatin;
  if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
      (c >= 0xF900 && c <= 0xFAFF))
    return Script::kHan;
  if ((c >= 0x3040 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) || (c >= 0xFF66 && c <= 0xFF9F)) return Script::kKana;
  if ((c >= 0xAC00 && c <= 0xD7AF) || (c >= 0x1100 && c <= 0x11FF) || (c >= 0x3130 && c <= 0x318F)) return Script::kHangul;
  if (c >= 0x400 && c <= 0x52F) return Script::kCyrillic;
  if ((c >= 0x600 && c <= 0x6FF) || (c >= 0x750 && c <= 0x77F) || (c >= 0xFB50 && c <= 0xFDFF)) return Script::kArabic;
  if (c >= 0x900 && c <= 0x97F) return Script::kDevanagari;
  if (c >= 0x370 && c <= 0x3FF) return Script::kGreek;
  if (c >= 0x590 && c <= 0x5FF) return Script::kHebrew;
  if (c >= 0xE00 && c <= 0xE7F) return Script::kThai;
  return Script::kNone;
}

// Drops what is not prose: $..$ / \(..\) / \[..\] math, ``` code blocks, \commands, <tags>.
std::string prose(const std::string& t) {
  std::string out;
  for (size_t i = 0; i < t.size();) {
    auto skip_to = [&](const char* close, size_t from) {
      auto e = t.find(close, from);
      return e == std::string::npos ? t.size() : e + std::strlen(close);
    };
    if (t.compare(i, 3, "```") == 0) i = skip_to("```", i + 3);
    else if (t.compare(i, 2, "$$") == 0) i = skip_to("$$", i + 2);
    else if (t[i] == '$') i = skip_to("$", i + 1);
    else if (t.compare(i, 2, "\\(") == 0) i = skip_to("\\)", i + 2);
    else if (t.compare(i, 2, "\\[") == 0) i = skip_to("\\]", i + 2);
    else if (t[i] == '\\') {  // a command; its {argument} too, unless it is prose (\text{...})
      size_t b = ++i;
      while (i < t.size() && std::isalpha(static_cast<unsigned char>(t[i]))) ++i;
      std::string cmd = t.substr(b, i - b);
      if (i < t.size() && t[i] == '{' && cmd != "text" && cmd != "textbf" && cmd != "textit" &&
          cmd != "emph" && cmd != "mbox") {
        int depth = 0;
        for (; i < t.size(); ++i) {
          if (t[i] == '{') ++depth;
          else if (t[i] == '}' && --depth == 0) {
            ++i;
            break;
          }
        }
      }
    } else if (t[i] == '<') {
      auto e = t.find('>', i);
      if (e != std::string::npos && e - i < 16) i = e + 1;
      else out += t[i++];
    } else {
      out += t[i++];
    }
  }
  return out;
}

// Words per script: a run of letters of one alphabetic script, or one Han/kana character.
std::map<Script, int64_t> count_words(const std::string& text) {
  std::map<Script, int64_t> n;
  Script run = Script::kNone;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t left = utf8proc_ssize_t(text.size());
  while (left > 0) {
    utf8proc_int32_t c = 0;
    auto k = utf8proc_iterate(p, left, &c);
    if (k <= 0) {  // invalid byte: skip it
      k = 1;
      c = -1;
    }
    p += k;
    left -= k;
    Script s = c < 0 ? Script::kNone : script_of(c);
    if (s == Script::kHan || s == Script::kKana) {
      ++n[s];
      run = Script::kNone;
    } else if (s == Script::kNone) {
      run = Script::kNone;
    } else if (s != run) {
      ++n[s];
      run = s;
    }
  }
  return n;
}

}  // namespace

std::vector<Script> parse_target_script(const std::string& name) {
  static const std::map<std::string, std::vector<Script>> names{
      {"latin", {Script::kLatin}}, {"han", {Script::kHan}}, {"japanese", {Script::kHan, Script::kKana}},
      {"hangul", {Script::kHangul}}, {"cyrillic", {Script::kCyrillic}}, {"arabic", {Script::kArabic}},
      {"devanagari", {Script::kDevanagari}}, {"greek", {Script::kGreek}}, {"hebrew", {Script::kHebrew}},
      {"thai", {Script::kThai}}, {"zh", {Script::kHan}}, {"ja", {Script::kHan, Script::kKana}},
      {"ko", {Script::kHangul}}, {"ru", {Script::kCyrillic}}, {"uk", {Script::kCyrillic}},
      {"ar", {Script::kArabic}}, {"hi", {Script::kDevanagari}}, {"el", {Script::kGreek}},
      {"he", {Script::kHebrew}}, {"th", {Script::kThai}}};
  if (auto it = names.find(name); it != names.end()) return it->second;
  static const char* latin_langs[] = {"en", "fr", "de", "es", "it", "pt", "nl", "pl", "tr", "vi", "id", "sv", "cs"};
  for (auto* l : latin_langs)
    if (name == l) return {Script::kLatin};
  fail("language '{}' is not known (a script: latin, han, japanese, hangul, cyrillic, arabic, devanagari, "
       "greek, hebrew, thai; or a language code such as en, zh, ja, ko, ru)", name);
}

std::vector<Script> dominant_scripts(const std::string& text) {
  auto n = count_words(prose(text));
  if (n.empty()) return {};
  if (n[Script::kKana] > 0) return {Script::kHan, Script::kKana};  // Japanese mixes both
  Script best = Script::kNone;
  int64_t most = 0;
  for (auto& [s, c] : n)
    if (c > most) best = s, most = c;
  return {best};
}

double language_consistency(const std::string& text, const std::vector<Script>& target) {
  auto n = count_words(prose(text));
  int64_t total = 0, in_target = 0;
  for (auto& [s, c] : n) {
    total += c;
    if (std::find(target.begin(), target.end(), s) != target.end()) in_target += c;
  }
  return total == 0 ? 1.0 : double(in_target) / double(total);
}

namespace {

struct Frac {
  __int128 n = 0, d = 1;
};
struct Countdown {
  const std::string& s;
  size_t i = 0;
  int depth = 0;
  std::vector<int64_t> used;
  bool ok = true;
  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  static Frac norm(__int128 n, __int128 d, bool& ok) {
    if (d == 0) {
      ok = false;
      return {};
    }
    if (d < 0) n = -n, d = -d;
    __int128 a = n < 0 ? -n : n, b = d;
    while (b) {
      auto t = a % b;
      a = b;
      b = t;
    }
    if (a > 1) n /= a, d /= a;
    const __int128 lim = __int128(1) << 60;
    if (n > lim || n < -lim || d > lim) {  // too large for Countdown: give up, never overflow
      ok = false;
      return {0, 1};
    }
    return {n, d};
  }
  Frac expr() {
    if (++depth > 200) {
      ok = false;
      return {};
    }
    Frac a = term();
    for (;;) {
      ws();
      if (ok && i < s.size() && (s[i] == '+' || s[i] == '-')) {
        char o = s[i++];
        Frac b = term();
        a = norm(o == '+' ? a.n * b.d + b.n * a.d : a.n * b.d - b.n * a.d, a.d * b.d, ok);
      } else {
        break;
      }
    }
    --depth;
    return a;
  }
  Frac term() {
    Frac a = factor();
    for (;;) {
      ws();
      if (ok && i < s.size() && (s[i] == '*' || s[i] == '/' || s[i] == 'x' || s[i] == 'X')) {
        char o = s[i++];
        Frac b = factor();
        a = o == '/' ? norm(a.n * b.d, a.d * b.n, ok) : norm(a.n * b.n, a.d * b.d, ok);
      } else {
        break;
      }
    }
    return a;
  }
  Frac factor() {
    ws();
    if (i < s.size() && s[i] == '(') {
      ++i;
      Frac a = expr();
      ws();
      if (i >= s.size() || s[i] != ')') ok = false;
      ++i;
      return a;
    }
    if (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      int64_t v = 0;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        if (v > 1000000000) ok = false;  // no Countdown number is this large
        else v = v * 10 + (s[i] - '0');
        ++i;
      }
      used.push_back(v);
      return {v, 1};
    }
    ok = false;
    return {};
  }
};

}  // namespace

std::optional<bool> countdown_correct(const std::string& expression, int64_t target,
                                      const std::vector<int64_t>& numbers) {
  std::string e = expression;
  for (auto [a, b] : std::vector<std::pair<std::string, std::string>>{{"\\times", "*"}, {"\\cdot", "*"}, {"\\div", "/"}, {"×", "*"}, {"÷", "/"}})
    for (size_t p = e.find(a); p != std::string::npos; p = e.find(a, p)) e.replace(p, a.size(), b);
  if (auto eq = e.find('='); eq != std::string::npos) e = e.substr(0, eq);  // "... = 98"
  if (e.size() > 1000) return std::nullopt;
  Countdown c{e, 0, 0, {}, true};
  Frac v = c.expr();
  c.ws();
  if (!c.ok || c.i != e.size()) return std::nullopt;
  auto a = c.used, b = numbers;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  if (a != b) return false;
  return v.d == 1 && v.n == target;
}

std::optional<std::string> last_code_block(const std::string& c, std::string* language) {
  auto close = c.rfind("```");
  if (close == std::string::npos || close == 0) return std::nullopt;
  auto open = c.rfind("```", close - 1);
  if (open == std::string::npos) return std::nullopt;
  auto nl = c.find('\n', open);
  if (nl == std::string::npos || nl > close) return std::nullopt;
  if (language) {
    std::string lang = c.substr(open + 3, nl - open - 3);
    for (auto& ch : lang) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    while (!lang.empty() && std::isspace(static_cast<unsigned char>(lang.back()))) lang.pop_back();
    *language = lang;
  }
  return c.substr(nl + 1, close - nl - 1);
}

namespace {
std::string normalize_output(const std::string& s) {
  std::string out, line;
  std::istringstream in(s);
  while (std::getline(in, line)) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    out += line + "\n";
  }
  while (out.size() >= 2 && out[out.size() - 1] == '\n' && out[out.size() - 2] == '\n') out.pop_back();
  if (out == "\n") out.clear();
  return out;
}
}  // namespace

double code_pass_rate(const std::string& code, const std::string& language, const std::vector<CodeTest>& tests,
                      double wall_seconds_per_test) {
  if (tests.empty()) return 0.0;
  std::vector<std::string> argv;
  std::map<std::string, std::string> files;
  SandboxLimits l;
  l.wall_seconds = wall_seconds_per_test;
  if (language == "python" || language == "py" || language == "python3" || language.empty()) {
    files["main.py"] = code;
    argv = {"python3", "main.py"};
  } else if (language == "cpp" || language == "c++" || language == "cc") {
    // compiled once, in its own sandbox, which hands the executable back on stdout; each test then
    // runs that executable
    SandboxLimits cl = l;
    cl.wall_seconds = std::max(wall_seconds_per_test, 30.0);
    cl.cpu_seconds = 20;
    cl.memory_bytes = int64_t(2) << 30;
    cl.output_bytes = int64_t(64) << 20;
    auto c = run_sandboxed({"sh", "-c", "g++ -O1 -std=c++17 -o main main.cpp 2>/dev/null && cat main"}, "",
                           {{"main.cpp", code}}, cl);
    if (c.timed_out || c.signal != 0 || c.exit_code != 0 || c.out.empty()) return 0.0;  // does not compile
    files["main"] = std::move(c.out);
    argv = {"sh", "-c", "chmod +x main && exec ./main"};
  } else {
    fail("code reward: language '{}' is not supported (python, cpp)", language);
  }
  int passed = 0;
  for (auto& t : tests) {
    auto r = run_sandboxed(argv, t.input, files, l);
    passed += !r.timed_out && r.signal == 0 && r.exit_code == 0 && normalize_output(r.out) == normalize_output(t.output);
  }
  return double(passed) / double(tests.size());
}

double overlong_penalty(int64_t length, int64_t max_len, int64_t buffer) {
  if (length < 0 || max_len <= 0) return 0.0;
  if (length > max_len) return -1.0;
  const int64_t start = max_len - buffer;
  if (buffer <= 0 || length <= start) return 0.0;
  return double(start - length) / double(buffer);
}

}  // namespace grpo::reward
