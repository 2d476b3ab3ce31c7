#include "server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

namespace vss::vssd {

namespace {

bool SetSockaddr(const std::string& path, sockaddr_un* addr) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr->sun_path) return false;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

}  // namespace

Status ListenUnix(const std::string& path, std::vector<int>* fds, mode_t mode) {
  sockaddr_un addr;
  if (!SetSockaddr(path, &addr)) {
    return InvalidArgumentError("unix:" + path +
                                ": socket path is empty or too long");
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return AlreadyExistsError("unix:" + path +
                                ": exists and is not a socket");
    }
    // A socket file: in use if someone answers, else left by a dead server
    // (the rename below replaces it).
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live =
        probe >= 0 &&
        ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (probe >= 0) ::close(probe);
    if (live) {
      return AlreadyExistsError("unix:" + path +
                                ": another server is listening there");
    }
  }
  // The socket is bound in a new directory of ours (0700) beside `path`,
  // given its mode there, where no other user can reach it, and renamed
  // into place: it never exists under `path` with the umask's mode, and
  // nothing process-wide (the umask) changes under other threads.
  size_t slash = path.rfind('/');
  std::string parent = slash == std::string::npos ? "." : path.substr(0, slash);
  if (parent.empty()) parent = "/";
  std::string dir = parent + "/.vssd-socket-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    return ErrnoError(errno, "unix:" + path + ": private directory in " + parent);
  }
  int dfd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  std::string bound = dir + "/s";
  if (bound.size() >= sizeof addr.sun_path && dfd >= 0) {
    bound = "/proc/self/fd/" + std::to_string(dfd) + "/s";  // a long parent
  }
  Status s;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un tmp;
  if (dfd < 0 || fd < 0) {
    s = ErrnoError(errno, "unix:" + path + ": socket");
  } else if (!SetSockaddr(bound, &tmp)) {
    s = InvalidArgumentError("unix:" + path + ": socket path is too long");
  } else if (::bind(fd, reinterpret_cast<sockaddr*>(&tmp), sizeof tmp) != 0) {
    s = ErrnoError(errno, "unix:" + path);
  } else if (::fchmodat(dfd, "s", mode, 0) != 0 ||
             ::renameat(dfd, "s", AT_FDCWD, path.c_str()) != 0) {
    s = ErrnoError(errno, "unix:" + path);
    ::unlinkat(dfd, "s", 0);
  } else if (::listen(fd, 64) != 0) {
    s = ErrnoError(errno, "unix:" + path);
    ::unlink(path.c_str());
  }
  if (dfd >= 0) ::close(dfd);
  ::rmdir(dir.c_str());
  if (!s.ok()) {
    if (fd >= 0) ::close(fd);
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

// "1.2.3.4:5678" or "[::1]:5678".
std::string TcpPeer(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (a.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (a.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

// Parses a decimal number of at most 9 digits.
bool ParseCount(const std::string& v, uint32_t* out) {
  if (v.empty() || v.size() > 9 ||
      v.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *out = static_cast<uint32_t>(std::stoul(v));
  return true;
}

// Parses a size with an optional binary suffix (K, M, G).
bool ParseSize(std::string v, uint64_t* out) {
  uint64_t unit = 1;
  if (!v.empty()) {
    switch (v.back()) {
      case 'K': case 'k': unit = 1ull << 10; break;
      case 'M': case 'm': unit = 1ull << 20; break;
      case 'G': case 'g': unit = 1ull << 30; break;
      default: break;
    }
    if (unit != 1) v.pop_back();
  }
  uint32_t n = 0;
  if (!ParseCount(v, &n)) return false;
  *out = n * unit;
  return true;
}

}  // namespace

int ParseNbdArgument(int argc, char** argv, int i, NbdOptions* options,
                     std::string* error) {
  std::string arg = argv[i];
  if (arg == "--nbd-insecure") {
    options->insecure = true;
    return 1;
  }
  static const char* const kValued[] = {
      "--tls-psk", "--tls-x509", "--nbd-handshake-timeout-ms",
      "--nbd-idle-timeout-ms", "--nbd-max-connections", "--nbd-memory-limit"};
  std::string opt, v;
  int used = 0;
  for (const char* o : kValued) {
    if (arg == o) {
      opt = o;
      if (i + 1 >= argc) {
        *error = opt + " needs a value";
        return -1;
      }
      v = argv[i + 1];
      used = 2;
    } else if (arg.rfind(std::string(o) + "=", 0) == 0) {
      opt = o;
      v = arg.substr(opt.size() + 1);
      used = 1;
    }
    if (used) break;
  }
  if (!used) return 0;
  uint32_t n = 0;
  if (opt == "--tls-psk") {
    if (v.empty()) return *error = "--tls-psk needs a key file", -1;
    options->tls.psk_file = v;
  } else if (opt == "--tls-x509") {
    if (v.empty()) return *error = "--tls-x509 needs a directory", -1;
    options->tls.x509_dir = v;
  } else if (opt == "--nbd-handshake-timeout-ms") {
    if (!ParseCount(v, &n) || n == 0) {
      return *error = opt + " needs a positive number of milliseconds", -1;
    }
    options->handshake_timeout_ms = n;
  } else if (opt == "--nbd-idle-timeout-ms") {
    if (!ParseCount(v, &n)) {
      return *error = opt + " needs a number of milliseconds (0: none)", -1;
    }
    options->idle_timeout_ms = n;
  } else if (opt == "--nbd-max-connections") {
    if (!ParseCount(v, &n) || n == 0) {
      return *error = opt + " needs a positive number", -1;
    }
    options->max_connections = n;
  } else {
    uint64_t size = 0;
    if (!ParseSize(v, &size) || size < (64u << 10)) {
      return *error = opt + " needs a size of at least 64K (like 256M)", -1;
    }
    options->memory_limit = size;
  }
  return used;
}

StatusOr<std::unique_ptr<Server>> Server::Create(ExportRegistry* registry,
                                                 NbdOptions options) {
  std::unique_ptr<Server> server(new Server(registry, std::move(options)));
  if (!server->options_.tls.empty()) {
    VSS_ASSIGN_OR_RETURN(server->tls_, TlsCredentials::Load(server->options_.tls));
  }
  return server;
}

Server::~Server() {
  Reap(true);
  for (const Listener& l : listeners_) ::close(l.fd);
  for (const auto& path : socket_files_) ::unlink(path.c_str());
}

Status Server::Listen(const std::string& address) {
  std::vector<int> fds;
  bool tcp = false;
  if (address.rfind("unix:", 0) == 0) {
    std::string path = address.substr(5);
    VSS_RETURN_IF_ERROR(ListenUnix(path, &fds, 0660));
    socket_files_.push_back(path);
  } else if (address.rfind("tcp:", 0) == 0) {
    if (!options_.insecure && !(tls_ && tls_->CanAuthenticate())) {
      return FailedPreconditionError(
          "--nbd " + address +
          (tls_ ? ": --tls-x509 " + options_.tls.x509_dir +
                      " has no ca-cert.pem, so no client can authenticate: "
                      "add it, or use --tls-psk FILE, or pass --nbd-insecure"
                : std::string(": NBD over TCP is served only with TLS: pass "
                              "--tls-psk FILE or --tls-x509 DIR (or "
                              "--nbd-insecure for plain text open to "
                              "everyone who can reach the port)")));
    }
    VSS_RETURN_IF_ERROR(ListenTcp(address.substr(4), &fds));
    tcp = true;
  } else {
    return InvalidArgumentError("--nbd " + address +
                                ": expected unix:PATH or tcp:[HOST:]PORT");
  }
  for (int fd : fds) listeners_.push_back({fd, tcp});
  return OkStatus();
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

bool Server::Accept(const Listener& l) {
  sockaddr_storage addr{};
  socklen_t addr_len = sizeof addr;
  int fd = ::accept4(l.fd, reinterpret_cast<sockaddr*>(&addr), &addr_len,
                     SOCK_CLOEXEC);
  if (fd < 0) {
    return !(errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
             errno == ENOMEM);
  }
  Reap(false);
  if (clients_.size() >= options_.max_connections) {
    // Over the limit: closed before the greeting.
    ::close(fd);
    return true;
  }
  ConnectionPolicy policy;
  policy.handshake_timeout_ms = options_.handshake_timeout_ms;
  policy.idle_timeout_ms = options_.idle_timeout_ms;
  policy.tls = tls_.get();
  if (l.tcp) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    policy.peer = TcpPeer(addr);
    policy.privileged = options_.insecure;
    policy.tls_required = !options_.insecure;
  } else {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      ::close(fd);
      return true;
    }
    // The control socket's rule (control.h).
    policy.privileged = cred.uid == 0 || cred.uid == options_.owner;
    policy.peer = "uid " + std::to_string(cred.uid) + " (pid " +
                  std::to_string(cred.pid) + ")";
  }
  // A client that stops reading its replies for this long is gone: the
  // send fails and the connection ends instead of holding up shutdown.
  timeval send_timeout{120, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
  // Room for a few whole 1 MiB replies in the socket (the kernel caps it at
  // net.core.wmem_max), so a worker's reply rarely waits for the client to
  // drain the previous one.
  int sndbuf = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  std::string peer = policy.peer;
  auto conn = std::make_unique<Connection>(fd, registry_, &memory_, std::move(policy));
  Connection* c = conn.get();
  try {
    std::thread t([c] { c->Run(); });
    clients_.push_back({std::move(conn), std::move(t)});
  } catch (const std::system_error& e) {
    // Out of threads: this client is refused (its socket closes with
    // `conn`), the others go on.
    std::fprintf(stderr, "vssd: NBD client %s refused: %s\n", peer.c_str(), e.what());
  }
  return true;
}

void Server::Run(int stop_fd) {
  std::vector<pollfd> fds;
  for (const Listener& l : listeners_) fds.push_back({l.fd, POLLIN, 0});
  fds.push_back({stop_fd, POLLIN, 0});
  int backoff_ms = 0;  // > 0: accept() failed for lack of resources
  for (;;) {
    if (backoff_ms > 0) {
      // Give the connections time to end and free what they hold; the
      // listeners stay readable meanwhile, so they are not polled.
      pollfd stop{stop_fd, POLLIN, 0};
      if (::poll(&stop, 1, backoff_ms) > 0) break;
    }
    int n = ::poll(fds.data(), fds.size(), 1000);
    if (n < 0 && errno != EINTR) break;
    Reap(false);
    if (fds.back().revents) break;
    bool starved = false;
    for (size_t i = 0; n > 0 && i + 1 < fds.size(); ++i) {
      if ((fds[i].revents & POLLIN) && !Accept(listeners_[i])) starved = true;
    }
    if (starved && backoff_ms == 0) {
      std::fprintf(stderr, "vssd: accepting NBD clients: %s (backing off)\n",
                   std::strerror(errno));
    }
    backoff_ms = starved ? std::clamp(backoff_ms * 2, 10, 1000) : 0;
  }
  // Stop accepting, let every connection answer what it has read, then end.
  for (const Listener& l : listeners_) ::close(l.fd);
  listeners_.clear();
  for (auto& client : clients_) client.connection->Stop();
  Reap(true);
}

}  // namespace vss::vssd
