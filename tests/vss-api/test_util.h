// Shared fixtures for the vss-api tests: a temporary store with two small
// sparse volumes, a coordinator over the software provider, and a
// TestWriter that records every event into a shared EventLog and can veto,
// fail or stall at a chosen event. TempDir and the status matchers come
// from the shared test library (tests/lib).
#pragma once

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/testing/status_matchers.h"
#include "vss/testing/temp_dir.h"
#include "vss/vss.h"

namespace vss::testing {

// Every event of every writer, in the order the handlers ran.
class EventLog {
 public:
  void Add(const std::string& e) {
    std::lock_guard<std::mutex> l(mu_);
    events_.push_back(e);
    cv_.notify_all();
  }
  std::vector<std::string> All() const {
    std::lock_guard<std::mutex> l(mu_);
    return events_;
  }
  // The events of one writer, without the "name:" prefix.
  std::vector<std::string> Of(const std::string& name) const {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<std::string> out;
    for (const auto& e : events_) {
      if (e.rfind(name + ":", 0) == 0) out.push_back(e.substr(name.size() + 1));
    }
    return out;
  }
  // Position of an event in All(), -1 if absent.
  int IndexOf(const std::string& e) const {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < events_.size(); ++i) {
      if (events_[i] == e) return static_cast<int>(i);
    }
    return -1;
  }
  // Waits up to `ms` for event `e` to be logged.
  bool WaitFor(const std::string& e, int ms = 5000) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::milliseconds(ms), [&] {
      for (const auto& x : events_) {
        if (x == e) return true;
      }
      return false;
    });
  }
  void Note(const std::string& key, const std::string& value) {
    std::lock_guard<std::mutex> l(mu_);
    notes_[key] = value;
  }
  std::string Noted(const std::string& key) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = notes_.find(key);
    return it == notes_.end() ? "" : it->second;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::map<std::string, std::string> notes_;
};

// A gate a handler can wait on until the test opens it.
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct WriterBehaviour {
  std::optional<WriterEventKind> fail_at;  // return false here
  HResult fail_hr = S_OK;                  // SetWriterFailure before, if set
  std::optional<WriterEventKind> stall_at;
  int stall_ms = 0;
  Gate* block_at_prepare_snapshot = nullptr;
};

inline WriterBehaviour FailAt(WriterEventKind k, HResult hr = S_OK) {
  WriterBehaviour b;
  b.fail_at = k;
  b.fail_hr = hr;
  return b;
}
inline WriterBehaviour StallAt(WriterEventKind k, int ms) {
  WriterBehaviour b;
  b.stall_at = k;
  b.stall_ms = ms;
  return b;
}
inline WriterBehaviour BlockAtPrepareSnapshot(Gate* g) {
  WriterBehaviour b;
  b.block_at_prepare_snapshot = g;
  return b;
}

// Its data: one file-group component "<name>-files" with files under
// `data_path` (e.g. "vol1/app").
class TestWriter final : public Writer {
 public:
  TestWriter(EventLog* log, std::string name, std::string data_path,
             WriterBehaviour behaviour = {})
      : log_(log), name_(std::move(name)), data_path_(std::move(data_path)),
        behaviour_(behaviour) {}
  ~TestWriter() override { Unsubscribe().IgnoreError(); }

  Guid class_id = Guid::Generate();

  bool OnIdentify(CreateWriterMetadata& md) override {
    log_->Add(name_ + ":Identify");
    EXPECT_TRUE(md.AddComponent(VSS_CT_FILEGROUP, "apps", name_ + "-files", "files of " + name_, true).ok());
    EXPECT_TRUE(md.AddFilesToFileGroup("apps", name_ + "-files", data_path_, "*", true).ok());
    EXPECT_TRUE(md.SetRestoreMethod({VSS_RME_RESTORE_IF_CAN_REPLACE, "", "", VSS_WRE_NEVER, false}).ok());
    return Act(WriterEventKind::kIdentify);
  }
  bool OnPrepareBackup(WriterComponents& c) override {
    log_->Add(name_ + ":PrepareForBackup");
    for (size_t i = 0; i < c.GetComponentCount(); ++i) c.GetComponent(i)->SetBackupMetadata("meta-" + name_);
    return Act(WriterEventKind::kPrepareBackup);
  }
  bool OnPrepareSnapshot() override {
    log_->Add(name_ + ":PrepareForSnapshot");
    log_->Note(name_ + ".affected", IsPathAffected(data_path_) ? "yes" : "no");
    log_->Note(name_ + ".set", GetCurrentSnapshotSetId().ToString());
    if (behaviour_.block_at_prepare_snapshot != nullptr) behaviour_.block_at_prepare_snapshot->Wait();
    return Act(WriterEventKind::kPrepareSnapshot);
  }
  bool OnFreeze() override {
    log_->Add(name_ + ":Freeze");
    return Act(WriterEventKind::kFreeze);
  }
  bool OnThaw() override {
    log_->Add(name_ + ":Thaw");
    return Act(WriterEventKind::kThaw);
  }
  bool OnPostSnapshot(WriterComponents& c) override {
    log_->Add(name_ + ":PostSnapshot");
    std::string vol = data_path_.substr(0, data_path_.find('/'));
    VssStatusOr<std::string> dev = GetSnapshotDeviceName(vol);
    log_->Note(name_ + ".device", dev.ok() ? *dev : HResultName(dev.status().code()));
    log_->Note(name_ + ".bad_failure", HResultName(SetWriterFailure(VSS_E_BAD_STATE).code()));
    for (size_t i = 0; i < c.GetComponentCount(); ++i) c.GetComponent(i)->SetBackupStamp("stamp-" + name_);
    return Act(WriterEventKind::kPostSnapshot);
  }
  bool OnAbort() override {
    log_->Add(name_ + ":Abort");
    return true;
  }
  bool OnBackupComplete(WriterComponents& c) override {
    log_->Add(name_ + ":BackupComplete");
    return Act(WriterEventKind::kBackupComplete);
  }
  bool OnBackupShutdown(const Guid& set_id) override {
    log_->Add(name_ + ":BackupShutdown");
    log_->Note(name_ + ".shutdown_set", set_id.ToString());
    return true;
  }
  bool OnPreRestore(WriterComponents& c) override {
    log_->Add(name_ + ":PreRestore");
    log_->Note(name_ + ".restore_components", std::to_string(c.GetComponentCount()));
    return Act(WriterEventKind::kPreRestore);
  }
  bool OnPostRestore(WriterComponents& c) override {
    log_->Add(name_ + ":PostRestore");
    if (c.GetComponentCount() > 0) {
      log_->Note(name_ + ".file_restore_status",
                 std::to_string(c.GetComponent(0)->GetFileRestoreStatus()));
    }
    return Act(WriterEventKind::kPostRestore);
  }

 private:
  bool Act(WriterEventKind kind) {
    if (behaviour_.stall_at == kind) {
      std::this_thread::sleep_for(std::chrono::milliseconds(behaviour_.stall_ms));
    }
    if (behaviour_.fail_at == kind) {
      if (behaviour_.fail_hr != S_OK) {
        EXPECT_TRUE(SetWriterFailure(behaviour_.fail_hr).ok());
      }
      return false;
    }
    return true;
  }

  EventLog* log_;
  std::string name_;
  std::string data_path_;
  WriterBehaviour behaviour_;
};

// --- Steps shared by the requester tests ---

inline ComponentKey KeyOf(const TestWriter& w, const std::string& name) {
  return {w.class_id, VSS_CT_FILEGROUP, "apps", name + "-files"};
}

// Writers must be initialized with their class id and subscribed.
inline void Start(TestWriter& w, const std::string& name, WriterRegistry& c,
                  VSS_APPLICATION_LEVEL level = VSS_APP_FRONT_END, uint32_t freeze_ms = 60000) {
  ASSERT_TRUE(w.Initialize(w.class_id, name, VSS_UT_USERDATA, VSS_ST_OTHER, level, freeze_ms).ok());
  ASSERT_TRUE(w.Subscribe(c).ok());
}

// InitializeForBackup, SetContext, SetBackupState, GatherWriterMetadata,
// StartSnapshotSet, AddToSnapshotSet(vols), PrepareForBackup.
inline void PrepareBackup(BackupComponents& bc, int32_t context,
                          const std::vector<std::string>& vols,
                          const std::vector<ComponentKey>& components = {}) {
  ASSERT_TRUE(bc.InitializeForBackup().ok());
  ASSERT_TRUE(bc.SetContext(context).ok());
  ASSERT_TRUE(bc.SetBackupState(!components.empty(), false, VSS_BT_FULL).ok());
  if ((context & VSS_VOLSNAP_ATTR_NO_WRITERS) == 0) {
    auto a = bc.GatherWriterMetadata();
    ASSERT_TRUE(a.ok());
    ASSERT_EQ((*a)->Wait(), VSS_S_ASYNC_FINISHED);
  }
  for (const auto& k : components) ASSERT_TRUE(bc.AddComponent(k).ok());
  ASSERT_TRUE(bc.StartSnapshotSet().ok());
  for (const auto& v : vols) ASSERT_TRUE(bc.AddToSnapshotSet(v).ok()) << v;
  auto p = bc.PrepareForBackup();
  ASSERT_TRUE(p.ok());
  ASSERT_EQ((*p)->Wait(), VSS_S_ASYNC_FINISHED) << (*p)->Result().ToString();
}

inline WriterStatus StatusOf(BackupComponents& bc, const std::string& name) {
  for (size_t i = 0; i < bc.GetWriterStatusCount(); ++i) {
    WriterStatus s = *bc.GetWriterStatus(i);
    if (s.name == name) return s;
  }
  ADD_FAILURE() << "no writer " << name;
  return {};
}

// A store with volumes vol1 and vol2 (4 MiB, sparse), the software
// provider and a coordinator.
class VssApiTest : public ::testing::Test {
 protected:
  void SetUp() override { Open({}); }

  void Open(CoordinatorOptions options) {
    coordinator_.reset();
    provider_.reset();
    if (!store_) {
      engine::StoreOptions so;
      so.dir = dir_.path() + "/store";
      StatusOr<std::unique_ptr<engine::Store>> s = engine::Store::Open(std::move(so));
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      store_ = std::move(s).value();
      for (const char* name : {"vol1", "vol2"}) {
        engine::CreateVolumeRequest req;
        req.path = dir_.path() + "/" + name + ".img";
        req.size = uint64_t{4} << 20;
        req.name = name;
        StatusOr<engine::VolumeInfo> v = store_->CreateVolume(req);
        ASSERT_TRUE(v.ok()) << v.status().ToString();
      }
    }
    provider_ = std::make_unique<SoftwareProvider>(*store_);
    coordinator_ = std::make_unique<Coordinator>(*provider_, std::move(options));
  }

  size_t ShadowCount() {
    StatusOr<std::vector<engine::ShadowInfo>> rows = store_->ListShadows();
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? rows->size() : 0;
  }

  // A persistent shadow of vol1 (context NAS rollback), then 4 KiB of 0xab
  // written at offset 0 of vol1, where the shadow reads zeroes.
  void ShadowThenOverwrite(Guid* shadow, engine::Volume** vol) {
    {
      LocalBackupComponents bc(*coordinator_);
      PrepareBackup(bc, VSS_CTX_NAS_ROLLBACK, {"vol1"});
      ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
      *shadow = (*bc.Query())[0].snapshot_id;
    }
    StatusOr<engine::VolumeInfo> v1 = store_->ResolveVolume("vol1");
    ASSERT_TRUE(v1.ok());
    StatusOr<engine::Volume*> v = store_->OpenVolume(v1->id);
    ASSERT_TRUE(v.ok());
    *vol = *v;
    ASSERT_TRUE((*vol)->Write(0, std::vector<uint8_t>(4096, 0xab)).ok());
  }

  // Waits for an Async made by a call that must have succeeded.
  static HResult WaitOn(const VssStatusOr<std::shared_ptr<Async>>& a) {
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    if (!a.ok()) return a.status().code();
    return (*a)->Wait();
  }

  TempDir dir_;
  std::unique_ptr<engine::Store> store_;
  std::unique_ptr<SoftwareProvider> provider_;
  std::unique_ptr<Coordinator> coordinator_;
  EventLog log_;
};

}  // namespace vss::testing
