// Errors. The library throws; only main() catches. A user's mistake (bad config, bad data, bad
// checkpoint) is a grpo::Error whose message names the file/line/key, what was expected and what
// was found. Our own broken invariants use GRPO_ASSERT, which says so.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace grpo {

/// Any error grpo reports to its user. what() is the complete, printable message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A configuration error (YAML file, --set override or invalid combination of settings).
class ConfigError : public Error {
 public:
  using Error::Error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace grpo

/// Check a condition that the caller controls; the message explains what was expected.
#define GRPO_CHECK(cond, ...)          \
  do {                                 \
    if (!(cond)) ::grpo::fail(__VA_ARGS__); \
  } while (0)

/// Check an invariant of grpo itself: a failure is a bug in grpo, not the user's mistake.
#define GRPO_ASSERT(cond)                                                                   \
  do {                                                                                      \
    if (!(cond))                                                                            \
      throw ::grpo::Error(fmt::format("internal error (a bug in grpo): {} at {}:{}", #cond, \
                                      __FILE__, __LINE__));                                 \
  } while (0)
