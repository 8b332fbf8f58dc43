// Device facts: the native-bf16 CPU check.
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "grpo/core/device.h"

// The bf16 warning's CPU check against the kernel's own list of CPU flags.
TEST(Device, NativeBf16MatchesCpuFlags) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line) && line.rfind("flags", 0) != 0) {
  }
  if (line.rfind("flags", 0) != 0) GTEST_SKIP() << "no x86 flags line in /proc/cpuinfo on this machine";
  line += " ";
  const bool expect = line.find(" amx_bf16 ") != std::string::npos || line.find(" avx512_bf16 ") != std::string::npos;
  EXPECT_EQ(grpo::cpu_has_native_bf16(), expect) << line;
}
