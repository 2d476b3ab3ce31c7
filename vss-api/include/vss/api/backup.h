// The requester as a library: a shadow copy set made by the VSS sequence,
// a backup of volumes into a directory, and a restore from one.
//
// These calls drive a BackupComponents through a Service in VSS's order
// (VSS-REFERENCE.md, "Order of a backup" and "Order of a restore") and
// return what happened as result structs; they print nothing. `vssctl
// backup` and `vssctl restore` are thin command lines over them, and any
// program built on the installed package can call them:
//
//   auto service = vss::Service::Connect({.store_dir = "/srv/vss"});
//   vss::BackupRequest req{.volumes = {"disk"}, .dir = "/srv/backup/mon"};
//   vss::StatusOr<vss::BackupResult> r = vss::Backup(**service, req);
//   ...
//   vss::Restore(**service, {.dir = "/srv/backup/mon"});
//
// A backup directory holds (all files 0600, a directory we create 0700):
// VOLUME.img, one sparse raw image per volume with the shadow's bytes (or
// VOLUME.FORMAT with format "qcow2", "vhdx", "vhd" or "vmdk": a full image
// of that format, or with a base an incremental one whose backing file
// (parent) is the base's image);
// backup.json, the backup components document; manifest.json, written last,
// whose presence marks a complete backup (its fields: vss-api/backup_dir.h).
// Everything is synced to the medium before the shadows are released, so a
// crash never leaves a backup that looks complete but is not. Restore
// checks every image (size and XXH3-128 against the manifest; for an image
// format, of the guest-visible bytes read through the registry's driver with
// the image's backing chain) before any volume is touched, and writes volumes
// through copy-on-write, so their existing shadows keep their contents.
//
// Reading shadows and writing volumes: in-process, the Service's store has
// the volumes open, and they are read and written through the engine.
// Through vssd the daemon holds the volumes, so the bytes go through its
// NBD exports ("shadow/<id>" and "live/<volume>"); the caller supplies the
// client for them (`open_export`).
//
// Errors are Status values whose messages carry the VSS error name
// ("DoSnapshotSet: VSS_E_BAD_STATE (0x80042301): ..."). Progress is
// reported through an optional callback, on the calling thread.
//
// Thread safety: each call runs on the calling thread and uses the
// Service and BackupComponents it is given for its duration; concurrent
// calls need their own BackupComponents (and their own directories).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "vss/api/async.h"
#include "vss/api/backup_components.h"
#include "vss/api/components.h"
#include "vss/api/coordinator.h"
#include "vss/api/hresult.h"
#include "vss/api/service.h"
#include "vss/api/types.h"
#include "vss/base/guid.h"
#include "vss/base/status.h"
#include "vss/formats/block_device.h"

namespace vss {

// --- Errors and small helpers of a requester ---

// A VSS error as a Status whose message carries the VSS name ("what:
// VSS_E_BAD_STATE (0x80042301): ..."); OK stays OK. The code follows the
// HResult (VSS_E_OBJECT_NOT_FOUND: kNotFound, VSS_E_BAD_STATE:
// kFailedPrecondition, ...; kInternal for the rest).
Status StatusFromVss(const VssStatus& s, const std::string& what = "");

// Waits for an asynchronous VSS operation: OK when it finished, else its
// failure (a cancellation counts as one: "the operation was cancelled").
VssStatus WaitForAsync(VssStatusOr<std::shared_ptr<Async>> op);

// GatherWriterStatus, then every writer's status (state, last event, last
// failure). Writers whose status cannot be read are left out.
std::vector<WriterStatus> GatherWriterStatuses(BackupComponents& bc);

// "VSS_WS_STABLE", ... for a writer state; its number when unknown.
std::string WriterStateName(VSS_WRITER_STATE state);
// The statuses as a JSON array (text) of objects with the fields "name",
// "instance_name", "writer_id", "instance_id", "state", "state_name",
// "last_event", "last_error", "last_error_name", "application_hr",
// "message": the form manifest.json records them in.
std::string WriterStatusesJson(const std::vector<WriterStatus>& writers);

// The contexts as requesters name them: "backup", "file-share-backup",
// "app-rollback", "nas-rollback", "client-accessible",
// "client-accessible-writers".
std::vector<std::string> ContextNames();
// The VSS_CTX_* value of a name of ContextNames(); kInvalidArgument
// naming it otherwise.
StatusOr<int32_t> ContextFromName(const std::string& name);
// The backup types by name: "full", "copy", "incremental",
// "differential", "log" (in that order).
std::vector<std::string> BackupTypeNames();
// kInvalidArgument naming `name` when it is not one of BackupTypeNames().
StatusOr<VSS_BACKUP_TYPE> BackupTypeFromName(const std::string& name);
// The name of a backup type ("full", ...), or its number.
std::string BackupTypeName(VSS_BACKUP_TYPE type);

// A step of long work: `what` ("copying disk", "verifying DIR/disk.img",
// "restoring disk") has done `done` of `total` bytes. Each piece of work
// starts with done == 0 and ends with `finished` (done may then be short
// of total when the work failed).
struct ProgressEvent {
  std::string what;
  uint64_t done = 0;
  uint64_t total = 0;
  bool finished = false;
};
using ProgressCallback = std::function<void(const ProgressEvent&)>;

// A sequence that failed after StartSnapshotSet and was aborted
// (AbortBackup): which step failed, the error, and what each writer says.
struct AbortReport {
  std::string what;  // "DoSnapshotSet", "copying shadow copy {id} of ..."
  Status error;      // as the call returns it
  std::vector<WriterStatus> writers;
};
using AbortCallback = std::function<void(const AbortReport&)>;

// Opens an NBD export of vssd ("shadow/<id>" read-only, "live/<volume>"
// read-write) of the Service's store. Only used through vssd.
using ExportOpener = std::function<StatusOr<std::unique_ptr<BlockDevice>>(
    const std::string& export_name)>;

// --- A shadow copy set through the requester sequence ---

struct ShadowSetRequest {
  std::vector<std::string> volumes;  // names or ids
  int32_t context = VSS_CTX_BACKUP;  // VSS_CTX_* | VSS_VOLSNAP_ATTR_*
  VSS_BACKUP_TYPE backup_type = VSS_BT_FULL;
  // Add every component the writers report (component mode); falls back
  // to volume mode when no writer reports one.
  bool select_components = false;
  // The previous backup's document: its backup stamps become the previous
  // stamps of the same components (incremental / differential). Not owned.
  BackupComponentsDocument* base = nullptr;
  // Told of a failure after StartSnapshotSet, once, before the call returns.
  AbortCallback on_aborted;
};

struct ShadowSetResult {
  Guid set_id;
  std::vector<SnapshotProp> shadows;  // in the order of the volumes
  std::vector<ComponentKey> components;
  size_t previous_stamps = 0;  // components given a previous stamp
};

// InitializeForBackup, SetContext, SetBackupState, GatherWriterMetadata
// (unless VSS_VOLSNAP_ATTR_NO_WRITERS), [AddComponent...],
// StartSnapshotSet, AddToSnapshotSet..., PrepareForBackup, DoSnapshotSet,
// GetSnapshotProperties. A failure before StartSnapshotSet changes nothing;
// a later one aborts the backup (AbortBackup) and is reported to
// `on_aborted`. REQUIRES: `bc` is fresh (not initialized).
StatusOr<ShadowSetResult> CreateShadowSet(BackupComponents& bc,
                                          const ShadowSetRequest& req);

// The context to use for shadows that must outlive the requester's
// process: unchanged when persistent or NO_AUTO_RELEASE already; with
// VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE added through vssd (the daemon holds
// them). In-process, an auto-release context is kFailedPrecondition: the
// message names the context (`context_name`), the program (`program`)
// whose exit would release them and the store, and ends with `hint`.
StatusOr<int32_t> KeptContext(const Service& service, int32_t context,
                              const std::string& context_name,
                              const std::string& program,
                              const std::string& hint);

// --- Backup ---

struct BackupRequest {
  std::vector<std::string> volumes;  // names or ids
  // The backup directory: created (0700), or an existing empty directory.
  std::string dir;
  VSS_BACKUP_TYPE backup_type = VSS_BT_FULL;
  // The shadows' context. With keep_shadows it must keep them past this
  // process (see KeptContext): kFailedPrecondition otherwise.
  int32_t context = VSS_CTX_BACKUP;
  // The context's name recorded in the manifest; empty: the name of
  // `context` (ContextNames()), or its number.
  std::string context_name;
  // A previous backup directory (incremental, differential): its
  // components' backup stamps are handed to the writers. Empty: none.
  std::string base_dir;
  bool keep_shadows = false;  // else the set is deleted at the end
  // "raw" (VOLUME.img) or an image format of kWriterFormats
  // (vss/formats/image_writer.h: VOLUME.qcow2, .vhdx, .vhd, .vmdk). An
  // image backup with `base_dir` stores only the extents changed since the
  // base's shadow of the volume, with the base's image (of the same format)
  // as its backing file or parent (a name relative to `dir`): the base must
  // have kept its shadows (kFailedPrecondition otherwise, before anything
  // is made), and the changes are known only in-process (kUnsupported
  // through vssd).
  std::string format = "raw";
  // The image writer's options (ImageWriterRequest::options: "subformat",
  // "compress", ...), for a format other than raw.
  std::map<std::string, std::string> image_options;
  ProgressCallback progress;
  AbortCallback on_aborted;
  // Through vssd: reads the shadows. Required then (kUnsupported without).
  ExportOpener open_export;
  // Called once the backup is durable and complete, just before the shadows
  // are released (a test's fault point). May be empty.
  std::function<void()> before_release;
};

struct BackedUpVolume {
  std::string volume;  // the store's volume name
  Guid shadow_id;
  std::string device_object;
  std::string image;        // file name in the backup directory
  uint64_t size = 0;        // bytes of the volume (and of a raw image)
  std::string xxh3_128;     // hex, of every byte the image reads as
  uint64_t data_bytes = 0;  // non-zero bytes written
  std::string format = "raw";  // "raw" or an image format
  // an incremental: the backing file as stored in the image (relative
  // to the backup directory), and the whole chain below it, nearest first.
  std::string backing;
  std::vector<std::string> chain;
};

struct BackupResult {
  std::string dir;
  Guid set_id;
  std::string context_name;
  int32_t context = 0;  // as used (KeptContext applied)
  VSS_BACKUP_TYPE backup_type = VSS_BT_FULL;
  std::vector<BackedUpVolume> volumes;   // in the order of the request
  std::vector<ComponentKey> components;  // backed up, each marked succeeded
  std::string base_dir;                  // the request's; empty: no base
  size_t previous_stamps = 0;  // with a base: components given its stamps
  std::vector<WriterStatus> writers;  // after BackupComplete
  // The writers' answer to BackupComplete. The backup is complete either
  // way; a failure here means a writer did not record it.
  Status backup_complete;
  bool shadows_kept = false;
  // The text of manifest.json as written (JSON).
  std::string manifest;
};

// Backs up `req.volumes`: the shadow set (CreateShadowSet, every component
// selected, in `req.context`), a sparse image per shadow synced and read
// back against its checksum, SetBackupSucceeded and BackupComplete,
// backup.json and last manifest.json, all durable; then the set is deleted
// unless `keep_shadows`. On failure the files this call made are removed
// (and `dir` if it made it) and the shadows are deleted; errors name the
// step, the volume or the file. A BackupComplete failure is not an error of
// the call: see BackupResult::backup_complete.
StatusOr<BackupResult> Backup(Service& service, const BackupRequest& req);

// --- Restore ---

struct RestoreRequest {
  std::string dir;     // a backup directory made by Backup
  std::string volume;  // only this volume of the backup; empty: all
  ProgressCallback progress;
  // Through vssd: writes the volumes. Required then (kUnsupported without).
  ExportOpener open_export;
};

// A backup directory opened for restore, every image checked (a regular
// file of the backup, of the manifest's size, with its XXH3-128). Holds
// the verified images open.
class VerifiedBackup {
 public:
  struct Image {
    std::string volume;
    std::string path;  // DIR/FILE, for messages
    std::unique_ptr<BlockDevice> device;
  };
  // Reads DIR/backup.json and DIR/manifest.json and checks the images of
  // the volumes to restore (`req.volume`, or all). kNotFound when DIR has
  // no backup.json or the volume is not in the backup; kCorruption naming
  // the file and what is wrong; kUnsupported for a backup without
  // checksums. Opens no store.
  static StatusOr<std::unique_ptr<VerifiedBackup>> Open(
      const RestoreRequest& req);

  const std::string& dir() const { return dir_; }
  const std::string& document() const { return document_; }  // backup.json
  const BackupComponentsDocument& parsed() const { return parsed_; }
  std::vector<Image>& images() { return images_; }

 private:
  std::string dir_;
  std::string document_;
  BackupComponentsDocument parsed_;
  std::vector<Image> images_;
};

struct RestoredVolume {
  std::string volume;
  std::string image;  // DIR/FILE
  uint64_t size = 0;
  uint64_t data_bytes = 0;  // bytes of data written (holes are zeroed)
};

struct RestoreResult {
  Guid set_id;  // of the backup
  std::vector<RestoredVolume> restored;
  std::vector<ComponentKey> components;  // every component of the document
  VSS_FILE_RESTORE_STATUS file_status = VSS_RS_UNDEFINED;
  std::vector<WriterStatus> writers;  // after PostRestore
  // PreRestore's or the copy's failure (then nothing more is written).
  Status copy_status;
  // PostRestore's failure (the volumes were restored).
  Status post_restore;
  // OK when both are; else the first failure, as a command reports it.
  Status status() const;
};

// Restores `backup` into the store: InitializeForRestore, each volume
// opened and checked to have the image's size, GatherWriterMetadata,
// SetSelectedForRestore of every component, SetRestoreState (by copy),
// PreRestore, the images written back (data written, holes zeroed),
// SetFileRestoreStatus, PostRestore. An error before PreRestore changes
// nothing and is returned. A PreRestore, copy or PostRestore failure is in
// the result (copy_status, post_restore): the writers' sequence was
// finished either way.
StatusOr<RestoreResult> Restore(Service& service, VerifiedBackup& backup,
                                const RestoreRequest& req);
// VerifiedBackup::Open(req), then Restore.
StatusOr<RestoreResult> Restore(Service& service, const RestoreRequest& req);

}  // namespace vss
