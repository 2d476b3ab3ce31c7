#include "vss/api/snapshot_mgmt.h"

#include "vss/api/shadow_properties.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"

namespace vss {
namespace {

VssStatusOr<engine::VolumeInfo> Resolve(engine::Store& store, const std::string& volume) {
  StatusOr<engine::VolumeInfo> v = store.ResolveVolume(volume);
  if (!v.ok()) {
    if (v.status().code() == StatusCode::kInvalidArgument) {
      return VssError(VSS_E_OBJECT_NOT_FOUND, v.status().message());
    }
    return VssStatus::FromStatus(v.status());
  }
  return *v;
}

}  // namespace

VssStatus DifferentialSoftwareSnapshotMgmt::AddDiffArea(const std::string& volume,
                                                        const std::string& diff_area_dir,
                                                        int64_t maximum_bytes) {
  if (maximum_bytes < VSS_ASSOC_NO_MAX_SPACE) return VssError(E_INVALIDARG, "negative maximum size");
  VssStatusOr<engine::VolumeInfo> v = Resolve(store_, volume);
  if (!v.ok()) return v.status();
  return VssStatus::FromStatus(store_.AddDiffArea(v->id, diff_area_dir, maximum_bytes));
}

VssStatus DifferentialSoftwareSnapshotMgmt::ChangeDiffAreaMaximumSize(const std::string& volume,
                                                                      int64_t maximum_bytes) {
  if (maximum_bytes == VSS_ASSOC_REMOVE || maximum_bytes < VSS_ASSOC_NO_MAX_SPACE) {
    return VssError(E_INVALIDARG, "maximum size must be positive or VSS_ASSOC_NO_MAX_SPACE");
  }
  VssStatusOr<engine::VolumeInfo> v = Resolve(store_, volume);
  if (!v.ok()) return v.status();
  return VssStatus::FromStatus(store_.ResizeDiffArea(v->id, maximum_bytes));
}

VssStatusOr<DiffAreaProp> DifferentialSoftwareSnapshotMgmt::PropOf(const Guid& volume_id,
                                                                   const std::string& name) {
  StatusOr<engine::DiffAreaInfo> d = store_.DiffAreaOf(volume_id);
  if (!d.ok()) return VssStatus::FromStatus(d.status());
  DiffAreaProp p;
  p.volume_name = name;
  p.diff_area_volume_name = d->dir;
  p.maximum_diff_space = d->max_bytes;
  p.used_diff_space = static_cast<int64_t>(d->used_bytes);
  p.allocated_diff_space = static_cast<int64_t>(d->used_bytes);
  return p;
}

VssStatusOr<std::vector<DiffAreaProp>> DifferentialSoftwareSnapshotMgmt::QueryDiffAreasForVolume(
    const std::string& volume) {
  VssStatusOr<engine::VolumeInfo> v = Resolve(store_, volume);
  if (!v.ok()) return v.status();
  VssStatusOr<DiffAreaProp> p = PropOf(v->id, v->name);
  if (!p.ok()) return p.status();
  return std::vector<DiffAreaProp>{*p};
}

VssStatusOr<std::vector<DiffAreaProp>> DifferentialSoftwareSnapshotMgmt::QueryDiffAreasOnVolume(
    const std::string& diff_area_dir) {
  StatusOr<std::vector<engine::VolumeInfo>> vols = store_.ListVolumes();
  if (!vols.ok()) return VssStatus::FromStatus(vols.status());
  std::vector<DiffAreaProp> out;
  for (const auto& v : *vols) {
    VssStatusOr<DiffAreaProp> p = PropOf(v.id, v.name);
    if (!p.ok()) return p.status();
    if (p->diff_area_volume_name == diff_area_dir) out.push_back(*p);
  }
  return out;
}

VssStatusOr<std::vector<DiffAreaProp>> DifferentialSoftwareSnapshotMgmt::QueryDiffAreasForSnapshot(
    const Guid& snapshot_id) {
  StatusOr<engine::ShadowInfo> s = store_.FindShadow(snapshot_id);
  if (!s.ok() && s.status().code() == StatusCode::kNotFound) {
    return VssError(VSS_E_OBJECT_NOT_FOUND, "no shadow copy " + snapshot_id.ToString());
  }
  if (!s.ok()) return VssStatus::FromStatus(s.status());
  VssStatusOr<DiffAreaProp> p = PropOf(s->volume_id, s->volume_name);
  if (!p.ok()) return p.status();
  return std::vector<DiffAreaProp>{*p};
}

VssStatusOr<std::vector<std::string>> SnapshotMgmt::QueryVolumesSupportedForSnapshots(int32_t context) {
  StatusOr<std::vector<engine::VolumeInfo>> vols = store_.ListVolumes();
  if (!vols.ok()) return VssStatus::FromStatus(vols.status());
  std::vector<std::string> out;
  for (const auto& v : *vols) out.push_back(v.name);
  return out;
}

VssStatusOr<std::vector<SnapshotProp>> SnapshotMgmt::QuerySnapshotsByVolume(const std::string& volume) {
  VssStatusOr<engine::VolumeInfo> v = Resolve(store_, volume);
  if (!v.ok()) return v.status();
  StatusOr<std::vector<engine::ShadowInfo>> shadows = store_.ListShadowsOfVolume(v->id);
  if (!shadows.ok()) return VssStatus::FromStatus(shadows.status());
  std::vector<SnapshotProp> out;
  for (const engine::ShadowInfo& s : *shadows) {
    StatusOr<SnapshotProp> p = SnapshotPropOf(s);
    if (!p.ok()) return VssStatus::FromStatus(p.status());
    out.push_back(*p);
  }
  return out;
}

}  // namespace vss
