// File and FileSystem: the small interface to the OS that the diff area and
// other on-disk structures use for plain files (LevelDB's Env idea), so that
// tests can put an in-memory, fault-injecting or power-loss file system
// under the engine without changing it.
//
// Durability contract: WriteAt, Truncate and PunchHole may be lost by a power
// loss until Sync() on that file returns OK. A created or removed file name
// is durable once SyncDir() on its directory returns OK; directories made by
// CreateDirs() are durable when it returns.
//
// Privacy and links (the real file system; fakes may ignore them): files
// created by Open() are 0600 and directories created by CreateDirs() 0700,
// whatever the umask; Open() does not follow a symbolic link in the last
// component of the path.
//
// Thread safety: a File may be used from many threads at once (positional
// I/O only); FileSystem methods are thread safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vss/base/status.h"

namespace vss {

class File {
 public:
  virtual ~File() = default;

  // Reads up to buf.size() bytes at offset; returns the count read, which is
  // smaller only at end of file.
  [[nodiscard]] virtual StatusOr<size_t> ReadAt(uint64_t offset,
                                                std::span<uint8_t> buf) = 0;
  // Writes all of buf at offset, extending the file if needed.
  [[nodiscard]] virtual Status WriteAt(uint64_t offset,
                                       std::span<const uint8_t> buf) = 0;
  // fdatasync: earlier writes, truncates and hole punches become durable.
  [[nodiscard]] virtual Status Sync() = 0;
  // Deallocates [offset, offset+length); it then reads as zeroes. The size
  // does not change.
  [[nodiscard]] virtual Status PunchHole(uint64_t offset, uint64_t length) = 0;
  [[nodiscard]] virtual Status Truncate(uint64_t size) = 0;
  [[nodiscard]] virtual StatusOr<uint64_t> Size() = 0;
  // Bytes actually allocated on the medium (st_blocks * 512 for POSIX).
  [[nodiscard]] virtual StatusOr<uint64_t> AllocatedBytes() = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // The real file system (POSIX calls, O_CLOEXEC). Never null; not owned.
  static FileSystem* Default();

  // Opens path read-write; creates it empty (mode 0600) if `create` and it
  // is missing. kNotFound if it is missing and !create; kFailedPrecondition
  // if the path is a symbolic link.
  [[nodiscard]] virtual StatusOr<std::unique_ptr<File>> Open(
      const std::string& path, bool create) = 0;
  [[nodiscard]] virtual Status Remove(const std::string& path) = 0;
  // Creates the directory and its missing parents (mkdir -p), each 0700,
  // each made durable in its parent (synced) before the call returns.
  [[nodiscard]] virtual Status CreateDirs(const std::string& path) = 0;
  // Names (not paths) of the entries in a directory, sorted.
  [[nodiscard]] virtual StatusOr<std::vector<std::string>> List(
      const std::string& dir) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // fsync on the directory: creations and removals in it become durable.
  [[nodiscard]] virtual Status SyncDir(const std::string& dir) = 0;
  // The canonical absolute path of an existing `path` (symbolic links, "."
  // and ".." resolved; realpath(3) for the real file system). kNotFound if
  // it does not exist. The default, for file systems without links, makes
  // the path absolute and lexically normal without looking it up.
  [[nodiscard]] virtual StatusOr<std::string> RealPath(const std::string& path);
};

}  // namespace vss
