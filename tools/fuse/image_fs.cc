#define FUSE_USE_VERSION 312
#include "image_fs.h"

#include <fcntl.h>
#include <fuse.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vss::fuse {
namespace {

constexpr unsigned kMaxWrite = 1u << 20;  // bytes per FUSE write request
constexpr auto kNoFill = static_cast<fuse_fill_dir_flags>(0);

ImageFs& Fs() {
  return *static_cast<ImageFs*>(fuse_get_context()->private_data);
}

// The file `path` names: its index in config().files, or -1 (a directory,
// or nothing).
int FileIndex(const char* path) {
  const ImageFsConfig& c = Fs().config();
  if (c.single_file) return std::strcmp(path, "/") == 0 ? 0 : -1;
  if (path[0] != '/') return -1;
  for (size_t i = 0; i < c.files.size(); ++i) {
    if (c.files[i].name == path + 1) return static_cast<int>(i);
  }
  return -1;
}

bool IsDir(const char* path) {
  const ImageFsConfig& c = Fs().config();
  if (c.single_file) return false;
  if (std::strcmp(path, "/") == 0) return true;
  return std::find(c.dirs.begin(), c.dirs.end(), path + 1) != c.dirs.end();
}

bool Writable() { return Fs().config().writable; }
bool Writable(const ImageFile& f) { return Writable() || f.scratch; }

// EROFS on the read-only shape, `rw_error` on the writable file.
int Refuse(int rw_error = EPERM) { return -(Writable() ? rw_error : EROFS); }

int GetAttr(const char* path, struct stat* st, fuse_file_info*) {
  const ImageFsConfig& c = Fs().config();
  std::memset(st, 0, sizeof *st);
  st->st_uid = ::getuid();
  st->st_gid = ::getgid();
  st->st_atime = st->st_mtime = st->st_ctime = c.mtime;
  st->st_blksize = 4096;
  if (int i = FileIndex(path); i >= 0) {
    st->st_mode = S_IFREG | (c.files[i].scratch ? 0600
                             : c.writable       ? 0644
                                                : 0444);
    st->st_nlink = 1;
    st->st_size = static_cast<off_t>(c.files[i].size);
    st->st_blocks = static_cast<blkcnt_t>((c.files[i].size + 511) / 512);
    return 0;
  }
  if (IsDir(path)) {
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    return 0;
  }
  return -ENOENT;
}

int ReadDir(const char* path, void* buf, fuse_fill_dir_t fill, off_t,
            fuse_file_info*, fuse_readdir_flags) {
  if (std::strcmp(path, "/") != 0) {
    return IsDir(path) ? 0 : -ENOTDIR;  // mount-point directories are empty
  }
  const ImageFsConfig& c = Fs().config();
  fill(buf, ".", nullptr, 0, kNoFill);
  fill(buf, "..", nullptr, 0, kNoFill);
  for (const ImageFile& f : c.files) {
    if (!f.scratch) fill(buf, f.name.c_str(), nullptr, 0, kNoFill);
  }
  for (const std::string& d : c.dirs) {
    fill(buf, d.c_str(), nullptr, 0, kNoFill);
  }
  return 0;
}

int Open(const char* path, fuse_file_info* fi) {
  int i = FileIndex(path);
  if (i < 0) return IsDir(path) ? -EISDIR : -ENOENT;
  const ImageFile& f = Fs().config().files[i];
  if ((fi->flags & O_ACCMODE) != O_RDONLY && !Writable(f)) return -EROFS;
  fi->fh = static_cast<uint64_t>(i);
  fi->direct_io = Writable(f);  // see the header: coherent with the device
  fi->keep_cache = !Writable(f);
  return 0;
}

int Read(const char*, char* buf, size_t size, off_t off, fuse_file_info* fi) {
  const ImageFile& f = Fs().config().files[fi->fh];
  uint64_t offset = static_cast<uint64_t>(off);
  if (offset >= f.size) return 0;
  size_t n = static_cast<size_t>(std::min<uint64_t>(size, f.size - offset));
  Status s =
      f.device->Read(f.offset + offset, {reinterpret_cast<uint8_t*>(buf), n});
  return s.ok() ? static_cast<int>(n) : -EIO;
}

int Write(const char*, const char* buf, size_t size, off_t off,
          fuse_file_info* fi) {
  const ImageFile& f = Fs().config().files[fi->fh];
  if (!Writable(f)) return -EROFS;
  uint64_t offset = static_cast<uint64_t>(off);
  if (offset >= f.size) return size == 0 ? 0 : -ENOSPC;  // fixed size
  size_t n = static_cast<size_t>(std::min<uint64_t>(size, f.size - offset));
  Fs().dirty() = true;
  Status s = f.device->Write(f.offset + offset,
                             {reinterpret_cast<const uint8_t*>(buf), n});
  if (s.ok()) return static_cast<int>(n);
  return s.code() == StatusCode::kNoSpace ? -ENOSPC : -EIO;
}

// Flushes the device when something was written since the last flush.
int FlushDevice(const ImageFile& f) {
  if (!Fs().dirty().exchange(false)) return 0;
  if (f.device->Flush().ok()) return 0;
  Fs().dirty() = true;
  return -EIO;
}

int Flush(const char*, fuse_file_info* fi) {
  if (!Writable()) return 0;
  return FlushDevice(Fs().config().files[fi->fh]);
}

int Fsync(const char*, int, fuse_file_info* fi) {
  if (!Writable()) return 0;
  Fs().dirty() = true;  // fsync always reaches the medium
  return FlushDevice(Fs().config().files[fi->fh]);
}

off_t Lseek(const char* path, off_t off, int whence, fuse_file_info* fi) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return -EINVAL;
  int i = fi ? static_cast<int>(fi->fh) : FileIndex(path);
  if (i < 0) return -ENOENT;
  const ImageFile& f = Fs().config().files[i];
  uint64_t offset = static_cast<uint64_t>(off);
  if (off < 0 || offset >= f.size) return -ENXIO;
  StatusOr<std::vector<Extent>> extents =
      f.device->Extents(f.offset + offset, f.size - offset);
  if (!extents.ok()) return -EIO;
  for (const Extent& e : *extents) {
    if (e.allocated == (whence == SEEK_DATA)) {
      return static_cast<off_t>(std::max(e.offset - f.offset, offset));
    }
  }
  // No data after `off`; the end of the file is a hole.
  return whence == SEEK_DATA ? -ENXIO : static_cast<off_t>(f.size);
}

int Truncate(const char* path, off_t size, fuse_file_info*) {
  if (!Writable()) return -EROFS;
  int i = FileIndex(path);
  if (i < 0) return -ENOENT;
  // The size of a volume is fixed; truncating to it changes nothing.
  return static_cast<uint64_t>(size) == Fs().config().files[i].size ? 0
                                                                    : -EPERM;
}

int Fallocate(const char*, int mode, off_t off, off_t len, fuse_file_info* fi) {
  const ImageFile& f = Fs().config().files[fi->fh];
  if (!Writable(f)) return -EROFS;
  uint64_t offset = static_cast<uint64_t>(off),
           length = static_cast<uint64_t>(len);
  if (off < 0 || len <= 0) return -EINVAL;
  if (offset > f.size || length > f.size - offset) return -EFBIG;
  Status s;
  Fs().dirty() = true;
  if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
    s = f.device->Discard(f.offset + offset, length);
  } else if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE) {
    s = f.device->WriteZeroes(f.offset + offset, length);
  } else if ((mode & ~FALLOC_FL_KEEP_SIZE) == 0) {
    return 0;  // inside the volume: nothing to reserve
  } else {
    return -EOPNOTSUPP;
  }
  return s.ok() ? 0 : -EIO;
}

int Chmod(const char*, mode_t, fuse_file_info*) { return Refuse(); }
int Chown(const char*, uid_t, gid_t, fuse_file_info*) { return Refuse(); }
int Utimens(const char*, const timespec*, fuse_file_info*) {
  return Writable() ? 0 : -EROFS;  // accepted, not kept
}
int Create(const char*, mode_t, fuse_file_info*) { return -EROFS; }
int Mknod(const char*, mode_t, dev_t) { return -EROFS; }
int Mkdir(const char*, mode_t) { return -EROFS; }
int Remove(const char*) { return -EROFS; }
int Link(const char*, const char*) { return -EROFS; }
int Rename(const char*, const char*, unsigned int) { return -EROFS; }
int SetXattr(const char*, const char*, const char*, size_t, int) {
  return Refuse(ENOTSUP);
}
int RemoveXattr(const char*, const char*) { return Refuse(ENOTSUP); }

// The single file's attributes only; size 0 asks for the length.
int GetXattr(const char*, const char* name, char* value, size_t size) {
  const ImageFsConfig& c = Fs().config();
  if (!c.single_file) return -ENODATA;  // one node: whatever path the kernel gives
  auto it = c.xattrs.find(name);
  if (it == c.xattrs.end()) return -ENODATA;
  if (size == 0) return static_cast<int>(it->second.size());
  if (size < it->second.size()) return -ERANGE;
  std::memcpy(value, it->second.data(), it->second.size());
  return static_cast<int>(it->second.size());
}

int ListXattr(const char*, char* list, size_t size) {
  const ImageFsConfig& c = Fs().config();
  std::string names;
  if (c.single_file) {
    for (const auto& [name, value] : c.xattrs) names.append(name).push_back('\0');
  }
  if (size == 0) return static_cast<int>(names.size());
  if (size < names.size()) return -ERANGE;
  std::memcpy(list, names.data(), names.size());
  return static_cast<int>(names.size());
}

int StatFs(const char*, struct statvfs* st) {
  uint64_t total = 0;
  for (const ImageFile& f : Fs().config().files) total += f.size;
  std::memset(st, 0, sizeof *st);
  st->f_bsize = st->f_frsize = 4096;
  st->f_blocks = total / 4096;
  st->f_namemax = 255;
  return 0;
}

void* Init(fuse_conn_info* conn, fuse_config* cfg) {
  conn->max_write = kMaxWrite;
  cfg->use_ino = 0;
  // Names and sizes never change while mounted.
  cfg->entry_timeout = cfg->attr_timeout = 3600;
  cfg->negative_timeout = 3600;
  return fuse_get_context()->private_data;
}

fuse_operations Operations() {
  fuse_operations ops{};
  ops.init = Init;
  ops.getattr = GetAttr;
  ops.readdir = ReadDir;
  ops.open = Open;
  ops.read = Read;
  ops.write = Write;
  ops.flush = Flush;
  ops.fsync = Fsync;
  ops.lseek = Lseek;
  ops.truncate = Truncate;
  ops.fallocate = Fallocate;
  ops.chmod = Chmod;
  ops.chown = Chown;
  ops.utimens = Utimens;
  ops.create = Create;
  ops.mknod = Mknod;
  ops.mkdir = Mkdir;
  ops.unlink = Remove;
  ops.rmdir = Remove;
  ops.symlink = Link;
  ops.link = Link;
  ops.rename = Rename;
  ops.setxattr = SetXattr;
  ops.removexattr = RemoveXattr;
  ops.getxattr = GetXattr;
  ops.listxattr = ListXattr;
  ops.statfs = StatFs;
  return ops;
}

}  // namespace

StatusOr<std::unique_ptr<ImageFs>> ImageFs::Mount(
    ImageFsConfig config, const std::string& mountpoint) {
  if (config.files.empty() ||
      (config.single_file && config.files.size() != 1) ||
      (config.writable && !config.single_file)) {
    return InvalidArgumentError("bad FUSE file system layout for " +
                                mountpoint);
  }
  bool scratch = false;
  for (const ImageFile& f : config.files) {
    if (f.device == nullptr || f.offset > f.device->size() ||
        f.size > f.device->size() - f.offset) {
      return InvalidArgumentError(f.name + ": range outside its device");
    }
    if (f.scratch && (config.single_file || f.device->read_only())) {
      return InvalidArgumentError(f.name +
                                  ": a scratch file needs a directory mount "
                                  "and a writable overlay device");
    }
    scratch = scratch || f.scratch;
  }
  std::unique_ptr<ImageFs> fs(new ImageFs(std::move(config)));
  std::string options = "fsname=" + fs->config_.fsname + ",subtype=vss";
  if (!fs->config_.writable && !scratch) options += ",ro";
  const char* argv[] = {"vssctl", "-o", options.c_str()};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  static const fuse_operations kOps = Operations();
  fs->fuse_ = fuse_new(&args, &kOps, sizeof kOps, fs.get());
  if (fs->fuse_ == nullptr) {
    return InternalError("FUSE rejected the options for " + mountpoint);
  }
  if (fuse_mount(fs->fuse_, mountpoint.c_str()) != 0) {
    return FailedPreconditionError(
        "mounting FUSE on " + mountpoint +
        " failed (is /dev/fuse usable, and are you root?)");
  }
  fs->mounted_ = true;
  return fs;
}

ImageFs::~ImageFs() {
  if (fuse_ == nullptr) return;
  if (mounted_) fuse_unmount(fuse_);
  fuse_destroy(fuse_);
}

Status ImageFs::Run() {
  fuse_session* session = fuse_get_session(fuse_);
  if (fuse_set_signal_handlers(session) != 0) {
    return InternalError("cannot install the FUSE signal handlers");
  }
  int rc = fuse_loop_mt(fuse_, nullptr);
  fuse_remove_signal_handlers(session);
  fuse_unmount(fuse_);  // after a signal the mount is still there
  mounted_ = false;
  if (rc < 0) return IoError(std::string("FUSE loop: ") + std::strerror(-rc));
  return OkStatus();
}

}  // namespace vss::fuse
