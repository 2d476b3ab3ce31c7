// The catalog's schema: the ordered list of migrations and the code that
// checks a database file on open and brings it up to date. See SCHEMA.md.
// Private to vss_metadata; called by Catalog::Open before any other use of
// the connection, on one thread.
#pragma once

#include <sqlite3.h>

#include <string>

#include "vss/base/status.h"

namespace vss::metadata::internal {

// PRAGMA application_id of a catalog: "vssC".
inline constexpr int32_t kApplicationId = 0x76737343;

// The schema version this build creates and understands.
int LatestSchemaVersion();

// Checks that the database behind `db` (opened on `path`) can be a catalog
// without changing it: reads sqlite_master, user_version and application_id.
// kCorruption if the file is not a database, is damaged, is another
// program's database, or is an empty database while !`fresh` (only a file
// Catalog::Open has just made may be empty); kFailedPrecondition if its
// schema version is newer than LatestSchemaVersion().
Status CheckCatalog(sqlite3* db, const std::string& path, bool fresh);

// Applies every migration past the database's user_version, each in its own
// IMMEDIATE transaction that re-reads the version first (another process may
// have migrated meanwhile). REQUIRES: CheckCatalog() succeeded.
Status Migrate(sqlite3* db, const std::string& path);

}  // namespace vss::metadata::internal
