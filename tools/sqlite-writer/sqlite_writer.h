// SqliteWriter: a sample application writer that owns a SQLite database.
//
// The application is a database in WAL mode into which a background loop
// keeps inserting rows, as a logging or metrics service would. The writer
// makes the shadows of the volume holding the database consistent:
//   OnIdentify      one DATABASE component: the database file and its -wal
//                   log (the -shm index is excluded; SQLite rebuilds it);
//   OnFreeze        holds the application's writes (new transactions wait,
//                   the running one finishes first), then checkpoints the
//                   WAL into the database file and truncates it
//                   (PRAGMA wal_checkpoint(TRUNCATE)), so the shadow holds a
//                   complete database file and an empty log. If other
//                   connections' readers keep the checkpoint from finishing
//                   (waited for up to half the freeze window, at most 5 s),
//                   the writer vetoes the set (VSS_E_WRITERERROR_RETRYABLE)
//                   and releases the writes;
//   OnThaw/OnAbort  release the writes.
// The hold never outlasts the writer's freeze window (freeze_timeout_ms): if
// neither Thaw nor Abort comes in time, writes resume on their own, and a
// late Thaw fails with VSS_E_WRITERERROR_TIMEOUT (the shadow may hold
// writes made after the freeze). BackupShutdown releases a hold as well.
//
// The database lives "on a volume": an ordinary file on a filesystem
// mounted from a store volume. The writer names its files the way the
// coordinator matches them to volumes, "VOLUME/DIR" (see
// SqliteWriterOptions::mount_point). In-process, only requesters in the same
// process reach the writer; across processes it needs vssd (service.h).
//
// Thread safety: the insert loop runs on its own thread and the handlers on
// the writer's event thread; InsertRow, TryInsertRow, CountRows and
// writes_held may be called from any thread. One connection serves all of
// them under one mutex, which is also the hold: a write takes it, and waits
// on it while writes are held.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vss/base/status.h"
#include "vss/vss.h"

struct sqlite3;

namespace vss::tools {

struct SqliteWriterOptions {
  // The database file; created (with its table) when missing. Its
  // directory must exist.
  std::string db_path;
  // The store volume whose filesystem holds the database.
  std::string volume;
  // Where that filesystem is mounted. Empty: the database's directory is
  // taken as the volume's root. The component's files are reported as
  // "VOLUME/<database directory relative to the mount point>".
  std::string mount_point;
  // Pause between two inserts of the background loop; 0: no background
  // loop (rows are inserted only through InsertRow / TryInsertRow).
  std::chrono::milliseconds insert_interval{100};
  // The writer's freeze-to-thaw window (Writer::Initialize) and the longest
  // hold of the application's writes.
  uint32_t freeze_timeout_ms = 60000;
  // Receives one line per event; empty: lines go to stderr.
  std::function<void(const std::string&)> log;
};

class SqliteWriter final : public Writer {
 public:
  // The writer's class id, the same in every process.
  static const Guid kClassId;

  // Opens (or creates) the database in WAL mode, initializes the writer and
  // starts the insert loop. Errors: kInvalidArgument (empty path or volume,
  // database not under the mount point, not a database), kNotFound (the
  // directory of the database or the mount point is missing), kIoError
  // (SQLite could not open or set up the file). Not yet subscribed: call
  // Subscribe(registry).
  static StatusOr<std::unique_ptr<SqliteWriter>> Open(SqliteWriterOptions options);
  // Unsubscribes, stops the insert loop and closes the database.
  ~SqliteWriter() override;

  // Inserts one row, waiting while writes are held (at most until the hold
  // lapses). kIoError if SQLite fails.
  Status InsertRow(const std::string& payload);
  // As InsertRow, but waits at most `wait` for a hold to end: false (and
  // nothing inserted) if writes were still held then.
  StatusOr<bool> TryInsertRow(const std::string& payload, std::chrono::milliseconds wait);
  // The rows in the table. Reads are not held.
  StatusOr<int64_t> CountRows();
  // True while writes are held (between Freeze and Thaw/Abort, within the
  // freeze window).
  bool writes_held();
  // Rows the background loop has inserted.
  int64_t rows_inserted() const { return rows_inserted_.load(); }

  // --- Writer ---
  bool OnIdentify(CreateWriterMetadata& metadata) override;
  bool OnPrepareSnapshot() override;
  bool OnFreeze() override;
  bool OnThaw() override;
  bool OnAbort() override;
  bool OnPostSnapshot(WriterComponents& components) override;
  bool OnBackupComplete(WriterComponents& components) override;
  bool OnBackupShutdown(const Guid& snapshot_set_id) override;
  bool OnPreRestore(WriterComponents& components) override;
  bool OnPostRestore(WriterComponents& components) override;

 private:
  using Clock = std::chrono::steady_clock;

  SqliteWriter(SqliteWriterOptions options, sqlite3* db, std::string db_file,
               std::string component_path);
  void Log(const std::string& line);
  // Runs `sql` (no result rows). REQUIRES: mu_ held (or not yet shared).
  Status Exec(const char* sql);
  // Inserts one row. REQUIRES: mu_ held, writes not held.
  Status InsertLocked(const std::string& payload);
  // Waits until writes are not held or `until` passes; true if writes may
  // go on. REQUIRES: `lock` holds mu_.
  bool WaitWhileHeld(std::unique_lock<std::mutex>& lock, Clock::time_point until);
  // True while the hold is on and its window has not ended; ends a hold
  // whose window has ended (and says so). REQUIRES: mu_ held.
  bool HeldLocked();
  // Ends the hold. Returns false if it had already lapsed. `why` is logged.
  bool ReleaseHold(const std::string& why);
  void InsertLoop();

  const SqliteWriterOptions options_;
  const std::string db_file_;         // the database's absolute path
  const std::string db_name_;         // its file name
  const std::string component_path_;  // "VOLUME/DIR" of its files

  std::mutex mu_;               // guards db_ and the fields below
  std::condition_variable cv_;  // hold ended, or stopping_
  sqlite3* db_;
  bool held_ = false;
  bool lapsed_ = false;  // the last hold ended by its window, not by Thaw
  Clock::time_point held_since_{};
  Clock::time_point hold_deadline_{};
  int64_t waited_writes_ = 0;  // writes that waited for the current hold
  bool stopping_ = false;

  std::atomic<int64_t> rows_inserted_{0};
  std::thread loop_;
};

}  // namespace vss::tools
