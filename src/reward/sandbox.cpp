#include "grpo/reward/sandbox.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "grpo/core/byte_stream.h"
#include "grpo/core/error.h"

namespace grpo::reward {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kAuditArch = 0;
#endif

// Denies socket() and ptrace() with EACCES/EPERM (the network namespace already isolates; this
// holds where namespaces are unavailable).
void install_seccomp() {
  if (kAuditArch == 0) return;
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EACCES & SECCOMP_RET_DATA)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ptrace, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

// Landlock access rights newer than some distributions' kernel headers (values from the kernel ABI)
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

// Landlock (Linux >= 5.13, unprivileged): the ABI version, 0 where the kernel lacks it.
int landlock_abi() {
#ifdef SYS_landlock_create_ruleset
  long v = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return v < 0 ? 0 : int(v);
#else
  return 0;
#endif
}

// Confines every filesystem write of this process and its children to `writable` (directories)
// and a few character devices (/dev/null, /dev/zero): the one guard on writes that holds without
// namespaces and without root (where the program cannot be moved to another user). Reads are left
// to the file permissions (nobody reads neither /etc/shadow nor root's home). False on failure.
bool restrict_writes(const std::vector<std::string>& writable, int abi) {
#ifdef SYS_landlock_create_ruleset
  uint64_t dir_rights = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                        LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                        LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
                        LANDLOCK_ACCESS_FS_MAKE_SYM;
  uint64_t file_rights = LANDLOCK_ACCESS_FS_WRITE_FILE;
  if (abi >= 2) dir_rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) dir_rights |= LANDLOCK_ACCESS_FS_TRUNCATE, file_rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  struct landlock_ruleset_attr attr {};
  attr.handled_access_fs = dir_rights;
  int rs = int(::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0));
  if (rs < 0) return false;
  auto allow = [&](const char* path, uint64_t rights) {
    int fd = ::open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return true;  // absent: nothing to allow
    struct landlock_path_beneath_attr pb {};
    pb.allowed_access = rights;
    pb.parent_fd = fd;
    bool ok = ::syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) == 0;
    ::close(fd);
    return ok;
  };
  bool ok = true;
  for (auto& w : writable) ok = ok && allow(w.c_str(), dir_rights);
  for (const char* dev : {"/dev/null", "/dev/zero", "/dev/full"}) ok = ok && allow(dev, file_rights);
  ok = ok && ::syscall(SYS_landlock_restrict_self, rs, 0) == 0;
  ::close(rs);
  return ok;
#else
  (void)writable, (void)abi;
  return false;
#endif
}

void set_limit(int resource, int64_t value) {
  struct rlimit r;
  r.rlim_cur = r.rlim_max = rlim_t(value);
  ::setrlimit(resource, &r);
}

bool write_file(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) break;
    off += size_t(n);
  }
  ::close(fd);
  return off == data.size();
}

// Without a PID namespace: kill every process reparented to us (we are a child subreaper), until
// none is left.
void kill_orphans() {
  for (int round = 0; round < 100; ++round) {
    bool any = false;
    if (DIR* d = ::opendir("/proc")) {
      while (auto* e = ::readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300];
        std::snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE* f = std::fopen(path, "r");
        if (!f) continue;
        int pid = 0, ppid = 0;
        char state = 0;
        // pid (comm) state ppid: comm may contain spaces, so read up to the last ')'
        char buf[512];
        size_t n = std::fread(buf, 1, sizeof buf - 1, f);
        std::fclose(f);
        buf[n] = 0;
        char* close = std::strrchr(buf, ')');
        if (!close || std::sscanf(buf, "%d", &pid) != 1 || std::sscanf(close + 1, " %c %d", &state, &ppid) != 2) continue;
        if (ppid == ::getpid()) {
          ::kill(pid, SIGKILL);
          any = true;
        }
      }
      ::closedir(d);
    }
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (!any) return;
    ::usleep(10000);
  }
}

// Exit codes the sandbox itself uses for setup failures (the program's own codes pass through).
constexpr int kSetupFailed = 250;

// The program: drops to nobody, limits, writes confined to its directory (Landlock), seccomp, clean
// environment, exec.
[[noreturn]] void exec_program(const std::vector<std::string>& argv, const std::string& dir, const SandboxLimits& l,
                               bool isolated, int abi) {
  if (::chdir(dir.c_str()) != 0) _exit(kSetupFailed);
  if (::geteuid() == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(kNogroup) != 0 || ::setuid(kNobody) != 0) _exit(kSetupFailed);
  }
  set_limit(RLIMIT_CPU, l.cpu_seconds);
  set_limit(RLIMIT_AS, l.memory_bytes);
  set_limit(RLIMIT_FSIZE, l.file_bytes);
  set_limit(RLIMIT_NPROC, l.processes);
  set_limit(RLIMIT_NOFILE, l.open_files);
  set_limit(RLIMIT_CORE, 0);
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (abi > 0) {
    // with namespaces, /tmp and friends are private tmpfs mounts: tools that ignore TMPDIR may use them
    std::vector<std::string> writable{dir};
    if (isolated) writable.insert(writable.end(), {"/tmp", "/var/tmp", "/dev/shm"});
    if (!restrict_writes(writable, abi)) _exit(kSetupFailed);
  }
  install_seccomp();
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::string home = "HOME=" + dir, tmp = "TMPDIR=" + dir;
  char* env[] = {const_cast<char*>("PATH=/usr/local/bin:/usr/bin:/bin"), const_cast<char*>(home.c_str()),
                 const_cast<char*>(tmp.c_str()), const_cast<char*>("LANG=C.UTF-8"),
                 const_cast<char*>("PYTHONDONTWRITEBYTECODE=1"), nullptr};
  ::execvpe(args[0], args.data(), env);
  _exit(127);
}

// The sandbox, set up by forking this process.
SandboxResult run_here(const std::vector<std::string>& argv, const std::string& input,
                       const std::map<std::string, std::string>& files, const SandboxLimits& l) {
  GRPO_CHECK(!argv.empty(), "sandbox: empty command");
  SandboxResult res;
  int in_pipe[2], out_pipe[2], err_pipe[2], info_pipe[2];
  GRPO_CHECK(::pipe2(in_pipe, O_CLOEXEC) == 0 && ::pipe2(out_pipe, O_CLOEXEC) == 0 &&
                 ::pipe2(err_pipe, O_CLOEXEC) == 0 && ::pipe2(info_pipe, O_CLOEXEC) == 0,
             "sandbox: pipe: {}", std::strerror(errno));
  // Fallback working directory on the host (used when there is no mount namespace).
  char host_dir[] = "/tmp/grpo-sandbox-XXXXXX";
  GRPO_CHECK(::mkdtemp(host_dir) != nullptr, "sandbox: mkdtemp: {}", std::strerror(errno));
  const int abi = l.landlock ? landlock_abi() : 0;
  res.writes_confined = abi > 0;
  const auto t0 = std::chrono::steady_clock::now();
  pid_t outer = ::fork();
  GRPO_CHECK(outer >= 0, "sandbox: fork: {}", std::strerror(errno));
  if (outer == 0) {
    // [outer] own process group; new namespaces for its children
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    bool isolated =
        l.namespaces && ::unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) == 0;
    if (!isolated) ::prctl(PR_SET_CHILD_SUBREAPER, 1);  // orphans come back to us
    char flag = isolated ? 1 : 0;
    (void)!::write(info_pipe[1], &flag, 1);
    pid_t init = ::fork();
    if (init < 0) _exit(kSetupFailed);
    if (init == 0) {
      // [init] PID 1 of the new namespace (when isolated): private writable mounts, then the program
      std::string dir = host_dir;
      if (isolated) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(kSetupFailed);
        for (const char* m : {"/tmp", "/var/tmp", "/dev/shm", "/root", "/home", "/run"})
          if (std::filesystem::is_directory(m))
            ::mount("tmpfs", m, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777");
        // /proc of the new PID namespace (the program sees only its own processes)
        ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
        dir = "/tmp/work";
        if (::mkdir(dir.c_str(), 0755) != 0) _exit(kSetupFailed);
      }
      for (auto& [name, data] : files)
        if (name.find('/') != std::string::npos || !write_file(dir + "/" + name, data)) _exit(kSetupFailed);
      if (::geteuid() == 0) {
        (void)!::chown(dir.c_str(), kNobody, kNogroup);
        for (auto& [name, data] : files) (void)!::chown((dir + "/" + name).c_str(), kNobody, kNogroup);
      }
      pid_t prog = ::fork();
      if (prog < 0) _exit(kSetupFailed);
      if (prog == 0) {
        ::dup2(in_pipe[0], 0);
        ::dup2(out_pipe[1], 1);
        ::dup2(err_pipe[1], 2);
        exec_program(argv, dir, l, isolated, abi);
      }
      ::close(in_pipe[0]);
      ::close(out_pipe[1]);
      ::close(err_pipe[1]);
      // reap everything; leave with the program's status (taking the namespace down with us)
      for (;;) {
        int st = 0;
        pid_t w = ::waitpid(-1, &st, 0);
        if (w < 0 && errno == EINTR) continue;
        if (w == prog || w < 0) _exit(w < 0 ? kSetupFailed : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
      }
    }
    int st = 0;
    while (::waitpid(init, &st, 0) < 0 && errno == EINTR) {
    }
    if (!isolated) kill_orphans();  // no PID namespace: reap what setsid'd away (we are a subreaper)
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
  // [trainer] feed stdin, collect stdout/stderr until EOF or the wall-clock limit
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::close(info_pipe[1]);
  char flag = 0;
  if (::read(info_pipe[0], &flag, 1) == 1) res.isolated = flag == 1;
  ::close(info_pipe[0]);
  const auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(l.wall_seconds));
  size_t in_off = 0;
  int in_fd = in_pipe[1];
  ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  if (input.empty()) ::close(in_fd), in_fd = -1;
  int out_fd = out_pipe[0], err_fd = err_pipe[0];
  while (out_fd >= 0 || err_fd >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      res.timed_out = true;
      break;
    }
    pollfd p[3];
    int n = 0;
    if (out_fd >= 0) p[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) p[n++] = {err_fd, POLLIN, 0};
    if (in_fd >= 0) p[n++] = {in_fd, POLLOUT, 0};
    int r = ::poll(p, n, int(std::min<int64_t>(left, 1000)));
    if (r < 0 && errno != EINTR) break;
    for (int k = 0; k < n; ++k) {
      if (!p[k].revents) continue;
      if (p[k].fd == in_fd) {
        ssize_t w = ::write(in_fd, input.data() + in_off, input.size() - in_off);
        if (w > 0) in_off += size_t(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) in_off = input.size();
        if (in_off >= input.size()) ::close(in_fd), in_fd = -1;
        continue;
      }
      char buf[8192];
      ssize_t got = ::read(p[k].fd, buf, sizeof buf);
      std::string& dst = p[k].fd == out_fd ? res.out : res.err;
      if (got > 0) {
        if (int64_t(dst.size()) < l.output_bytes) dst.append(buf, size_t(std::min<int64_t>(got, l.output_bytes - int64_t(dst.size()))));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(p[k].fd);
        (p[k].fd == out_fd ? out_fd : err_fd) = -1;
      }
    }
  }
  // everything it started dies with the namespace's init (or, without namespaces, its group)
  ::kill(-outer, SIGKILL);
  ::kill(outer, SIGKILL);
  int st = 0;
  while (::waitpid(outer, &st, 0) < 0 && errno == EINTR) {
  }
  for (int fd : {in_fd, out_fd, err_fd})
    if (fd >= 0) ::close(fd);
  res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!res.timed_out && WIFEXITED(st)) {
    int code = WEXITSTATUS(st);
    if (code == kSetupFailed) {
      std::error_code ec;
      std::filesystem::remove_all(host_dir, ec);
      fail("sandbox: setting up the sandbox failed (namespaces {})", res.isolated ? "on" : "off");
    }
    if (code >= 128 && code < 128 + 65) res.signal = code - 128;
    else res.exit_code = code;
  } else if (!res.timed_out) {
    res.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
  }
  std::error_code ec;
  std::filesystem::remove_all(host_dir, ec);
  return res;
}

// ---------------------------------------------------------------- the helper process
// A large process (a trainer holds GBs) should not fork per run: fork copies its page tables, and
// while the copy lives every page the trainer writes is copied again (copy-on-write), so decoding
// beside a stream of tool calls slows many times over. run_sandboxed() therefore starts the small
// helper executable grpo_sandbox with posix_spawn (vfork + exec: nothing copied), hands it the
// request on stdin and reads the result from its stdout; the helper forks itself, cheaply.
// Requests and results are core/byte_stream.h messages.

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += size_t(w);
  }
  return true;
}

// Everything from `fd` until EOF, or until `deadline` (false when it passed).
bool read_all(int fd, std::string& out, std::chrono::steady_clock::time_point deadline) {
  char buf[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, int(std::min<int64_t>(left, 1000)));
    if (r < 0 && errno != EINTR) return false;
    if (r <= 0) continue;
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) return true;
    out.append(buf, size_t(got));
  }
}

// The helper beside this library (build tree: bin/ next to libgrpo.so; installed: ../bin/), or
// GRPO_SANDBOX_HELPER (a path; "none": fork this process instead).
std::string helper_path() {
  if (const char* e = std::getenv("GRPO_SANDBOX_HELPER"); e && *e) return std::string(e) == "none" ? std::string() : e;
  static const std::string found = [] {
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&run_here), &info) == 0 || !info.dli_fname) return std::string();
    std::error_code ec;
    const auto dir = std::filesystem::weakly_canonical(info.dli_fname, ec).parent_path();
    for (const auto& p : {dir / "bin" / "grpo_sandbox", dir.parent_path() / "bin" / "grpo_sandbox"})
      if (::access(p.c_str(), X_OK) == 0) return p.string();
    return std::string();
  }();
  return found;
}

SandboxResult run_in_helper(const std::string& helper, const std::vector<std::string>& argv, const std::string& input,
                            const std::map<std::string, std::string>& files, const SandboxLimits& l) {
  core::ByteWriter req;
  req.i64(int64_t(argv.size()));
  for (const auto& a : argv) req.str(a);
  req.str(input);
  req.i64(int64_t(files.size()));
  for (const auto& [name, data] : files) req.str(name), req.str(data);
  req.f64(l.wall_seconds);
  for (int64_t v : {l.cpu_seconds, l.memory_bytes, l.file_bytes, l.processes, l.open_files, l.output_bytes,
                    int64_t(l.namespaces), int64_t(l.landlock)})
    req.i64(v);
  static const bool sigpipe_ignored = [] {  // a helper that died must not kill us with SIGPIPE: the write fails
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    return ::sigaction(SIGPIPE, &ign, nullptr) == 0;
  }();
  (void)sigpipe_ignored;
  int to[2], from[2];
  GRPO_CHECK(::pipe2(to, O_CLOEXEC) == 0, "sandbox: pipe: {}", std::strerror(errno));
  if (::pipe2(from, O_CLOEXEC) != 0) {
    ::close(to[0]), ::close(to[1]);
    fail("sandbox: pipe: {}", std::strerror(errno));
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_adddup2(&fa, to[0], 0);
  ::posix_spawn_file_actions_adddup2(&fa, from[1], 1);
  ::posix_spawnattr_init(&attr);
  sigset_t dflt;
  sigemptyset(&dflt);
  sigaddset(&dflt, SIGPIPE);  // the programs get SIGPIPE's default back
  ::posix_spawnattr_setsigdefault(&attr, &dflt);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  char* child_argv[] = {const_cast<char*>("grpo_sandbox"), nullptr};
  char* child_env[] = {nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, helper.c_str(), &fa, &attr, child_argv, child_env);
  ::posix_spawn_file_actions_destroy(&fa);
  ::posix_spawnattr_destroy(&attr);
  ::close(to[0]);
  ::close(from[1]);
  if (rc != 0) {
    ::close(to[1]), ::close(from[0]);
    fail("sandbox: cannot start the helper {}: {}", helper, std::strerror(rc));
  }
  // The helper reads the whole request before it starts, then enforces the wall-clock limit
  // itself; the margin only covers a helper that hangs.
  const bool sent = write_all(to[1], req.bytes());
  ::close(to[1]);
  std::string reply;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(l.wall_seconds + 30));
  const bool in_time = read_all(from[0], reply, deadline);
  ::close(from[0]);
  if (!in_time) ::kill(pid, SIGKILL);  // its sandbox dies with it (PR_SET_PDEATHSIG)
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  GRPO_CHECK(in_time, "sandbox: the helper {} did not answer within {:g} s", helper, l.wall_seconds + 30);
  GRPO_CHECK(sent && WIFEXITED(st) && WEXITSTATUS(st) == 0,
             "sandbox: the helper {} failed ({}){}", helper,
             WIFSIGNALED(st) ? fmt::format("killed by signal {}", WTERMSIG(st)) : fmt::format("exit {}", WEXITSTATUS(st)),
             sent ? "" : "; it did not take the request");
  core::ByteReader r(reply.data(), reply.size(), "sandbox helper " + helper);
  const std::string error = r.str();
  GRPO_CHECK(error.empty(), "{}", error);
  SandboxResult res;
  res.exit_code = int(r.i64());
  res.signal = int(r.i64());
  res.timed_out = r.i64() != 0;
  res.out = r.str();
  res.err = r.str();
  res.wall_seconds = r.f64();
  res.isolated = r.i64() != 0;
  res.writes_confined = r.i64() != 0;
  res.helper = true;
  return res;
}

}  // namespace

SandboxResult run_sandboxed(const std::vector<std::string>& argv, const std::string& input,
                            const std::map<std::string, std::string>& files, const SandboxLimits& l) {
  GRPO_CHECK(!argv.empty(), "sandbox: empty command");
  const std::string helper = helper_path();
  return helper.empty() ? run_here(argv, input, files, l) : run_in_helper(helper, argv, input, files, l);
}

int serve_sandbox_request(int in_fd, int out_fd) {
  std::string bytes;
  if (!read_all(in_fd, bytes, std::chrono::steady_clock::time_point::max())) return 2;
  core::ByteWriter reply;
  try {
    core::ByteReader req(bytes.data(), bytes.size(), "sandbox helper request");
    std::vector<std::string> argv(size_t(std::max<int64_t>(0, req.i64())));
    for (auto& a : argv) a = req.str();
    const std::string input = req.str();
    std::map<std::string, std::string> files;
    for (int64_t n = req.i64(); n > 0; --n) {
      auto name = req.str();
      files[name] = req.str();
    }
    SandboxLimits l;
    l.wall_seconds = req.f64();
    for (int64_t* v : {&l.cpu_seconds, &l.memory_bytes, &l.file_bytes, &l.processes, &l.open_files, &l.output_bytes})
      *v = req.i64();
    l.namespaces = req.i64() != 0;
    l.landlock = req.i64() != 0;
    const auto res = run_here(argv, input, files, l);
    reply.str("");
    for (int64_t v : {int64_t(res.exit_code), int64_t(res.signal), int64_t(res.timed_out)}) reply.i64(v);
    reply.str(res.out);
    reply.str(res.err);
    reply.f64(res.wall_seconds);
    reply.i64(res.isolated);
    reply.i64(res.writes_confined);
  } catch (const std::exception& e) {
    reply = core::ByteWriter();
    reply.str(e.what());
  }
  return write_all(out_fd, reply.bytes()) ? 0 : 2;
}

}  // namespace grpo::reward
