// Slim precompiled header for grpo's C++ targets: the standard library, fmt and the ATen tensor
// core that nearly every translation unit needs. Deliberately not torch/torch.h (the whole C++
// frontend): files that need nn modules or optimizers include just those headers.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
