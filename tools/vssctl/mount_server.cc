#include "mount_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "fuse/host_mounts.h"
#include "fuse/image_fs.h"
#include "vss/formats/nbd_device.h"
#include "vss/formats/overlay_device.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/formats/partition_table.h"

namespace vss::tools {
namespace {

using Json = nlohmann::json;

// Where the devices come from (see the header).
class DeviceSource {
 public:
  DeviceSource(engine::Store* store, const std::string& store_dir)
      : store_(store) {
    std::string socket = store_dir + "/nbd.sock";
    if (NbdDevice::ServerListening(socket)) socket_ = socket;
  }
  const char* via() const { return socket_.empty() ? "in-process" : "vssd"; }

  StatusOr<BlockDevice*> Shadow(const engine::ShadowInfo& s) {
    if (!socket_.empty()) return Nbd("shadow/" + s.id.ToString());
    VSS_ASSIGN_OR_RETURN(engine::Volume * v, store_->OpenVolume(s.volume_id));
    VSS_ASSIGN_OR_RETURN(std::unique_ptr<BlockDevice> view,
                         v->OpenShadow(s.id));
    owned_.push_back(std::move(view));
    return owned_.back().get();
  }

  StatusOr<BlockDevice*> Live(const engine::VolumeInfo& v) {
    if (!socket_.empty()) return Nbd("live/" + v.name);
    VSS_ASSIGN_OR_RETURN(engine::Volume * vol, store_->OpenVolume(v.id));
    return vol;
  }

 private:
  StatusOr<BlockDevice*> Nbd(const std::string& name) {
    VSS_ASSIGN_OR_RETURN(auto dev, NbdDevice::Connect(socket_, name));
    owned_.push_back(std::move(dev));
    return owned_.back().get();
  }

  engine::Store* store_;
  std::string socket_;  // empty: in-process
  std::vector<std::unique_ptr<BlockDevice>> owned_;
};

StatusOr<std::unique_ptr<engine::Store>> OpenStore(const std::string& dir) {
  engine::StoreOptions options;
  options.dir = dir;
  auto store = engine::Store::Open(options);
  if (!store.ok()) return store.status().WithContext("store " + dir);
  return store;
}

// "2026-01-25T10:00:00.1234567Z" -> "20260125T100000Z".
std::string CompactTime(int64_t vss_timestamp) {
  std::string iso = engine::TimestampToIso8601(vss_timestamp);
  std::string out;
  for (char c : iso.substr(0, iso.find('.'))) {
    if (c != '-' && c != ':') out += c;
  }
  return out + "Z";
}

// The shadows a mount request names, by volume name and age.
StatusOr<std::vector<engine::ShadowInfo>> Targets(engine::Store& store,
                                                   const MountRequest& req) {
  std::vector<engine::ShadowInfo> out;
  if (!req.shadow.empty()) {
    VSS_ASSIGN_OR_RETURN(engine::ShadowInfo s,
                         store.ResolveShadow(req.shadow));
    out.push_back(s);
  } else if (!req.set.empty()) {
    VSS_ASSIGN_OR_RETURN(engine::SetInfo set,
                         store.ResolveShadowSet(req.set));
    VSS_ASSIGN_OR_RETURN(auto all, store.ListShadows());
    for (auto& s : all) {
      if (s.set_id == set.id) out.push_back(std::move(s));
    }
  } else {
    VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v,
                         store.ResolveVolume(req.volume));
    VSS_ASSIGN_OR_RETURN(out, store.ListShadowsOfVolume(v.id));
    if (out.empty()) {
      return NotFoundError("volume '" + v.name + "' has no shadow copies");
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.volume_name, a.epoch) <
           std::tie(b.volume_name, b.epoch);
  });
  return out;
}

// Refuses a directory that already holds a vssctl mount, and a shadow
// exposed by a mount that still exists (an exposure left by a server that
// died is stale and may be replaced).
Status CheckNotMounted(const std::string& dir,
                       const std::vector<engine::ShadowInfo>& shadows) {
  VSS_ASSIGN_OR_RETURN(auto mounts, fuse::ReadMountTable());
  auto ours = [&](const std::string& path) {
    return std::any_of(mounts.begin(), mounts.end(), [&](const auto& m) {
      return m.mount_point == path && m.fs_type == "fuse.vss";
    });
  };
  if (ours(dir)) {
    return FailedPreconditionError(dir + " is already a vssctl mount");
  }
  for (const auto& s : shadows) {
    if (!s.exposed_path.empty() && ours(s.exposed_path)) {
      return FailedPreconditionError(
          "shadow copy {" + s.id.ToString() + "} is already exposed on " +
          s.exposed_path + " (vssctl unmount " + s.exposed_path + ")");
    }
  }
  return OkStatus();
}

Status CheckDirectory(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoError(errno, dir);
  if (!S_ISDIR(st.st_mode)) {
    return InvalidArgumentError(dir + " is not a directory");
  }
  return OkStatus();
}

// The files (and mount-point directories) of one shadow.
Status AddShadowFiles(const engine::ShadowInfo& s, BlockDevice* dev,
                      bool filesystem, std::set<std::string>* taken,
                      fuse::ImageFsConfig* config, Json* report) {
  std::string volume = s.volume_name;
  std::replace(volume.begin(), volume.end(), '/', '_');
  std::string base = volume + "@" + CompactTime(s.created);
  if (taken->count(base)) base += "_e" + std::to_string(s.epoch);
  taken->insert(base);

  // A damaged table, or a damaged diff-area chunk under it, still leaves
  // the whole image to serve (with EIO where it is damaged).
  StatusOr<PartitionTable> table = ReadPartitionTable(*dev);
  if (!table.ok()) {
    (*report)["warnings"].push_back(
        "partitions of " + base +
        ".img not shown: " + table.status().ToString());
    table = PartitionTable{};
  }
  auto add = [&](const std::string& stem, uint32_t index, uint64_t offset,
                 uint64_t size, const std::string& type, bool candidate) {
    config->files.push_back({stem + ".img", dev, offset, size});
    Json f = {{"name", stem + ".img"},       {"shadow_id", s.id.ToString()},
              {"volume", s.volume_name}, {"size", size},
              {"partition", index},          {"type", type}};
    if (filesystem && candidate) {
      config->dirs.push_back(stem);
      f["mount_dir"] = stem;
    }
    (*report)["files"].push_back(f);
  };
  add(base, 0, 0, dev->size(), std::string(PartitionSchemeName(table->scheme)),
      table->partitions.empty());
  for (const Partition& p : table->partitions) {
    add(base + "-p" + std::to_string(p.index), p.index, p.start, p.length,
        p.type, true);
  }
  return OkStatus();
}

// Sets or clears the exposure of every shadow; clearing ignores shadows
// deleted meanwhile.
Status SetExposure(engine::Store& store,
                   const std::vector<engine::ShadowInfo>& shadows,
                   const Json& files, const std::string& dir) {
  for (const auto& s : shadows) {
    std::string name;
    for (const Json& f : files) {
      if (f["shadow_id"] == s.id.ToString() && f["partition"] == 0) {
        name = f["name"];
      }
    }
    Status st = store.SetShadowExposure(s.id, dir.empty() ? "" : name, dir);
    if (!st.ok() && !(dir.empty() && st.code() == StatusCode::kNotFound)) {
      return st;
    }
  }
  return OkStatus();
}

std::string Fsname() { return "vssctl:" + std::to_string(::getpid()); }

// True when the image holds a filesystem with a log the kernel replays at
// mount: XFS ("XFSB" at 0), or ext3/ext4 (superblock magic 0xEF53 at
// 1024 + 56, little-endian, with COMPAT_HAS_JOURNAL, bit 0x4 of the
// s_feature_compat word at 1024 + 92).
bool HoldsReplayableLog(BlockDevice& dev, uint64_t offset, uint64_t size) {
  uint8_t magic[4];
  if (size >= sizeof magic && dev.Read(offset, magic).ok() &&
      std::memcmp(magic, "XFSB", sizeof magic) == 0)
    return true;
  uint8_t sb[96];
  if (size < 1024 + sizeof sb || !dev.Read(offset + 1024, sb).ok()) return false;
  const bool ext_magic = sb[56] == 0x53 && sb[57] == 0xEF;
  return ext_magic && (sb[92] & 0x04) != 0;
}

// Gives every candidate image that holds XFS or a journaled ext3/ext4 a
// hidden scratch file over an
// overlay of it, to replay the log into (host_mounts.h), and names it in
// the image's report entry. The overlays go to `overlays`.
void AddReplayFiles(fuse::ImageFsConfig* config, Json* report,
                    std::vector<std::unique_ptr<BlockDevice>>* overlays) {
  Json& files = (*report)["files"];
  const size_t n = config->files.size();  // one report entry each
  for (size_t i = 0; i < n; ++i) {
    if (!files[i].contains("mount_dir")) continue;
    const fuse::ImageFile image = config->files[i];  // push_back reallocates
    if (!HoldsReplayableLog(*image.device, image.offset, image.size)) continue;
    overlays->push_back(std::make_unique<OverlayDevice>(
        image.device, image.offset, image.size));
    std::string name =
        "." + files[i]["mount_dir"].get<std::string>() + ".replay";
    config->files.push_back(
        {name, overlays->back().get(), 0, image.size, /*scratch=*/true});
    files[i]["replay_file"] = name;
  }
}

}  // namespace

Status ServeMount(const MountRequest& req, const fuse::ReadyFn& ready) {
  VSS_ASSIGN_OR_RETURN(auto store, OpenStore(req.store_dir));
  VSS_ASSIGN_OR_RETURN(auto shadows, Targets(*store, req));
  if (shadows.empty())
    return NotFoundError("the shadow copy set has no shadows");
  VSS_RETURN_IF_ERROR(CheckDirectory(req.dir));
  VSS_RETURN_IF_ERROR(CheckNotMounted(req.dir, shadows));

  DeviceSource source(store.get(), req.store_dir);
  fuse::ImageFsConfig config;
  config.fsname = Fsname();
  config.mtime = ::time(nullptr);
  Json report = {{"mountpoint", req.dir},
                 {"via", source.via()},
                 {"files", Json::array()},
                 {"warnings", Json::array()}};
  std::set<std::string> taken;
  for (const auto& s : shadows) {
    VSS_ASSIGN_OR_RETURN(BlockDevice * dev, source.Shadow(s));
    VSS_RETURN_IF_ERROR(
        AddShadowFiles(s, dev, req.filesystem, &taken, &config, &report));
  }
  std::vector<std::unique_ptr<BlockDevice>> overlays;  // outlive the mount
  if (req.filesystem) AddReplayFiles(&config, &report, &overlays);
  VSS_ASSIGN_OR_RETURN(auto fs, fuse::ImageFs::Mount(config, req.dir));
  Status exposed = SetExposure(*store, shadows, report["files"], req.dir);
  if (!exposed.ok()) {
    SetExposure(*store, shadows, report["files"], "").IgnoreError();
    return exposed;  // fs is unmounted as it goes
  }
  ready(report.dump());
  Status served = fs->Run();
  fs.reset();
  Status cleared = SetExposure(*store, shadows, report["files"], "");
  return served.ok() ? cleared : served;
}

Status ServeAttach(const AttachRequest& req, const fuse::ReadyFn& ready) {
  VSS_ASSIGN_OR_RETURN(auto store, OpenStore(req.store_dir));
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(req.volume));
  VSS_ASSIGN_OR_RETURN(auto mounts, fuse::ReadMountTable());
  for (const auto& m : mounts) {
    if (m.mount_point == req.file) {
      return FailedPreconditionError(req.file + " is already a mount point");
    }
  }
  DeviceSource source(store.get(), req.store_dir);
  VSS_ASSIGN_OR_RETURN(BlockDevice * dev, source.Live(v));

  // FUSE mounts on an existing regular file; make one if missing, and
  // remove it again when done (or when the mount fails).
  struct stat st;
  bool created = false;
  if (::lstat(req.file.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      return InvalidArgumentError(req.file + " is not a regular file");
    }
  } else {
    int fd =
        ::open(req.file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoError(errno, req.file);
    ::close(fd);
    created = true;
  }
  fuse::ImageFsConfig config;
  config.files.push_back({v.name, dev, 0, dev->size()});
  config.single_file = true;
  config.writable = true;
  config.xattrs["user.vss.volume"] = v.id.ToString();  // for the fsfreeze writer
  config.fsname = Fsname();
  config.mtime = ::time(nullptr);
  auto fs = fuse::ImageFs::Mount(config, req.file);
  if (!fs.ok()) {
    if (created) ::unlink(req.file.c_str());
    return fs.status();
  }
  ready(Json{{"file", req.file},
             {"volume", v.name},
             {"size", dev->size()},
             {"via", source.via()}}
            .dump());
  Status served = (*fs)->Run();
  fs->reset();
  Status flushed = dev->Flush();
  if (created) ::unlink(req.file.c_str());
  return served.ok() ? flushed : served;
}

}  // namespace vss::tools
