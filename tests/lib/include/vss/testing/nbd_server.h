// InProcessNbdServer: vssd's NBD server (the vssd_nbd library) serving a
// store from a thread of the test process, on a Unix socket, until the
// object is destroyed. Header-only; a binary that includes it links
// vssd_nbd.
//
// Thread safety: one thread starts and destroys it; clients connect from
// any thread.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

#include "exports.h"
#include "server.h"
#include "vss/base/status.h"
#include "vss/engine/store.h"

namespace vss::testing {

class InProcessNbdServer {
 public:
  // Serves the exports of `store` (which must outlive the server) on the
  // Unix socket `socket_path`, with `options` (owner: the caller's uid when
  // left 0). Errors: the server's, or kIoError when no stop pipe can be made.
  static StatusOr<std::unique_ptr<InProcessNbdServer>> Start(
      engine::Store* store, const std::string& socket_path,
      vssd::NbdOptions options = {}) {
    auto made = std::unique_ptr<InProcessNbdServer>(new InProcessNbdServer());
    made->registry_ = std::make_unique<vssd::ExportRegistry>(store);
    if (options.owner == 0) options.owner = ::getuid();
    VSS_ASSIGN_OR_RETURN(made->server_,
                         vssd::Server::Create(made->registry_.get(), options));
    VSS_RETURN_IF_ERROR(made->server_->Listen("unix:" + socket_path));
    if (::pipe2(made->stop_, O_CLOEXEC) != 0) {
      return IoError("pipe2 for the NBD server's stop pipe failed");
    }
    InProcessNbdServer* self = made.get();
    made->thread_ = std::thread([self] { self->server_->Run(self->stop_[0]); });
    return made;
  }

  // Stops the server (Run() returns once told on the stop pipe) and joins
  // its thread.
  ~InProcessNbdServer() {
    if (thread_.joinable()) {
      char c = 1;
      EXPECT_EQ(::write(stop_[1], &c, 1), 1);
      thread_.join();
    }
    server_.reset();
    registry_.reset();
    for (int fd : stop_) {
      if (fd >= 0) ::close(fd);
    }
  }
  InProcessNbdServer(const InProcessNbdServer&) = delete;
  InProcessNbdServer& operator=(const InProcessNbdServer&) = delete;

  vssd::Server& server() { return *server_; }

 private:
  InProcessNbdServer() = default;

  std::unique_ptr<vssd::ExportRegistry> registry_;
  std::unique_ptr<vssd::Server> server_;
  int stop_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace vss::testing
