// The requester, coordinator and software provider together: event order
// and writer states, vetoes, timeouts, order errors, contexts, auto-release,
// restore, snapshot properties.
#include <chrono>

#include "test_util.h"
#include "vss/engine/volume.h"

namespace vss::testing {
namespace {

using std::chrono::steady_clock;

TEST_F(VssApiTest, FullBackup_TwoWriters_EventsInVssOrderWithStates) {
  TestWriter a(&log_, "A", "vol1/app");
  TestWriter b(&log_, "B", "vol2/db");
  Start(a, "A", *coordinator_, VSS_APP_FRONT_END);
  Start(b, "B", *coordinator_, VSS_APP_BACK_END);
  Guid set_id;
  {
    LocalBackupComponents bc(*coordinator_);
    PrepareBackup(bc, VSS_CTX_BACKUP, {"vol1", "vol2"}, {KeyOf(a, "A"), KeyOf(b, "B")});
    ASSERT_EQ(bc.GetWriterMetadataCount(), 2u);
    EXPECT_EQ(StatusOf(bc, "A").state, VSS_WS_STABLE);

    auto snap = bc.DoSnapshotSet();
    ASSERT_EQ(WaitOn(snap), VSS_S_ASYNC_FINISHED) << (*snap)->Result().ToString();
    EXPECT_EQ(StatusOf(bc, "A").state, VSS_WS_WAITING_FOR_BACKUP_COMPLETE);
    EXPECT_EQ(StatusOf(bc, "B").state, VSS_WS_WAITING_FOR_BACKUP_COMPLETE);
    EXPECT_EQ(ShadowCount(), 2u);
    EXPECT_EQ(log_.Noted("A.affected"), "yes");
    EXPECT_EQ(log_.Noted("A.device").rfind("vss:shadow/", 0), 0u) << log_.Noted("A.device");
    EXPECT_EQ(log_.Noted("A.bad_failure"), "E_INVALIDARG");

    ASSERT_TRUE(bc.SetBackupSucceeded(KeyOf(a, "A"), true).ok());
    ASSERT_TRUE(bc.SetBackupSucceeded(KeyOf(b, "B"), true).ok());
    ASSERT_EQ(WaitOn(bc.BackupComplete()), VSS_S_ASYNC_FINISHED);
    ASSERT_EQ(WaitOn(bc.GatherWriterStatus()), VSS_S_ASYNC_FINISHED);
    EXPECT_EQ(StatusOf(bc, "A").state, VSS_WS_STABLE);
    EXPECT_EQ(StatusOf(bc, "B").state, VSS_WS_STABLE);
    EXPECT_EQ(StatusOf(bc, "B").failure, S_OK);

    // What the writers wrote into their components is in the BCD.
    VssStatusOr<std::string> bcd = bc.SaveAsJson();
    ASSERT_TRUE(bcd.ok());
    VssStatusOr<BackupComponentsDocument> doc = BackupComponentsFromJson(*bcd);
    ASSERT_TRUE(doc.ok());
    const Component* ca = doc->FindWriter(a.class_id)->GetComponent(0);
    EXPECT_EQ(ca->GetBackupMetadata(), "meta-A");
    EXPECT_EQ(ca->GetBackupStamp(), "stamp-A");
    EXPECT_TRUE(ca->GetBackupSucceeded());
    set_id = doc->snapshot_set_id;
    EXPECT_FALSE(set_id.IsNull());
    VssStatusOr<std::vector<SnapshotProp>> shadows = bc.Query();
    ASSERT_TRUE(shadows.ok());
    ASSERT_EQ(shadows->size(), 2u);
    EXPECT_EQ((*shadows)[0].snapshot_set_id, set_id);
  }
  // Auto-release (VSS_CTX_BACKUP): the shadows went with the requester.
  EXPECT_EQ(ShadowCount(), 0u);
  const std::vector<std::string> expected = {
      "Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw",
      "PostSnapshot", "BackupComplete", "BackupShutdown"};
  EXPECT_EQ(log_.Of("A"), expected);
  EXPECT_EQ(log_.Of("B"), expected);
  // Across writers: every PrepareForSnapshot before any Freeze; front-end
  // freezes before back-end and thaws after it; every Thaw before any
  // PostSnapshot.
  EXPECT_LT(log_.IndexOf("B:PrepareForSnapshot"), log_.IndexOf("A:Freeze"));
  EXPECT_LT(log_.IndexOf("A:PrepareForSnapshot"), log_.IndexOf("A:Freeze"));
  EXPECT_LT(log_.IndexOf("A:Freeze"), log_.IndexOf("B:Freeze"));
  EXPECT_LT(log_.IndexOf("B:Freeze"), log_.IndexOf("B:Thaw"));
  EXPECT_LT(log_.IndexOf("B:Thaw"), log_.IndexOf("A:Thaw"));
  EXPECT_LT(log_.IndexOf("A:Thaw"), log_.IndexOf("B:PostSnapshot"));
  EXPECT_LT(log_.IndexOf("A:Thaw"), log_.IndexOf("A:PostSnapshot"));
  // Writers see one set id through the whole sequence (the requester's);
  // the BCD records the engine's id of the set, which its shadows carry.
  EXPECT_EQ(log_.Noted("A.shutdown_set"), log_.Noted("A.set"));
  EXPECT_EQ(log_.Noted("B.set"), log_.Noted("A.set"));
}

TEST_F(VssApiTest, WriterWithDataElsewhere_GetsNoSnapshotEvents) {
  TestWriter a(&log_, "A", "vol1/app");
  TestWriter b(&log_, "B", "vol2/db");
  Start(a, "A", *coordinator_);
  Start(b, "B", *coordinator_);
  {
    LocalBackupComponents bc(*coordinator_);
    PrepareBackup(bc, VSS_CTX_BACKUP, {"vol1"});
    ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
  }
  EXPECT_EQ(log_.Of("B"), (std::vector<std::string>{"Identify", "PrepareForBackup"}));
  EXPECT_EQ(log_.Of("A").size(), 7u);
}

void ExpectVetoAborts(VssApiTest* t, EventLog& log, BackupComponents& bc, HResult expected_hr,
                      VSS_WRITER_STATE failed_state) {
  auto snap = bc.DoSnapshotSet();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ((*snap)->Wait(), expected_hr) << (*snap)->Result().ToString();
  EXPECT_NE((*snap)->Result().message().find("'B'"), std::string::npos)
      << (*snap)->Result().message();
  WriterStatus sb = StatusOf(bc, "B");
  EXPECT_EQ(sb.state, failed_state);
  EXPECT_EQ(sb.failure, expected_hr);
  EXPECT_EQ(StatusOf(bc, "A").state, VSS_WS_STABLE);
}

TEST_F(VssApiTest, VetoAtPrepareSnapshot_AbortsSetAndTellsEveryWriter) {
  TestWriter a(&log_, "A", "vol1/app");
  TestWriter b(&log_, "B", "vol2/db",
               FailAt(WriterEventKind::kPrepareSnapshot, VSS_E_WRITERERROR_RETRYABLE));
  Start(a, "A", *coordinator_, VSS_APP_FRONT_END);
  Start(b, "B", *coordinator_, VSS_APP_BACK_END);
  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_APP_ROLLBACK, {"vol1", "vol2"});
  ExpectVetoAborts(this, log_, bc, VSS_E_WRITERERROR_RETRYABLE, VSS_WS_FAILED_AT_PREPARE_SNAPSHOT);
  EXPECT_EQ(ShadowCount(), 0u);
  EXPECT_EQ(log_.Of("A").back(), "Abort");
  EXPECT_EQ(log_.Of("B").back(), "Abort");
  EXPECT_EQ(log_.IndexOf("A:Freeze"), -1);
  // The failed set cannot be retried on this object, and nothing changed.
  EXPECT_EQ(bc.DoSnapshotSet().status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.BackupComplete().status().code(), VSS_E_BAD_STATE);
  EXPECT_TRUE(bc.AbortBackup().ok());
  EXPECT_EQ(log_.Of("A").back(), "Abort");
  EXPECT_EQ(log_.Of("A").size(), 4u) << ::testing::PrintToString(log_.All());  // no second Abort
}

TEST_F(VssApiTest, VetoAtFreeze_AbortsFrozenWritersToo) {
  TestWriter a(&log_, "A", "vol1/app");
  TestWriter b(&log_, "B", "vol2/db", FailAt(WriterEventKind::kFreeze));
  Start(a, "A", *coordinator_, VSS_APP_FRONT_END);
  Start(b, "B", *coordinator_, VSS_APP_BACK_END);
  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_APP_ROLLBACK, {"vol1", "vol2"});
  // A bare false (no SetWriterFailure) is reported as NONRETRYABLE.
  ExpectVetoAborts(this, log_, bc, VSS_E_WRITERERROR_NONRETRYABLE, VSS_WS_FAILED_AT_FREEZE);
  EXPECT_EQ(ShadowCount(), 0u);
  EXPECT_EQ(log_.Of("A"), (std::vector<std::string>{"Identify", "PrepareForBackup",
                                                     "PrepareForSnapshot", "Freeze", "Abort"}));
  EXPECT_EQ(log_.Of("B").back(), "Abort");
  EXPECT_EQ(log_.IndexOf("A:Thaw"), -1);
}

TEST_F(VssApiTest, WriterStallingInFreezePastItsWindow_TimesOutWithNoShadow) {
  TestWriter a(&log_, "A", "vol1/app",
               StallAt(WriterEventKind::kFreeze, 700));
  Start(a, "A", *coordinator_, VSS_APP_FRONT_END, /*freeze_ms=*/200);
  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_APP_ROLLBACK, {"vol1"});
  auto t0 = steady_clock::now();
  auto snap = bc.DoSnapshotSet();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ((*snap)->Wait(), VSS_E_WRITERERROR_TIMEOUT);
  EXPECT_LT(steady_clock::now() - t0, std::chrono::milliseconds(650));
  WriterStatus s = StatusOf(bc, "A");
  EXPECT_EQ(s.state, VSS_WS_FAILED_AT_FREEZE);
  EXPECT_EQ(s.failure, VSS_E_WRITERERROR_TIMEOUT);
  EXPECT_EQ(ShadowCount(), 0u);
  // The Abort reaches the writer once its stalled handler returns.
  EXPECT_TRUE(log_.WaitFor("A:Abort"));
}

TEST_F(VssApiTest, FreezeWindowRunningOutBeforeCommit_AbortsTheSet) {
  // A (front-end) freezes at once with a 200 ms window; B (back-end) takes
  // 500 ms to freeze, so A's window has run out when the commit is due.
  TestWriter a(&log_, "A", "vol1/app");
  TestWriter b(&log_, "B", "vol2/db", StallAt(WriterEventKind::kFreeze, 500));
  Start(a, "A", *coordinator_, VSS_APP_FRONT_END, 200);
  Start(b, "B", *coordinator_, VSS_APP_BACK_END);
  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_APP_ROLLBACK, {"vol1", "vol2"});
  auto snap = bc.DoSnapshotSet();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ((*snap)->Wait(), VSS_E_WRITERERROR_TIMEOUT) << (*snap)->Result().ToString();
  EXPECT_EQ(StatusOf(bc, "A").state, VSS_WS_FAILED_AT_FREEZE);
  EXPECT_EQ(StatusOf(bc, "A").failure, VSS_E_WRITERERROR_TIMEOUT);
  EXPECT_EQ(ShadowCount(), 0u);
  EXPECT_EQ(log_.Of("A").back(), "Abort");
  EXPECT_EQ(log_.Of("B").back(), "Abort");
}

TEST_F(VssApiTest, HoldingWritesTooLong_FailsWithHoldWritesTimeout) {
  CoordinatorOptions o;
  o.hold_writes_timeout_ms = 50;
  o.on_hold_for_test = [] { std::this_thread::sleep_for(std::chrono::milliseconds(150)); };
  Open(o);
  TestWriter a(&log_, "A", "vol1/app");
  Start(a, "A", *coordinator_);
  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_APP_ROLLBACK, {"vol1"});
  EXPECT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_E_HOLD_WRITES_TIMEOUT);
  EXPECT_EQ(ShadowCount(), 0u);
  EXPECT_EQ(log_.Of("A").back(), "Abort");
}

TEST_F(VssApiTest, WriterNotAnswering_IsMarkedAndDoesNotBlock) {
  CoordinatorOptions o;
  o.event_timeout_ms = 200;
  Open(o);
  TestWriter a(&log_, "A", "vol1/app",
               StallAt(WriterEventKind::kPrepareSnapshot, 800));
  Start(a, "A", *coordinator_);
  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_APP_ROLLBACK, {"vol1"});
  auto t0 = steady_clock::now();
  EXPECT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_E_WRITER_NOT_RESPONDING);
  EXPECT_LT(steady_clock::now() - t0, std::chrono::milliseconds(700));
  EXPECT_EQ(StatusOf(bc, "A").state, VSS_WS_FAILED_AT_PREPARE_SNAPSHOT);
  EXPECT_EQ(StatusOf(bc, "A").failure, VSS_E_WRITER_NOT_RESPONDING);
  EXPECT_EQ(ShadowCount(), 0u);
  EXPECT_TRUE(log_.WaitFor("A:Abort"));
}

TEST_F(VssApiTest, OutOfOrderCalls_AreBadStateAndChangeNothing) {
  LocalBackupComponents bc(*coordinator_);
  EXPECT_EQ(bc.DoSnapshotSet().status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.StartSnapshotSet().status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.SaveAsJson().status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.SetContext(VSS_CTX_APP_ROLLBACK).code(), VSS_E_BAD_STATE);
  ASSERT_TRUE(bc.InitializeForBackup().ok());
  std::string before = *bc.SaveAsJson();
  EXPECT_EQ(bc.InitializeForBackup().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.InitializeForRestore(before).code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.AddToSnapshotSet("vol1").status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.DoSnapshotSet().status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.PrepareForBackup().status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.BackupComplete().status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.PreRestore().status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.SetContext(0x4).code(), VSS_E_UNSUPPORTED_CONTEXT);
  EXPECT_EQ(*bc.SaveAsJson(), before);

  ASSERT_TRUE(bc.StartSnapshotSet().ok());
  EXPECT_EQ(bc.SetContext(VSS_CTX_APP_ROLLBACK).code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.DoSnapshotSet().status().code(), VSS_E_BAD_STATE);  // no volume yet
  ASSERT_TRUE(bc.AddToSnapshotSet("vol1").ok());
  EXPECT_EQ(bc.DoSnapshotSet().status().code(), VSS_E_BAD_STATE);  // not prepared
  EXPECT_EQ(bc.SetBackupSucceeded({}, true).code(), VSS_E_BAD_STATE);
  EXPECT_EQ(*bc.SaveAsJson(), before);
  EXPECT_EQ(ShadowCount(), 0u);

  ASSERT_EQ(WaitOn(bc.PrepareForBackup()), VSS_S_ASYNC_FINISHED);
  EXPECT_EQ(bc.PrepareForBackup().status().code(), VSS_E_BAD_STATE);
  ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
  EXPECT_EQ(bc.AddToSnapshotSet("vol2").status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(bc.DoSnapshotSet().status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(ShadowCount(), 1u);
}

TEST_F(VssApiTest, AddToSnapshotSet_DuplicatesUnknownsAndSecondSet) {
  LocalBackupComponents bc(*coordinator_);
  ASSERT_TRUE(bc.InitializeForBackup().ok());
  VssStatusOr<Guid> set = bc.StartSnapshotSet();
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(bc.StartSnapshotSet().status().code(), VSS_E_SNAPSHOT_SET_IN_PROGRESS);
  ASSERT_TRUE(bc.AddToSnapshotSet("vol1").ok());
  EXPECT_EQ(bc.AddToSnapshotSet("vol1").status().code(), VSS_E_OBJECT_ALREADY_EXISTS);
  StatusOr<engine::VolumeInfo> v1 = store_->ResolveVolume("vol1");
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(bc.AddToSnapshotSet(v1->id.ToString()).status().code(), VSS_E_OBJECT_ALREADY_EXISTS);
  EXPECT_EQ(bc.AddToSnapshotSet("no-such-volume").status().code(), VSS_E_OBJECT_NOT_FOUND);
  EXPECT_EQ(bc.AddToSnapshotSet("vol2", Guid::Generate()).status().code(), VSS_E_PROVIDER_NOT_REGISTERED);
}

TEST_F(VssApiTest, AddToSnapshotSet_AtMost64Volumes) {
  LocalBackupComponents bc(*coordinator_);
  ASSERT_TRUE(bc.InitializeForBackup().ok());
  ASSERT_TRUE(bc.StartSnapshotSet().ok());
  for (int i = 0; i < 65; ++i) {
    engine::CreateVolumeRequest req;
    req.name = "many" + std::to_string(i);
    req.path = dir_.path() + "/" + req.name + ".img";
    req.size = uint64_t{1} << 20;
    ASSERT_TRUE(store_->CreateVolume(req).ok());
    VssStatusOr<Guid> added = bc.AddToSnapshotSet(req.name);
    if (i < 64) {
      ASSERT_TRUE(added.ok()) << i << " " << added.status().ToString();
    } else {
      EXPECT_EQ(added.status().code(), VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED);
    }
  }
}

TEST_F(VssApiTest, SecondSetWhileOneIsInCreation_IsInProgress) {
  Gate gate;
  TestWriter a(&log_, "A", "vol1/app", BlockAtPrepareSnapshot(&gate));
  Start(a, "A", *coordinator_);
  LocalBackupComponents first(*coordinator_);
  PrepareBackup(first, VSS_CTX_APP_ROLLBACK, {"vol1"});
  auto snap1 = first.DoSnapshotSet();
  ASSERT_TRUE(snap1.ok());
  ASSERT_TRUE(log_.WaitFor("A:PrepareForSnapshot"));
  EXPECT_EQ(first.AbortBackup().code(), VSS_E_BAD_STATE);  // its own operation runs

  LocalBackupComponents second(*coordinator_);
  PrepareBackup(second, VSS_CTX_NAS_ROLLBACK, {"vol2"});
  EXPECT_EQ(WaitOn(second.DoSnapshotSet()), VSS_E_SNAPSHOT_SET_IN_PROGRESS);
  gate.Open();
  EXPECT_EQ((*snap1)->Wait(), VSS_S_ASYNC_FINISHED);
  EXPECT_EQ(ShadowCount(), 1u);
  // The refused requester changed nothing and may try again.
  EXPECT_EQ(WaitOn(second.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
  EXPECT_EQ(ShadowCount(), 2u);
}

TEST_F(VssApiTest, CancelBeforeCommit_LeavesNoShadow) {
  Gate gate;
  TestWriter a(&log_, "A", "vol1/app", BlockAtPrepareSnapshot(&gate));
  Start(a, "A", *coordinator_);
  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_APP_ROLLBACK, {"vol1"});
  auto snap = bc.DoSnapshotSet();
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(log_.WaitFor("A:PrepareForSnapshot"));
  EXPECT_EQ((*snap)->QueryStatus(), VSS_S_ASYNC_PENDING);
  EXPECT_EQ((*snap)->Cancel(), S_OK);
  gate.Open();
  EXPECT_EQ((*snap)->Wait(), VSS_S_ASYNC_CANCELLED);
  EXPECT_EQ(ShadowCount(), 0u);
  EXPECT_EQ(log_.Of("A").back(), "Abort");
}

TEST_F(VssApiTest, NoWritersContext_SendsNoEvents) {
  TestWriter a(&log_, "A", "vol1/app");
  Start(a, "A", *coordinator_);
  {
    LocalBackupComponents bc(*coordinator_);
    PrepareBackup(bc, VSS_CTX_FILE_SHARE_BACKUP, {"vol1", "vol2"});
    ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
    EXPECT_EQ(ShadowCount(), 2u);
    ASSERT_EQ(WaitOn(bc.BackupComplete()), VSS_S_ASYNC_FINISHED);
  }
  EXPECT_EQ(ShadowCount(), 0u);  // non-persistent, auto-release
  EXPECT_TRUE(log_.All().empty());
}

TEST_F(VssApiTest, AutoRelease_DeletesOnlyNonPersistentAutoReleaseShadows) {
  for (int32_t ctx : {VSS_CTX_NAS_ROLLBACK, VSS_CTX_BACKUP | VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE |
                                                VSS_VOLSNAP_ATTR_NO_WRITERS}) {
    LocalBackupComponents bc(*coordinator_);
    PrepareBackup(bc, ctx, {"vol1"});
    ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
  }
  EXPECT_EQ(ShadowCount(), 2u);
  {
    LocalBackupComponents bc(*coordinator_);
    PrepareBackup(bc, VSS_CTX_FILE_SHARE_BACKUP, {"vol1", "vol2"});
    ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
    EXPECT_EQ(ShadowCount(), 4u);
  }
  EXPECT_EQ(ShadowCount(), 2u);
  StatusOr<std::vector<engine::ShadowInfo>> rows = store_->ListShadows();
  ASSERT_TRUE(rows.ok());
  bool one_persistent = false;
  for (const auto& r : *rows) one_persistent |= r.persistent;
  EXPECT_TRUE(one_persistent);
}

TEST_F(VssApiTest, AbortBackupAfterPostSnapshot_SendsNoAbort) {
  TestWriter a(&log_, "A", "vol1/app");
  Start(a, "A", *coordinator_);
  {
    LocalBackupComponents bc(*coordinator_);
    PrepareBackup(bc, VSS_CTX_BACKUP, {"vol1"});
    ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
    ASSERT_TRUE(bc.AbortBackup().ok());
  }
  EXPECT_EQ(log_.IndexOf("A:Abort"), -1);
  EXPECT_EQ(log_.Of("A").back(), "BackupShutdown");
}

TEST_F(VssApiTest, SnapshotProperties_HaveEveryField) {
  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_APP_ROLLBACK, {});
  VssStatusOr<Guid> s1 = bc.AddToSnapshotSet("vol1");
  // The set is already started by PrepareBackup; add the second volume.
  ASSERT_TRUE(s1.ok());
  ASSERT_TRUE(bc.AddToSnapshotSet("vol2").ok());
  const int64_t before = engine::NowTimestamp();
  ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
  VssStatusOr<SnapshotProp> p = bc.GetSnapshotProperties(*s1);  // by the id AddToSnapshotSet gave
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->snapshot_id, *s1);  // the committed shadow carries the id handed out
  EXPECT_FALSE(p->snapshot_set_id.IsNull());
  EXPECT_EQ(p->snapshots_count, 2);
  EXPECT_FALSE(p->snapshot_device_object.empty());
  EXPECT_EQ(p->original_volume_name, "vol1");
  EXPECT_FALSE(p->originating_machine.empty());
  EXPECT_FALSE(p->service_machine.empty());
  EXPECT_EQ(p->provider_id, provider_->GetProviderProperties().provider_id);
  EXPECT_EQ(p->snapshot_attributes & kContextBitsMask, VSS_CTX_APP_ROLLBACK);
  EXPECT_TRUE(p->snapshot_attributes & VSS_VOLSNAP_ATTR_DIFFERENTIAL);
  EXPECT_GE(p->creation_timestamp, before - 10'000'000);
  EXPECT_LE(p->creation_timestamp, engine::NowTimestamp());
  EXPECT_EQ(p->status, VSS_SS_CREATED);
  VssStatusOr<SnapshotProp> again = bc.GetSnapshotProperties(p->snapshot_id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->original_volume_name, "vol1");
  EXPECT_EQ(bc.GetSnapshotProperties(Guid::Generate()).status().code(), VSS_E_OBJECT_NOT_FOUND);

  VssStatusOr<std::vector<SnapshotProp>> q = bc.Query();
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->size(), 2u);
  VssStatusOr<BackupComponents::DeleteResult> d =
      bc.DeleteSnapshots(p->snapshot_set_id, VSS_OBJECT_SNAPSHOT_SET, false);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->deleted, 2);
  EXPECT_EQ(ShadowCount(), 0u);
  EXPECT_EQ(bc.DeleteSnapshots(p->snapshot_id, VSS_OBJECT_SNAPSHOT, false).status().code(),
            VSS_E_OBJECT_NOT_FOUND);
}

TEST_F(VssApiTest, RevertToSnapshot_PersistentOnly) {
  Guid persistent_shadow, volatile_shadow;
  engine::Volume* vol = nullptr;
  ASSERT_NO_FATAL_FAILURE(ShadowThenOverwrite(&persistent_shadow, &vol));
  std::vector<uint8_t> data(4096, 0xab), back(4096);
  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_FILE_SHARE_BACKUP, {"vol2"});
  ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
  volatile_shadow = (*bc.Query())[0].snapshot_id;
  EXPECT_EQ(bc.RevertToSnapshot(volatile_shadow, false).code(), VSS_E_UNSUPPORTED_CONTEXT);
  EXPECT_EQ(bc.RevertToSnapshot(Guid::Generate(), false).code(), VSS_E_OBJECT_NOT_FOUND);
  ASSERT_TRUE(bc.RevertToSnapshot(persistent_shadow, false).ok());
  ASSERT_TRUE(vol->Read(0, back).ok());
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));
}

// VolumeUsers as vssd's export registry behaves: `in_use` clients, which a
// forced dismount disconnects.
class FakeVolumeUsers : public VolumeUsers {
 public:
  Status Acquire(const Guid&) override { return OkStatus(); }
  void Release(const Guid&) override {}
  Status BeginExclusive(const Guid&, bool force_dismount) override {
    if (in_use && !force_dismount) return BusyError("in use by a test client");
    if (in_use) ++dismounts;
    in_use = false;
    exclusive = true;
    return OkStatus();
  }
  void EndExclusive(const Guid&) override { exclusive = false; }
  bool in_use = false;
  bool exclusive = false;
  int dismounts = 0;
};

TEST_F(VssApiTest, RevertToSnapshot_VolumeInUse_RefusedUnlessForceDismount) {
  FakeVolumeUsers users;
  provider_->SetVolumeUsers(&users);
  Guid shadow;
  engine::Volume* vol = nullptr;
  ASSERT_NO_FATAL_FAILURE(ShadowThenOverwrite(&shadow, &vol));
  std::vector<uint8_t> data(4096, 0xab), back(4096);

  users.in_use = true;
  LocalBackupComponents bc(*coordinator_);
  EXPECT_EQ(bc.RevertToSnapshot(shadow, false).code(), VSS_E_VOLUME_IN_USE);
  // Nothing changed: the volume keeps its data and the shadow stays.
  ASSERT_TRUE(vol->Read(0, back).ok());
  EXPECT_EQ(back, data);
  EXPECT_TRUE(bc.GetSnapshotProperties(shadow).ok());
  EXPECT_EQ(users.dismounts, 0);

  ASSERT_TRUE(bc.RevertToSnapshot(shadow, true).ok());
  EXPECT_EQ(users.dismounts, 1);
  EXPECT_FALSE(users.exclusive) << "EndExclusive after the revert";
  ASSERT_TRUE(vol->Read(0, back).ok());
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));
  EXPECT_EQ(bc.GetSnapshotProperties(shadow).status().code(), VSS_E_OBJECT_NOT_FOUND);
  provider_->SetVolumeUsers(nullptr);
}

TEST_F(VssApiTest, Restore_SendsPreAndPostRestoreToSelectedWriters) {
  TestWriter a(&log_, "A", "vol1/app");
  TestWriter b(&log_, "B", "vol2/db");
  Start(a, "A", *coordinator_);
  Start(b, "B", *coordinator_);
  std::string bcd;
  {
    LocalBackupComponents bc(*coordinator_);
    PrepareBackup(bc, VSS_CTX_BACKUP, {"vol1", "vol2"}, {KeyOf(a, "A"), KeyOf(b, "B")});
    ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
    ASSERT_TRUE(bc.SetBackupSucceeded(KeyOf(a, "A"), true).ok());
    ASSERT_EQ(WaitOn(bc.BackupComplete()), VSS_S_ASYNC_FINISHED);
    bcd = *bc.SaveAsJson();
  }
  // The saved document round-trips byte for byte.
  EXPECT_EQ(BackupComponentsToJson(*BackupComponentsFromJson(bcd)), bcd);
  {
    LocalBackupComponents rc(*coordinator_);
    EXPECT_EQ(rc.InitializeForRestore("{garbage").code(), VSS_E_CORRUPT_XML_DOCUMENT);
    ASSERT_TRUE(rc.InitializeForRestore(bcd).ok());
    EXPECT_EQ(*rc.SaveAsJson(), bcd);
    ASSERT_EQ(WaitOn(rc.GatherWriterMetadata()), VSS_S_ASYNC_FINISHED);
    EXPECT_EQ(rc.SetFileRestoreStatus(KeyOf(a, "A"), VSS_RS_ALL).code(), VSS_E_BAD_STATE);
    EXPECT_EQ(rc.PostRestore().status().code(), VSS_E_BAD_STATE);
    ASSERT_TRUE(rc.SetSelectedForRestore(KeyOf(a, "A"), true).ok());
    EXPECT_EQ(rc.SetSelectedForRestore({a.class_id, VSS_CT_FILEGROUP, "apps", "nope"}, true).code(),
              VSS_E_OBJECT_NOT_FOUND);
    ASSERT_TRUE(rc.SetRestoreState(VSS_RTYPE_BY_COPY).ok());
    ASSERT_EQ(WaitOn(rc.PreRestore()), VSS_S_ASYNC_FINISHED);
    ASSERT_TRUE(rc.SetFileRestoreStatus(KeyOf(a, "A"), VSS_RS_ALL).ok());
    ASSERT_EQ(WaitOn(rc.PostRestore()), VSS_S_ASYNC_FINISHED);
    EXPECT_EQ(StatusOf(rc, "A").state, VSS_WS_STABLE);
    VssStatusOr<BackupComponentsDocument> doc = BackupComponentsFromJson(*rc.SaveAsJson());
    ASSERT_TRUE(doc.ok());
    const Component* c = doc->FindWriter(a.class_id)->GetComponent(0);
    EXPECT_TRUE(c->IsSelectedForRestore());
    EXPECT_EQ(c->GetFileRestoreStatus(), VSS_RS_ALL);
    EXPECT_EQ(c->GetBackupStamp(), "stamp-A");
    EXPECT_EQ(doc->restore_type, VSS_RTYPE_BY_COPY);
  }
  std::vector<std::string> ea = log_.Of("A");
  ASSERT_GE(ea.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(ea.end() - 3, ea.end()),
            (std::vector<std::string>{"Identify", "PreRestore", "PostRestore"}));
  EXPECT_EQ(log_.Noted("A.restore_components"), "1");
  EXPECT_EQ(log_.Noted("A.file_restore_status"), std::to_string(VSS_RS_ALL));
  EXPECT_EQ(log_.IndexOf("B:PreRestore"), -1);
}

TEST_F(VssApiTest, WriterFailingIdentify_IsLeftOutAndReported) {
  TestWriter a(&log_, "A", "vol1/app");
  TestWriter b(&log_, "B", "vol1/db", FailAt(WriterEventKind::kIdentify));
  Start(a, "A", *coordinator_);
  Start(b, "B", *coordinator_);
  {
    LocalBackupComponents bc(*coordinator_);
    PrepareBackup(bc, VSS_CTX_APP_ROLLBACK, {"vol1"});
    EXPECT_EQ(bc.GetWriterMetadataCount(), 1u);  // only A
    EXPECT_EQ(StatusOf(bc, "B").state, VSS_WS_FAILED_AT_IDENTIFY);
    EXPECT_EQ(StatusOf(bc, "B").failure, VSS_E_WRITERERROR_NONRETRYABLE);
    ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
    EXPECT_EQ(ShadowCount(), 1u);
  }
  EXPECT_EQ(log_.Of("B"), std::vector<std::string>{"Identify"});
  EXPECT_EQ(log_.Of("A").size(), 7u);
}

TEST_F(VssApiTest, RestoreOnlyWriter_GetsNoBackupEvents) {
  TestWriter a(&log_, "A", "vol1/app");
  ASSERT_TRUE(a.Initialize(a.class_id, "A", VSS_UT_USERDATA, VSS_ST_OTHER).ok());
  ASSERT_TRUE(a.Subscribe(*coordinator_, VSS_SM_RESTORE_EVENTS_FLAG).ok());
  {
    LocalBackupComponents bc(*coordinator_);
    PrepareBackup(bc, VSS_CTX_BACKUP, {"vol1"});
    ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
  }
  EXPECT_EQ(log_.Of("A"), std::vector<std::string>{"Identify"});
}

TEST_F(VssApiTest, WriterSubscription_Rules) {
  TestWriter a(&log_, "A", "vol1/app");
  EXPECT_EQ(a.Subscribe(*coordinator_).code(), VSS_E_BAD_STATE);
  EXPECT_EQ(a.Initialize(Guid(), "A", VSS_UT_USERDATA, VSS_ST_OTHER).code(), E_INVALIDARG);
  Start(a, "A", *coordinator_);
  EXPECT_EQ(a.Subscribe(*coordinator_).code(), VSS_E_WRITER_ALREADY_SUBSCRIBED);
  EXPECT_EQ(coordinator_->Writers().size(), 1u);
  ASSERT_TRUE(a.Unsubscribe().ok());
  EXPECT_EQ(coordinator_->Writers().size(), 0u);
}

TEST_F(VssApiTest, DiffAreaManagement) {
  SnapshotMgmt mgmt(*store_);
  DifferentialSoftwareSnapshotMgmt& diff = mgmt.GetProviderMgmtInterface();
  VssStatusOr<std::vector<DiffAreaProp>> d = diff.QueryDiffAreasForVolume("vol1");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->size(), 1u);
  EXPECT_EQ((*d)[0].volume_name, "vol1");
  EXPECT_EQ((*d)[0].maximum_diff_space, VSS_ASSOC_NO_MAX_SPACE);
  ASSERT_TRUE(diff.ChangeDiffAreaMaximumSize("vol1", int64_t{64} << 20).ok());
  EXPECT_EQ((*diff.QueryDiffAreasForVolume("vol1"))[0].maximum_diff_space, int64_t{64} << 20);
  EXPECT_EQ(diff.ChangeDiffAreaMaximumSize("vol1", VSS_ASSOC_REMOVE).code(), E_INVALIDARG);
  EXPECT_EQ(diff.QueryDiffAreasForVolume("nope").status().code(), VSS_E_OBJECT_NOT_FOUND);
  VssStatusOr<std::vector<DiffAreaProp>> on = diff.QueryDiffAreasOnVolume((*d)[0].diff_area_volume_name);
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(on->size(), 1u);
  EXPECT_EQ(mgmt.QueryVolumesSupportedForSnapshots(VSS_CTX_ALL)->size(), 2u);

  LocalBackupComponents bc(*coordinator_);
  PrepareBackup(bc, VSS_CTX_NAS_ROLLBACK, {"vol1"});
  ASSERT_EQ(WaitOn(bc.DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
  VssStatusOr<std::vector<SnapshotProp>> shadows = mgmt.QuerySnapshotsByVolume("vol1");
  ASSERT_TRUE(shadows.ok());
  ASSERT_EQ(shadows->size(), 1u);
  VssStatusOr<std::vector<DiffAreaProp>> fs = diff.QueryDiffAreasForSnapshot((*shadows)[0].snapshot_id);
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ((*fs)[0].volume_name, "vol1");
}

}  // namespace
}  // namespace vss::testing
