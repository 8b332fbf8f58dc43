// Finding the final answer in a completion (and in a gold string): see math_verify.h, step 1.
#include "grpo/reward/math_verify.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "math_text.h"

namespace grpo::reward::math {

namespace detail {

// The last number in plain text (with thousands separators, decimals, percent).
std::optional<std::string> last_number(const std::string& s, size_t* begin_pos) {
  std::optional<std::string> best;
  for (size_t i = 0; i < s.size();) {
    if (std::isdigit(static_cast<unsigned char>(s[i])) ||
        (s[i] == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      size_t b = i;
      if (b > 0 && s[b - 1] == '-') --b;
      size_t e = i;
      while (e < s.size() && (std::isdigit(static_cast<unsigned char>(s[e])) ||
                              ((s[e] == '.' || s[e] == ',') && e + 1 < s.size() &&
                               std::isdigit(static_cast<unsigned char>(s[e + 1])))))
        ++e;
      // "1 000": a space before exactly three digits continues the number
      while (e + 3 < s.size() && s[e] == ' ' && std::isdigit(static_cast<unsigned char>(s[e + 1])) &&
             std::isdigit(static_cast<unsigned char>(s[e + 2])) && std::isdigit(static_cast<unsigned char>(s[e + 3])) &&
             (e + 4 == s.size() || !std::isdigit(static_cast<unsigned char>(s[e + 4]))))
        e += 4;
      size_t pe = e;
      while (pe < s.size() && s[pe] == ' ') ++pe;
      if (pe < s.size() && s[pe] == '%') e = pe + 1;
      // a plain-text fraction "2/3"
      if (e + 1 < s.size() && s[e] == '/' && std::isdigit(static_cast<unsigned char>(s[e + 1]))) {
        size_t f = e + 1;
        while (f < s.size() && std::isdigit(static_cast<unsigned char>(s[f]))) ++f;
        e = f;
      }
      bool glued = (b > 0 && std::isalpha(static_cast<unsigned char>(s[b - 1]))) ||
                   (e < s.size() && std::isalpha(static_cast<unsigned char>(s[e])) && s[e] != 'm');
      if (!glued) {
        best = s.substr(b, e - b);
        if (begin_pos) *begin_pos = b;
      }
      i = e;
    } else {
      ++i;
    }
  }
  return best;
}
// "$1$ and $2$ and $3$", "$21,16$ or $11$": several $..$ spans joined only by words like and/or, as one
// list answer; a single span is itself (nullopt for none). *whole: nothing but a final "." follows the last span.
std::optional<std::string> joined_spans(const std::string& t, bool* whole) {
  std::vector<std::string> spans;
  std::string between;
  *whole = true;
  for (size_t p = 0; p < t.size();) {
    auto b = t.find('$', p);
    if (b == std::string::npos) {
      between += t.substr(p);
      break;
    }
    between += t.substr(p, b - p);
    auto e = t.find('$', b + 1);
    if (e == std::string::npos) {
      *whole = false;
      break;
    }
    std::string gap = lower(trim(between));
    if (!spans.empty() && !(gap.empty() || gap == "and" || gap == "or" || gap == "," || gap == ";" || gap == ", and")) {
      *whole = false;
      break;
    }
    spans.push_back(t.substr(b + 1, e - b - 1));
    between.clear();
    p = e + 1;
  }
  if (trim(between).find_first_not_of(".\"'") != std::string::npos) *whole = false;
  if (spans.empty()) return std::nullopt;
  std::string joined;
  for (auto& sp : spans) joined += (joined.empty() ? "" : ", ") + trim(sp);
  return joined;
}

}  // namespace detail

using namespace detail;

namespace {

// The last \boxed{...} / \fbox{...} (or "\boxed 5") in s.
struct Box {
  size_t begin, end;
  std::string content;
};
std::vector<Box> all_boxes(const std::string& s) {
  std::vector<Box> out;
  for (const char* cmd : {"\\boxed", "\\fbox"}) {
    // the last 64 boxes are enough (bounded work on hostile inputs)
    int n = 0;
    for (size_t p = s.rfind(cmd); p != std::string::npos && n < 64; p = p == 0 ? std::string::npos : s.rfind(cmd, p - 1), ++n) {
      size_t q = p + std::strlen(cmd), end = 0;
      while (q < s.size() && s[q] == ' ') ++q;
      if (q < s.size() && s[q] == '{')
        if (auto c = braced(s, q, &end)) out.push_back({p, end, *c});
    }
  }
  std::sort(out.begin(), out.end(), [](const Box& a, const Box& b) { return a.begin < b.begin; });
  return out;
}
// "y_1 = " right before position `pos` (the box), in the same math span: the left side (a short
// name: letters, digits, _ { }), and where it begins; nullopt otherwise.
std::optional<std::pair<std::string, size_t>> lhs_before(const std::string& s, size_t pos) {
  size_t e = pos;
  while (e > 0 && s[e - 1] == ' ') --e;
  if (e == 0 || s[e - 1] != '=') return std::nullopt;
  --e;
  while (e > 0 && s[e - 1] == ' ') --e;
  size_t b = e;
  while (b > 0 && e - b < 16 && (std::isalnum(static_cast<unsigned char>(s[b - 1])) || std::strchr("_{}", s[b - 1]))) --b;
  if (b == e || !std::isalpha(static_cast<unsigned char>(s[b]))) return std::nullopt;
  return std::make_pair(s.substr(b, e - b), b);
}
// Boxes in separate math spans that each state one side of an equation ("\(y_1 = \boxed{..}\) and
// \(y_2 = \boxed{..}\)") form the list of equations "y_1 = .., y_2 = ..".
std::optional<std::string> boxed_equations(const std::string& s, const std::vector<Box>& boxes) {
  std::vector<std::string> parts;
  for (size_t k = boxes.size(); k-- > 0;) {
    auto lhs = lhs_before(s, boxes[k].begin);
    if (!lhs) break;
    if (k + 1 < boxes.size()) {  // only delimiters and "and"/commas between this box and the next equation
      std::string gap = s.substr(boxes[k].end, lhs_before(s, boxes[k + 1].begin)->second - boxes[k].end);
      for (const char* junk : {"\\(", "\\)", "\\[", "\\]", "and", "$", ",", ";", "\n", " "}) replace_all(gap, junk, "");
      if (!gap.empty()) break;
    }
    parts.insert(parts.begin(), lhs->first + " = " + boxes[k].content);
  }
  if (parts.size() < 2) return std::nullopt;
  std::string out;
  for (auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}
// Boxes separated only by commas, "and", spacing or math delimiters form one list answer, and so do boxes
// joined by a short phrase that ends in "and" ("\boxed{1} papers and \boxed{2} bins").
std::optional<std::string> last_boxed(const std::string& s, size_t* end_pos = nullptr) {
  auto boxes = all_boxes(s);
  if (end_pos) *end_pos = boxes.empty() ? 0 : boxes.back().end;
  if (auto eqs = boxed_equations(s, boxes)) return eqs;
  if (!boxes.empty()) {
    std::string answer = boxes.back().content;
    for (size_t k = boxes.size() - 1; k > 0; --k) {
      std::string gap = s.substr(boxes[k - 1].end, boxes[k].begin - boxes[k - 1].end);
      std::string tail = " " + lower(gap);  // "... and" right before the next box (not "and later")
      while (!tail.empty() && std::strchr(" {}$()\\", tail.back())) tail.pop_back();
      if (gap.size() <= 40 && gap.find_first_of(".\n=") == std::string::npos && tail.size() >= 4 &&
          tail.compare(tail.size() - 4, 4, " and") == 0) {
        answer = boxes[k - 1].content + ", " + answer;
        continue;
      }
      for (const char* junk : {"\\quad", "\\qquad", "\\text{", "\\(", "\\)", "\\[", "\\]", "and", "$", "}", "{", ",", "\\,", ";", "\n", " "})
        replace_all(gap, junk, "");
      if (!gap.empty()) break;
      answer = boxes[k - 1].content + ", " + answer;
    }
    return answer;
  }
  std::optional<std::string> best;
  size_t best_pos = 0;
  for (const char* cmd : {"\\boxed", "\\fbox"}) {
    int n = 0;
    for (size_t p = s.rfind(cmd); p != std::string::npos && n < 64; p = p == 0 ? std::string::npos : s.rfind(cmd, p - 1), ++n) {
      size_t q = p + std::strlen(cmd);
      while (q < s.size() && s[q] == ' ') ++q;
      std::optional<std::string> content;
      if (q < s.size() && s[q] == '{') content = braced(s, q, nullptr);
      else if (q > p + std::strlen(cmd)) {  // "\boxed 5"
        size_t e = q;
        while (e < s.size() && !std::isspace(static_cast<unsigned char>(s[e])) && s[e] != '$') ++e;
        content = s.substr(q, e - q);
      }
      if (content && (!best || p >= best_pos)) {
        best = content;
        best_pos = p;
      }
    }
  }
  if (end_pos) *end_pos = best ? best_pos : 0;
  return best;
}
// The last math span: $$..$$, \[..\] (may span lines), $..$, \(..\) (single line).
std::optional<std::string> last_math_span(const std::string& s, size_t* end_pos = nullptr) {
  std::optional<std::string> best;
  size_t best_pos = 0, best_end = 0;
  auto consider = [&](const std::string& open, const std::string& close, bool multiline) {
    for (size_t p = s.find(open); p != std::string::npos;) {
      size_t b = p + open.size();
      size_t e = s.find(close, b);
      // "$" must not match the first half of "$$", nor an escaped \$
      while (open == "$" && e != std::string::npos && e > 0 && s[e - 1] == '\\') e = s.find(close, e + 1);
      if (e == std::string::npos) break;
      auto body = s.substr(b, e - b);
      if ((multiline || body.find('\n') == std::string::npos) && !trim(body).empty() && (!best || p >= best_pos)) {
        best = body;
        best_pos = p;
        best_end = e + close.size();
      }
      p = s.find(open, e + close.size());
    }
  };
  consider("$$", "$$", true);
  consider("\\[", "\\]", true);
  consider("\\(", "\\)", false);
  // single $: skip the $$ pairs
  std::string single = s;
  replace_all(single, "$$", "  ");
  replace_all(single, "\\$", "  ");
  for (size_t p = single.find('$'); p != std::string::npos;) {
    size_t e = single.find('$', p + 1);
    if (e == std::string::npos) break;
    auto body = s.substr(p + 1, e - p - 1);
    if (body.find('\n') == std::string::npos && !trim(body).empty() && (!best || p >= best_pos)) {
      best = body;
      best_pos = p;
      best_end = e + 1;
    }
    p = single.find('$', e + 1);
  }
  if (end_pos) *end_pos = best_end;
  return best;
}
// Text after a phrase such as "the final answer is", up to the end of its sentence.
std::optional<std::string> after_phrase(const std::string& s, size_t* begin_pos = nullptr) {
  const std::string ls = lower(s);
  size_t best = std::string::npos, len = 0;
  for (const char* ph : {"final answer is", "the answer is", "answer is", "answer:", "final answer:"}) {
    auto p = ls.rfind(ph);
    if (p != std::string::npos && (best == std::string::npos || p > best)) {
      best = p;
      len = std::strlen(ph);
    }
  }
  if (best == std::string::npos) return std::nullopt;
  if (begin_pos) *begin_pos = best;
  std::string rest = s.substr(best + len);
  auto nl = rest.find('\n');
  if (nl != std::string::npos) rest = rest.substr(0, nl);
  // "is $12$. I hope...", "is \\((-6, 10)\\). I hope...", "is "$12$ and $13$". I hope..."
  size_t f = 0;  // past spaces, bold markers and quotes (also JSON-escaped ones: \")
  while (f < rest.size() && (std::strchr(" *\"'", rest[f]) || starts_with(rest, f, "\\\""))) f += rest[f] == '\\' ? 2 : 1;
  if (f < rest.size() && (rest[f] == '$' || starts_with(rest, f, "\\(") || starts_with(rest, f, "\\["))) {
    bool whole = false;
    if (rest[f] == '$') {
      if (auto j = joined_spans(rest.substr(f), &whole)) return *j;
    } else if (auto e = rest.find(rest[f + 1] == '(' ? "\\)" : "\\]", f + 2); e != std::string::npos) {
      return rest.substr(f + 2, e - f - 2);
    }
  }
  // end of sentence: ". " or a final "."
  for (size_t i = 0; i + 1 < rest.size(); ++i)
    if (rest[i] == '.' && rest[i + 1] == ' ') {
      rest = rest.substr(0, i);
      break;
    }
  rest = trim(rest);
  while (!rest.empty() && (rest.back() == '.' || rest.back() == '*')) rest.pop_back();
  while (!rest.empty() && rest[0] == '*') rest.erase(0, 1);
  rest = trim(rest);
  if (rest.empty()) return std::nullopt;
  return rest;
}

}  // namespace

std::optional<std::string> extract_final_answer(const std::string& completion) {
  std::string s = completion.size() > 100000 ? completion.substr(completion.size() - 100000) : completion;
  // 1. the R1 <answer> block
  auto close = s.rfind("</answer>");
  auto open = s.rfind("<answer>", close == std::string::npos ? std::string::npos : close);
  if (open != std::string::npos) {
    std::string inner = s.substr(open + 8, close == std::string::npos || close < open ? std::string::npos : close - open - 8);
    if (auto b = last_boxed(inner)) return trim(*b);
    if (auto m = last_math_span(inner)) return trim(*m);
    inner = trim(inner);
    if (!inner.empty()) return inner;
  }
  // 2. the last box, unless a "final answer is ..." statement follows it
  size_t box_end = 0, phrase_at = 0;
  auto phrase = after_phrase(s, &phrase_at);
  if (auto b = last_boxed(s, &box_end)) return phrase && phrase_at >= box_end ? *phrase : trim(*b);
  // 3. GSM8K's ####
  if (auto p = s.rfind("####"); p != std::string::npos) {
    auto rest = trim(s.substr(p + 4));
    auto nl = rest.find('\n');
    rest = trim(rest.substr(0, nl));
    if (!rest.empty()) return rest;
  }
  // 4. "final answer is ..." / "Answer: ..."
  if (phrase) return *phrase;
  // 5. the last math span or a plain number after it; a short one-line completion is its own answer;
  // 6. the last number
  size_t span_end = 0, number_at = 0;
  if (auto m = last_math_span(s, &span_end)) {
    auto n = last_number(s, &number_at);
    return n && number_at >= span_end ? *n : trim(*m);
  }
  if (auto t = trim(s); t.size() <= 60 && t.find('\n') == std::string::npos && !t.empty()) {
    bool word = false;
    for (size_t k = 0; k + 1 < t.size(); ++k)
      if (std::isalpha(static_cast<unsigned char>(t[k])) && std::isalpha(static_cast<unsigned char>(t[k + 1])) &&
          (k == 0 || (t[k - 1] != '\\' && !std::isalpha(static_cast<unsigned char>(t[k - 1])))))
        word = true;
    if (!word) return t;
  }
  if (auto n = last_number(s)) return *n;
  return std::nullopt;
}

namespace detail {

std::optional<std::string> extract_gold(const std::string& gold) {
  if (gold.find("\\boxed") != std::string::npos || gold.find("\\fbox") != std::string::npos ||
      gold.find("####") != std::string::npos || gold.find("<answer>") != std::string::npos ||
      lower(gold).find("final answer is") != std::string::npos)  // a worked solution as the gold
    return extract_final_answer(gold);
  auto t = trim(gold);
  if (!t.empty() && t[0] == '$' && t.find("$$") == std::string::npos) {
    bool whole = false;
    if (auto j = joined_spans(t, &whole); j && whole) return j;
  }
  if (!t.empty() && (t[0] == '$' || starts_with(t, 0, "\\(") || starts_with(t, 0, "\\[")))
    if (auto m = last_math_span(t)) return trim(*m);
  if (t.empty()) return std::nullopt;
  return t;
}

}  // namespace detail
}  // namespace grpo::reward::math
