// vss::Backup (vss/api/backup.h): the requester's backup of volumes into a
// directory, durable before the shadows are released.

#include "vss/api/backup.h"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "backup_dir.h"
#include "requester_devices.h"
#include "vss/engine/types.h"

namespace vss {
namespace {

using Json = nlohmann::json;

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

StatusOr<std::optional<BackupComponentsDocument>> ReadBase(
    const std::string& base_dir) {
  if (base_dir.empty()) return std::optional<BackupComponentsDocument>();
  StatusOr<std::string> text = ReadFile(base_dir + "/backup.json");
  if (!text.ok())
    return text.status().WithContext("--base " + base_dir + ": no backup.json");
  VssStatusOr<BackupComponentsDocument> doc = BackupComponentsFromJson(*text);
  if (!doc.ok())
    return StatusFromVss(doc.status(), "--base " + base_dir + "/backup.json");
  return std::optional<BackupComponentsDocument>(std::move(doc).value());
}

// Deletes the set's shadows; the error names what is left.
Status DeleteSet(BackupComponents& bc, const Guid& set_id) {
  VssStatusOr<BackupComponents::DeleteResult> r =
      bc.DeleteSnapshots(set_id, VSS_OBJECT_SNAPSHOT_SET, true);
  if (!r.ok()) {
    return StatusFromVss(
        r.status(), "deleting shadow copy set {" + set_id.ToString() + "}");
  }
  return OkStatus();
}

// Copies each shadow into a sparse image, each one synced and read back
// against its checksum (BackupDir::WriteImage), then syncs their names.
// On failure the set is deleted and the backup aborted.
Status CopyShadows(Service& service, BackupComponents& bc, BackupDir& dir,
                   const BackupRequest& req, const ShadowSetResult& set,
                   std::vector<BackedUpVolume>& out) {
  for (const SnapshotProp& p : set.shadows) {
    BackedUpVolume v{p.original_volume_name, p.snapshot_id,
                     p.snapshot_device_object,
                     ImageName(p.original_volume_name)};
    Status s = [&]() -> Status {
      VSS_ASSIGN_OR_RETURN(
          std::unique_ptr<BlockDevice> view,
          OpenShadowView(service, p.snapshot_id, req.open_export));
      VSS_ASSIGN_OR_RETURN(
          BackupDir::ImageResult image,
          dir.WriteImage(v.image, *view, "copying " + v.volume));
      v.size = image.size;
      v.xxh3_128 = image.xxh3_128;
      v.data_bytes = image.data_bytes;
      return OkStatus();
    }();
    if (!s.ok()) {
      DeleteSet(bc, set.set_id).IgnoreError();
      return AbortAfterSet(bc, req.on_aborted,
                           "copying shadow copy {" + p.snapshot_id.ToString() +
                               "} of volume '" + v.volume + "'",
                           s);
    }
    out.push_back(std::move(v));
  }
  // Orders the images' names (their bytes were synced one by one) before
  // BackupComplete: a writer may truncate its logs once told the backup
  // succeeded, so the data must be on the medium first.
  if (Status s = dir.SyncNames(); !s.ok()) {
    DeleteSet(bc, set.set_id).IgnoreError();
    return AbortAfterSet(bc, req.on_aborted, "syncing the backup directory", s);
  }
  return OkStatus();
}

// manifest.json (backup_dir.h gives the fields restore relies on).
std::string ManifestText(const Service& service, const BackupResult& r) {
  Json volumes = Json::array();
  for (const BackedUpVolume& v : r.volumes) {
    volumes.push_back({{"volume", v.volume},
                       {"shadow_id", v.shadow_id.ToString()},
                       {"device_object", v.device_object},
                       {"image", v.image},
                       {"size", v.size},
                       {"xxh3_128", v.xxh3_128},
                       {"data_bytes", v.data_bytes}});
  }
  Json components = Json::array();
  for (const ComponentKey& k : r.components) {
    components.push_back({{"writer_id", k.writer_id.ToString()},
                          {"logical_path", k.logical_path},
                          {"name", k.component_name},
                          {"backup_succeeded", true}});
  }
  Json manifest{
      {"version", kBackupManifestVersion},
      {"created", engine::TimestampToIso8601(engine::NowTimestamp())},
      {"store", service.store_dir()},
      {"service", service.remote() ? "vssd" : "in-process"},
      {"context", r.context_name},
      {"context_value", r.context},
      {"backup_type", BackupTypeName(r.backup_type)},
      {"set_id", r.set_id.ToString()},
      {"volumes", volumes},
      {"components", components},
      {"writers", Json::parse(WriterStatusesJson(r.writers))},
      {"backup_complete",
       r.backup_complete.ok() ? "ok" : r.backup_complete.message()},
      {"shadows_kept", r.shadows_kept}};
  if (!r.base_dir.empty()) {
    manifest["base"] = r.base_dir;
    manifest["previous_stamps"] = r.previous_stamps;
  }
  return manifest.dump(2) + "\n";
}

// backup.json, then manifest.json, each durable, then the names.
Status WriteDocuments(BackupDir& dir, const std::string& bcd,
                      const BackupResult& r) {
  // backup.json before manifest.json: the manifest is the mark of a
  // complete backup, so it is the last name to appear (each document is
  // fsync'ed before its rename, see WriteDocument).
  VSS_RETURN_IF_ERROR(dir.WriteDocument("backup.json", bcd));
  VSS_RETURN_IF_ERROR(dir.WriteDocument("manifest.json", r.manifest));
  // Orders the renames of backup.json and manifest.json (and the images'
  // names) before the release of the shadows.
  VSS_RETURN_IF_ERROR(dir.SyncNames());
  // Orders the backup directory's own entry (new when it was created)
  // before the release of the shadows: without it a crash could lose the
  // whole directory after the shadows are gone.
  return dir.SyncParent();
}

}  // namespace

StatusOr<BackupResult> Backup(Service& service, const BackupRequest& req) {
  VSS_ASSIGN_OR_RETURN(std::optional<BackupComponentsDocument> base,
                       ReadBase(req.base_dir));
  BackupResult r;
  r.dir = req.dir;
  r.backup_type = req.backup_type;
  r.context_name =
      req.context_name.empty() ? ContextNameOf(req.context) : req.context_name;
  r.context = req.context;
  r.shadows_kept = req.keep_shadows;
  if (base) r.base_dir = req.base_dir;
  if (req.keep_shadows) {
    VSS_ASSIGN_OR_RETURN(
        r.context, KeptContext(service, req.context, r.context_name,
                               "this process", "use a persistent context"));
  }
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BackupDir> dir,
                       BackupDir::Create(req.dir, req.progress));
  VssStatusOr<std::unique_ptr<BackupComponents>> created =
      service.CreateBackupComponents();
  if (!created.ok())
    return StatusFromVss(created.status(), "CreateVssBackupComponents");
  BackupComponents& bc = **created;
  ShadowSetRequest set_req{
      req.volumes,   r.context, req.backup_type, true, base ? &*base : nullptr,
      req.on_aborted};
  VSS_ASSIGN_OR_RETURN(ShadowSetResult set, CreateShadowSet(bc, set_req));
  r.set_id = set.set_id;
  r.components = set.components;
  r.previous_stamps = set.previous_stamps;
  VSS_RETURN_IF_ERROR(CopyShadows(service, bc, *dir, req, set, r.volumes));

  // The backup is in the directory: tell the writers.
  for (const ComponentKey& k : set.components) {
    VSS_RETURN_IF_ERROR(
        StatusFromVss(bc.SetBackupSucceeded(k, true), "SetBackupSucceeded"));
  }
  VssStatus complete = WaitForAsync(bc.BackupComplete());
  r.writers = GatherWriterStatuses(bc);
  VssStatusOr<std::string> bcd = bc.SaveAsJson();
  if (!bcd.ok()) return StatusFromVss(bcd.status(), "SaveAsJson");
  r.backup_complete = StatusFromVss(complete);
  r.manifest = ManifestText(service, r);
  VSS_RETURN_IF_ERROR(WriteDocuments(*dir, *bcd, r));
  // The backup is durable and complete: from here the shadows may go.
  if (req.before_release) req.before_release();
  dir->Commit();
  if (!req.keep_shadows) {
    if (Status s = DeleteSet(bc, set.set_id); !s.ok()) {
      return s.WithContext("the backup in " + req.dir + " is complete");
    }
  }
  return r;
}

}  // namespace vss
