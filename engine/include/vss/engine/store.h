// Store: one vss store (a directory holding catalog.db and, by default, the
// diff areas under diff/<volume-id>/) and the engine's entry point.
//
// The Store owns the catalog and the volumes it has opened. Volumes are
// image files registered in the catalog; opening one takes an exclusive
// advisory lock on its image, so only one process writes a volume at a time
// (another process gets kBusy naming the holder). Shadow sets span one or
// more volumes of a store and are committed in one catalog transaction while
// writes to all of them are held.
//
// Thread safety: all methods may be called from many threads. Volume
// objects returned stay valid until CloseVolume/RemoveVolume or the Store is
// destroyed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vss/formats/block_device.h"
#include "vss/base/file.h"
#include "vss/base/guid.h"
#include "vss/metadata/catalog.h"
#include "vss/base/status.h"

namespace vss::engine {

class Volume;

// VSS snapshot contexts and attribute bits the engine knows about (values are
// VSS's). The VSS layer defines the full set; these are what the engine needs
// to decide persistence.
inline constexpr int32_t kAttrPersistent = 0x1;
inline constexpr int32_t kAttrClientAccessible = 0x4;
inline constexpr int32_t kAttrNoAutoRelease = 0x8;
inline constexpr int32_t kAttrNoWriters = 0x10;
inline constexpr int32_t kAttrExposedLocally = 0x100000;
inline constexpr int32_t kAttrDifferential = 0x20000;
inline constexpr int32_t kCtxBackup = 0x0;
inline constexpr int32_t kCtxFileShareBackup = 0x10;
inline constexpr int32_t kCtxNasRollback = 0x19;
inline constexpr int32_t kCtxAppRollback = 0x9;
inline constexpr int32_t kCtxClientAccessible = 0x1d;
inline constexpr int32_t kCtxClientAccessibleWriters = 0xd;
// VSS_SNAPSHOT_STATE values used by the engine.
inline constexpr int32_t kStateCreated = 12;
// The software provider's id.
inline constexpr const char* kSoftwareProviderId =
    "b5946137-7b9f-4925-af80-51abd60b20d5";

inline constexpr uint32_t kDefaultChunkSize = 64 * 1024;

// Opens the block device behind an image path (creating an image of `size`
// bytes when `create`). A test hook: by default (StoreOptions::open_image
// null) the store opens each volume with the driver of its format from
// DriverRegistry::Default() (vss/formats/registry.h).
using ImageOpener = std::function<StatusOr<std::unique_ptr<BlockDevice>>(
    const std::string& path, bool create, uint64_t size)>;

struct StoreOptions {
  std::string dir;                      // the store directory
  FileSystem* fs = nullptr;             // diff-area files; null = default
  // The catalog's files (catalog.db and its WAL); null = the OS through
  // SQLite's own VFS. Tests put it on the power-loss file system. Not null:
  // one process at a time may open the store (see metadata/fs_vfs.h).
  FileSystem* catalog_fs = nullptr;
  ImageOpener open_image;               // null = the format's driver
  // Index rows kept in memory before they are written to the catalog.
  size_t index_flush_rows = 8192;
  // Size at which a segment file is closed and a new one started.
  uint64_t segment_bytes = uint64_t{1} << 30;
  // Flush volumes (index to the catalog, images) when the Store is
  // destroyed. Crash tests set it false so that destruction does no I/O, as
  // if the process had died.
  bool flush_on_close = true;
};

struct CreateVolumeRequest {
  std::string path;                // image file
  std::optional<uint64_t> size;    // create: required; add: must be absent
  std::string name;                // empty: the file's base name
  uint32_t chunk_size = kDefaultChunkSize;
  bool create = true;              // false: register an existing image
  // The image format (a driver name of vss/formats/registry.h). Empty:
  // "raw" on create; on add, the format the file's header shows.
  std::string format;
};

// One shadow of a created set.
struct CreatedShadow {
  Guid shadow_id;
  Guid volume_id;
};
struct CreatedSet {
  Guid set_id;
  int64_t created = 0;
  std::vector<CreatedShadow> shadows;
};

struct CreateSetRequest {
  std::vector<Guid> volumes;         // one or more distinct volumes
  int32_t context = kCtxClientAccessible;
  int32_t extra_attributes = 0;      // OR'ed with the context's bits
  // Ids for the set and its shadows (shadow_ids[i] for volumes[i]), as a
  // VSS requester hands them out before the commit; generated when absent.
  // kInvalidArgument if shadow_ids is neither empty nor one per volume.
  std::optional<Guid> set_id;
  std::vector<Guid> shadow_ids;
  // Called after writes to every volume are held and flushed, just before
  // the catalog commit; a non-OK return aborts the set (nothing created).
  std::function<Status()> on_hold;
};

// A change since a shadow, in bytes of the volume.
struct ChangedExtent {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// The store used when none is given: $VSS_STORE, else $XDG_DATA_HOME/vss,
// else ~/.local/share/vss.
std::string DefaultStoreDir();

class Store {
 public:
  // Opens the store at options.dir, creating the directory (0700) and
  // catalog if missing. Finishes interrupted operations lazily, per volume,
  // on open. A catalog that cannot be the one the store had is kCorruption
  // naming the file, never a new store: catalog.db empty, not a database,
  // damaged or without schema, or missing while the store still holds diff
  // areas (STORE/diff not empty) or a catalog log (catalog.db-wal).
  static StatusOr<std::unique_ptr<Store>> Open(StoreOptions options);
  ~Store();

  metadata::Catalog& catalog() { return *catalog_; }
  const StoreOptions& options() const { return options_; }
  FileSystem* fs() const { return options_.fs; }

  // Registers an image (creating it first when req.create, 0600) and returns
  // its row. The row keeps the image's real path (symbolic links resolved),
  // by which alone it is opened later. Errors: kAlreadyExists (name or path
  // taken; on create, the file exists), kInvalidArgument (chunk size, size),
  // kNotFound (add: no file), kUnsupported (add: the file is a qcow2, QED,
  // VHDX, VHD, VMDK or VDI image, not raw; create: no driver for
  // req.format yet, or one that cannot create), kInvalidArgument (an
  // unknown req.format). Nothing is left behind on failure.
  StatusOr<metadata::VolumeRow> CreateVolume(const CreateVolumeRequest& req);
  // Forgets a volume: its shadows, index and diff-area files are deleted;
  // the image file stays.
  Status RemoveVolume(const Guid& id);

  // Resolves a volume name, id or unique id prefix. kNotFound / kInvalidArgument
  // (ambiguous prefix).
  StatusOr<metadata::VolumeRow> ResolveVolume(const std::string& text);
  // Resolves a shadow id or unique prefix ("{...}" accepted).
  StatusOr<metadata::ShadowRow> ResolveShadow(const std::string& text);
  StatusOr<metadata::ShadowSetRow> ResolveShadowSet(const std::string& text);

  // Opens (or returns the already open) volume: locks the image, loads the
  // index, indexes segment tails, finishes an interrupted revert, removes
  // non-persistent shadows left by a previous owner (with an event).
  // Refused (nothing changed): kFailedPrecondition when the image path is or
  // leads through a symbolic link, or when another volume's diff area is the
  // same directory (a store of an older version); kUnsupported when the
  // image's header has become another disk-image format.
  StatusOr<Volume*> OpenVolume(const Guid& id);
  // Flushes and closes an open volume (its lock is released).
  Status CloseVolume(const Guid& id);

  // Creates one shadow per volume at one instant (opening volumes as needed).
  StatusOr<CreatedSet> CreateShadowSet(const CreateSetRequest& req);
  // Deletes one shadow; records the previous shadow still needs are handed
  // to it. kNotFound if unknown.
  Status DeleteShadow(const Guid& shadow_id);
  // Reverts the shadow's volume to it; it and newer shadows are removed.
  Status RevertToShadow(const Guid& shadow_id);
  // Records where a shadow is exposed (as VSS's ExposeSnapshot): sets its
  // exposed_name and exposed_path and the EXPOSED_LOCALLY attribute; empty
  // strings clear all three. Catalog only; the volume need not be open.
  // kNotFound if the shadow does not exist.
  Status SetShadowExposure(const Guid& shadow_id, const std::string& name,
                           const std::string& path);

  // Diff areas: where a volume's records go and how big they may grow.
  // AddDiffArea puts the volume's segment files in `dir`/<volume-id>/
  // (directories made 0700 and synced; `dir` is resolved to its real path),
  // so that several volumes may name one directory and each keeps its own
  // segments. Fails with kAlreadyExists if the volume already has its diff
  // area elsewhere, kFailedPrecondition if it has shadows, kNotFound for an
  // unknown volume.
  Status AddDiffArea(const Guid& volume_id, const std::string& dir,
                     int64_t max_bytes);
  Status ResizeDiffArea(const Guid& volume_id, int64_t max_bytes);
  // The diff area of a volume (the default one when none was added).
  StatusOr<metadata::DiffAreaRow> DiffAreaOf(const Guid& volume_id);

  Status RecordEvent(std::optional<Guid> volume, std::optional<Guid> shadow,
                     std::string kind, std::string message);

 private:
  Store(StoreOptions options, std::unique_ptr<metadata::Catalog> catalog);
  // True when another volume's diff area is the same directory as `da`.
  StatusOr<bool> DiffAreaShared(const metadata::DiffAreaRow& da);
  StatusOr<Volume*> OpenVolumeLocked(const Guid& id);

  StoreOptions options_;
  std::unique_ptr<metadata::Catalog> catalog_;
  std::mutex mu_;  // guards volumes_
  std::vector<std::unique_ptr<Volume>> volumes_;
};

}  // namespace vss::engine
