// Private helpers of vss_metadata around the SQLite C API: the one place
// where SQLite result codes become Status, a cache of prepared statements,
// and Query, one scoped use of a cached statement.
//
// None of this is thread-safe: the Catalog calls it with its mutex held.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>

#include "vss/base/guid.h"
#include "vss/base/status.h"

namespace vss::metadata::internal {

// Translates the SQLite result code `rc` (an error, not OK/ROW/DONE) that
// `db` raised while doing `what` into a Status naming the catalog `path`:
// BUSY/LOCKED -> kBusy, CORRUPT/NOTADB -> kCorruption, FULL -> kNoSpace,
// foreign key violations -> kNotFound, other constraint violations ->
// kAlreadyExists, anything else -> kIoError. `db` may be null.
Status SqliteStatus(sqlite3* db, int rc, const std::string& path,
                    std::string_view what);

// kCorruption "catalog PATH is damaged: DETAIL".
Status DamagedStatus(const std::string& path, std::string_view detail);

// Runs `sql` (one or more statements, no results wanted) on `db`.
Status Exec(sqlite3* db, const std::string& path, const char* sql,
            std::string_view what);

// Reads the columns of the current row in order, checking that each holds
// the type and range the row struct needs (data read from disk is never
// trusted). The first bad column is remembered in status(); later reads
// return zero values.
class ColumnReader {
 public:
  ColumnReader(sqlite3_stmt* st, const std::string& path, std::string_view what)
      : st_(st), path_(path), what_(what) {}

  int64_t I64();
  uint64_t U64();  // stored as the int64 with the same bits
  uint32_t U32();
  int32_t I32();
  uint8_t U8();
  bool Bool();
  std::string Text();
  Guid Id();
  std::optional<Guid> OptionalId();  // NULL -> nullopt

  const Status& status() const { return status_; }

 private:
  // Returns the next column index, or -1 when an error is already recorded.
  int Next();
  std::optional<int64_t> Integer(int64_t min, int64_t max);
  void Fail(int col, std::string_view problem);

  sqlite3_stmt* st_;
  const std::string& path_;
  std::string_view what_;
  int col_ = 0;
  Status status_;
};

// One use of a prepared statement: bind parameters, step, read rows. The
// destructor resets the statement and clears its bindings so the cached
// statement is ready for the next use. Text bound from std::string is not
// copied: the string must outlive the Query.
class Query {
 public:
  Query(sqlite3* db, const std::string& path, sqlite3_stmt* st,
        std::string_view what)
      : db_(db), path_(&path), st_(st), what_(what) {}
  Query(Query&& o) noexcept
      : db_(o.db_),
        path_(o.path_),
        st_(o.st_),
        what_(o.what_),
        bind_rc_(o.bind_rc_) {
    o.st_ = nullptr;
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  Query& operator=(Query&&) = delete;
  ~Query();

  // Binds `args` to parameters 1, 2, ... in order. Errors surface in Step().
  template <typename... Args>
  void Bind(const Args&... args) {
    int i = 0;
    (BindOne(++i, args), ...);
  }

  // Steps once: true when a row is ready, false when the statement is done.
  StatusOr<bool> Step();
  // Steps to the end, ignoring any rows.
  Status Run();
  // A reader for the current row. REQUIRES: the last Step() returned true.
  ColumnReader Row() const { return ColumnReader(st_, *path_, what_); }
  // Rows changed by the last completed INSERT/UPDATE/DELETE.
  int64_t Changes() const { return sqlite3_changes64(db_); }

 private:
  template <typename T>
  void BindOne(int i, const T& v) {
    int rc;
    if constexpr (std::is_same_v<T, Guid>) {
      rc = BindText(i, v.ToString(), SQLITE_TRANSIENT);
    } else if constexpr (std::is_same_v<T, std::optional<Guid>>) {
      rc = v ? BindText(i, v->ToString(), SQLITE_TRANSIENT)
             : sqlite3_bind_null(st_, i);
    } else if constexpr (std::is_same_v<T, std::string>) {
      rc = BindText(i, v, SQLITE_STATIC);
    } else {
      static_assert(std::is_integral_v<T>, "unsupported parameter type");
      // Unsigned 64-bit values keep their bits (modular conversion).
      rc = sqlite3_bind_int64(st_, i, static_cast<int64_t>(v));
    }
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }
  int BindText(int i, const std::string& s, sqlite3_destructor_type d);

  sqlite3* db_;
  const std::string* path_;
  sqlite3_stmt* st_;
  std::string_view what_;
  int bind_rc_ = SQLITE_OK;
};

// The prepared statements of one connection, prepared on first use and
// finalized with the cache. Keyed by the address of the SQL text, so `sql`
// must be a string literal or another string with static storage.
class StatementCache {
 public:
  StatementCache(sqlite3* db, const std::string& path) : db_(db), path_(path) {}
  ~StatementCache();
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  // A Query on the statement for `sql`; `what` names the operation in errors.
  StatusOr<Query> Get(const char* sql, std::string_view what);

 private:
  sqlite3* db_;
  const std::string& path_;
  std::unordered_map<const char*, sqlite3_stmt*> stmts_;
};

}  // namespace vss::metadata::internal
