#include "vss/metadata/fs_vfs.h"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

namespace vss::metadata {

// ---- The in-process lock and shared-memory tables. -------------------------

namespace {

struct Handle;

// Locks on one database path, shared by every connection of this process
// (SQLite's os_unix.c rules without the byte ranges): any number of SHARED
// holders; one writer holding RESERVED, then PENDING (no new SHARED), then
// EXCLUSIVE once it is the only SHARED holder left.
struct LockNode {
  int shared = 0;            // connections at SHARED or above
  Handle* writer = nullptr;  // holder of RESERVED / PENDING / EXCLUSIVE
  bool pending = false;
  bool exclusive = false;
};

// The WAL index of one database path: regions of zeroed heap memory that
// stay where they are until the last connection unmaps them.
struct ShmNode {
  std::vector<std::unique_ptr<char[]>> regions;
  int refs = 0;                              // handles that mapped it
  int shared[SQLITE_SHM_NLOCK] = {};         // SHARED holders per slot
  Handle* exclusive[SQLITE_SHM_NLOCK] = {};  // EXCLUSIVE holder per slot
};

}  // namespace

struct FsVfs::State {
  FileSystem* fs = nullptr;
  std::string name;
  sqlite3_vfs vfs{};
  sqlite3_vfs* fallback = nullptr;  // the default VFS, for temporary files
  std::mutex mu;                    // guards locks and shm
  std::map<std::string, LockNode> locks;
  std::map<std::string, ShmNode> shm;
};

namespace {

using State = FsVfs::State;

// An open file: what SQLite's sqlite3_file points at. Allocated by us,
// owned by the FsFile below.
struct Handle {
  State* vfs;
  std::string path;
  std::unique_ptr<File> file;
  bool delete_on_close = false;
  bool sync_dir = false;  // the next successful sync also syncs the dir
  int lock = SQLITE_LOCK_NONE;
  bool shm_mapped = false;
  uint16_t shm_shared = 0;     // slots this handle holds SHARED
  uint16_t shm_exclusive = 0;  // slots this handle holds EXCLUSIVE
};

// The object SQLite allocates szOsFile bytes for. Must start with the
// sqlite3_file base; only a pointer lives here so the C++ state is built
// and torn down with new/delete.
struct FsFile {
  sqlite3_file base;
  Handle* h;
};

State* StateOf(sqlite3_vfs* vfs) { return static_cast<State*>(vfs->pAppData); }
Handle* HandleOf(sqlite3_file* f) { return reinterpret_cast<FsFile*>(f)->h; }

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// SQLite result for a failed call: kNoSpace becomes SQLITE_FULL so that the
// catalog reports kNoSpace; everything else the given I/O error code.
int IoResult(const Status& s, int io_error) {
  if (s.ok()) return SQLITE_OK;
  return s.code() == StatusCode::kNoSpace ? SQLITE_FULL : io_error;
}

// ---- sqlite3_io_methods ----------------------------------------------------

int Unlock(sqlite3_file* f, int level);
int ShmUnmap(sqlite3_file* f, int delete_flag);

// Releases what SQLite left held (it normally unlocks and unmaps first).
int Close(sqlite3_file* f) {
  Handle* h = HandleOf(f);
  Unlock(f, SQLITE_LOCK_NONE);
  ShmUnmap(f, 0);
  int rc = SQLITE_OK;
  if (h->delete_on_close) {
    h->file.reset();
    if (!h->vfs->fs->Remove(h->path).ok()) rc = SQLITE_IOERR_DELETE;
  }
  delete h;
  reinterpret_cast<FsFile*>(f)->h = nullptr;
  return rc;
}

// A short read zero-fills the rest of the buffer, as SQLite requires.
int Read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 offset) {
  auto* out = static_cast<uint8_t*>(buf);
  StatusOr<size_t> n = HandleOf(f)->file->ReadAt(
      static_cast<uint64_t>(offset), std::span(out, static_cast<size_t>(amt)));
  if (!n.ok()) return SQLITE_IOERR_READ;
  if (*n == static_cast<size_t>(amt)) return SQLITE_OK;
  std::memset(out + *n, 0, static_cast<size_t>(amt) - *n);
  return SQLITE_IOERR_SHORT_READ;
}

int Write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 offset) {
  const auto* in = static_cast<const uint8_t*>(buf);
  Status s = HandleOf(f)->file->WriteAt(
      static_cast<uint64_t>(offset), std::span(in, static_cast<size_t>(amt)));
  return IoResult(s, SQLITE_IOERR_WRITE);
}

int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  Status s = HandleOf(f)->file->Truncate(static_cast<uint64_t>(size));
  return IoResult(s, SQLITE_IOERR_TRUNCATE);
}

// Durability order: the file's earlier writes and truncates are durable
// before this returns; for a new WAL or journal, then its name too, before
// SQLite relies on the file (it writes the commit that needs it after).
int Sync(sqlite3_file* f, int /*flags*/) {
  Handle* h = HandleOf(f);
  if (Status s = h->file->Sync(); !s.ok()) {
    return IoResult(s, SQLITE_IOERR_FSYNC);
  }
  if (h->sync_dir) {
    if (!h->vfs->fs->SyncDir(Parent(h->path)).ok()) {
      return SQLITE_IOERR_DIR_FSYNC;
    }
    h->sync_dir = false;
  }
  return SQLITE_OK;
}

int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  StatusOr<uint64_t> n = HandleOf(f)->file->Size();
  if (!n.ok()) return SQLITE_IOERR_FSTAT;
  *size = static_cast<sqlite3_int64>(*n);
  return SQLITE_OK;
}

// Raises this handle's lock on its path to `level`, or SQLITE_BUSY with the
// lock unchanged, except that a writer that got PENDING keeps it (as in
// os_unix.c) so that new readers stop coming while it waits.
int Lock(sqlite3_file* f, int level) {
  Handle* h = HandleOf(f);
  if (h->lock >= level) return SQLITE_OK;
  std::lock_guard<std::mutex> l(h->vfs->mu);
  LockNode& n = h->vfs->locks[h->path];
  if (h->lock == SQLITE_LOCK_NONE) {
    // SQLite asks for SHARED first, always.
    if (n.pending || n.exclusive) return SQLITE_BUSY;
    ++n.shared;
    h->lock = SQLITE_LOCK_SHARED;
    if (level == SQLITE_LOCK_SHARED) return SQLITE_OK;
  }
  if (n.writer != nullptr && n.writer != h) return SQLITE_BUSY;
  n.writer = h;
  if (level == SQLITE_LOCK_RESERVED) {
    h->lock = SQLITE_LOCK_RESERVED;
    return SQLITE_OK;
  }
  n.pending = true;
  h->lock = SQLITE_LOCK_PENDING;
  if (n.shared > 1) return SQLITE_BUSY;  // other readers still in
  n.exclusive = true;
  h->lock = SQLITE_LOCK_EXCLUSIVE;
  return SQLITE_OK;
}

// Lowers the lock to SHARED or NONE.
int Unlock(sqlite3_file* f, int level) {
  Handle* h = HandleOf(f);
  if (h->lock <= level) return SQLITE_OK;
  std::lock_guard<std::mutex> l(h->vfs->mu);
  LockNode& n = h->vfs->locks[h->path];
  if (h->lock > SQLITE_LOCK_SHARED) {
    n.writer = nullptr;
    n.pending = false;
    n.exclusive = false;
  }
  if (level == SQLITE_LOCK_NONE) {
    --n.shared;
    if (n.shared == 0) h->vfs->locks.erase(h->path);
  }
  h->lock = level;
  return SQLITE_OK;
}

int CheckReservedLock(sqlite3_file* f, int* out) {
  Handle* h = HandleOf(f);
  std::lock_guard<std::mutex> l(h->vfs->mu);
  auto it = h->vfs->locks.find(h->path);
  *out = it != h->vfs->locks.end() && it->second.writer != nullptr;
  return SQLITE_OK;
}

int FileControl(sqlite3_file*, int, void*) { return SQLITE_NOTFOUND; }

int SectorSize(sqlite3_file*) { return 4096; }  // as the unix VFS

// A torn write changes only bytes it was writing (true of the power-loss
// file system and assumed by the unix VFS by default).
int DeviceCharacteristics(sqlite3_file*) {
  return SQLITE_IOCAP_POWERSAFE_OVERWRITE;
}

// Maps region `region` of the path's WAL index, creating (zeroed) regions up
// to it when `extend`; *out is null when it does not exist and !extend.
int ShmMap(sqlite3_file* f, int region, int size, int extend,
           void volatile** out) {
  Handle* h = HandleOf(f);
  std::lock_guard<std::mutex> l(h->vfs->mu);
  ShmNode& n = h->vfs->shm[h->path];
  if (!h->shm_mapped) {
    h->shm_mapped = true;
    ++n.refs;
  }
  *out = nullptr;
  const size_t want = static_cast<size_t>(region) + 1;
  if (n.regions.size() < want) {
    if (!extend) return SQLITE_OK;
    while (n.regions.size() < want) {
      std::unique_ptr<char[]> r(new (std::nothrow) char[size]());
      if (r == nullptr) return SQLITE_IOERR_SHMSIZE;
      n.regions.push_back(std::move(r));
    }
  }
  *out = n.regions[static_cast<size_t>(region)].get();
  return SQLITE_OK;
}

// Takes or releases slots [offset, offset+count) of the WAL index locks.
// SQLITE_BUSY if another connection holds a conflicting lock; then nothing
// changes.
int ShmLock(sqlite3_file* f, int offset, int count, int flags) {
  Handle* h = HandleOf(f);
  std::lock_guard<std::mutex> l(h->vfs->mu);
  ShmNode& n = h->vfs->shm[h->path];
  const auto mask = static_cast<uint16_t>(((1u << count) - 1)
                                          << static_cast<unsigned>(offset));
  if (flags & SQLITE_SHM_UNLOCK) {
    for (int i = offset; i < offset + count; ++i) {
      const auto bit = static_cast<uint16_t>(1u << i);
      if (h->shm_shared & bit) --n.shared[i];
      if (h->shm_exclusive & bit) n.exclusive[i] = nullptr;
    }
    h->shm_shared &= static_cast<uint16_t>(~mask);
    h->shm_exclusive &= static_cast<uint16_t>(~mask);
    return SQLITE_OK;
  }
  if (flags & SQLITE_SHM_SHARED) {
    for (int i = offset; i < offset + count; ++i) {
      if (n.exclusive[i] != nullptr && n.exclusive[i] != h) return SQLITE_BUSY;
    }
    for (int i = offset; i < offset + count; ++i) {
      const auto bit = static_cast<uint16_t>(1u << i);
      if (!(h->shm_shared & bit)) ++n.shared[i];
    }
    h->shm_shared |= mask;
    return SQLITE_OK;
  }
  for (int i = offset; i < offset + count; ++i) {
    const int mine = (h->shm_shared >> i) & 1;
    if ((n.exclusive[i] != nullptr && n.exclusive[i] != h) ||
        n.shared[i] > mine) {
      return SQLITE_BUSY;
    }
  }
  for (int i = offset; i < offset + count; ++i) n.exclusive[i] = h;
  h->shm_exclusive |= mask;
  return SQLITE_OK;
}

// The mutex gives the memory barrier SQLite asks for, as in os_unix.c.
void ShmBarrier(sqlite3_file* f) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::lock_guard<std::mutex> l(HandleOf(f)->vfs->mu);
}

// Drops this handle's locks and its reference; the last reference frees the
// memory whatever `delete_flag` says (nothing of it is on disk).
int ShmUnmap(sqlite3_file* f, int /*delete_flag*/) {
  Handle* h = HandleOf(f);
  if (!h->shm_mapped) return SQLITE_OK;
  std::lock_guard<std::mutex> l(h->vfs->mu);
  auto it = h->vfs->shm.find(h->path);
  ShmNode& n = it->second;
  for (int i = 0; i < SQLITE_SHM_NLOCK; ++i) {
    if ((h->shm_shared >> i) & 1) --n.shared[i];
    if (n.exclusive[i] == h) n.exclusive[i] = nullptr;
  }
  h->shm_shared = 0;
  h->shm_exclusive = 0;
  h->shm_mapped = false;
  if (--n.refs == 0) h->vfs->shm.erase(it);
  return SQLITE_OK;
}

constexpr sqlite3_io_methods kIoMethods = {
    /*iVersion=*/2,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    /*xFetch=*/nullptr,
    /*xUnfetch=*/nullptr,
};

// ---- sqlite3_vfs -----------------------------------------------------------

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags,
         int* out_flags) {
  State* st = StateOf(vfs);
  auto* ff = reinterpret_cast<FsFile*>(f);
  ff->base.pMethods = nullptr;  // SQLite calls xClose only when set
  if (name == nullptr) {
    // A temporary file: nothing to keep across a crash.
    return st->fallback->xOpen(st->fallback, name, f, flags, out_flags);
  }
  const std::string path = name;
  const bool create = (flags & SQLITE_OPEN_CREATE) != 0;
  if ((flags & SQLITE_OPEN_EXCLUSIVE) && st->fs->Exists(path)) {
    return SQLITE_CANTOPEN;
  }
  StatusOr<std::unique_ptr<File>> file = st->fs->Open(path, create);
  if (!file.ok()) return SQLITE_CANTOPEN;
  auto* h = new (std::nothrow) Handle{st, path, std::move(*file)};
  if (h == nullptr) return SQLITE_NOMEM;
  h->delete_on_close = (flags & SQLITE_OPEN_DELETEONCLOSE) != 0;
  // As os_unix.c: a journal or WAL opened to be created gets its directory
  // synced with its first sync.
  const int type = flags & 0x0FFF00;  // os_unix.c's mask for the kind
  h->sync_dir =
      create && (type == SQLITE_OPEN_MAIN_JOURNAL || type == SQLITE_OPEN_WAL ||
                 type == SQLITE_OPEN_SUPER_JOURNAL);
  ff->h = h;
  ff->base.pMethods = &kIoMethods;
  if (out_flags != nullptr) *out_flags = flags;
  return SQLITE_OK;
}

// Durability order: the removal is durable before this returns when SQLite
// passes sync_dir.
int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  State* st = StateOf(vfs);
  Status s = st->fs->Remove(name);
  if (s.code() == StatusCode::kNotFound) return SQLITE_IOERR_DELETE_NOENT;
  if (!s.ok()) return SQLITE_IOERR_DELETE;
  if (sync_dir && !st->fs->SyncDir(Parent(name)).ok()) {
    return SQLITE_IOERR_DIR_FSYNC;
  }
  return SQLITE_OK;
}

// Every file of a FileSystem may be read and written; a file exists for
// SQLITE_ACCESS_EXISTS when it is there and not empty (os_unix.c's rule, so
// an empty WAL or journal left behind counts as none).
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  State* st = StateOf(vfs);
  *out = 0;
  if (!st->fs->Exists(name)) return SQLITE_OK;
  if (flags != SQLITE_ACCESS_EXISTS) {
    *out = 1;
    return SQLITE_OK;
  }
  StatusOr<std::unique_ptr<File>> file = st->fs->Open(name, false);
  if (!file.ok()) {
    // A directory, or a file we cannot open: it is there.
    *out = 1;
    return SQLITE_OK;
  }
  StatusOr<uint64_t> size = (*file)->Size();
  if (!size.ok()) return SQLITE_IOERR_ACCESS;
  *out = *size > 0;
  return SQLITE_OK;
}

int FullPathname(sqlite3_vfs*, const char* name, int n_out, char* out) {
  std::string full = name;
  if (full.empty() || full[0] != '/') {
    std::vector<char> cwd(4096);
    if (getcwd(cwd.data(), cwd.size()) == nullptr) return SQLITE_CANTOPEN;
    full = std::string(cwd.data()) + "/" + full;
  }
  if (full.size() + 1 > static_cast<size_t>(n_out)) return SQLITE_CANTOPEN;
  std::memcpy(out, full.c_str(), full.size() + 1);
  return SQLITE_OK;
}

// Everything that is not a file goes to the default VFS.
void* DlOpen(sqlite3_vfs* vfs, const char* name) {
  sqlite3_vfs* d = StateOf(vfs)->fallback;
  return d->xDlOpen(d, name);
}
void DlError(sqlite3_vfs* vfs, int n, char* out) {
  sqlite3_vfs* d = StateOf(vfs)->fallback;
  d->xDlError(d, n, out);
}
void (*DlSym(sqlite3_vfs* vfs, void* lib, const char* sym))(void) {
  sqlite3_vfs* d = StateOf(vfs)->fallback;
  return d->xDlSym(d, lib, sym);
}
void DlClose(sqlite3_vfs* vfs, void* lib) {
  sqlite3_vfs* d = StateOf(vfs)->fallback;
  d->xDlClose(d, lib);
}
int Randomness(sqlite3_vfs* vfs, int n, char* out) {
  sqlite3_vfs* d = StateOf(vfs)->fallback;
  return d->xRandomness(d, n, out);
}
int Sleep(sqlite3_vfs* vfs, int us) {
  sqlite3_vfs* d = StateOf(vfs)->fallback;
  return d->xSleep(d, us);
}
int CurrentTime(sqlite3_vfs* vfs, double* out) {
  sqlite3_vfs* d = StateOf(vfs)->fallback;
  return d->xCurrentTime(d, out);
}
int GetLastError(sqlite3_vfs* vfs, int n, char* out) {
  sqlite3_vfs* d = StateOf(vfs)->fallback;
  return d->xGetLastError(d, n, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  sqlite3_vfs* d = StateOf(vfs)->fallback;
  return d->xCurrentTimeInt64(d, out);
}

// One live FsVfs per FileSystem, found by address while it lives.
std::mutex registry_mu;
std::map<FileSystem*, std::weak_ptr<FsVfs>>& Registry() {
  static auto* registry = new std::map<FileSystem*, std::weak_ptr<FsVfs>>();
  return *registry;
}
std::atomic<uint64_t> next_id{1};

}  // namespace

StatusOr<std::shared_ptr<FsVfs>> FsVfs::For(FileSystem* fs) {
  std::lock_guard<std::mutex> l(registry_mu);
  auto& registry = Registry();
  if (auto it = registry.find(fs); it != registry.end()) {
    if (std::shared_ptr<FsVfs> live = it->second.lock()) return live;
  }
  sqlite3_vfs* fallback = sqlite3_vfs_find(nullptr);
  if (fallback == nullptr || fallback->iVersion < 2) {
    return IoError("SQLite has no default VFS to take temporary files");
  }
  auto st = std::make_unique<State>();
  st->fs = fs;
  st->name = "vss-fs-" + std::to_string(next_id.fetch_add(1));
  st->fallback = fallback;
  sqlite3_vfs& v = st->vfs;
  v.iVersion = 2;
  v.szOsFile = std::max(static_cast<int>(sizeof(FsFile)), fallback->szOsFile);
  v.mxPathname = 4096;
  v.zName = st->name.c_str();
  v.pAppData = st.get();
  v.xOpen = Open;
  v.xDelete = Delete;
  v.xAccess = Access;
  v.xFullPathname = FullPathname;
  v.xDlOpen = DlOpen;
  v.xDlError = DlError;
  v.xDlSym = DlSym;
  v.xDlClose = DlClose;
  v.xRandomness = Randomness;
  v.xSleep = Sleep;
  v.xCurrentTime = CurrentTime;
  v.xGetLastError = GetLastError;
  v.xCurrentTimeInt64 = CurrentTimeInt64;
  if (int rc = sqlite3_vfs_register(&v, /*makeDflt=*/0); rc != SQLITE_OK) {
    return IoError(std::string("cannot register SQLite VFS ") + st->name +
                   ": " + sqlite3_errstr(rc));
  }
  std::shared_ptr<FsVfs> vfs(new FsVfs(std::move(st)));
  registry[fs] = vfs;
  return vfs;
}

FsVfs::FsVfs(std::unique_ptr<State> state) : state_(std::move(state)) {}

FsVfs::~FsVfs() {
  sqlite3_vfs_unregister(&state_->vfs);
  std::lock_guard<std::mutex> l(registry_mu);
  auto& registry = Registry();
  auto it = registry.find(state_->fs);
  // A newer FsVfs may already serve the same FileSystem; leave it.
  if (it != registry.end() && it->second.expired()) registry.erase(it);
}

const std::string& FsVfs::name() const { return state_->name; }
FileSystem* FsVfs::fs() const { return state_->fs; }

}  // namespace vss::metadata
