// Small tensor helpers shared by all layers: printing shapes in error messages.
#pragma once

#include <c10/util/ArrayRef.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

/// Lets error messages print shapes: fmt::format("{}", t.sizes()) -> "[2, 3]".
template <>
struct fmt::formatter<c10::IntArrayRef> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(c10::IntArrayRef s, Ctx& ctx) const {
    std::string out = fmt::format("[{}]", fmt::join(s.begin(), s.end(), ", "));
    return fmt::formatter<std::string_view>::format(out, ctx);
  }
};
