#include "backup_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>

#include "json_util.h"
#include "vss/formats/image_writer.h"
#include "vss/formats/registry.h"

namespace vss {
namespace {

using Json = nlohmann::json;
using internal::IntFromJson;

constexpr uint64_t kPiece = uint64_t{1} << 20;
constexpr uint64_t kMaxDocument = uint64_t{64} << 20;
constexpr char kManifest[] = "manifest.json";

const std::vector<uint8_t>& Zeroes() {
  static const std::vector<uint8_t> zeroes(kPiece, 0);
  return zeroes;
}

bool AllZero(std::span<const uint8_t> data) {
  return std::all_of(data.begin(), data.end(),
                     [](uint8_t b) { return b == 0; });
}

std::string Hex(const XXH128_hash_t& h) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : c.digest) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

// An XXH3-128 state, freed on scope exit.
class Hasher {
 public:
  Hasher() : state_(XXH3_createState()) { XXH3_128bits_reset(state_); }
  ~Hasher() { XXH3_freeState(state_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void Update(std::span<const uint8_t> data) {
    XXH3_128bits_update(state_, data.data(), data.size());
  }
  void UpdateZeroes(uint64_t length) {
    while (length > 0) {
      uint64_t n = std::min(length, kPiece);
      Update(std::span<const uint8_t>(Zeroes().data(), n));
      length -= n;
    }
  }
  std::string HexDigest() { return Hex(XXH3_128bits_digest(state_)); }

 private:
  XXH3_state_t* state_;
};

Status PwriteAll(int fd, std::span<const uint8_t> data, uint64_t offset,
                 const std::string& what) {
  while (!data.empty()) {
    ssize_t n =
        ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "writing " + what);
    data = data.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return OkStatus();
}

Status PreadAll(int fd, std::span<uint8_t> buf, uint64_t offset,
                const std::string& what) {
  while (!buf.empty()) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "reading " + what);
    if (n == 0)
      return CorruptionError(what + " is shorter than its recorded size");
    buf = buf.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return OkStatus();
}

// The next offset >= pos where a data (SEEK_DATA) or hole (SEEK_HOLE) range
// starts, `size` when there is none; for a file system without
// SEEK_DATA, pos for data and `size` for holes (all data).
StatusOr<uint64_t> Seek(int fd, uint64_t pos, int whence, uint64_t size,
                        const std::string& what) {
  off_t r = ::lseek(fd, static_cast<off_t>(pos), whence);
  if (r >= 0) return std::min(static_cast<uint64_t>(r), size);
  if (errno == ENXIO) return size;
  if (errno == EINVAL) return whence == SEEK_DATA ? pos : size;
  return ErrnoError(errno, "seeking in " + what);
}

// XXH3-128 of the first `size` bytes of the file, holes hashed as zeroes
// without reading them.
StatusOr<std::string> HashFile(int fd, uint64_t size, const std::string& what,
                               const ProgressCallback& callback,
                               const std::string& progress_what) {
  Hasher hasher;
  ProgressReporter progress(callback, progress_what, size);
  std::vector<uint8_t> buf(std::min(std::max<uint64_t>(size, 1), kPiece));
  for (uint64_t pos = 0; pos < size;) {
    VSS_ASSIGN_OR_RETURN(uint64_t data, Seek(fd, pos, SEEK_DATA, size, what));
    hasher.UpdateZeroes(data - pos);
    progress.Add(data - pos);
    if (data >= size) break;
    VSS_ASSIGN_OR_RETURN(uint64_t hole, Seek(fd, data, SEEK_HOLE, size, what));
    hole = std::max(hole, data + 1);
    for (uint64_t at = data; at < hole;) {
      size_t n = static_cast<size_t>(std::min(hole - at, kPiece));
      std::span<uint8_t> piece(buf.data(), n);
      VSS_RETURN_IF_ERROR(PreadAll(fd, piece, at, what));
      hasher.Update(piece);
      at += n;
      progress.Add(n);
    }
    pos = hole;
  }
  return hasher.HexDigest();
}

// A read-only BlockDevice over an open image file; owns the descriptor.
class ImageFile final : public BlockDevice {
 public:
  ImageFile(std::string path, int fd, uint64_t size)
      : BlockDevice(std::move(path), size, /*read_only=*/true), fd_(fd) {}
  ~ImageFile() override { ::close(fd_); }

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override {
    return PreadAll(fd_, buf, offset, name());
  }
  // Never called: the device is read-only, BlockDevice refuses writes.
  Status DoWrite(uint64_t, std::span<const uint8_t>) override {
    return ReadOnly();
  }
  Status DoWriteZeroes(uint64_t, uint64_t) override { return ReadOnly(); }
  Status DoDiscard(uint64_t, uint64_t) override { return ReadOnly(); }
  Status DoFlush() override { return OkStatus(); }
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override {
    const uint64_t end = offset + length;
    std::vector<Extent> out;
    auto add = [&out](uint64_t at, uint64_t n, bool allocated) {
      if (n == 0) return;
      if (!out.empty() && out.back().allocated == allocated) {
        out.back().length += n;
      } else {
        out.push_back({at, n, allocated});
      }
    };
    for (uint64_t pos = offset; pos < end;) {
      VSS_ASSIGN_OR_RETURN(uint64_t data,
                           Seek(fd_, pos, SEEK_DATA, end, name()));
      add(pos, data - pos, false);
      if (data >= end) break;
      VSS_ASSIGN_OR_RETURN(uint64_t hole,
                           Seek(fd_, data, SEEK_HOLE, end, name()));
      hole = std::max(hole, data + 1);
      add(data, hole - data, true);
      pos = hole;
    }
    return out;
  }

 private:
  Status ReadOnly() {
    return FailedPreconditionError(name() + " is read-only");
  }
  int fd_;
};

// A name that stays inside the backup directory.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

bool IsHex128(const std::string& s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// "raw" or a format with a writer.
bool IsBackupFormat(const std::string& format) {
  return format == "raw" || IsWriterFormat(format);
}

// The version 3 fields of a manifest's volume entry `v`.
Status ReadFormatFields(const Json& v, const std::string& path,
                       ManifestVolume& mv) {
  const auto bad = [&](const std::string& what) {
    return CorruptionError(path + ": volume '" + mv.volume + "': " + what);
  };
  if (!v.contains("format") || !v["format"].is_string())
    return bad("no format");
  mv.format = v["format"].get<std::string>();
  if (!IsBackupFormat(mv.format)) return bad("format '" + mv.format + "'");
  if (v.contains("backing")) {
    if (!v["backing"].is_string() || mv.format == "raw")
      return bad("a bad backing file");
    mv.backing = v["backing"].get<std::string>();
  }
  if (v.contains("chain")) {
    if (!v["chain"].is_array()) return bad("chain is not a list");
    for (const Json& c : v["chain"]) {
      if (!c.is_string()) return bad("chain holds a non-string");
      mv.chain.push_back(c.get<std::string>());
    }
  }
  if (mv.backing.empty() != mv.chain.empty() ||
      (!mv.chain.empty() && mv.chain.front() != mv.backing)) {
    return bad("backing and chain disagree");
  }
  return OkStatus();
}

}  // namespace

Status ForEachPiece(BlockDevice& src, uint64_t offset, uint64_t length, std::span<uint8_t> buf,
                    ProgressReporter& progress,
                    const std::function<Status(uint64_t, std::span<uint8_t>)>& each) {
  for (uint64_t done = 0; done < length;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(length - done, buf.size()));
    std::span<uint8_t> piece = buf.first(n);
    VSS_RETURN_IF_ERROR(src.Read(offset + done, piece));
    VSS_RETURN_IF_ERROR(each(offset + done, piece));
    done += n;
    progress.Add(n);
  }
  return OkStatus();
}

namespace {

// XXH3-128 of every byte `dev` reads as; its holes are hashed as zeroes
// without being read.
StatusOr<std::string> HashDevice(BlockDevice& dev,
                                 const ProgressCallback& callback,
                                 const std::string& what) {
  VSS_ASSIGN_OR_RETURN(auto extents, dev.Extents(0, dev.size()));
  Hasher hasher;
  ProgressReporter progress(callback, what, dev.size());
  std::vector<uint8_t> buf(std::min(std::max<uint64_t>(dev.size(), 1), kPiece));
  for (const Extent& e : extents) {
    if (!e.allocated) {
      hasher.UpdateZeroes(e.length);
      progress.Add(e.length);
      continue;
    }
    VSS_RETURN_IF_ERROR(ForEachPiece(dev, e.offset, e.length, buf, progress,
                                     [&](uint64_t, std::span<uint8_t> piece) {
                                       hasher.Update(piece);
                                       return OkStatus();
                                     }));
  }
  return hasher.HexDigest();
}

// Opens the image at `path` read-only through the registry's driver of
// `format`.
StatusOr<std::unique_ptr<BlockDevice>> OpenFormatImage(
    const std::string& format, const std::string& path) {
  VSS_ASSIGN_OR_RETURN(const ImageDriver* driver,
                       DriverRegistry::Default().Find(format));
  return driver->Open({.path = path, .writable = false});
}

}  // namespace

// --- ProgressReporter ---

ProgressReporter::ProgressReporter(const ProgressCallback& callback, std::string what,
                                   uint64_t total)
    : callback_(callback) {
  event_.what = std::move(what);
  event_.total = total;
  Report(false);
}

ProgressReporter::~ProgressReporter() { Report(true); }

void ProgressReporter::Add(uint64_t bytes) {
  if (bytes == 0) return;
  event_.done += bytes;
  Report(false);
}

void ProgressReporter::Report(bool finished) {
  if (!callback_) return;
  event_.finished = finished;
  callback_(event_);
}

// --- BackupDir ---

StatusOr<std::unique_ptr<BackupDir>> BackupDir::Create(const std::string& dir,
                                                       ProgressCallback progress) {
  const std::string what = "--to " + dir;
  bool created = false;
  if (::mkdir(dir.c_str(), 0700) == 0) {
    created = true;
  } else if (errno != EEXIST) {
    return ErrnoError(errno, what);
  }
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (created) ::rmdir(dir.c_str());
    if (err == ENOTDIR)
      return AlreadyExistsError(what + " exists and is not a directory");
    return ErrnoError(err, what);
  }
  std::unique_ptr<BackupDir> out(new BackupDir(dir, fd, created, std::move(progress)));
  if (created) {
    // mkdir's mode went through the umask; the backup is private whatever
    // the umask.
    if (::fchmod(fd, 0700) != 0) return ErrnoError(errno, what);
    return out;
  }
  std::error_code ec;
  if (!std::filesystem::is_empty(dir, ec) || ec) {
    return AlreadyExistsError(what + " is not empty; not overwriting a backup");
  }
  return out;
}

BackupDir::~BackupDir() {
  if (!committed_) {
    for (auto it = names_.rbegin(); it != names_.rend(); ++it) {
      ::unlinkat(fd_, it->c_str(), 0);
    }
    if (created_) ::rmdir(dir_.c_str());
  }
  ::close(fd_);
}

StatusOr<BackupDir::ImageResult> BackupDir::WriteImage(
    const std::string& name, BlockDevice& src, const std::string& what) {
  const std::string path = dir_ + "/" + name;
  int fd = ::openat(fd_, name.c_str(),
                    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError(errno, path);
  names_.push_back(name);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::fchmod(fd, 0600) != 0) return ErrnoError(errno, path);
  ImageResult out;
  out.size = src.size();
  if (::ftruncate(fd, static_cast<off_t>(out.size)) != 0)
    return ErrnoError(errno, path);

  VSS_ASSIGN_OR_RETURN(auto extents, src.Extents(0, src.size()));
  uint64_t allocated = 0;
  for (const Extent& e : extents) allocated += e.allocated ? e.length : 0;
  Hasher hasher;
  {
    ProgressReporter progress(progress_, what, allocated);
    std::vector<uint8_t> buf(std::min(std::max<uint64_t>(out.size, 1), kPiece));
    for (const Extent& e : extents) {
      if (!e.allocated) {
        hasher.UpdateZeroes(e.length);
        continue;
      }
      VSS_RETURN_IF_ERROR(ForEachPiece(
          src, e.offset, e.length, buf, progress,
          [&](uint64_t at, std::span<uint8_t> piece) -> Status {
            hasher.Update(piece);
            if (AllZero(piece)) return OkStatus();
            out.data_bytes += piece.size();
            return PwriteAll(fd, piece, at, path);
          }));
    }
  }
  out.xxh3_128 = hasher.HexDigest();

  // Orders the image's bytes (and its size) before the checksum read back
  // below and before the manifest that vouches for them: the manifest is
  // renamed into place, and the shadows released, only after this returns.
  if (::fdatasync(fd) != 0) return ErrnoError(errno, "syncing " + path);

  // Read back what the medium holds: the pages are clean after the sync, so
  // dropping them makes the reads below go to the file system (where it
  // honours the advice; otherwise they check the cached bytes).
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  VSS_ASSIGN_OR_RETURN(std::string back,
                       HashFile(fd, out.size, path, progress_, "verifying " + path));
  if (back != out.xxh3_128) {
    return CorruptionError(path +
                           ": read back after writing, its XXH3-128 is " +
                           back + ", not " + out.xxh3_128 + " as written");
  }
  return out;
}

StatusOr<BackupDir::ImageResult> BackupDir::WriteFormatImage(
    const std::string& name, BlockDevice& src, const ImagePlan& plan,
    const std::string& what) {
  const std::string path = dir_ + "/" + name;
  ImageResult out;
  out.size = src.size();
  std::vector<Extent> extents = plan.extents;
  if (plan.backing.empty()) {
    VSS_ASSIGN_OR_RETURN(extents, src.Extents(0, src.size()));
  }
  uint64_t total = 0;
  for (const Extent& e : extents) total += e.length;
  VSS_ASSIGN_OR_RETURN(const ImageDriver* driver,
                       DriverRegistry::Default().Find(plan.format));
  VSS_ASSIGN_OR_RETURN(auto writer,
                       driver->CreateWriter({.path = path,
                                             .size = src.size(),
                                             .options = plan.options,
                                             .backing_file = plan.backing}));
  names_.push_back(name);
  {
    ProgressReporter progress(progress_, what, total);
    VSS_RETURN_IF_ERROR(CopyUnits(
        src, extents, *writer, [&](uint64_t n) { progress.Add(n); }));
  }
  // Finish syncs the image and the directory: the image is durable before
  // the checksum below vouches for it in the manifest.
  VSS_RETURN_IF_ERROR(writer->Finish());
  out.data_bytes = writer->stats().data_bytes;
  VSS_ASSIGN_OR_RETURN(out.xxh3_128,
                       HashDevice(src, progress_, "hashing " + what));
  // Read back what the chain reads as, through the driver restore uses.
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BlockDevice> image,
                       OpenFormatImage(plan.format, path));
  VSS_ASSIGN_OR_RETURN(std::string back,
                       HashDevice(*image, progress_, "verifying " + path));
  if (image->size() != out.size || back != out.xxh3_128) {
    return CorruptionError(
        path + ": read back after writing, it reads as " +
        std::to_string(image->size()) + " bytes with XXH3-128 " + back +
        ", not " + std::to_string(out.size) + " bytes with " + out.xxh3_128);
  }
  return out;
}

Status BackupDir::WriteDocument(const std::string& name,
                                const std::string& text) {
  const std::string path = dir_ + "/" + name;
  const std::string tmp = name + ".tmp";
  int fd = ::openat(fd_, tmp.c_str(),
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError(errno, dir_ + "/" + tmp);
  names_.push_back(tmp);
  Status s = [&]() -> Status {
    if (::fchmod(fd, 0600) != 0) return ErrnoError(errno, path);
    VSS_RETURN_IF_ERROR(PwriteAll(
        fd,
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()),
                                 text.size()),
        0, path));
    // Orders the document's bytes before its rename: after a crash the name
    // `name` holds either nothing or the whole document, never a torn one.
    if (::fsync(fd) != 0) return ErrnoError(errno, "syncing " + path);
    return OkStatus();
  }();
  if (::close(fd) != 0 && s.ok()) s = ErrnoError(errno, path);
  if (!s.ok()) return s;
  if (::renameat(fd_, tmp.c_str(), fd_, name.c_str()) != 0)
    return ErrnoError(errno, path);
  names_.back() = name;
  return OkStatus();
}

Status BackupDir::SyncNames() {
  if (::fsync(fd_) != 0)
    return ErrnoError(errno, "syncing the directory " + dir_);
  return OkStatus();
}

Status BackupDir::SyncParent() {
  int parent = ::openat(fd_, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (parent < 0) return ErrnoError(errno, "opening the parent of " + dir_);
  Status s = OkStatus();
  if (::fsync(parent) != 0)
    s = ErrnoError(errno, "syncing the parent of " + dir_);
  ::close(parent);
  return s;
}

// --- BackupSource ---

StatusOr<std::unique_ptr<BackupSource>> BackupSource::Open(
    const std::string& dir, ProgressCallback progress) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 && (errno == ENOENT || errno == ENOTDIR)) {
    return NotFoundError(dir + " is not a directory");
  }
  if (fd < 0) return ErrnoError(errno, dir);
  return std::unique_ptr<BackupSource>(new BackupSource(dir, fd, std::move(progress)));
}

BackupSource::~BackupSource() { ::close(fd_); }

StatusOr<std::string> BackupSource::ReadDocument(const std::string& name) {
  const std::string path = PathOf(name);
  int fd = ::openat(fd_, name.c_str(),
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ELOOP)
    return CorruptionError(path + " is a symbolic link");
  if (fd < 0) return ErrnoError(errno, path);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, path);
  if (!S_ISREG(st.st_mode))
    return CorruptionError(path + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxDocument) {
    return CorruptionError(path + " is " + std::to_string(st.st_size) +
                           " bytes, more than a backup document can be");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  VSS_RETURN_IF_ERROR(PreadAll(
      fd,
      std::span<uint8_t>(reinterpret_cast<uint8_t*>(text.data()), text.size()),
      0, path));
  return text;
}

StatusOr<std::vector<ManifestVolume>> BackupSource::ReadManifest() {
  const std::string path = PathOf(kManifest);
  VSS_ASSIGN_OR_RETURN(std::string text, ReadDocument(kManifest));
  Json m = Json::parse(text, nullptr, false);
  if (m.is_discarded() || !m.is_object() || !m.contains("volumes") ||
      !m["volumes"].is_array() || !m.contains("version") ||
      !m["version"].is_number_integer()) {
    return CorruptionError(path + " is damaged (not a vssctl backup manifest)");
  }
  const int64_t version = IntFromJson<int64_t>(m["version"]);
  if (version == 1) {
    return UnsupportedError(
        path +
        ": a version 1 backup has no image checksums, so its images "
        "cannot be verified; restore refuses it");
  }
  if (version != kBackupManifestVersion &&
      version != kBackupManifestVersionImages) {
    return UnsupportedError(path + ": manifest version " +
                            std::to_string(version) +
                            " is not one this vssctl knows (" +
                            std::to_string(kBackupManifestVersion) + ", " +
                            std::to_string(kBackupManifestVersionImages) + ")");
  }
  const bool shadows_kept = m.contains("shadows_kept") &&
                            m["shadows_kept"].is_boolean() &&
                            m["shadows_kept"].get<bool>();
  std::vector<ManifestVolume> out;
  for (const Json& v : m["volumes"]) {
    auto field = [&](const char* key) -> const Json* {
      if (!v.is_object() || !v.contains(key)) return nullptr;
      return &v[key];
    };
    const Json* volume = field("volume");
    const Json* image = field("image");
    const Json* size = field("size");
    const Json* sum = field("xxh3_128");
    if (!volume || !volume->is_string() || !image || !image->is_string() ||
        !size || !size->is_number_unsigned() || !sum || !sum->is_string()) {
      return CorruptionError(
          path +
          " is damaged (a volume entry lacks volume, image, size or "
          "xxh3_128)");
    }
    ManifestVolume mv{volume->get<std::string>(), image->get<std::string>(),
                      IntFromJson<uint64_t>(*size), sum->get<std::string>()};
    mv.shadows_kept = shadows_kept;
    if (const Json* id = field("shadow_id"); id && id->is_string())
      mv.shadow_id = *id;
    if (version >= kBackupManifestVersionImages) {
      VSS_RETURN_IF_ERROR(ReadFormatFields(v, path, mv));
    }
    if (!IsPlainFileName(mv.image)) {
      return CorruptionError(
          path + ": volume '" + mv.volume + "': image '" + mv.image +
          "' is not a file name inside the backup directory");
    }
    if (!IsHex128(mv.xxh3_128)) {
      return CorruptionError(path + ": volume '" + mv.volume + "': xxh3_128 '" +
                             mv.xxh3_128 + "' is not 32 lowercase hex digits");
    }
    for (const ManifestVolume& other : out) {
      if (other.volume == mv.volume) {
        return CorruptionError(path + ": volume '" + mv.volume +
                               "' is listed twice");
      }
    }
    out.push_back(std::move(mv));
  }
  return out;
}

StatusOr<std::unique_ptr<BlockDevice>> BackupSource::OpenVerifiedImage(
    const ManifestVolume& v) {
  const std::string path = PathOf(v.image);
  if (!IsPlainFileName(v.image)) {
    return CorruptionError(path +
                           " is not a file name inside the backup directory");
  }
  if (v.format != "raw") return OpenVerifiedFormatImage(v);
  // O_NOFOLLOW: a symlink planted in the backup is refused, not followed.
  // O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused
  // as not a regular file below).
  int fd = ::openat(fd_, v.image.c_str(),
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ELOOP) {
    return CorruptionError(path + " is a symbolic link, not a backup image");
  }
  if (fd < 0) return ErrnoError(errno, path);
  auto image = std::make_unique<ImageFile>(path, fd, v.size);  // owns fd
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, path);
  if (!S_ISREG(st.st_mode))
    return CorruptionError(path + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) != v.size) {
    return CorruptionError(path + " is " + std::to_string(st.st_size) +
                           " bytes but the manifest says " +
                           std::to_string(v.size));
  }
  VSS_ASSIGN_OR_RETURN(std::string sum,
                       HashFile(fd, v.size, path, progress_, "verifying " + path));
  if (sum != v.xxh3_128) {
    return CorruptionError(path + " is damaged: its XXH3-128 is " + sum +
                           ", the manifest recorded " + v.xxh3_128);
  }
  return std::unique_ptr<BlockDevice>(std::move(image));
}

StatusOr<std::unique_ptr<BlockDevice>> BackupSource::OpenVerifiedFormatImage(
    const ManifestVolume& v) {
  const std::string path = PathOf(v.image);
  struct stat st;
  if (::fstatat(fd_, v.image.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoError(errno, path);
  }
  if (!S_ISREG(st.st_mode))
    return CorruptionError(path + " is not a regular file");
  VSS_ASSIGN_OR_RETURN(const ImageDriver* driver,
                       DriverRegistry::Default().Find(v.format));
  // The backing file the image names must be the one the manifest
  // recorded, so that the chain read is the chain that was backed up.
  VSS_ASSIGN_OR_RETURN(ImageInfo info, driver->Info(path));
  if (info.backing_file != v.backing) {
    return CorruptionError(path + " names the backing file '" +
                           info.backing_file + "', the manifest recorded '" +
                           v.backing + "'");
  }
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BlockDevice> image,
                       OpenFormatImage(v.format, path));
  if (image->size() != v.size) {
    return CorruptionError(path + " reads as " + std::to_string(image->size()) +
                           " bytes but the manifest says " +
                           std::to_string(v.size));
  }
  VSS_ASSIGN_OR_RETURN(std::string sum,
                       HashDevice(*image, progress_, "verifying " + path));
  if (sum != v.xxh3_128) {
    return CorruptionError(path +
                           " is damaged: the XXH3-128 of what it reads as is " +
                           sum + ", the manifest recorded " + v.xxh3_128);
  }
  return image;
}

}  // namespace vss
