// vssctl writers list | providers list | backup | restore, and the
// requester behind `shadow create --context`: the VSS side of vssctl.
//
// Every command here goes through vss::Service: vssd when its control
// socket answers for the store, else a coordinator and the software
// provider in this process (where no writer of another process can take
// part). The requester calls follow VSS's order (VSS-REFERENCE.md, "Order
// of a backup" and "Order of a restore").
//
// Reading shadows and writing volumes: in-process, the Service's own store
// has the volumes open (the provider opened them to commit the set), so
// shadows are read and volumes written through the engine. Through vssd the
// daemon holds the volumes (their images are locked), so this process
// reads shadow/<id> and writes live/<volume> through vssd's NBD exports on
// STORE/nbd.sock; both go through the same engine in vssd.

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "backup_dir.h"
#include "common.h"
#include "fuse/nbd_device.h"
#include "vss/api/service.h"
#include "vss/engine/volume.h"

namespace vss::tools {
namespace {

constexpr uint64_t kPiece = uint64_t{1} << 20;

struct NamedContext {
  const char* name;
  int32_t value;
};
constexpr NamedContext kContexts[] = {
    {"backup", VSS_CTX_BACKUP},
    {"file-share-backup", VSS_CTX_FILE_SHARE_BACKUP},
    {"app-rollback", VSS_CTX_APP_ROLLBACK},
    {"nas-rollback", VSS_CTX_NAS_ROLLBACK},
    {"client-accessible", VSS_CTX_CLIENT_ACCESSIBLE},
    {"client-accessible-writers", VSS_CTX_CLIENT_ACCESSIBLE_WRITERS},
};

int32_t ContextValue(const std::string& name) {
  for (const NamedContext& c : kContexts) {
    if (name == c.name) return c.value;
  }
  return VSS_CTX_BACKUP;  // CLI11 checked the name
}

const std::map<std::string, VSS_BACKUP_TYPE> kBackupTypes = {
    {"full", VSS_BT_FULL},
    {"copy", VSS_BT_COPY},
    {"incremental", VSS_BT_INCREMENTAL},
    {"differential", VSS_BT_DIFFERENTIAL},
    {"log", VSS_BT_LOG},
};

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

std::string ProviderTypeName(VSS_PROVIDER_TYPE t) {
  switch (t) {
    case VSS_PROV_SYSTEM: return "System";
    case VSS_PROV_SOFTWARE: return "Software";
    case VSS_PROV_HARDWARE: return "Hardware";
    case VSS_PROV_FILESHARE: return "FileShare";
    case VSS_PROV_UNKNOWN: break;
  }
  return "Unknown";
}

template <typename T>
StatusOr<T> FromVssOr(VssStatusOr<T> v, const std::string& what) {
  if (!v.ok()) return FromVss(v.status(), what);
  return std::move(v).value();
}

// Waits for an asynchronous VSS operation; OK when it finished, else its
// failure (a cancellation counts as one).
VssStatus WaitFor(VssStatusOr<std::shared_ptr<Async>> op) {
  if (!op.ok()) return op.status();
  (*op)->Wait();
  VssStatus r = (*op)->Result();
  if (r.code() == VSS_S_ASYNC_FINISHED) return VssStatus::Ok();
  if (r.ok()) return VssError(r.code(), "the operation was cancelled");
  return r;
}

StatusOr<std::unique_ptr<Service>> Connect(Cli& cli) {
  ServiceOptions options;
  options.store_dir = cli.resolved_store_dir();
  return FromVssOr(Service::Connect(options), "");
}

std::string ServiceKind(const Service& s) { return s.remote() ? "vssd" : "in-process"; }

std::string Iso8601Now() {
  return engine::TimestampToIso8601(engine::NowTimestamp());
}

// --- Writer statuses ---

std::vector<WriterStatus> WriterStatuses(BackupComponents& bc) {
  WaitFor(bc.GatherWriterStatus()).IgnoreError();  // states are kept live
  std::vector<WriterStatus> out;
  for (size_t i = 0; i < bc.GetWriterStatusCount(); ++i) {
    VssStatusOr<WriterStatus> s = bc.GetWriterStatus(i);
    if (s.ok()) out.push_back(*s);
  }
  return out;
}

Json WriterStatusToJson(const WriterStatus& w) {
  return Json{{"name", w.name},
              {"instance_name", w.instance_name},
              {"writer_id", w.writer_id.ToString()},
              {"instance_id", w.instance_id.ToString()},
              {"state", static_cast<int>(w.state)},
              {"state_name", WriterStateName(w.state)},
              {"last_event", w.last_event},
              {"last_error", HResultHex(w.failure)},
              {"last_error_name", HResultName(w.failure)},
              {"application_hr", HResultHex(w.application_hr)},
              {"message", w.message}};
}

Json WriterStatusesToJson(const std::vector<WriterStatus>& ws) {
  Json out = Json::array();
  for (const auto& w : ws) out.push_back(WriterStatusToJson(w));
  return out;
}

std::string ErrorText(const WriterStatus& w) {
  if (w.failure == S_OK) return "no error";
  std::string s = HResultName(w.failure);
  if (!w.message.empty()) s += " (" + w.message + ")";
  return s;
}

// One line per writer under a heading, for the text output of a sequence.
void PrintWriterLines(const std::vector<WriterStatus>& ws) {
  if (ws.empty()) {
    std::printf("Writers: none took part\n");
    return;
  }
  std::printf("Writers:\n");
  for (const auto& w : ws) {
    std::printf("   '%s': %s, last event %s, %s\n", w.name.c_str(),
                WriterStateName(w.state).c_str(),
                w.last_event.empty() ? "none" : w.last_event.c_str(),
                ErrorText(w).c_str());
  }
}

// --- The backup sequence shared by `shadow create --context` and `backup` ---

struct SetRequest {
  std::vector<std::string> volumes;
  int32_t context = VSS_CTX_BACKUP;
  VSS_BACKUP_TYPE backup_type = VSS_BT_FULL;
  // backup: add every component the writers report (component mode).
  bool select_components = false;
  // The previous backup's document: its backup stamps become the previous
  // stamps of the same components (incremental / differential).
  BackupComponentsDocument* base = nullptr;
};

struct SetResult {
  Guid set_id;
  std::vector<SnapshotProp> shadows;  // in the order of the volumes
  std::vector<ComponentKey> components;
  size_t previous_stamps = 0;         // components given a previous stamp
};

std::string KeyText(const ComponentKey& k) {
  return (k.logical_path.empty() ? "" : k.logical_path + "\\") + k.component_name;
}

// Adds every component of every writer that answered Identify.
VssStatus AddAllComponents(BackupComponents& bc, const SetRequest& req, SetResult& out) {
  std::set<std::tuple<Guid, std::string, std::string>> seen;
  for (size_t i = 0; i < bc.GetWriterMetadataCount(); ++i) {
    VssStatusOr<ExamineWriterMetadata> md = bc.GetWriterMetadata(i);
    if (!md.ok()) return md.status();
    const Guid writer_id = md->GetIdentity().writer_id;
    for (const ComponentInfo& c : md->document().components) {
      // Two instances of one writer class share its components.
      if (!seen.insert({writer_id, c.logical_path, c.component_name}).second) continue;
      ComponentKey key{writer_id, c.type, c.logical_path, c.component_name};
      VSS_RETURN_IF_VSS_ERROR(bc.AddComponent(key));
      out.components.push_back(key);
      if (req.base == nullptr) continue;
      WriterComponents* wc = req.base->FindWriter(writer_id);
      const Component* old = wc ? wc->Find(c.logical_path, c.component_name) : nullptr;
      if (old != nullptr && !old->GetBackupStamp().empty()) {
        VSS_RETURN_IF_VSS_ERROR(bc.SetPreviousBackupStamp(key, old->GetBackupStamp()));
        ++out.previous_stamps;
      }
    }
  }
  return VssStatus::Ok();
}

// The failure of a sequence after StartSnapshotSet: AbortBackup (Abort to
// the writers that still need it), then what each writer says, on stdout,
// then the error.
Status Aborted(Cli& cli, BackupComponents& bc, const std::string& what,
               const VssStatus& cause) {
  bc.AbortBackup().IgnoreError();  // a set that failed was aborted already
  std::vector<WriterStatus> ws = WriterStatuses(bc);
  Status error = FromVss(cause, what);
  if (cli.json) {
    PrintJson(Json{{"ok", false}, {"error", error.message()},
                   {"writers", WriterStatusesToJson(ws)}});
  } else {
    std::printf("%s failed; no shadow copy was kept.\n", what.c_str());
    PrintWriterLines(ws);
  }
  return error;
}

// InitializeForBackup, SetContext, SetBackupState, GatherWriterMetadata,
// [AddComponent...], StartSnapshotSet, AddToSnapshotSet..., PrepareForBackup,
// DoSnapshotSet. A failure before StartSnapshotSet changes nothing; a later
// one aborts the backup (see Aborted).
Status CreateSet(Cli& cli, BackupComponents& bc, const SetRequest& req, SetResult& out) {
  const bool with_writers = (req.context & VSS_VOLSNAP_ATTR_NO_WRITERS) == 0;
  VSS_RETURN_IF_ERROR(FromVss(bc.InitializeForBackup(), "InitializeForBackup"));
  VSS_RETURN_IF_ERROR(FromVss(bc.SetContext(req.context), "SetContext"));
  // Component mode is asked for first so that Identify tells the writers
  // so; it falls back to volume mode below when no writer has components.
  VSS_RETURN_IF_ERROR(FromVss(
      bc.SetBackupState(req.select_components && with_writers, false, req.backup_type),
      "SetBackupState"));
  if (with_writers) {
    VSS_RETURN_IF_ERROR(FromVss(WaitFor(bc.GatherWriterMetadata()), "GatherWriterMetadata"));
    if (req.select_components) {
      VSS_RETURN_IF_ERROR(FromVss(AddAllComponents(bc, req, out), "AddComponent"));
      if (out.components.empty()) {
        VSS_RETURN_IF_ERROR(FromVss(bc.SetBackupState(false, false, req.backup_type),
                                    "SetBackupState"));
      }
    }
  }
  VssStatusOr<Guid> set = bc.StartSnapshotSet();
  if (!set.ok()) return FromVss(set.status(), "StartSnapshotSet");
  out.set_id = *set;
  std::vector<Guid> ids;
  for (const std::string& v : req.volumes) {
    VssStatusOr<Guid> id = bc.AddToSnapshotSet(v);
    if (!id.ok()) return Aborted(cli, bc, "AddToSnapshotSet(" + v + ")", id.status());
    ids.push_back(*id);
  }
  VssStatus s = WaitFor(bc.PrepareForBackup());
  if (!s.ok()) return Aborted(cli, bc, "PrepareForBackup", s);
  s = WaitFor(bc.DoSnapshotSet());
  if (!s.ok()) return Aborted(cli, bc, "DoSnapshotSet", s);
  for (const Guid& id : ids) {
    VssStatusOr<SnapshotProp> p = bc.GetSnapshotProperties(id);
    if (!p.ok()) return Aborted(cli, bc, "GetSnapshotProperties", p.status());
    out.shadows.push_back(*p);
  }
  return OkStatus();
}

// Deletes the set's shadows; the error names what is left.
Status DeleteSet(BackupComponents& bc, const Guid& set_id) {
  VssStatusOr<BackupComponents::DeleteResult> r =
      bc.DeleteSnapshots(set_id, VSS_OBJECT_SNAPSHOT_SET, true);
  if (!r.ok()) return FromVss(r.status(), "deleting shadow copy set " + Braced(set_id));
  return OkStatus();
}

Json ShadowPropToJson(const SnapshotProp& p) {
  return Json{{"shadow_id", p.snapshot_id.ToString()},
              {"volume", p.original_volume_name},
              {"device_object", p.snapshot_device_object},
              {"attributes", p.snapshot_attributes},
              {"attribute_names", AttributeNames(p.snapshot_attributes)},
              {"persistent", (p.snapshot_attributes & VSS_VOLSNAP_ATTR_PERSISTENT) != 0}};
}

// --- Devices: shadows to read, volumes to write ---

std::string NbdSocket(const Service& service) { return service.store_dir() + "/nbd.sock"; }

StatusOr<std::unique_ptr<BlockDevice>> ConnectNbd(const Service& service,
                                                  const std::string& export_name) {
  StatusOr<std::unique_ptr<fuse::NbdDevice>> dev =
      fuse::NbdDevice::Connect(NbdSocket(service), export_name);
  if (!dev.ok()) {
    return dev.status().WithContext("reading " + export_name + " through vssd's NBD socket " +
                                    NbdSocket(service));
  }
  return std::unique_ptr<BlockDevice>(std::move(dev).value());
}

// A read-only view of a shadow copy.
StatusOr<std::unique_ptr<BlockDevice>> OpenShadowView(Service& service, const Guid& id) {
  if (engine::Store* store = service.store()) {
    VSS_ASSIGN_OR_RETURN(engine::ShadowInfo row, store->ResolveShadow(id.ToString()));
    VSS_ASSIGN_OR_RETURN(engine::Volume * volume, store->OpenVolume(row.volume_id));
    return volume->OpenShadow(row.id);
  }
  return ConnectNbd(service, "shadow/" + id.ToString());
}

// A live volume to write, every write through copy-on-write.
struct LiveVolume {
  std::string name;
  BlockDevice* device = nullptr;       // the engine's volume, or `owned`
  std::unique_ptr<BlockDevice> owned;  // an NBD connection to vssd
};

StatusOr<LiveVolume> OpenLiveVolume(Service& service, const std::string& name) {
  LiveVolume out;
  if (engine::Store* store = service.store()) {
    VSS_ASSIGN_OR_RETURN(engine::VolumeInfo row, store->ResolveVolume(name));
    VSS_ASSIGN_OR_RETURN(out.device, store->OpenVolume(row.id));
    out.name = row.name;
    return out;
  }
  VSS_ASSIGN_OR_RETURN(out.owned, ConnectNbd(service, "live/" + name));
  out.device = out.owned.get();
  out.name = name;
  return out;
}

// Makes `dst` equal to the image `src` (same size): its data is written,
// and what is a hole in `src` is zeroed where `dst` holds data. Returns the
// data bytes written.
StatusOr<uint64_t> WriteBack(BlockDevice& src, BlockDevice& dst, const std::string& what) {
  VSS_ASSIGN_OR_RETURN(auto extents, src.Extents(0, src.size()));
  Progress progress(what, src.size());
  std::vector<uint8_t> buf(std::min(src.size(), kPiece));
  uint64_t written = 0;
  for (const Extent& e : extents) {
    if (!e.allocated) {
      VSS_ASSIGN_OR_RETURN(auto old, dst.Extents(e.offset, e.length));
      for (const Extent& o : old) {
        if (o.allocated) VSS_RETURN_IF_ERROR(dst.WriteZeroes(o.offset, o.length));
      }
      progress.Add(e.length);
      continue;
    }
    for (uint64_t done = 0; done < e.length;) {
      size_t n = static_cast<size_t>(std::min(e.length - done, kPiece));
      std::span<uint8_t> piece(buf.data(), n);
      VSS_RETURN_IF_ERROR(src.Read(e.offset + done, piece));
      VSS_RETURN_IF_ERROR(dst.Write(e.offset + done, piece));
      written += n;
      done += n;
      progress.Add(n);
    }
  }
  VSS_RETURN_IF_ERROR(dst.Flush());
  return written;
}

// --- Files ---

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError(errno, path);
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return IoError("reading " + path);
  return s.str();
}

// The image file name of a volume in a backup directory.
std::string ImageName(const std::string& volume) {
  std::string name = volume;
  std::replace(name.begin(), name.end(), '/', '_');
  return name + ".img";
}

// --- writers list, providers list ---

Status RunWritersList(Cli& cli) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  VSS_ASSIGN_OR_RETURN(std::vector<WriterStatus> writers,
                       FromVssOr(service->ListWriters(), "listing writers"));
  if (cli.json) {
    PrintJson(WriterStatusesToJson(writers));
    return OkStatus();
  }
  if (writers.empty()) {
    if (service->remote()) {
      std::printf("No writers are subscribed to %s.\n", service->Describe().c_str());
    } else {
      std::printf(
          "No writers: no vssd serves %s, so vssctl runs in-process and writers of other "
          "processes cannot subscribe. Start vssd to see the writers subscribed to it.\n",
          service->store_dir().c_str());
    }
    return OkStatus();
  }
  for (const WriterStatus& w : writers) {
    std::printf("Writer name: '%s'\n", w.name.c_str());
    std::printf("   Writer Id: %s\n", Braced(w.writer_id).c_str());
    std::printf("   Writer Instance Id: %s\n", Braced(w.instance_id).c_str());
    if (!w.instance_name.empty()) {
      std::printf("   Writer Instance Name: %s\n", w.instance_name.c_str());
    }
    std::printf("   State: [%d] %s\n", static_cast<int>(w.state),
                WriterStateName(w.state).c_str());
    std::printf("   Last event: %s\n", w.last_event.empty() ? "none" : w.last_event.c_str());
    std::printf("   Last error: %s\n", w.failure == S_OK ? "No error" : ErrorText(w).c_str());
    std::printf("\n");
  }
  return OkStatus();
}

Status RunProvidersList(Cli& cli) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  VSS_ASSIGN_OR_RETURN(std::vector<ProviderProp> providers,
                       FromVssOr(service->ListProviders(), "listing providers"));
  if (cli.json) {
    Json out = Json::array();
    for (const ProviderProp& p : providers) {
      out.push_back({{"provider_id", p.provider_id.ToString()},
                     {"name", p.provider_name},
                     {"type", static_cast<int>(p.provider_type)},
                     {"type_name", ProviderTypeName(p.provider_type)},
                     {"version", p.provider_version},
                     {"version_id", p.provider_version_id.ToString()},
                     {"class_id", p.class_id.ToString()}});
    }
    PrintJson(out);
    return OkStatus();
  }
  for (const ProviderProp& p : providers) {
    std::printf("Provider name: '%s'\n", p.provider_name.c_str());
    std::printf("   Provider type: %s\n", ProviderTypeName(p.provider_type).c_str());
    std::printf("   Provider Id: %s\n", Braced(p.provider_id).c_str());
    std::printf("   Version: %s\n", p.provider_version.c_str());
    std::printf("\n");
  }
  return OkStatus();
}

// --- backup ---

struct BackupOptions {
  std::vector<std::string> volumes;
  std::string to;
  std::string type = "full";
  std::string context = "backup";
  std::string base;
  bool keep_shadows = false;
};

// The shadows of a set that must outlive this process: an auto-release
// context is refused in-process (the shadows would go with vssctl) and
// made NO_AUTO_RELEASE through vssd (the daemon holds them).
StatusOr<int32_t> KeptContext(const Service& service, int32_t context,
                              const std::string& context_name, const std::string& hint) {
  const bool auto_release =
      (context & (VSS_VOLSNAP_ATTR_PERSISTENT | VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE)) == 0;
  if (!auto_release) return context;
  if (service.remote()) return context | VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE;
  return FailedPreconditionError(
      "context " + context_name +
      " makes non-persistent auto-release shadow copies, which would be released as soon as "
      "vssctl exits: no vssd runs to hold them (store " + service.store_dir() + "); " + hint);
}

Status RunBackup(Cli& cli, const BackupOptions& o) {
  std::optional<BackupComponentsDocument> base;
  if (!o.base.empty()) {
    StatusOr<std::string> text = ReadFile(o.base + "/backup.json");
    if (!text.ok()) return text.status().WithContext("--base " + o.base + ": no backup.json");
    VSS_ASSIGN_OR_RETURN(base, FromVssOr(BackupComponentsFromJson(*text),
                                         "--base " + o.base + "/backup.json"));
  }
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  SetRequest req;
  req.volumes = o.volumes;
  req.context = ContextValue(o.context);
  req.backup_type = kBackupTypes.at(o.type);
  req.select_components = true;
  req.base = base ? &*base : nullptr;
  if (o.keep_shadows) {
    VSS_ASSIGN_OR_RETURN(req.context,
                         KeptContext(*service, req.context, o.context,
                                     "use a persistent --context (app-rollback, "
                                     "client-accessible-writers, ...) with --keep-shadows"));
  }
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BackupDir> dir, BackupDir::Create(o.to));
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BackupComponents> bc,
                       FromVssOr(service->CreateBackupComponents(), "CreateVssBackupComponents"));
  SetResult set;
  VSS_RETURN_IF_ERROR(CreateSet(cli, *bc, req, set));

  // Copy each shadow into a sparse image, each one synced and read back
  // against its checksum (BackupDir::WriteImage).
  Json volumes = Json::array();
  for (const SnapshotProp& p : set.shadows) {
    std::string image_name = ImageName(p.original_volume_name);
    Status s = [&]() -> Status {
      VSS_ASSIGN_OR_RETURN(std::unique_ptr<BlockDevice> view,
                           OpenShadowView(*service, p.snapshot_id));
      VSS_ASSIGN_OR_RETURN(
          BackupDir::ImageResult image,
          dir->WriteImage(image_name, *view, "copying " + p.original_volume_name));
      volumes.push_back({{"volume", p.original_volume_name},
                         {"shadow_id", p.snapshot_id.ToString()},
                         {"device_object", p.snapshot_device_object},
                         {"image", image_name},
                         {"size", image.size},
                         {"xxh3_128", image.xxh3_128},
                         {"data_bytes", image.data_bytes}});
      return OkStatus();
    }();
    if (!s.ok()) {
      DeleteSet(*bc, set.set_id).IgnoreError();
      return Aborted(cli, *bc,
                     "copying shadow copy " + Braced(p.snapshot_id) + " of volume '" +
                         p.original_volume_name + "'",
                     VssStatus::FromStatus(s));
    }
  }
  // Orders the images' names (their bytes were synced one by one) before
  // BackupComplete: a writer may truncate its logs once told the backup
  // succeeded, so the data must be on the medium first.
  if (Status s = dir->SyncNames(); !s.ok()) {
    DeleteSet(*bc, set.set_id).IgnoreError();
    return Aborted(cli, *bc, "syncing the backup directory", VssStatus::FromStatus(s));
  }

  // The backup is in DIR: tell the writers.
  Json components = Json::array();
  for (const ComponentKey& k : set.components) {
    VSS_RETURN_IF_ERROR(FromVss(bc->SetBackupSucceeded(k, true), "SetBackupSucceeded"));
    components.push_back({{"writer_id", k.writer_id.ToString()},
                          {"logical_path", k.logical_path},
                          {"name", k.component_name},
                          {"backup_succeeded", true}});
  }
  VssStatus complete = WaitFor(bc->BackupComplete());
  std::vector<WriterStatus> writers = WriterStatuses(*bc);
  VSS_ASSIGN_OR_RETURN(std::string bcd, FromVssOr(bc->SaveAsJson(), "SaveAsJson"));

  Json manifest{{"version", kBackupManifestVersion},
                {"created", Iso8601Now()},
                {"store", service->store_dir()},
                {"service", ServiceKind(*service)},
                {"context", o.context},
                {"context_value", req.context},
                {"backup_type", o.type},
                {"set_id", set.set_id.ToString()},
                {"volumes", volumes},
                {"components", components},
                {"writers", WriterStatusesToJson(writers)},
                {"backup_complete", complete.ok() ? "ok" : complete.ToString()},
                {"shadows_kept", o.keep_shadows}};
  if (base) {
    manifest["base"] = o.base;
    manifest["previous_stamps"] = set.previous_stamps;
  }
  // backup.json before manifest.json: the manifest is the mark of a
  // complete backup, so it is the last name to appear (each document is
  // fsync'ed before its rename, see WriteDocument).
  VSS_RETURN_IF_ERROR(dir->WriteDocument("backup.json", bcd));
  VSS_RETURN_IF_ERROR(dir->WriteDocument("manifest.json", manifest.dump(2) + "\n"));
  // Orders the renames of backup.json and manifest.json (and the images'
  // names) before the release of the shadows below.
  VSS_RETURN_IF_ERROR(dir->SyncNames());
  // Orders the backup directory's own entry (new when --to was created)
  // before the release of the shadows: without it a crash could lose the
  // whole directory after the shadows are gone.
  VSS_RETURN_IF_ERROR(dir->SyncParent());
  // The backup is durable and complete: from here the shadows may go.
  TestKillPoint("backup-release");
  dir->Commit();
  if (!o.keep_shadows) {
    if (Status s = DeleteSet(*bc, set.set_id); !s.ok()) {
      return s.WithContext("the backup in " + o.to + " is complete");
    }
  }

  if (cli.json) {
    manifest["dir"] = o.to;
    PrintJson(manifest);
  } else {
    std::printf("Backed up shadow copy set %s (%s, context %s, %s) to %s\n",
                Braced(set.set_id).c_str(), o.type.c_str(), o.context.c_str(),
                service->Describe().c_str(), o.to.c_str());
    for (const Json& v : volumes) {
      std::printf("   Volume '%s': shadow copy {%s}, %s image %s, %s of data\n",
                  v["volume"].get<std::string>().c_str(),
                  v["shadow_id"].get<std::string>().c_str(),
                  FormatBytes(v["size"].get<uint64_t>()).c_str(),
                  v["image"].get<std::string>().c_str(),
                  FormatBytes(v["data_bytes"].get<uint64_t>()).c_str());
    }
    std::printf("   %zu components backed up%s\n", set.components.size(),
                base ? (", " + std::to_string(set.previous_stamps) +
                        " with the previous backup's stamps")
                           .c_str()
                     : "");
    PrintWriterLines(writers);
    if (!complete.ok()) std::printf("BackupComplete: %s\n", complete.ToString().c_str());
    std::printf("Shadow copies %s\n", o.keep_shadows ? "kept" : "deleted");
  }
  // A writer that failed BackupComplete does not undo the backup, but the
  // run says so with its exit status.
  if (!complete.ok()) return FromVss(complete, "BackupComplete (the backup in " + o.to + " is complete)");
  return OkStatus();
}

// --- restore ---

struct RestoreOptions {
  std::string dir;
  std::string volume;
};

// A volume of the backup to put back.
struct RestoreItem {
  std::string volume;
  std::string image_path;
  std::unique_ptr<BlockDevice> image;  // verified against its checksum
  LiveVolume target;
};

std::vector<ComponentKey> ComponentsOf(const BackupComponentsDocument& doc) {
  std::vector<ComponentKey> out;
  for (const WriterComponents& w : doc.writers) {
    for (const Component& c : w.components()) {
      out.push_back({w.GetWriterInfo().writer_id, c.GetComponentType(), c.GetLogicalPath(),
                     c.GetComponentName()});
    }
  }
  return out;
}

Status RunRestore(Cli& cli, const RestoreOptions& o) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BackupSource> source, BackupSource::Open(o.dir));
  StatusOr<std::string> bcd = source->ReadDocument("backup.json");
  if (!bcd.ok() && bcd.status().code() == StatusCode::kNotFound) {
    return NotFoundError(o.dir + " has no backup.json: not a backup made by vssctl backup");
  }
  if (!bcd.ok()) return bcd.status();
  VSS_ASSIGN_OR_RETURN(std::vector<ManifestVolume> manifest, source->ReadManifest());
  VSS_ASSIGN_OR_RETURN(BackupComponentsDocument doc,
                       FromVssOr(BackupComponentsFromJson(*bcd), o.dir + "/backup.json"));

  // Which volumes, and can they be restored: every check before any change.
  std::vector<RestoreItem> items;
  std::string held;
  for (const ManifestVolume& v : manifest) {
    held += (held.empty() ? "" : ", ") + v.volume;
    if (!o.volume.empty() && v.volume != o.volume) continue;
    RestoreItem item;
    item.volume = v.volume;
    item.image_path = source->PathOf(v.image);
    items.push_back(std::move(item));
  }
  if (items.empty()) {
    return NotFoundError("volume '" + o.volume + "' is not in the backup in " + o.dir +
                         " (it holds: " + (held.empty() ? "nothing" : held) + ")");
  }
  // Every image is checked (a file inside the backup, of the recorded size,
  // with the recorded checksum) before the store is even opened.
  for (RestoreItem& item : items) {
    for (const ManifestVolume& v : manifest) {
      if (v.volume != item.volume) continue;
      VSS_ASSIGN_OR_RETURN(item.image, source->OpenVerifiedImage(v));
    }
  }
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BackupComponents> bc,
                       FromVssOr(service->CreateBackupComponents(), "CreateVssBackupComponents"));
  VSS_RETURN_IF_ERROR(FromVss(bc->InitializeForRestore(*bcd), "InitializeForRestore"));
  for (RestoreItem& item : items) {
    StatusOr<LiveVolume> target = OpenLiveVolume(*service, item.volume);
    if (!target.ok()) {
      return target.status().WithContext("restoring volume '" + item.volume + "'");
    }
    item.target = std::move(target).value();
    if (item.target.device->size() != item.image->size()) {
      return FailedPreconditionError(
          "volume '" + item.volume + "' is " + std::to_string(item.target.device->size()) +
          " bytes but its backup image " + item.image_path + " is " +
          std::to_string(item.image->size()) + " bytes; not restoring");
    }
  }

// The restore sequence.
  VSS_RETURN_IF_ERROR(FromVss(WaitFor(bc->GatherWriterMetadata()), "GatherWriterMetadata"));
  std::vector<ComponentKey> keys = ComponentsOf(doc);
  for (const ComponentKey& k : keys) {
    VSS_RETURN_IF_ERROR(FromVss(bc->SetSelectedForRestore(k, true),
                                "SetSelectedForRestore(" + KeyText(k) + ")"));
  }
  VSS_RETURN_IF_ERROR(FromVss(bc->SetRestoreState(VSS_RTYPE_BY_COPY), "SetRestoreState"));
  VssStatus pre = WaitFor(bc->PreRestore());

  // A writer that failed PreRestore is not ready for its data: nothing is
  // written, the components are marked not restored, PostRestore still ends
  // the sequence for the writers.
  Status copied = pre.ok() ? OkStatus() : FromVss(pre, "PreRestore");
  Json restored = Json::array();
  for (RestoreItem& item : items) {
    if (!copied.ok()) break;
    StatusOr<uint64_t> data =
        WriteBack(*item.image, *item.target.device, "restoring " + item.volume);
    if (!data.ok()) {
      copied = data.status().WithContext("restoring volume '" + item.volume + "' from " +
                                         item.image_path);
      break;
    }
    restored.push_back({{"volume", item.volume},
                        {"image", item.image_path},
                        {"size", item.image->size()},
                        {"data_bytes", *data}});
  }
  const VSS_FILE_RESTORE_STATUS file_status =
      copied.ok() ? VSS_RS_ALL : (restored.empty() && !pre.ok() ? VSS_RS_NONE : VSS_RS_FAILED);
  for (const ComponentKey& k : keys) {
    VSS_RETURN_IF_ERROR(FromVss(bc->SetFileRestoreStatus(k, file_status),
                                "SetFileRestoreStatus(" + KeyText(k) + ")"));
  }
  VssStatus post = WaitFor(bc->PostRestore());
  std::vector<WriterStatus> writers = WriterStatuses(*bc);

  if (cli.json) {
    PrintJson(Json{{"ok", copied.ok() && post.ok()},
                   {"dir", o.dir},
                   {"set_id", doc.snapshot_set_id.ToString()},
                   {"restored", restored},
                   {"components", keys.size()},
                   {"writers", WriterStatusesToJson(writers)}});
  } else {
    for (const Json& r : restored) {
      std::printf("Restored volume '%s' from %s (%s of data)\n",
                  r["volume"].get<std::string>().c_str(),
                  r["image"].get<std::string>().c_str(),
                  FormatBytes(r["data_bytes"].get<uint64_t>()).c_str());
    }
    std::printf("   %zu components, file restore status %s\n", keys.size(),
                file_status == VSS_RS_ALL    ? "VSS_RS_ALL"
                : file_status == VSS_RS_NONE ? "VSS_RS_NONE"
                                             : "VSS_RS_FAILED");
    PrintWriterLines(writers);
  }
  VSS_RETURN_IF_ERROR(copied);
  if (!post.ok()) return FromVss(post, "PostRestore (the volumes were restored)");
  return OkStatus();
}

// --- Registration ---

void AddListNouns(CLI::App& app, Cli& cli) {
  CLI::App* writers = app.add_subcommand("writers", "VSS writers (like vssadmin list writers)");
  writers->require_subcommand(1);
  CLI::App* wl = writers->add_subcommand(
      "list", "Subscribed writers: state, last event and last error");
  wl->footer(
      "Examples:\n  vssctl writers list\n  vssctl writers list --json\n"
      "Writers of other processes subscribe to vssd; without vssd there are none.");
  wl->callback([&cli] { cli.run = [&cli] { return RunWritersList(cli); }; });

  CLI::App* providers =
      app.add_subcommand("providers", "Shadow copy providers (like vssadmin list providers)");
  providers->require_subcommand(1);
  CLI::App* pl = providers->add_subcommand("list", "Registered providers");
  pl->footer("Example:\n  vssctl providers list --json");
  pl->callback([&cli] { cli.run = [&cli] { return RunProvidersList(cli); }; });
}

void AddBackupRestore(CLI::App& app, Cli& cli) {
  std::vector<std::string> types;
  for (const auto& [name, value] : kBackupTypes) types.push_back(name);

  auto bo = std::make_shared<BackupOptions>();
  CLI::App* backup = app.add_subcommand(
      "backup", "Back up volumes: the VSS requester sequence, a sparse image per shadow");
  backup->add_option("VOLUME", bo->volumes, "Volume names or ids")->required();
  backup->add_option("--to", bo->to, "Backup directory (created; an existing one must be empty)")
      ->type_name("DIR")
      ->required();
  backup->add_option("--type", bo->type, "full (default), copy, incremental, differential, log")
      ->check(CLI::IsMember(types));
  backup->add_option("--context", bo->context, "Shadow copy context (default backup)")
      ->check(CLI::IsMember(VssContextNames()));
  backup->add_option("--base", bo->base,
                     "Previous backup: its components' backup stamps are handed to the "
                     "writers (incremental, differential)")
      ->type_name("DIR");
  backup->add_flag("--keep-shadows", bo->keep_shadows,
                   "Keep the shadow copies after the backup (default: delete them)");
  backup->footer(
      "Writes DIR/VOLUME.img per volume, DIR/backup.json (the backup components\n"
      "document) and, last, DIR/manifest.json (volumes, shadow ids, sizes, XXH3-128\n"
      "checksums of the images, writer states), all synced to the medium before the\n"
      "shadow copies are deleted; files 0600, a created DIR 0700.\n"
      "Examples:\n  vssctl backup disk --to /srv/backup/monday\n"
      "  vssctl backup disk data --to /srv/backup/tuesday --type incremental "
      "--base /srv/backup/monday");
  backup->callback([&cli, bo] {
    if (!bo->base.empty() && bo->type != "incremental" && bo->type != "differential") {
      UsageError("backup: --base goes with --type incremental or differential");
    }
    cli.run = [&cli, bo] { return RunBackup(cli, *bo); };
  });

  auto ro = std::make_shared<RestoreOptions>();
  CLI::App* restore = app.add_subcommand(
      "restore", "Restore volumes from a backup made by vssctl backup");
  restore->add_option("DIR", ro->dir, "Backup directory")->required();
  restore->add_option("--volume", ro->volume, "Only this volume of the backup")
      ->type_name("VOLUME");
  restore->footer(
      "Every image is checked first (a file of the backup directory, of the size in\n"
      "manifest.json, with its XXH3-128 checksum); any mismatch refuses the restore\n"
      "before a volume is touched. Backups without checksums (made by vssctl before\n"
      "manifest version 2) are refused.\n"
      "Each volume must exist with the size it had; it is written through\n"
      "copy-on-write, so its existing shadow copies keep their contents.\n"
      "Examples:\n  vssctl restore /srv/backup/monday\n"
      "  vssctl restore /srv/backup/monday --volume disk");
  restore->callback([&cli, ro] { cli.run = [&cli, ro] { return RunRestore(cli, *ro); }; });
}

}  // namespace

// --- Shared with the other commands (common.h) ---

StatusOr<bool> RevertThroughVssd(Cli& cli, const Guid& shadow, bool force_dismount) {
  ServiceOptions options;
  options.store_dir = cli.resolved_store_dir();
  options.mode = ServiceOptions::Mode::kDaemon;
  VssStatusOr<std::unique_ptr<Service>> service = Service::Connect(options);
  if (!service.ok() && service.status().code() == E_UNEXPECTED) return false;  // no vssd
  if (!service.ok()) return FromVss(service.status(), "");
  VssStatusOr<std::unique_ptr<BackupComponents>> bc = CreateVssBackupComponents(**service);
  if (!bc.ok()) return FromVss(bc.status(), "");
  VSS_RETURN_IF_ERROR(FromVss((*bc)->RevertToSnapshot(shadow, force_dismount),
                              "RevertToSnapshot"));
  return true;
}

std::vector<std::string> VssContextNames() {
  std::vector<std::string> out;
  for (const NamedContext& c : kContexts) out.emplace_back(c.name);
  return out;
}

Status FromVss(const VssStatus& s, const std::string& what) {
  return s.ToStatus(what);
}

Status CreateShadowSetWithRequester(Cli& cli, const RequesterCreateOptions& o) {
  int32_t context = ContextValue(o.context);
  if (o.no_writers) context |= VSS_VOLSNAP_ATTR_NO_WRITERS;
  if (o.no_auto_release) context |= VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE;
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  // vssctl exits right after: the shadows must not be auto-released.
  VSS_ASSIGN_OR_RETURN(context,
                       KeptContext(*service, context, o.context,
                                   "give --no-auto-release, run vssd, or use a persistent "
                                   "context (app-rollback, nas-rollback, client-accessible, "
                                   "client-accessible-writers)"));
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BackupComponents> bc,
                       FromVssOr(service->CreateBackupComponents(), "CreateVssBackupComponents"));
  SetRequest req;
  req.volumes = o.volumes;
  req.context = context;
  // Not a backup: writers must not record it as one (no log truncation).
  req.backup_type = VSS_BT_COPY;
  SetResult set;
  VSS_RETURN_IF_ERROR(CreateSet(cli, *bc, req, set));
  VssStatus complete = WaitFor(bc->BackupComplete());
  std::vector<WriterStatus> writers = WriterStatuses(*bc);

  const bool persistent = (context & VSS_VOLSNAP_ATTR_PERSISTENT) != 0;
  std::string note;
  if (!persistent && !service->remote()) {
    note = "non-persistent shadow copies do not outlive their owner: without vssd they are "
           "removed when a process next opens the volume";
  } else if (!persistent) {
    note = "non-persistent shadow copies held by vssd until deleted or vssd stops";
  }
  std::string created =
      set.shadows.empty() ? Iso8601Now()
                          : engine::TimestampToIso8601(set.shadows.front().creation_timestamp);
  if (cli.json) {
    Json shadows = Json::array();
    for (const SnapshotProp& p : set.shadows) shadows.push_back(ShadowPropToJson(p));
    Json out{{"set_id", set.set_id.ToString()},
             {"created", created},
             {"context", o.context},
             {"context_value", context},
             {"attribute_names", AttributeNames(context)},
             {"service", ServiceKind(*service)},
             {"shadows", shadows},
             {"writers", WriterStatusesToJson(writers)}};
    if (!note.empty()) out["note"] = note;
    PrintJson(out);
  } else {
    std::printf("Created shadow copy set %s at %s (%s, %s)\n", Braced(set.set_id).c_str(),
                created.c_str(), o.context.c_str(), service->Describe().c_str());
    for (const SnapshotProp& p : set.shadows) {
      std::printf("   Shadow Copy ID: %s  Volume: %s\n", Braced(p.snapshot_id).c_str(),
                  p.original_volume_name.c_str());
    }
    std::string attributes;
    for (const auto& a : AttributeNames(context)) attributes += " " + a;
    std::printf("   Attributes:%s\n", attributes.empty() ? " none" : attributes.c_str());
    if (!note.empty()) std::printf("   Note: %s\n", note.c_str());
    if ((context & VSS_VOLSNAP_ATTR_NO_WRITERS) == 0) PrintWriterLines(writers);
  }
  if (!complete.ok()) return FromVss(complete, "BackupComplete (the shadow copies were created)");
  return OkStatus();
}

void AddVssCommands(CLI::App& app, Cli& cli) {
  AddListNouns(app, cli);
  AddBackupRestore(app, cli);
}

}  // namespace vss::tools
