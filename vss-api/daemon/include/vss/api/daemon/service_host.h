// ServiceHost: the daemon side of the vssd protocol (vss-api/PROTOCOL.md).
// vssd accepts connections on its control socket, decides from the peer's
// credentials whether it may change things, and hands each connection to
// Serve(). For every connection the host:
//   - runs a LocalBackupComponents per requester object the peer creates,
//     and destroys them when the connection closes, which releases their
//     auto-release shadows and sends BackupShutdown (VSS's auto-release
//     when a requester goes away);
//   - subscribes the peer's writers to the coordinator through endpoints
//     that forward each event over the connection; when the connection
//     closes they are unsubscribed, and events still waiting are answered
//     as failed (VSS_E_WRITER_INFRASTRUCTURE), so a dead writer process
//     never holds a backup past the coordinator's timeouts.
// An unprivileged peer may only call Hello, ListWriters and ListProviders;
// everything else is E_ACCESSDENIED. A peer that breaks the protocol (a
// frame over the size limit, a message that is not a call or a reply) is
// disconnected, and the host's log gets one line saying who and why.
//
// Thread safety: Serve may be called from any thread. The destructor closes
// every connection and waits for their work to end.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "vss/api/coordinator.h"

namespace vss {

class ServiceHost {
 public:
  // `coordinator` must outlive the host. `store_dir` is reported to peers.
  // `log`, when set, gets one line (no newline) per peer dropped for
  // breaking the protocol; it is called from the connections' threads.
  ServiceHost(Coordinator& coordinator, std::string store_dir,
              std::function<void(const std::string& line)> log = nullptr);
  ~ServiceHost();
  ServiceHost(const ServiceHost&) = delete;
  ServiceHost& operator=(const ServiceHost&) = delete;

  // Takes `fd` (a connected Unix stream socket) and serves it until the
  // peer closes. `peer` names it in messages ("uid 1000 pid 42").
  void Serve(int fd, bool privileged, const std::string& peer);
  // Connections open now.
  size_t connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vss
