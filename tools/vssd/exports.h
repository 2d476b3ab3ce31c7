// ExportRegistry: the NBD exports of one store, by name.
//
//   live/<volume>     the volume (name, id or unique id prefix), read-write
//                     through the engine: every write goes through
//                     copy-on-write.
//   shadow/<shadow>   a shadow (id or unique prefix), read-only.
//
// Names are resolved against the catalog on every lookup, so volumes and
// shadows created by another process (vssctl) appear without a restart.
// A volume is opened (and its image locked) when the first connection to
// one of its exports goes into transmission, and closed (flushed, lock
// released) when the last one leaves; while no client uses a volume,
// vssctl may work on it.
//
// Meta contexts: "base:allocation" on every export; "vss:changed:<shadow>"
// on live/<volume> for each shadow of the volume (extents changed since that
// shadow) and on shadow/<S> for each older shadow of the same volume
// (extents changed between it and S).
//
// Thread safety: all methods may be called from many threads. An
// OpenExport must be destroyed before the registry.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "vss/formats/block_device.h"
#include "vss/api/provider.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/base/guid.h"
#include "vss/engine/types.h"
#include "vss/base/status.h"

namespace vss::vssd {

// What the handshake needs to know about an export (catalog data only).
struct ExportInfo {
  std::string name;  // canonical: "live/<volume name>" or "shadow/<id>"
  std::string description;
  engine::VolumeInfo volume;
  std::optional<engine::ShadowInfo> shadow;  // set for shadow exports
  uint64_t size = 0;
  bool read_only = false;
};

// A meta context selected on a connection.
struct MetaContext {
  enum class Kind { kAllocation, kChanged };
  uint32_t id = 0;
  std::string name;  // as the client spelled it
  Kind kind = Kind::kAllocation;
  Guid from;  // kChanged: extents changed since this shadow
};

// One block status descriptor: `length` bytes with `flags`.
struct StatusDescriptor {
  uint32_t length = 0;
  uint32_t flags = 0;
};

class ExportRegistry;

// An export in use: holds its volume open until destroyed.
class OpenExport {
 public:
  ~OpenExport();
  OpenExport(const OpenExport&) = delete;
  OpenExport& operator=(const OpenExport&) = delete;

  const ExportInfo& info() const { return info_; }
  // The device to serve: the live volume or a read-only shadow view.
  BlockDevice& device() { return shadow_ ? *shadow_ : *volume_; }
  // The live volume (flushes go here for either kind of export).
  engine::Volume& volume() { return *volume_; }

  // Describes [offset, offset+length) for `context` as descriptors that
  // cover it in order, at most `max_descriptors` of them (at least one).
  // REQUIRES: length > 0 and the range inside the export.
  StatusOr<std::vector<StatusDescriptor>> BlockStatus(
      const MetaContext& context, uint64_t offset, uint32_t length,
      size_t max_descriptors);

 private:
  friend class ExportRegistry;
  OpenExport(ExportRegistry* registry, ExportInfo info, engine::Volume* volume,
             std::unique_ptr<BlockDevice> shadow)
      : registry_(registry),
        info_(std::move(info)),
        volume_(volume),
        shadow_(std::move(shadow)) {}

  ExportRegistry* registry_;
  ExportInfo info_;
  engine::Volume* volume_;
  std::unique_ptr<BlockDevice> shadow_;
};

// Also the VolumeUsers of vssd's software provider: a volume is open while
// an NBD client or a provider operation uses it, or while it has
// non-persistent shadows (closing would drop them, see Volume recovery).
class ExportRegistry final : public VolumeUsers {
 public:
  explicit ExportRegistry(engine::Store* store) : store_(store) {}

  // VolumeUsers. BeginExclusive counts the live exports open on the volume
  // (shadow exports do not keep a revert off: they read preserved data) and
  // with `force_dismount` calls their dismount functions and waits up to
  // 10 s for them to close.
  Status Acquire(const Guid& volume_id) override;
  void Release(const Guid& volume_id) override;
  Status BeginExclusive(const Guid& volume_id, bool force_dismount) override;
  void EndExclusive(const Guid& volume_id) override;

  // Resolves an export name. kNotFound for an unknown name or prefix
  // (including names without "live/" or "shadow/"), kInvalidArgument for an
  // ambiguous prefix.
  StatusOr<ExportInfo> Lookup(const std::string& name);
  // Every export: live ones by volume name, then shadows.
  StatusOr<std::vector<ExportInfo>> List();

  // Opens the export's volume (or takes another reference to it) and, for a
  // shadow, a read-only view of it. kBusy if another process holds the
  // volume, or, for a live export, while the volume is kept exclusive (a
  // revert); kNotFound if it or the shadow was removed meanwhile.
  // `dismount` (live exports) makes the user let go of the export: a forced
  // revert calls it, from another thread, and waits for the OpenExport to
  // be destroyed.
  StatusOr<std::unique_ptr<OpenExport>> Open(
      const ExportInfo& info, std::function<void()> dismount = {});

  // The context names of `info` that `query` selects: "base:" or
  // "base:allocation" -> base:allocation; "vss:" or "vss:changed:" -> every
  // vss:changed context of the export; "vss:changed:<shadow>" -> that one
  // if valid on this export. Empty when nothing matches. `kinds` receives,
  // parallel to the names, the context's kind and shadow.
  StatusOr<std::vector<MetaContext>> MatchContexts(const ExportInfo& info,
                                                   const std::string& query);

  // Forgets every user (at shutdown, after all connections); the store
  // flushes and closes the volumes still open when it is destroyed.
  void CloseAll();

 private:
  friend class OpenExport;
  StatusOr<std::vector<engine::ShadowInfo>> ChangedSources(
      const ExportInfo& info);

  engine::Store* store_;
  std::mutex mu_;             // guards the fields below and volume open/close
  std::condition_variable live_closed_;
  std::map<Guid, int> refs_;  // open volumes and their users
  // Open live exports per volume, with their dismount functions.
  std::map<Guid, std::map<const OpenExport*, std::function<void()>>> live_;
  std::set<Guid> exclusive_;  // volumes a revert keeps to itself
};

}  // namespace vss::vssd
