#include "vss/formats/raw_image.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "extent_builder.h"

namespace vss {
namespace {

constexpr size_t kZeroChunk = 64 * 1024;

Status PathError(int err, const std::string& path, std::string_view what) {
  return ErrnoError(err, path + ": " + std::string(what));
}

// The pid holding a lock on the file (dev, ino) according to /proc/locks,
// or 0. Lines look like "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
// (blocked waiters have "->" after the id); the device is hex major:minor.
pid_t FindLockHolder(dev_t dev, ino_t ino) {
  std::ifstream locks("/proc/locks");
  std::string line;
  while (std::getline(locks, line)) {
    std::istringstream in(line);
    std::string id, type, mode, access, where;
    long pid = 0;
    in >> id >> type;
    if (type == "->") continue;  // a waiter, not a holder
    if (!(in >> mode >> access >> pid >> where)) continue;
    unsigned maj = 0, min = 0;
    unsigned long long inode = 0;
    if (std::sscanf(where.c_str(), "%x:%x:%llu", &maj, &min, &inode) != 3) {
      continue;
    }
    if (maj == major(dev) && min == minor(dev) && inode == ino && pid > 0) {
      return static_cast<pid_t>(pid);
    }
  }
  return 0;
}

std::string ProcessName(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name.empty() ? "unknown" : name;
}

// Takes the advisory lock: exclusive for writers, shared for readers. On
// conflict the message names the holder when /proc/locks shows it.
Status Lock(int fd, const std::string& path, bool shared) {
  int rc;
  do {
    rc = flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Status();
  if (errno != EWOULDBLOCK) return PathError(errno, path, "flock");
  struct stat st;
  pid_t holder = fstat(fd, &st) == 0 ? FindLockHolder(st.st_dev, st.st_ino) : 0;
  if (holder == 0) return BusyError(path + " is in use by another process");
  return BusyError(path + " is in use by pid " + std::to_string(holder) + " (" +
                   ProcessName(holder) + ")");
}

// The size of an opened image: a regular file's length or a block device's
// capacity. kInvalidArgument for anything else, or for size 0.
StatusOr<uint64_t> ImageSize(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) < 0) return PathError(errno, path, "fstat");
  uint64_t size = 0;
  if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
  } else if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
      return PathError(errno, path, "BLKGETSIZE64");
    }
  } else {
    return InvalidArgumentError(path +
                                " is not a regular file or block device");
  }
  if (size == 0) return InvalidArgumentError(path + " is empty (size 0)");
  return size;
}

Status WriteZeroBuffers(int fd, const std::string& path, uint64_t offset,
                        uint64_t length) {
  static const std::vector<uint8_t> zeroes(kZeroChunk, 0);
  while (length > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(length, kZeroChunk));
    ssize_t done = pwrite(fd, zeroes.data(), n, static_cast<off_t>(offset));
    if (done < 0) {
      if (errno == EINTR) continue;
      return PathError(errno, path, "write");
    }
    offset += static_cast<uint64_t>(done);
    length -= static_cast<uint64_t>(done);
  }
  return Status();
}

// Punches a hole; where the file system cannot, writes zeroes instead.
Status PunchOrZero(int fd, const std::string& path, uint64_t offset,
                   uint64_t length) {
  int rc;
  do {
    rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   static_cast<off_t>(offset), static_cast<off_t>(length));
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Status();
  if (errno == EOPNOTSUPP || errno == ENOSYS || errno == ENODEV) {
    return WriteZeroBuffers(fd, path, offset, length);
  }
  return PathError(errno, path, "punch hole");
}

// lseek(SEEK_DATA / SEEK_HOLE) from pos; returns `fallback` when ENXIO says
// there is no more data (only a hole) up to the end of the file.
StatusOr<uint64_t> SeekExtent(int fd, const std::string& path, uint64_t pos,
                              int whence, uint64_t fallback) {
  off_t r = lseek(fd, static_cast<off_t>(pos), whence);
  if (r >= 0) return static_cast<uint64_t>(r);
  if (errno == ENXIO) return fallback;
  return PathError(errno, path,
                   whence == SEEK_DATA ? "seek data" : "seek hole");
}

}  // namespace

RawImage::RawImage(std::string path, int fd, uint64_t size, bool read_only)
    : BlockDevice(path, size, read_only), path_(std::move(path)), fd_(fd) {}

RawImage::~RawImage() { close(fd_); }  // also releases the flock

StatusOr<std::unique_ptr<RawImage>> RawImage::Create(const std::string& path,
                                                     uint64_t size,
                                                     RawImageOptions options) {
  if (size == 0) return InvalidArgumentError(path + ": image size must be > 0");
  if (size > static_cast<uint64_t>(INT64_MAX)) {
    return InvalidArgumentError(path + ": image size too large");
  }
  // O_EXCL: never through a link, never over an existing file. The image is
  // private (0600) whatever the umask: it holds someone's data.
  int fd = open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return AlreadyExistsError(path + " already exists");
    return PathError(errno, path, "create");
  }
  // From here on, every failure removes the file it created.
  Status status;
  if (fchmod(fd, 0600) < 0) {
    status = PathError(errno, path, "chmod 0600");
  } else if (ftruncate(fd, static_cast<off_t>(size)) < 0) {
    status = PathError(errno, path, "set size");
  } else if (options.lock) {
    status = Lock(fd, path, options.read_only);
  }
  if (!status.ok()) {
    close(fd);
    unlink(path.c_str());
    return status;
  }
  return std::unique_ptr<RawImage>(
      new RawImage(path, fd, size, options.read_only));
}

StatusOr<std::unique_ptr<RawImage>> RawImage::Open(const std::string& path,
                                                   RawImageOptions options) {
  // O_NOFOLLOW: image paths come from a store's catalog, and a link put in
  // their place must not redirect our writes.
  int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW;
  int fd = open(path.c_str(), flags);
  if (fd < 0) {
    if (errno == ENOENT) return NotFoundError(path + " does not exist");
    if (errno == ELOOP) {
      return FailedPreconditionError(
          path + " is a symbolic link; vss opens images only by their real path");
    }
    return PathError(errno, path, "open");
  }
  StatusOr<uint64_t> size = ImageSize(fd, path);
  Status status = size.status();
  if (status.ok() && options.lock) status = Lock(fd, path, options.read_only);
  if (!status.ok()) {
    close(fd);
    return status;
  }
  return std::unique_ptr<RawImage>(
      new RawImage(path, fd, *size, options.read_only));
}

Status RawImage::DoRead(uint64_t offset, std::span<uint8_t> buf) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = pread(fd_, buf.data() + done, buf.size() - done,
                      static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PathError(errno, path_, "read at " + std::to_string(offset));
    }
    if (n == 0) {
      return IoError(path_ + ": unexpected end of file at " +
                     std::to_string(offset + done) + " (file shrank?)");
    }
    done += static_cast<size_t>(n);
  }
  return Status();
}

Status RawImage::DoWrite(uint64_t offset, std::span<const uint8_t> buf) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = pwrite(fd_, buf.data() + done, buf.size() - done,
                       static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PathError(errno, path_, "write at " + std::to_string(offset));
    }
    done += static_cast<size_t>(n);
  }
  return Status();
}

Status RawImage::DoWriteZeroes(uint64_t offset, uint64_t length) {
  return PunchOrZero(fd_, path_, offset, length);
}

Status RawImage::DoDiscard(uint64_t offset, uint64_t length) {
  return PunchOrZero(fd_, path_, offset, length);
}

// Makes completed writes and punched holes durable on the medium.
Status RawImage::DoFlush() {
  int rc;
  do {
    rc = fdatasync(fd_);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return PathError(errno, path_, "fdatasync");
  return Status();
}

// fallocate mode 0 allocates the blocks of the range that are holes and
// keeps the data of those that are not, so what the range reads as does
// not change. On an allocated range it changes nothing and costs one call.
// A block device or a file system without fallocate cannot reserve: OK, and
// a later write may still meet ENOSPC there.
Status RawImage::DoAllocate(uint64_t offset, uint64_t length) {
  int rc;
  do {
    rc = fallocate(fd_, 0, static_cast<off_t>(offset),
                   static_cast<off_t>(length));
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Status();
  if (errno == EOPNOTSUPP || errno == ENOSYS || errno == ENODEV) {
    return Status();
  }
  return PathError(errno, path_,
                   "allocate " + std::to_string(length) + " bytes at " +
                       std::to_string(offset));
}

// Walks data and holes with SEEK_DATA/SEEK_HOLE. Where the file (or block
// device) cannot tell, the whole range is reported allocated.
StatusOr<std::vector<Extent>> RawImage::DoExtents(uint64_t offset,
                                                  uint64_t length) {
  const uint64_t end = offset + length;
  ExtentBuilder builder;
  uint64_t pos = offset;
  while (pos < end) {
    StatusOr<uint64_t> data = SeekExtent(fd_, path_, pos, SEEK_DATA, end);
    if (!data.ok() && data.status().code() == StatusCode::kInvalidArgument) {
      builder.Add(pos, end - pos, true);  // no SEEK_DATA support
      break;
    }
    if (!data.ok()) return data.status();
    uint64_t data_start = std::min(*data, end);
    builder.Add(pos, data_start - pos, false);
    if (data_start >= end) break;
    VSS_ASSIGN_OR_RETURN(uint64_t hole,
                         SeekExtent(fd_, path_, data_start, SEEK_HOLE, end));
    uint64_t data_end = std::min(std::max(hole, data_start + 1), end);
    builder.Add(data_start, data_end - data_start, true);
    pos = data_end;
  }
  return builder.Take();
}

}  // namespace vss
