// SnapshotMgmt and DifferentialSoftwareSnapshotMgmt: the management side of
// VSS (IVssSnapshotMgmt, IVssDifferentialSoftwareSnapshotMgmt) over the
// engine's store: where each volume's diff area lives and how big it may
// grow, and which shadows a volume has.
//
// Volumes are named by store volume name, id or unique id prefix; an
// unknown one is VSS_E_OBJECT_NOT_FOUND. The diff-area "volume" is the
// directory of the segments. Sizes are bytes; VSS_ASSOC_NO_MAX_SPACE (-1)
// is unbounded.
//
// Thread safety: as engine::Store, any thread.
#pragma once

#include <string>
#include <vector>

#include "vss/api/hresult.h"
#include "vss/api/types.h"

namespace vss {

namespace engine {
class Store;
}

class DifferentialSoftwareSnapshotMgmt {
 public:
  // `store` must outlive the object.
  explicit DifferentialSoftwareSnapshotMgmt(engine::Store& store) : store_(store) {}

  // VSS_E_OBJECT_ALREADY_EXISTS if the volume's records already live in
  // another directory; E_INVALIDARG for a size below -1.
  VssStatus AddDiffArea(const std::string& volume, const std::string& diff_area_dir,
                        int64_t maximum_bytes);
  // Shrinking below the used space deletes the oldest shadows of the volume.
  // VSS_ASSOC_REMOVE (0) is not supported by the engine: E_INVALIDARG.
  VssStatus ChangeDiffAreaMaximumSize(const std::string& volume, int64_t maximum_bytes);
  // The diff area of `volume` (one per volume here).
  VssStatusOr<std::vector<DiffAreaProp>> QueryDiffAreasForVolume(const std::string& volume);
  // Diff areas whose directory is `diff_area_dir`.
  VssStatusOr<std::vector<DiffAreaProp>> QueryDiffAreasOnVolume(const std::string& diff_area_dir);
  // The diff area holding shadow `snapshot_id`'s data.
  VssStatusOr<std::vector<DiffAreaProp>> QueryDiffAreasForSnapshot(const Guid& snapshot_id);

 private:
  VssStatusOr<DiffAreaProp> PropOf(const Guid& volume_id, const std::string& name);
  engine::Store& store_;
};

class SnapshotMgmt {
 public:
  explicit SnapshotMgmt(engine::Store& store) : store_(store), diff_(store) {}

  DifferentialSoftwareSnapshotMgmt& GetProviderMgmtInterface() { return diff_; }
  // Volumes that can be shadowed (every volume of the store).
  VssStatusOr<std::vector<std::string>> QueryVolumesSupportedForSnapshots(int32_t context);
  // The shadows of `volume`, oldest first.
  VssStatusOr<std::vector<SnapshotProp>> QuerySnapshotsByVolume(const std::string& volume);

 private:
  engine::Store& store_;
  DifferentialSoftwareSnapshotMgmt diff_;
};

}  // namespace vss
