// Server: the listening sockets of vssd and its connections.
//
// Listen() binds one address ("unix:PATH" or "tcp:[HOST:]PORT", loopback
// when HOST is empty or absent). Run() accepts clients, one thread per
// connection (which runs its own small worker pool), until `stop_fd` becomes
// readable; it then stops accepting, stops every connection from reading
// further requests, waits for the requests already read to be answered and
// returns. Unix socket files it created are removed by the destructor.
//
// Thread safety: Listen() and Run() are called from one thread.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "connection.h"
#include "exports.h"
#include "vss/status.h"

namespace vss::vssd {

// Binds and listens on the Unix socket `path` (removing a socket file left
// by a dead server; kAlreadyExists if one answers there). Appends the fd.
Status ListenUnix(const std::string& path, std::vector<int>* fds);

class Server {
 public:
  explicit Server(ExportRegistry* registry) : registry_(registry) {}
  ~Server();

  // kInvalidArgument for a malformed address, kIoError (naming the address)
  // if it cannot be bound, kAlreadyExists if a server answers on the socket.
  Status Listen(const std::string& address);
  void Run(int stop_fd);

 private:
  struct Client {
    std::unique_ptr<Connection> connection;
    std::thread thread;
  };
  void Reap(bool all);

  ExportRegistry* registry_;
  std::vector<int> listeners_;
  std::vector<std::string> socket_files_;
  std::vector<Client> clients_;
};

}  // namespace vss::vssd
