// vss::Restore (vss/api/backup.h): a backup made by vss::Backup written
// back into the store's volumes, every image checked before any change.

#include <algorithm>

#include "backup_dir.h"
#include "requester_devices.h"
#include "vss/api/backup.h"

namespace vss {
namespace {

constexpr uint64_t kPiece = uint64_t{1} << 20;

std::string KeyText(const ComponentKey& k) {
  return (k.logical_path.empty() ? "" : k.logical_path + "\\") +
         k.component_name;
}

std::vector<ComponentKey> ComponentsOf(const BackupComponentsDocument& doc) {
  std::vector<ComponentKey> out;
  for (const WriterComponents& w : doc.writers) {
    for (const Component& c : w.components()) {
      out.push_back({w.GetWriterInfo().writer_id, c.GetComponentType(),
                     c.GetLogicalPath(), c.GetComponentName()});
    }
  }
  return out;
}

// Makes `dst` equal to the image `src` (same size): its data is written,
// and what is a hole in `src` is zeroed where `dst` holds data. Returns the
// data bytes written.
StatusOr<uint64_t> WriteBack(BlockDevice& src, BlockDevice& dst,
                             const ProgressCallback& callback,
                             const std::string& what) {
  VSS_ASSIGN_OR_RETURN(auto extents, src.Extents(0, src.size()));
  ProgressReporter progress(callback, what, src.size());
  std::vector<uint8_t> buf(std::min(std::max<uint64_t>(src.size(), 1), kPiece));
  uint64_t written = 0;
  for (const Extent& e : extents) {
    if (!e.allocated) {
      VSS_ASSIGN_OR_RETURN(auto old, dst.Extents(e.offset, e.length));
      for (const Extent& o : old) {
        if (o.allocated)
          VSS_RETURN_IF_ERROR(dst.WriteZeroes(o.offset, o.length));
      }
      progress.Add(e.length);
      continue;
    }
    VSS_RETURN_IF_ERROR(
        ForEachPiece(src, e.offset, e.length, buf, progress,
                     [&](uint64_t at, std::span<uint8_t> piece) {
                       written += piece.size();
                       return dst.Write(at, piece);
                     }));
  }
  VSS_RETURN_IF_ERROR(dst.Flush());
  return written;
}

// Opens every target volume and checks its size against its image.
StatusOr<std::vector<LiveVolume>> OpenTargets(Service& service,
                                              VerifiedBackup& backup,
                                              const ExportOpener& open_export) {
  std::vector<LiveVolume> out;
  for (VerifiedBackup::Image& image : backup.images()) {
    StatusOr<LiveVolume> target =
        OpenLiveVolume(service, image.volume, open_export);
    if (!target.ok()) {
      return target.status().WithContext("restoring volume '" + image.volume +
                                         "'");
    }
    if (target->device->size() != image.device->size()) {
      return FailedPreconditionError(
          "volume '" + image.volume + "' is " +
          std::to_string(target->device->size()) +
          " bytes but its backup image " + image.path + " is " +
          std::to_string(image.device->size()) + " bytes; not restoring");
    }
    out.push_back(std::move(target).value());
  }
  return out;
}

// Writes each image back unless PreRestore failed; the first failure stops.
Status CopyImages(VerifiedBackup& backup, std::vector<LiveVolume>& targets,
                  const ProgressCallback& progress, RestoreResult& r) {
  for (size_t i = 0; i < targets.size(); ++i) {
    VerifiedBackup::Image& image = backup.images()[i];
    StatusOr<uint64_t> data = WriteBack(*image.device, *targets[i].device,
                                        progress, "restoring " + image.volume);
    if (!data.ok()) {
      return data.status().WithContext("restoring volume '" + image.volume +
                                       "' from " + image.path);
    }
    r.restored.push_back(
        {image.volume, image.path, image.device->size(), *data});
  }
  return OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<VerifiedBackup>> VerifiedBackup::Open(
    const RestoreRequest& req) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BackupSource> source,
                       BackupSource::Open(req.dir, req.progress));
  StatusOr<std::string> bcd = source->ReadDocument("backup.json");
  if (!bcd.ok() && bcd.status().code() == StatusCode::kNotFound) {
    return NotFoundError(
        req.dir + " has no backup.json: not a backup made by vssctl backup");
  }
  if (!bcd.ok()) return bcd.status();
  VSS_ASSIGN_OR_RETURN(std::vector<ManifestVolume> manifest,
                       source->ReadManifest());
  VssStatusOr<BackupComponentsDocument> doc = BackupComponentsFromJson(*bcd);
  if (!doc.ok()) return StatusFromVss(doc.status(), req.dir + "/backup.json");

  auto out = std::unique_ptr<VerifiedBackup>(new VerifiedBackup());
  out->dir_ = req.dir;
  out->document_ = *bcd;
  out->parsed_ = std::move(doc).value();
  std::string held;
  for (const ManifestVolume& v : manifest) {
    held += (held.empty() ? "" : ", ") + v.volume;
  }
  // Every image is checked (a file inside the backup, of the recorded size,
  // with the recorded checksum) before the store is even opened.
  for (const ManifestVolume& v : manifest) {
    if (!req.volume.empty() && v.volume != req.volume) continue;
    VSS_ASSIGN_OR_RETURN(std::unique_ptr<BlockDevice> device,
                         source->OpenVerifiedImage(v));
    out->images_.push_back(
        {v.volume, source->PathOf(v.image), std::move(device)});
  }
  if (out->images_.empty()) {
    return NotFoundError(
        "volume '" + req.volume + "' is not in the backup in " + req.dir +
        " (it holds: " + (held.empty() ? "nothing" : held) + ")");
  }
  return out;
}

Status RestoreResult::status() const {
  VSS_RETURN_IF_ERROR(copy_status);
  return post_restore.WithContext("PostRestore (the volumes were restored)");
}

StatusOr<RestoreResult> Restore(Service& service, VerifiedBackup& backup,
                                const RestoreRequest& req) {
  VssStatusOr<std::unique_ptr<BackupComponents>> created =
      service.CreateBackupComponents();
  if (!created.ok())
    return StatusFromVss(created.status(), "CreateVssBackupComponents");
  BackupComponents& bc = **created;
  VSS_RETURN_IF_ERROR(StatusFromVss(bc.InitializeForRestore(backup.document()),
                                    "InitializeForRestore"));
  VSS_ASSIGN_OR_RETURN(std::vector<LiveVolume> targets,
                       OpenTargets(service, backup, req.open_export));

  // The restore sequence.
  VSS_RETURN_IF_ERROR(StatusFromVss(WaitForAsync(bc.GatherWriterMetadata()),
                                    "GatherWriterMetadata"));
  RestoreResult r;
  r.set_id = backup.parsed().snapshot_set_id;
  r.components = ComponentsOf(backup.parsed());
  for (const ComponentKey& k : r.components) {
    VSS_RETURN_IF_ERROR(
        StatusFromVss(bc.SetSelectedForRestore(k, true),
                      "SetSelectedForRestore(" + KeyText(k) + ")"));
  }
  VSS_RETURN_IF_ERROR(
      StatusFromVss(bc.SetRestoreState(VSS_RTYPE_BY_COPY), "SetRestoreState"));
  VssStatus pre = WaitForAsync(bc.PreRestore());
  // A writer that failed PreRestore is not ready for its data: nothing is
  // written, the components are marked not restored, PostRestore still ends
  // the sequence for the writers.
  r.copy_status = pre.ok() ? CopyImages(backup, targets, req.progress, r)
                           : StatusFromVss(pre, "PreRestore");
  r.file_status = r.copy_status.ok()                  ? VSS_RS_ALL
                  : (r.restored.empty() && !pre.ok()) ? VSS_RS_NONE
                                                      : VSS_RS_FAILED;
  for (const ComponentKey& k : r.components) {
    VSS_RETURN_IF_ERROR(
        StatusFromVss(bc.SetFileRestoreStatus(k, r.file_status),
                      "SetFileRestoreStatus(" + KeyText(k) + ")"));
  }
  r.post_restore = StatusFromVss(WaitForAsync(bc.PostRestore()));
  r.writers = GatherWriterStatuses(bc);
  return r;
}

StatusOr<RestoreResult> Restore(Service& service, const RestoreRequest& req) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<VerifiedBackup> backup,
                       VerifiedBackup::Open(req));
  return Restore(service, *backup, req);
}

}  // namespace vss
