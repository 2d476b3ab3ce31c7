// The requester's shared steps (vss/api/backup.h): VSS errors as Status,
// waiting for Async operations, writer statuses, context and backup type
// names, the shadow copy set sequence, and the devices a backup reads and
// a restore writes.

#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "requester_devices.h"
#include "vss/api/backup.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"

namespace vss {
namespace {

template <typename T>
struct Named {
  const char* name;
  T value;
};

constexpr Named<int32_t> kContexts[] = {
    {"backup", VSS_CTX_BACKUP},
    {"file-share-backup", VSS_CTX_FILE_SHARE_BACKUP},
    {"app-rollback", VSS_CTX_APP_ROLLBACK},
    {"nas-rollback", VSS_CTX_NAS_ROLLBACK},
    {"client-accessible", VSS_CTX_CLIENT_ACCESSIBLE},
    {"client-accessible-writers", VSS_CTX_CLIENT_ACCESSIBLE_WRITERS},
};

constexpr Named<VSS_BACKUP_TYPE> kBackupTypes[] = {
    {"full", VSS_BT_FULL},
    {"copy", VSS_BT_COPY},
    {"incremental", VSS_BT_INCREMENTAL},
    {"differential", VSS_BT_DIFFERENTIAL},
    {"log", VSS_BT_LOG},
};

template <typename T, size_t N>
std::vector<std::string> NamesOf(const Named<T> (&table)[N]) {
  std::vector<std::string> out;
  for (const Named<T>& e : table) out.emplace_back(e.name);
  return out;
}

// The value named `name`; kInvalidArgument saying it is an unknown `what`.
template <typename T, size_t N>
StatusOr<T> ValueOf(const Named<T> (&table)[N], const std::string& name,
                    const char* what) {
  for (const Named<T>& e : table) {
    if (name == e.name) return e.value;
  }
  return InvalidArgumentError(std::string("unknown ") + what + " '" + name +
                              "'");
}

// The name of `value`, or its number.
template <typename T, size_t N>
std::string NameOf(const Named<T> (&table)[N], T value) {
  for (const Named<T>& e : table) {
    if (value == e.value) return e.name;
  }
  return std::to_string(static_cast<int32_t>(value));
}

// Adds every component of every writer that answered Identify, with the
// previous stamps of `req.base`.
VssStatus AddAllComponents(BackupComponents& bc, const ShadowSetRequest& req,
                           ShadowSetResult& out) {
  std::set<std::tuple<Guid, std::string, std::string>> seen;
  for (size_t i = 0; i < bc.GetWriterMetadataCount(); ++i) {
    VssStatusOr<ExamineWriterMetadata> md = bc.GetWriterMetadata(i);
    if (!md.ok()) return md.status();
    const Guid writer_id = md->GetIdentity().writer_id;
    for (const ComponentInfo& c : md->document().components) {
      // Two instances of one writer class share its components.
      if (!seen.insert({writer_id, c.logical_path, c.component_name}).second)
        continue;
      ComponentKey key{writer_id, c.type, c.logical_path, c.component_name};
      VSS_RETURN_IF_VSS_ERROR(bc.AddComponent(key));
      out.components.push_back(key);
      if (req.base == nullptr) continue;
      WriterComponents* wc = req.base->FindWriter(writer_id);
      const Component* old =
          wc ? wc->Find(c.logical_path, c.component_name) : nullptr;
      if (old != nullptr && !old->GetBackupStamp().empty()) {
        VSS_RETURN_IF_VSS_ERROR(
            bc.SetPreviousBackupStamp(key, old->GetBackupStamp()));
        ++out.previous_stamps;
      }
    }
  }
  return VssStatus::Ok();
}

// The failure of a sequence after StartSnapshotSet: AbortBackup (Abort to
// the writers that still need it), the report, then the error.
Status Aborted(BackupComponents& bc, const AbortCallback& on_aborted,
               const std::string& what, const VssStatus& cause) {
  bc.AbortBackup().IgnoreError();  // a set that failed was aborted already
  Status error = StatusFromVss(cause, what);
  if (on_aborted)
    on_aborted(AbortReport{what, error, GatherWriterStatuses(bc)});
  return error;
}

// The steps before StartSnapshotSet: nothing to undo when one fails.
Status PrepareSet(BackupComponents& bc, const ShadowSetRequest& req,
                  ShadowSetResult& out) {
  const bool with_writers = (req.context & VSS_VOLSNAP_ATTR_NO_WRITERS) == 0;
  VSS_RETURN_IF_ERROR(
      StatusFromVss(bc.InitializeForBackup(), "InitializeForBackup"));
  VSS_RETURN_IF_ERROR(StatusFromVss(bc.SetContext(req.context), "SetContext"));
  // Component mode is asked for first so that Identify tells the writers
  // so; it falls back to volume mode below when no writer has components.
  VSS_RETURN_IF_ERROR(
      StatusFromVss(bc.SetBackupState(req.select_components && with_writers,
                                      false, req.backup_type),
                    "SetBackupState"));
  if (!with_writers) return OkStatus();
  VSS_RETURN_IF_ERROR(StatusFromVss(WaitForAsync(bc.GatherWriterMetadata()),
                                    "GatherWriterMetadata"));
  if (!req.select_components) return OkStatus();
  VSS_RETURN_IF_ERROR(
      StatusFromVss(AddAllComponents(bc, req, out), "AddComponent"));
  if (out.components.empty()) {
    VSS_RETURN_IF_ERROR(StatusFromVss(
        bc.SetBackupState(false, false, req.backup_type), "SetBackupState"));
  }
  return OkStatus();
}

}  // namespace

std::string WriterStateName(VSS_WRITER_STATE s) {
  static const char* kNames[] = {
      "VSS_WS_UNKNOWN",
      "VSS_WS_STABLE",
      "VSS_WS_WAITING_FOR_FREEZE",
      "VSS_WS_WAITING_FOR_THAW",
      "VSS_WS_WAITING_FOR_POST_SNAPSHOT",
      "VSS_WS_WAITING_FOR_BACKUP_COMPLETE",
      "VSS_WS_FAILED_AT_IDENTIFY",
      "VSS_WS_FAILED_AT_PREPARE_BACKUP",
      "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT",
      "VSS_WS_FAILED_AT_FREEZE",
      "VSS_WS_FAILED_AT_THAW",
      "VSS_WS_FAILED_AT_POST_SNAPSHOT",
      "VSS_WS_FAILED_AT_BACKUP_COMPLETE",
      "VSS_WS_FAILED_AT_PRE_RESTORE",
      "VSS_WS_FAILED_AT_POST_RESTORE",
      "VSS_WS_FAILED_AT_BACKUPSHUTDOWN",
  };
  if (s >= 0 && s < static_cast<int32_t>(std::size(kNames))) return kNames[s];
  return std::to_string(s);
}

std::string WriterStatusesJson(const std::vector<WriterStatus>& ws) {
  nlohmann::json out = nlohmann::json::array();
  for (const WriterStatus& w : ws) {
    out.push_back(
        nlohmann::json{{"name", w.name},
                       {"instance_name", w.instance_name},
                       {"writer_id", w.writer_id.ToString()},
                       {"instance_id", w.instance_id.ToString()},
                       {"state", static_cast<int>(w.state)},
                       {"state_name", WriterStateName(w.state)},
                       {"last_event", w.last_event},
                       {"last_error", HResultHex(w.failure)},
                       {"last_error_name", HResultName(w.failure)},
                       {"application_hr", HResultHex(w.application_hr)},
                       {"message", w.message}});
  }
  return out.dump();
}

Status StatusFromVss(const VssStatus& s, const std::string& what) {
  return s.ToStatus(what);
}

VssStatus WaitForAsync(VssStatusOr<std::shared_ptr<Async>> op) {
  if (!op.ok()) return op.status();
  (*op)->Wait();
  VssStatus r = (*op)->Result();
  if (r.code() == VSS_S_ASYNC_FINISHED) return VssStatus::Ok();
  if (r.ok()) return VssError(r.code(), "the operation was cancelled");
  return r;
}

std::vector<WriterStatus> GatherWriterStatuses(BackupComponents& bc) {
  WaitForAsync(bc.GatherWriterStatus()).IgnoreError();  // states are kept live
  std::vector<WriterStatus> out;
  for (size_t i = 0; i < bc.GetWriterStatusCount(); ++i) {
    VssStatusOr<WriterStatus> s = bc.GetWriterStatus(i);
    if (s.ok()) out.push_back(*s);
  }
  return out;
}

std::vector<std::string> ContextNames() { return NamesOf(kContexts); }

StatusOr<int32_t> ContextFromName(const std::string& name) {
  return ValueOf(kContexts, name, "shadow copy context");
}

std::string ContextNameOf(int32_t context) {
  return NameOf(kContexts, context);
}

std::vector<std::string> BackupTypeNames() { return NamesOf(kBackupTypes); }

StatusOr<VSS_BACKUP_TYPE> BackupTypeFromName(const std::string& name) {
  return ValueOf(kBackupTypes, name, "backup type");
}

std::string BackupTypeName(VSS_BACKUP_TYPE type) {
  return NameOf(kBackupTypes, type);
}

StatusOr<ShadowSetResult> CreateShadowSet(BackupComponents& bc,
                                          const ShadowSetRequest& req) {
  ShadowSetResult out;
  VSS_RETURN_IF_ERROR(PrepareSet(bc, req, out));
  VssStatusOr<Guid> set = bc.StartSnapshotSet();
  if (!set.ok()) return StatusFromVss(set.status(), "StartSnapshotSet");
  out.set_id = *set;
  std::vector<Guid> ids;
  for (const std::string& v : req.volumes) {
    VssStatusOr<Guid> id = bc.AddToSnapshotSet(v);
    if (!id.ok())
      return Aborted(bc, req.on_aborted, "AddToSnapshotSet(" + v + ")",
                     id.status());
    ids.push_back(*id);
  }
  VssStatus s = WaitForAsync(bc.PrepareForBackup());
  if (!s.ok()) return Aborted(bc, req.on_aborted, "PrepareForBackup", s);
  s = WaitForAsync(bc.DoSnapshotSet());
  if (!s.ok()) return Aborted(bc, req.on_aborted, "DoSnapshotSet", s);
  for (const Guid& id : ids) {
    VssStatusOr<SnapshotProp> p = bc.GetSnapshotProperties(id);
    if (!p.ok())
      return Aborted(bc, req.on_aborted, "GetSnapshotProperties", p.status());
    out.shadows.push_back(*p);
  }
  return out;
}

Status AbortAfterSet(BackupComponents& bc, const AbortCallback& on_aborted,
                     const std::string& what, const Status& cause) {
  return Aborted(bc, on_aborted, what, VssStatus::FromStatus(cause));
}

StatusOr<int32_t> KeptContext(const Service& service, int32_t context,
                              const std::string& context_name,
                              const std::string& program,
                              const std::string& hint) {
  const bool auto_release = (context & (VSS_VOLSNAP_ATTR_PERSISTENT |
                                        VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE)) == 0;
  if (!auto_release) return context;
  if (service.remote()) return context | VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE;
  return FailedPreconditionError("context " + context_name +
                                 " makes non-persistent auto-release shadow "
                                 "copies, which would be released as soon as " +
                                 program +
                                 " exits: no vssd runs to hold them (store " +
                                 service.store_dir() + "); " + hint);
}

// --- Devices ---

StatusOr<std::unique_ptr<BlockDevice>> OpenExport(
    const Service& service, const ExportOpener& open_export,
    const std::string& export_name) {
  if (!open_export) {
    return UnsupportedError("reaching " + export_name + " through " +
                            service.Describe() +
                            " needs an NBD client (the request's open_export)");
  }
  return open_export(export_name);
}

StatusOr<std::unique_ptr<BlockDevice>> OpenShadowView(
    Service& service, const Guid& id, const ExportOpener& open_export) {
  if (engine::Store* store = service.store()) {
    VSS_ASSIGN_OR_RETURN(engine::ShadowInfo row,
                         store->ResolveShadow(id.ToString()));
    VSS_ASSIGN_OR_RETURN(engine::Volume * volume,
                         store->OpenVolume(row.volume_id));
    return volume->OpenShadow(row.id);
  }
  return OpenExport(service, open_export, "shadow/" + id.ToString());
}

StatusOr<LiveVolume> OpenLiveVolume(Service& service, const std::string& name,
                                    const ExportOpener& open_export) {
  LiveVolume out;
  if (engine::Store* store = service.store()) {
    VSS_ASSIGN_OR_RETURN(engine::VolumeInfo row, store->ResolveVolume(name));
    VSS_ASSIGN_OR_RETURN(out.device, store->OpenVolume(row.id));
    out.name = row.name;
    return out;
  }
  VSS_ASSIGN_OR_RETURN(out.owned,
                       OpenExport(service, open_export, "live/" + name));
  out.device = out.owned.get();
  out.name = name;
  return out;
}

}  // namespace vss
