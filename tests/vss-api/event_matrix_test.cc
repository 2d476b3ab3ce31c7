// Every writer event against every way a writer can let a requester down:
// veto (false without a code), each VSS_E_WRITERERROR_* code, a stall past
// the timeout, and (through the vssd protocol, in remote_test.cc) a crash.
// For each, the requester sees the VSS state FAILED_AT_<event>, the code,
// and the set's fate: a failure at PrepareForSnapshot or Freeze aborts the
// set (no shadow, OnAbort), later ones leave the committed set in place.
#include <tuple>

#include "test_util.h"

namespace vss::testing {
namespace {

struct Outcome {
  HResult step = S_OK;  // the Async result of the step that sent the event
  VSS_WRITER_STATE state = VSS_WS_UNKNOWN;
  HResult failure = S_OK;
  size_t shadows = 0;  // while the requester still holds the set
  bool aborted = false;  // the writer got Abort
};

const WriterEventKind kEvents[] = {
    WriterEventKind::kIdentify,      WriterEventKind::kPrepareBackup,
    WriterEventKind::kPrepareSnapshot, WriterEventKind::kFreeze,
    WriterEventKind::kThaw,          WriterEventKind::kPostSnapshot,
    WriterEventKind::kBackupComplete, WriterEventKind::kPreRestore,
    WriterEventKind::kPostRestore};

VSS_WRITER_STATE FailedStateOf(WriterEventKind k) {
  switch (k) {
    case WriterEventKind::kIdentify: return VSS_WS_FAILED_AT_IDENTIFY;
    case WriterEventKind::kPrepareBackup: return VSS_WS_FAILED_AT_PREPARE_BACKUP;
    case WriterEventKind::kPrepareSnapshot: return VSS_WS_FAILED_AT_PREPARE_SNAPSHOT;
    case WriterEventKind::kFreeze: return VSS_WS_FAILED_AT_FREEZE;
    case WriterEventKind::kThaw: return VSS_WS_FAILED_AT_THAW;
    case WriterEventKind::kPostSnapshot: return VSS_WS_FAILED_AT_POST_SNAPSHOT;
    case WriterEventKind::kBackupComplete: return VSS_WS_FAILED_AT_BACKUP_COMPLETE;
    case WriterEventKind::kPreRestore: return VSS_WS_FAILED_AT_PRE_RESTORE;
    case WriterEventKind::kPostRestore: return VSS_WS_FAILED_AT_POST_RESTORE;
    default: return VSS_WS_UNKNOWN;
  }
}

class EventMatrixTest : public VssApiTest {
 protected:
  // A full backup (and, for restore events, a restore of it) with writer
  // W behaving as `b`; stops at the step that sends `at`.
  Outcome Run(WriterEventKind at, WriterBehaviour b) {
    Outcome o;
    TestWriter w(&log_, "W", "vol1/app", b);
    EXPECT_TRUE(w.Initialize(w.class_id, "W", VSS_UT_USERDATA, VSS_ST_OTHER).ok());
    EXPECT_TRUE(w.Subscribe(*coordinator_).ok());
    const ComponentKey key{w.class_id, VSS_CT_FILEGROUP, "apps", "W-files"};
    auto status_of_w = [](BackupComponents& bc) {
      for (size_t i = 0; i < bc.GetWriterStatusCount(); ++i) {
        WriterStatus s = *bc.GetWriterStatus(i);
        if (s.name == "W") return s;
      }
      return WriterStatus{};
    };
    auto record = [&](BackupComponents& bc, HResult step) {
      WriterStatus s = status_of_w(bc);
      o.step = step;
      o.state = s.state;
      o.failure = s.failure;
      o.shadows = ShadowCount();
    };
    std::string bcd;
    {
      LocalBackupComponents bc(*coordinator_);
      EXPECT_TRUE(bc.InitializeForBackup().ok());
      EXPECT_TRUE(bc.SetBackupState(true, false, VSS_BT_FULL).ok());
      HResult r = WaitOn(bc.GatherWriterMetadata());
      if (at == WriterEventKind::kIdentify) {
        record(bc, r);
        EXPECT_EQ(bc.GetWriterMetadataCount(), 0u);
        w.Unsubscribe().IgnoreError();
        o.aborted = log_.IndexOf("W:Abort") >= 0;
        return o;
      }
      EXPECT_TRUE(bc.AddComponent(key).ok());
      EXPECT_TRUE(bc.StartSnapshotSet().ok());
      EXPECT_TRUE(bc.AddToSnapshotSet("vol1").ok());
      r = WaitOn(bc.PrepareForBackup());
      if (at == WriterEventKind::kPrepareBackup) {
        record(bc, r);
        bc.AbortBackup().IgnoreError();
        w.Unsubscribe().IgnoreError();
        return o;
      }
      r = WaitOn(bc.DoSnapshotSet());
      if (at == WriterEventKind::kPrepareSnapshot || at == WriterEventKind::kFreeze ||
          at == WriterEventKind::kThaw || at == WriterEventKind::kPostSnapshot) {
        record(bc, r);
        bc.AbortBackup().IgnoreError();
        o.aborted = log_.WaitFor("W:Abort", at == WriterEventKind::kThaw ||
                                                    at == WriterEventKind::kPostSnapshot
                                                ? 100
                                                : 5000);
        w.Unsubscribe().IgnoreError();
        return o;
      }
      EXPECT_EQ(r, VSS_S_ASYNC_FINISHED);
      EXPECT_TRUE(bc.SetBackupSucceeded(key, true).ok());
      r = WaitOn(bc.BackupComplete());
      if (at == WriterEventKind::kBackupComplete) {
        record(bc, r);
        w.Unsubscribe().IgnoreError();
        return o;
      }
      EXPECT_EQ(r, VSS_S_ASYNC_FINISHED);
      bcd = *bc.SaveAsJson();
    }
    LocalBackupComponents rc(*coordinator_);
    EXPECT_TRUE(rc.InitializeForRestore(bcd).ok());
    EXPECT_EQ(WaitOn(rc.GatherWriterMetadata()), VSS_S_ASYNC_FINISHED);
    EXPECT_TRUE(rc.SetSelectedForRestore(key, true).ok());
    EXPECT_TRUE(rc.SetRestoreState(VSS_RTYPE_BY_COPY).ok());
    HResult r = WaitOn(rc.PreRestore());
    if (at == WriterEventKind::kPreRestore) {
      record(rc, r);
      w.Unsubscribe().IgnoreError();
      return o;
    }
    EXPECT_TRUE(rc.SetFileRestoreStatus(key, VSS_RS_ALL).ok());
    r = WaitOn(rc.PostRestore());
    record(rc, r);
    w.Unsubscribe().IgnoreError();
    return o;
  }

  // What VSS shows for writer failure `code` at `at`, given the step result.
  void Expect(WriterEventKind at, const Outcome& o, HResult code, const std::string& what) {
    SCOPED_TRACE(std::string(WriterEventName(at)) + " / " + what);
    EXPECT_EQ(o.state, FailedStateOf(at)) << o.state;
    EXPECT_EQ(HResultName(o.failure), HResultName(code));
    switch (at) {
      case WriterEventKind::kIdentify:
        // Left out of the backup; the gathering itself succeeds.
        EXPECT_EQ(o.step, VSS_S_ASYNC_FINISHED);
        break;
      case WriterEventKind::kPrepareSnapshot:
      case WriterEventKind::kFreeze:
        // The set is aborted: no shadow, OnAbort sent.
        EXPECT_EQ(HResultName(o.step), HResultName(code));
        EXPECT_EQ(o.shadows, 0u);
        EXPECT_TRUE(o.aborted);
        break;
      case WriterEventKind::kThaw:
      case WriterEventKind::kPostSnapshot:
        // After the commit: the set stands, the writer's state tells.
        EXPECT_EQ(o.step, VSS_S_ASYNC_FINISHED);
        EXPECT_EQ(o.shadows, 1u);
        EXPECT_FALSE(o.aborted);
        break;
      default:
        EXPECT_EQ(HResultName(o.step), HResultName(code));
        break;
    }
  }
};

class FailMatrix : public EventMatrixTest,
                   public ::testing::WithParamInterface<std::tuple<WriterEventKind, HResult>> {};

TEST_P(FailMatrix, WriterFailsWithCode) {
  auto [at, hr] = GetParam();
  // Identify cannot carry a code (SetWriterFailure is refused there): a
  // plain veto, reported as NONRETRYABLE.
  HResult set = at == WriterEventKind::kIdentify ? S_OK : hr;
  Outcome o = Run(at, FailAt(at, set));
  Expect(at, o, set == S_OK ? VSS_E_WRITERERROR_NONRETRYABLE : hr,
         set == S_OK ? "veto" : HResultName(hr));
}

std::string FailName(const ::testing::TestParamInfo<std::tuple<WriterEventKind, HResult>>& i) {
  std::string n = std::string(WriterEventName(std::get<0>(i.param))) + "_" +
                  (std::get<1>(i.param) == S_OK ? "veto" : HResultName(std::get<1>(i.param)));
  for (char& c : n) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return n;
}

INSTANTIATE_TEST_SUITE_P(
    EveryEventEveryCode, FailMatrix,
    ::testing::Combine(::testing::ValuesIn(kEvents),
                       ::testing::Values(S_OK, VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT,
                                         VSS_E_WRITERERROR_OUTOFRESOURCES,
                                         VSS_E_WRITERERROR_TIMEOUT, VSS_E_WRITERERROR_RETRYABLE,
                                         VSS_E_WRITERERROR_NONRETRYABLE,
                                         VSS_E_WRITERERROR_RECOVERY_FAILED,
                                         VSS_E_WRITERERROR_PARTIAL_FAILURE)),
    FailName);

class StallMatrix : public EventMatrixTest,
                    public ::testing::WithParamInterface<WriterEventKind> {
 protected:
  void SetUp() override {
    CoordinatorOptions o;
    o.event_timeout_ms = 200;
    o.freeze_timeout_ms = 200;
    Open(o);
  }
};

TEST_P(StallMatrix, WriterStallsPastTheTimeout) {
  WriterEventKind at = GetParam();
  Outcome o = Run(at, StallAt(at, 700));
  // Freeze is bounded by the freeze-to-thaw window, the rest by the event
  // timeout.
  Expect(at, o, at == WriterEventKind::kFreeze ? VSS_E_WRITERERROR_TIMEOUT
                                               : VSS_E_WRITER_NOT_RESPONDING,
         "stall");
}

INSTANTIATE_TEST_SUITE_P(EveryEvent, StallMatrix, ::testing::ValuesIn(kEvents),
                         [](const ::testing::TestParamInfo<WriterEventKind>& i) {
                           return std::string(WriterEventName(i.param));
                         });

}  // namespace
}  // namespace vss::testing
