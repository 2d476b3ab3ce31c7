// FsVfs: a SQLite VFS whose files live in a vss::FileSystem, so that the
// catalog (catalog.db, catalog.db-wal, a rollback journal while the file is
// being switched to WAL) can be put on the same in-memory, fault-injecting
// or power-loss file system as the diff area (SQLite's test_vfs.c idea).
// A power cut of a MemFileSystem then loses, keeps or tears the catalog's
// unsynced writes exactly as it does the segments'.
//
// What goes where:
//   - open, read, write, truncate, sync, file size: the FileSystem's File;
//     xSync is File::Sync (fdatasync). As SQLite's unix VFS does, the first
//     sync of a WAL or journal opened with SQLITE_OPEN_CREATE also syncs its
//     directory (so the new name is durable), and xDelete syncs the
//     directory when SQLite asks for it. No directory sync is made for the
//     main database file itself; a new database's name becomes durable with
//     the first journal's (SQLite writes a new database through one).
//   - delete, access: FileSystem::Remove and Exists (a zero-length regular
//     file counts as missing for SQLITE_ACCESS_EXISTS, as in the unix VFS).
//   - full pathname: the name made absolute against the working directory.
//   - temporary files SQLite opens without a name (sorting, temp tables):
//     the default VFS; they never need to survive anything.
//   - file locks (xLock, xUnlock, xCheckReservedLock): in-process locks with
//     SQLite's SHARED / RESERVED / PENDING / EXCLUSIVE rules, per path.
//   - WAL shared memory (xShmMap, xShmLock, xShmBarrier, xShmUnmap): an
//     in-process heap buffer per database path, with in-process locks on its
//     eight lock slots, freed when the last connection unmaps it. A new
//     buffer is zeroed, so the first connection after all were closed (a
//     crash, a power loss) rebuilds the WAL index from the WAL, as after a
//     reboot. The catalog therefore keeps its usual WAL mode with normal
//     locking; no -shm file is ever created.
//
// Limits: locks and shared memory live in this process only. Two processes
// must never open the same database through an FsVfs at the same time
// (tests open one process's catalog at a time); between processes nothing is
// shared but the files. io methods are version 2 (no memory mapping).
// After a simulated power loss, close every connection to a database before
// opening it again: a live connection's WAL index describes the WAL as it
// was before the cut.
//
// Lifetime and threads: one FsVfs per FileSystem at a time, registered with
// SQLite under a name unique in the process ("vss-fs-<n>") and unregistered
// when the last shared_ptr to it is released. REQUIRES: the FileSystem
// outlives its FsVfs, and every connection opened through it is closed
// before the last reference goes. All methods are thread safe.
#pragma once

#include <memory>
#include <string>

#include "vss/base/file.h"
#include "vss/base/status.h"

namespace vss::metadata {

class FsVfs {
 public:
  // The VFS serving `fs`: the one already registered for it if any
  // connection still holds it, else a new one registered with SQLite.
  // kIoError if SQLite refuses the registration. REQUIRES: fs != nullptr.
  [[nodiscard]] static StatusOr<std::shared_ptr<FsVfs>> For(FileSystem* fs);
  ~FsVfs();
  FsVfs(const FsVfs&) = delete;
  FsVfs& operator=(const FsVfs&) = delete;

  // The name to pass to sqlite3_open_v2 as its zVfs argument.
  const std::string& name() const;
  FileSystem* fs() const;

  struct State;  // private: the sqlite3_vfs, the lock and shm tables

 private:
  explicit FsVfs(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace vss::metadata
