#include "sqlite_writer.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <utility>

namespace vss::tools {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLogicalPath = "sqlite";
// How long a statement waits for a lock another connection holds.
constexpr int kBusyTimeoutMs = 5000;

// A prepared statement, finalized when it goes out of scope.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool prepared() const { return rc_ == SQLITE_OK && stmt_ != nullptr; }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

// The SQLite error of `db` as a Status: a file that is not a database is
// the caller's mistake, everything else an I/O error.
Status SqliteError(sqlite3* db, const std::string& what) {
  const int code = sqlite3_errcode(db);
  std::string message = what + ": " + sqlite3_errmsg(db);
  if (code == SQLITE_NOTADB) return InvalidArgumentError(std::move(message));
  return IoError(std::move(message));
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// `path` made absolute, with symbolic links of its existing part resolved.
fs::path Resolve(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  return ec ? fs::path(path).lexically_normal() : p;
}

}  // namespace

const Guid SqliteWriter::kClassId = *Guid::Parse("3f0e2c5a-7b1d-4c8e-9a26-51d4e0b7c3a9");

StatusOr<std::unique_ptr<SqliteWriter>> SqliteWriter::Open(SqliteWriterOptions options) {
  if (options.db_path.empty()) return InvalidArgumentError("no database path given (--db)");
  if (options.volume.empty()) return InvalidArgumentError("no volume given (--volume)");
  const fs::path db_path = Resolve(options.db_path);
  const fs::path dir = db_path.parent_path();
  std::error_code ec;
  if (db_path.filename().empty() || !fs::is_directory(dir, ec)) {
    return NotFoundError("directory " + dir.string() + " of database " + options.db_path +
                         " does not exist");
  }
  if (fs::is_directory(db_path, ec)) {
    return InvalidArgumentError("database " + options.db_path + " is a directory");
  }
  fs::path mount = dir;
  if (!options.mount_point.empty()) {
    mount = Resolve(options.mount_point);
    if (!fs::is_directory(mount, ec)) {
      return NotFoundError("mount point " + options.mount_point + " is not a directory");
    }
  }
  const fs::path relative = dir.lexically_relative(mount);
  if (relative.empty() || *relative.begin() == "..") {
    return InvalidArgumentError("database " + db_path.string() + " is not under mount point " +
                                mount.string());
  }
  std::string component_path = options.volume;
  if (relative != ".") component_path += "/" + relative.generic_string();

  sqlite3* db = nullptr;
  // NOMUTEX: every use of the connection is under SqliteWriter::mu_.
  if (sqlite3_open_v2(db_path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    Status s = db != nullptr ? SqliteError(db, "open database " + db_path.string())
                             : IoError("open database " + db_path.string() + ": out of memory");
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<SqliteWriter> writer(
      new SqliteWriter(std::move(options), db, db_path.string(), std::move(component_path)));
  // WAL mode is what makes the checkpoint at freeze meaningful; a database
  // that cannot use it (a read-only directory, some network filesystems) is
  // refused.
  {
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    Statement wal(db, "PRAGMA journal_mode=WAL");
    if (!wal.prepared() || sqlite3_step(wal.get()) != SQLITE_ROW) {
      return SqliteError(db, "set WAL mode on " + db_path.string());
    }
    const unsigned char* text = sqlite3_column_text(wal.get(), 0);
    std::string mode = text != nullptr ? reinterpret_cast<const char*>(text) : "";
    if (mode != "wal") {
      return IoError("database " + db_path.string() + " cannot use WAL mode (journal mode " + mode +
                     ")");
    }
  }
  VSS_RETURN_IF_ERROR(
      writer->Exec("CREATE TABLE IF NOT EXISTS events("
                   "id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, payload TEXT NOT NULL)"));

  const SqliteWriterOptions& o = writer->options_;
  VssStatus init =
      writer->Initialize(kClassId, "sqlite-writer", VSS_UT_USERDATA, VSS_ST_TRANSACTEDDB,
                         VSS_APP_BACK_END, o.freeze_timeout_ms, db_path.string());
  if (!init.ok()) return InvalidArgumentError("writer: " + init.ToString());
  if (o.insert_interval.count() > 0) {
    SqliteWriter* w = writer.get();
    writer->loop_ = std::thread([w] { w->InsertLoop(); });
  }
  return writer;
}

SqliteWriter::SqliteWriter(SqliteWriterOptions options, sqlite3* db, std::string db_file,
                           std::string component_path)
    : options_(std::move(options)),
      db_file_(std::move(db_file)),
      db_name_(fs::path(db_file_).filename().string()),
      component_path_(std::move(component_path)),
      db_(db) {}

SqliteWriter::~SqliteWriter() {
  // First no more handlers, then no more inserts, then the connection.
  Unsubscribe().IgnoreError();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (loop_.joinable()) loop_.join();
  sqlite3_close(db_);
}

void SqliteWriter::Log(const std::string& line) {
  if (options_.log) {
    options_.log(line);
  } else {
    std::cerr << "vss-sqlite-writer: " << line << std::endl;
  }
}

Status SqliteWriter::Exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error != nullptr ? error : sqlite3_errmsg(db_);
    sqlite3_free(error);
    return IoError(std::string(sql) + " on " + options_.db_path + ": " + message);
  }
  return OkStatus();
}

Status SqliteWriter::InsertLocked(const std::string& payload) {
  Statement insert(db_, "INSERT INTO events(at_ms, payload) VALUES(?1, ?2)");
  if (!insert.prepared()) return SqliteError(db_, "insert into " + options_.db_path);
  sqlite3_bind_int64(insert.get(), 1, NowMs());
  sqlite3_bind_text(insert.get(), 2, payload.data(), static_cast<int>(payload.size()),
                    SQLITE_TRANSIENT);
  if (sqlite3_step(insert.get()) != SQLITE_DONE) {
    return SqliteError(db_, "insert into " + options_.db_path);
  }
  return OkStatus();
}

bool SqliteWriter::HeldLocked() {
  if (!held_) return false;
  if (Clock::now() < hold_deadline_) return true;
  held_ = false;
  lapsed_ = true;
  cv_.notify_all();
  Log("freeze window of " + std::to_string(options_.freeze_timeout_ms) +
      " ms ran out without Thaw or Abort: writes resume (" + std::to_string(waited_writes_) +
      " waited)");
  return false;
}

bool SqliteWriter::WaitWhileHeld(std::unique_lock<std::mutex>& lock, Clock::time_point until) {
  bool counted = false;
  while (HeldLocked()) {
    if (stopping_) return false;
    if (!counted) {
      ++waited_writes_;
      counted = true;
    }
    // hold_deadline_ is finite, so is the wait.
    if (cv_.wait_until(lock, std::min(hold_deadline_, until)) == std::cv_status::timeout &&
        Clock::now() >= until) {
      return !HeldLocked();
    }
  }
  return true;
}

Status SqliteWriter::InsertRow(const std::string& payload) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!WaitWhileHeld(lock, Clock::time_point::max())) {
    return FailedPreconditionError("the application is stopping");
  }
  return InsertLocked(payload);
}

StatusOr<bool> SqliteWriter::TryInsertRow(const std::string& payload,
                                          std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!WaitWhileHeld(lock, Clock::now() + wait)) return false;
  VSS_RETURN_IF_ERROR(InsertLocked(payload));
  return true;
}

StatusOr<int64_t> SqliteWriter::CountRows() {
  std::lock_guard<std::mutex> lock(mu_);
  Statement count(db_, "SELECT count(*) FROM events");
  if (!count.prepared() || sqlite3_step(count.get()) != SQLITE_ROW) {
    return SqliteError(db_, "count rows of " + options_.db_path);
  }
  return static_cast<int64_t>(sqlite3_column_int64(count.get(), 0));
}

bool SqliteWriter::writes_held() {
  std::lock_guard<std::mutex> lock(mu_);
  return HeldLocked();
}

void SqliteWriter::InsertLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  int64_t n = 0;
  while (!stopping_) {
    if (WaitWhileHeld(lock, Clock::time_point::max()) && !stopping_) {
      Status s = InsertLocked("event " + std::to_string(++n));
      if (s.ok()) {
        rows_inserted_.fetch_add(1);
      } else {
        Log("insert failed: " + s.ToString());
      }
    }
    cv_.wait_for(lock, options_.insert_interval, [this] { return stopping_; });
  }
}

bool SqliteWriter::ReleaseHold(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!HeldLocked()) {
    const bool lapsed = lapsed_;
    lapsed_ = false;
    Log(why + (lapsed ? ": the freeze window had already run out; writes were resumed"
                      : ": writes were not held"));
    return !lapsed;
  }
  held_ = false;
  cv_.notify_all();
  const auto held_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - held_since_).count();
  Log(why + ": writes resume after " + std::to_string(held_ms) + " ms held (" +
      std::to_string(waited_writes_) + " waited)");
  return true;
}

bool SqliteWriter::OnIdentify(CreateWriterMetadata& metadata) {
  ComponentInfo component;
  component.type = VSS_CT_DATABASE;
  component.logical_path = kLogicalPath;
  component.component_name = db_name_;
  component.caption = "SQLite database " + options_.db_path;
  RestoreMethod restore;
  // The application must be stopped while its database is put back.
  restore.method = VSS_RME_STOP_RESTORE_START;
  restore.service = "vss-sqlite-writer";
  restore.writer_restore = VSS_WRE_NEVER;
  VssStatus s = metadata.AddComponent(component);
  if (s.ok()) {
    s = metadata.AddDatabaseFiles(kLogicalPath, db_name_, component_path_, db_name_);
  }
  if (s.ok()) {
    s = metadata.AddDatabaseLogFiles(kLogicalPath, db_name_, component_path_, db_name_ + "-wal");
  }
  // The shared-memory index is rebuilt by SQLite; it is never restored.
  if (s.ok()) s = metadata.AddExcludeFiles(component_path_, db_name_ + "-shm", false);
  if (s.ok()) s = metadata.SetRestoreMethod(restore);
  if (!s.ok()) {
    Log("Identify failed: " + s.ToString());
    return false;
  }
  Log("Identify: component " + std::string(kLogicalPath) + "/" + db_name_ + " (" + component_path_ +
      ": " + db_name_ + ", " + db_name_ + "-wal)");
  return true;
}

bool SqliteWriter::OnPrepareSnapshot() {
  Log("PrepareSnapshot: set " + GetCurrentSnapshotSetId().ToString());
  return true;
}

bool SqliteWriter::OnFreeze() {
  std::unique_lock<std::mutex> lock(mu_);  // a running insert ends first
  held_ = true;
  lapsed_ = false;
  waited_writes_ = 0;
  held_since_ = Clock::now();
  hold_deadline_ = held_since_ + std::chrono::milliseconds(options_.freeze_timeout_ms);
  // Writes are held: copy every committed transaction from the WAL into the
  // database file and truncate the WAL, so that the shadow's database file
  // is complete on its own. Its row is (busy, log frames, checkpointed):
  // busy 1 means readers of other connections kept it from finishing.
  // Waiting for another process's readers to let go may take at most half
  // the freeze window.
  sqlite3_busy_timeout(
      db_, static_cast<int>(std::min<uint32_t>(kBusyTimeoutMs, options_.freeze_timeout_ms / 2)));
  std::error_code ec;
  const uintmax_t wal_bytes = fs::file_size(db_file_ + "-wal", ec);
  std::string failure;
  {
    Statement checkpoint(db_, "PRAGMA wal_checkpoint(TRUNCATE)");
    if (!checkpoint.prepared() || sqlite3_step(checkpoint.get()) != SQLITE_ROW) {
      failure = sqlite3_errmsg(db_);
    } else if (sqlite3_column_int(checkpoint.get(), 0) != 0) {
      failure = "another connection kept the WAL busy";
    }
  }
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  if (!failure.empty()) {
    held_ = false;
    cv_.notify_all();
    lock.unlock();
    std::string message = "checkpoint of " + options_.db_path + " failed: " + failure;
    Log("Freeze: " + message + "; vetoing the shadow copy");
    SetWriterFailureEx(VSS_E_WRITERERROR_RETRYABLE, S_OK, message).IgnoreError();
    return false;
  }
  Log("Freeze: writes held; WAL checkpointed (" + std::to_string(ec ? 0 : wal_bytes) +
      " bytes) and truncated");
  return true;
}

bool SqliteWriter::OnThaw() {
  if (ReleaseHold("Thaw")) return true;
  // Writes went on before the shadow was taken: it may not be consistent.
  SetWriterFailureEx(VSS_E_WRITERERROR_TIMEOUT, S_OK,
                     "the freeze window ran out before Thaw; writes had resumed")
      .IgnoreError();
  return false;
}

bool SqliteWriter::OnAbort() {
  ReleaseHold("Abort");
  return true;
}

bool SqliteWriter::OnPostSnapshot(WriterComponents& components) {
  Log("PostSnapshot");
  return true;
}

bool SqliteWriter::OnBackupComplete(WriterComponents& components) {
  Log("BackupComplete");
  return true;
}

bool SqliteWriter::OnBackupShutdown(const Guid& snapshot_set_id) {
  // A set that ended without Thaw or Abort must not keep the writes held.
  if (writes_held()) ReleaseHold("BackupShutdown");
  Log("BackupShutdown: set " + snapshot_set_id.ToString());
  return true;
}

bool SqliteWriter::OnPreRestore(WriterComponents& components) {
  Log("PreRestore: " + std::to_string(components.GetComponentCount()) + " component(s)");
  return true;
}

bool SqliteWriter::OnPostRestore(WriterComponents& components) {
  Log("PostRestore");
  return true;
}

}  // namespace vss::tools
