// The sample SQLite application writer (tools/sqlite-writer) in-process:
// an in-process Service over a temporary store with volumes vol1 and vol2,
// the writer's database at mnt/app/app.db with mnt standing for vol1's
// mounted filesystem, and requester backups through the Service. The
// coordinator's hold hook runs while the set is committed, that is between
// every writer's Freeze and Thaw, and looks at the database from there.
#include "sqlite_writer.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "../vss-api/test_util.h"
#include "vss/engine/store.h"
#include "vss/vss.h"

namespace vss::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using tools::SqliteWriter;
using tools::SqliteWriterOptions;

class SqliteWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine::StoreOptions so;
    so.dir = store_dir();
    StatusOr<std::unique_ptr<engine::Store>> store = engine::Store::Open(std::move(so));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (const char* name : {"vol1", "vol2"}) {
      engine::CreateVolumeRequest req;
      req.path = dir_.path() + "/" + name + ".img";
      req.size = uint64_t{4} << 20;
      req.name = name;
      ASSERT_TRUE((*store)->CreateVolume(req).ok());
    }
    fs::create_directories(dir_.path() + "/mnt/app");
  }

  void TearDown() override {
    writer_.reset();  // unsubscribes before the service goes
    service_.reset();
  }

  std::string store_dir() const { return dir_.path() + "/store"; }
  std::string mount() const { return dir_.path() + "/mnt"; }
  std::string db_path() const { return mount() + "/app/app.db"; }

  // An in-process service whose coordinator calls `on_hold` while writes
  // are held for the commit.
  void Connect(CoordinatorOptions coordinator = {}) {
    ServiceOptions options;
    options.store_dir = store_dir();
    options.mode = ServiceOptions::Mode::kInProcess;
    options.coordinator = std::move(coordinator);
    VssStatusOr<std::unique_ptr<Service>> service = Service::Connect(std::move(options));
    ASSERT_TRUE(service.ok()) << service.status().ToString();
    service_ = std::move(service).value();
  }

  // The writer on db_path(), mnt being vol1's filesystem, subscribed.
  // `interval` 0: no background inserts.
  void OpenWriter(milliseconds interval, uint32_t freeze_timeout_ms = 60000) {
    SqliteWriterOptions options;
    options.db_path = db_path();
    options.volume = "vol1";
    options.mount_point = mount();
    options.insert_interval = interval;
    options.freeze_timeout_ms = freeze_timeout_ms;
    options.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.push_back(line);
    };
    StatusOr<std::unique_ptr<SqliteWriter>> writer = SqliteWriter::Open(std::move(options));
    ASSERT_TRUE(writer.ok()) << writer.status().ToString();
    writer_ = std::move(writer).value();
    VssStatus s = writer_->Subscribe(*service_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // A full component-mode backup of `volume` up to DoSnapshotSet; its
  // result code. The requester is destroyed afterwards (BackupShutdown).
  HResult Backup(const std::string& volume) {
    VssStatusOr<std::unique_ptr<BackupComponents>> created = service_->CreateBackupComponents();
    EXPECT_TRUE(created.ok());
    if (!created.ok()) return created.status().code();
    BackupComponents& bc = **created;
    EXPECT_TRUE(bc.InitializeForBackup().ok());
    EXPECT_TRUE(bc.SetBackupState(true, false, VSS_BT_FULL).ok());
    EXPECT_EQ(WaitOn(bc.GatherWriterMetadata()), VSS_S_ASYNC_FINISHED);
    for (size_t i = 0; i < bc.GetWriterMetadataCount(); ++i) {
      VssStatusOr<ExamineWriterMetadata> md = bc.GetWriterMetadata(i);
      EXPECT_TRUE(md.ok());
      for (const ComponentInfo& c : md->document().components) {
        EXPECT_TRUE(
            bc.AddComponent({md->GetIdentity().writer_id, c.type, c.logical_path, c.component_name})
                .ok());
      }
    }
    EXPECT_TRUE(bc.StartSnapshotSet().ok());
    EXPECT_TRUE(bc.AddToSnapshotSet(volume).ok());
    EXPECT_EQ(WaitOn(bc.PrepareForBackup()), VSS_S_ASYNC_FINISHED);
    HResult result = WaitOn(bc.DoSnapshotSet());
    if (result == VSS_S_ASYNC_FINISHED) {
      EXPECT_EQ(WaitOn(bc.BackupComplete()), VSS_S_ASYNC_FINISHED);
    } else {
      EXPECT_TRUE(bc.AbortBackup().ok());
    }
    return result;
  }

  static HResult WaitOn(const VssStatusOr<std::shared_ptr<Async>>& a) {
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? (*a)->Wait() : a.status().code();
  }

  // Bytes in the database's WAL file (-1 if it does not exist).
  int64_t WalSize() const {
    std::error_code ec;
    uintmax_t size = fs::file_size(db_path() + "-wal", ec);
    return ec ? -1 : static_cast<int64_t>(size);
  }

  // True if a logged line starts with `prefix`.
  bool Logged(const std::string& prefix) {
    std::lock_guard<std::mutex> lock(log_mu_);
    return std::any_of(log_.begin(), log_.end(),
                       [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
  }
  std::string LogText() {
    std::lock_guard<std::mutex> lock(log_mu_);
    std::string out;
    for (const auto& l : log_) out += l + "\n";
    return out;
  }

  // Waits up to 5 s for the background loop to have inserted more than `n` rows.
  bool WaitForInsertsPast(int64_t n) {
    for (int i = 0; i < 500 && writer_->rows_inserted() <= n; ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    return writer_->rows_inserted() > n;
  }

  TempDir dir_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<SqliteWriter> writer_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

TEST_F(SqliteWriterTest, Identify_ReportsDatabaseAndWalOnItsVolume) {
  Connect();
  OpenWriter(milliseconds(0));
  VssStatusOr<std::unique_ptr<BackupComponents>> bc = service_->CreateBackupComponents();
  ASSERT_TRUE(bc.ok());
  ASSERT_TRUE((*bc)->InitializeForBackup().ok());
  ASSERT_TRUE((*bc)->SetBackupState(true, false, VSS_BT_FULL).ok());
  ASSERT_EQ(WaitOn((*bc)->GatherWriterMetadata()), VSS_S_ASYNC_FINISHED);
  ASSERT_EQ((*bc)->GetWriterMetadataCount(), 1u);
  VssStatusOr<ExamineWriterMetadata> md = (*bc)->GetWriterMetadata(0);
  ASSERT_TRUE(md.ok());
  EXPECT_EQ(md->GetIdentity().writer_id, SqliteWriter::kClassId);
  EXPECT_EQ(md->GetIdentity().name, "sqlite-writer");
  const WriterMetadataDocument& doc = md->document();
  ASSERT_EQ(doc.components.size(), 1u);
  const ComponentInfo& c = doc.components[0];
  EXPECT_EQ(c.type, VSS_CT_DATABASE);
  EXPECT_EQ(c.logical_path, "sqlite");
  EXPECT_EQ(c.component_name, "app.db");
  ASSERT_EQ(c.databases.size(), 1u);
  EXPECT_EQ(c.databases[0].path, "vol1/app");
  EXPECT_EQ(c.databases[0].filespec, "app.db");
  ASSERT_EQ(c.log_files.size(), 1u);
  EXPECT_EQ(c.log_files[0].path, "vol1/app");
  EXPECT_EQ(c.log_files[0].filespec, "app.db-wal");
  ASSERT_EQ(doc.exclude_files.size(), 1u);
  EXPECT_EQ(doc.exclude_files[0].filespec, "app.db-shm");
}

TEST_F(SqliteWriterTest, Freeze_CheckpointsWalAndHoldsInsertsUntilThaw) {
  bool held = false;
  int64_t wal_at_hold = -2;
  bool probe_blocked = false;
  int64_t rows_at_hold = -1;
  int64_t rows_after_wait = -2;
  Connect({.on_hold_for_test = [&] {
    held = writer_->writes_held();
    wal_at_hold = WalSize();
    rows_at_hold = *writer_->CountRows();
    StatusOr<bool> probe = writer_->TryInsertRow("probe", milliseconds(200));
    probe_blocked = probe.ok() && !*probe;
    rows_after_wait = *writer_->CountRows();  // the loop inserts every 2 ms
  }});
  OpenWriter(milliseconds(2));
  ASSERT_TRUE(WaitForInsertsPast(20));
  ASSERT_GT(WalSize(), 0) << "the inserts should be in the WAL before the backup";

  ASSERT_EQ(Backup("vol1"), VSS_S_ASYNC_FINISHED);
  EXPECT_TRUE(held);
  EXPECT_EQ(wal_at_hold, 0) << "the WAL is checkpointed and truncated at freeze";
  EXPECT_TRUE(probe_blocked) << "an insert must wait between Freeze and Thaw";
  EXPECT_EQ(rows_after_wait, rows_at_hold) << "the insert loop must wait too";
  EXPECT_TRUE(Logged("Freeze: writes held; WAL checkpointed")) << LogText();
  EXPECT_TRUE(Logged("Thaw: writes resume after ")) << LogText();

  // After Thaw the application writes again at once.
  EXPECT_FALSE(writer_->writes_held());
  StatusOr<bool> after = writer_->TryInsertRow("after thaw", milliseconds(0));
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_TRUE(*after);
  const int64_t inserted = writer_->rows_inserted();
  EXPECT_TRUE(WaitForInsertsPast(inserted));
  EXPECT_GT(*writer_->CountRows(), rows_at_hold + 1);
}

TEST_F(SqliteWriterTest, Abort_ReleasesHeldInserts) {
  bool held = false;
  // The on_hold callback outlasts the hold limit: the set fails and the writers get Abort.
  Connect({.hold_writes_timeout_ms = 50, .on_hold_for_test = [&] {
             held = writer_->writes_held();
             std::this_thread::sleep_for(milliseconds(150));
           }});
  OpenWriter(milliseconds(5));
  EXPECT_EQ(Backup("vol1"), VSS_E_HOLD_WRITES_TIMEOUT);
  EXPECT_TRUE(held);
  EXPECT_TRUE(Logged("Abort: writes resume after ")) << LogText();
  EXPECT_FALSE(writer_->writes_held());
  StatusOr<bool> insert = writer_->TryInsertRow("after abort", milliseconds(0));
  ASSERT_TRUE(insert.ok());
  EXPECT_TRUE(*insert);
  EXPECT_TRUE(WaitForInsertsPast(writer_->rows_inserted()));
}

TEST_F(SqliteWriterTest, FreezeWindowElapsed_ReleasesOnItsOwn) {
  bool inserted = false;
  milliseconds waited{0};
  // Nothing thaws the writer in time: its own window ends the hold.
  Connect({.on_hold_for_test = [&] {
    auto start = std::chrono::steady_clock::now();
    StatusOr<bool> insert = writer_->TryInsertRow("late", milliseconds(5000));
    inserted = insert.ok() && *insert;
    waited = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  }});
  OpenWriter(milliseconds(0), /*freeze_timeout_ms=*/300);
  // The coordinator keeps the writer's window too, and aborts the set.
  EXPECT_EQ(Backup("vol1"), VSS_E_WRITERERROR_TIMEOUT);
  EXPECT_TRUE(inserted);
  EXPECT_LT(waited, milliseconds(3000));
  EXPECT_TRUE(Logged("freeze window of 300 ms ran out without Thaw or Abort")) << LogText();
  EXPECT_FALSE(writer_->writes_held());
}

TEST_F(SqliteWriterTest, CheckpointBlockedByReader_VetoesAndReleases) {
  Connect();
  OpenWriter(milliseconds(0), /*freeze_timeout_ms=*/1000);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(writer_->InsertRow("row").ok());
  // Another connection in a read transaction pins the WAL.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &reader), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM events;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  ASSERT_TRUE(writer_->InsertRow("row after the reader's snapshot").ok());
  EXPECT_EQ(Backup("vol1"), VSS_E_WRITERERROR_RETRYABLE);
  sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(reader);
  EXPECT_TRUE(Logged("Freeze: checkpoint of ")) << LogText();
  EXPECT_FALSE(writer_->writes_held());
  StatusOr<bool> insert = writer_->TryInsertRow("after veto", milliseconds(0));
  ASSERT_TRUE(insert.ok());
  EXPECT_TRUE(*insert);
}

TEST_F(SqliteWriterTest, BackupOfAnotherVolume_DoesNotFreeze) {
  Connect();
  OpenWriter(milliseconds(0));
  ASSERT_EQ(Backup("vol2"), VSS_S_ASYNC_FINISHED);
  EXPECT_TRUE(Logged("Identify: component sqlite/app.db (vol1/app: ")) << LogText();
  EXPECT_FALSE(Logged("Freeze")) << LogText();
}

TEST_F(SqliteWriterTest, Open_RejectsBadInput) {
  SqliteWriterOptions o;
  o.insert_interval = milliseconds(0);
  o.volume = "vol1";
  o.db_path = dir_.path() + "/no-such-dir/app.db";
  StatusOr<std::unique_ptr<SqliteWriter>> w = SqliteWriter::Open(o);
  EXPECT_EQ(w.status().code(), StatusCode::kNotFound);
  EXPECT_NE(w.status().message().find("no-such-dir"), std::string::npos);

  o.db_path = db_path();
  o.volume = "";
  EXPECT_EQ(SqliteWriter::Open(o).status().code(), StatusCode::kInvalidArgument);

  o.volume = "vol1";
  o.mount_point = dir_.path() + "/elsewhere";
  fs::create_directories(o.mount_point);
  w = SqliteWriter::Open(o);
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("is not under mount point"), std::string::npos);

  o.mount_point = "";
  o.db_path = dir_.path() + "/not-a-db";
  std::ofstream(o.db_path) << std::string(4096, 'x');
  w = SqliteWriter::Open(o);
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("not-a-db"), std::string::npos);
}

}  // namespace
}  // namespace vss::testing
