#include <chrono>

#include "vss/api/provider.h"
#include "vss/api/shadow_properties.h"
#include "vss/engine/store.h"

namespace vss {
namespace {

VssStatus NoSet(const Guid& id) {
  return VssError(VSS_E_OBJECT_NOT_FOUND, "no shadow copy set " + id.ToString() + " in preparation");
}

}  // namespace

SoftwareProvider::SoftwareProvider(engine::Store& store) : store_(store) {}
SoftwareProvider::~SoftwareProvider() = default;

ProviderProp SoftwareProvider::GetProviderProperties() const {
  ProviderProp p;
  p.provider_id = SoftwareProviderId();
  p.provider_name = "vss software shadow copy provider";
  p.provider_type = VSS_PROV_SOFTWARE;
  p.provider_version = "1.0";
  p.provider_version_id = *Guid::Parse("00000001-0000-0000-0000-000000000001");
  p.class_id = p.provider_id;
  return p;
}

VssStatusOr<ResolvedVolume> SoftwareProvider::ResolveVolume(const std::string& volume) {
  StatusOr<engine::VolumeInfo> v = store_.ResolveVolume(volume);
  if (!v.ok()) {
    VssStatus s = VssStatus::FromStatus(v.status());
    if (v.status().code() == StatusCode::kInvalidArgument) {
      s = VssError(VSS_E_OBJECT_NOT_FOUND, v.status().message());
    }
    return s;
  }
  return ResolvedVolume{v->name, v->id, v->path};
}

VssStatus SoftwareProvider::CheckContext(int32_t context) const {
  int32_t base = context & kContextBitsMask;
  int32_t extra = context & ~kContextBitsMask;
  bool base_ok = base == 0x0 || base == 0x8 || base == 0x10 || base == 0x18 ||
                 base == 0x9 || base == 0x19 || base == 0xd || base == 0x1d;
  bool extra_ok = (extra & ~(VSS_VOLSNAP_ATTR_NO_AUTORECOVERY |
                             VSS_VOLSNAP_ATTR_DIFFERENTIAL)) == 0;
  if (context == VSS_CTX_ALL || !base_ok || !extra_ok) {
    return VssError(VSS_E_UNSUPPORTED_CONTEXT,
                    "the software provider does not support context " + HResultHex(context));
  }
  return VssStatus::Ok();
}

VssStatus SoftwareProvider::BeginPrepareSnapshot(const Guid& set_id, const Guid& snapshot_id,
                                                 int32_t context, const ResolvedVolume& volume) {
  VSS_RETURN_IF_VSS_ERROR(CheckContext(context));
  std::lock_guard<std::mutex> l(mu_);
  PendingSet& s = sets_[set_id];
  if (s.committed) return VssError(VSS_E_BAD_STATE, "set " + set_id.ToString() + " is committed");
  s.context = context;
  for (const auto& [id, v] : s.shadows) {
    if (v.id == volume.id) {
      return VssError(VSS_E_OBJECT_ALREADY_EXISTS, "volume " + volume.name + " already in the set");
    }
  }
  s.shadows.emplace_back(snapshot_id, volume);
  return VssStatus::Ok();
}

VssStatus SoftwareProvider::EndPrepareSnapshots(const Guid& set_id) {
  std::lock_guard<std::mutex> l(mu_);
  if (sets_.find(set_id) == sets_.end()) return NoSet(set_id);
  return VssStatus::Ok();
}

VssStatus SoftwareProvider::PreCommitSnapshots(const Guid& set_id) {
  std::lock_guard<std::mutex> l(mu_);
  if (sets_.find(set_id) == sets_.end()) return NoSet(set_id);
  return VssStatus::Ok();
}

class SoftwareProvider::Borrow {
 public:
  Borrow(VolumeUsers* users) : users_(users) {}
  ~Borrow() {
    for (const Guid& id : held_) users_->Release(id);
  }
  Status Add(const Guid& id) {
    if (users_ == nullptr) return OkStatus();
    VSS_RETURN_IF_ERROR(users_->Acquire(id));
    held_.push_back(id);
    return OkStatus();
  }

 private:
  VolumeUsers* users_;
  std::vector<Guid> held_;
};

VssStatusOr<std::unique_ptr<SoftwareProvider::Borrow>> SoftwareProvider::BorrowVolumes(
    const std::vector<Guid>& volumes) {
  auto b = std::make_unique<Borrow>(users_);
  for (const Guid& id : volumes) {
    Status s = b->Add(id);
    if (!s.ok()) return VssStatus::FromStatus(s);
  }
  return b;
}

VssStatusOr<std::unique_ptr<SoftwareProvider::Borrow>> SoftwareProvider::BorrowVolumeOf(
    const Guid& snapshot_id) {
  VssStatusOr<engine::ShadowInfo> r = FindShadow(snapshot_id);
  if (!r.ok()) return r.status();
  return BorrowVolumes({r->volume_id});
}

VssStatus SoftwareProvider::CommitSnapshots(const Guid& set_id,
                                            const std::function<VssStatus()>& on_hold) {
  engine::CreateSetRequest req;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = sets_.find(set_id);
    if (it == sets_.end()) return NoSet(set_id);
    if (it->second.committed) return VssError(VSS_E_BAD_STATE, "set already committed");
    DescribeSoftwareShadows(it->second.context, &req);
    // The shadows get the ids the requester was given at AddToSnapshotSet.
    req.set_id = set_id;
    for (const auto& [id, v] : it->second.shadows) {
      req.volumes.push_back(v.id);
      req.shadow_ids.push_back(id);
    }
  }
  // The engine holds writes to every volume, flushes them, then calls
  // on_hold; its verdict decides whether the catalog commit happens.
  VssStatus hold_verdict;
  req.on_hold = [&]() -> Status {
    if (on_hold) hold_verdict = on_hold();
    if (!hold_verdict.ok()) return FailedPreconditionError("commit refused: " + hold_verdict.message());
    return OkStatus();
  };
  VssStatusOr<std::unique_ptr<Borrow>> borrowed = BorrowVolumes(req.volumes);
  if (!borrowed.ok()) return borrowed.status();
  StatusOr<engine::CreatedSet> created = store_.CreateShadowSet(req);
  if (!hold_verdict.ok()) return hold_verdict;
  if (!created.ok()) {
    VssStatus s = VssStatus::FromStatus(created.status());
    return s.code() == VSS_E_BAD_STATE ? VssError(VSS_E_UNEXPECTED_PROVIDER_ERROR, s.message()) : s;
  }
  std::lock_guard<std::mutex> l(mu_);
  PendingSet& s = sets_[set_id];
  s.committed = true;
  return VssStatus::Ok();
}

VssStatusOr<std::vector<SnapshotProp>> SoftwareProvider::PostCommitSnapshots(const Guid& set_id) {
  std::vector<Guid> ids;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = sets_.find(set_id);
    if (it == sets_.end() || !it->second.committed) return NoSet(set_id);
    for (const auto& [id, v] : it->second.shadows) ids.push_back(id);
    sets_.erase(it);
  }
  std::vector<SnapshotProp> out;
  for (const Guid& id : ids) {
    VssStatusOr<SnapshotProp> p = GetSnapshotProperties(id);
    if (!p.ok()) return p.status();
    out.push_back(*p);
  }
  return out;
}

VssStatus SoftwareProvider::AbortSnapshots(const Guid& set_id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = sets_.find(set_id);
  if (it != sets_.end() && !it->second.committed) sets_.erase(it);
  return VssStatus::Ok();
}

VssStatusOr<std::vector<SnapshotProp>> SoftwareProvider::Query(int32_t context) {
  StatusOr<std::vector<engine::ShadowInfo>> shadows = store_.ListShadows();
  if (!shadows.ok()) return VssStatus::FromStatus(shadows.status());
  std::vector<SnapshotProp> out;
  for (const engine::ShadowInfo& s : *shadows) {
    StatusOr<int32_t> of = ContextOf(s);
    if (!of.ok()) return VssStatus::FromStatus(of.status());
    if (context == VSS_CTX_ALL || (*of & kContextBitsMask) == (context & kContextBitsMask)) {
      StatusOr<SnapshotProp> p = SnapshotPropOf(s);
      if (!p.ok()) return VssStatus::FromStatus(p.status());
      out.push_back(*p);
    }
  }
  return out;
}

VssStatusOr<engine::ShadowInfo> SoftwareProvider::FindShadow(const Guid& snapshot_id) {
  StatusOr<engine::ShadowInfo> s = store_.FindShadow(snapshot_id);
  if (s.ok()) return *s;
  if (s.status().code() == StatusCode::kNotFound) {
    return VssError(VSS_E_OBJECT_NOT_FOUND, "no shadow copy " + snapshot_id.ToString());
  }
  return VssStatus::FromStatus(s.status());
}

VssStatusOr<SnapshotProp> SoftwareProvider::GetSnapshotProperties(const Guid& snapshot_id) {
  VssStatusOr<engine::ShadowInfo> s = FindShadow(snapshot_id);
  if (!s.ok()) return s.status();
  StatusOr<SnapshotProp> p = SnapshotPropOf(*s);
  if (!p.ok()) return VssStatus::FromStatus(p.status());
  return *p;
}

VssStatus SoftwareProvider::DeleteSnapshot(const Guid& snapshot_id) {
  VssStatusOr<std::unique_ptr<Borrow>> borrowed = BorrowVolumeOf(snapshot_id);
  if (!borrowed.ok()) return borrowed.status();
  return VssStatus::FromStatus(store_.DeleteShadow(snapshot_id));
}

VssStatusOr<std::vector<Guid>> SoftwareProvider::SnapshotsOfSet(const Guid& set_id) {
  StatusOr<std::vector<engine::ShadowInfo>> shadows = store_.ListShadowsOfSet(set_id);
  if (!shadows.ok()) return VssStatus::FromStatus(shadows.status());
  std::vector<Guid> out;
  for (const engine::ShadowInfo& s : *shadows) out.push_back(s.id);
  if (out.empty()) return VssError(VSS_E_OBJECT_NOT_FOUND, "no shadow copy set " + set_id.ToString());
  return out;
}

VssStatus SoftwareProvider::RevertToSnapshot(const Guid& snapshot_id, bool force_dismount) {
  VssStatusOr<engine::ShadowInfo> shadow = FindShadow(snapshot_id);
  if (!shadow.ok()) return shadow.status();
  if (!shadow->persistent) {
    return VssError(VSS_E_UNSUPPORTED_CONTEXT,
                    "shadow " + shadow->id.ToString() + " is not persistent; only persistent shadows can be reverted to");
  }
  const Guid volume_id = shadow->volume_id;
  VssStatusOr<std::unique_ptr<Borrow>> borrowed = BorrowVolumes({volume_id});
  if (!borrowed.ok()) return borrowed.status();
  // The volume changes under whoever has it open: only with it to ourselves.
  if (users_ != nullptr) {
    Status s = users_->BeginExclusive(volume_id, force_dismount);
    if (!s.ok()) return VssStatus::FromStatus(s);
  }
  Status reverted = store_.RevertToShadow(shadow->id);
  if (users_ != nullptr) users_->EndExclusive(volume_id);
  return VssStatus::FromStatus(reverted);
}

}  // namespace vss
