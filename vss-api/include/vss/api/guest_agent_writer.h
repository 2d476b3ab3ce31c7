// GuestAgentWriter: the built-in writer that freezes the filesystems of a
// running virtual machine through its QEMU guest agent (qemu-ga), so that a
// shadow of a guest's disk image is a clean filesystem image, not only a
// crash-consistent one.
//
// A volume names its guest's agent socket in the store (`vssctl volume set
// VOLUME --guest-agent SOCKET`): the host end of the guest's
// virtio-serial port org.qemu.guest_agent.0, a Unix stream socket that
// QEMU (or libvirt) listens on. At PrepareForSnapshot the writer connects
// to the socket of each volume of the set that has one (volumes of one
// guest share it: the guest is frozen once) and checks that the agent
// answers; at Freeze it sends guest-fsfreeze-freeze and checks with
// guest-fsfreeze-status that the guest says "frozen"; at Thaw or Abort it
// sends guest-fsfreeze-thaw and checks that the guest says "thawed".
//
// The protocol (QEMU's qemu-ga reference): one JSON object per command,
// {"execute": NAME}; one JSON object per reply, {"return": VALUE} or
// {"error": {"class": ..., "desc": ...}}, each ended by a newline. A
// client first sends the byte 0xFF (which resets the agent's parser; qemu-ga
// answers it with a parse error) and guest-sync-delimited with an id of its
// own; the agent puts 0xFF before that reply, so everything before the 0xFF
// is stale (that error, an earlier client's unread reply) and is dropped,
// and replies are read until the one returning the id. Every read and
// write has a deadline: an agent that does not answer is an error, never a
// hang.
//
// Never left frozen, as FsFreezeWriter: a watchdog thaws the guests when
// the freeze window (the freeze timeout the writer registered with) runs
// out without Thaw or Abort, and Stop or the destructor thaws (vssd's
// SIGTERM: vssd calls Stop before its NBD server goes, since a guest's thaw
// writes to its disk, which vssd may be serving). If this process dies
// while a guest is frozen, its connection to the agent would close without
// a thaw (the agent keeps the guest frozen); given a thaw guard command,
// the freezer tells a ThawGuard helper of each freeze before sending it,
// passing the helper a duplicate of the connection, and the helper thaws
// the guest through it when this process dies (waiting up to 120 s for
// the answer: the guest's disk may have to come back first).
//
// Level: VSS_APP_SYSTEM (see fsfreeze_writer.h: the filesystems freeze
// after the applications and thaw before them).
//
// Thread safety: QgaClient is not thread-safe (one owner). GuestFreezer's
// and GuestAgentWriter's methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vss/api/hresult.h"
#include "vss/api/writer.h"
#include "vss/api/writer_event.h"
#include "vss/base/guid.h"
#include "vss/base/status.h"

namespace vss {

namespace internal {
class FreezeWindow;  // the watchdog and thaw guard, internal to vss-api
}  // namespace internal

// The writer class id of GuestAgentWriter.
Guid GuestAgentWriterClassId();

// A client of one QEMU guest agent connection.
class QgaClient {
 public:
  // Adopts `fd`, a connected stream socket to an agent (closed by the
  // destructor). `name` (the socket path) names the agent in messages;
  // `timeout` bounds each command from its write to its reply.
  QgaClient(int fd, std::string name, std::chrono::milliseconds timeout);
  ~QgaClient();
  QgaClient(const QgaClient&) = delete;
  QgaClient& operator=(const QgaClient&) = delete;

  // Connects to the agent socket `path`. kInvalidArgument: the path does
  // not fit a socket address; kIoError: nothing listens there (the
  // message names the path).
  static StatusOr<std::unique_ptr<QgaClient>> Connect(
      const std::string& path, std::chrono::milliseconds timeout);

  // Sends 0xFF and guest-sync-delimited with a fresh id, drops everything
  // up to the agent's 0xFF, then reads replies until the one returning that
  // id. kIoError naming the agent if it does not answer within the
  // timeout, closes the connection, or answers with an error.
  Status Sync();
  // guest-ping. Errors as Execute.
  Status Ping();
  // guest-fsfreeze-freeze: the number of filesystems the guest froze.
  StatusOr<int64_t> FsFreezeFreeze();
  // guest-fsfreeze-thaw: the number of filesystems the guest thawed.
  StatusOr<int64_t> FsFreezeThaw();
  // guest-fsfreeze-status: "frozen" or "thawed".
  StatusOr<std::string> FsFreezeStatus();

  // Runs `command` (no arguments) and returns its reply's "return" value
  // as JSON text. kIoError naming the agent and the command: no reply
  // within the timeout, the connection closed, a reply that is not JSON;
  // kFailedPrecondition with the agent's "desc": an error reply. After a
  // timeout the next reply may be this one's: Sync before reusing.
  StatusOr<std::string> Execute(const std::string& command);

  int fd() const { return fd_; }
  const std::string& name() const { return name_; }

 private:
  using Deadline = std::chrono::steady_clock::time_point;
  Status SendAll(const std::string& bytes, Deadline deadline);
  // Reads more bytes into buf_; kIoError on timeout or end of file.
  Status Fill(Deadline deadline, const std::string& what);
  // The next newline-ended line of buf_ (without the newline).
  StatusOr<std::string> ReadLine(Deadline deadline, const std::string& what);

  int fd_;
  std::string name_;
  std::chrono::milliseconds timeout_;
  std::string buf_;  // received, not yet consumed
};

// Freezes guests through their agents and guarantees they are thawed: by
// ThawAll, by the watchdog `window` after Freeze, or by the destructor;
// and, with a `guard_command` (ThawGuard::Start), by the guard's helper if
// this process dies first.
class GuestFreezer {
 public:
  // `agent_timeout`: the bound on each agent command. `guard_command`
  // empty: no thaw guard. `log`: told one line per freeze and thaw (may be
  // empty).
  GuestFreezer(std::chrono::milliseconds window,
               std::chrono::milliseconds agent_timeout,
               std::vector<std::string> guard_command = {},
               std::function<void(const std::string&)> log = {});
  ~GuestFreezer();
  GuestFreezer(const GuestFreezer&) = delete;
  GuestFreezer& operator=(const GuestFreezer&) = delete;

  // Starts the thaw guard's helper now. OK without a guard command or when
  // the helper runs; VSS_E_WRITERERROR_NONRETRYABLE with the reason
  // otherwise.
  VssStatus StartGuard();

  // Connects to each agent socket (duplicates dropped) and syncs with it,
  // replacing earlier connections. VSS_E_WRITERERROR_RETRYABLE naming the
  // socket that cannot be reached or does not answer within the agent
  // timeout (nothing stays connected then); VSS_E_BAD_STATE while frozen.
  VssStatus Prepare(const std::vector<std::string>& sockets);
  // Freezes each prepared guest in order (guest-fsfreeze-freeze, then
  // guest-fsfreeze-status must say "frozen") and arms the watchdog; with a
  // guard, the helper is told of each guest before its freeze. On the
  // first failure, thaws every guest it sent a freeze to (the failing one
  // included: a freeze that timed out may still complete) and returns
  // VSS_E_WRITERERROR_RETRYABLE with a one-line message naming the socket.
  VssStatus Freeze();
  // Thaws what is frozen (guest-fsfreeze-thaw, then guest-fsfreeze-status
  // must say "thawed"), disarms the watchdog and closes the connections.
  // The error names the sockets whose guests could not be thawed.
  VssStatus ThawAll();

  // The sockets of the guests frozen now.
  std::vector<std::string> frozen() const;
  // True if the watchdog thawed since the last Freeze.
  bool watchdog_fired() const;
  // What happened, in order: "freeze SOCK (N filesystems)", "status frozen
  // SOCK", "thaw SOCK", "status thawed SOCK", "watchdog thaw SOCK",
  // "freeze failed SOCK: ...", "thaw failed SOCK: ...". For tests and
  // diagnostics.
  std::vector<std::string> events() const;

 private:
  struct Guest {
    std::unique_ptr<QgaClient> client;
    bool frozen = false;   // a freeze was sent (maybe not completed)
    bool guarded = false;  // the helper holds a duplicate of the connection
  };
  VssStatus FreezeOne(Guest& g);
  Status ThawOne(Guest& g, const char* why);
  VssStatus ThawLocked(const char* why);
  void Note(const std::string& line);

  const std::chrono::milliseconds agent_timeout_;
  const std::function<void(const std::string&)> log_;
  mutable std::mutex mu_;
  std::vector<Guest> guests_;  // prepared, in order
  bool armed_ = false;         // frozen, or freezing
  std::vector<std::string> events_;
  // The watchdog (it thaws when the window runs out) and the thaw guard;
  // guarded by mu_.
  std::unique_ptr<internal::FreezeWindow> window_;
};

// Options of GuestAgentWriter.
struct GuestAgentWriterOptions {
  // The freeze window registered with the coordinator and the watchdog's
  // delay.
  uint32_t freeze_timeout_ms = 60000;
  // The bound on each agent command (connect, sync, freeze, thaw, status).
  uint32_t agent_timeout_ms = 10000;
  // The agent socket of a volume of a set, or "" when it has none. Called
  // at PrepareForSnapshot; required.
  std::function<std::string(const EventVolume&)> socket_of;
  // The thaw guard (see above); vssd passes {"/proc/self/exe",
  // "--thaw-guard"}.
  std::vector<std::string> guard_command;
  // One line per freeze and thaw of a guest (may be empty).
  std::function<void(const std::string&)> log;
};

class GuestAgentWriter final : public Writer {
 public:
  explicit GuestAgentWriter(GuestAgentWriterOptions options);
  ~GuestAgentWriter() override;

  // Writer::Initialize with this writer's identity ("guest-agent", SYSTEM
  // level, the class id above); E_INVALIDARG without options.socket_of.
  // The thaw guard starts at the first Freeze of a guest (a failure to
  // start it fails that Freeze), so a vssd without guests runs only the
  // fsfreeze writer's guard. Like FsFreezeWriter, it
  // names no files, so it takes part in every set, and does nothing in a
  // set none of whose volumes has an agent socket.
  VssStatus Initialize();

  // Unsubscribes (waiting for a running handler) and thaws what is frozen,
  // as the destructor does. vssd calls it when told to stop, before its
  // NBD server goes: a guest whose disk vssd serves cannot thaw without
  // its disk (the thaw writes to it).
  void Stop();

  const GuestFreezer& freezer() const { return freezer_; }

  bool OnPrepareSnapshot() override;
  bool OnFreeze() override;
  bool OnThaw() override;
  bool OnAbort() override;

 private:
  const GuestAgentWriterOptions options_;
  GuestFreezer freezer_;
};

}  // namespace vss
