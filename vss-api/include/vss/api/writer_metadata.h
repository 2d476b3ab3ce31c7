// The Writer Metadata Document (WMD): a writer's description of itself and
// its data, made in OnIdentify through CreateWriterMetadata and read by the
// requester through ExamineWriterMetadata (IVssCreateWriterMetadata and
// IVssExamineWriterMetadata).
//
// The document is plain data (WriterMetadataDocument); its JSON form (see
// SaveAsJson) is what VSS keeps as XML:
//   {"version":1, "identity":{instance_id, writer_id, name, instance_name,
//    usage, source}, "include_files":[filedesc], "exclude_files":[filedesc],
//    "components":[{type, logical_path, name, caption, icon,
//    restore_metadata, notify_on_backup_complete, selectable,
//    selectable_for_restore, flags, files, databases, log_files,
//    dependencies:[{writer_id, logical_path, component_name}]}],
//    "restore_method":{method, service, user_procedure, writer_restore,
//    reboot_required}, "alternate_location_mappings":[filedesc],
//    "backup_schema":N}
// with filedesc = {path, filespec, recursive, alternate_location,
// backup_type_mask}. Enumerations are stored as their VSS numbers.
// Loading: text that is not JSON -> VSS_E_CORRUPT_XML_DOCUMENT; JSON of the
// wrong shape or version -> VSS_E_INVALID_XML_DOCUMENT.
//
// Thread safety: values; one thread at a time per object.
#pragma once

#include <string>
#include <vector>

#include "vss/api/hresult.h"
#include "vss/api/types.h"
#include "vss/base/guid.h"

namespace vss {

inline constexpr int kWriterMetadataVersion = 1;

struct WriterIdentity {
  Guid instance_id;
  Guid writer_id;  // the writer class id
  std::string name;
  std::string instance_name;
  VSS_USAGE_TYPE usage = VSS_UT_UNDEFINED;
  VSS_SOURCE_TYPE source = VSS_ST_UNDEFINED;
};

// IVssWMFiledesc.
struct FileDescriptor {
  std::string path;
  std::string filespec;
  bool recursive = false;
  std::string alternate_location;
  int32_t backup_type_mask =
      VSS_FSBT_ALL_BACKUP_REQUIRED | VSS_FSBT_ALL_SNAPSHOT_REQUIRED;
};

// IVssWMDependency.
struct ComponentDependency {
  Guid writer_id;
  std::string logical_path;
  std::string component_name;
};

// VSS_COMPONENTINFO with the file lists of IVssWMComponent.
struct ComponentInfo {
  VSS_COMPONENT_TYPE type = VSS_CT_UNDEFINED;
  std::string logical_path;
  std::string component_name;
  std::string caption;
  std::string icon;  // opaque bytes
  bool restore_metadata = false;
  bool notify_on_backup_complete = false;
  bool selectable = true;
  bool selectable_for_restore = false;
  int32_t component_flags = 0;
  std::vector<FileDescriptor> files;      // file group files
  std::vector<FileDescriptor> databases;  // database files
  std::vector<FileDescriptor> log_files;  // database log files
  std::vector<ComponentDependency> dependencies;
};

struct RestoreMethod {
  VSS_RESTOREMETHOD_ENUM method = VSS_RME_UNDEFINED;
  std::string service;
  std::string user_procedure;
  VSS_WRITERRESTORE_ENUM writer_restore = VSS_WRE_UNDEFINED;
  bool reboot_required = false;
};

struct WriterMetadataDocument {
  WriterIdentity identity;
  std::vector<FileDescriptor> include_files;
  std::vector<FileDescriptor> exclude_files;
  std::vector<ComponentInfo> components;
  RestoreMethod restore_method;
  std::vector<FileDescriptor> alternate_location_mappings;
  int32_t backup_schema = VSS_BS_UNDEFINED;
};

// The JSON text of a document (stable: same document, same bytes).
std::string WriterMetadataToJson(const WriterMetadataDocument& doc);
VssStatusOr<WriterMetadataDocument> WriterMetadataFromJson(const std::string& text);

// The writer's side (IVssCreateWriterMetadata), handed to OnIdentify.
class CreateWriterMetadata {
 public:
  explicit CreateWriterMetadata(WriterIdentity identity) {
    doc_.identity = std::move(identity);
  }

  VssStatus AddIncludeFiles(const std::string& path, const std::string& filespec,
                            bool recursive, const std::string& alternate_location = "");
  VssStatus AddExcludeFiles(const std::string& path, const std::string& filespec,
                            bool recursive);
  // VSS_E_OBJECT_ALREADY_EXISTS if (logical path, name) is taken;
  // E_INVALIDARG for an empty name or an undefined type.
  VssStatus AddComponent(const ComponentInfo& component);
  // Shorthand for AddComponent with the usual arguments.
  VssStatus AddComponent(VSS_COMPONENT_TYPE type, const std::string& logical_path,
                         const std::string& name, const std::string& caption = "",
                         bool notify_on_backup_complete = false,
                         bool selectable = true);
  // Database files and logs of a DATABASE component; VSS_E_OBJECT_NOT_FOUND
  // for an unknown component, E_INVALIDARG if it is not a database.
  VssStatus AddDatabaseFiles(const std::string& logical_path,
                             const std::string& database_name,
                             const std::string& path, const std::string& filespec,
                             int32_t backup_type_mask = VSS_FSBT_ALL_BACKUP_REQUIRED |
                                                        VSS_FSBT_ALL_SNAPSHOT_REQUIRED);
  VssStatus AddDatabaseLogFiles(const std::string& logical_path,
                                const std::string& database_name,
                                const std::string& path, const std::string& filespec,
                                int32_t backup_type_mask = VSS_FSBT_ALL_BACKUP_REQUIRED |
                                                           VSS_FSBT_ALL_SNAPSHOT_REQUIRED);
  // Files of a FILEGROUP component; errors as AddDatabaseFiles.
  VssStatus AddFilesToFileGroup(const std::string& logical_path,
                                const std::string& group_name,
                                const std::string& path, const std::string& filespec,
                                bool recursive,
                                const std::string& alternate_location = "",
                                int32_t backup_type_mask = VSS_FSBT_ALL_BACKUP_REQUIRED |
                                                           VSS_FSBT_ALL_SNAPSHOT_REQUIRED);
  VssStatus SetRestoreMethod(const RestoreMethod& method);
  VssStatus AddAlternateLocationMapping(const std::string& source_path,
                                        const std::string& source_filespec,
                                        bool recursive,
                                        const std::string& destination);
  // VSS_E_OBJECT_NOT_FOUND if the dependent component is unknown.
  VssStatus AddComponentDependency(const std::string& for_logical_path,
                                   const std::string& for_component_name,
                                   const Guid& on_writer_id,
                                   const std::string& on_logical_path,
                                   const std::string& on_component_name);
  VssStatus SetBackupSchema(int32_t schema_mask);

  const WriterMetadataDocument& document() const { return doc_; }
  std::string SaveAsJson() const { return WriterMetadataToJson(doc_); }

 private:
  ComponentInfo* Find(const std::string& logical_path, const std::string& name);
  WriterMetadataDocument doc_;
};

// The requester's side (IVssExamineWriterMetadata).
class ExamineWriterMetadata {
 public:
  ExamineWriterMetadata() = default;
  explicit ExamineWriterMetadata(WriterMetadataDocument doc) : doc_(std::move(doc)) {}
  // CreateVssExamineWriterMetadata: errors as WriterMetadataFromJson.
  static VssStatusOr<ExamineWriterMetadata> LoadFromJson(const std::string& text);

  const WriterIdentity& GetIdentity() const { return doc_.identity; }
  struct FileCounts {
    size_t include_files = 0;
    size_t exclude_files = 0;
    size_t components = 0;
  };
  FileCounts GetFileCounts() const;
  // Index out of range -> E_INVALIDARG.
  VssStatusOr<FileDescriptor> GetIncludeFile(size_t i) const;
  VssStatusOr<FileDescriptor> GetExcludeFile(size_t i) const;
  VssStatusOr<ComponentInfo> GetComponent(size_t i) const;
  const RestoreMethod& GetRestoreMethod() const { return doc_.restore_method; }
  size_t GetAlternateLocationMappingCount() const {
    return doc_.alternate_location_mappings.size();
  }
  VssStatusOr<FileDescriptor> GetAlternateLocationMapping(size_t i) const;
  int32_t GetBackupSchema() const { return doc_.backup_schema; }

  const WriterMetadataDocument& document() const { return doc_; }
  std::string SaveAsJson() const { return WriterMetadataToJson(doc_); }

 private:
  WriterMetadataDocument doc_;
};

}  // namespace vss
