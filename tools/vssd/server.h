// Server: the NBD listening sockets of vssd and its connections.
//
// Listen() binds one address ("unix:PATH" or "tcp:[HOST:]PORT", loopback
// when HOST is empty or absent). Run() accepts clients, one thread per
// connection (which runs its own small worker pool), until `stop_fd` becomes
// readable; it then stops accepting, stops every connection from reading
// further requests, waits for the requests already read to be answered and
// returns. Unix socket files it created are removed by the destructor.
//
// Who may do what (Rule 10 of the design):
//   - Unix socket (mode 0660): peers whose SO_PEERCRED uid is root or the
//     store's owner are privileged; other peers may list the exports and
//     nothing more (or authenticate with TLS when it is configured).
//   - TCP: served only over TLS (NBD_OPT_STARTTLS) with credentials that
//     authenticate the client (--tls-psk, or --tls-x509 with a CA), unless
//     --nbd-insecure: then every TCP client is privileged, in plain text.
//     Without either, Listen() refuses a TCP address.
//
// Limits (NbdOptions, defaults documented there): a handshake timeout, an
// idle timeout, a connection limit (one more connection is accepted and
// closed at once), and a cap on the memory of request payloads shared by
// every connection. An accept() that fails for lack of descriptors or
// memory backs off (10 ms doubling up to 1 s) instead of spinning; a
// connection whose thread cannot be created is closed and the server goes
// on.
//
// Thread safety: Listen() and Run() are called from one thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "connection.h"
#include "exports.h"
#include "payload_memory.h"
#include "tls.h"
#include "vss/base/status.h"

namespace vss::vssd {

// Binds and listens on the Unix socket `path` (removing a socket file left
// by a dead server; kAlreadyExists if one answers there). The socket file
// has `mode` from the moment it appears (it is bound in a private directory
// beside it, then renamed into place: no window with the umask's mode).
// Appends the fd.
Status ListenUnix(const std::string& path, std::vector<int>* fds,
                  mode_t mode = 0660);

// vssd's NBD options and their defaults.
struct NbdOptions {
  uid_t owner = 0;  // the store's owner: privileged on the Unix socket
  TlsOptions tls;
  bool insecure = false;  // --nbd-insecure: plain-text TCP, no access control
  uint32_t handshake_timeout_ms = 10000;  // from accept to transmission
  uint32_t idle_timeout_ms = 0;           // 0: no idle timeout
  uint32_t max_connections = 128;
  uint64_t memory_limit = 256u << 20;  // request payload bytes, all clients
};

// Parses the NBD option at argv[i] (with its value in argv[i] as
// "--opt=V" or in argv[i+1]). Returns how many arguments it used, 0 when
// argv[i] is not an NBD option, -1 with `error` set (one line) when it is
// malformed.
int ParseNbdArgument(int argc, char** argv, int i, NbdOptions* options,
                     std::string* error);

class Server {
 public:
  // Loads the TLS credentials named in `options`. kInvalidArgument or
  // kNotFound (one line, naming the file) when they cannot be loaded.
  static StatusOr<std::unique_ptr<Server>> Create(ExportRegistry* registry,
                                                  NbdOptions options);
  ~Server();

  // kInvalidArgument for a malformed address, kIoError (naming the address)
  // if it cannot be bound, kAlreadyExists if a server answers on the
  // socket, kFailedPrecondition for TCP without TLS credentials that
  // authenticate clients and without --nbd-insecure.
  Status Listen(const std::string& address);
  void Run(int stop_fd);

  // The payload memory of every connection (tests read its peak).
  const PayloadMemory& memory() const { return memory_; }

 private:
  Server(ExportRegistry* registry, NbdOptions options)
      : registry_(registry), options_(std::move(options)),
        memory_(options_.memory_limit) {}
  struct Listener {
    int fd;
    bool tcp;
  };
  struct Client {
    std::unique_ptr<Connection> connection;
    std::thread thread;
  };
  void Reap(bool all);
  // Accepts one connection on `l`; false when accept() failed for lack of
  // resources (the caller backs off).
  bool Accept(const Listener& l);

  ExportRegistry* registry_;
  NbdOptions options_;
  std::unique_ptr<TlsCredentials> tls_;
  PayloadMemory memory_;
  std::vector<Listener> listeners_;
  std::vector<std::string> socket_files_;
  std::vector<Client> clients_;
};

}  // namespace vss::vssd
