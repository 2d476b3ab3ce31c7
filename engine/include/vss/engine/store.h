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

#include "vss/base/file.h"
#include "vss/base/guid.h"
#include "vss/base/status.h"
#include "vss/engine/types.h"
#include "vss/formats/block_device.h"
#include "vss/formats/driver.h"

namespace vss::metadata {
class Catalog;
}

namespace vss::engine {

class Volume;

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
  // Create: the driver's options ("cluster_size" -> "65536"); a key the
  // driver does not know is kInvalidArgument. Must be empty on add.
  DriverOptions create_options;
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
  // The shadows survive a crash and their owner (ShadowInfo::persistent).
  bool persistent = true;
  // Stored with every shadow of the set as ShadowInfo::properties.
  std::string properties;
  // Ids for the set and its shadows (shadow_ids[i] for volumes[i]), for a
  // caller that hands them out before the commit; generated when absent.
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

  const StoreOptions& options() const { return options_; }
  FileSystem* fs() const { return options_.fs; }

  // Registers an image (creating it first when req.create, 0600) and returns
  // it. The store keeps the image's real path (symbolic links resolved), by
  // which alone it is opened later. Errors: kAlreadyExists (name or path
  // taken; on create, the file exists), kInvalidArgument (chunk size, size),
  // kNotFound (add: no file), kUnsupported (add: the file is a qcow2, QED,
  // VHDX, VHD, VMDK or VDI image, not raw; create: no driver for
  // req.format yet, or one that cannot create), kInvalidArgument (an
  // unknown req.format). Nothing is left behind on failure.
  StatusOr<VolumeInfo> CreateVolume(const CreateVolumeRequest& req);
  // Forgets a volume: its shadows, index and diff-area files are deleted;
  // the image file stays.
  Status RemoveVolume(const Guid& id);

  // Sets the QEMU guest agent socket of the guest running on volume `id`
  // (VolumeInfo::guest_agent; "" clears it) and returns the volume. The
  // socket need not exist yet (the guest may be down). kInvalidArgument: a
  // relative path, or one with a newline or NUL (nothing changed);
  // kNotFound: no such volume.
  StatusOr<VolumeInfo> SetVolumeGuestAgent(const Guid& id, const std::string& socket);

  // Queries. Each reads the catalog as it is now; errors are the catalog's
  // (kCorruption, kIoError, kBusy). Unknown ids are kNotFound naming them.
  // Every volume, ordered by name.
  StatusOr<std::vector<VolumeInfo>> ListVolumes();
  StatusOr<VolumeInfo> FindVolume(const Guid& id);
  // Every shadow, ordered by volume id, then epoch (oldest first).
  StatusOr<std::vector<ShadowInfo>> ListShadows();
  // The shadows of one volume, oldest first; empty for an unknown volume.
  StatusOr<std::vector<ShadowInfo>> ListShadowsOfVolume(const Guid& volume_id);
  // The shadows of one set, ordered as ListShadows; empty for an unknown set.
  StatusOr<std::vector<ShadowInfo>> ListShadowsOfSet(const Guid& set_id);
  StatusOr<ShadowInfo> FindShadow(const Guid& id);
  // Every shadow set, ordered by creation time, then id.
  StatusOr<std::vector<SetInfo>> ListShadowSets();
  // Events, oldest first; only those naming `volume_id` when given.
  StatusOr<std::vector<EventInfo>> ListEvents(std::optional<Guid> volume_id);

  // Resolves a volume name, id or unique id prefix. kNotFound / kInvalidArgument
  // (ambiguous prefix).
  StatusOr<VolumeInfo> ResolveVolume(const std::string& text);
  // Resolves a shadow id or unique prefix ("{...}" accepted).
  StatusOr<ShadowInfo> ResolveShadow(const std::string& text);
  StatusOr<SetInfo> ResolveShadowSet(const std::string& text);

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
  // Records where a shadow is exposed: sets its exposed_name and
  // exposed_path; empty strings clear both. Catalog only; the volume need
  // not be open. kNotFound if the shadow does not exist.
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
  StatusOr<DiffAreaInfo> DiffAreaOf(const Guid& volume_id);

  // Appends an event (see ListEvents); the ids are optional.
  Status RecordEvent(std::optional<Guid> volume, std::optional<Guid> shadow,
                     std::string kind, std::string message);

 private:
  friend metadata::Catalog& CatalogOf(Store& store);
  Store(StoreOptions options, std::unique_ptr<metadata::Catalog> catalog);
  // True when another volume's diff area is the same directory as `dir`.
  StatusOr<bool> DiffAreaShared(const Guid& volume_id, const std::string& dir);
  StatusOr<Volume*> OpenVolumeLocked(const Guid& id);

  StoreOptions options_;
  std::unique_ptr<metadata::Catalog> catalog_;
  std::mutex mu_;  // guards volumes_
  std::vector<std::unique_ptr<Volume>> volumes_;
};

}  // namespace vss::engine
