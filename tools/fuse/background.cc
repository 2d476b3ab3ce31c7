#include "background.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <fstream>
#include <string>

namespace vss::fuse {
namespace {

constexpr int kReportFd = 3;  // the pipe's write end in the child

// Pipe messages: "R" + report, or "E" + code (decimal) + " " + message.
void WriteMessage(int fd, const std::string& message) {
  const char* p = message.data();
  size_t n = message.size();
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// In the child: detach from the caller's terminal, streams and descriptors.
void Detach(int report_fd) {
  ::setsid();
  ::signal(SIGPIPE, SIG_IGN);
  if (report_fd != kReportFd) ::dup2(report_fd, kReportFd);  // clears CLOEXEC
  ::close_range(kReportFd + 1, UINT_MAX, 0);
  int null = ::open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
  if (null > 2) ::close(null);
}

Status ParseMessage(const std::string& m, std::string* report) {
  if (!m.empty() && m[0] == 'R') {
    *report = m.substr(1);
    return OkStatus();
  }
  size_t space = m.find(' ');
  if (m.size() < 3 || m[0] != 'E' || space == std::string::npos) {
    return InternalError("the FUSE server exited before it was ready");
  }
  int code = std::atoi(m.substr(1, space - 1).c_str());
  if (code <= 0 || code > static_cast<int>(StatusCode::kInternal)) {
    code = static_cast<int>(StatusCode::kInternal);
  }
  return Status(static_cast<StatusCode>(code), m.substr(space + 1));
}

}  // namespace

StatusOr<Started> StartInBackground(const ServerFn& server) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  pid_t pid = ::fork();
  if (pid < 0) {
    Status s = ErrnoError(errno, "fork");
    ::close(fds[0]);
    ::close(fds[1]);
    return s;
  }
  if (pid == 0) {
    Detach(fds[1]);
    bool reported = false;
    Status s = server([&](const std::string& report) {
      WriteMessage(kReportFd, "R" + report);
      ::close(kReportFd);  // the parent sees EOF and returns
      reported = true;
    });
    if (!reported) {
      WriteMessage(kReportFd, "E" + std::to_string(static_cast<int>(s.code())) +
                                  " " + s.ToString());
    }
    ::_exit(s.ok() ? 0 : 1);
  }
  ::close(fds[1]);
  std::string message;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    message.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  Started started{pid, {}};
  Status s = ParseMessage(message, &started.report);
  if (!s.ok()) {
    ::waitpid(pid, nullptr, 0);  // it has exited or is about to
    return s;
  }
  return started;
}

namespace {

// True when `pid` has exited: gone, or a zombie its (new) parent has not
// reaped yet.
bool Exited(pid_t pid) {
  ::waitpid(pid, nullptr, WNOHANG);  // reaps it if it is our child
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  size_t paren = line.rfind(')');  // "pid (comm) S ..."
  return paren == std::string::npos || paren + 2 >= line.size() ||
         line[paren + 2] == 'Z';
}

}  // namespace

bool WaitForExit(pid_t pid, int seconds) {
  for (int i = 0; i < seconds * 100; ++i) {
    if (Exited(pid)) return true;
    ::usleep(10 * 1000);
  }
  return false;
}

}  // namespace vss::fuse
