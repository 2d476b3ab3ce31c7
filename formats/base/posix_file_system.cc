// FileSystem::Default(): the real file system through POSIX calls. Every
// descriptor is O_CLOEXEC; positional I/O loops over EINTR and short counts.
// Files are opened O_NOFOLLOW (paths come from a store's catalog, and a
// symbolic link planted there must not redirect our writes); files we create
// are 0600 and directories 0700 whatever the umask, set with fchmod on the
// descriptor we created.

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "vss/base/file.h"

namespace vss {
namespace {

Status PathError(int err, const std::string& path, std::string_view what) {
  return ErrnoError(err, path + ": " + std::string(what));
}

// Retries a system call returning -1/errno while it is interrupted.
template <typename F>
auto RetryOnEintr(F f) {
  decltype(f()) rc;
  do {
    rc = f();
  } while (rc < 0 && errno == EINTR);
  return rc;
}

class PosixFile final : public File {
 public:
  PosixFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixFile() override { close(fd_); }

  StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = RetryOnEintr([&] {
        return pread(fd_, buf.data() + done, buf.size() - done,
                     static_cast<off_t>(offset + done));
      });
      if (n < 0) return PathError(errno, path_, "read");
      if (n == 0) break;  // end of file
      done += static_cast<size_t>(n);
    }
    return done;
  }

  Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) override {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = RetryOnEintr([&] {
        return pwrite(fd_, buf.data() + done, buf.size() - done,
                      static_cast<off_t>(offset + done));
      });
      if (n < 0) return PathError(errno, path_, "write");
      done += static_cast<size_t>(n);
    }
    return Status();
  }

  // Orders every earlier write, truncate and punch before what follows.
  Status Sync() override {
    if (RetryOnEintr([&] { return fdatasync(fd_); }) < 0) {
      return PathError(errno, path_, "fdatasync");
    }
    return Status();
  }

  Status PunchHole(uint64_t offset, uint64_t length) override {
    if (length == 0) return Status();
    int rc = RetryOnEintr([&] {
      return fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                       static_cast<off_t>(offset), static_cast<off_t>(length));
    });
    if (rc == 0) return Status();
    if (errno == EOPNOTSUPP) return ZeroFill(offset, length);
    return PathError(errno, path_, "punch hole");
  }

  Status Truncate(uint64_t size) override {
    if (RetryOnEintr([&] { return ftruncate(fd_, static_cast<off_t>(size)); }) <
        0) {
      return PathError(errno, path_, "truncate");
    }
    return Status();
  }

  StatusOr<uint64_t> Size() override {
    VSS_ASSIGN_OR_RETURN(struct stat st, Stat());
    return static_cast<uint64_t>(st.st_size);
  }

  StatusOr<uint64_t> AllocatedBytes() override {
    VSS_ASSIGN_OR_RETURN(struct stat st, Stat());
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }

 private:
  StatusOr<struct stat> Stat() {
    struct stat st;
    if (fstat(fd_, &st) < 0) return PathError(errno, path_, "fstat");
    return st;
  }

  // Fallback where the file system cannot punch: zeroes inside the file's
  // current size (the size does not change).
  Status ZeroFill(uint64_t offset, uint64_t length) {
    VSS_ASSIGN_OR_RETURN(uint64_t size, Size());
    if (offset >= size) return Status();
    length = std::min(length, size - offset);
    std::vector<uint8_t> zeroes(std::min<uint64_t>(length, 1 << 20), 0);
    while (length > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(length, zeroes.size()));
      VSS_RETURN_IF_ERROR(WriteAt(offset, std::span(zeroes.data(), n)));
      offset += n;
      length -= n;
    }
    return Status();
  }

  std::string path_;
  int fd_;
};

constexpr mode_t kFileMode = 0600;
constexpr mode_t kDirMode = 0700;

// The parent directory of `path` ("/" for "/x", "." for "x").
std::string Parent(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status FsyncDir(const std::string& dir) {
  int fd = RetryOnEintr(
      [&] { return open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (fd < 0) return PathError(errno, dir, "open directory");
  int rc = RetryOnEintr([&] { return fsync(fd); });
  int err = errno;
  close(fd);
  if (rc < 0) return PathError(err, dir, "fsync directory");
  return Status();
}

// Gives a directory we have just made the private mode the umask may have
// narrowed or widened, through a descriptor so that a name swapped in
// between is not followed.
Status MakeDirPrivate(const std::string& dir) {
  int fd = RetryOnEintr([&] {
    return open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  });
  if (fd < 0) return PathError(errno, dir, "open directory");
  int rc = fchmod(fd, kDirMode);
  int err = errno;
  close(fd);
  if (rc < 0) return PathError(err, dir, "chmod 0700");
  return Status();
}

class PosixFileSystem final : public FileSystem {
 public:
  StatusOr<std::unique_ptr<File>> Open(const std::string& path,
                                       bool create) override {
    const int base = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
    // O_EXCL first tells a file we create (made private here) from one
    // that exists (whose mode is its owner's business).
    int fd = -1;
    if (create) {
      fd = RetryOnEintr([&] {
        return open(path.c_str(), base | O_CREAT | O_EXCL, kFileMode);
      });
      if (fd >= 0) {
        if (fchmod(fd, kFileMode) < 0) {
          int err = errno;
          close(fd);
          unlink(path.c_str());
          return PathError(err, path, "chmod 0600");
        }
        return std::unique_ptr<File>(new PosixFile(path, fd));
      }
      if (errno != EEXIST) return PathError(errno, path, "create");
    }
    fd = RetryOnEintr([&] { return open(path.c_str(), base); });
    if (fd < 0) {
      if (errno == ELOOP) {
        return FailedPreconditionError(
            path + " is a symbolic link; vss does not follow links in a store");
      }
      return PathError(errno, path, "open");
    }
    return std::unique_ptr<File>(new PosixFile(path, fd));
  }

  // Removes a file, or an empty directory.
  Status Remove(const std::string& path) override {
    if (unlink(path.c_str()) == 0) return Status();
    if (errno == EISDIR || errno == EPERM) {
      if (rmdir(path.c_str()) == 0) return Status();
    }
    return PathError(errno, path, "remove");
  }

  // Each directory made is 0700, and its name is made durable (the parent
  // is synced) before the next level is made or the call returns: whoever
  // creates files in it next may rely on the whole path surviving a crash.
  Status CreateDirs(const std::string& path) override {
    for (size_t pos = 1; pos <= path.size(); ++pos) {
      if (pos != path.size() && path[pos] != '/') continue;
      if (path[pos - 1] == '/') continue;  // "a//b" or a trailing slash
      std::string prefix = path.substr(0, pos);
      if (mkdir(prefix.c_str(), kDirMode) == 0) {
        VSS_RETURN_IF_ERROR(MakeDirPrivate(prefix));
        VSS_RETURN_IF_ERROR(FsyncDir(Parent(prefix)));
        continue;
      }
      if (errno != EEXIST) return PathError(errno, prefix, "mkdir");
      struct stat st;
      if (stat(prefix.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
        return FailedPreconditionError(prefix +
                                       " exists and is not a directory");
      }
    }
    return Status();
  }

  StatusOr<std::vector<std::string>> List(const std::string& dir) override {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return PathError(errno, dir, "list");
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
    }
    int err = errno;
    closedir(d);
    if (err != 0) return PathError(err, dir, "list");
    std::sort(names.begin(), names.end());
    return names;
  }

  bool Exists(const std::string& path) override {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
  }

  // Orders the creations and removals of names in `dir` before what follows.
  Status SyncDir(const std::string& dir) override { return FsyncDir(dir); }

  StatusOr<std::string> RealPath(const std::string& path) override {
    char buf[PATH_MAX];
    if (realpath(path.c_str(), buf) == nullptr) {
      return PathError(errno, path, "resolve path");
    }
    return std::string(buf);
  }
};

}  // namespace

StatusOr<std::string> FileSystem::RealPath(const std::string& path) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  if (ec) return InvalidArgumentError(path + ": " + ec.message());
  std::string out = abs.lexically_normal().string();
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

FileSystem* FileSystem::Default() {
  static PosixFileSystem* fs = new PosixFileSystem();  // never destroyed
  return fs;
}

}  // namespace vss
