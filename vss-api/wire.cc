#include "wire.h"

namespace vss::internal {
namespace {

Json IdentityToJson(const WriterIdentity& i) {
  return Json{{"instance_id", GuidToJson(i.instance_id)},
              {"writer_id", GuidToJson(i.writer_id)},
              {"name", i.name},
              {"instance_name", i.instance_name},
              {"usage", i.usage},
              {"source", i.source}};
}

WriterIdentity IdentityFromJson(const Json& j) {
  WriterIdentity i;
  i.instance_id = GuidFromJson(j.at("instance_id"));
  i.writer_id = GuidFromJson(j.at("writer_id"));
  i.name = j.at("name").get<std::string>();
  i.instance_name = j.at("instance_name").get<std::string>();
  i.usage = EnumFromJson<VSS_USAGE_TYPE>(j.at("usage"));
  i.source = EnumFromJson<VSS_SOURCE_TYPE>(j.at("source"));
  return i;
}

std::string OptionalGuid(const Guid& g) { return g.IsNull() ? "" : g.ToString(); }
Guid OptionalGuidFromJson(const Json& j) {
  return j.get<std::string>().empty() ? Guid() : GuidFromJson(j);
}

}  // namespace

Json ToJson(const WriterRegistration& r) {
  return Json{{"identity", IdentityToJson(r.identity)},
              {"level", r.level},
              {"freeze_timeout_ms", r.freeze_timeout_ms},
              {"event_flags", r.event_flags}};
}

WriterRegistration RegistrationFromJson(const Json& j) {
  WriterRegistration r;
  r.identity = IdentityFromJson(j.at("identity"));
  r.level = EnumFromJson<VSS_APPLICATION_LEVEL>(j.at("level"));
  r.freeze_timeout_ms = IntFromJson<uint32_t>(j.at("freeze_timeout_ms"));
  r.event_flags = IntFromJson<int32_t>(j.at("event_flags"));
  return r;
}

Json ToJson(const WriterEvent& e) {
  Json volumes = Json::array();
  for (const EventVolume& v : e.volumes) {
    volumes.push_back({{"name", v.name},
                       {"id", GuidToJson(v.id)},
                       {"path", v.path},
                       {"snapshot_device", v.snapshot_device}});
  }
  return Json{{"kind", static_cast<int>(e.kind)},
              {"session_id", GuidToJson(e.session_id)},
              {"snapshot_set_id", OptionalGuid(e.snapshot_set_id)},
              {"context", e.context},
              {"backup_type", e.backup_type},
              {"restore_type", e.restore_type},
              {"components_selected", e.components_selected},
              {"bootable_system_state", e.bootable_system_state},
              {"partial_file_support", e.partial_file_support},
              {"level", e.level},
              {"volumes", volumes},
              {"components", ToJson(e.components)}};
}

WriterEvent EventFromJson(const Json& j) {
  WriterEvent e;
  int kind = IntFromJson<int>(j.at("kind"));
  if (kind < 0 || kind > static_cast<int>(WriterEventKind::kPostRestore)) {
    throw ShapeError("unknown writer event " + std::to_string(kind));
  }
  e.kind = static_cast<WriterEventKind>(kind);
  e.session_id = GuidFromJson(j.at("session_id"));
  e.snapshot_set_id = OptionalGuidFromJson(j.at("snapshot_set_id"));
  e.context = IntFromJson<int32_t>(j.at("context"));
  e.backup_type = EnumFromJson<VSS_BACKUP_TYPE>(j.at("backup_type"));
  e.restore_type = EnumFromJson<VSS_RESTORE_TYPE>(j.at("restore_type"));
  e.components_selected = j.at("components_selected").get<bool>();
  e.bootable_system_state = j.at("bootable_system_state").get<bool>();
  e.partial_file_support = j.at("partial_file_support").get<bool>();
  e.level = EnumFromJson<VSS_APPLICATION_LEVEL>(j.at("level"));
  for (const Json& v : j.at("volumes")) {
    e.volumes.push_back({v.at("name").get<std::string>(), GuidFromJson(v.at("id")),
                         v.at("path").get<std::string>(),
                         v.at("snapshot_device").get<std::string>()});
  }
  e.components = WriterComponentsFromJson(j.at("components"));
  return e;
}

Json ToJson(const WriterEventResult& r) {
  Json j{{"success", r.success},
         {"failure", r.failure},
         {"application_hr", r.application_hr},
         {"message", r.message},
         {"components", ToJson(r.components)}};
  if (r.metadata) j["metadata"] = ToJson(*r.metadata);
  return j;
}

WriterEventResult EventResultFromJson(const Json& j) {
  WriterEventResult r;
  r.success = j.at("success").get<bool>();
  r.failure = IntFromJson<HResult>(j.at("failure"));
  r.application_hr = IntFromJson<HResult>(j.at("application_hr"));
  r.message = j.at("message").get<std::string>();
  r.components = WriterComponentsFromJson(j.at("components"));
  if (j.contains("metadata")) r.metadata = WriterMetadataFromJsonValue(j.at("metadata"));
  return r;
}

Json ToJson(const WriterStatus& s) {
  return Json{{"instance_id", GuidToJson(s.instance_id)},
              {"writer_id", GuidToJson(s.writer_id)},
              {"name", s.name},
              {"instance_name", s.instance_name},
              {"state", s.state},
              {"failure", s.failure},
              {"application_hr", s.application_hr},
              {"message", s.message},
              {"last_event", s.last_event}};
}

WriterStatus WriterStatusFromJson(const Json& j) {
  WriterStatus s;
  s.instance_id = GuidFromJson(j.at("instance_id"));
  s.writer_id = GuidFromJson(j.at("writer_id"));
  s.name = j.at("name").get<std::string>();
  s.instance_name = j.at("instance_name").get<std::string>();
  s.state = EnumFromJson<VSS_WRITER_STATE>(j.at("state"));
  s.failure = IntFromJson<HResult>(j.at("failure"));
  s.application_hr = IntFromJson<HResult>(j.at("application_hr"));
  s.message = j.at("message").get<std::string>();
  s.last_event = j.at("last_event").get<std::string>();
  return s;
}

Json ToJson(const SnapshotProp& p) {
  return Json{{"snapshot_id", GuidToJson(p.snapshot_id)},
              {"snapshot_set_id", GuidToJson(p.snapshot_set_id)},
              {"snapshots_count", p.snapshots_count},
              {"snapshot_device_object", p.snapshot_device_object},
              {"original_volume_name", p.original_volume_name},
              {"originating_machine", p.originating_machine},
              {"service_machine", p.service_machine},
              {"exposed_name", p.exposed_name},
              {"exposed_path", p.exposed_path},
              {"provider_id", GuidToJson(p.provider_id)},
              {"snapshot_attributes", p.snapshot_attributes},
              {"creation_timestamp", p.creation_timestamp},
              {"status", p.status}};
}

SnapshotProp SnapshotPropFromJson(const Json& j) {
  SnapshotProp p;
  p.snapshot_id = GuidFromJson(j.at("snapshot_id"));
  p.snapshot_set_id = GuidFromJson(j.at("snapshot_set_id"));
  p.snapshots_count = IntFromJson<int32_t>(j.at("snapshots_count"));
  p.snapshot_device_object = j.at("snapshot_device_object").get<std::string>();
  p.original_volume_name = j.at("original_volume_name").get<std::string>();
  p.originating_machine = j.at("originating_machine").get<std::string>();
  p.service_machine = j.at("service_machine").get<std::string>();
  p.exposed_name = j.at("exposed_name").get<std::string>();
  p.exposed_path = j.at("exposed_path").get<std::string>();
  p.provider_id = GuidFromJson(j.at("provider_id"));
  p.snapshot_attributes = IntFromJson<int32_t>(j.at("snapshot_attributes"));
  p.creation_timestamp = IntFromJson<int64_t>(j.at("creation_timestamp"));
  p.status = EnumFromJson<VSS_SNAPSHOT_STATE>(j.at("status"));
  return p;
}

Json ToJson(const ProviderProp& p) {
  return Json{{"provider_id", GuidToJson(p.provider_id)},
              {"provider_name", p.provider_name},
              {"provider_type", p.provider_type},
              {"provider_version", p.provider_version},
              {"provider_version_id", GuidToJson(p.provider_version_id)},
              {"class_id", GuidToJson(p.class_id)}};
}

ProviderProp ProviderPropFromJson(const Json& j) {
  ProviderProp p;
  p.provider_id = GuidFromJson(j.at("provider_id"));
  p.provider_name = j.at("provider_name").get<std::string>();
  p.provider_type = EnumFromJson<VSS_PROVIDER_TYPE>(j.at("provider_type"));
  p.provider_version = j.at("provider_version").get<std::string>();
  p.provider_version_id = GuidFromJson(j.at("provider_version_id"));
  p.class_id = GuidFromJson(j.at("class_id"));
  return p;
}

Json ToJson(const ComponentKey& k) {
  return Json{{"writer_id", GuidToJson(k.writer_id)},
              {"type", k.type},
              {"logical_path", k.logical_path},
              {"component_name", k.component_name}};
}

ComponentKey ComponentKeyFromJson(const Json& j) {
  ComponentKey k;
  k.writer_id = GuidFromJson(j.at("writer_id"));
  k.type = EnumFromJson<VSS_COMPONENT_TYPE>(j.at("type"));
  k.logical_path = j.at("logical_path").get<std::string>();
  k.component_name = j.at("component_name").get<std::string>();
  return k;
}

// One writer's components travel as a BCD holding only that writer, so the
// component schema is the document's (components.h).
Json ToJson(const WriterComponents& c) {
  BackupComponentsDocument d;
  d.writers.push_back(c);
  return Json::parse(BackupComponentsToJson(d));
}

WriterComponents WriterComponentsFromJson(const Json& j) {
  VssStatusOr<BackupComponentsDocument> d = BackupComponentsFromJson(j.dump());
  if (!d.ok()) throw ShapeError(d.status().message());
  if (d->writers.size() != 1) throw ShapeError("expected the components of one writer");
  return std::move(d->writers[0]);
}

Json ToJson(const WriterMetadataDocument& d) { return Json::parse(WriterMetadataToJson(d)); }

WriterMetadataDocument WriterMetadataFromJsonValue(const Json& j) {
  VssStatusOr<WriterMetadataDocument> d = WriterMetadataFromJson(j.dump());
  if (!d.ok()) throw ShapeError(d.status().message());
  return std::move(*d);
}

}  // namespace vss::internal
