// ControlServer: vssd's control socket (the VSS protocol, see
// vss-api/PROTOCOL.md). It accepts connections on its own thread, reads the
// peer's credentials (SO_PEERCRED) and hands each connection to the
// ServiceHost: root and the owner of the store may change things, other
// users may only look. The socket file is created mode 0660 (so the store
// owner's group may connect; never wider, not even for a moment) and
// removed at Stop().
//
// Thread safety: Listen, Start and Stop are called from one thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <thread>

#include "vss/api/daemon/service_host.h"
#include "vss/base/status.h"

namespace vss::vssd {

class ControlServer {
 public:
  // `owner`: the uid that may change the store besides root.
  explicit ControlServer(uid_t owner) : owner_(owner) {}
  ~ControlServer() { Stop(); }

  // Binds and listens on the Unix socket `path`, created mode 0660 owned by
  // this process's user (kAlreadyExists if a server answers there, kIoError
  // naming the path if it cannot be bound). It sets the process umask around
  // the bind. REQUIRES: no other thread of the process creates files
  // meanwhile (call it before the process starts threads).
  [[nodiscard]] Status Listen(const std::string& path);
  // Accepts connections and hands them to `host`, on a thread of its own.
  // REQUIRES: Listen succeeded; `host` outlives Stop().
  void Start(ServiceHost* host);
  // Stops accepting; connections already handed over stay with the host.
  void Stop();

 private:
  void AcceptLoop();

  ServiceHost* host_ = nullptr;
  uid_t owner_;
  std::string path_;
  int listener_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace vss::vssd
