#include "schema.h"

#include <cstdio>
#include <iterator>

#include "statement.h"
#include "vss/metadata/catalog.h"

namespace vss::metadata::internal {
namespace {

// Migration i (0-based) takes user_version i to i + 1. Forward only: never
// edit a step that has shipped; add a new one.
constexpr const char* kMigrations[] = {
    // 0 -> 1: the first schema.
    R"sql(
CREATE TABLE volumes (
  id          TEXT PRIMARY KEY NOT NULL,
  name        TEXT NOT NULL UNIQUE,
  path        TEXT NOT NULL UNIQUE,
  size        INTEGER NOT NULL,
  chunk_size  INTEGER NOT NULL,
  next_epoch  INTEGER NOT NULL,
  created     INTEGER NOT NULL
) STRICT;

CREATE TABLE diff_areas (
  volume_id   TEXT PRIMARY KEY NOT NULL
              REFERENCES volumes(id) ON DELETE CASCADE,
  dir         TEXT NOT NULL,
  max_bytes   INTEGER NOT NULL,
  used_bytes  INTEGER NOT NULL
) STRICT;

CREATE TABLE shadow_sets (
  id            TEXT PRIMARY KEY NOT NULL,
  created       INTEGER NOT NULL,
  context       INTEGER NOT NULL,
  shadow_count  INTEGER NOT NULL
) STRICT;

CREATE TABLE shadows (
  id                   TEXT PRIMARY KEY NOT NULL,
  set_id               TEXT NOT NULL REFERENCES shadow_sets(id),
  volume_id            TEXT NOT NULL
                       REFERENCES volumes(id) ON DELETE CASCADE,
  epoch                INTEGER NOT NULL,
  count_in_set         INTEGER NOT NULL,
  original_volume      TEXT NOT NULL,
  device_object        TEXT NOT NULL,
  originating_machine  TEXT NOT NULL,
  service_machine      TEXT NOT NULL,
  exposed_name         TEXT NOT NULL,
  exposed_path         TEXT NOT NULL,
  provider_id          TEXT NOT NULL,
  attributes           INTEGER NOT NULL,
  context              INTEGER NOT NULL,
  state                INTEGER NOT NULL,
  created              INTEGER NOT NULL,
  persistent           INTEGER NOT NULL CHECK (persistent IN (0, 1)),
  owner_pid            INTEGER NOT NULL,
  UNIQUE (volume_id, epoch)
) STRICT;
CREATE INDEX shadows_by_set ON shadows(set_id);

CREATE TABLE diff_index (
  volume_id     TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  epoch         INTEGER NOT NULL,
  chunk         INTEGER NOT NULL,
  segment       INTEGER NOT NULL,
  offset        INTEGER NOT NULL,
  record_bytes  INTEGER NOT NULL,
  stored_len    INTEGER NOT NULL,
  raw_len       INTEGER NOT NULL,
  codec         INTEGER NOT NULL,
  checksum      INTEGER NOT NULL,
  PRIMARY KEY (volume_id, epoch, chunk)
) STRICT, WITHOUT ROWID;

CREATE TABLE segments (
  volume_id   TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  indexed_to  INTEGER NOT NULL,
  live_bytes  INTEGER NOT NULL,
  PRIMARY KEY (volume_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE free_ranges (
  id         INTEGER PRIMARY KEY,
  volume_id  TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  segment    INTEGER NOT NULL,
  offset     INTEGER NOT NULL,
  length     INTEGER NOT NULL
) STRICT;
CREATE INDEX free_ranges_by_volume ON free_ranges(volume_id, segment, offset);

CREATE TABLE journal (
  volume_id  TEXT PRIMARY KEY NOT NULL
             REFERENCES volumes(id) ON DELETE CASCADE,
  op         TEXT NOT NULL,
  arg        TEXT NOT NULL
) STRICT;

CREATE TABLE events (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  time       INTEGER NOT NULL,
  volume_id  TEXT,
  shadow_id  TEXT,
  kind       TEXT NOT NULL,
  message    TEXT NOT NULL
) STRICT;
CREATE INDEX events_by_volume ON events(volume_id, id);

PRAGMA application_id = 1987277635;
)sql",
    // 1 -> 2: no two volumes share a diff-area directory (each volume's
    // segments are its own). A trigger, not a UNIQUE index: a store made
    // before this version may already hold two rows on one directory, and
    // it must still open (the engine refuses those volumes instead).
    R"sql(
CREATE INDEX diff_areas_by_dir ON diff_areas(dir);
CREATE TRIGGER diff_areas_dir_unique_insert BEFORE INSERT ON diff_areas
WHEN EXISTS (SELECT 1 FROM diff_areas
             WHERE dir = NEW.dir AND volume_id <> NEW.volume_id)
BEGIN
  SELECT RAISE(ABORT, 'UNIQUE constraint failed: diff_areas.dir');
END;
CREATE TRIGGER diff_areas_dir_unique_update BEFORE UPDATE OF dir ON diff_areas
WHEN EXISTS (SELECT 1 FROM diff_areas
             WHERE dir = NEW.dir AND volume_id <> NEW.volume_id)
BEGIN
  SELECT RAISE(ABORT, 'UNIQUE constraint failed: diff_areas.dir');
END;
)sql",
    // 2 -> 3: each volume's image format, the name of the driver that opens
    // it (formats/registry.h). Every volume of an older store is raw.
    R"sql(
ALTER TABLE volumes ADD COLUMN format TEXT NOT NULL DEFAULT 'raw';
)sql",
    // 3 -> 4: a shadow's provider properties, one opaque text the engine
    // stores for the provider that made the shadow. Existing rows get the
    // values their provider columns hold, as "key=value" lines; the columns
    // stay, and rows written from now on leave them empty (0).
    R"sql(
ALTER TABLE shadows ADD COLUMN properties TEXT NOT NULL DEFAULT '';
UPDATE shadows SET properties =
  'context=' || context || char(10) ||
  'attributes=' || attributes || char(10) ||
  'state=' || state || char(10) ||
  'provider_id=' || provider_id || char(10) ||
  'device_object=' || device_object || char(10) ||
  'originating_machine=' || originating_machine || char(10) ||
  'service_machine=' || service_machine;
)sql",
    // 4 -> 5: the QEMU guest agent socket of the guest running on a volume
    // (the guest agent writer freezes it through that socket); NULL: none.
    R"sql(
ALTER TABLE volumes ADD COLUMN guest_agent TEXT;
)sql",
};

constexpr int kLatest = static_cast<int>(std::size(kMigrations));
static_assert(kApplicationId == 1987277635, "keep the migration in step");
static_assert(kLatest == Catalog::kSchemaVersion,
              "Catalog::kSchemaVersion must name the last migration");

struct Header {
  int64_t objects = 0;  // rows of sqlite_master
  int64_t user_version = 0;
  int64_t application_id = 0;
};

// Runs a one-integer query.
Status ReadInt(sqlite3* db, const std::string& path, const char* sql,
               int64_t* out) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    }
  }
  Status s = rc == SQLITE_OK ? OkStatus() : SqliteStatus(db, rc, path, sql);
  sqlite3_finalize(st);
  return s;
}

// Reading sqlite_master makes SQLite read page 1 and parse the whole
// schema, which is what detects a file that is not a database, a damaged
// header or a damaged schema, cheaply.
Status ReadHeader(sqlite3* db, const std::string& path, Header* h) {
  VSS_RETURN_IF_ERROR(
      ReadInt(db, path, "SELECT count(*) FROM sqlite_master", &h->objects));
  VSS_RETURN_IF_ERROR(
      ReadInt(db, path, "PRAGMA user_version", &h->user_version));
  return ReadInt(db, path, "PRAGMA application_id", &h->application_id);
}

std::string Hex(int64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<uint32_t>(v));
  return buf;
}

// What ReadHeader found, judged. An empty database is a new catalog only
// when `fresh` (we made the file a moment ago); an existing file without a
// schema cannot be the catalog a store had.
Status Judge(const Header& h, const std::string& path, bool fresh) {
  bool empty = h.objects == 0 && h.user_version == 0 && h.application_id == 0;
  if (empty && fresh) return OkStatus();
  if (empty) {
    return CorruptionError(
        "catalog " + path +
        " has no vss schema (an empty SQLite database, user_version 0), so "
        "it is not this store's catalog; restore it from a backup, or move "
        "the store away to start a new one");
  }
  if (h.application_id != kApplicationId) {
    return CorruptionError("catalog " + path +
                           " is not a vss catalog: it is another program's "
                           "SQLite database (application_id " +
                           Hex(h.application_id) + ")");
  }
  if (h.user_version > kLatest) {
    return FailedPreconditionError("catalog " + path + " has schema version " +
                                   std::to_string(h.user_version) +
                                   ", this build knows up to " +
                                   std::to_string(kLatest));
  }
  if (h.user_version < 1) {
    return DamagedStatus(path, "schema version " +
                                   std::to_string(h.user_version) +
                                   " in a vss catalog");
  }
  return OkStatus();
}

// Applies migration `step` unless another process got there first.
Status ApplyStep(sqlite3* db, const std::string& path, int step) {
  Header h;
  VSS_RETURN_IF_ERROR(ReadHeader(db, path, &h));
  if (h.user_version > step) return OkStatus();
  VSS_RETURN_IF_ERROR(Judge(h, path, /*fresh=*/step == 0));
  std::string what = "migration to schema version " + std::to_string(step + 1);
  VSS_RETURN_IF_ERROR(Exec(db, path, kMigrations[step], what));
  std::string pragma = "PRAGMA user_version = " + std::to_string(step + 1);
  return Exec(db, path, pragma.c_str(), what);
}

}  // namespace

int LatestSchemaVersion() { return kLatest; }

Status CheckCatalog(sqlite3* db, const std::string& path, bool fresh) {
  Header h;
  VSS_RETURN_IF_ERROR(ReadHeader(db, path, &h));
  return Judge(h, path, fresh);
}

Status Migrate(sqlite3* db, const std::string& path) {
  for (int step = 0; step < kLatest; ++step) {
    VSS_RETURN_IF_ERROR(Exec(db, path, "BEGIN IMMEDIATE", "begin migration"));
    Status s = ApplyStep(db, path, step);
    if (s.ok()) s = Exec(db, path, "COMMIT", "commit migration");
    if (!s.ok()) {
      if (sqlite3_get_autocommit(db) == 0) {
        Exec(db, path, "ROLLBACK", "roll back migration").IgnoreError();
      }
      return s;
    }
  }
  return OkStatus();
}

}  // namespace vss::metadata::internal
