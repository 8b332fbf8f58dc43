// A child process spoken to in lines (core/line_process.h).
#include "grpo/core/line_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "grpo/core/error.h"

namespace grpo::core {

LineProcess::LineProcess(const std::string& command, std::string what) : what_(std::move(what)) {
  GRPO_CHECK(!command.empty(), "{}: empty command", what_);
  struct sigaction sa {};  // a dead child must not kill us with SIGPIPE; writes fail with EPIPE instead
  sa.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &sa, nullptr);
  int to_child[2], from_child[2];
  GRPO_CHECK(::pipe2(to_child, O_CLOEXEC) == 0 && ::pipe2(from_child, O_CLOEXEC) == 0, "{}: pipe: {}", what_,
             std::strerror(errno));
  pid_t pid = ::fork();
  GRPO_CHECK(pid >= 0, "{}: fork: {}", what_, std::strerror(errno));
  if (pid == 0) {  // child: its own process group, stdin/stdout on the pipes
    ::setpgid(0, 0);
    ::dup2(to_child[0], 0);
    ::dup2(from_child[1], 1);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ::setpgid(pid, pid);
  ::close(to_child[0]);
  ::close(from_child[1]);
  pid_ = pid;
  in_ = to_child[1];
  out_ = from_child[0];
}

LineProcess::~LineProcess() { kill_now(); }

void LineProcess::kill_now() {
  if (pid_ > 0) {
    ::kill(-pid_, SIGKILL);  // the whole process group
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  if (in_ >= 0) ::close(in_), in_ = -1;
  if (out_ >= 0) ::close(out_), out_ = -1;
}

LineProcess::Clock::time_point LineProcess::after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

int LineProcess::ms_left(Clock::time_point deadline) const {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : int(std::min<int64_t>(ms, 1 << 30));
}

void LineProcess::write_line(const std::string& line, Clock::time_point deadline) {
  GRPO_CHECK(in_ >= 0, "{}: the process is gone", what_);
  const std::string data = line + "\n";
  size_t off = 0;
  while (off < data.size()) {
    pollfd p{in_, POLLOUT, 0};
    int r = ::poll(&p, 1, ms_left(deadline));
    if (r == 0) fail("{}: timed out sending a line", what_);
    if (r < 0 && errno == EINTR) continue;
    ssize_t n = ::write(in_, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("{}: the process is gone ({})", what_, std::strerror(errno));
    off += size_t(n);
  }
}

std::string LineProcess::read_line(Clock::time_point deadline) {
  GRPO_CHECK(out_ >= 0, "{}: the process is gone", what_);
  for (;;) {
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (buffer_.size() > (1u << 20)) fail("{}: a reply line over 1 MiB", what_);
    pollfd p{out_, POLLIN, 0};
    int r = ::poll(&p, 1, ms_left(deadline));
    if (r == 0) fail("{}: no reply before the deadline", what_);
    if (r < 0 && errno == EINTR) continue;
    char buf[4096];
    ssize_t n = ::read(out_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("{}: the process exited without replying", what_);
    buffer_.append(buf, size_t(n));
  }
}

}  // namespace grpo::core
