// Command-line flags as one declarative table, after llama.cpp's common/arg.cpp: every flag is
// declared once -- its names, value placeholder, help, the default read from the params struct it
// sets, the setter, and the tools that accept it -- and both the parser and --help are generated
// from that table, so the usage text can neither drift from what the parser accepts nor from the
// real defaults. This file is the mechanism (torch-free); tools/common/tool_flags.h is the table.
// Header-only: each tool is built from its main.cpp alone (CMakeLists.txt).
//
// Parsing: `--name VALUE` or `--name=VALUE`; numbers must be whole strings ("--seed 3x" fails,
// naming the flag, what was expected and what was found); an unknown flag fails; a flag marked
// stop() (--help, grpo_train --config-reference) ends parsing where it stands, as it always did.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "grpo/core/error.h"

namespace grpo::tools {

/// The command-line programs, as bits: a flag's `tools` is the set of programs that accept it.
enum class Tool : uint32_t {
  kTrain = 1u << 0,
  kGenerate = 1u << 1,
  kEval = 1u << 2,
  kSample = 1u << 3,
  kExport = 1u << 4,
  kPlan = 1u << 5,
  kReward = 1u << 6,
  kTokenize = 1u << 7,
  kAll = (1u << 8) - 1,
};
constexpr Tool operator|(Tool a, Tool b) { return Tool(uint32_t(a) | uint32_t(b)); }
/// Whether the set `tools` contains `t`.
constexpr bool uses(Tool tools, Tool t) { return (uint32_t(tools) & uint32_t(t)) != 0; }

/// `text` as a T, the whole string; otherwise an error naming `flag`, what was expected and what was
/// found ("--seed: expected an integer, found '3x'").
template <typename T>
T parse_number(const std::string& flag, const std::string& text) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  const char* expected = std::is_floating_point_v<T> ? "a number"
                         : std::is_signed_v<T>       ? "an integer"
                                                     : "a non-negative integer";
  try {
    size_t used = 0;
    if constexpr (std::is_floating_point_v<T>) {
      const T x = T(std::stod(text, &used));
      if (used == text.size()) return x;
    } else if constexpr (std::is_signed_v<T>) {
      const long long x = std::stoll(text, &used);
      if (used == text.size() && x >= std::numeric_limits<T>::min() && x <= std::numeric_limits<T>::max())
        return T(x);
    } else {  // stoull would wrap "-1" around
      const unsigned long long x = std::stoull(text, &used);
      if (used == text.size() && text.find('-') == std::string::npos && x <= std::numeric_limits<T>::max())
        return T(x);
    }
  } catch (const std::exception&) {
  }
  fail("{}: expected {}, found '{}'", flag, expected, text);
}

namespace detail {
// The value type a setter takes: void(P&) -> void (a switch); void(P&, V) -> V.
template <typename F>
struct setter_value : setter_value<decltype(&F::operator())> {};
template <typename C, typename R, typename P>
struct setter_value<R (C::*)(P) const> {
  using type = void;
};
template <typename C, typename R, typename P, typename V>
struct setter_value<R (C::*)(P, V) const> {
  using type = std::decay_t<V>;
};
}  // namespace detail

/// One flag of the table. `P` is the params struct every setter writes into.
template <typename P>
struct Flag {
  Tool tools{};                    // the programs that accept it
  std::vector<std::string> names;  // "-n", "--num-samples"
  std::string value;               // the value's placeholder in --help ("N", "DIR"); empty: a switch
  std::string help;
  std::string default_value;  // shown as "(default: ...)"; empty: nothing shown
  std::string section;        // --help groups flags by section ("": the tool's own, listed first)
  bool ends_parsing = false;
  std::function<void(P&, const std::string& as_given, const std::string& value)> set;

  /// The default shown in --help: the field of the default params this flag sets -- or, where
  /// that field only means "not given" (an empty optional), where the value then comes from.
  template <typename T>
  Flag& def(const T& v) {
    default_value = fmt::format("{}", v);
    return *this;
  }
  /// An integer value must lie in [lo, hi] (checked before anything is sized by it).
  Flag& range(int64_t lo, int64_t hi) {
    bounds = {lo, hi};
    return *this;
  }
  std::optional<std::pair<int64_t, int64_t>> bounds;
  /// Parsing ends after this flag (the rest of the command line is not read).
  Flag& stop() {
    ends_parsing = true;
    return *this;
  }
  bool named(const std::string& n) const {
    for (const auto& x : names)
      if (x == n) return true;
    return false;
  }
  /// "-n, --num-samples G"
  std::string synopsis() const {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return value.empty() ? s : s + " " + value;
  }
};

/// The table: add() flags, then parse() a command line and print usage() for one tool.
template <typename P>
class FlagTable {
 public:
  /// Flags added after this are listed under `title` in --help ("": the tool's own flags).
  void section(std::string title) { section_ = std::move(title); }

  /// A flag with a value. `set` is a lambda `(P&, V)` with V std::string, an integer or a floating
  /// type; numbers are parsed (and rejected) before `set` sees them.
  template <typename F>
  Flag<P>& add(Tool tools, std::initializer_list<const char*> names, const char* value, std::string help, F set) {
    using V = typename detail::setter_value<F>::type;
    static_assert(std::is_same_v<V, std::string> || std::is_arithmetic_v<V>,
                  "a setter with a value takes (P&, std::string) or (P&, <number>)");
    auto& f = push(tools, names, std::move(help));
    f.value = value;
    f.set = [set](P& p, const std::string& as_given, const std::string& v) {
      if constexpr (std::is_same_v<V, std::string>) set(p, v);
      else set(p, parse_number<V>(as_given, v));
    };
    return f;
  }
  /// A switch: `set` is a lambda `(P&)`.
  template <typename F>
  Flag<P>& add(Tool tools, std::initializer_list<const char*> names, std::string help, F set) {
    static_assert(std::is_void_v<typename detail::setter_value<F>::type>, "a switch's setter takes (P&)");
    auto& f = push(tools, names, std::move(help));
    f.set = [set](P& p, const std::string&, const std::string&) { set(p); };
    return f;
  }

  /// The flag named `name` that `tool` accepts; nullptr if none.
  const Flag<P>* find(Tool tool, const std::string& name) const {
    for (const auto& f : flags_)
      if (uses(f.tools, tool) && f.named(name)) return &f;
    return nullptr;
  }

  /// Applies argv[1..] to `params` for `tool`. Throws grpo::Error naming the argument: unknown
  /// flags, a missing value, a value that is not a number where one is expected.
  void parse(Tool tool, int argc, char** argv, P& params) const {
    check(tool);
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      std::string name = arg;
      std::optional<std::string> value;
      if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
      }
      const Flag<P>* f = find(tool, name);
      if (!f) fail("unknown argument '{}' (see --help)", arg);
      if (f->value.empty()) {
        GRPO_CHECK(!value, "{} takes no value, found '{}'", name, value.value_or(""));
      } else if (!value) {
        GRPO_CHECK(i + 1 < argc, "{} needs a value ({})", name, f->value);
        value = argv[++i];
      }
      f->set(params, name, value.value_or(""));
      if (f->bounds) {
        const auto v = parse_number<int64_t>(name, *value);
        GRPO_CHECK(v >= f->bounds->first && v <= f->bounds->second, "{}: expected an integer in [{}, {}], found {}",
                   name, f->bounds->first, f->bounds->second, *value);
      }
      if (f->ends_parsing) return;
    }
  }

  /// `intro` (the synopsis and what the tool does), then every flag `tool` accepts: its own flags
  /// first, then each section, in table order; help wrapped at 100 columns.
  void usage(std::ostream& os, Tool tool, const std::string& intro) const {
    check(tool);
    os << intro;
    std::vector<std::string> sections{""};
    for (const auto& f : flags_)
      if (uses(f.tools, tool) && std::find(sections.begin(), sections.end(), f.section) == sections.end())
        sections.push_back(f.section);
    for (const auto& s : sections) {
      if (!s.empty()) os << "\n" << wrap(s + ":", 0, 0);
      for (const auto& f : flags_) {
        if (!uses(f.tools, tool) || f.section != s) continue;
        std::string line = "  " + f.synopsis();
        line += line.size() < kHelpColumn - 1 ? std::string(kHelpColumn - line.size(), ' ')
                                              : "\n" + std::string(kHelpColumn, ' ');
        std::string help = f.help;
        if (!f.default_value.empty()) help += " (default: " + f.default_value + ")";
        os << line << wrap(help, kHelpColumn, kHelpColumn);
      }
    }
  }

 private:
  static constexpr size_t kHelpColumn = 25, kWidth = 100;

  Flag<P>& push(Tool tools, std::initializer_list<const char*> names, std::string help) {
    auto& f = flags_.emplace_back();
    f.tools = tools;
    for (const char* n : names) f.names.emplace_back(n);
    f.help = std::move(help);
    f.section = section_;
    return f;
  }

  // Each name at most once per tool, every flag for some tool: a broken table is our bug.
  void check(Tool tool) const {
    std::set<std::string> seen;
    for (const auto& f : flags_) {
      GRPO_ASSERT(uint32_t(f.tools) != 0 && !f.names.empty() && f.set);
      if (!uses(f.tools, tool)) continue;
      for (const auto& n : f.names) GRPO_ASSERT(seen.insert(n).second);
    }
  }

  // `text` word-wrapped to kWidth columns, the first line starting at column `first` (already
  // written), the others indented by `indent`; '\n' in `text` starts a new line.
  static std::string wrap(const std::string& text, size_t first, size_t indent) {
    std::string out;
    size_t col = first;
    bool line_start = true;
    for (size_t i = 0; i <= text.size();) {
      if (i == text.size() || text[i] == '\n') {
        out += "\n";
        if (i == text.size()) break;
        out += std::string(indent, ' ');
        col = indent, line_start = true, ++i;
        continue;
      }
      if (text[i] == ' ') {
        ++i;
        continue;
      }
      size_t j = text.find_first_of(" \n", i);
      if (j == std::string::npos) j = text.size();
      const std::string word = text.substr(i, j - i);
      if (!line_start && col + 1 + word.size() > kWidth) {
        out += "\n" + std::string(indent, ' ');
        col = indent, line_start = true;
      }
      if (!line_start) out += " ", ++col;
      out += word, col += word.size(), line_start = false;
      i = j;
    }
    return out;
  }

  std::deque<Flag<P>> flags_;  // a deque: add() returns a reference that stays valid
  std::string section_;
};

}  // namespace grpo::tools
