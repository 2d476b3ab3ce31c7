// StartInBackground: runs a server in a detached child process and returns
// once it is ready, as sshfs does.
//
// The child starts a new session, puts /dev/null on its standard streams,
// closes every other inherited descriptor, and then runs `server`, which
// sets itself up and calls `ready(report)` once it serves, then keeps
// serving and returns when done (the child then exits). The parent waits:
// it gets `report` back, or the Status the server returned before calling
// ready (code and message travel through a pipe), or kInternal if the child
// died without a word.
//
// Everything the server uses (the store, SQLite, threads) must be opened
// inside `server`, in the child: nothing the parent opened before the fork
// may be used there.
//
// Thread safety: call from a single-threaded process (fork).
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "vss/base/status.h"

namespace vss::fuse {

using ReadyFn = std::function<void(const std::string& report)>;
using ServerFn = std::function<Status(const ReadyFn& ready)>;

struct Started {
  pid_t pid = 0;       // the server process
  std::string report;  // what the server passed to ready()
};

StatusOr<Started> StartInBackground(const ServerFn& server);

// Waits up to `seconds` for process `pid` (a child or not) to exit. True
// when it is gone.
bool WaitForExit(pid_t pid, int seconds);

}  // namespace vss::fuse
