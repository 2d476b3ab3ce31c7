// FsFreezeWriter: the built-in writer that freezes the filesystems mounted
// on this host from the volumes of a shadow copy set (FIFREEZE at Freeze,
// FITHAW at Thaw or Abort), so that a shadow of a loop-mounted volume is a
// clean filesystem image.
//
// Level: VSS_APP_SYSTEM. The coordinator freezes FRONT_END writers first,
// then BACK_END, then SYSTEM, and thaws in reverse. Applications flush their
// own state at FRONT_END/BACK_END through the filesystem; only after that
// may the filesystem itself stop taking writes, and it must take them again
// before the applications resume. So the fs freeze is the last to freeze
// and the first to thaw.
//
// Discovery (at PrepareForSnapshot, while every write still flows): a
// volume's filesystems are those mounted (/proc/self/mountinfo) from a loop
// device, or a partition of one (loopNpM), whose backing file
// (/sys/block/loopN/loop/backing_file) is the volume's image file (same
// device and inode), or answers getxattr("user.vss.volume") with the
// volume's id: that is how a `vssctl attach` FUSE file names its volume.
// A filesystem mounted at several places is frozen once.
//
// Never left frozen: a watchdog thaws everything when the writer's freeze
// window (the freeze timeout it registered with) runs out without Thaw or
// Abort, and the destructor thaws. If this process dies while a filesystem
// is frozen (SIGKILL, a crash), the kernel does not thaw it (closing the
// descriptor does not); given a thaw guard command, the freezer keeps a
// helper process (a ThawGuard, internal to vss-api) that is told of each freeze before
// the FIFREEZE and thaws what is still frozen when this process dies. vssd
// gives it one; without one, such a death leaves the filesystem frozen
// until `fsfreeze -u MOUNTPOINT`. A filesystem whose type cannot freeze
// (EOPNOTSUPP, e.g. vfat) is synced instead.
//
// Thread safety: FsFreezer's methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vss/api/hresult.h"
#include "vss/api/writer.h"
#include "vss/api/writer_event.h"
#include "vss/base/guid.h"

namespace vss {

namespace internal {
class FreezeWindow;  // the watchdog and thaw guard, internal to vss-api
}  // namespace internal

// The writer class id of FsFreezeWriter.
Guid FsFreezeWriterClassId();

// A mounted filesystem found on a volume.
struct FsMount {
  std::string volume;      // the store's volume name
  std::string device;      // "/dev/loop3p1"
  std::string dev;         // "7:49", major:minor of the device
  std::string mountpoint;  // the first mount of that device
};

// The filesystems mounted on this host from `volumes` (see the top of the
// file). Empty when there are none or /sys and /proc cannot be read.
std::vector<FsMount> FindMountedFilesystems(const std::vector<EventVolume>& volumes);

// Freezes mountpoints and guarantees they are thawed: by ThawAll, by the
// watchdog `window` after Freeze, or by the destructor; and, with a
// `guard_command` (ThawGuard::Start), by the guard's helper process if this
// process dies first.
class FsFreezer {
 public:
  // `guard_command` empty: no thaw guard (a death of this process while
  // frozen leaves the filesystems frozen).
  explicit FsFreezer(std::chrono::milliseconds window,
                     std::vector<std::string> guard_command = {});
  ~FsFreezer();
  FsFreezer(const FsFreezer&) = delete;
  FsFreezer& operator=(const FsFreezer&) = delete;

  // Starts the thaw guard's helper now (Freeze would at its first call), so
  // that a helper that cannot run is reported early. OK without a guard
  // command or when the helper runs; VSS_E_WRITERERROR_NONRETRYABLE with
  // the reason otherwise.
  VssStatus StartGuard();

  // Freezes each mountpoint in order and arms the watchdog. With a guard
  // command, the guard's helper is (re)started if it is not running and is
  // told of each mountpoint before its FIFREEZE; a mountpoint the helper
  // was not told of is never frozen. On the first failure (a helper that
  // cannot run or does not answer included), thaws the ones it froze and
  // returns VSS_E_WRITERERROR_RETRYABLE (EBUSY: already frozen by someone
  // else) or VSS_E_WRITERERROR_NONRETRYABLE, with a message.
  // VSS_E_BAD_STATE if something is still frozen.
  VssStatus Freeze(const std::vector<std::string>& mountpoints);
  // Thaws what is frozen and disarms the watchdog. The error names the
  // mountpoints that could not be thawed (they are forgotten anyway: a
  // second FITHAW would not do better).
  VssStatus ThawAll();

  std::vector<std::string> frozen() const;
  // True if the watchdog thawed since the last Freeze.
  bool watchdog_fired() const;
  // What happened, in order: "freeze /mnt", "sync /mnt" (cannot freeze),
  // "thaw /mnt", "watchdog thaw /mnt", "thaw failed /mnt: ...". For tests
  // and diagnostics; never printed.
  std::vector<std::string> events() const;
  // The process id of the thaw guard's helper; -1 when none runs.
  pid_t guard_pid() const;

 private:
  struct Frozen {
    std::string mountpoint;
    int fd;  // kept open: FITHAW goes to the same superblock
  };
  VssStatus ThawLocked(const char* why);

  mutable std::mutex mu_;
  std::vector<Frozen> frozen_;
  std::vector<std::string> events_;
  // The watchdog (it thaws when the window runs out) and the thaw guard;
  // guarded by mu_.
  std::unique_ptr<internal::FreezeWindow> window_;
};

class FsFreezeWriter final : public Writer {
 public:
  // `freeze_timeout_ms`: the freeze window registered with the coordinator
  // and the watchdog's delay. `guard_command`: the freezer's thaw guard
  // (FsFreezer above); vssd passes {"/proc/self/exe", "--thaw-guard"}.
  explicit FsFreezeWriter(uint32_t freeze_timeout_ms = 60000,
                          std::vector<std::string> guard_command = {});
  ~FsFreezeWriter() override;

  // Writer::Initialize with this writer's identity ("fsfreeze", SYSTEM
  // level, the class id above), after starting the thaw guard (its failure
  // is returned, VSS_E_WRITERERROR_NONRETRYABLE).
  VssStatus Initialize();

  // Identify is the default: no components and no files, so the writer
  // takes part in every set (BackupComponents picks the writers whose
  // metadata names no files for all sets) and finds its volumes itself.

  const FsFreezer& freezer() const { return freezer_; }

  bool OnPrepareSnapshot() override;
  bool OnFreeze() override;
  bool OnThaw() override;
  bool OnAbort() override;

 private:
  const uint32_t freeze_timeout_ms_;
  std::vector<FsMount> mounts_;  // found at PrepareForSnapshot
  FsFreezer freezer_;
};

}  // namespace vss
