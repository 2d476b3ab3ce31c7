// Host mounts around vssctl's FUSE file systems: the mount table, finding
// and mounting the filesystem inside an exposed image read-only through a
// read-only loop device, and taking all of it down again.
//
// A vssctl FUSE mount is recognised in /proc/self/mountinfo by its type
// "fuse.vss"; its source is "vssctl:<pid>", the pid of the server process.
//
// Filesystems are found with blkid (util-linux), loop devices are set up
// with losetup and filesystems mounted with mount(2) read-only, never
// writing to the image (it is a shadow, often a crash-consistent copy of a
// mounted filesystem whose journal is dirty):
//   ext3, ext4  ro,noload        xfs  ro,norecovery,nouuid
//   ext2        ro               vfat ro
// all with nosuid,nodev,noexec (nothing of a shadow runs from the mount),
// on a read-only loop device of the image. XFS and ext3/ext4 are the
// exception when the caller offers a replay file (a writable overlay of the
// image, see overlay_device.h): they keep recent metadata in their log or
// journal until it is checkpointed, so without replay the files written
// shortly before the shadow may be missing. The filesystem is then mounted
// ro (XFS: ro,nouuid), also nosuid,nodev,noexec, from a read-write loop
// device of the replay file, and the kernel replays the log into the
// overlay; if that mount fails, the image is mounted as above.
//
// Thread safety: plain functions; they run external programs.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "vss/base/status.h"

namespace vss::fuse {

struct MountEntry {
  std::string source;       // device or fsname ("vssctl:1234", "/dev/loop3")
  std::string mount_point;  // absolute, unescaped
  std::string fs_type;      // "fuse.vss", "ext4", ...
};

// The mounts of this process's namespace, in mount order.
StatusOr<std::vector<MountEntry>> ReadMountTable();

// The filesystem type blkid finds in `path` ("ext4", "xfs", "vfat", ...),
// or "" when it recognises none. kUnsupported when blkid is missing.
StatusOr<std::string> ProbeFilesystem(const std::string& path);

// Why `fs_type` cannot be mounted by MountReadOnly ("" when it can): a type
// it does not know how to mount without journal replay, or one the running
// kernel has no driver for (/proc/filesystems).
std::string WhyNotMountable(const std::string& fs_type);

struct FilesystemMount {
  std::string image;        // the image file holding the filesystem
  std::string fs_type;      // from ProbeFilesystem
  std::string mount_point;  // an existing directory
  // Optional: a writable overlay of `image` to replay an XFS log or an
  // ext3/ext4 journal into.
  std::string replay_file;
};
struct MountedFilesystem {
  std::string loop_device;  // "/dev/loop3"
  bool log_replayed = false;  // mounted from the replay file
};

// Mounts the filesystem of `m.image` on `m.mount_point` read-only through a
// loop device (see above). On failure every loop device set up is detached
// again; the error names the image.
StatusOr<MountedFilesystem> MountReadOnly(const FilesystemMount& m);

// Takes down the vssctl FUSE mount at `target` (a directory or an attached
// file): unmounts every filesystem mounted beneath it (deepest first),
// detaches the loop devices whose backing file lies in it, unmounts it and
// waits up to 10 s for its server to exit. kNotFound if nothing is mounted
// there, kInvalidArgument if it is not a vssctl mount, kBusy when a mount
// or the file system is still in use (what was already undone stays so).
// Returns the server's pid.
StatusOr<pid_t> UnmountTree(const std::string& target);

// The absolute, normalised form of `path` without following symlinks or
// touching the file system (a dead FUSE mount cannot be stat'ed).
std::string AbsolutePath(const std::string& path);

}  // namespace vss::fuse
