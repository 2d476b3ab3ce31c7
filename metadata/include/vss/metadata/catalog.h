// Catalog: the SQLite database of one store (STORE/catalog.db).
//
// It records the volumes, their diff areas, shadow sets and shadows (with the
// fields of VSS's VSS_SNAPSHOT_PROP), the diff-area index (which record in
// which segment preserves which chunk of which epoch), how far each segment
// file has been indexed, events, pending space to give back, and journals of
// multi-step operations. The database is in WAL mode with synchronous=FULL:
// a transaction that committed is durable. The schema version is kept in
// PRAGMA user_version and migrations only go forward.
//
// Every method runs prepared statements; SQLite result codes are translated
// here, once, into Status: SQLITE_BUSY/LOCKED -> kBusy, SQLITE_CORRUPT and
// SQLITE_NOTADB -> kCorruption (message names the database file),
// SQLITE_FULL -> kNoSpace, constraint violations -> kAlreadyExists (a
// duplicate id, name, path, (volume, epoch) or index key), except a row that
// refers to a volume or shadow set that does not exist (foreign key) ->
// kNotFound; anything else -> kIoError. A row read back with a value that
// does not fit its field (not a GUID, out of range) is kCorruption too.
//
// Missing rows: Find* return an empty optional; SetVolumeNextEpoch,
// UpdateShadow, MoveIndexRow, DeleteVolume and DeleteShadow return kNotFound
// when the row they name does not exist; the other deletes and clears are
// idempotent (OK when nothing matched) so that recovery may replay them.
// Lists come back in a fixed order, given at each method.
//
// Several processes may open one catalog; writers wait up to 10 s for each
// other (busy timeout). One Catalog object may be used from many threads; its
// calls are serialised by an internal mutex. Begin()/Commit() bracket a
// transaction on this connection: while one is open, other threads calling
// into this Catalog wait for it to end (the mutex is held by the Transaction
// object).
//
// Rows are plain structs. Ids are Guid values; sizes and offsets bytes;
// times are VSS timestamps (100 ns ticks since 1601-01-01 UTC).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vss/base/guid.h"
#include "vss/base/status.h"

struct sqlite3;

namespace vss {
class FileSystem;
}

namespace vss::metadata {

class FsVfs;

inline constexpr int64_t kUnbounded = -1;  // VSS_ASSOC_NO_MAX_SPACE

struct VolumeRow {
  Guid id;
  std::string name;        // unique in the store
  std::string path;        // absolute path of the image, unique in the store
  uint64_t size = 0;       // bytes
  uint32_t chunk_size = 0; // bytes, power of two, 4 KiB..1 MiB
  uint64_t next_epoch = 1; // epoch number the next shadow of it gets
  int64_t created = 0;     // VSS timestamp
  std::string format = "raw";  // image driver name (formats/registry.h)
  // The QEMU guest agent socket of the guest running on the volume; empty:
  // none (NULL in the table).
  std::string guest_agent;
};

struct DiffAreaRow {
  Guid volume_id;
  std::string dir;                  // absolute directory of the segments
  int64_t max_bytes = kUnbounded;   // kUnbounded or a byte count
  uint64_t used_bytes = 0;          // bytes held by live records
};

struct ShadowSetRow {
  Guid id;
  int64_t created = 0;
  int32_t context = 0;          // VSS_CTX_* value
  uint32_t shadow_count = 0;
};

// The fields of VSS_SNAPSHOT_PROP plus the engine's epoch and persistence.
struct ShadowRow {
  Guid id;
  Guid set_id;
  Guid volume_id;
  uint64_t epoch = 0;             // unique per volume, increasing with time
  uint32_t count_in_set = 0;      // m_lSnapshotsCount
  std::string original_volume;    // m_pwszOriginalVolumeName (volume name)
  std::string device_object;      // m_pwszSnapshotDeviceObject
  std::string originating_machine;
  std::string service_machine;
  std::string exposed_name;
  std::string exposed_path;
  Guid provider_id;
  int32_t attributes = 0;         // VSS_VOLSNAP_ATTR_* bits
  int32_t context = 0;            // VSS_CTX_* value
  int32_t state = 0;              // VSS_SNAPSHOT_STATE
  int64_t created = 0;            // m_tsCreationTimestamp
  bool persistent = true;
  int64_t owner_pid = 0;          // non-persistent: the process holding it
  // The provider's own record of the shadow (schema 3), stored as given.
  std::string properties;
};

// One diff-area record in the index: chunk `chunk` as it was at the start of
// epoch `epoch` is in segment `segment` at byte `offset`.
struct IndexRow {
  uint64_t chunk = 0;
  uint64_t epoch = 0;
  uint32_t segment = 0;
  uint64_t offset = 0;        // record start, multiple of 4096
  uint32_t record_bytes = 0;  // whole record on disk, multiple of 4096
  uint32_t stored_len = 0;    // payload bytes
  uint32_t raw_len = 0;       // chunk bytes
  uint8_t codec = 0;          // 0 zero, 1 raw, 2 zstd
  uint64_t checksum = 0;      // xxh3-64 of the payload
};

struct SegmentRow {
  uint32_t seq = 0;
  uint64_t indexed_to = 0;    // byte offset: records before it are indexed
  uint64_t live_bytes = 0;    // bytes of records still referenced
};

struct EventRow {
  int64_t id = 0;             // assigned by the catalog
  int64_t time = 0;           // VSS timestamp
  std::optional<Guid> volume_id;
  std::optional<Guid> shadow_id;
  std::string kind;           // e.g. "shadow-deleted-diff-area-full"
  std::string message;        // one line for people
};

// A byte range of a segment to give back (hole punch) after the transaction
// that stopped referencing it has committed.
struct FreeRange {
  uint32_t segment = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// A multi-step operation in progress on a volume ("revert" with its shadow
// id as argument). Written before the first step, removed with the last.
struct JournalRow {
  Guid volume_id;
  std::string op;
  std::string arg;
};

class Catalog;

// A write transaction (BEGIN IMMEDIATE). Rolls back on destruction unless
// Commit() succeeded. Holds the Catalog's mutex until Commit() returns or it
// is destroyed. REQUIRES: used and destroyed on the thread that called
// Begin(), before the Catalog is destroyed.
class [[nodiscard]] Transaction {
 public:
  ~Transaction();
  Transaction(Transaction&&) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  // Commits and releases the mutex. On failure the transaction has been
  // rolled back: nothing of it is in the database. kFailedPrecondition if
  // already committed.
  Status Commit();

 private:
  friend class Catalog;
  explicit Transaction(Catalog* c, std::unique_lock<std::recursive_mutex> l)
      : catalog_(c), lock_(std::move(l)) {}
  Catalog* catalog_;
  std::unique_lock<std::recursive_mutex> lock_;
  bool done_ = false;
};

class Catalog {
 public:
  static constexpr int kSchemaVersion = 5;

  // Opens the catalog database at `path` and applies migrations up to
  // kSchemaVersion. A missing file is created atomically: made and
  // initialised under a temporary name (0600), synced, then renamed into
  // place and its directory synced, so that an existing catalog always has
  // a schema. Errors: kCorruption (naming the file) if it is empty (0
  // bytes), not a database, damaged, an SQLite database without the vss
  // schema, or another program's; kFailedPrecondition if its schema is
  // newer than this build knows or the path is a symbolic link. A file that
  // exists is never re-initialised.
  // `fs`: where the database and its WAL live. Null: the OS, through
  // SQLite's own VFS. Otherwise they go through an FsVfs over `fs` (see
  // fs_vfs.h; tests only, one process at a time). REQUIRES: `fs` outlives
  // the Catalog.
  static StatusOr<std::unique_ptr<Catalog>> Open(const std::string& path,
                                                 FileSystem* fs = nullptr);
  ~Catalog();

  const std::string& path() const { return path_; }

  // Starts a write transaction. Calls made by this thread until Commit()
  // or destruction are part of it. kBusy if another process kept the
  // database locked for the whole busy timeout; kFailedPrecondition if a
  // transaction is already open on this Catalog (they do not nest).
  StatusOr<Transaction> Begin();

  // Volumes.
  Status InsertVolume(const VolumeRow& v);
  StatusOr<std::vector<VolumeRow>> ListVolumes();  // ordered by name
  StatusOr<std::optional<VolumeRow>> FindVolume(const Guid& id);
  Status SetVolumeNextEpoch(const Guid& id, uint64_t next_epoch);
  // Sets the volume's guest agent socket ("" clears it).
  Status SetVolumeGuestAgent(const Guid& id, const std::string& socket);
  // Deletes the volume and every row that refers to it (diff area, shadows,
  // sets left empty, index, segments, journal, free ranges). Events stay.
  Status DeleteVolume(const Guid& id);

  // Diff areas (one per volume).
  Status UpsertDiffArea(const DiffAreaRow& d);
  StatusOr<std::optional<DiffAreaRow>> FindDiffArea(const Guid& volume_id);
  StatusOr<std::vector<DiffAreaRow>> ListDiffAreas();  // by volume id

  // Shadow sets and shadows.
  Status InsertShadowSet(const ShadowSetRow& s);
  Status InsertShadow(const ShadowRow& s);
  Status UpdateShadow(const ShadowRow& s);  // by id; every field
  // Deletes the shadow row; deletes its set row too when it was the last.
  Status DeleteShadow(const Guid& id);
  StatusOr<std::vector<ShadowRow>> ListShadows();  // ordered by volume, epoch
  // Ordered by epoch.
  StatusOr<std::vector<ShadowRow>> ListShadowsOfVolume(const Guid& volume_id);
  StatusOr<std::optional<ShadowRow>> FindShadow(const Guid& id);
  StatusOr<std::vector<ShadowSetRow>> ListShadowSets();  // by created, id

  // Diff-area index.
  // Inserts all rows or none: inside the open transaction, or else in one of
  // its own. kAlreadyExists if a (epoch, chunk) is already indexed.
  Status InsertIndexRows(const Guid& volume_id, const std::vector<IndexRow>& rows);
  // Ordered by epoch, then chunk.
  StatusOr<std::vector<IndexRow>> ListIndexRows(const Guid& volume_id);
  // Ordered by chunk.
  StatusOr<std::vector<IndexRow>> ListIndexRowsOfEpoch(const Guid& volume_id,
                                                       uint64_t epoch);
  Status DeleteIndexRow(const Guid& volume_id, uint64_t epoch, uint64_t chunk);
  Status DeleteIndexRowsOfEpoch(const Guid& volume_id, uint64_t epoch);
  // Moves one row to another epoch (the delete-with-merge hand-over).
  // kNotFound if the row is missing; kAlreadyExists if `to_epoch` already
  // has a row for `chunk`.
  Status MoveIndexRow(const Guid& volume_id, uint64_t from_epoch,
                      uint64_t chunk, uint64_t to_epoch);

  // Segments.
  Status UpsertSegment(const Guid& volume_id, const SegmentRow& s);
  // Ordered by seq.
  StatusOr<std::vector<SegmentRow>> ListSegments(const Guid& volume_id);
  Status DeleteSegment(const Guid& volume_id, uint32_t seq);

  // Space to give back.
  // All or none, like InsertIndexRows. Duplicates are kept.
  Status InsertFreeRanges(const Guid& volume_id, const std::vector<FreeRange>& r);
  // Ordered by segment, offset.
  StatusOr<std::vector<FreeRange>> ListFreeRanges(const Guid& volume_id);
  Status ClearFreeRanges(const Guid& volume_id);

  // Journal of multi-step operations. PutJournal replaces the volume's entry.
  Status PutJournal(const JournalRow& j);
  StatusOr<std::optional<JournalRow>> FindJournal(const Guid& volume_id);
  Status ClearJournal(const Guid& volume_id);

  // Events, newest last (in insertion order). `volume_id` filters when
  // given. InsertEvent ignores e.id; the catalog assigns increasing ids.
  // Events are not tied to rows: they outlive the volume and shadow they name.
  Status InsertEvent(const EventRow& e);
  StatusOr<std::vector<EventRow>> ListEvents(std::optional<Guid> volume_id);

 private:
  friend class Transaction;
  Catalog(std::string path, sqlite3* db);
  struct Impl;
  std::string path_;
  sqlite3* db_;
  std::unique_ptr<Impl> impl_;  // prepared statements
  std::recursive_mutex mu_;
  std::shared_ptr<FsVfs> vfs_;  // null: SQLite's default VFS
};

// The current time as a VSS timestamp (100 ns ticks since 1601-01-01 UTC).
int64_t NowVssTimestamp();
// "2026-11-25T10:00:00.1234567Z" for a VSS timestamp.
std::string VssTimestampToIso8601(int64_t ts);

}  // namespace vss::metadata
