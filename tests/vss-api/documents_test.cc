// HResult names and mappings, the writer metadata document and the backup
// components document (JSON round trips, damaged and misshapen input).
#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "vss/vss.h"

namespace vss {
namespace {

TEST(HResult, NamesAndValuesAreVss) {
  EXPECT_EQ(static_cast<uint32_t>(VSS_E_BAD_STATE), 0x80042301u);
  EXPECT_EQ(HResultName(VSS_E_BAD_STATE), "VSS_E_BAD_STATE");
  EXPECT_EQ(HResultName(VSS_E_WRITERERROR_TIMEOUT), "VSS_E_WRITERERROR_TIMEOUT");
  EXPECT_EQ(static_cast<uint32_t>(VSS_E_WRITERERROR_TIMEOUT), 0x800423F2u);
  EXPECT_EQ(HResultName(VSS_S_ASYNC_FINISHED), "VSS_S_ASYNC_FINISHED");
  EXPECT_EQ(HResultName(E_INVALIDARG), "E_INVALIDARG");
  EXPECT_EQ(HResultName(MakeHResult(0x80042399)), "0x80042399");
  EXPECT_EQ(VssStatus(VSS_E_BAD_STATE, "out of order").ToString(),
            "VSS_E_BAD_STATE (0x80042301): out of order");
  EXPECT_TRUE(VssStatus(VSS_S_ASYNC_FINISHED, "").ok());
  EXPECT_FALSE(VssStatus(VSS_E_UNEXPECTED, "").ok());
}

TEST(HResult, EngineStatusMapsToVssCodes) {
  EXPECT_EQ(VssStatus::FromStatus(NotFoundError("x")).code(), VSS_E_OBJECT_NOT_FOUND);
  EXPECT_EQ(VssStatus::FromStatus(NoSpaceError("x")).code(), VSS_E_INSUFFICIENT_STORAGE);
  EXPECT_EQ(VssStatus::FromStatus(AlreadyExistsError("x")).code(), VSS_E_OBJECT_ALREADY_EXISTS);
  EXPECT_EQ(VssStatus::FromStatus(IoError("x")).code(), VSS_E_UNEXPECTED_PROVIDER_ERROR);
  EXPECT_EQ(VssStatus::FromStatus(IoError("disk")).message(), "disk");
  EXPECT_TRUE(VssStatus::FromStatus(OkStatus()).ok());
}

TEST(HResult, ToStatus_MapsBackAndNamesTheCode) {
  EXPECT_TRUE(VssStatus::Ok().ToStatus("x").ok());
  const StatusCode kCodes[] = {StatusCode::kNotFound, StatusCode::kAlreadyExists,
                               StatusCode::kNoSpace, StatusCode::kInvalidArgument,
                               StatusCode::kFailedPrecondition, StatusCode::kBusy,
                               StatusCode::kUnsupported};
  for (StatusCode c : kCodes) {  // a round trip keeps the code
    EXPECT_EQ(VssStatus::FromStatus(Status(c, "m")).ToStatus().code(), c);
  }
  EXPECT_EQ(VssError(VSS_E_UNSUPPORTED_CONTEXT, "m").ToStatus().code(),
            StatusCode::kUnsupported);
  Status s = VssError(VSS_E_WRITERERROR_TIMEOUT, "slow").ToStatus("Freeze");
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_EQ(s.message(), "Freeze: VSS_E_WRITERERROR_TIMEOUT (0x800423F2): slow");
}

TEST(HResult, VssStatusOr_HoldsAValueOrTheVssStatus) {
  VssStatusOr<int> v = 7;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 7);
  EXPECT_TRUE(v.status().ok());
  VssStatusOr<int> e = VssError(VSS_E_BAD_STATE, "late");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), VSS_E_BAD_STATE);
  EXPECT_EQ(e.status().message(), "late");
}

TEST(HResult, OnlyWriterErrorsAreWriterFailures) {
  EXPECT_TRUE(IsWriterErrorCode(VSS_E_WRITERERROR_RETRYABLE));
  EXPECT_TRUE(IsWriterErrorCode(VSS_E_WRITERERROR_PARTIAL_FAILURE));
  EXPECT_FALSE(IsWriterErrorCode(VSS_E_BAD_STATE));
}

WriterMetadataDocument SampleMetadata() {
  CreateWriterMetadata md({Guid::Generate(), Guid::Generate(), "sql", "inst1",
                           VSS_UT_USERDATA, VSS_ST_TRANSACTEDDB});
  EXPECT_TRUE(md.AddIncludeFiles("vol1/db", "*.mdf", true).ok());
  EXPECT_TRUE(md.AddExcludeFiles("vol1/db/tmp", "*", true).ok());
  EXPECT_TRUE(md.AddComponent(VSS_CT_DATABASE, "instances", "main", "Main DB", true).ok());
  EXPECT_TRUE(md.AddDatabaseFiles("instances", "main", "vol1/db", "main.mdf").ok());
  EXPECT_TRUE(md.AddDatabaseLogFiles("instances", "main", "vol1/log", "main.ldf").ok());
  EXPECT_TRUE(md.AddComponent(VSS_CT_FILEGROUP, "cfg", "config").ok());
  EXPECT_TRUE(md.AddFilesToFileGroup("cfg", "config", "vol1/etc", "*.conf", false, "alt/etc").ok());
  EXPECT_TRUE(md.AddComponentDependency("instances", "main", Guid::Generate(), "cfg", "config").ok());
  EXPECT_TRUE(md.SetRestoreMethod({VSS_RME_STOP_RESTORE_START, "sqlsvc", "", VSS_WRE_ALWAYS, true}).ok());
  EXPECT_TRUE(md.AddAlternateLocationMapping("vol1/db", "*.mdf", false, "vol2/db").ok());
  EXPECT_TRUE(md.SetBackupSchema(VSS_BS_DIFFERENTIAL | VSS_BS_LOG).ok());
  return md.document();
}

TEST(WriterMetadata, CreateThenExamineGivesEveryField) {
  WriterMetadataDocument doc = SampleMetadata();
  std::string json = WriterMetadataToJson(doc);
  VssStatusOr<ExamineWriterMetadata> e = ExamineWriterMetadata::LoadFromJson(json);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->GetIdentity().name, "sql");
  EXPECT_EQ(e->GetIdentity().instance_name, "inst1");
  EXPECT_EQ(e->GetIdentity().writer_id, doc.identity.writer_id);
  EXPECT_EQ(e->GetIdentity().source, VSS_ST_TRANSACTEDDB);
  auto counts = e->GetFileCounts();
  EXPECT_EQ(counts.include_files, 1u);
  EXPECT_EQ(counts.exclude_files, 1u);
  EXPECT_EQ(counts.components, 2u);
  EXPECT_EQ(e->GetIncludeFile(0)->filespec, "*.mdf");
  EXPECT_EQ(e->GetExcludeFile(0)->path, "vol1/db/tmp");
  EXPECT_EQ(e->GetIncludeFile(1).status().code(), E_INVALIDARG);
  ComponentInfo main = *e->GetComponent(0);
  EXPECT_EQ(main.type, VSS_CT_DATABASE);
  EXPECT_EQ(main.caption, "Main DB");
  EXPECT_TRUE(main.notify_on_backup_complete);
  ASSERT_EQ(main.databases.size(), 1u);
  ASSERT_EQ(main.log_files.size(), 1u);
  EXPECT_EQ(main.log_files[0].filespec, "main.ldf");
  ASSERT_EQ(main.dependencies.size(), 1u);
  EXPECT_EQ(main.dependencies[0].component_name, "config");
  ComponentInfo cfg = *e->GetComponent(1);
  ASSERT_EQ(cfg.files.size(), 1u);
  EXPECT_EQ(cfg.files[0].alternate_location, "alt/etc");
  EXPECT_EQ(e->GetRestoreMethod().method, VSS_RME_STOP_RESTORE_START);
  EXPECT_EQ(e->GetRestoreMethod().service, "sqlsvc");
  EXPECT_TRUE(e->GetRestoreMethod().reboot_required);
  EXPECT_EQ(e->GetAlternateLocationMapping(0)->alternate_location, "vol2/db");
  EXPECT_EQ(e->GetBackupSchema(), VSS_BS_DIFFERENTIAL | VSS_BS_LOG);
  EXPECT_EQ(e->SaveAsJson(), json);
}

TEST(WriterMetadata, BadCallsAreRefused) {
  CreateWriterMetadata md({Guid::Generate(), Guid::Generate(), "w", "", VSS_UT_OTHER, VSS_ST_OTHER});
  EXPECT_EQ(md.AddFilesToFileGroup("x", "nope", "p", "*", false).code(), VSS_E_OBJECT_NOT_FOUND);
  ASSERT_TRUE(md.AddComponent(VSS_CT_FILEGROUP, "x", "files").ok());
  EXPECT_EQ(md.AddComponent(VSS_CT_FILEGROUP, "x", "files").code(), VSS_E_OBJECT_ALREADY_EXISTS);
  EXPECT_EQ(md.AddDatabaseFiles("x", "files", "p", "*").code(), E_INVALIDARG);
  EXPECT_EQ(md.AddComponent(VSS_CT_UNDEFINED, "x", "y").code(), E_INVALIDARG);
  EXPECT_EQ(md.AddComponentDependency("x", "none", Guid(), "a", "b").code(), VSS_E_OBJECT_NOT_FOUND);
}

TEST(WriterMetadata, DamagedJsonIsCorruptAndWrongShapeIsInvalid) {
  EXPECT_EQ(ExamineWriterMetadata::LoadFromJson("{\"version\": 1,").status().code(), VSS_E_CORRUPT_XML_DOCUMENT);
  EXPECT_EQ(ExamineWriterMetadata::LoadFromJson("[1,2]").status().code(), VSS_E_INVALID_XML_DOCUMENT);
  EXPECT_EQ(ExamineWriterMetadata::LoadFromJson("{\"version\": 1}").status().code(), VSS_E_INVALID_XML_DOCUMENT);
  std::string json = WriterMetadataToJson(SampleMetadata());
  std::string v2 = json;
  v2.replace(v2.find("\"version\": 1"), 12, "\"version\": 2");
  EXPECT_EQ(ExamineWriterMetadata::LoadFromJson(v2).status().code(), VSS_E_INVALID_XML_DOCUMENT);
  std::string badguid = json;
  size_t at = badguid.find("\"writer_id\": \"") + 14;
  badguid.replace(at, 8, "zzzzzzzz");
  EXPECT_EQ(ExamineWriterMetadata::LoadFromJson(badguid).status().code(), VSS_E_INVALID_XML_DOCUMENT);
}

BackupComponentsDocument SampleBcd() {
  BackupComponentsDocument d;
  d.context = VSS_CTX_APP_ROLLBACK;
  d.backup_type = VSS_BT_INCREMENTAL;
  d.select_components = true;
  d.partial_file_support = true;
  d.snapshot_set_id = Guid::Generate();
  WriterComponents w(Guid::Generate(), Guid::Generate());
  Component c("apps", "db \"quoted\" \u00e9", VSS_CT_DATABASE);
  c.SetBackupSucceeded(true);
  c.SetBackupStamp("lsn:42");
  c.SetPreviousBackupStamp("lsn:7");
  c.SetBackupOptions("opt");
  c.SetRestoreOptions("ropt");
  c.SetSelectedForRestore(true);
  c.SetRestoreTarget(VSS_RT_ALTERNATE);
  c.SetFileRestoreStatus(VSS_RS_ALL);
  c.SetBackupMetadata("bm\nline2");
  c.SetRestoreMetadata("rm");
  c.SetFailure({VSS_E_WRITERERROR_RETRYABLE, MakeHResult(0x80004005), "partial"});
  w.components().push_back(c);
  w.components().emplace_back("", "plain", VSS_CT_FILEGROUP);
  d.writers.push_back(w);
  d.writers.emplace_back(Guid::Generate(), Guid::Generate());
  return d;
}

TEST(BackupComponentsDocument, SaveLoadSaveIsByteIdentical) {
  BackupComponentsDocument d = SampleBcd();
  std::string first = BackupComponentsToJson(d);
  VssStatusOr<BackupComponentsDocument> loaded = BackupComponentsFromJson(first);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(BackupComponentsToJson(*loaded), first);
  ASSERT_EQ(loaded->writers.size(), 2u);
  EXPECT_EQ(loaded->writers[0], d.writers[0]);
  const Component* c = loaded->writers[0].GetComponent(0);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->GetFailure().hr, VSS_E_WRITERERROR_RETRYABLE);
  EXPECT_EQ(c->GetBackupMetadata(), "bm\nline2");
  EXPECT_EQ(loaded->snapshot_set_id, d.snapshot_set_id);
}

TEST(BackupComponentsDocument, DamagedOrMisshapenIsRefused) {
  EXPECT_EQ(BackupComponentsFromJson("not json").status().code(), VSS_E_CORRUPT_XML_DOCUMENT);
  EXPECT_EQ(BackupComponentsFromJson("{\"version\":1,\"context\":\"x\"}").status().code(),
            VSS_E_INVALID_XML_DOCUMENT);
  EXPECT_EQ(BackupComponentsFromJson("{}").status().code(), VSS_E_INVALID_XML_DOCUMENT);
}

TEST(Async, FinishedAndCancelled) {
  auto done = Async::Finished(VssStatus::Ok());
  EXPECT_EQ(done->QueryStatus(), VSS_S_ASYNC_FINISHED);
  EXPECT_EQ(done->Cancel(), VSS_S_ASYNC_FINISHED);
  std::atomic<bool> go{false};
  auto a = Async::Start([&](const CancelToken& t) {
    while (!t.cancelled() && !go.load()) std::this_thread::yield();
    return t.cancelled() ? VssStatus(VSS_S_ASYNC_CANCELLED, "") : VssStatus::Ok();
  });
  EXPECT_EQ(a->Wait(10), VSS_S_ASYNC_PENDING);
  EXPECT_EQ(a->Cancel(), S_OK);
  EXPECT_EQ(a->Wait(), VSS_S_ASYNC_CANCELLED);
  auto f = Async::Start([](const CancelToken&) { return VssError(VSS_E_PROVIDER_VETO, "no"); });
  EXPECT_EQ(f->Wait(), VSS_E_PROVIDER_VETO);
  EXPECT_EQ(f->Result().message(), "no");
}

}  // namespace
}  // namespace vss
