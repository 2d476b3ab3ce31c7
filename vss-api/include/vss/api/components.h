// The Backup Components Document (BCD): the requester's record of a backup
// (IVssComponent, IVssWriterComponents, and the document SaveAsXML writes).
//
// A Component is one selected writer component with what the requester and
// the writer recorded about it (backup succeeded, backup stamps, options,
// metadata, restore selection and status, failure). WriterComponents is one
// writer's components; writers get theirs in OnPrepareBackup,
// OnPostSnapshot, OnBackupComplete, OnPreRestore and OnPostRestore and may
// change what VSS lets a writer change (backup stamp, backup metadata,
// restore metadata, failure); the coordinator copies it back into the BCD.
//
// JSON form (version 1), keys in a fixed order so that save -> load -> save
// gives identical bytes:
//   {"version":1, "context":N, "backup_type":N, "restore_type":N,
//    "select_components":b, "bootable_system_state":b,
//    "partial_file_support":b, "snapshot_set_id":"guid"|"",
//    "writers":[{"instance_id", "writer_id", "components":[{logical_path,
//    name, type, backup_succeeded, backup_stamp, previous_backup_stamp,
//    backup_options, restore_options, selected_for_restore, restore_target,
//    file_restore_status, backup_metadata, restore_metadata, failure:{hr,
//    application_hr, message}}]}]}
// Not JSON -> VSS_E_CORRUPT_XML_DOCUMENT; wrong shape or version ->
// VSS_E_INVALID_XML_DOCUMENT.
//
// Thread safety: values; one thread at a time per object.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vss/api/hresult.h"
#include "vss/api/types.h"
#include "vss/base/guid.h"

namespace vss {

inline constexpr int kBackupComponentsVersion = 1;

struct ComponentFailure {
  HResult hr = S_OK;
  HResult application_hr = S_OK;
  std::string message;
  friend bool operator==(const ComponentFailure&, const ComponentFailure&) = default;
};

// IVssComponent (Ex, Ex2) as data with the VSS accessors.
class Component {
 public:
  Component() = default;
  Component(std::string logical_path, std::string name, VSS_COMPONENT_TYPE type)
      : logical_path_(std::move(logical_path)), name_(std::move(name)), type_(type) {}

  const std::string& GetLogicalPath() const { return logical_path_; }
  const std::string& GetComponentName() const { return name_; }
  VSS_COMPONENT_TYPE GetComponentType() const { return type_; }
  bool GetBackupSucceeded() const { return backup_succeeded_; }
  const std::string& GetBackupStamp() const { return backup_stamp_; }
  const std::string& GetPreviousBackupStamp() const { return previous_backup_stamp_; }
  const std::string& GetBackupOptions() const { return backup_options_; }
  const std::string& GetRestoreOptions() const { return restore_options_; }
  bool IsSelectedForRestore() const { return selected_for_restore_; }
  VSS_RESTORE_TARGET GetRestoreTarget() const { return restore_target_; }
  VSS_FILE_RESTORE_STATUS GetFileRestoreStatus() const { return file_restore_status_; }
  const std::string& GetBackupMetadata() const { return backup_metadata_; }
  const std::string& GetRestoreMetadata() const { return restore_metadata_; }
  const ComponentFailure& GetFailure() const { return failure_; }

  // Writer-side setters (in its handlers).
  void SetBackupStamp(std::string s) { backup_stamp_ = std::move(s); }
  void SetBackupMetadata(std::string s) { backup_metadata_ = std::move(s); }
  void SetRestoreMetadata(std::string s) { restore_metadata_ = std::move(s); }
  void SetRestoreTarget(VSS_RESTORE_TARGET t) { restore_target_ = t; }
  void SetFailure(ComponentFailure f) { failure_ = std::move(f); }

  // Requester-side setters (through BackupComponents).
  void SetBackupSucceeded(bool b) { backup_succeeded_ = b; }
  void SetPreviousBackupStamp(std::string s) { previous_backup_stamp_ = std::move(s); }
  void SetBackupOptions(std::string s) { backup_options_ = std::move(s); }
  void SetRestoreOptions(std::string s) { restore_options_ = std::move(s); }
  void SetSelectedForRestore(bool b) { selected_for_restore_ = b; }
  void SetFileRestoreStatus(VSS_FILE_RESTORE_STATUS s) { file_restore_status_ = s; }

  friend bool operator==(const Component&, const Component&) = default;

 private:
  friend struct ComponentJson;
  std::string logical_path_;
  std::string name_;
  VSS_COMPONENT_TYPE type_ = VSS_CT_UNDEFINED;
  bool backup_succeeded_ = false;
  std::string backup_stamp_;
  std::string previous_backup_stamp_;
  std::string backup_options_;
  std::string restore_options_;
  bool selected_for_restore_ = false;
  VSS_RESTORE_TARGET restore_target_ = VSS_RT_UNDEFINED;
  VSS_FILE_RESTORE_STATUS file_restore_status_ = VSS_RS_UNDEFINED;
  std::string backup_metadata_;
  std::string restore_metadata_;
  ComponentFailure failure_;
};

// IVssWriterComponents: one writer's components in the BCD.
class WriterComponents {
 public:
  WriterComponents() = default;
  WriterComponents(Guid instance_id, Guid writer_id)
      : instance_id_(instance_id), writer_id_(writer_id) {}

  size_t GetComponentCount() const { return components_.size(); }
  struct WriterInfo {
    Guid instance_id;
    Guid writer_id;
  };
  WriterInfo GetWriterInfo() const { return {instance_id_, writer_id_}; }
  // nullptr if i is out of range.
  Component* GetComponent(size_t i) { return i < components_.size() ? &components_[i] : nullptr; }
  const Component* GetComponent(size_t i) const {
    return i < components_.size() ? &components_[i] : nullptr;
  }
  // nullptr if absent.
  Component* Find(const std::string& logical_path, const std::string& name);

  std::vector<Component>& components() { return components_; }
  const std::vector<Component>& components() const { return components_; }

  friend bool operator==(const WriterComponents&, const WriterComponents&) = default;

 private:
  Guid instance_id_;
  Guid writer_id_;
  std::vector<Component> components_;
};

// The whole BCD.
struct BackupComponentsDocument {
  int32_t context = VSS_CTX_BACKUP;
  VSS_BACKUP_TYPE backup_type = VSS_BT_FULL;
  VSS_RESTORE_TYPE restore_type = VSS_RTYPE_UNDEFINED;
  bool select_components = false;
  bool bootable_system_state = false;
  bool partial_file_support = false;
  Guid snapshot_set_id;  // null until a set was created
  std::vector<WriterComponents> writers;

  // The writer's entry, by writer class id; nullptr if absent.
  WriterComponents* FindWriter(const Guid& writer_id);
};

std::string BackupComponentsToJson(const BackupComponentsDocument& doc);
VssStatusOr<BackupComponentsDocument> BackupComponentsFromJson(const std::string& text);

}  // namespace vss
