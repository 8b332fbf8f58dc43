// How every tool ends on an error: one clear line on stderr and exit status 1 -- the library's
// own errors as they are, LibTorch's without its C++ stack (--debug or GRPO_DEBUG=1 shows it), running
// out of memory as such -- never an abort.
#pragma once

#include <cstdlib>
#include <iostream>
#include <new>

#include <c10/util/Exception.h>

#include "grpo/core/error.h"

namespace grpo::tools {

/// Call inside `catch (...)` in a tool's main: reports the exception in flight, returns 1.
inline int report_exception(const char* name) {
  try {
    throw;
  } catch (const Error& e) {
    std::cerr << name << ": error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    const bool debug = std::getenv("GRPO_DEBUG") != nullptr;
    std::cerr << name << ": error (LibTorch): " << (debug ? e.what() : e.what_without_backtrace()) << "\n";
  } catch (const std::bad_alloc&) {
    std::cerr << name << ": error: out of memory (the config or flags ask for more memory than this machine has; "
              << "grpo_plan estimates a config's needs)\n";
  } catch (const std::exception& e) {
    std::cerr << name << ": unexpected error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << name << ": unexpected error\n";
  }
  return 1;
}

}  // namespace grpo::tools
