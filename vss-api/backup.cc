// vss::Backup (vss/api/backup.h): the requester's backup of volumes into a
// directory, durable before the shadows are released.

#include "vss/api/backup.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "backup_dir.h"
#include "requester_devices.h"
#include "vss/engine/store.h"
#include "vss/engine/types.h"
#include "vss/engine/volume.h"
#include "vss/formats/image_writer.h"

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
std::string ImageName(const std::string& volume, const std::string& format) {
  std::string name = volume;
  std::replace(name.begin(), name.end(), '/', '_');
  return name + (format == "raw" ? ".img" : "." + format);
}

// The base backup's manifest, for an incremental image: every volume of
// the request must be in it with its shadow kept, as an image of the same
// format. Empty when there is no base or the backup is raw. Checked before
// any shadow is made.
StatusOr<std::vector<ManifestVolume>> ReadBaseManifest(
    const BackupRequest& req) {
  if (req.format == "raw" || req.base_dir.empty())
    return std::vector<ManifestVolume>();
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BackupSource> source,
                       BackupSource::Open(req.base_dir, {}));
  StatusOr<std::vector<ManifestVolume>> base = source->ReadManifest();
  if (!base.ok()) return base.status().WithContext("--base " + req.base_dir);
  for (const ManifestVolume& v : *base) {
    if (!v.shadows_kept || v.shadow_id.empty()) {
      return FailedPreconditionError(
          "--base " + req.base_dir +
          ": its shadow copies were not kept, so what changed since it is "
          "unknown; "
          "make the base backup with --keep-shadows");
    }
    if (v.format != req.format) {
      return FailedPreconditionError(
          "--base " + req.base_dir + ": volume '" + v.volume + "' is a " +
          v.format + " image there; an incremental " + req.format +
          " backup needs a " + req.format + " base");
    }
  }
  return base;
}

// The relative name of `path` seen from the directory `from` (QEMU
// resolves a relative backing file name against the image's directory).
std::string RelativeTo(const std::string& path, const std::string& from) {
  std::error_code ec;
  std::filesystem::path abs_path = std::filesystem::absolute(path, ec);
  std::filesystem::path abs_from = std::filesystem::absolute(from, ec);
  return abs_path.lexically_normal()
      .lexically_relative(abs_from.lexically_normal())
      .string();
}

// How the image of shadow `p` is made: whole, or with a base the extents
// changed since the base's shadow of the volume, on top of the base's
// image. Fills `v`'s backing and chain.
StatusOr<BackupDir::ImagePlan> PlanImage(
    Service& service, const BackupRequest& req,
    const std::vector<ManifestVolume>& base, const SnapshotProp& p,
    BlockDevice& view, BackedUpVolume& v) {
  BackupDir::ImagePlan plan{.format = req.format,
                            .options = req.image_options};
  if (req.base_dir.empty()) return plan;
  auto it =
      std::find_if(base.begin(), base.end(), [&](const ManifestVolume& m) {
        return m.volume == p.original_volume_name;
      });
  if (it == base.end()) {
    return FailedPreconditionError("--base " + req.base_dir +
                                   " has no backup of volume '" +
                                   p.original_volume_name + "'");
  }
  engine::Store* store = service.store();
  if (store == nullptr) {
    return UnsupportedError(
        "an incremental image backup needs the store in-process; vssd serves "
        "it");
  }
  StatusOr<engine::ShadowInfo> older = store->ResolveShadow(it->shadow_id);
  if (!older.ok()) {
    return FailedPreconditionError("--base " + req.base_dir +
                                   ": its shadow copy {" + it->shadow_id +
                                   "} of volume '" + it->volume +
                                   "' no longer exists; make a full backup");
  }
  VSS_ASSIGN_OR_RETURN(engine::Volume * volume,
                       store->OpenVolume(older->volume_id));
  VSS_ASSIGN_OR_RETURN(auto changed,
                       volume->ChangedExtents(older->id, p.snapshot_id));
  std::vector<Extent> ranges;
  for (const engine::ChangedExtent& c : changed)
    ranges.push_back({c.offset, c.length, true});
  VSS_ASSIGN_OR_RETURN(plan.extents, ExtentsWithin(view, ranges));
  plan.backing = RelativeTo(req.base_dir + "/" + it->image, req.dir);
  v.backing = plan.backing;
  v.chain = {plan.backing};
  for (const std::string& below : it->chain) {
    v.chain.push_back(RelativeTo(req.base_dir + "/" + below, req.dir));
  }
  return plan;
}

// Writes the image of one shadow into `dir`, raw or of an image format.
Status CopyShadow(Service& service, BackupDir& dir, const BackupRequest& req,
                  const std::vector<ManifestVolume>& base,
                  const SnapshotProp& p, BackedUpVolume& v) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BlockDevice> view,
                       OpenShadowView(service, p.snapshot_id, req.open_export));
  BackupDir::ImageResult image;
  if (req.format != "raw") {
    VSS_ASSIGN_OR_RETURN(BackupDir::ImagePlan plan,
                         PlanImage(service, req, base, p, *view, v));
    VSS_ASSIGN_OR_RETURN(image, dir.WriteFormatImage(v.image, *view, plan,
                                                    "copying " + v.volume));
  } else {
    VSS_ASSIGN_OR_RETURN(image,
                         dir.WriteImage(v.image, *view, "copying " + v.volume));
  }
  v.size = image.size;
  v.xxh3_128 = image.xxh3_128;
  v.data_bytes = image.data_bytes;
  return OkStatus();
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
                   const BackupRequest& req,
                   const std::vector<ManifestVolume>& base,
                   const ShadowSetResult& set,
                   std::vector<BackedUpVolume>& out) {
  for (const SnapshotProp& p : set.shadows) {
    BackedUpVolume v{p.original_volume_name, p.snapshot_id,
                     p.snapshot_device_object,
                     ImageName(p.original_volume_name, req.format)};
    v.format = req.format;
    Status s = CopyShadow(service, dir, req, base, p, v);
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
    Json j{{"volume", v.volume},
           {"shadow_id", v.shadow_id.ToString()},
           {"device_object", v.device_object},
           {"image", v.image},
           {"size", v.size},
           {"xxh3_128", v.xxh3_128},
           {"data_bytes", v.data_bytes}};
    if (v.format != "raw") {
      j["format"] = v.format;
      if (!v.backing.empty()) {
        j["backing"] = v.backing;
        j["chain"] = v.chain;
      }
    }
    volumes.push_back(std::move(j));
  }
  // Raw backups keep version 2; an image backup needs readers of version 3.
  const bool images = !r.volumes.empty() && r.volumes.front().format != "raw";
  Json components = Json::array();
  for (const ComponentKey& k : r.components) {
    components.push_back({{"writer_id", k.writer_id.ToString()},
                          {"logical_path", k.logical_path},
                          {"name", k.component_name},
                          {"backup_succeeded", true}});
  }
  Json manifest{
      {"version", images ? kBackupManifestVersionImages : kBackupManifestVersion},
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
  if (req.format != "raw" && !IsWriterFormat(req.format)) {
    return InvalidArgumentError("backup format '" + req.format +
                                "' (raw, qcow2, vhdx, vhd or vmdk)");
  }
  VSS_ASSIGN_OR_RETURN(std::optional<BackupComponentsDocument> base,
                       ReadBase(req.base_dir));
  VSS_ASSIGN_OR_RETURN(std::vector<ManifestVolume> base_images,
                       ReadBaseManifest(req));
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
  VSS_RETURN_IF_ERROR(
      CopyShadows(service, bc, *dir, req, base_images, set, r.volumes));

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
