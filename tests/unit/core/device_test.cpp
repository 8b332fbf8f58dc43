// Device facts: the native-bf16 CPU check.
#include <sched.h>

#include <fstream>
#include <string>

#include <ATen/Parallel.h>
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

// The CPUs a process may use: at least 1, at most its affinity mask; setup_host sets the threads.
TEST(Device, AvailableCpusAndHostSetup) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const int64_t n = grpo::available_cpus();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, CPU_COUNT(&set));
  const int before = at::get_num_threads();
  EXPECT_EQ(grpo::setup_host(1), 1);
  EXPECT_EQ(at::get_num_threads(), 1);
  EXPECT_EQ(grpo::setup_host(before), before);
  EXPECT_EQ(at::get_num_threads(), before);
}

// The thread governor: disabled, it never touches the threads; enabled, it keeps them within
// [1, available CPUs] and reports a non-negative load of other processes.
TEST(Device, ThreadGovernorStaysWithinTheAvailableCpus) {
  const int before = at::get_num_threads();
  grpo::ThreadGovernor off(false);
  bool changed = true;
  EXPECT_EQ(off.update(&changed), before);
  EXPECT_FALSE(changed);
  grpo::ThreadGovernor on(true);
  on.update();  // starts the interval
  volatile double x = 0;
  for (int i = 0; i < 20000000; ++i) x = x + 1e-9 * i;  // an interval with this process busy
  const int64_t n = on.update();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, grpo::available_cpus());
  EXPECT_EQ(n, at::get_num_threads());
  EXPECT_GE(on.others(), 0.0);
  at::set_num_threads(before);
}
