#include "control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "server.h"

namespace vss::vssd {

Status ControlServer::Listen(const std::string& path) {
  std::vector<int> fds;
  // ListenUnix binds in a private directory, gives the socket mode 0660
  // there and renames it into place: no moment at which others may connect.
  VSS_RETURN_IF_ERROR(ListenUnix(path, &fds));
  listener_ = fds[0];
  path_ = path;
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  return OkStatus();
}

void ControlServer::Start(ServiceHost* host) {
  host_ = host;
  thread_ = std::thread([this] { AcceptLoop(); });
}

void ControlServer::Stop() {
  if (thread_.joinable()) {
    char c = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_pipe_[1], &c, 1);
    thread_.join();
  }
  if (listener_ >= 0) {
    ::close(listener_);
    listener_ = -1;
    ::unlink(path_.c_str());
  }
  for (int& fd : stop_pipe_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

void ControlServer::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{listener_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;
    int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      ::close(fd);
      continue;
    }
    bool privileged = cred.uid == 0 || cred.uid == owner_;
    host_->Serve(fd, privileged,
                 "uid " + std::to_string(cred.uid) + " (pid " +
                     std::to_string(cred.pid) + ")");
  }
}

}  // namespace vss::vssd
