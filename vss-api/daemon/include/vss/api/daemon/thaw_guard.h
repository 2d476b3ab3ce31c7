// ThawGuard: a helper process that thaws the filesystems this process froze
// if this process dies before it thaws them itself.
//
// The kernel does not thaw a frozen filesystem when the process that froze
// it dies (closing the descriptor does not). So the process that freezes
// (FsFreezer) keeps a small helper beside it, connected by a socketpair
// (SOCK_SEQPACKET), and tells it about every freeze before it happens:
//
//   freezer                               helper
//   WillFreeze(mp, fd) ── "F" mp + fd ──▶ keeps a duplicate of fd
//                      ◀──── "k" ──────── (the ack: only now may FIFREEZE run)
//   FIFREEZE fd
//   ...
//   FITHAW fd
//   Thawed(mp)         ── "T" mp ──────▶ closes its duplicate, forgets mp
//
// The descriptor travels with the message (SCM_RIGHTS), so the helper's
// FITHAW reaches the same superblock whatever happens to the path. When the
// socket reaches end of file, which the kernel arranges when the freezer
// dies however it dies (SIGKILL included), the helper FITHAWs every
// filesystem still listed (EINVAL, "not frozen", is fine), says so on its
// standard error, and exits; when nothing is listed (the freezer exited
// normally, or closed the guard) it exits at once and says nothing.
//
// A guest frozen through its QEMU guest agent (GuestFreezer,
// vss/api/guest_agent_writer.h) is listed the same way with
// WillFreezeGuest ("Q" name + the connected agent socket): at end of file
// the helper syncs with the agent on its duplicate of the connection and
// sends guest-fsfreeze-thaw. The duplicate keeps the connection open while
// listed; Thawed closes it.
//
// The helper is an executable run with posix_spawn (safe in a
// multithreaded process, unlike a bare fork): vssd runs itself
// (/proc/self/exe) as `vssd --thaw-guard FD`, whose main calls
// RunThawGuard(FD). The helper keeps nothing of its parent alive: it gets
// /dev/null as standard input and output, the parent's standard error (for
// its one message), its end of the socket, and closes every other
// descriptor at once. It runs in a session and process group of its own
// (setsid), so that a signal to the parent's process group (kill -KILL
// -PGID, a terminal's ^C) does not kill both, and it ignores SIGINT,
// SIGTERM, SIGHUP and SIGQUIT (a supervisor may signal every process of a
// service; the helper must outlive its parent by the moment it takes to
// thaw). Nothing protects it from SIGKILL sent to it directly, such as a
// supervisor's final kill of a whole control group. It does
// not use PR_SET_PDEATHSIG: that fires when the spawning *thread* exits,
// not the process. Instead, besides end of file, it checks once a second
// whether its parent changed (a descriptor leaked into another process
// would otherwise delay the end of file).
//
// Thread safety: a ThawGuard is not thread-safe; its owner serializes the
// calls (FsFreezer does under its mutex). RunThawGuard runs in its own
// process.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "vss/base/status.h"

namespace vss {

class ThawGuard {
 public:
  // Runs `command` (command[0] is the program, and the whole vector is its
  // argv) with the helper's end of the socket appended as a descriptor
  // number, e.g. {"/proc/self/exe", "--thaw-guard"} runs
  // `/proc/self/exe --thaw-guard 3`, and waits until the helper answers.
  // Fails (kInvalidArgument: empty command; kIoError: the program could not
  // be run or did not answer within a few seconds) with nothing left
  // running.
  [[nodiscard]] static StatusOr<std::unique_ptr<ThawGuard>> Start(
      const std::vector<std::string>& command);

  // Closes the socket, so that the helper exits (thawing what is still
  // listed, as if this process had died), and reaps it; a helper that has
  // not exited after a few seconds is killed.
  ~ThawGuard();
  ThawGuard(const ThawGuard&) = delete;
  ThawGuard& operator=(const ThawGuard&) = delete;

  // Tells the helper that the filesystem of `fd` (a descriptor of its
  // mountpoint `mountpoint`, which names it in messages) is about to be
  // frozen, and returns once the helper holds its own duplicate of `fd`.
  // REQUIRES: `mountpoint` is not listed already (the freezer freezes each
  // mountpoint once). kIoError if the helper is gone or did not answer
  // within a few seconds: then the filesystem must not be frozen, and the
  // guard is broken (see broken()).
  [[nodiscard]] Status WillFreeze(const std::string& mountpoint, int fd);

  // As WillFreeze, for a guest about to be frozen through its guest agent:
  // `fd` is the connected agent socket, `name` (the socket path) names the
  // guest and is forgotten by Thawed(name). If this process dies while it
  // is listed, the helper thaws the guest through the connection.
  [[nodiscard]] Status WillFreezeGuest(const std::string& name, int fd);

  // Tells the helper to forget `mountpoint`: it was thawed, or was not
  // frozen after all. Does not wait for an answer (messages are read in
  // order, so a Thawed sent before this process dies is seen before the end
  // of file). kIoError if the helper is gone; the guard is broken then.
  [[nodiscard]] Status Thawed(const std::string& mountpoint);

  // True once a call failed: the helper is gone or stuck; replace the
  // guard.
  bool broken() const { return broken_; }
  // The helper's process id.
  pid_t pid() const { return pid_; }

 private:
  ThawGuard(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  Status Send(char op, const std::string& mountpoint, int fd);
  Status AwaitAck(const std::string& what);

  pid_t pid_;
  int fd_;  // this process's end of the socketpair (close-on-exec)
  bool broken_ = false;
};

// The helper's side: serves `fd` (its end of the socketpair) until end of
// file, then thaws what is listed and returns the process's exit status
// (0; 1 if a thaw failed, or `fd` is not a socket). Prints one line on
// standard error per filesystem or guest it thaws or fails to thaw. Call it only in
// a process of its own (it closes every descriptor but 0, 1, 2 and `fd`,
// and changes signal dispositions).
int RunThawGuard(int fd);

}  // namespace vss
