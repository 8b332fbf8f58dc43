// Helpers shared by the unit tests.
#pragma once

#include <functional>
#include <string>

#include "grpo/core/error.h"

namespace grpo::test_util {

/// The message of the grpo::Error that `f` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace grpo::test_util
