// RawImage: a raw disk image held in a (normally sparse) regular file.
//
// Create() makes a new file of the given size with ftruncate (no data is
// written, so it is all hole). Extents come from SEEK_DATA/SEEK_HOLE,
// Discard and WriteZeroes punch holes (FALLOC_FL_PUNCH_HOLE |
// FALLOC_FL_KEEP_SIZE, falling back to writing zeroes where the file system
// cannot punch), Flush is fdatasync. Create() makes the file 0600 whatever
// the umask; Open() does not follow a symbolic link (O_NOFOLLOW: a path read
// from a store must name the image itself). The file is opened O_CLOEXEC and, unless
// read-only without lock, locked with flock(LOCK_EX|LOCK_NB) so that two
// writers never share an image: the second Open() fails with kBusy and a
// message naming the holder ("disk.img is in use by pid 1234 (vssctl)"),
// found in /proc/locks.
//
// Thread safety: positional I/O only; any number of threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "vss/formats/block_device.h"

namespace vss {

struct RawImageOptions {
  bool read_only = false;
  bool lock = true;  // exclusive advisory lock (shared lock when read_only)
};

class RawImage final : public BlockDevice {
 public:
  // Creates a new sparse image of `size` bytes. kAlreadyExists if the path
  // exists, kInvalidArgument for size 0. On failure no file is left.
  static StatusOr<std::unique_ptr<RawImage>> Create(const std::string& path,
                                                    uint64_t size,
                                                    RawImageOptions options = {});
  // Opens an existing image; its size is the file's size. kNotFound,
  // kInvalidArgument (not a regular file or block device, or size 0), kBusy,
  // kFailedPrecondition (the path is a symbolic link).
  static StatusOr<std::unique_ptr<RawImage>> Open(const std::string& path,
                                                  RawImageOptions options = {});
  ~RawImage() override;

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override;
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override;
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override;
  Status DoDiscard(uint64_t offset, uint64_t length) override;
  Status DoFlush() override;
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override;
  Status DoAllocate(uint64_t offset, uint64_t length) override;

 private:
  RawImage(std::string path, int fd, uint64_t size, bool read_only);
  std::string path_;
  int fd_;
};

}  // namespace vss
