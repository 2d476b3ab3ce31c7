// ControlServer: vssd's control socket (the VSS protocol, see
// vss-api/PROTOCOL.md). It accepts connections on its own thread, reads the
// peer's credentials (SO_PEERCRED) and hands each connection to the
// ServiceHost: root and the owner of the store may change things, other
// users may only look. The socket file is made mode 0660 (so the store
// owner's group may connect) and removed at Stop().
#pragma once

#include <sys/types.h>

#include <string>
#include <thread>

#include "vss/api/service_host.h"
#include "vss/status.h"

namespace vss::vssd {

class ControlServer {
 public:
  // `owner`: the uid that may change the store besides root.
  ControlServer(ServiceHost* host, uid_t owner) : host_(host), owner_(owner) {}
  ~ControlServer() { Stop(); }

  Status Listen(const std::string& path);
  void Start();
  // Stops accepting; connections already handed over stay with the host.
  void Stop();

 private:
  void AcceptLoop();

  ServiceHost* host_;
  uid_t owner_;
  std::string path_;
  int listener_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace vss::vssd
