// Sandbox attack suite (label `sandbox`): each hostile program must be contained, leave the
// machine as it was, and end as a failed run (non-zero exit, a signal, or a timeout). Every attack
// runs three ways: with namespaces (the normal path), without them (what a container that forbids
// unshare gets: Landlock, rlimits, seccomp, subreaper), and without them and without Landlock
// (old kernels: only the user drop guards writes, so that case needs root).
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <thread>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/reward/reward.h"
#include "grpo/reward/sandbox.h"

using namespace grpo::reward;

namespace {

// Live (non-zombie) processes whose command line contains `needle`.
int live_processes_with(const std::string& needle) {
  int n = 0;
  DIR* d = ::opendir("/proc");
  if (!d) return 0;
  while (auto* e = ::readdir(d)) {
    std::string pid = e->d_name;
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd("/proc/" + pid + "/cmdline");
    std::string c((std::istreambuf_iterator<char>(cmd)), {});
    for (auto& ch : c)
      if (ch == '\0') ch = ' ';
    if (c.find(needle) == std::string::npos) continue;
    std::ifstream st("/proc/" + pid + "/stat");
    std::string p, comm, state;
    st >> p >> comm >> state;
    if (state != "Z") ++n;
  }
  ::closedir(d);
  return n;
}

// Killed processes take a moment to disappear: wait up to 2 s for none to be left.
int survivors(const std::string& needle) {
  int n = 0;
  for (int i = 0; i < 40 && (n = live_processes_with(needle)) > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return n;
}

// kNamespacesInProcess: the sandbox set up by forking the test process itself, not by the
// grpo_sandbox helper (GRPO_SANDBOX_HELPER=none): both paths must hold against every attack.
enum class Mode { kNamespaces, kNamespacesInProcess, kFallback, kFallbackNoLandlock };

class SandboxAttack : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    if (GetParam() == Mode::kFallbackNoLandlock && ::geteuid() != 0)
      GTEST_SKIP() << "without namespaces and Landlock only the drop to nobody guards writes, and that needs root";
    if (GetParam() == Mode::kNamespacesInProcess) ::setenv("GRPO_SANDBOX_HELPER", "none", 1);
  }
  void TearDown() override { ::unsetenv("GRPO_SANDBOX_HELPER"); }
  SandboxLimits quick() const {
    SandboxLimits l;
    l.wall_seconds = 3;
    l.cpu_seconds = 2;
    l.namespaces = GetParam() == Mode::kNamespaces || GetParam() == Mode::kNamespacesInProcess;
    l.landlock = GetParam() != Mode::kFallbackNoLandlock;
    return l;
  }
  SandboxResult py(const std::string& code) const { return run_sandboxed({"python3", "main.py"}, "", {{"main.py", code}}, quick()); }
};

bool failed(const SandboxResult& r) { return r.timed_out || r.signal != 0 || r.exit_code != 0; }

}  // namespace

TEST_P(SandboxAttack, TheModeTakesEffect) {
  auto r = py("print('hi')\n");
  EXPECT_EQ(r.out, "hi\n") << r.err;
  if (GetParam() == Mode::kFallback || GetParam() == Mode::kFallbackNoLandlock) EXPECT_FALSE(r.isolated);
  if (GetParam() == Mode::kFallbackNoLandlock) EXPECT_FALSE(r.writes_confined);
  // set up by the grpo_sandbox helper (built beside libgrpo), but where the test forbids it
  EXPECT_EQ(r.helper, GetParam() != Mode::kNamespacesInProcess);
  std::cout << "isolated " << r.isolated << ", writes confined by Landlock " << r.writes_confined << ", helper "
            << r.helper << "\n";
}

TEST_P(SandboxAttack, ForkBomb) {
  auto r = py("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n");
  EXPECT_TRUE(failed(r));
  EXPECT_LT(r.wall_seconds, 6.0);
  EXPECT_EQ(survivors("main.py"), 0) << "fork bomb processes survived";
}

TEST_P(SandboxAttack, MemoryBomb) {
  auto r = py("x = bytearray(8 * 1024 ** 3)\nprint(len(x))\n");
  EXPECT_TRUE(failed(r));
  EXPECT_EQ(r.out.find("8589934592"), std::string::npos);
}

TEST_P(SandboxAttack, InfiniteLoop) {
  auto r = py("while True:\n    pass\n");
  EXPECT_TRUE(failed(r));
  EXPECT_LT(r.wall_seconds, 6.0);
}

TEST_P(SandboxAttack, SleepingForeverAndIgnoringSigterm) {
  auto r = py("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(10 ** 6)\n");
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(r.wall_seconds, 6.0);
  EXPECT_EQ(survivors("main.py"), 0);
}

TEST_P(SandboxAttack, WritingOutsideItsDirectory) {
  const std::string repo_target = std::string(GRPO_SOURCE_DIR) + "/sandbox_pwned";
  auto r = py("import sys\nok = 0\nfor p in ['/etc/sandbox_pwned', '" + repo_target +
              "', '/usr/sandbox_pwned']:\n    try:\n        open(p, 'w').write('x')\n        ok += 1\n"
              "    except OSError:\n        pass\nsys.exit(10 + ok)\n");
  EXPECT_EQ(r.exit_code, 10) << "wrote " << r.exit_code - 10 << " files outside its directory; " << r.err;
  EXPECT_FALSE(std::filesystem::exists("/etc/sandbox_pwned"));
  EXPECT_FALSE(std::filesystem::exists(repo_target));
  // its own directory is writable
  auto ok = py("open('out.txt', 'w').write('fine')\nprint(open('out.txt').read())\n");
  EXPECT_EQ(ok.out, "fine\n") << ok.err;
  // a world-writable directory on the host (file permissions alone would let anyone write there)
  if (GetParam() != Mode::kFallbackNoLandlock) {
    auto open_dir = std::filesystem::temp_directory_path() / ("grpo-open-" + std::to_string(::getpid()));
    std::filesystem::create_directories(open_dir);
    std::filesystem::permissions(open_dir, std::filesystem::perms::all | std::filesystem::perms::sticky_bit);
    auto w = py("import sys\ntry:\n    open('" + (open_dir / "pwned").string() +
                "', 'w').write('x')\nexcept OSError:\n    sys.exit(3)\n");
    EXPECT_EQ(w.exit_code, 3) << w.err;
    EXPECT_FALSE(std::filesystem::exists(open_dir / "pwned"));
    std::filesystem::remove_all(open_dir);
  }
}

TEST_P(SandboxAttack, ReadingFilesItShouldNot) {
  auto r = py("print(open('/etc/shadow').read())\n");
  EXPECT_TRUE(failed(r));
  EXPECT_EQ(r.out.find("root:"), std::string::npos);
  if (::geteuid() == 0) {  // root's home is hidden behind an empty private mount
    auto h = py("import os\nprint(sorted(os.listdir('/root')))\n");
    if (h.isolated) EXPECT_EQ(h.out, "[]\n") << h.err;
    else EXPECT_TRUE(failed(h)) << h.out;  // nobody may not list root's home
  }
}

TEST_P(SandboxAttack, OpeningANetworkConnection) {
  // a listener on the host's loopback that must not see a connection
  int srv = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(srv, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ASSERT_EQ(::bind(srv, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(srv, 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(srv, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  auto r = py("import socket\nsocket.create_connection(('127.0.0.1', " + std::to_string(port) +
              "), timeout=2)\nprint('connected')\n");
  EXPECT_TRUE(failed(r));
  EXPECT_EQ(r.out.find("connected"), std::string::npos);
  auto ext = py("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\nprint('connected')\n");
  EXPECT_TRUE(failed(ext));
  ::fcntl(srv, F_SETFL, O_NONBLOCK);
  EXPECT_LT(::accept(srv, nullptr, nullptr), 0) << "the sandboxed program reached the host";
  ::close(srv);
}

TEST_P(SandboxAttack, ABackgroundProcessDoesNotOutliveTheRun) {
  auto r = py("import subprocess\nsubprocess.Popen(['sleep', '4242'], start_new_session=True)\nprint('spawned')\n");
  EXPECT_EQ(r.out, "spawned\n") << r.err;
  EXPECT_EQ(survivors("sleep 4242"), 0) << "a background process outlived the sandbox";
}

INSTANTIATE_TEST_SUITE_P(Modes, SandboxAttack,
                         ::testing::Values(Mode::kNamespaces, Mode::kNamespacesInProcess, Mode::kFallback,
                                           Mode::kFallbackNoLandlock),
                         [](const ::testing::TestParamInfo<Mode>& i) {
                           return std::string(i.param == Mode::kNamespaces            ? "namespaces"
                                              : i.param == Mode::kNamespacesInProcess ? "namespaces_in_process"
                                              : i.param == Mode::kFallback            ? "fallback"
                                                                                      : "fallback_no_landlock");
                         });

// A helper that is not there is an error naming it, not a crash or a silent fallback.
TEST(Sandbox, AMissingHelperIsAnErrorNamingIt) {
  ::setenv("GRPO_SANDBOX_HELPER", "/no/such/grpo_sandbox", 1);
  std::string what;
  try {
    run_sandboxed({"true"}, "", {});
  } catch (const grpo::Error& e) {
    what = e.what();
  }
  ::unsetenv("GRPO_SANDBOX_HELPER");
  EXPECT_NE(what.find("cannot start the helper /no/such/grpo_sandbox"), std::string::npos) << what;
}

TEST(CodeReward, PassRateOfTheLastCodeBlockInPythonAndCpp) {
  auto code = grpo::reward::RewardRegistry::create("code");
  const std::string tests = R"([{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"},
                                {"input": "1 1\n", "output": "3\n"}])";
  grpo::reward::Sample s;
  s.answer = tests;
  s.completion = "First try:\n```python\nprint(0)\n```\nFixed:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\n";
  EXPECT_NEAR(code->score_sample(s), 2.0 / 3.0, 1e-12);  // the third test expects a wrong sum
  s.completion = "```cpp\n#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << \"\\n\"; }\n```";
  EXPECT_NEAR(code->score_sample(s), 2.0 / 3.0, 1e-12);
  s.completion = "```cpp\nint main() { this does not compile }\n```";
  EXPECT_DOUBLE_EQ(code->score_sample(s), 0.0);
  // the compiled program is sandboxed too: it would pass 2 of 3 if it could write to /etc
  s.completion = "```cpp\n#include <cstdio>\nint main() { long a, b; if (std::scanf(\"%ld %ld\", &a, &b) != 2 || "
                 "!std::fopen(\"/etc/pwned\", \"w\")) return 1; std::printf(\"%ld\\n\", a + b); }\n```";
  EXPECT_DOUBLE_EQ(code->score_sample(s), 0.0);
  EXPECT_FALSE(std::filesystem::exists("/etc/pwned"));
  s.completion = "```python\nimport os\nwhile True:\n    os.fork()\n```";  // hostile: contained, scores 0
  EXPECT_DOUBLE_EQ(code->score_sample(s), 0.0);
  s.completion = "no code here";
  EXPECT_DOUBLE_EQ(code->score_sample(s), 0.0);
  s.fields["tests"] = "not json";
  EXPECT_THROW(code->score_sample(s), grpo::Error);
}
