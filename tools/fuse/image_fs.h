// ImageFs: a FUSE file system (libfuse3, high-level API) that shows byte
// ranges of BlockDevices as regular files.
//
// Two shapes:
//   - a directory (vssctl mount): one read-only file per ImageFile, plus
//     empty directories to mount filesystems on. Every open for writing,
//     write, create, truncate, setattr, link, rename and removal is refused
//     with EROFS: by the kernel (the mount is "ro") and again here. The one
//     exception is a scratch file (ImageFile::scratch, for journal replay):
//     it takes writes, which its device keeps to itself (an
//     OverlayDevice), is not listed by readdir and is mode 0600; a mount
//     with scratch files is not "ro" for the kernel, so the refusals of
//     everything else come from here alone.
//   - a single file (vssctl attach): the mount point is a regular file and
//     the root of the file system is files[0] itself, read-write when
//     `writable`. Its size is fixed (truncate to another size: EPERM);
//     fsync, and flush (close) after a write, flush the device; fallocate
//     punch-hole and zero-range become Discard and WriteZeroes. Opened with
//     direct_io, so every write reaches the device and nothing is cached
//     twice; read-only files use the page cache (they never change).
//
// read() returns EIO when the device fails (a damaged diff-area record),
// and the server keeps serving. lseek SEEK_DATA / SEEK_HOLE come from the
// device's Extents().
//
// Ownership: devices are not owned and must outlive the ImageFs. Thread
// safety: Run() serves requests from several threads; the devices must be
// thread-safe (BlockDevice's contract).
#pragma once

#include <atomic>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "vss/formats/block_device.h"
#include "vss/base/status.h"

struct fuse;

namespace vss::fuse {

// One file: [offset, offset + size) of `device`.
struct ImageFile {
  std::string name;  // file name (ignored for a single-file mount)
  BlockDevice* device = nullptr;
  uint64_t offset = 0;
  uint64_t size = 0;
  // Directory shape only: a hidden writable file whose device keeps every
  // write to itself (see the header comment).
  bool scratch = false;
};

struct ImageFsConfig {
  std::vector<ImageFile> files;
  std::vector<std::string> dirs;  // empty directories (directory shape)
  bool single_file = false;       // the mount point is files[0]
  bool writable = false;          // single_file only
  std::string fsname;             // shown as the mount's source
  time_t mtime = 0;               // times shown for every entry
  // Extended attributes of the single file (read-only): an attached volume
  // answers "user.vss.volume" with its id, which is how the fsfreeze
  // writer recognises loop devices backed by it.
  std::map<std::string, std::string> xattrs;
};

class ImageFs {
 public:
  // Mounts the file system on `mountpoint` (a directory, or a regular file
  // for single_file). kInvalidArgument for a bad config, kFailedPrecondition
  // when the kernel refuses the mount (no /dev/fuse, not permitted).
  static StatusOr<std::unique_ptr<ImageFs>> Mount(
      ImageFsConfig config, const std::string& mountpoint);
  // Unmounts if still mounted and frees the FUSE session.
  ~ImageFs();
  ImageFs(const ImageFs&) = delete;
  ImageFs& operator=(const ImageFs&) = delete;

  // Serves requests until the file system is unmounted (umount, vssctl
  // unmount) or SIGTERM, SIGINT or SIGHUP arrives.
  Status Run();

  const ImageFsConfig& config() const { return config_; }
  // Marks that a write happened since the last flush (for flush on close).
  std::atomic<bool>& dirty() { return dirty_; }

 private:
  explicit ImageFs(ImageFsConfig config) : config_(std::move(config)) {}

  ImageFsConfig config_;
  struct ::fuse* fuse_ = nullptr;
  bool mounted_ = false;
  std::atomic<bool> dirty_{false};
};

}  // namespace vss::fuse
