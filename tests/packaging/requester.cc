// file: requester.cc
// A small VSS requester: a full backup of one volume whose backup components
// document is saved to a file, and a restore from that file.
//
//   requester backup STORE VOLUME BACKUP.json
//   requester restore STORE BACKUP.json
//
// It reaches VSS through vssd when vssd serves STORE, else in this process.
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <vss/vss.h>

namespace {

// True if `s` succeeded; otherwise prints what failed and returns false.
bool Check(const vss::VssStatus& s, const std::string& what) {
  if (s.ok()) return true;
  std::cerr << "requester: " << what << ": " << s.ToString() << "\n";
  return false;
}

// Waits for an asynchronous call and checks that it finished.
bool Wait(const vss::VssStatusOr<std::shared_ptr<vss::Async>>& async, const std::string& what) {
  if (!Check(async.status(), what)) return false;
  (*async)->Wait();
  vss::VssStatus result = (*async)->Result();
  if (result.code() == vss::VSS_S_ASYNC_FINISHED) return true;
  std::cerr << "requester: " << what << ": " << result.ToString() << "\n";
  return false;
}

// Every component the backup components document holds, as keys.
std::vector<vss::ComponentKey> DocumentComponents(const vss::BackupComponents& bc) {
  std::vector<vss::ComponentKey> keys;
  for (size_t i = 0; i < bc.GetWriterComponentsCount(); ++i) {
    vss::VssStatusOr<vss::WriterComponents> wc = bc.GetWriterComponents(i);
    if (!wc.ok()) continue;
    for (const vss::Component& c : wc->components()) {
      keys.push_back({wc->GetWriterInfo().writer_id, c.GetComponentType(), c.GetLogicalPath(),
                      c.GetComponentName()});
    }
  }
  return keys;
}

int Backup(vss::Service& service, const std::string& volume, const std::string& file) {
  vss::VssStatusOr<std::unique_ptr<vss::BackupComponents>> created =
      service.CreateBackupComponents();
  if (!Check(created.status(), "CreateBackupComponents")) return 1;
  vss::BackupComponents& bc = **created;

  // A full backup that selects components (the default context,
  // VSS_CTX_BACKUP, makes shadows that go away with `bc`).
  if (!Check(bc.InitializeForBackup(), "InitializeForBackup") ||
      !Check(bc.SetBackupState(/*select_components=*/true, /*bootable_system_state=*/false,
                               vss::VSS_BT_FULL),
             "SetBackupState") ||
      !Wait(bc.GatherWriterMetadata(), "GatherWriterMetadata")) {
    return 1;
  }
  // Back up every component every writer reports.
  for (size_t i = 0; i < bc.GetWriterMetadataCount(); ++i) {
    vss::VssStatusOr<vss::ExamineWriterMetadata> metadata = bc.GetWriterMetadata(i);
    if (!Check(metadata.status(), "GetWriterMetadata")) return 1;
    const vss::WriterIdentity& writer = metadata->GetIdentity();
    std::cout << "writer " << writer.name << "\n";
    for (const vss::ComponentInfo& c : metadata->document().components) {
      std::cout << "  component " << c.logical_path << "/" << c.component_name << "\n";
      if (!Check(bc.AddComponent({writer.writer_id, c.type, c.logical_path, c.component_name}),
                 "AddComponent " + c.component_name)) {
        return 1;
      }
    }
  }

  vss::VssStatusOr<vss::Guid> set_id = bc.StartSnapshotSet();
  if (!Check(set_id.status(), "StartSnapshotSet")) return 1;
  vss::VssStatusOr<vss::Guid> shadow_id = bc.AddToSnapshotSet(volume);
  if (!Check(shadow_id.status(), "AddToSnapshotSet " + volume)) return 1;
  if (!Wait(bc.PrepareForBackup(), "PrepareForBackup")) return 1;
  if (!Wait(bc.DoSnapshotSet(), "DoSnapshotSet")) {
    bc.AbortBackup().IgnoreError();
    return 1;
  }

  vss::VssStatusOr<vss::SnapshotProp> shadow = bc.GetSnapshotProperties(*shadow_id);
  if (!Check(shadow.status(), "GetSnapshotProperties")) return 1;
  std::cout << "shadow " << shadow->snapshot_id.ToString() << " of " << shadow->original_volume_name
            << " in set " << set_id->ToString() << " at " << shadow->snapshot_device_object << "\n";

  // A real backup program copies the data from the shadow here, then tells
  // each writer which of its components it saved.
  for (const vss::ComponentKey& key : DocumentComponents(bc)) {
    if (!Check(bc.SetBackupSucceeded(key, true), "SetBackupSucceeded")) return 1;
  }
  if (!Wait(bc.BackupComplete(), "BackupComplete")) return 1;

  vss::VssStatusOr<std::string> document = bc.SaveAsJson();
  if (!Check(document.status(), "SaveAsJson")) return 1;
  std::ofstream out(file, std::ios::trunc);
  out << *document;
  out.close();
  if (!out) {
    std::cerr << "requester: cannot write " << file << "\n";
    return 1;
  }
  std::cout << "saved " << file << "\n";
  return 0;
}

int Restore(vss::Service& service, const std::string& file) {
  std::ifstream in(file);
  if (!in) {
    std::cerr << "requester: cannot read " << file << "\n";
    return 1;
  }
  std::stringstream document;
  document << in.rdbuf();

  vss::VssStatusOr<std::unique_ptr<vss::BackupComponents>> created =
      service.CreateBackupComponents();
  if (!Check(created.status(), "CreateBackupComponents")) return 1;
  vss::BackupComponents& bc = **created;
  if (!Check(bc.InitializeForRestore(document.str()), "InitializeForRestore " + file) ||
      !Wait(bc.GatherWriterMetadata(), "GatherWriterMetadata")) {
    return 1;
  }
  std::vector<vss::ComponentKey> components = DocumentComponents(bc);
  for (const vss::ComponentKey& key : components) {
    if (!Check(bc.SetSelectedForRestore(key, true), "SetSelectedForRestore")) return 1;
  }
  if (!Check(bc.SetRestoreState(vss::VSS_RTYPE_BY_COPY), "SetRestoreState") ||
      !Wait(bc.PreRestore(), "PreRestore")) {
    return 1;
  }
  // A real restore copies the saved files back here.
  for (const vss::ComponentKey& key : components) {
    if (!Check(bc.SetFileRestoreStatus(key, vss::VSS_RS_ALL), "SetFileRestoreStatus")) {
      return 1;
    }
  }
  if (!Wait(bc.PostRestore(), "PostRestore")) return 1;
  std::cout << "restored " << components.size() << " component(s) from " << file << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (!(mode == "backup" && argc == 5) && !(mode == "restore" && argc == 4)) {
    std::cerr << "usage: requester backup STORE VOLUME BACKUP.json\n"
                 "       requester restore STORE BACKUP.json\n";
    return 2;
  }
  vss::ServiceOptions options;
  options.store_dir = argv[2];
  vss::VssStatusOr<std::unique_ptr<vss::Service>> service = vss::Service::Connect(options);
  if (!Check(service.status(), "connect to store " + options.store_dir)) return 1;
  std::cout << "using " << (*service)->Describe() << "\n";
  return mode == "backup" ? Backup(**service, argv[3], argv[4]) : Restore(**service, argv[3]);
}
