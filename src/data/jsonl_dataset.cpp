#include "grpo/data/jsonl_dataset.h"

#include <cstring>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/core/rng.h"

namespace grpo::data {
namespace {

constexpr size_t kMaxLineBytes = size_t(64) << 20;  // a dataset line (a code task's tests fit easily)
constexpr int kMaxJsonDepth = 64;                    // nesting of one line's JSON

// The next line of `in` without its newline; false at the end. A line longer than kMaxLineBytes is
// an error naming the file and line before more of it is read.
bool next_line(std::istream& in, std::string& line, const std::string& path, int64_t n) {
  line.clear();
  auto* buf = in.rdbuf();
  bool any = false;
  for (int c = buf->sbumpc(); c != std::char_traits<char>::eof(); c = buf->sbumpc()) {
    any = true;
    if (c == '\n') return true;
    GRPO_CHECK(line.size() < kMaxLineBytes, "{}:{}: the line is longer than {} MiB, the most a dataset line may have",
               path, n, kMaxLineBytes >> 20);
    line.push_back(char(c));
  }
  return any;
}

// One line's JSON, or discarded when it is not JSON or nests deeper than kMaxJsonDepth.
nlohmann::json parse_line(const std::string& line) {
  struct TooDeep {};
  try {
    return nlohmann::json::parse(line, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > kMaxJsonDepth) throw TooDeep{};
      return true;
    }, false);
  } catch (const TooDeep&) {
    return nlohmann::json(nlohmann::json::value_t::discarded);
  }
}

// Value at a dotted path ("a.b.0.c"): object keys or list indices.
const nlohmann::json* find_path(const nlohmann::json& j, const std::string& path) {
  const nlohmann::json* cur = &j;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (cur->is_object()) {
      auto it = cur->find(part);
      if (it == cur->end()) return nullptr;
      cur = &*it;
    } else if (cur->is_array() && !part.empty() && part.find_first_not_of("0123456789") == std::string::npos) {
      size_t idx = std::stoul(part);
      if (idx >= cur->size()) return nullptr;
      cur = &(*cur)[idx];
    } else {
      return nullptr;
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

std::string as_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  return "";
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// A conversation in the common chat format: an optional system message, one user message, and
// the assistant's reply last. Returns what is wrong with it, or "".
std::string read_messages(const nlohmann::json& msgs, Example& ex) {
  int users = 0;
  for (const auto& m : msgs)
    users += m.is_object() && m.contains("role") && m["role"].is_string() && m["role"].get<std::string>() == "user";
  if (users > 1) return "a conversation needs exactly one user message (multi-turn chats are not supported), found " + std::to_string(users);
  users = 0;
  for (size_t k = 0; k < msgs.size(); ++k) {
    const auto& m = msgs[k];
    if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string())
      return "message " + std::to_string(k) + " is not an object with role and content";
    const std::string role = m["role"].get<std::string>(), content = as_text(m["content"]);
    if (role == "system") ex.system = content;
    else if (role == "user") ++users, ex.prompt = content;
    else if (role == "assistant" && k + 1 == msgs.size()) ex.answer = content;
    else return "message " + std::to_string(k) + ": unexpected role '" + role + "' (expected system, user, then assistant last)";
  }
  if (users != 1) return "a conversation needs exactly one user message (multi-turn chats are not supported), found " + std::to_string(users);
  if (ex.prompt.empty()) return "the user message is empty";
  if (ex.answer.empty()) return "the last message must be a non-empty assistant message";
  return "";
}

}  // namespace

JsonlDataset::JsonlDataset(const JsonlDatasetConfig& config, uint64_t seed) : config_(config), seed_(seed) {
  std::ifstream in(config.path);
  GRPO_CHECK(in.good(), "cannot open dataset '{}': {}", config.path, std::strerror(errno));
  std::string line;
  for (int64_t n = 1; next_line(in, line, config.path, n); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines are fine
    std::string problem;
    auto j = parse_line(line);
    Example ex;
    ex.line = n;
    if (j.is_discarded() || !j.is_object()) {
      problem = j.is_discarded() ? "not JSON (or nested deeper than 64 levels)" : "not a JSON object";
    } else {
      const auto* p = find_path(j, config.prompt_field);
      const auto* a = find_path(j, config.answer_field);
      if (p && p->is_array() && config.answer_field == config.prompt_field) {
        problem = read_messages(*p, ex);  // a chat: [{role, content}, ...]
      } else if (!p) problem = "no field '" + config.prompt_field + "'";
      else if (!a) problem = "no field '" + config.answer_field + "'";
      else if ((ex.prompt = as_text(*p)).empty()) problem = "field '" + config.prompt_field + "' is empty or not text";
      else if ((ex.answer = as_text(*a)).empty()) problem = "field '" + config.answer_field + "' is empty or not text";
      else if (!config.answer_after.empty()) {
        auto at = ex.answer.rfind(config.answer_after);
        if (at == std::string::npos) {
          problem = "field '" + config.answer_field + "' has no '" + config.answer_after + "' (data.answer_after)";
        } else {
          ex.answer = trim(ex.answer.substr(at + config.answer_after.size()));
          if (ex.answer.empty()) problem = "nothing after '" + config.answer_after + "' in field '" + config.answer_field + "'";
        }
      }
    }
    if (!problem.empty()) {
      GRPO_CHECK(config.on_bad_line == "skip", "{}:{}: {} (set on_bad_line: skip to skip such lines)",
                 config.path, n, problem);
      ++skipped_;
      continue;
    }
    examples_.push_back(std::move(ex));
  }
  GRPO_CHECK(!examples_.empty(), "dataset '{}' has no usable examples ({} lines skipped)", config.path, skipped_);
}

const Example& JsonlDataset::sample(int64_t position) const {
  GRPO_CHECK(position >= 0, "dataset position {} is negative", position);
  const int64_t n = size(), epoch = position / n, i = position % n;
  if (!config_.shuffle) return examples_[i];
  if (epoch != cached_epoch_) {
    perm_.resize(n);
    std::iota(perm_.begin(), perm_.end(), 0);
    core::KeyedRng rng(core::hash_key({uint64_t(core::Stream::kDatasetShuffle), seed_, uint64_t(epoch)}));
    for (int64_t k = n - 1; k > 0; --k) std::swap(perm_[k], perm_[rng.uniform_int(0, k)]);
    cached_epoch_ = epoch;
  }
  return examples_[perm_[i]];
}

}  // namespace grpo::data
