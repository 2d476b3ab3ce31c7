#include "vss/api/components.h"

#include "json_util.h"

namespace vss {

using internal::EnumFromJson;
using internal::GuidFromJson;
using internal::IntFromJson;
using internal::Json;

// Reads and writes Component's private fields.
struct ComponentJson {
  static Json To(const Component& c) {
    return Json{{"logical_path", c.logical_path_},
                {"name", c.name_},
                {"type", c.type_},
                {"backup_succeeded", c.backup_succeeded_},
                {"backup_stamp", c.backup_stamp_},
                {"previous_backup_stamp", c.previous_backup_stamp_},
                {"backup_options", c.backup_options_},
                {"restore_options", c.restore_options_},
                {"selected_for_restore", c.selected_for_restore_},
                {"restore_target", c.restore_target_},
                {"file_restore_status", c.file_restore_status_},
                {"backup_metadata", c.backup_metadata_},
                {"restore_metadata", c.restore_metadata_},
                {"failure",
                 {{"hr", c.failure_.hr},
                  {"application_hr", c.failure_.application_hr},
                  {"message", c.failure_.message}}}};
  }
  static Component From(const Json& j) {
    Component c;
    c.logical_path_ = j.at("logical_path").get<std::string>();
    c.name_ = j.at("name").get<std::string>();
    c.type_ = EnumFromJson<VSS_COMPONENT_TYPE>(j.at("type"));
    c.backup_succeeded_ = j.at("backup_succeeded").get<bool>();
    c.backup_stamp_ = j.at("backup_stamp").get<std::string>();
    c.previous_backup_stamp_ = j.at("previous_backup_stamp").get<std::string>();
    c.backup_options_ = j.at("backup_options").get<std::string>();
    c.restore_options_ = j.at("restore_options").get<std::string>();
    c.selected_for_restore_ = j.at("selected_for_restore").get<bool>();
    c.restore_target_ = EnumFromJson<VSS_RESTORE_TARGET>(j.at("restore_target"));
    c.file_restore_status_ = EnumFromJson<VSS_FILE_RESTORE_STATUS>(j.at("file_restore_status"));
    c.backup_metadata_ = j.at("backup_metadata").get<std::string>();
    c.restore_metadata_ = j.at("restore_metadata").get<std::string>();
    const Json& f = j.at("failure");
    c.failure_.hr = IntFromJson<int32_t>(f.at("hr"));
    c.failure_.application_hr = IntFromJson<int32_t>(f.at("application_hr"));
    c.failure_.message = f.at("message").get<std::string>();
    return c;
  }
};

Component* WriterComponents::Find(const std::string& logical_path, const std::string& name) {
  for (auto& c : components_) {
    if (c.GetLogicalPath() == logical_path && c.GetComponentName() == name) return &c;
  }
  return nullptr;
}

WriterComponents* BackupComponentsDocument::FindWriter(const Guid& writer_id) {
  for (auto& w : writers) {
    if (w.GetWriterInfo().writer_id == writer_id) return &w;
  }
  return nullptr;
}

std::string BackupComponentsToJson(const BackupComponentsDocument& d) {
  Json j;
  j["version"] = kBackupComponentsVersion;
  j["context"] = d.context;
  j["backup_type"] = d.backup_type;
  j["restore_type"] = d.restore_type;
  j["select_components"] = d.select_components;
  j["bootable_system_state"] = d.bootable_system_state;
  j["partial_file_support"] = d.partial_file_support;
  j["snapshot_set_id"] = d.snapshot_set_id.IsNull() ? "" : d.snapshot_set_id.ToString();
  Json ws = Json::array();
  for (const auto& w : d.writers) {
    Json cs = Json::array();
    for (const auto& c : w.components()) cs.push_back(ComponentJson::To(c));
    ws.push_back({{"instance_id", w.GetWriterInfo().instance_id.ToString()},
                  {"writer_id", w.GetWriterInfo().writer_id.ToString()},
                  {"components", cs}});
  }
  j["writers"] = ws;
  return j.dump(2);
}

VssStatusOr<BackupComponentsDocument> BackupComponentsFromJson(const std::string& text) {
  BackupComponentsDocument d;
  VssStatus s = internal::ParseDocument(
      text, "backup components document", kBackupComponentsVersion, [&](const Json& j) {
        d.context = IntFromJson<int32_t>(j.at("context"));
        d.backup_type = EnumFromJson<VSS_BACKUP_TYPE>(j.at("backup_type"));
        d.restore_type = EnumFromJson<VSS_RESTORE_TYPE>(j.at("restore_type"));
        d.select_components = j.at("select_components").get<bool>();
        d.bootable_system_state = j.at("bootable_system_state").get<bool>();
        d.partial_file_support = j.at("partial_file_support").get<bool>();
        std::string set = j.at("snapshot_set_id").get<std::string>();
        if (!set.empty()) d.snapshot_set_id = GuidFromJson(set);
        for (const auto& w : j.at("writers")) {
          WriterComponents wc(GuidFromJson(w.at("instance_id")), GuidFromJson(w.at("writer_id")));
          for (const auto& c : w.at("components")) wc.components().push_back(ComponentJson::From(c));
          d.writers.push_back(std::move(wc));
        }
      });
  if (!s.ok()) return s;
  return d;
}

}  // namespace vss
