// The requester library (vss/api/backup.h) called directly, in-process:
// a full and an incremental backup of a volume with a writer taking part,
// restores that put back the bytes of each backup's instant, a damaged
// image refused before any change, and a failed set reported and undone.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "test_util.h"
#include "vss/api/backup.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"

namespace vss::testing {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kVolumeSize = uint64_t{4} << 20;

// `length` bytes of a pattern that differs per `seed`.
std::vector<uint8_t> Pattern(uint8_t seed, size_t length) {
  std::vector<uint8_t> out(length);
  for (size_t i = 0; i < length; ++i)
    out[i] = static_cast<uint8_t>(seed + i * 7 + i / 4096);
  return out;
}

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// A store with volumes vol1 and vol2 (4 MiB, sparse), reached through an
// in-process Service, with a writer "A" subscribed whose component lives on
// vol1.
class RequesterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine::StoreOptions so;
    so.dir = store_dir();
    {
      StatusOr<std::unique_ptr<engine::Store>> store =
          engine::Store::Open(std::move(so));
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      for (const char* name : {"vol1", "vol2"}) {
        engine::CreateVolumeRequest req;
        req.path = dir_.path() + "/" + name + ".img";
        req.size = kVolumeSize;
        req.name = name;
        ASSERT_TRUE((*store)->CreateVolume(req).ok());
      }
    }
    ServiceOptions options;
    options.store_dir = store_dir();
    options.mode = ServiceOptions::Mode::kInProcess;
    VssStatusOr<std::unique_ptr<Service>> service =
        Service::Connect(std::move(options));
    ASSERT_TRUE(service.ok()) << service.status().ToString();
    service_ = std::move(service).value();
  }

  void TearDown() override {
    writer_.reset();  // unsubscribes before the service goes
    service_.reset();
  }

  void StartWriter(WriterBehaviour behaviour = {}) {
    writer_ = std::make_unique<TestWriter>(&log_, "A", "vol1/app", behaviour);
    Start(*writer_, "A", *service_);
  }

  std::string store_dir() const { return dir_.path() + "/store"; }
  std::string backup_dir(const std::string& name) const {
    return dir_.path() + "/" + name;
  }

  engine::Volume* Volume(const std::string& name) {
    StatusOr<engine::VolumeInfo> row = service_->store()->ResolveVolume(name);
    EXPECT_TRUE(row.ok()) << row.status().ToString();
    StatusOr<engine::Volume*> v = service_->store()->OpenVolume(row->id);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return *v;
  }

  std::vector<uint8_t> ReadVolume(const std::string& name) {
    std::vector<uint8_t> out(kVolumeSize);
    EXPECT_TRUE(Volume(name)->Read(0, out).ok());
    return out;
  }

  // Writes `data` at `offset` of the volume and flushes it.
  void WriteVolume(const std::string& name, uint64_t offset,
                   const std::vector<uint8_t>& data) {
    engine::Volume* v = Volume(name);
    ASSERT_TRUE(v->Write(offset, data).ok());
    ASSERT_TRUE(v->Flush().ok());
  }

  StatusOr<BackupResult> RunBackup(const std::string& dir, VSS_BACKUP_TYPE type,
                                   const std::string& base = "") {
    BackupRequest req;
    req.volumes = {"vol1"};
    req.dir = dir;
    req.backup_type = type;
    req.base_dir = base;
    req.progress = [this](const ProgressEvent& e) { progress_.push_back(e); };
    req.on_aborted = [this](const AbortReport& r) { aborts_.push_back(r); };
    return Backup(*service_, req);
  }

  TempDir dir_;
  EventLog log_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<TestWriter> writer_;
  std::vector<ProgressEvent> progress_;
  std::vector<AbortReport> aborts_;
};

TEST_F(RequesterTest, FullIncrementalRestore_PutBackTheBytesOfEachBackup) {
  StartWriter();
  const std::vector<uint8_t> first = Pattern(1, 256 << 10);
  WriteVolume("vol1", 0, first);
  WriteVolume("vol1", 3 << 20, first);
  const std::vector<uint8_t> at_full = ReadVolume("vol1");

  StatusOr<BackupResult> full = RunBackup(backup_dir("full"), VSS_BT_FULL);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  ASSERT_EQ(full->volumes.size(), 1u);
  EXPECT_EQ(full->volumes[0].volume, "vol1");
  EXPECT_EQ(full->volumes[0].image, "vol1.img");
  EXPECT_EQ(full->volumes[0].size, kVolumeSize);
  EXPECT_EQ(full->volumes[0].data_bytes, 2 * first.size());
  EXPECT_EQ(full->volumes[0].xxh3_128.size(), 32u);
  ASSERT_EQ(full->components.size(), 1u);
  EXPECT_EQ(full->components[0].component_name, "A-files");
  EXPECT_TRUE(full->backup_complete.ok()) << full->backup_complete.ToString();
  EXPECT_FALSE(full->shadows_kept);
  EXPECT_TRUE(aborts_.empty());
  EXPECT_EQ(ReadFileBytes(backup_dir("full") + "/vol1.img"), at_full);
  EXPECT_TRUE(fs::exists(backup_dir("full") + "/backup.json"));
  EXPECT_TRUE(fs::exists(backup_dir("full") + "/manifest.json"));
  EXPECT_NE(full->manifest.find("\"backup_type\": \"full\""),
            std::string::npos);
  // The set was deleted: the store keeps no shadow.
  StatusOr<std::vector<engine::ShadowInfo>> shadows =
      service_->store()->ListShadows();
  ASSERT_TRUE(shadows.ok());
  EXPECT_TRUE(shadows->empty());
  // Progress: each piece of work starts at 0 and is finished.
  ASSERT_FALSE(progress_.empty());
  EXPECT_EQ(progress_.front().what, "copying vol1");
  EXPECT_EQ(progress_.front().done, 0u);
  EXPECT_TRUE(progress_.back().finished);

  WriteVolume("vol1", 1 << 20, Pattern(2, 128 << 10));
  const std::vector<uint8_t> at_incremental = ReadVolume("vol1");
  StatusOr<BackupResult> incr =
      RunBackup(backup_dir("incr"), VSS_BT_INCREMENTAL, backup_dir("full"));
  ASSERT_TRUE(incr.ok()) << incr.status().ToString();
  EXPECT_EQ(incr->base_dir, backup_dir("full"));
  EXPECT_EQ(incr->previous_stamps, 1u);  // the full backup's stamp of A-files
  EXPECT_EQ(ReadFileBytes(backup_dir("incr") + "/vol1.img"), at_incremental);

  WriteVolume("vol1", 0, Pattern(3, kVolumeSize));
  StatusOr<RestoreResult> restored =
      Restore(*service_, RestoreRequest{.dir = backup_dir("full")});
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(restored->status().ok()) << restored->status().ToString();
  EXPECT_EQ(restored->set_id, full->set_id);
  ASSERT_EQ(restored->restored.size(), 1u);
  EXPECT_EQ(restored->restored[0].volume, "vol1");
  EXPECT_EQ(restored->restored[0].data_bytes, 2 * first.size());
  EXPECT_EQ(restored->file_status, VSS_RS_ALL);
  EXPECT_EQ(restored->components.size(), 1u);
  EXPECT_EQ(ReadVolume("vol1"), at_full);  // holes of the image zeroed too
  EXPECT_GE(log_.IndexOf("A:PreRestore"), 0);
  EXPECT_GT(log_.IndexOf("A:PostRestore"), log_.IndexOf("A:PreRestore"));

  restored = Restore(
      *service_, RestoreRequest{.dir = backup_dir("incr"), .volume = "vol1"});
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(ReadVolume("vol1"), at_incremental);
}

TEST_F(RequesterTest, Restore_DamagedImage_RefusedBeforeAnyChange) {
  WriteVolume("vol1", 0, Pattern(4, 64 << 10));
  ASSERT_TRUE(RunBackup(backup_dir("b"), VSS_BT_FULL).ok());
  {
    std::fstream f(backup_dir("b") + "/vol1.img",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  WriteVolume("vol1", 0, Pattern(5, 64 << 10));
  const std::vector<uint8_t> before = ReadVolume("vol1");

  StatusOr<RestoreResult> r =
      Restore(*service_, RestoreRequest{.dir = backup_dir("b")});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption)
      << r.status().ToString();
  EXPECT_NE(r.status().message().find("vol1.img"), std::string::npos)
      << r.status().ToString();
  EXPECT_EQ(ReadVolume("vol1"), before);
}

TEST_F(RequesterTest, Restore_VolumeNotInBackup_NamesWhatItHolds) {
  ASSERT_TRUE(RunBackup(backup_dir("b"), VSS_BT_FULL).ok());
  StatusOr<std::unique_ptr<VerifiedBackup>> v =
      VerifiedBackup::Open({.dir = backup_dir("b"), .volume = "vol2"});
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
  EXPECT_NE(v.status().message().find("it holds: vol1"), std::string::npos)
      << v.status().ToString();
}

TEST_F(RequesterTest, Backup_WriterFailsFreeze_AbortReportedAndNothingLeft) {
  StartWriter(FailAt(WriterEventKind::kFreeze, VSS_E_WRITERERROR_RETRYABLE));
  StatusOr<BackupResult> r = RunBackup(backup_dir("b"), VSS_BT_FULL);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(aborts_.size(), 1u);
  EXPECT_EQ(aborts_[0].what, "DoSnapshotSet");
  EXPECT_EQ(aborts_[0].error.message(), r.status().message());
  ASSERT_EQ(aborts_[0].writers.size(), 1u);
  EXPECT_EQ(aborts_[0].writers[0].name, "A");
  EXPECT_EQ(aborts_[0].writers[0].state, VSS_WS_FAILED_AT_FREEZE);
  EXPECT_FALSE(fs::exists(backup_dir("b")));  // made by the call, removed
  StatusOr<std::vector<engine::ShadowInfo>> shadows =
      service_->store()->ListShadows();
  ASSERT_TRUE(shadows.ok());
  EXPECT_TRUE(shadows->empty());
}

TEST_F(RequesterTest, Backup_KeepShadowsInProcessAutoRelease_Refused) {
  BackupRequest req{
      .volumes = {"vol1"}, .dir = backup_dir("b"), .keep_shadows = true};
  StatusOr<BackupResult> r = Backup(*service_, req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition)
      << r.status().ToString();
  EXPECT_FALSE(fs::exists(backup_dir("b")));
}

TEST(RequesterNames, ContextsAndBackupTypes_RoundTrip) {
  for (const std::string& name : BackupTypeNames()) {
    StatusOr<VSS_BACKUP_TYPE> t = BackupTypeFromName(name);
    ASSERT_TRUE(t.ok()) << name;
    EXPECT_EQ(BackupTypeName(*t), name);
  }
  EXPECT_EQ(BackupTypeFromName("weekly").status().code(),
            StatusCode::kInvalidArgument);
  ASSERT_EQ(ContextNames().size(), 6u);
  EXPECT_EQ(*ContextFromName("backup"), VSS_CTX_BACKUP);
  EXPECT_EQ(*ContextFromName("client-accessible-writers"),
            VSS_CTX_CLIENT_ACCESSIBLE_WRITERS);
  EXPECT_EQ(ContextFromName("bogus").status().code(),
            StatusCode::kInvalidArgument);
  Status s =
      StatusFromVss(VssError(VSS_E_BAD_STATE, "out of order"), "DoSnapshotSet");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message().rfind("DoSnapshotSet: VSS_E_BAD_STATE", 0), 0u)
      << s.message();
}

}  // namespace
}  // namespace vss::testing
