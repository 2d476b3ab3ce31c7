#include "vss/api/writer_metadata.h"

#include "json_util.h"

namespace vss {
namespace {

using internal::EnumFromJson;
using internal::GuidFromJson;
using internal::IntFromJson;
using internal::GuidToJson;
using internal::Json;

Json FileToJson(const FileDescriptor& f) {
  return Json{{"path", f.path},
              {"filespec", f.filespec},
              {"recursive", f.recursive},
              {"alternate_location", f.alternate_location},
              {"backup_type_mask", f.backup_type_mask}};
}

FileDescriptor FileFromJson(const Json& j) {
  FileDescriptor f;
  f.path = j.at("path").get<std::string>();
  f.filespec = j.at("filespec").get<std::string>();
  f.recursive = j.at("recursive").get<bool>();
  f.alternate_location = j.at("alternate_location").get<std::string>();
  f.backup_type_mask = IntFromJson<int32_t>(j.at("backup_type_mask"));
  return f;
}

Json FilesToJson(const std::vector<FileDescriptor>& v) {
  Json a = Json::array();
  for (const auto& f : v) a.push_back(FileToJson(f));
  return a;
}

std::vector<FileDescriptor> FilesFromJson(const Json& j) {
  std::vector<FileDescriptor> v;
  for (const auto& e : j) v.push_back(FileFromJson(e));
  return v;
}

Json ComponentToJson(const ComponentInfo& c) {
  Json deps = Json::array();
  for (const auto& d : c.dependencies) {
    deps.push_back({{"writer_id", GuidToJson(d.writer_id)},
                    {"logical_path", d.logical_path},
                    {"component_name", d.component_name}});
  }
  return Json{{"type", c.type},
              {"logical_path", c.logical_path},
              {"name", c.component_name},
              {"caption", c.caption},
              {"icon", c.icon},
              {"restore_metadata", c.restore_metadata},
              {"notify_on_backup_complete", c.notify_on_backup_complete},
              {"selectable", c.selectable},
              {"selectable_for_restore", c.selectable_for_restore},
              {"flags", c.component_flags},
              {"files", FilesToJson(c.files)},
              {"databases", FilesToJson(c.databases)},
              {"log_files", FilesToJson(c.log_files)},
              {"dependencies", deps}};
}

ComponentInfo ComponentFromJson(const Json& j) {
  ComponentInfo c;
  c.type = EnumFromJson<VSS_COMPONENT_TYPE>(j.at("type"));
  c.logical_path = j.at("logical_path").get<std::string>();
  c.component_name = j.at("name").get<std::string>();
  c.caption = j.at("caption").get<std::string>();
  c.icon = j.at("icon").get<std::string>();
  c.restore_metadata = j.at("restore_metadata").get<bool>();
  c.notify_on_backup_complete = j.at("notify_on_backup_complete").get<bool>();
  c.selectable = j.at("selectable").get<bool>();
  c.selectable_for_restore = j.at("selectable_for_restore").get<bool>();
  c.component_flags = IntFromJson<int32_t>(j.at("flags"));
  c.files = FilesFromJson(j.at("files"));
  c.databases = FilesFromJson(j.at("databases"));
  c.log_files = FilesFromJson(j.at("log_files"));
  for (const auto& d : j.at("dependencies")) {
    c.dependencies.push_back({GuidFromJson(d.at("writer_id")),
                              d.at("logical_path").get<std::string>(),
                              d.at("component_name").get<std::string>()});
  }
  return c;
}

template <typename T>
VssStatusOr<T> At(const std::vector<T>& v, size_t i, const char* what) {
  if (i >= v.size()) {
    return VssError(E_INVALIDARG, std::string(what) + " index " + std::to_string(i) +
                                      " out of range (count " + std::to_string(v.size()) + ")");
  }
  return v[i];
}

}  // namespace

std::string WriterMetadataToJson(const WriterMetadataDocument& d) {
  Json j;
  j["version"] = kWriterMetadataVersion;
  j["identity"] = {{"instance_id", GuidToJson(d.identity.instance_id)},
                   {"writer_id", GuidToJson(d.identity.writer_id)},
                   {"name", d.identity.name},
                   {"instance_name", d.identity.instance_name},
                   {"usage", d.identity.usage},
                   {"source", d.identity.source}};
  j["include_files"] = FilesToJson(d.include_files);
  j["exclude_files"] = FilesToJson(d.exclude_files);
  Json comps = Json::array();
  for (const auto& c : d.components) comps.push_back(ComponentToJson(c));
  j["components"] = comps;
  j["restore_method"] = {{"method", d.restore_method.method},
                         {"service", d.restore_method.service},
                         {"user_procedure", d.restore_method.user_procedure},
                         {"writer_restore", d.restore_method.writer_restore},
                         {"reboot_required", d.restore_method.reboot_required}};
  j["alternate_location_mappings"] = FilesToJson(d.alternate_location_mappings);
  j["backup_schema"] = d.backup_schema;
  return j.dump(2);
}

VssStatusOr<WriterMetadataDocument> WriterMetadataFromJson(const std::string& text) {
  WriterMetadataDocument d;
  VssStatus s = internal::ParseDocument(
      text, "writer metadata document", kWriterMetadataVersion, [&](const Json& j) {
        const Json& id = j.at("identity");
        d.identity.instance_id = GuidFromJson(id.at("instance_id"));
        d.identity.writer_id = GuidFromJson(id.at("writer_id"));
        d.identity.name = id.at("name").get<std::string>();
        d.identity.instance_name = id.at("instance_name").get<std::string>();
        d.identity.usage = EnumFromJson<VSS_USAGE_TYPE>(id.at("usage"));
        d.identity.source = EnumFromJson<VSS_SOURCE_TYPE>(id.at("source"));
        d.include_files = FilesFromJson(j.at("include_files"));
        d.exclude_files = FilesFromJson(j.at("exclude_files"));
        for (const auto& c : j.at("components")) d.components.push_back(ComponentFromJson(c));
        const Json& rm = j.at("restore_method");
        d.restore_method.method = EnumFromJson<VSS_RESTOREMETHOD_ENUM>(rm.at("method"));
        d.restore_method.service = rm.at("service").get<std::string>();
        d.restore_method.user_procedure = rm.at("user_procedure").get<std::string>();
        d.restore_method.writer_restore =
            EnumFromJson<VSS_WRITERRESTORE_ENUM>(rm.at("writer_restore"));
        d.restore_method.reboot_required = rm.at("reboot_required").get<bool>();
        d.alternate_location_mappings = FilesFromJson(j.at("alternate_location_mappings"));
        d.backup_schema = IntFromJson<int32_t>(j.at("backup_schema"));
      });
  if (!s.ok()) return s;
  return d;
}

// --- CreateWriterMetadata ---

ComponentInfo* CreateWriterMetadata::Find(const std::string& logical_path,
                                          const std::string& name) {
  for (auto& c : doc_.components) {
    if (c.logical_path == logical_path && c.component_name == name) return &c;
  }
  return nullptr;
}

VssStatus CreateWriterMetadata::AddIncludeFiles(const std::string& path,
                                                const std::string& filespec,
                                                bool recursive,
                                                const std::string& alternate_location) {
  if (path.empty() || filespec.empty()) return VssError(E_INVALIDARG, "empty path or filespec");
  doc_.include_files.push_back({path, filespec, recursive, alternate_location});
  return VssStatus::Ok();
}

VssStatus CreateWriterMetadata::AddExcludeFiles(const std::string& path,
                                                const std::string& filespec,
                                                bool recursive) {
  if (path.empty() || filespec.empty()) return VssError(E_INVALIDARG, "empty path or filespec");
  doc_.exclude_files.push_back({path, filespec, recursive, ""});
  return VssStatus::Ok();
}

VssStatus CreateWriterMetadata::AddComponent(const ComponentInfo& component) {
  if (component.component_name.empty()) {
    return VssError(E_INVALIDARG, "component name is empty");
  }
  if (component.type != VSS_CT_DATABASE && component.type != VSS_CT_FILEGROUP) {
    return VssError(E_INVALIDARG, "component type must be DATABASE or FILEGROUP");
  }
  if (Find(component.logical_path, component.component_name) != nullptr) {
    return VssError(VSS_E_OBJECT_ALREADY_EXISTS,
                    "component " + component.logical_path + "\\" +
                        component.component_name + " already exists");
  }
  doc_.components.push_back(component);
  return VssStatus::Ok();
}

VssStatus CreateWriterMetadata::AddComponent(VSS_COMPONENT_TYPE type,
                                             const std::string& logical_path,
                                             const std::string& name,
                                             const std::string& caption,
                                             bool notify_on_backup_complete,
                                             bool selectable) {
  ComponentInfo c;
  c.type = type;
  c.logical_path = logical_path;
  c.component_name = name;
  c.caption = caption;
  c.notify_on_backup_complete = notify_on_backup_complete;
  c.selectable = selectable;
  return AddComponent(c);
}

namespace {
VssStatus NoComponent(const std::string& lp, const std::string& name) {
  return VssError(VSS_E_OBJECT_NOT_FOUND, "no component " + lp + "\\" + name);
}
}  // namespace

VssStatus CreateWriterMetadata::AddDatabaseFiles(const std::string& logical_path,
                                                 const std::string& database_name,
                                                 const std::string& path,
                                                 const std::string& filespec,
                                                 int32_t mask) {
  ComponentInfo* c = Find(logical_path, database_name);
  if (c == nullptr) return NoComponent(logical_path, database_name);
  if (c->type != VSS_CT_DATABASE) return VssError(E_INVALIDARG, database_name + " is not a database");
  c->databases.push_back({path, filespec, false, "", mask});
  return VssStatus::Ok();
}

VssStatus CreateWriterMetadata::AddDatabaseLogFiles(const std::string& logical_path,
                                                    const std::string& database_name,
                                                    const std::string& path,
                                                    const std::string& filespec,
                                                    int32_t mask) {
  ComponentInfo* c = Find(logical_path, database_name);
  if (c == nullptr) return NoComponent(logical_path, database_name);
  if (c->type != VSS_CT_DATABASE) return VssError(E_INVALIDARG, database_name + " is not a database");
  c->log_files.push_back({path, filespec, false, "", mask});
  return VssStatus::Ok();
}

VssStatus CreateWriterMetadata::AddFilesToFileGroup(const std::string& logical_path,
                                                    const std::string& group_name,
                                                    const std::string& path,
                                                    const std::string& filespec,
                                                    bool recursive,
                                                    const std::string& alternate_location,
                                                    int32_t mask) {
  ComponentInfo* c = Find(logical_path, group_name);
  if (c == nullptr) return NoComponent(logical_path, group_name);
  if (c->type != VSS_CT_FILEGROUP) return VssError(E_INVALIDARG, group_name + " is not a file group");
  c->files.push_back({path, filespec, recursive, alternate_location, mask});
  return VssStatus::Ok();
}

VssStatus CreateWriterMetadata::SetRestoreMethod(const RestoreMethod& method) {
  doc_.restore_method = method;
  return VssStatus::Ok();
}

VssStatus CreateWriterMetadata::AddAlternateLocationMapping(const std::string& source_path,
                                                            const std::string& source_filespec,
                                                            bool recursive,
                                                            const std::string& destination) {
  doc_.alternate_location_mappings.push_back(
      {source_path, source_filespec, recursive, destination});
  return VssStatus::Ok();
}

VssStatus CreateWriterMetadata::AddComponentDependency(const std::string& for_logical_path,
                                                       const std::string& for_name,
                                                       const Guid& on_writer_id,
                                                       const std::string& on_logical_path,
                                                       const std::string& on_name) {
  ComponentInfo* c = Find(for_logical_path, for_name);
  if (c == nullptr) return NoComponent(for_logical_path, for_name);
  c->dependencies.push_back({on_writer_id, on_logical_path, on_name});
  return VssStatus::Ok();
}

VssStatus CreateWriterMetadata::SetBackupSchema(int32_t schema_mask) {
  doc_.backup_schema = schema_mask;
  return VssStatus::Ok();
}

// --- ExamineWriterMetadata ---

VssStatusOr<ExamineWriterMetadata> ExamineWriterMetadata::LoadFromJson(const std::string& text) {
  VssStatusOr<WriterMetadataDocument> d = WriterMetadataFromJson(text);
  if (!d.ok()) return d.status();
  return ExamineWriterMetadata(std::move(d).value());
}

ExamineWriterMetadata::FileCounts ExamineWriterMetadata::GetFileCounts() const {
  return {doc_.include_files.size(), doc_.exclude_files.size(), doc_.components.size()};
}

VssStatusOr<FileDescriptor> ExamineWriterMetadata::GetIncludeFile(size_t i) const {
  return At(doc_.include_files, i, "include file");
}
VssStatusOr<FileDescriptor> ExamineWriterMetadata::GetExcludeFile(size_t i) const {
  return At(doc_.exclude_files, i, "exclude file");
}
VssStatusOr<ComponentInfo> ExamineWriterMetadata::GetComponent(size_t i) const {
  return At(doc_.components, i, "component");
}
VssStatusOr<FileDescriptor> ExamineWriterMetadata::GetAlternateLocationMapping(size_t i) const {
  return At(doc_.alternate_location_mappings, i, "alternate location mapping");
}

}  // namespace vss
