#include "server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vss::vssd {

Status ListenUnix(const std::string& path, std::vector<int>* fds) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return InvalidArgumentError("unix:" + path +
                                ": socket path is empty or too long");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return AlreadyExistsError("unix:" + path +
                                ": exists and is not a socket");
    }
    // A socket file: in use if someone answers, else left by a dead server.
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live =
        probe >= 0 &&
        ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (probe >= 0) ::close(probe);
    if (live) {
      return AlreadyExistsError("unix:" + path +
                                ": another server is listening there");
    }
    ::unlink(path.c_str());
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "unix:" + path + ": socket");
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 64) != 0) {
    Status s = ErrnoError(errno, "unix:" + path);
    ::close(fd);
    return s;
  }
  fds->push_back(fd);
  return OkStatus();
}

namespace {

Status ListenTcp(const std::string& spec, std::vector<int>* fds) {
  // spec is "HOST:PORT", ":PORT" or "PORT"; "[v6]:PORT" for IPv6.
  std::string host, port = spec;
  if (size_t colon = spec.rfind(':'); colon != std::string::npos) {
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "127.0.0.1";
  bool digits = !port.empty() && port.size() <= 5 &&
                port.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || std::stoi(port) > 65535) {
    return InvalidArgumentError("tcp:" + spec + ": '" + port +
                                "' is not a port number");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
      rc != 0) {
    return InvalidArgumentError("tcp:" + spec + ": " + gai_strerror(rc));
  }
  Status s = IoError("tcp:" + spec + ": no address to bind");
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                      ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 64) == 0) {
      fds->push_back(fd);
      s = OkStatus();
      break;
    }
    s = ErrnoError(errno, "tcp:" + spec);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return s;
}

}  // namespace

Server::~Server() {
  Reap(true);
  for (int fd : listeners_) ::close(fd);
  for (const auto& path : socket_files_) ::unlink(path.c_str());
}

Status Server::Listen(const std::string& address) {
  if (address.rfind("unix:", 0) == 0) {
    std::string path = address.substr(5);
    VSS_RETURN_IF_ERROR(ListenUnix(path, &listeners_));
    socket_files_.push_back(path);
    return OkStatus();
  }
  if (address.rfind("tcp:", 0) == 0)
    return ListenTcp(address.substr(4), &listeners_);
  return InvalidArgumentError("--nbd " + address +
                              ": expected unix:PATH or tcp:[HOST:]PORT");
}

void Server::Reap(bool all) {
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (all || it->connection->finished()) {
      it->thread.join();
      it = clients_.erase(it);
    } else {
      ++it;
    }
  }
}

void Server::Run(int stop_fd) {
  std::vector<pollfd> fds;
  for (int fd : listeners_) fds.push_back({fd, POLLIN, 0});
  fds.push_back({stop_fd, POLLIN, 0});
  for (;;) {
    int n = ::poll(fds.data(), fds.size(), 1000);
    if (n < 0 && errno != EINTR) break;
    Reap(false);
    if (fds.back().revents) break;
    for (size_t i = 0; n > 0 && i + 1 < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      int fd = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // TCP only
      // A client that stops reading its replies for this long is gone: the
      // send fails and the connection ends instead of holding up shutdown.
      timeval send_timeout{120, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout,
                   sizeof send_timeout);
      // Room for a few whole 1 MiB replies in the socket (the kernel caps
      // it at net.core.wmem_max), so a worker's reply rarely waits for the
      // client to drain the previous one.
      int sndbuf = 4 << 20;
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
      auto conn = std::make_unique<Connection>(fd, registry_);
      Connection* c = conn.get();
      clients_.push_back({std::move(conn), std::thread([c] { c->Run(); })});
    }
  }
  // Stop accepting, let every connection answer what it has read, then end.
  for (int fd : listeners_) ::close(fd);
  listeners_.clear();
  for (auto& client : clients_) client.connection->Stop();
  Reap(true);
}

}  // namespace vss::vssd
