#include "vss/metadata/catalog.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <utility>

#include "schema.h"
#include "statement.h"
#include "vss/metadata/fs_vfs.h"

namespace vss::metadata {
namespace {

using internal::ColumnReader;
using internal::Query;

// --- SQL. Column lists match the Read* functions below. --------------------

constexpr char kInsertVolume[] =
    "INSERT INTO volumes (id, name, path, size, chunk_size, next_epoch, "
    "created, format, guest_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''))";
constexpr char kListVolumes[] =
    "SELECT id, name, path, size, chunk_size, next_epoch, created, format, "
    "IFNULL(guest_agent, '') FROM volumes ORDER BY name";
constexpr char kFindVolume[] =
    "SELECT id, name, path, size, chunk_size, next_epoch, created, format, "
    "IFNULL(guest_agent, '') FROM volumes WHERE id = ?";
constexpr char kSetGuestAgent[] =
    "UPDATE volumes SET guest_agent = NULLIF(?, '') WHERE id = ?";
constexpr char kSetNextEpoch[] =
    "UPDATE volumes SET next_epoch = ? WHERE id = ?";
constexpr char kSetsOfVolume[] =
    "SELECT DISTINCT set_id FROM shadows WHERE volume_id = ?";
constexpr const char* kDeleteVolumeChildren[] = {
    "DELETE FROM diff_index WHERE volume_id = ?",
    "DELETE FROM segments WHERE volume_id = ?",
    "DELETE FROM free_ranges WHERE volume_id = ?",
    "DELETE FROM journal WHERE volume_id = ?",
    "DELETE FROM diff_areas WHERE volume_id = ?",
    "DELETE FROM shadows WHERE volume_id = ?",
};
constexpr char kDeleteVolume[] = "DELETE FROM volumes WHERE id = ?";

constexpr char kUpsertDiffArea[] =
    "INSERT INTO diff_areas (volume_id, dir, max_bytes, used_bytes) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (volume_id) DO UPDATE SET "
    "dir = excluded.dir, max_bytes = excluded.max_bytes, "
    "used_bytes = excluded.used_bytes";
constexpr char kFindDiffArea[] =
    "SELECT volume_id, dir, max_bytes, used_bytes FROM diff_areas "
    "WHERE volume_id = ?";
constexpr char kListDiffAreas[] =
    "SELECT volume_id, dir, max_bytes, used_bytes FROM diff_areas "
    "ORDER BY volume_id";

constexpr char kInsertShadowSet[] =
    "INSERT INTO shadow_sets (id, created, context, shadow_count) "
    "VALUES (?, ?, ?, ?)";
constexpr char kListShadowSets[] =
    "SELECT id, created, context, shadow_count FROM shadow_sets "
    "ORDER BY created, id";
constexpr char kDeleteSetIfEmpty[] =
    "DELETE FROM shadow_sets WHERE id = ?1 AND NOT EXISTS "
    "(SELECT 1 FROM shadows WHERE set_id = ?1)";

#define VSS_SHADOW_COLUMNS                                              \
  "id, set_id, volume_id, epoch, count_in_set, original_volume, "       \
  "device_object, originating_machine, service_machine, exposed_name, " \
  "exposed_path, provider_id, attributes, context, state, created, "    \
  "persistent, owner_pid, properties"
constexpr char kInsertShadow[] =
    "INSERT INTO shadows (" VSS_SHADOW_COLUMNS
    ") VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kUpdateShadow[] =
    "UPDATE shadows SET set_id = ?2, volume_id = ?3, epoch = ?4, "
    "count_in_set = ?5, original_volume = ?6, device_object = ?7, "
    "originating_machine = ?8, service_machine = ?9, exposed_name = ?10, "
    "exposed_path = ?11, provider_id = ?12, attributes = ?13, context = ?14, "
    "state = ?15, created = ?16, persistent = ?17, owner_pid = ?18, "
    "properties = ?19 "
    "WHERE id = ?1";
constexpr char kListShadows[] =
    "SELECT " VSS_SHADOW_COLUMNS " FROM shadows ORDER BY volume_id, epoch";
constexpr char kListShadowsOfVolume[] = "SELECT " VSS_SHADOW_COLUMNS
                                        " FROM shadows WHERE volume_id = ? "
                                        "ORDER BY epoch";
constexpr char kFindShadow[] =
    "SELECT " VSS_SHADOW_COLUMNS " FROM shadows WHERE id = ?";
#undef VSS_SHADOW_COLUMNS
constexpr char kSetOfShadow[] = "SELECT set_id FROM shadows WHERE id = ?";
constexpr char kDeleteShadow[] = "DELETE FROM shadows WHERE id = ?";

constexpr char kInsertIndexRow[] =
    "INSERT INTO diff_index (volume_id, epoch, chunk, segment, offset, "
    "record_bytes, stored_len, raw_len, codec, checksum) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kListIndexRows[] =
    "SELECT chunk, epoch, segment, offset, record_bytes, stored_len, raw_len, "
    "codec, checksum FROM diff_index WHERE volume_id = ? "
    "ORDER BY epoch, chunk";
constexpr char kListIndexRowsOfEpoch[] =
    "SELECT chunk, epoch, segment, offset, record_bytes, stored_len, raw_len, "
    "codec, checksum FROM diff_index WHERE volume_id = ? AND epoch = ? "
    "ORDER BY chunk";
constexpr char kDeleteIndexRow[] =
    "DELETE FROM diff_index WHERE volume_id = ? AND epoch = ? AND chunk = ?";
constexpr char kDeleteIndexRowsOfEpoch[] =
    "DELETE FROM diff_index WHERE volume_id = ? AND epoch = ?";
constexpr char kMoveIndexRow[] =
    "UPDATE diff_index SET epoch = ? "
    "WHERE volume_id = ? AND epoch = ? AND chunk = ?";

constexpr char kUpsertSegment[] =
    "INSERT INTO segments (volume_id, seq, indexed_to, live_bytes) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (volume_id, seq) DO UPDATE SET "
    "indexed_to = excluded.indexed_to, live_bytes = excluded.live_bytes";
constexpr char kListSegments[] =
    "SELECT seq, indexed_to, live_bytes FROM segments WHERE volume_id = ? "
    "ORDER BY seq";
constexpr char kDeleteSegment[] =
    "DELETE FROM segments WHERE volume_id = ? AND seq = ?";

constexpr char kInsertFreeRange[] =
    "INSERT INTO free_ranges (volume_id, segment, offset, length) "
    "VALUES (?, ?, ?, ?)";
constexpr char kListFreeRanges[] =
    "SELECT segment, offset, length FROM free_ranges WHERE volume_id = ? "
    "ORDER BY segment, offset, length";
constexpr char kClearFreeRanges[] =
    "DELETE FROM free_ranges WHERE volume_id = ?";

constexpr char kPutJournal[] =
    "INSERT INTO journal (volume_id, op, arg) VALUES (?, ?, ?) "
    "ON CONFLICT (volume_id) DO UPDATE SET op = excluded.op, "
    "arg = excluded.arg";
constexpr char kFindJournal[] =
    "SELECT volume_id, op, arg FROM journal WHERE volume_id = ?";
constexpr char kClearJournal[] = "DELETE FROM journal WHERE volume_id = ?";

constexpr char kInsertEvent[] =
    "INSERT INTO events (time, volume_id, shadow_id, kind, message) "
    "VALUES (?, ?, ?, ?, ?)";
constexpr char kListEvents[] =
    "SELECT id, time, volume_id, shadow_id, kind, message FROM events "
    "ORDER BY id";
constexpr char kListEventsOfVolume[] =
    "SELECT id, time, volume_id, shadow_id, kind, message FROM events "
    "WHERE volume_id = ? ORDER BY id";

// --- Row readers. ------------------------------------------------------------

VolumeRow ReadVolume(ColumnReader& r) {
  VolumeRow v;
  v.id = r.Id();
  v.name = r.Text();
  v.path = r.Text();
  v.size = r.U64();
  v.chunk_size = r.U32();
  v.next_epoch = r.U64();
  v.created = r.I64();
  v.format = r.Text();
  v.guest_agent = r.Text();
  return v;
}

DiffAreaRow ReadDiffArea(ColumnReader& r) {
  DiffAreaRow d;
  d.volume_id = r.Id();
  d.dir = r.Text();
  d.max_bytes = r.I64();
  d.used_bytes = r.U64();
  return d;
}

ShadowSetRow ReadShadowSet(ColumnReader& r) {
  ShadowSetRow s;
  s.id = r.Id();
  s.created = r.I64();
  s.context = r.I32();
  s.shadow_count = r.U32();
  return s;
}

ShadowRow ReadShadow(ColumnReader& r) {
  ShadowRow s;
  s.id = r.Id();
  s.set_id = r.Id();
  s.volume_id = r.Id();
  s.epoch = r.U64();
  s.count_in_set = r.U32();
  s.original_volume = r.Text();
  s.device_object = r.Text();
  s.originating_machine = r.Text();
  s.service_machine = r.Text();
  s.exposed_name = r.Text();
  s.exposed_path = r.Text();
  s.provider_id = r.Id();
  s.attributes = r.I32();
  s.context = r.I32();
  s.state = r.I32();
  s.created = r.I64();
  s.persistent = r.Bool();
  s.owner_pid = r.I64();
  s.properties = r.Text();
  return s;
}

IndexRow ReadIndexRow(ColumnReader& r) {
  IndexRow x;
  x.chunk = r.U64();
  x.epoch = r.U64();
  x.segment = r.U32();
  x.offset = r.U64();
  x.record_bytes = r.U32();
  x.stored_len = r.U32();
  x.raw_len = r.U32();
  x.codec = r.U8();
  x.checksum = r.U64();
  return x;
}

SegmentRow ReadSegment(ColumnReader& r) {
  SegmentRow s;
  s.seq = r.U32();
  s.indexed_to = r.U64();
  s.live_bytes = r.U64();
  return s;
}

FreeRange ReadFreeRange(ColumnReader& r) {
  FreeRange f;
  f.segment = r.U32();
  f.offset = r.U64();
  f.length = r.U64();
  return f;
}

JournalRow ReadJournal(ColumnReader& r) {
  JournalRow j;
  j.volume_id = r.Id();
  j.op = r.Text();
  j.arg = r.Text();
  return j;
}

EventRow ReadEvent(ColumnReader& r) {
  EventRow e;
  e.id = r.I64();
  e.time = r.I64();
  e.volume_id = r.OptionalId();
  e.shadow_id = r.OptionalId();
  e.kind = r.Text();
  e.message = r.Text();
  return e;
}

Guid ReadGuid(ColumnReader& r) { return r.Id(); }

// --- Opening. ----------------------------------------------------------------

// Switches the database to write-ahead logging and checks that it took:
// SQLite silently keeps the old mode where WAL is impossible.
Status UseWal(sqlite3* db, const std::string& path) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  std::string mode;
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT) {
    mode = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  }
  Status s = rc == SQLITE_ROW ? OkStatus()
                              : internal::SqliteStatus(db, rc, path, "use WAL");
  sqlite3_finalize(st);
  if (s.ok() && mode != "wal") {
    s = UnsupportedError("catalog " + path +
                         ": cannot use write-ahead logging here (journal "
                         "mode stays '" +
                         mode + "')");
  }
  return s;
}

// Checks the file and sets the per-connection options; writes nothing to a
// file that is not a catalog this build can use. REQUIRES: no transaction
// is open.
Status Configure(sqlite3* db, const std::string& path, bool fresh) {
  sqlite3_extended_result_codes(db, 1);
  int rc = sqlite3_busy_timeout(db, 10000);
  if (rc != SQLITE_OK) {
    return internal::SqliteStatus(db, rc, path, "busy timeout");
  }
  VSS_RETURN_IF_ERROR(internal::CheckCatalog(db, path, fresh));
  // WAL + synchronous=FULL: a transaction is durable when COMMIT returns
  // (its WAL frames are synced before it does).
  VSS_RETURN_IF_ERROR(UseWal(db, path));
  return internal::Exec(db, path,
                        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                        "configure");
}

// Opens a connection to an existing file, configured, migrated. The file
// is never created here (unless `vfs` is given and `fresh`: a test catalog
// in an FsVfs) and a symbolic link is not followed. `vfs`: SQLite VFS name,
// null for the OS.
StatusOr<sqlite3*> Connect(const std::string& path, bool fresh,
                           const char* vfs = nullptr) {
  sqlite3* db = nullptr;
  int flags =
      SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW;
  if (vfs != nullptr && fresh) flags |= SQLITE_OPEN_CREATE;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, vfs);
  Status s = rc == SQLITE_OK ? OkStatus()
                             : internal::SqliteStatus(db, rc, path, "open");
  if (s.ok()) s = Configure(db, path, fresh);
  if (s.ok()) s = internal::Migrate(db, path);
  if (!s.ok()) {
    sqlite3_close_v2(db);
    return s;
  }
  return db;
}

// An errno of the catalog's own file handling, as kIoError naming the file.
Status FileError(int err, const std::string& path, const std::string& what) {
  return IoError("catalog " + path + ": " + what + ": " + std::strerror(err));
}

Status FsyncPath(const std::string& path, int extra_flags) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | extra_flags);
  if (fd < 0) return FileError(errno, path, "open to sync");
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc < 0) return FileError(err, path, "fsync");
  return OkStatus();
}

std::string DirOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Makes a new catalog at `path`, which must not exist: the database is made
// under a temporary name (0600, so that SQLite gives its -wal and -shm the
// same mode), migrated, closed (which checkpoints the WAL into it), synced,
// and only then given its name, which is synced too. A catalog.db therefore
// always holds a schema: an existing file without one is damage, never a
// new store (see CheckCatalog). If another process made `path` first, its
// catalog is kept and ours dropped.
Status CreateCatalog(const std::string& path) {
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, ".new-%ld-%08x",
                static_cast<long>(getpid()),
                static_cast<unsigned>(std::random_device{}()));
  const std::string tmp = path + suffix;
  auto drop = [&tmp] {
    for (const char* ext : {"", "-wal", "-shm", "-journal"}) {
      unlink((tmp + ext).c_str());
    }
  };
  int fd = open(tmp.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW,
                0600);
  if (fd < 0) return FileError(errno, path, "create " + tmp);
  int rc = fchmod(fd, 0600);  // whatever the umask
  int err = errno;
  close(fd);
  if (rc < 0) {
    drop();
    return FileError(err, path, "chmod 0600");
  }
  StatusOr<sqlite3*> db = Connect(tmp, /*fresh=*/true);
  Status s = db.status();
  if (s.ok() && sqlite3_close(*db) != SQLITE_OK) {
    s = IoError("catalog " + path + ": closing the new catalog failed");
  }
  // The initialised database is on the medium before its name says it is
  // the catalog.
  if (s.ok()) s = FsyncPath(tmp, O_NOFOLLOW);
  if (s.ok()) {
    rc = renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(),
                   RENAME_NOREPLACE);
    if (rc < 0 && (errno == EINVAL || errno == ENOSYS)) {
      rc = link(tmp.c_str(), path.c_str());  // no RENAME_NOREPLACE here
    }
    if (rc < 0 && errno != EEXIST) {
      s = FileError(errno, path, "rename " + tmp);
    }
  }
  drop();  // gone after the rename; the link's second name otherwise
  // The name is durable before anything is written to the new store.
  if (s.ok()) s = FsyncPath(DirOf(path), O_DIRECTORY);
  return s;
}

std::string NotFound(const std::string& path, std::string_view what,
                     const Guid& id) {
  return std::string(what) + " " + id.ToString() + " is not in catalog " + path;
}

}  // namespace

// --- Impl: the statement cache and the query patterns every method uses. ---

struct Catalog::Impl {
  Impl(sqlite3* db, const std::string& path)
      : db(db), path(path), cache(db, path) {}

  // Runs a statement that returns no rows; returns the rows it changed.
  template <typename... Args>
  StatusOr<int64_t> Change(const char* sql, std::string_view what,
                           const Args&... args) {
    VSS_ASSIGN_OR_RETURN(Query q, cache.Get(sql, what));
    q.Bind(args...);
    VSS_RETURN_IF_ERROR(q.Run());
    return q.Changes();
  }

  template <typename... Args>
  Status Run(const char* sql, std::string_view what, const Args&... args) {
    return Change(sql, what, args...).status();
  }

  // Runs a statement that must change exactly one existing row; kNotFound
  // with `missing` as message when none matched.
  template <typename... Args>
  Status ChangeOne(const char* sql, std::string_view what,
                   const std::string& missing, const Args&... args) {
    VSS_ASSIGN_OR_RETURN(int64_t n, Change(sql, what, args...));
    return n == 0 ? NotFoundError(missing) : OkStatus();
  }

  template <typename Row, typename... Args>
  StatusOr<std::vector<Row>> Select(const char* sql, std::string_view what,
                                    Row (*read)(ColumnReader&),
                                    const Args&... args) {
    VSS_ASSIGN_OR_RETURN(Query q, cache.Get(sql, what));
    q.Bind(args...);
    std::vector<Row> rows;
    while (true) {
      VSS_ASSIGN_OR_RETURN(bool more, q.Step());
      if (!more) return rows;
      ColumnReader r = q.Row();
      rows.push_back(read(r));
      VSS_RETURN_IF_ERROR(r.status());
    }
  }

  template <typename Row, typename... Args>
  StatusOr<std::optional<Row>> SelectOne(const char* sql, std::string_view what,
                                         Row (*read)(ColumnReader&),
                                         const Args&... args) {
    VSS_ASSIGN_OR_RETURN(std::vector<Row> rows,
                         Select(sql, what, read, args...));
    if (rows.empty()) return std::optional<Row>();
    return std::optional<Row>(std::move(rows.front()));
  }

  bool InTransaction() const { return sqlite3_get_autocommit(db) == 0; }

  Status Begin() {
    return internal::Exec(db, path, "BEGIN IMMEDIATE", "begin transaction");
  }

  // Commits; on failure rolls back whatever is left open, so that a failed
  // commit never leaves the connection inside a transaction.
  Status Commit() {
    Status s = internal::Exec(db, path, "COMMIT", "commit");
    if (!s.ok()) Rollback();
    return s;
  }

  void Rollback() {
    // A failed ROLLBACK leaves nothing better to do; SQLite rolls back the
    // transaction itself when the connection closes.
    if (InTransaction()) {
      internal::Exec(db, path, "ROLLBACK", "roll back").IgnoreError();
    }
  }

  // Runs `f` inside the open transaction, or inside a new one committed when
  // `f` succeeds and rolled back when it fails.
  template <typename F>
  Status Atomically(F f) {
    if (InTransaction()) return f();
    VSS_RETURN_IF_ERROR(Begin());
    Status s = f();
    if (!s.ok()) {
      Rollback();
      return s;
    }
    return Commit();
  }

  // Deletes shadow set `set_id` if no shadow belongs to it any more.
  Status DeleteSetIfEmpty(const Guid& set_id) {
    return Run(kDeleteSetIfEmpty, "delete empty shadow set", set_id);
  }

  sqlite3* db;
  const std::string& path;
  internal::StatementCache cache;
};

// --- Transaction. ------------------------------------------------------------

Transaction::Transaction(Transaction&& o) noexcept
    : catalog_(o.catalog_), lock_(std::move(o.lock_)), done_(o.done_) {
  o.catalog_ = nullptr;
  o.done_ = true;
}

Transaction::~Transaction() {
  if (catalog_ != nullptr && !done_) catalog_->impl_->Rollback();
}

Status Transaction::Commit() {
  if (catalog_ == nullptr || done_) {
    return FailedPreconditionError("transaction already ended");
  }
  done_ = true;
  Status s = catalog_->impl_->Commit();
  lock_.unlock();  // the transaction is over either way
  return s;
}

// --- Catalog. ----------------------------------------------------------------

StatusOr<std::unique_ptr<Catalog>> Catalog::Open(const std::string& path,
                                                  FileSystem* fs) {
  if (fs != nullptr) {
    // A catalog in an FsVfs (tests): the file system's own create is
    // atomic enough there; an existing file is checked as on disk.
    VSS_ASSIGN_OR_RETURN(std::shared_ptr<FsVfs> vfs, FsVfs::For(fs));
    VSS_ASSIGN_OR_RETURN(
        sqlite3 * db, Connect(path, /*fresh=*/!fs->Exists(path),
                              vfs->name().c_str()));
    std::unique_ptr<Catalog> catalog(new Catalog(path, db));
    catalog->vfs_ = std::move(vfs);
    return catalog;
  }
  struct stat st;
  if (lstat(path.c_str(), &st) < 0) {
    if (errno != ENOENT) return FileError(errno, path, "stat");
    VSS_RETURN_IF_ERROR(CreateCatalog(path));
  } else if (S_ISLNK(st.st_mode)) {
    return FailedPreconditionError(
        "catalog " + path +
        " is a symbolic link; vss does not follow links in a store");
  } else if (S_ISREG(st.st_mode) && st.st_size == 0) {
    // SQLite would take an empty file for a new database; a catalog is
    // never empty (CreateCatalog), so this one lost its contents.
    return CorruptionError(
        "catalog " + path +
        " is empty (0 bytes), so it is not this store's catalog; restore it "
        "from a backup, or move the store away to start a new one");
  }
  VSS_ASSIGN_OR_RETURN(sqlite3 * db, Connect(path, /*fresh=*/false));
  return std::unique_ptr<Catalog>(new Catalog(path, db));
}

Catalog::Catalog(std::string path, sqlite3* db)
    : path_(std::move(path)),
      db_(db),
      impl_(std::make_unique<Impl>(db_, path_)) {}

Catalog::~Catalog() {
  impl_.reset();  // finalizes the statements, which close requires
  sqlite3_close_v2(db_);
}

StatusOr<Transaction> Catalog::Begin() {
  std::unique_lock<std::recursive_mutex> lock(mu_);
  if (impl_->InTransaction()) {
    return FailedPreconditionError("catalog " + path_ +
                                   ": a transaction is already open");
  }
  VSS_RETURN_IF_ERROR(impl_->Begin());
  return Transaction(this, std::move(lock));
}

// Volumes.

Status Catalog::InsertVolume(const VolumeRow& v) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kInsertVolume, "insert volume", v.id, v.name, v.path,
                    v.size, v.chunk_size, v.next_epoch, v.created, v.format,
                    v.guest_agent);
}

StatusOr<std::vector<VolumeRow>> Catalog::ListVolumes() {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Select(kListVolumes, "list volumes", ReadVolume);
}

StatusOr<std::optional<VolumeRow>> Catalog::FindVolume(const Guid& id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->SelectOne(kFindVolume, "find volume", ReadVolume, id);
}

Status Catalog::SetVolumeNextEpoch(const Guid& id, uint64_t next_epoch) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->ChangeOne(kSetNextEpoch, "set next epoch",
                          NotFound(path_, "volume", id), next_epoch, id);
}

Status Catalog::SetVolumeGuestAgent(const Guid& id, const std::string& socket) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->ChangeOne(kSetGuestAgent, "set guest agent",
                          NotFound(path_, "volume", id), socket, id);
}

Status Catalog::DeleteVolume(const Guid& id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Atomically([&]() -> Status {
    VSS_ASSIGN_OR_RETURN(
        std::vector<Guid> sets,
        impl_->Select(kSetsOfVolume, "delete volume", ReadGuid, id));
    for (const char* sql : kDeleteVolumeChildren) {
      VSS_RETURN_IF_ERROR(impl_->Run(sql, "delete volume", id));
    }
    for (const Guid& set : sets) {
      VSS_RETURN_IF_ERROR(impl_->DeleteSetIfEmpty(set));
    }
    return impl_->ChangeOne(kDeleteVolume, "delete volume",
                            NotFound(path_, "volume", id), id);
  });
}

// Diff areas.

Status Catalog::UpsertDiffArea(const DiffAreaRow& d) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kUpsertDiffArea, "upsert diff area", d.volume_id, d.dir,
                    d.max_bytes, d.used_bytes);
}

StatusOr<std::optional<DiffAreaRow>> Catalog::FindDiffArea(
    const Guid& volume_id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->SelectOne(kFindDiffArea, "find diff area", ReadDiffArea,
                          volume_id);
}

StatusOr<std::vector<DiffAreaRow>> Catalog::ListDiffAreas() {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Select(kListDiffAreas, "list diff areas", ReadDiffArea);
}

// Shadow sets and shadows.

Status Catalog::InsertShadowSet(const ShadowSetRow& s) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kInsertShadowSet, "insert shadow set", s.id, s.created,
                    s.context, s.shadow_count);
}

Status Catalog::InsertShadow(const ShadowRow& s) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kInsertShadow, "insert shadow", s.id, s.set_id, s.volume_id,
                    s.epoch, s.count_in_set, s.original_volume, s.device_object,
                    s.originating_machine, s.service_machine, s.exposed_name,
                    s.exposed_path, s.provider_id, s.attributes, s.context,
                    s.state, s.created, s.persistent, s.owner_pid, s.properties);
}

Status Catalog::UpdateShadow(const ShadowRow& s) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->ChangeOne(
      kUpdateShadow, "update shadow", NotFound(path_, "shadow", s.id), s.id,
      s.set_id, s.volume_id, s.epoch, s.count_in_set, s.original_volume,
      s.device_object, s.originating_machine, s.service_machine, s.exposed_name,
      s.exposed_path, s.provider_id, s.attributes, s.context, s.state,
      s.created, s.persistent, s.owner_pid, s.properties);
}

Status Catalog::DeleteShadow(const Guid& id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Atomically([&]() -> Status {
    VSS_ASSIGN_OR_RETURN(
        std::optional<Guid> set,
        impl_->SelectOne(kSetOfShadow, "delete shadow", ReadGuid, id));
    if (!set) return NotFoundError(NotFound(path_, "shadow", id));
    VSS_RETURN_IF_ERROR(impl_->Run(kDeleteShadow, "delete shadow", id));
    return impl_->DeleteSetIfEmpty(*set);
  });
}

StatusOr<std::vector<ShadowRow>> Catalog::ListShadows() {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Select(kListShadows, "list shadows", ReadShadow);
}

StatusOr<std::vector<ShadowRow>> Catalog::ListShadowsOfVolume(
    const Guid& volume_id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Select(kListShadowsOfVolume, "list shadows", ReadShadow,
                       volume_id);
}

StatusOr<std::optional<ShadowRow>> Catalog::FindShadow(const Guid& id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->SelectOne(kFindShadow, "find shadow", ReadShadow, id);
}

StatusOr<std::vector<ShadowSetRow>> Catalog::ListShadowSets() {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Select(kListShadowSets, "list shadow sets", ReadShadowSet);
}

// Diff-area index.

Status Catalog::InsertIndexRows(const Guid& volume_id,
                                const std::vector<IndexRow>& rows) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  const std::string vid = volume_id.ToString();  // bound without a copy
  return impl_->Atomically([&]() -> Status {
    for (const IndexRow& r : rows) {
      VSS_RETURN_IF_ERROR(impl_->Run(kInsertIndexRow, "insert index row", vid,
                                     r.epoch, r.chunk, r.segment, r.offset,
                                     r.record_bytes, r.stored_len, r.raw_len,
                                     r.codec, r.checksum));
    }
    return OkStatus();
  });
}

StatusOr<std::vector<IndexRow>> Catalog::ListIndexRows(const Guid& volume_id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Select(kListIndexRows, "list index rows", ReadIndexRow,
                       volume_id);
}

StatusOr<std::vector<IndexRow>> Catalog::ListIndexRowsOfEpoch(
    const Guid& volume_id, uint64_t epoch) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Select(kListIndexRowsOfEpoch, "list index rows", ReadIndexRow,
                       volume_id, epoch);
}

Status Catalog::DeleteIndexRow(const Guid& volume_id, uint64_t epoch,
                               uint64_t chunk) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kDeleteIndexRow, "delete index row", volume_id, epoch,
                    chunk);
}

Status Catalog::DeleteIndexRowsOfEpoch(const Guid& volume_id, uint64_t epoch) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kDeleteIndexRowsOfEpoch, "delete index rows", volume_id,
                    epoch);
}

Status Catalog::MoveIndexRow(const Guid& volume_id, uint64_t from_epoch,
                             uint64_t chunk, uint64_t to_epoch) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  std::string missing = "index row of volume " + volume_id.ToString() +
                        " epoch " + std::to_string(from_epoch) + " chunk " +
                        std::to_string(chunk) + " is not in catalog " + path_;
  return impl_->ChangeOne(kMoveIndexRow, "move index row", missing, to_epoch,
                          volume_id, from_epoch, chunk);
}

// Segments.

Status Catalog::UpsertSegment(const Guid& volume_id, const SegmentRow& s) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kUpsertSegment, "upsert segment", volume_id, s.seq,
                    s.indexed_to, s.live_bytes);
}

StatusOr<std::vector<SegmentRow>> Catalog::ListSegments(const Guid& volume_id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Select(kListSegments, "list segments", ReadSegment, volume_id);
}

Status Catalog::DeleteSegment(const Guid& volume_id, uint32_t seq) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kDeleteSegment, "delete segment", volume_id, seq);
}

// Space to give back.

Status Catalog::InsertFreeRanges(const Guid& volume_id,
                                 const std::vector<FreeRange>& ranges) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Atomically([&]() -> Status {
    for (const FreeRange& r : ranges) {
      VSS_RETURN_IF_ERROR(impl_->Run(kInsertFreeRange, "insert free range",
                                     volume_id, r.segment, r.offset, r.length));
    }
    return OkStatus();
  });
}

StatusOr<std::vector<FreeRange>> Catalog::ListFreeRanges(
    const Guid& volume_id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Select(kListFreeRanges, "list free ranges", ReadFreeRange,
                       volume_id);
}

Status Catalog::ClearFreeRanges(const Guid& volume_id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kClearFreeRanges, "clear free ranges", volume_id);
}

// Journal.

Status Catalog::PutJournal(const JournalRow& j) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kPutJournal, "put journal", j.volume_id, j.op, j.arg);
}

StatusOr<std::optional<JournalRow>> Catalog::FindJournal(
    const Guid& volume_id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->SelectOne(kFindJournal, "find journal", ReadJournal, volume_id);
}

Status Catalog::ClearJournal(const Guid& volume_id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kClearJournal, "clear journal", volume_id);
}

// Events.

Status Catalog::InsertEvent(const EventRow& e) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return impl_->Run(kInsertEvent, "insert event", e.time, e.volume_id,
                    e.shadow_id, e.kind, e.message);
}

StatusOr<std::vector<EventRow>> Catalog::ListEvents(
    std::optional<Guid> volume_id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  if (!volume_id) return impl_->Select(kListEvents, "list events", ReadEvent);
  return impl_->Select(kListEventsOfVolume, "list events", ReadEvent,
                       *volume_id);
}

// --- Time. -------------------------------------------------------------------

namespace {
constexpr int64_t kTicksPerSecond = 10'000'000;
constexpr int64_t kUnixEpochTicks = 116444736000000000;  // 1970 in 1601 ticks
constexpr int64_t kUnixEpochSeconds = kUnixEpochTicks / kTicksPerSecond;

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}
}  // namespace

int64_t NowVssTimestamp() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kTicksPerSecond + ts.tv_nsec / 100 +
         kUnixEpochTicks;
}

std::string VssTimestampToIso8601(int64_t ts) {
  // Work in whole seconds first so that no value near the int64 limits
  // overflows.
  int64_t secs = FloorDiv(ts, kTicksPerSecond);
  int64_t frac = ts - secs * kTicksPerSecond;
  int64_t unix_secs = secs - kUnixEpochSeconds;
  int64_t days = FloorDiv(unix_secs, 86400);
  int64_t sod = unix_secs - days * 86400;
  std::chrono::year_month_day ymd{
      std::chrono::sys_days{std::chrono::days{days}}};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%07lldZ",
                static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(sod / 3600),
                static_cast<int>(sod / 60 % 60), static_cast<int>(sod % 60),
                static_cast<long long>(frac));
  return buf;
}

}  // namespace vss::metadata
