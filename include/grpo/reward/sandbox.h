// Running untrusted programs (code-execution rewards). Each run gets, where the kernel allows:
// new PID, mount, network, IPC and UTS namespaces (killing the namespace's init kills everything
// the program started, including processes that called setsid); an unprivileged user (nobody) when
// the trainer runs as root; a private tmpfs as the only writable place (/tmp, /var/tmp, /dev/shm,
// /root, /home are replaced by empty private mounts); filesystem writes confined to that directory
// by Landlock (Linux >= 5.13; the guard that holds without namespaces or root); rlimits on CPU
// seconds, address space, file size, processes and open files; a seccomp filter denying sockets
// and ptrace; a scrubbed environment; and a wall-clock timeout after which the whole tree is killed.
// Without namespaces (containers that forbid unshare), a child subreaper kills what the program
// left behind, even processes that called setsid.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace grpo::reward {

struct SandboxLimits {
  double wall_seconds = 10;
  int64_t cpu_seconds = 5;
  int64_t memory_bytes = int64_t(1) << 30;  // address space
  int64_t file_bytes = int64_t(16) << 20;   // largest file it may write
  int64_t processes = 32;                   // RLIMIT_NPROC (of the sandbox user)
  int64_t open_files = 64;
  int64_t output_bytes = int64_t(1) << 20;  // stdout/stderr kept per stream
  bool namespaces = true;  // false: the fallback path (what kernels that forbid unshare get); for tests
  bool landlock = true;    // false: no Landlock write confinement; for tests
};

struct SandboxResult {
  int exit_code = -1;   // the program's exit status (-1 if killed by a signal)
  int signal = 0;       // the signal that ended it, if any
  bool timed_out = false;
  std::string out, err;
  double wall_seconds = 0;
  bool isolated = false;  // namespaces were available (otherwise: rlimits + seccomp + process group)
  bool writes_confined = false;  // Landlock confined writes to the working directory
  bool helper = false;  // set up by the grpo_sandbox helper (otherwise by forking this process)
};

/// Runs argv[0] (looked up in /usr/bin:/bin) inside a fresh sandbox whose working directory holds
/// `files` (name -> content), feeding `input` on stdin. Never throws for what the program does;
/// throws grpo::Error only when the sandbox itself cannot be set up.
///
/// The sandbox is set up by the small helper executable grpo_sandbox (next to this library:
/// bin/grpo_sandbox in the build tree, ../bin/ installed; or the path in GRPO_SANDBOX_HELPER),
/// started with posix_spawn, so that a large process (a trainer) never forks per run: a fork would
/// copy its page tables and, while the copy lives, every page it writes. Without the helper
/// (GRPO_SANDBOX_HELPER=none, or none found) this process forks.
SandboxResult run_sandboxed(const std::vector<std::string>& argv, const std::string& input,
                            const std::map<std::string, std::string>& files, const SandboxLimits& limits = {});

/// The helper's side (tools/grpo_sandbox): reads one request from `in_fd` until EOF, runs it by
/// forking this (small) process, writes the result to `out_fd`. Returns the exit status.
int serve_sandbox_request(int in_fd, int out_fd);

}  // namespace grpo::reward
