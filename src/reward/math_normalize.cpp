// Stage 2 of math answer verification (see math_verify.h): normalising the LaTeX of an extracted
// answer to one spelling (\dfrac -> \frac, \left/\right, \text{}, units, degrees, \%, thousands
// separators, spacing commands, trailing punctuation) before math_parse.cpp reads it. String
// rewriting only: no tree, no arithmetic.
#include "grpo/reward/math_verify.h"

#include "math_text.h"

#include <cctype>
#include <cstring>
#include <set>
#include <vector>

namespace grpo::reward::math {
using namespace detail;
namespace {

// Unwraps \cmd{X} -> X for every occurrence of cmd.
void unwrap(std::string& s, const char* cmd, const std::string& before = "", const std::string& after = "") {
  const std::string c(cmd);
  for (size_t p = s.find(c); p != std::string::npos; p = s.find(c, p)) {
    size_t q = p + c.size();
    if (q < s.size() && std::isalpha(static_cast<unsigned char>(s[q]))) {  // \textbf vs \text
      ++p;
      continue;
    }
    while (q < s.size() && s[q] == ' ') ++q;
    size_t end = 0;
    auto body = braced(s, q, &end);
    if (!body) {
      s.erase(p, q - p);  // \mathrm x
      continue;
    }
    s.replace(p, end - p, before + *body + after);
  }
}

}  // namespace

std::string normalize_answer(const std::string& answer) {
  std::string s = answer.size() > kMaxAnswerChars ? answer.substr(0, kMaxAnswerChars) : answer;
  if (trim(s).empty()) return "";
  // Unicode spellings
  for (auto [a, b] : std::vector<std::pair<const char*, const char*>>{
           {"√", "\\sqrt"}, {"π", "\\pi"}, {"∞", "\\infty"}, {"×", "\\times"}, {"·", "\\cdot"}, {"−", "-"},
           {"≤", "\\le "}, {"≥", "\\ge "}, {"≠", "\\ne "}, {"°", ""}, {"±", "\\pm "}, {"∪", "\\cup "},
           {"²", "^2"}, {"³", "^3"}, {"€", ""}, {"£", ""}})
    replace_all(s, a, b);
  for (const char* c : {"\\dfrac", "\\tfrac", "\\cfrac"}) replace_all(s, c, "\\frac");
  // a JSON/Python-escaped answer (\\frac{1}{2}, \\left( ) writes commands with two backslashes; a real row
  // break is never followed directly by one of these names (\\\frac is a row break, then \frac)
  for (size_t p = s.find("\\\\"); p != std::string::npos; p = s.find("\\\\", p + 1)) {
    static const std::set<std::string> cmds{"frac", "left", "right", "le", "leq", "ge", "geq", "lt", "gt", "sqrt",
                                            "pi", "cdot", "times", "infty", "pm", "in", "cup", "text", "boxed",
                                            "mathbf", "neq", "ne", "circ", "div", "log", "ln", "sin", "cos", "tan"};
    size_t e = p + 2;
    while (e < s.size() && std::isalpha(static_cast<unsigned char>(s[e]))) ++e;
    if (e > p + 2 && (p == 0 || s[p - 1] != '\\') && cmds.count(s.substr(p + 2, e - p - 2))) s.erase(p, 1);
  }
  replace_all(s, "\\\\", "\x02");  // matrix row separators survive the spacing rules below
  replace_all(s, "\\lt", "<");
  replace_all(s, "\\gt", ">");
  replace_all(s, "\\approx", "\x03");
  replace_all(s, "\\left.", "");
  replace_all(s, "\\right.", "");
  for (const char* c : {"\\left", "\\right", "\\displaystyle", "\\textstyle", "\\scriptstyle", "\\bigl", "\\bigr",
                        "\\Bigl", "\\Bigr", "\\big", "\\Big"})
    replace_all(s, c, "");
  unwrap(s, "\\phantom", "\x01", "\x01");  // removed below
  for (size_t p = s.find('\x01'); p != std::string::npos; p = s.find('\x01')) {
    auto e = s.find('\x01', p + 1);
    s.erase(p, e == std::string::npos ? 1 : e - p + 1);
  }
  replace_all(s, "{,}", "");
  replace_all(s, "{, }", "");
  replace_all(s, ",\\!", "");
  replace_all(s, "\\!", "");
  replace_all(s, "\\,", " ");
  replace_all(s, "\\;", " ");
  replace_all(s, "\\:", " ");
  replace_all(s, "\\qquad", " ");
  replace_all(s, "\\quad", " ");
  replace_all(s, "\\ ", " ");
  replace_all(s, "~", " ");
  replace_all(s, "\\$", "");
  replace_all(s, "$", "");
  replace_all(s, "\\%", "%");
  for (const char* c : {"^{\\circ}", "^\\circ", "\\circ", "\\degree", "^{\\degree}"}) replace_all(s, c, "");
  for (const char* c : {"\\text", "\\textbf", "\\textit", "\\mathrm", "\\mathbf", "\\mathit", "\\mbox",
                        "\\operatorname", "\\boxed", "\\fbox", "\\textnormal", "\\mathsf", "\\emph"})
    unwrap(s, c, " ", " ");
  replace_all(s, "**", "");
  replace_all(s, "\\colon", ":");
  // a ratio "a:b" is a/b ("7:32", "V_1:V_2 = 11:21")
  for (size_t p = s.find(':'); p != std::string::npos; p = s.find(':', p + 1))
    if (p > 0 && p + 1 < s.size()) s[p] = '/';
  // "a \approx b": an exact value followed by its approximation keeps the exact value
  if (auto p = s.find('\x03'); p != std::string::npos) {
    auto eq = s.rfind('=', p);
    s = eq == std::string::npos ? s.replace(p, 1, "=") : s.substr(0, p);
  }
  // "and" / "or" between answers separate a list
  {
    std::string out;
    for (size_t k = 0; k < s.size();) {
      if (std::isalpha(static_cast<unsigned char>(s[k])) && (k == 0 || s[k - 1] != '\\') &&
          (k == 0 || !std::isalpha(static_cast<unsigned char>(s[k - 1])))) {
        size_t e = k;
        while (e < s.size() && std::isalpha(static_cast<unsigned char>(s[e]))) ++e;
        std::string w = s.substr(k, e - k);
        out += (w == "and" || w == "or") ? "," : w;
        k = e;
      } else {
        out += s[k++];
      }
    }
    s = out;
  }
  replace_all(s, "\x02", "\\\\");
  s = trim(s);
  // "x \in [1, 2]" -> "[1, 2]"
  if (auto p = s.find("\\in "); p != std::string::npos && p < 12) s = trim(s.substr(p + 4));
  // percent words
  for (const char* w : {" percentage", " percent", " pct", "percent"}) {
    auto p = lower(s).rfind(w);
    if (p != std::string::npos && p + std::strlen(w) == s.size()) s = trim(s.substr(0, p)) + "%";
  }
  // trailing punctuation
  while (!s.empty() && (s.back() == '.' || s.back() == ',' || s.back() == ';' || s.back() == ':' || s.back() == ' '))
    s.pop_back();
  // thousands separators in a plain number: 1,234,567 or 1 234 567
  auto thousands = [](const std::string& x, char sep) {
    size_t i = 0;
    if (i < x.size() && x[i] == '-') ++i;
    size_t b = i;
    while (i < x.size() && std::isdigit(static_cast<unsigned char>(x[i]))) ++i;
    // a thousands-separated number has 1-3 leading digits and does not start with 0 ("0,111" is a decimal comma)
    if (i == b || i - b > 3 || i >= x.size() || x[i] != sep || x[b] == '0') return std::string();
    std::string out = x.substr(0, i);
    while (i < x.size() && x[i] == sep) {
      size_t d = i + 1, e = d;
      while (e < x.size() && std::isdigit(static_cast<unsigned char>(x[e]))) ++e;
      if (e - d != 3) return std::string();
      out += x.substr(d, 3);
      i = e;
    }
    if (i < x.size() && x[i] == '.') {
      size_t e = i + 1;
      while (e < x.size() && std::isdigit(static_cast<unsigned char>(x[e]))) ++e;
      out += x.substr(i, e - i);
      i = e;
    }
    return i == x.size() || x[i] == '%' ? out + x.substr(i) : std::string();
  };
  if (auto t = thousands(s, ','); !t.empty()) s = t;
  else if (auto t2 = thousands(s, ' '); !t2.empty()) s = t2;
  // a decimal comma: "1000,99", "0,111" (not three digits after it, or a leading 0)
  if (!s.empty()) {
    size_t k = s[0] == '-' ? 1 : 0, b = k;
    while (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) ++k;
    if (k > b && k < s.size() && s[k] == ',') {
      size_t e = k + 1;
      while (e < s.size() && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
      const size_t frac = e - k - 1;
      if (e == s.size() && frac >= 1 && ((frac != 3 && frac != 1) || (k - b == 1 && s[b] == '0'))) s[k] = '.';
    }
  }
  return trim(s);
}

}  // namespace grpo::reward::math
