// Tests of FsVfs: the catalog and raw SQLite databases on a MemFileSystem,
// cut by simulated power losses that drop, keep or tear every write not yet
// synced. What must hold after every cut: the database opens, passes
// PRAGMA integrity_check, holds every transaction whose commit returned OK
// (with synchronous=FULL), and each transaction is there whole or not at
// all. Random tests print their seed; VSS_SEED replays one.
#include "vss/metadata/fs_vfs.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "vss/base/mem_file_system.h"
#include "vss/metadata/catalog.h"

namespace vss::metadata {
namespace {

#define VSS_ASSERT_OK(expr)                                 \
  do {                                                      \
    const ::vss::Status s_ = (expr);                        \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.ToString(); \
  } while (0)

constexpr char kDir[] = "/store";
constexpr char kPath[] = "/store/catalog.db";

uint64_t TestSeed() {
  if (const char* v = std::getenv("VSS_SEED"); v != nullptr && *v != '\0') {
    return std::strtoull(v, nullptr, 0);
  }
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

// Every later call on the file system fails, as once the power is out.
void PowerOff(MemFileSystem& fs) {
  fs.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kAny),
                   .nth = 1,
                   .persistent = true,
                   .error = IoError("simulated power cut (test fs)")});
}

// Fails every call from the nth on: the power goes out inside a later call.
void PowerOffAfter(MemFileSystem& fs, uint64_t nth) {
  fs.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kAny),
                   .nth = nth,
                   .persistent = true,
                   .error = IoError("simulated power cut (test fs)")});
}

// A raw SQLite connection through the FsVfs of `fs`.
class RawDb {
 public:
  ~RawDb() { Close(); }
  Status Open(MemFileSystem* fs, const std::string& path) {
    Close();
    StatusOr<std::shared_ptr<FsVfs>> vfs = FsVfs::For(fs);
    if (!vfs.ok()) return vfs.status();
    vfs_ = *vfs;
    int rc = sqlite3_open_v2(path.c_str(), &db_,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             vfs_->name().c_str());
    if (rc != SQLITE_OK) return IoError(Error("open", rc));
    return OkStatus();
  }
  void Close() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = nullptr;
    vfs_.reset();
  }
  // Runs SQL; SQLite's result code.
  int Exec(const std::string& sql) {
    return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  }
  // The first column of the first row of a query, as text ("" if none).
  std::string Query(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return "error: " + std::string(sqlite3_errmsg(db_));
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      out = "error: " + std::string(sqlite3_errmsg(db_));
    }
    sqlite3_finalize(st);
    return out;
  }
  sqlite3* db() { return db_; }

 private:
  std::string Error(const char* what, int rc) {
    return std::string(what) + ": " +
           (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
  }
  std::shared_ptr<FsVfs> vfs_;
  sqlite3* db_ = nullptr;
};

// PRAGMA integrity_check of the database at kPath, through the VFS.
std::string IntegrityCheck(MemFileSystem& fs) {
  RawDb db;
  Status s = db.Open(&fs, kPath);
  if (!s.ok()) return s.ToString();
  return db.Query("PRAGMA integrity_check");
}

VolumeRow MakeVolume(uint64_t n) {
  VolumeRow v;
  v.id = Guid::Generate();
  v.name = "vol-" + std::to_string(n);
  // Long paths so that a few hundred rows span many pages.
  v.path = "/images/" + std::string(300, 'p') + std::to_string(n) + ".img";
  v.size = 4096 * (n + 1);
  v.chunk_size = 65536;
  v.created = static_cast<int64_t>(n);
  return v;
}

DiffAreaRow MakeDiffArea(const VolumeRow& v) {
  DiffAreaRow d;
  d.volume_id = v.id;
  d.dir = "/diff/" + v.name;
  d.max_bytes = static_cast<int64_t>(v.size) * 3;
  return d;
}

class FsVfsTest : public ::testing::Test {
 protected:
  void SetUp() override { VSS_ASSERT_OK(fs_.CreateDirs(kDir)); }

  // Opens (or reopens) the catalog on fs_.
  void OpenCatalog() {
    catalog_.reset();
    auto c = Catalog::Open(kPath, &fs_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(c).value();
  }

  // The power goes out: nothing reaches the files any more, the unsynced
  // writes are dropped, kept or torn, and the process holding the catalog
  // dies (its connection closes with every call failing).
  void Cut(PowerLossMode mode, uint64_t seed) {
    PowerOff(fs_);
    fs_.PowerLoss(mode, seed);
    catalog_.reset();
    fs_.ClearFaultRule();
  }

  MemFileSystem fs_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(FsVfsTest, Catalog_LivesInTheFileSystemOnly) {
  ASSERT_NO_FATAL_FAILURE(OpenCatalog());
  VolumeRow v = MakeVolume(1);
  VSS_ASSERT_OK(catalog_->InsertVolume(v));
  EXPECT_FALSE(std::filesystem::exists(kPath));
  auto names = fs_.List(kDir);
  ASSERT_TRUE(names.ok());
  // The WAL is there while the catalog is open; no -shm file ever is.
  EXPECT_EQ(*names, (std::vector<std::string>{"catalog.db", "catalog.db-wal"}));
  catalog_.reset();
  ASSERT_NO_FATAL_FAILURE(OpenCatalog());
  auto found = catalog_->FindVolume(v.id);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->path, v.path);
}

TEST_F(FsVfsTest, TwoConnections_ShareTheWalIndexAndLockEachOther) {
  RawDb a, b;
  VSS_ASSERT_OK(a.Open(&fs_, kPath));
  ASSERT_EQ(a.Exec("PRAGMA journal_mode=WAL"), SQLITE_OK);
  ASSERT_EQ(a.Query("PRAGMA journal_mode"), "wal");
  ASSERT_EQ(a.Exec("CREATE TABLE t (k INTEGER PRIMARY KEY)"), SQLITE_OK);
  VSS_ASSERT_OK(b.Open(&fs_, kPath));
  ASSERT_EQ(a.Exec("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)"), SQLITE_OK);
  // One writer at a time; a reader sees the last commit, not the open one.
  EXPECT_EQ(b.Exec("BEGIN IMMEDIATE"), SQLITE_BUSY);
  EXPECT_EQ(b.Query("SELECT count(*) FROM t"), "0");
  ASSERT_EQ(a.Exec("COMMIT"), SQLITE_OK);
  EXPECT_EQ(b.Query("SELECT count(*) FROM t"), "1");
  ASSERT_EQ(b.Exec("INSERT INTO t VALUES (2)"), SQLITE_OK);
  EXPECT_EQ(a.Query("SELECT count(*) FROM t"), "2");
  // A reader keeps its snapshot while the other writes and checkpoints.
  ASSERT_EQ(b.Exec("BEGIN; SELECT * FROM t"), SQLITE_OK);
  ASSERT_EQ(a.Exec("INSERT INTO t VALUES (3)"), SQLITE_OK);
  EXPECT_EQ(b.Query("SELECT count(*) FROM t"), "2");
  ASSERT_EQ(b.Exec("COMMIT"), SQLITE_OK);
  EXPECT_EQ(b.Query("SELECT count(*) FROM t"), "3");
}

TEST_F(FsVfsTest, NewDatabase_IsDurableOnceOpenReturns) {
  // SQLite syncs no directory for the main database file itself, but a new
  // database is switched to WAL through a rollback journal, and the first
  // sync of that journal (then of the WAL) syncs the directory, which makes
  // catalog.db's name durable too. Nobody else syncs the directory here.
  {
    auto c = Catalog::Open(kPath, &fs_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(c).value();
  }
  VolumeRow v = MakeVolume(1);
  VSS_ASSERT_OK(catalog_->InsertVolume(v));
  Cut(PowerLossMode::kDropAll, 1);
  ASSERT_TRUE(fs_.Exists(kPath));
  EXPECT_EQ(IntegrityCheck(fs_), "ok");
  auto c = Catalog::Open(kPath, &fs_);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto found = (*c)->FindVolume(v.id);
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->has_value());
}

TEST_F(FsVfsTest, FullFileSystem_IsNoSpaceAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(OpenCatalog());
  VolumeRow kept = MakeVolume(1);
  VSS_ASSERT_OK(catalog_->InsertVolume(kept));
  fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kWrite),
                    .nth = 1,
                    .persistent = true,
                    .error = NoSpaceError("test fs full")});
  VolumeRow refused = MakeVolume(2);
  EXPECT_EQ(catalog_->InsertVolume(refused).code(), StatusCode::kNoSpace);
  fs_.ClearFaultRule();
  auto found = catalog_->FindVolume(refused.id);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_FALSE(found->has_value());
  // The catalog keeps working once there is room, and after a reopen.
  VolumeRow later = MakeVolume(3);
  VSS_ASSERT_OK(catalog_->InsertVolume(later));
  ASSERT_NO_FATAL_FAILURE(OpenCatalog());
  auto vols = catalog_->ListVolumes();
  ASSERT_TRUE(vols.ok());
  ASSERT_EQ(vols->size(), 2u);
  EXPECT_EQ((*vols)[0].id, kept.id);
  EXPECT_EQ((*vols)[1].id, later.id);
}

// A failed sync of the WAL fails the commit and the transaction is not
// visible. Once a later commit has succeeded it never comes back, even when
// the cut keeps its frames. (With no later commit its frames may all
// survive a cut, and then so does the transaction, whole: a commit that
// did not return OK may or may not be there.)
TEST_F(FsVfsTest, FailedWalSync_FailsTheCommitAndTheTransactionStaysOut) {
  for (uint64_t seed = 0; seed < 8; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ASSERT_NO_FATAL_FAILURE(OpenCatalog());
    fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kSync),
                      .nth = 1,
                      .error = IoError("test fs sync failed")});
    VolumeRow failed = MakeVolume(seed * 10);
    EXPECT_EQ(catalog_->InsertVolume(failed).code(), StatusCode::kIoError);
    fs_.ClearFaultRule();
    auto found = catalog_->FindVolume(failed.id);
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    EXPECT_FALSE(found->has_value()) << "a failed commit is visible";
    VolumeRow later = MakeVolume(seed * 10 + 1);
    VSS_ASSERT_OK(catalog_->InsertVolume(later));
    Cut(seed % 2 ? PowerLossMode::kRandom : PowerLossMode::kDropAll, seed);
    ASSERT_NO_FATAL_FAILURE(OpenCatalog());
    found = catalog_->FindVolume(failed.id);
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    EXPECT_FALSE(found->has_value()) << "a failed commit came back";
    found = catalog_->FindVolume(later.id);
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    EXPECT_TRUE(found->has_value()) << "the commit after it was lost";
  }
}

TEST_F(FsVfsTest, SyncedCommits_SurviveEveryPowerLoss) {
  // Cuts accumulate on one catalog; every volume committed so far must
  // survive each of them.
  std::vector<VolumeRow> vols;
  for (uint64_t seed = 0; seed < 16; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ASSERT_NO_FATAL_FAILURE(OpenCatalog());
    for (uint64_t n = 0; n < 20; ++n) {
      vols.push_back(MakeVolume(seed * 100 + n));
      auto tx = catalog_->Begin();
      ASSERT_TRUE(tx.ok());
      VSS_ASSERT_OK(catalog_->InsertVolume(vols.back()));
      VSS_ASSERT_OK(catalog_->UpsertDiffArea(MakeDiffArea(vols.back())));
      VSS_ASSERT_OK(tx->Commit());
      if (n == 10) {  // a clean close: checkpoint, the WAL removed
        ASSERT_NO_FATAL_FAILURE(OpenCatalog());
      }
    }
    Cut(seed % 2 ? PowerLossMode::kRandom : PowerLossMode::kDropAll, seed);
    EXPECT_EQ(IntegrityCheck(fs_), "ok");
    ASSERT_NO_FATAL_FAILURE(OpenCatalog());
    for (const VolumeRow& v : vols) {
      auto found = catalog_->FindVolume(v.id);
      ASSERT_TRUE(found.ok()) << found.status().ToString();
      EXPECT_TRUE(found->has_value()) << v.name << " lost";
      auto da = catalog_->FindDiffArea(v.id);
      ASSERT_TRUE(da.ok());
      EXPECT_TRUE(da->has_value()) << v.name << "'s diff area lost";
    }
    catalog_.reset();
  }
}

// With synchronous=OFF nothing is synced at commit, so a power loss goes
// back to the last sync (a commit made with synchronous=FULL): kDropAll
// exactly there, kRandom there or a later commit, never a hole or a half
// transaction.
TEST_F(FsVfsTest, UnsyncedCommits_LostBackToTheLastSyncOnly) {
  const uint64_t top = TestSeed();
  std::cout << "fs_vfs unsynced-commit test: VSS_SEED=" << top << std::endl;
  std::mt19937_64 rng(top);
  for (int iter = 0; iter < 40; ++iter) {
    const uint64_t seed = rng();
    SCOPED_TRACE("VSS_SEED=" + std::to_string(top) + " iteration " +
                 std::to_string(iter));
    MemFileSystem fs;
    VSS_ASSERT_OK(fs.CreateDirs(kDir));
    RawDb db;
    VSS_ASSERT_OK(db.Open(&fs, kPath));
    ASSERT_EQ(db.Exec("PRAGMA journal_mode=WAL"), SQLITE_OK);
    ASSERT_EQ(db.Exec("PRAGMA synchronous=FULL; CREATE TABLE t "
                      "(k INTEGER PRIMARY KEY, a BLOB, b BLOB)"),
              SQLITE_OK);
    const int synced = 1 + int(seed % 30);
    const int total = synced + 1 + int((seed >> 8) % 30);
    for (int k = 1; k <= total; ++k) {
      if (k == synced) {
        ASSERT_EQ(db.Exec("PRAGMA synchronous=FULL"), SQLITE_OK);
      }
      if (k == synced + 1) {
        ASSERT_EQ(db.Exec("PRAGMA synchronous=OFF"), SQLITE_OK);
      }
      // Two rows' worth of pages per transaction: a and b must agree.
      std::string kk = std::to_string(k);
      ASSERT_EQ(db.Exec("INSERT INTO t VALUES (" + kk +
                        ", randomblob(3000), "
                        "zeroblob(" +
                        std::to_string(2000 + k) + "))"),
                SQLITE_OK);
    }
    const bool drop_all = seed % 2 == 0;
    PowerOff(fs);
    fs.PowerLoss(drop_all ? PowerLossMode::kDropAll : PowerLossMode::kRandom,
                 seed);
    db.Close();
    fs.ClearFaultRule();
    VSS_ASSERT_OK(db.Open(&fs, kPath));
    ASSERT_EQ(db.Query("PRAGMA integrity_check"), "ok");
    const int count = std::stoi(db.Query("SELECT count(*) FROM t"));
    const int max = std::stoi(db.Query("SELECT ifnull(max(k), 0) FROM t"));
    EXPECT_EQ(count, max) << "a hole in the committed sequence";
    if (drop_all) {
      EXPECT_EQ(count, synced);
    } else {
      EXPECT_GE(count, synced);
      EXPECT_LE(count, total);
    }
    EXPECT_EQ(db.Query("SELECT count(*) FROM t WHERE length(a) != 3000 OR "
                       "length(b) != 2000 + k"),
              "0");
  }
}

// Random cut points inside catalog work: transactions that each add a
// volume with its diff area and sometimes delete an older volume, clean
// closes in between, and the power cut after a random number of file calls.
TEST_F(FsVfsTest, RandomCuts_CatalogKeepsEveryCommitNeverHalf) {
  const uint64_t top = TestSeed();
  std::cout << "fs_vfs random-cut test: VSS_SEED=" << top << std::endl;
  std::mt19937_64 rng(top);
  ASSERT_NO_FATAL_FAILURE(OpenCatalog());
  std::map<Guid, VolumeRow> committed;
  uint64_t next = 0;
  int cuts_mid_commit = 0;
  for (int cycle = 0; cycle < 150; ++cycle) {
    SCOPED_TRACE("VSS_SEED=" + std::to_string(top) + " cycle " +
                 std::to_string(cycle));
    PowerOffAfter(fs_, 1 + rng() % 400);
    // The transaction in flight when the power went: its volume and the
    // volume it deleted.
    std::optional<VolumeRow> added;
    std::optional<Guid> removed;
    for (int t = 0; t < 40; ++t) {
      VolumeRow v = MakeVolume(next++);
      std::optional<Guid> victim;
      if (!committed.empty() && rng() % 3 == 0) {
        auto it = committed.begin();
        std::advance(it, rng() % committed.size());
        victim = it->first;
      }
      auto tx = catalog_->Begin();
      Status s = tx.status();
      if (s.ok()) s = catalog_->InsertVolume(v);
      if (s.ok()) s = catalog_->UpsertDiffArea(MakeDiffArea(v));
      if (s.ok() && victim) s = catalog_->DeleteVolume(*victim);
      if (s.ok()) s = tx->Commit();
      if (!s.ok()) {
        added = v;
        removed = victim;
        break;
      }
      committed[v.id] = v;
      if (victim) committed.erase(*victim);
      if (rng() % 10 == 0) {
        // A clean close and reopen: checkpoint, WAL removed unsynced.
        catalog_.reset();
        auto c = Catalog::Open(kPath, &fs_);
        if (!c.ok()) break;  // the power went during the reopen
        catalog_ = std::move(c).value();
      }
    }
    const uint64_t pl_seed = rng();
    Cut(rng() % 2 ? PowerLossMode::kRandom : PowerLossMode::kDropAll, pl_seed);
    ASSERT_EQ(IntegrityCheck(fs_), "ok") << "power-loss seed " << pl_seed;
    ASSERT_NO_FATAL_FAILURE(OpenCatalog());
    auto rows = catalog_->ListVolumes();
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    std::set<Guid> there;
    for (const VolumeRow& r : *rows) there.insert(r.id);
    // The in-flight transaction is all there or not at all.
    const bool new_there = added && there.count(added->id);
    const bool old_gone = removed && !there.count(*removed);
    if (added && removed) {
      EXPECT_EQ(new_there, old_gone)
          << "half a transaction survived (volume added: " << new_there
          << ", volume deleted: " << old_gone << ")";
    }
    if (new_there || old_gone) {
      ++cuts_mid_commit;
      if (added) committed[added->id] = *added;
      if (removed) committed.erase(*removed);
    }
    std::set<Guid> expected;
    for (const auto& [id, v] : committed) expected.insert(id);
    EXPECT_EQ(there, expected) << "power-loss seed " << pl_seed;
    for (const Guid& id : there) {
      auto da = catalog_->FindDiffArea(id);
      ASSERT_TRUE(da.ok());
      EXPECT_TRUE(da->has_value()) << "a volume without its diff area";
    }
    if (::testing::Test::HasFailure()) return;
  }
  std::cout << "  " << committed.size() << " volumes at the end, "
            << cuts_mid_commit << " in-flight commits survived a cut"
            << std::endl;
}

// As above on a raw database whose WAL is checkpointed every few pages, so
// that cuts fall inside checkpoints and WAL restarts too. Each transaction
// adds row k and sets the counter row to k: the counter and the rows must
// agree, and no commit that returned may be lost.
TEST_F(FsVfsTest, RandomCuts_ThroughCheckpoints_CommittedPrefixSurvives) {
  const uint64_t top = TestSeed();
  std::cout << "fs_vfs checkpoint-cut test: VSS_SEED=" << top << std::endl;
  std::mt19937_64 rng(top);
  auto open = [&](RawDb& db) {
    VSS_ASSERT_OK(db.Open(&fs_, kPath));
    ASSERT_EQ(db.Exec("PRAGMA journal_mode=WAL"), SQLITE_OK);
    ASSERT_EQ(db.Exec("PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=4"),
              SQLITE_OK);
  };
  {
    RawDb db;
    ASSERT_NO_FATAL_FAILURE(open(db));
    ASSERT_EQ(db.Exec("CREATE TABLE t (k INTEGER PRIMARY KEY, a BLOB);"
                      "INSERT INTO t VALUES (0, 0)"),
              SQLITE_OK);
  }
  int last = 0;  // last k whose commit returned OK
  for (int cycle = 0; cycle < 150; ++cycle) {
    SCOPED_TRACE("VSS_SEED=" + std::to_string(top) + " cycle " +
                 std::to_string(cycle));
    RawDb db;
    ASSERT_NO_FATAL_FAILURE(open(db));
    PowerOffAfter(fs_, 1 + rng() % 300);
    for (int t = 0; t < 30; ++t) {
      const std::string k = std::to_string(last + 1);
      int rc = db.Exec("BEGIN; INSERT INTO t VALUES (" + k + ", randomblob(" +
                       std::to_string(500 + rng() % 6000) +
                       ")); UPDATE t SET a = " + k + " WHERE k = 0; COMMIT");
      if (rc != SQLITE_OK) {
        db.Exec("ROLLBACK");
        break;
      }
      ++last;
    }
    const uint64_t pl_seed = rng();
    PowerOff(fs_);
    fs_.PowerLoss(rng() % 2 ? PowerLossMode::kRandom : PowerLossMode::kDropAll,
                  pl_seed);
    db.Close();
    fs_.ClearFaultRule();
    RawDb check;
    VSS_ASSERT_OK(check.Open(&fs_, kPath));
    ASSERT_EQ(check.Query("PRAGMA integrity_check"), "ok")
        << "power-loss seed " << pl_seed;
    const int counter = std::stoi(check.Query("SELECT a FROM t WHERE k = 0"));
    const int rows = std::stoi(check.Query("SELECT count(*) - 1 FROM t"));
    const int max = std::stoi(check.Query("SELECT max(k) FROM t"));
    ASSERT_EQ(counter, rows) << "power-loss seed " << pl_seed;
    ASSERT_EQ(counter, max) << "power-loss seed " << pl_seed;
    ASSERT_TRUE(counter == last || counter == last + 1)
        << "rows 1.." << counter << " after commits 1.." << last
        << " returned (power-loss seed " << pl_seed << ")";
    last = counter;
  }
  std::cout << "  " << last << " transactions committed" << std::endl;
}

}  // namespace
}  // namespace vss::metadata
