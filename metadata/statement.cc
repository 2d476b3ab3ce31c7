#include "statement.h"

#include <limits>
#include <utility>

namespace vss::metadata::internal {
namespace {

std::string Prefix(const std::string& path, std::string_view what) {
  std::string s = "catalog " + path;
  if (!what.empty()) s.append(": ").append(what);
  return s;
}

}  // namespace

Status DamagedStatus(const std::string& path, std::string_view detail) {
  return CorruptionError("catalog " + path +
                         " is damaged: " + std::string(detail));
}

Status SqliteStatus(sqlite3* db, int rc, const std::string& path,
                    std::string_view what) {
  // sqlite3_errmsg() describes the most recent failure on `db`, which is
  // this one: callers hold the Catalog mutex between the call and here.
  std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return BusyError(Prefix(path, what) + ": " + msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return DamagedStatus(path, msg);
    case SQLITE_FULL:
      return NoSpaceError(Prefix(path, what) + ": " + msg);
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return NotFoundError(Prefix(path, what) + ": " + msg +
                             " (a referenced volume or shadow set does not "
                             "exist)");
      }
      return AlreadyExistsError(Prefix(path, what) + ": " + msg);
    default:
      return IoError(Prefix(path, what) + ": " + msg);
  }
}

Status Exec(sqlite3* db, const std::string& path, const char* sql,
            std::string_view what) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, path, what);
  return OkStatus();
}

// ColumnReader --------------------------------------------------------------

void ColumnReader::Fail(int col, std::string_view problem) {
  const char* name = sqlite3_column_name(st_, col);
  status_ =
      DamagedStatus(path_, std::string(what_) + ": column " +
                               (name != nullptr ? name : std::to_string(col)) +
                               " " + std::string(problem));
}

int ColumnReader::Next() {
  int col = col_++;
  return status_.ok() ? col : -1;
}

std::optional<int64_t> ColumnReader::Integer(int64_t min, int64_t max) {
  int col = Next();
  if (col < 0) return std::nullopt;
  if (sqlite3_column_type(st_, col) != SQLITE_INTEGER) {
    Fail(col, "is not an integer");
    return std::nullopt;
  }
  int64_t v = sqlite3_column_int64(st_, col);
  if (v < min || v > max) {
    Fail(col, "holds " + std::to_string(v) + ", out of range");
    return std::nullopt;
  }
  return v;
}

int64_t ColumnReader::I64() {
  return Integer(std::numeric_limits<int64_t>::min(),
                 std::numeric_limits<int64_t>::max())
      .value_or(0);
}

uint64_t ColumnReader::U64() { return static_cast<uint64_t>(I64()); }

uint32_t ColumnReader::U32() {
  return static_cast<uint32_t>(
      Integer(0, std::numeric_limits<uint32_t>::max()).value_or(0));
}

int32_t ColumnReader::I32() {
  return static_cast<int32_t>(Integer(std::numeric_limits<int32_t>::min(),
                                      std::numeric_limits<int32_t>::max())
                                  .value_or(0));
}

uint8_t ColumnReader::U8() {
  return static_cast<uint8_t>(Integer(0, 255).value_or(0));
}

bool ColumnReader::Bool() { return Integer(0, 1).value_or(0) != 0; }

std::string ColumnReader::Text() {
  int col = Next();
  if (col < 0) return {};
  if (sqlite3_column_type(st_, col) != SQLITE_TEXT) {
    Fail(col, "is not text");
    return {};
  }
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
  return std::string(p, static_cast<size_t>(sqlite3_column_bytes(st_, col)));
}

Guid ColumnReader::Id() {
  int col = col_;
  std::string text = Text();
  if (!status_.ok()) return {};
  std::optional<Guid> g = Guid::Parse(text);
  if (!g) {
    Fail(col, "holds '" + text + "', not a GUID");
    return {};
  }
  return *g;
}

std::optional<Guid> ColumnReader::OptionalId() {
  if (status_.ok() && sqlite3_column_type(st_, col_) == SQLITE_NULL) {
    ++col_;
    return std::nullopt;
  }
  return Id();
}

// Query ---------------------------------------------------------------------

Query::~Query() {
  if (st_ == nullptr) return;
  // Errors from reset repeat the last step's error, already reported.
  sqlite3_reset(st_);
  sqlite3_clear_bindings(st_);
}

int Query::BindText(int i, const std::string& s, sqlite3_destructor_type d) {
  return sqlite3_bind_text64(st_, i, s.data(), s.size(), d, SQLITE_UTF8);
}

StatusOr<bool> Query::Step() {
  if (bind_rc_ != SQLITE_OK) return SqliteStatus(db_, bind_rc_, *path_, what_);
  int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteStatus(db_, rc, *path_, what_);
}

Status Query::Run() {
  while (true) {
    StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return OkStatus();
  }
}

// StatementCache ------------------------------------------------------------

StatementCache::~StatementCache() {
  for (auto& [sql, st] : stmts_) sqlite3_finalize(st);
}

StatusOr<Query> StatementCache::Get(const char* sql, std::string_view what) {
  auto it = stmts_.find(sql);
  if (it == stmts_.end()) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                                nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(st);
      return SqliteStatus(db_, rc, path_, what);
    }
    it = stmts_.emplace(sql, st).first;
  }
  return Query(db_, path_, it->second, what);
}

}  // namespace vss::metadata::internal
