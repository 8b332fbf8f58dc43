// The sandbox runs ordinary programs correctly (the attack suite is tests/sandbox/, label sandbox).
#include <gtest/gtest.h>

#include "grpo/reward/sandbox.h"

using namespace grpo::reward;

TEST(Sandbox, RunsAProgramWithFilesAndStdin) {
  auto r = run_sandboxed({"python3", "main.py"}, "3 4\n", {{"main.py", "a, b = map(int, input().split())\nprint(a + b)\n"}});
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "7\n");
  auto bad = run_sandboxed({"python3", "-c", "import sys; sys.exit(3)"}, "", {});
  EXPECT_EQ(bad.exit_code, 3);
  auto sig = run_sandboxed({"sh", "-c", "kill -SEGV $$"}, "", {});
  EXPECT_EQ(sig.signal, 11);
}
