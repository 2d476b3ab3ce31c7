#include "exports.h"

#include <algorithm>
#include <cstdio>

#include "vss/formats/nbd_protocol.h"

namespace vss::vssd {
namespace {

constexpr std::string_view kLivePrefix = "live/";
constexpr std::string_view kShadowPrefix = "shadow/";
constexpr std::string_view kAllocation = "base:allocation";
constexpr std::string_view kChangedPrefix = "vss:changed:";

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

ExportInfo LiveInfo(const engine::VolumeInfo& v) {
  ExportInfo info;
  info.name = std::string(kLivePrefix) + v.name;
  info.description = "volume " + v.name + " (" + v.id.ToString() + "), live";
  info.volume = v;
  info.size = v.size;
  return info;
}

ExportInfo ShadowExportInfo(const engine::VolumeInfo& v,
                            const engine::ShadowInfo& s) {
  ExportInfo info;
  info.name = std::string(kShadowPrefix) + s.id.ToString();
  info.description = "shadow " + s.id.ToString() + " of volume " + v.name +
                     " (epoch " + std::to_string(s.epoch) + ")";
  info.volume = v;
  info.shadow = s;
  info.size = v.size;
  info.read_only = true;
  return info;
}

// Appends `length` bytes of `flags`, merging with the previous descriptor.
// Returns false once `max` descriptors are full and a new one was needed.
bool Append(std::vector<StatusDescriptor>& out, uint64_t length, uint32_t flags,
            size_t max) {
  while (length > 0) {
    if (!out.empty() && out.back().flags == flags &&
        out.back().length < UINT32_MAX) {
      uint64_t room = UINT32_MAX - out.back().length;
      uint64_t n = std::min(room, length);
      out.back().length += static_cast<uint32_t>(n);
      length -= n;
      continue;
    }
    if (out.size() >= max) return false;
    out.push_back({0, flags});
  }
  return true;
}

}  // namespace

OpenExport::~OpenExport() {
  shadow_.reset();  // the view refers to the volume: drop it first
  if (!info_.shadow) {
    std::lock_guard l(registry_->mu_);
    auto it = registry_->live_.find(info_.volume.id);
    if (it != registry_->live_.end()) {
      it->second.erase(this);
      if (it->second.empty()) registry_->live_.erase(it);
    }
    registry_->live_closed_.notify_all();
  }
  registry_->Release(info_.volume.id);
}

StatusOr<std::vector<StatusDescriptor>> OpenExport::BlockStatus(
    const MetaContext& context, uint64_t offset, uint32_t length,
    size_t max_descriptors) {
  std::vector<StatusDescriptor> out;
  const uint64_t end = offset + length;
  if (context.kind == MetaContext::Kind::kAllocation) {
    VSS_ASSIGN_OR_RETURN(auto extents, device().Extents(offset, length));
    for (const Extent& e : extents) {
      uint32_t flags = e.allocated ? 0 : (nbd::kStateHole | nbd::kStateZero);
      if (!Append(out, e.length, flags, max_descriptors)) break;
    }
  } else {
    std::optional<Guid> to;
    if (info_.shadow) to = info_.shadow->id;
    VSS_ASSIGN_OR_RETURN(auto changed,
                         volume_->ChangedExtents(context.from, to));
    uint64_t pos = offset;
    for (const engine::ChangedExtent& c : changed) {
      uint64_t c_end = c.offset + c.length;
      if (c_end <= pos) continue;
      if (c.offset >= end) break;
      uint64_t start = std::max(c.offset, pos);
      if (start > pos && !Append(out, start - pos, 0, max_descriptors)) break;
      uint64_t stop = std::min(c_end, end);
      if (!Append(out, stop - start, nbd::kStateChanged, max_descriptors)) {
        pos = end;  // truncated: the client asks again for the rest
        break;
      }
      pos = stop;
    }
    if (pos < end) Append(out, end - pos, 0, max_descriptors);
  }
  if (out.empty()) {
    return InternalError("no block status for " + info_.name + " at " +
                         std::to_string(offset));
  }
  return out;
}

StatusOr<ExportInfo> ExportRegistry::Lookup(const std::string& name) {
  if (StartsWith(name, kLivePrefix)) {
    VSS_ASSIGN_OR_RETURN(
        auto v, store_->ResolveVolume(name.substr(kLivePrefix.size())));
    return LiveInfo(v);
  }
  if (StartsWith(name, kShadowPrefix)) {
    VSS_ASSIGN_OR_RETURN(
        auto s, store_->ResolveShadow(name.substr(kShadowPrefix.size())));
    VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store_->FindVolume(s.volume_id));
    return ShadowExportInfo(v, s);
  }
  return NotFoundError("no export '" + name +
                       "' (exports are live/<volume> and shadow/<shadow-id>)");
}

StatusOr<std::vector<ExportInfo>> ExportRegistry::List() {
  std::vector<ExportInfo> out;
  VSS_ASSIGN_OR_RETURN(auto volumes, store_->ListVolumes());
  for (const auto& v : volumes) out.push_back(LiveInfo(v));
  VSS_ASSIGN_OR_RETURN(auto shadows, store_->ListShadows());
  for (const auto& s : shadows) {
    auto v = std::find_if(volumes.begin(), volumes.end(), [&](const auto& row) {
      return row.id == s.volume_id;
    });
    if (v != volumes.end()) out.push_back(ShadowExportInfo(*v, s));
  }
  return out;
}

StatusOr<std::unique_ptr<OpenExport>> ExportRegistry::Open(
    const ExportInfo& info, std::function<void()> dismount) {
  std::lock_guard l(mu_);
  if (!info.shadow && exclusive_.count(info.volume.id)) {
    return BusyError("volume " + info.volume.name + " is being reverted");
  }
  VSS_ASSIGN_OR_RETURN(engine::Volume * volume,
                       store_->OpenVolume(info.volume.id));
  std::unique_ptr<BlockDevice> shadow;
  if (info.shadow) {
    auto view = volume->OpenShadow(info.shadow->id);
    if (!view.ok()) {
      if (refs_.count(info.volume.id) == 0) {
        store_->CloseVolume(info.volume.id).IgnoreError();  // nobody uses it
      }
      return view.status();
    }
    shadow = std::move(view).value();
  }
  ++refs_[info.volume.id];
  std::unique_ptr<OpenExport> open(
      new OpenExport(this, info, volume, std::move(shadow)));
  if (!info.shadow) live_[info.volume.id][open.get()] = std::move(dismount);
  return open;
}

Status ExportRegistry::BeginExclusive(const Guid& volume_id,
                                      bool force_dismount) {
  std::string label = "volume " + volume_id.ToString();
  if (auto v = store_->FindVolume(volume_id); v.ok()) {
    label = "volume " + v->name;
  }
  std::unique_lock l(mu_);
  if (exclusive_.count(volume_id)) {
    return BusyError(label + " is already being reverted");
  }
  auto users = [&] {
    auto it = live_.find(volume_id);
    return it == live_.end() ? size_t{0} : it->second.size();
  };
  if (users() > 0 && !force_dismount) {
    return BusyError(label + " is in use by " +
                     std::to_string(users()) +
                     " NBD client(s) of its live export (a forced dismount "
                     "disconnects them: vssctl shadow revert --force)");
  }
  exclusive_.insert(volume_id);  // from now on no new live client
  if (users() > 0) {
    for (auto& [open, dismount] : live_[volume_id]) {
      if (dismount) dismount();
    }
    if (!live_closed_.wait_for(l, std::chrono::seconds(10),
                               [&] { return users() == 0; })) {
      exclusive_.erase(volume_id);
      return BusyError(label + ": " +
                       std::to_string(users()) +
                       " NBD client(s) did not let go within 10 s");
    }
  }
  return OkStatus();
}

void ExportRegistry::EndExclusive(const Guid& volume_id) {
  std::lock_guard l(mu_);
  exclusive_.erase(volume_id);
}

Status ExportRegistry::Acquire(const Guid& volume_id) {
  std::lock_guard l(mu_);
  VSS_RETURN_IF_ERROR(store_->OpenVolume(volume_id).status());
  ++refs_[volume_id];
  return OkStatus();
}

void ExportRegistry::Release(const Guid& volume_id) {
  std::lock_guard l(mu_);
  auto it = refs_.find(volume_id);
  if (it == refs_.end() || --it->second > 0) return;
  refs_.erase(it);
  // Non-persistent shadows live only while their volume stays open here.
  auto shadows = store_->ListShadowsOfVolume(volume_id);
  if (shadows.ok() && std::any_of(shadows->begin(), shadows->end(),
                                  [](const auto& s) { return !s.persistent; })) {
    return;
  }
  // Closing flushes the volume (index to the catalog, image to disk) and
  // releases its lock, so other processes may use it while no client does.
  Status s = store_->CloseVolume(volume_id);
  if (!s.ok()) {
    std::fprintf(stderr, "vssd: closing volume %s: %s\n",
                 volume_id.ToString().c_str(), s.ToString().c_str());
  }
}

void ExportRegistry::CloseAll() {
  std::lock_guard l(mu_);
  refs_.clear();
  // The store closes every volume it still has open (including those kept
  // for their non-persistent shadows) when it is destroyed.
}

StatusOr<std::vector<engine::ShadowInfo>> ExportRegistry::ChangedSources(
    const ExportInfo& info) {
  VSS_ASSIGN_OR_RETURN(auto shadows,
                       store_->ListShadowsOfVolume(info.volume.id));
  if (info.shadow) {
    std::erase_if(shadows, [&](const engine::ShadowInfo& s) {
      return s.epoch >= info.shadow->epoch;
    });
  }
  return shadows;
}

StatusOr<std::vector<MetaContext>> ExportRegistry::MatchContexts(
    const ExportInfo& info, const std::string& query) {
  std::vector<MetaContext> out;
  if (query == "base:" || query == kAllocation) {
    out.push_back(
        {0, std::string(kAllocation), MetaContext::Kind::kAllocation, {}});
    return out;
  }
  if (query == "vss:" || query == kChangedPrefix) {
    VSS_ASSIGN_OR_RETURN(auto sources, ChangedSources(info));
    for (const auto& s : sources) {
      out.push_back({0, std::string(kChangedPrefix) + s.id.ToString(),
                     MetaContext::Kind::kChanged, s.id});
    }
    return out;
  }
  if (StartsWith(query, kChangedPrefix)) {
    std::string text = query.substr(kChangedPrefix.size());
    auto shadow = store_->ResolveShadow(text);
    if (!shadow.ok()) return out;  // unknown or ambiguous: no match
    VSS_ASSIGN_OR_RETURN(auto sources, ChangedSources(info));
    for (const auto& s : sources) {
      if (s.id == shadow->id) {
        out.push_back({0, query, MetaContext::Kind::kChanged, s.id});
      }
    }
  }
  return out;
}

}  // namespace vss::vssd
