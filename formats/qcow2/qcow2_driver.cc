// Qcow2Driver: qcow2 images on the local file system, their backing chains,
// creation options and Info().

#include "vss/formats/qcow2_driver.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>

#include "../opened_path.h"
#include "qcow2_check.h"
#include "qcow2_image.h"
#include "vss/formats/qcow2_writer.h"
#include "vss/base/file.h"
#include "vss/formats/image_probe.h"
#include "vss/formats/raw_image.h"

namespace vss {
namespace {

enum class LockMode { kNone, kShared, kExclusive };

// A qcow2 file: positional I/O on a descriptor opened O_NOFOLLOW, read-only
// when the image is, and flock'ed per LockMode.
class ImageFile final : public File {
 public:
  static StatusOr<std::unique_ptr<ImageFile>> Open(const std::string& path,
                                                   bool writable, bool create,
                                                   LockMode lock) {
    int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW;
    if (create) flags |= O_CREAT | O_EXCL;
    int fd = open(path.c_str(), flags, 0600);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT) return NotFoundError(path + " does not exist");
      if (err == EEXIST) return AlreadyExistsError(path + " already exists");
      if (err == ELOOP) {
        return FailedPreconditionError(path + " is a symbolic link");
      }
      return ErrnoError(err, path);
    }
    auto file = std::unique_ptr<ImageFile>(new ImageFile(path, fd));
    if (create) fchmod(fd, 0600);
    if (lock != LockMode::kNone &&
        flock(fd, (lock == LockMode::kShared ? LOCK_SH : LOCK_EX) | LOCK_NB) <
            0) {
      if (errno == EWOULDBLOCK) {
        return BusyError(path + " is in use by another process");
      }
      return ErrnoError(errno, path + ": flock");
    }
    return file;
  }
  ~ImageFile() override { close(fd_); }
  int fd() const { return fd_; }

  StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = pread(fd_, buf.data() + done, buf.size() - done,
                        static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError(errno, path_ + ": read");
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) override {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = pwrite(fd_, buf.data() + done, buf.size() - done,
                         static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError(errno, path_ + ": write");
      done += static_cast<size_t>(n);
    }
    return OkStatus();
  }
  Status Sync() override {
    if (fdatasync(fd_) < 0) return ErrnoError(errno, path_ + ": fdatasync");
    return OkStatus();
  }
  Status PunchHole(uint64_t offset, uint64_t length) override {
    if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(offset), static_cast<off_t>(length)) < 0) {
      return ErrnoError(errno, path_ + ": punch hole");
    }
    return OkStatus();
  }
  Status Truncate(uint64_t size) override {
    if (ftruncate(fd_, static_cast<off_t>(size)) < 0) {
      return ErrnoError(errno, path_ + ": truncate");
    }
    return OkStatus();
  }
  StatusOr<uint64_t> Size() override {
    struct stat st;
    if (fstat(fd_, &st) < 0) return ErrnoError(errno, path_);
    return static_cast<uint64_t>(st.st_size);
  }
  StatusOr<uint64_t> AllocatedBytes() override {
    struct stat st;
    if (fstat(fd_, &st) < 0) return ErrnoError(errno, path_);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }

 private:
  ImageFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

struct ChainOpen {
  std::string path;
  bool writable = false;
  LockMode lock = LockMode::kShared;
  uint64_t cache_bytes = qcow2::kDefaultCacheBytes;
  bool ignore_backing = false;     // Info(): the chain is not followed
  std::vector<std::string> chain;  // real paths of the images above
};

StatusOr<std::unique_ptr<qcow2::Image>> OpenChain(const ChainOpen& req,
                                                  ImageFile** opened);

// A backing file named `name` by the image at `child`.
StatusOr<std::unique_ptr<BlockDevice>> OpenBacking(const ChainOpen& child,
                                                   const std::string& name,
                                                   const std::string& format) {
  std::filesystem::path p(name);
  if (p.is_relative()) {
    p = std::filesystem::path(child.path).parent_path() / p;
  }
  const std::string path = p.lexically_normal().string();
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return NotFoundError("backing file " + name + " (" + path +
                         ") does not exist");
  }
  std::string kind = format;
  if (kind.empty()) {
    VSS_ASSIGN_OR_RETURN(
        auto probe, RawImage::Open(path, {.read_only = true, .lock = false}));
    VSS_ASSIGN_OR_RETURN(ImageFormat f, ProbeDevice(*probe));
    kind = f == ImageFormat::kQcow2 ? "qcow2"
           : f == ImageFormat::kRaw ? "raw"
                                    : std::string(ImageFormatName(f));
  }
  if (kind == "raw") {
    VSS_ASSIGN_OR_RETURN(
        auto raw, RawImage::Open(path, {.read_only = true, .lock = true}));
    VSS_RETURN_IF_ERROR(CheckRawImage(*raw, path));
    return std::unique_ptr<BlockDevice>(std::move(raw));
  }
  if (kind != "qcow2") {
    return UnsupportedError("backing file " + path + " is a " + kind +
                            " image, which vss cannot read");
  }
  ChainOpen next{.path = path,
                 .writable = false,
                 .lock = child.lock == LockMode::kNone ? LockMode::kNone
                                                       : LockMode::kShared,
                 .cache_bytes = child.cache_bytes,
                 .chain = child.chain};
  ImageFile* file = nullptr;
  VSS_ASSIGN_OR_RETURN(auto image, OpenChain(next, &file));
  return std::unique_ptr<BlockDevice>(std::move(image));
}

qcow2::ImageOptions ImageOptionsFor(const ChainOpen& req) {
  qcow2::ImageOptions options;
  options.writable = req.writable;
  options.cache_bytes = req.cache_bytes;
  options.ignore_backing = req.ignore_backing;
  options.open_backing = [req](const std::string& name,
                               const std::string& format) {
    return OpenBacking(req, name, format);
  };
  return options;
}

StatusOr<std::unique_ptr<qcow2::Image>> OpenChain(const ChainOpen& req,
                                                  ImageFile** opened) {
  StatusOr<std::string> real = FileSystem::Default()->RealPath(req.path);
  if (!real.ok()) return NotFoundError(req.path + " does not exist");
  ChainOpen with_self = req;
  for (const std::string& above : req.chain) {
    if (above == *real) {
      std::string loop;
      for (const std::string& p : req.chain) loop += p + " -> ";
      return CorruptionError("backing chain loop: " + loop + *real);
    }
  }
  with_self.chain.push_back(*real);
  VSS_ASSIGN_OR_RETURN(
      auto file, ImageFile::Open(req.path, req.writable, false, req.lock));
  *opened = file.get();
  return qcow2::Image::Open(std::move(file), req.path,
                            ImageOptionsFor(with_self));
}

// "65536", "64K", "2M" -> bytes.
StatusOr<uint64_t> ParseBytes(const std::string& key, const std::string& v) {
  uint64_t n = 0;
  size_t i = 0;
  for (; i < v.size() && v[i] >= '0' && v[i] <= '9'; ++i) {
    if (n > (UINT64_MAX - 9) / 10) break;
    n = n * 10 + static_cast<uint64_t>(v[i] - '0');
  }
  std::string suffix = v.substr(i);
  int shift = suffix.empty()                   ? 0
              : suffix == "K" || suffix == "k" ? 10
              : suffix == "M" || suffix == "m" ? 20
              : suffix == "G" || suffix == "g" ? 30
                                               : -1;
  if (i == 0 || shift < 0 || n > (UINT64_MAX >> shift)) {
    return InvalidArgumentError("qcow2 option " + key + "=" + v +
                                " is not a byte count");
  }
  return n << shift;
}

StatusOr<uint32_t> Log2Of(const std::string& key, const std::string& v,
                          uint64_t n) {
  if (n == 0 || (n & (n - 1)) != 0) {
    return InvalidArgumentError("qcow2 option " + key + "=" + v +
                                " is not a power of two");
  }
  uint32_t bits = 0;
  while ((1ull << bits) < n) ++bits;
  return bits;
}

StatusOr<bool> ParseChoice(const DriverOptions& o, const std::string& key,
                           const std::string& yes, const std::string& no) {
  auto it = o.find(key);
  if (it == o.end() || it->second == no) return false;
  if (it->second == yes) return true;
  return InvalidArgumentError("qcow2 option " + key + "=" + it->second + " (" +
                              yes + " or " + no + ")");
}

StatusOr<uint64_t> CacheBytes(const DriverOptions& o) {
  auto it = o.find("cache_size");
  if (it == o.end()) return qcow2::kDefaultCacheBytes;
  return ParseBytes("cache_size", it->second);
}

StatusOr<qcow2::CreateOptions> ParseCreateOptions(const DriverOptions& o,
                                                  uint64_t size) {
  qcow2::CreateOptions c;
  c.size = size;
  if (auto it = o.find("cluster_size"); it != o.end()) {
    VSS_ASSIGN_OR_RETURN(uint64_t n, ParseBytes(it->first, it->second));
    VSS_ASSIGN_OR_RETURN(c.cluster_bits, Log2Of(it->first, it->second, n));
  }
  if (auto it = o.find("refcount_bits"); it != o.end()) {
    VSS_ASSIGN_OR_RETURN(uint64_t n, ParseBytes(it->first, it->second));
    VSS_ASSIGN_OR_RETURN(c.refcount_order, Log2Of(it->first, it->second, n));
  }
  VSS_ASSIGN_OR_RETURN(bool zstd,
                       ParseChoice(o, "compression_type", "zstd", "zlib"));
  c.compression_type = zstd ? qcow2::kCompressionZstd : qcow2::kCompressionZlib;
  VSS_ASSIGN_OR_RETURN(c.preallocate_metadata,
                       ParseChoice(o, "preallocation", "metadata", "off"));
  VSS_ASSIGN_OR_RETURN(c.extended_l2,
                       ParseChoice(o, "extended_l2", "on", "off"));
  if (auto it = o.find("backing_file"); it != o.end())
    c.backing_file = it->second;
  if (auto it = o.find("backing_format"); it != o.end()) {
    if (it->second != "qcow2" && it->second != "raw") {
      return InvalidArgumentError("qcow2 option backing_format=" + it->second +
                                  " (qcow2 or raw)");
    }
    c.backing_format = it->second;
  }
  return c;
}

std::string DirectoryOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

bool Qcow2Driver::Probe(std::span<const uint8_t> head,
                        std::span<const uint8_t> tail) const {
  return ProbeImageFormat(head, tail) == ImageFormat::kQcow2;
}

StatusOr<std::unique_ptr<BlockDevice>> Qcow2Driver::Open(
    const ImageOpenRequest& request) const {
  VSS_RETURN_IF_ERROR(CheckOptionKeys(request.options, {"cache_size"}));
  VSS_ASSIGN_OR_RETURN(uint64_t cache_bytes, CacheBytes(request.options));
  ChainOpen req{
      .path = request.path,
      .writable = request.writable,
      .lock = request.writable ? LockMode::kExclusive : LockMode::kShared,
      .cache_bytes = cache_bytes};
  ImageFile* file = nullptr;
  VSS_ASSIGN_OR_RETURN(auto image, OpenChain(req, &file));
  if (request.require_real_path) {
    VSS_RETURN_IF_ERROR(CheckOpenedByRealPath(file->fd(), request.path));
  }
  return std::unique_ptr<BlockDevice>(std::move(image));
}

StatusOr<std::unique_ptr<BlockDevice>> Qcow2Driver::Create(
    const ImageCreateRequest& request) const {
  VSS_RETURN_IF_ERROR(CheckOptionKeys(
      request.options,
      {"cluster_size", "compression_type", "preallocation", "backing_file",
       "backing_format", "extended_l2", "refcount_bits", "cache_size"}));
  VSS_ASSIGN_OR_RETURN(qcow2::CreateOptions options,
                       ParseCreateOptions(request.options, request.size));
  VSS_ASSIGN_OR_RETURN(uint64_t cache_bytes, CacheBytes(request.options));
  VSS_ASSIGN_OR_RETURN(auto file, ImageFile::Open(request.path, true, true,
                                                  LockMode::kExclusive));
  ChainOpen req{.path = request.path,
                .writable = true,
                .lock = LockMode::kExclusive,
                .cache_bytes = cache_bytes};
  StatusOr<std::string> real = FileSystem::Default()->RealPath(request.path);
  if (real.ok()) req.chain.push_back(*real);
  auto made = qcow2::CreateImage(std::move(file), request.path, options,
                                 ImageOptionsFor(req));
  // Orders the new image's name before any record that names it.
  Status synced =
      made.ok() ? FileSystem::Default()->SyncDir(DirectoryOf(request.path))
                : made.status();
  if (!synced.ok()) {
    made = synced;  // closes the image before its file goes
    std::filesystem::remove(request.path);
    return synced;
  }
  return std::unique_ptr<BlockDevice>(std::move(*made));
}

namespace {

StatusOr<ImageCheckResult> CheckFile(const std::string& path, bool repair) {
  VSS_ASSIGN_OR_RETURN(
      auto file, ImageFile::Open(path, /*writable=*/repair, /*create=*/false,
                                 repair ? LockMode::kExclusive : LockMode::kShared));
  return qcow2::CheckImage(*file, {.name = path, .repair = repair});
}

}  // namespace

StatusOr<ImageCheckResult> Qcow2Driver::Check(const std::string& path) const {
  return CheckFile(path, false);
}

StatusOr<ImageCheckResult> Qcow2Driver::Repair(const std::string& path) const {
  return CheckFile(path, true);
}

StatusOr<ImageInfo> Qcow2Driver::Info(const std::string& path) const {
  ChainOpen req{.path = path,
                .writable = false,
                .lock = LockMode::kNone,
                .ignore_backing = true};
  ImageFile* file = nullptr;
  VSS_ASSIGN_OR_RETURN(auto image, OpenChain(req, &file));
  const qcow2::Header& h = image->header();
  ImageInfo info;
  info.format = std::string(name());
  info.virtual_size = h.size;
  info.cluster_size = h.cluster_size();
  info.backing_file = h.backing_file;
  VSS_ASSIGN_OR_RETURN(info.allocated_bytes, image->AllocatedBytes());
  auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
  info.specific = {
      {"compat", h.version >= 3 ? "1.1" : "0.10"},
      {"compression type",
       h.compression_type == qcow2::kCompressionZstd ? "zstd" : "zlib"},
      {"lazy refcounts",
       flag(h.compatible_features & qcow2::kCompatLazyRefcounts)},
      {"refcount bits", std::to_string(h.refcount_bits())},
      {"corrupt", flag(h.incompatible_features & qcow2::kIncompatCorrupt)},
      {"extended l2", flag(h.extended_l2())},
  };
  return info;
}

StatusOr<std::unique_ptr<ImageWriter>> Qcow2Driver::CreateWriter(
    const ImageWriterRequest& request) const {
  const DriverOptions& o = request.options;
  VSS_RETURN_IF_ERROR(CheckOptionKeys(o, {"cluster_size", "compress"}));
  qcow2::WriterOptions w{.path = request.path,
                         .size = request.size,
                         .backing_file = request.backing_file,
                         .fs = request.fs};
  if (auto it = o.find("cluster_size"); it != o.end()) {
    VSS_ASSIGN_OR_RETURN(uint64_t n, ParseBytes(it->first, it->second));
    VSS_ASSIGN_OR_RETURN(w.cluster_bits, Log2Of(it->first, it->second, n));
  }
  if (auto it = o.find("compress"); it != o.end()) {
    if (it->second != "zlib" && it->second != "zstd") {
      return InvalidArgumentError("qcow2 option compress=" + it->second +
                                  " (zlib or zstd)");
    }
    w.compression = it->second == "zstd" ? qcow2::Compression::kZstd
                                         : qcow2::Compression::kZlib;
  }
  if (!w.backing_file.empty()) {
    std::filesystem::path p(w.backing_file);
    if (p.is_relative()) p = std::filesystem::path(DirectoryOf(w.path)) / p;
    VSS_ASSIGN_OR_RETURN(qcow2::BackingImage b,
                         qcow2::InspectBackingFile(p.string()));
    if (b.size != w.size) {
      return InvalidArgumentError("backing file " + p.string() + " is " +
                                  std::to_string(b.size) + " bytes, not " +
                                  std::to_string(w.size));
    }
    w.backing_format = b.format;
  }
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<qcow2::Writer> writer,
                       qcow2::Writer::Create(w));
  return std::unique_ptr<ImageWriter>(std::move(writer));
}

}  // namespace vss
