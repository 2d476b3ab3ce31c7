#include "vss/api/daemon/thaw_guard.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>

#include "vss/api/guest_agent_writer.h"

extern char** environ;

namespace vss {
namespace {

// The messages (one SOCK_SEQPACKET record each): an op byte, then the
// mountpoint. 'F' carries the descriptor (SCM_RIGHTS); the helper answers
// 'F' and its start with 'k' ('e' for an 'F' without a descriptor).
constexpr char kWillFreeze = 'F';
constexpr char kWillFreezeGuest = 'Q';  // the descriptor is a guest agent connection
constexpr char kThawed = 'T';
constexpr char kAck = 'k';
constexpr char kBadMessage = 'e';

// How long the freezer waits for an answer; the helper answers at once
// unless it is gone or stuck.
constexpr int kAnswerTimeoutMs = 5000;
// How long the helper waits for a guest agent's answers when it thaws. A
// guest's thaw writes to its disk, which may be served by the freezer that
// died (vssd over NBD): the answer comes once the disk is back.
constexpr auto kAgentTimeout = std::chrono::seconds(120);
// How long ~ThawGuard lets the helper take to exit before killing it.
constexpr auto kExitTimeout = std::chrono::seconds(3);
// The descriptor number the helper gets its end of the socket at.
constexpr int kChildFd = 3;

// Largest record: the op byte and a path.
constexpr size_t kMaxMessage = 1 + PATH_MAX;

// Kills (if `kill_it`) and reaps `pid`, waiting at most kExitTimeout for it
// to exit by itself first.
void Reap(pid_t pid, bool kill_it) {
  if (kill_it) ::kill(pid, SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + kExitTimeout;
  for (;;) {
    pid_t r = ::waitpid(pid, nullptr, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return;  // ECHILD: reaped elsewhere
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Receives one record into `buf`; the descriptors it carried go to `fds`.
// Returns its length, 0 at end of file, -1 on error (errno set).
ssize_t Receive(int fd, char* buf, size_t size, std::vector<int>* fds) {
  iovec iov{buf, size};
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds->push_back(received);
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    errno = EMSGSIZE;
    return -1;
  }
  return n;
}

bool SendByte(int fd, char c) { return ::send(fd, &c, 1, MSG_NOSIGNAL) == 1; }

void CloseAll(std::vector<int>* fds) {
  for (int fd : *fds) ::close(fd);
  fds->clear();
}

// A filesystem or guest the helper was told of.
struct Listed {
  std::string mountpoint;  // or the guest agent socket's path
  int fd;                  // the mountpoint's, or the agent connection
  bool guest;
};

// Thaws `l` once the freezer (pid `parent`) is gone, says so on standard
// error, and closes its descriptor. False if the thaw failed.
bool ThawListed(const Listed& l, pid_t parent) {
  if (l.guest) {
    QgaClient agent(l.fd, l.mountpoint, kAgentTimeout);  // closes l.fd
    Status s = agent.Sync();
    if (s.ok()) s = agent.FsFreezeThaw().status();
    if (s.ok()) {
      std::fprintf(stderr, "vss-thaw-guard: the freezer (pid %d) died; thawed the guest of %s\n",
                   static_cast<int>(parent), l.mountpoint.c_str());
      return true;
    }
    std::fprintf(stderr, "vss-thaw-guard: the freezer (pid %d) died; cannot thaw the guest of %s: %s\n",
                 static_cast<int>(parent), l.mountpoint.c_str(), s.message().c_str());
    return false;
  }
  bool ok = true;
  if (::ioctl(l.fd, FITHAW, 0) == 0) {
    std::fprintf(stderr, "vss-thaw-guard: the freezer (pid %d) died; thawed %s\n",
                 static_cast<int>(parent), l.mountpoint.c_str());
  } else if (errno != EINVAL) {  // EINVAL: it was not frozen
    std::fprintf(stderr, "vss-thaw-guard: the freezer (pid %d) died; cannot thaw %s: %s\n",
                 static_cast<int>(parent), l.mountpoint.c_str(), std::strerror(errno));
    ok = false;
  }
  ::close(l.fd);
  return ok;
}

}  // namespace

StatusOr<std::unique_ptr<ThawGuard>> ThawGuard::Start(const std::vector<std::string>& command) {
  if (command.empty() || command[0].empty()) {
    return InvalidArgumentError("thaw guard: no program to run");
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoError(errno, "thaw guard: socketpair");
  }
  // The child's end moves to kChildFd there; dup2 onto itself would keep
  // close-on-exec, so it must not already be that number.
  if (sv[1] == kChildFd) {
    int moved = ::fcntl(sv[1], F_DUPFD_CLOEXEC, kChildFd + 1);
    if (moved < 0) {
      const int err = errno;
      ::close(sv[0]);
      ::close(sv[1]);
      return ErrnoError(err, "thaw guard: fcntl");
    }
    ::close(sv[1]);
    sv[1] = moved;
  }
  std::vector<std::string> args = command;
  args.push_back(std::to_string(kChildFd));
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attr);
  ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  ::posix_spawn_file_actions_adddup2(&actions, sv[1], kChildFd);
  sigset_t none;
  sigemptyset(&none);
  ::posix_spawnattr_setsigmask(&attr, &none);
  // A session (and so a process group) of its own: whatever kills this
  // process's group (kill -KILL -PGID, a terminal's ^C, a supervisor that
  // signals the group) does not take the guard with it.
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSID);
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, args[0].c_str(), &actions, &attr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  ::close(sv[1]);
  if (err != 0) {
    ::close(sv[0]);
    return ErrnoError(err, "thaw guard: cannot run " + args[0]);
  }
  std::unique_ptr<ThawGuard> guard(new ThawGuard(pid, sv[0]));
  // The helper's first 'k' says it runs and serves the socket (a program
  // that is not a thaw guard exits or says something else).
  VSS_RETURN_IF_ERROR(guard->AwaitAck("start " + args[0]));
  return guard;
}

ThawGuard::~ThawGuard() {
  // End of file for the helper: it thaws what is still listed and exits.
  ::close(fd_);
  Reap(pid_, /*kill_it=*/false);
}

Status ThawGuard::WillFreeze(const std::string& mountpoint, int fd) {
  VSS_RETURN_IF_ERROR(Send(kWillFreeze, mountpoint, fd));
  return AwaitAck("freeze " + mountpoint);
}

Status ThawGuard::WillFreezeGuest(const std::string& name, int fd) {
  VSS_RETURN_IF_ERROR(Send(kWillFreezeGuest, name, fd));
  return AwaitAck("freeze guest " + name);
}

Status ThawGuard::Thawed(const std::string& mountpoint) {
  return Send(kThawed, mountpoint, -1);
}

Status ThawGuard::Send(char op, const std::string& mountpoint, int fd) {
  if (broken_) return IoError("thaw guard: the helper is gone");
  std::string record(1, op);
  record += mountpoint;
  iovec iov{record.data(), record.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(record.size())) {
    broken_ = true;
    return ErrnoError(n < 0 ? errno : EPIPE,
                      "thaw guard (pid " + std::to_string(pid_) + "): telling it about " +
                          mountpoint);
  }
  return OkStatus();
}

Status ThawGuard::AwaitAck(const std::string& what) {
  const std::string context = "thaw guard (pid " + std::to_string(pid_) + "): " + what;
  pollfd p{fd_, POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, kAnswerTimeoutMs);
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    broken_ = true;
    return IoError(context + ": no answer within " + std::to_string(kAnswerTimeoutMs) + " ms");
  }
  char c = 0;
  ssize_t n = r < 0 ? -1 : ::recv(fd_, &c, 1, 0);
  if (n != 1 || c != kAck) {
    broken_ = true;
    if (n < 0) return ErrnoError(errno, context);
    return IoError(context + (n == 0 ? ": the helper exited" : ": unexpected answer"));
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------

int RunThawGuard(int fd) {
  // Nothing of the parent stays open here but the standard descriptors and
  // the socket: not the store, not a listening socket, not a pipe someone
  // waits on to close.
  if (fd > 3) ::close_range(3, fd - 1, 0);
  ::close_range(fd + 1, ~0U, 0);
  ::prctl(PR_SET_NAME, "vss-thaw-guard", 0, 0, 0);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::signal(sig, SIG_IGN);
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET) {
    std::fprintf(stderr, "vss-thaw-guard: descriptor %d is not the freezer's socket\n", fd);
    return 1;
  }
  const pid_t parent = ::getppid();
  if (!SendByte(fd, kAck)) return 0;  // the parent is gone already; nothing was frozen

  std::vector<Listed> listed;
  std::string buf(kMaxMessage, '\0');
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, 1000);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      if (::getppid() != parent) break;  // the parent died; its socket end leaked elsewhere
      continue;
    }
    if (r < 0) break;
    std::vector<int> fds;
    ssize_t n = Receive(fd, buf.data(), buf.size(), &fds);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      CloseAll(&fds);
      break;  // end of file: the parent closed the guard or died
    }
    const char op = buf[0];
    std::string mountpoint(buf.data() + 1, static_cast<size_t>(n) - 1);
    const bool will_freeze = op == kWillFreeze || op == kWillFreezeGuest;
    if (will_freeze && fds.size() == 1) {
      listed.push_back({std::move(mountpoint), fds[0], op == kWillFreezeGuest});
      if (!SendByte(fd, kAck)) break;
    } else if (op == kThawed) {
      CloseAll(&fds);
      for (auto it = listed.begin(); it != listed.end(); ++it) {
        if (it->mountpoint == mountpoint) {
          ::close(it->fd);
          listed.erase(it);
          break;
        }
      }
    } else {
      CloseAll(&fds);
      if (will_freeze && !SendByte(fd, kBadMessage)) break;
    }
  }
  // Reverse order, as the freezer thaws.
  int rc = 0;
  for (auto it = listed.rbegin(); it != listed.rend(); ++it) {
    if (!ThawListed(*it, parent)) rc = 1;
  }
  return rc;
}

}  // namespace vss
