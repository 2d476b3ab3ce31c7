#include "vss/api/fsfreeze_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "freeze_window.h"
#include "vss/api/daemon/thaw_guard.h"

namespace vss {
namespace {

// First line of a sysfs file, without the newline; empty if unreadable.
std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The names under `dir` that start with `prefix`.
std::vector<std::string> ListDir(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind(prefix, 0) == 0) out.push_back(name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t j) { return s[j] >= '0' && s[j] <= '7'; };
    if (s[i] == '\\' && i + 3 < s.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// (major:minor, mountpoint) of every mount, in /proc/self/mountinfo order.
std::vector<std::pair<std::string, std::string>> ReadMounts() {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, mountpoint;
    if (f >> id >> parent >> dev >> root >> mountpoint) {
      out.emplace_back(dev, UnescapeMountinfo(mountpoint));
    }
  }
  return out;
}

// The volume (index into `volumes`) a loop device's backing file belongs
// to, if any: the same file as the image, or a file naming the volume's id
// in its "user.vss.volume" attribute (a `vssctl attach` FUSE file).
std::optional<size_t> VolumeOfBackingFile(std::string backing,
                                          const std::vector<EventVolume>& volumes) {
  // The kernel appends this when the file was unlinked after attaching.
  const std::string kDeleted = " (deleted)";
  if (backing.size() > kDeleted.size() &&
      backing.compare(backing.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0) {
    return std::nullopt;
  }
  struct stat bst {};
  const bool have_stat = ::stat(backing.c_str(), &bst) == 0;
  for (size_t i = 0; i < volumes.size(); ++i) {
    struct stat vst {};
    if (backing == volumes[i].path) return i;
    // Same inode: the image reached through another path (symlink, bind).
    if (have_stat && ::stat(volumes[i].path.c_str(), &vst) == 0 && vst.st_dev == bst.st_dev &&
        vst.st_ino == bst.st_ino) {
      return i;
    }
  }
  char buf[128];
  ssize_t n = ::getxattr(backing.c_str(), "user.vss.volume", buf, sizeof buf - 1);
  if (n <= 0) return std::nullopt;  // ENODATA, ENOTSUP, ...: not a vss file
  std::string value(buf, static_cast<size_t>(n));
  while (!value.empty() && (value.back() == '\n' || value.back() == '\0')) value.pop_back();
  std::optional<Guid> id = Guid::Parse(value);
  if (!id) return std::nullopt;
  for (size_t i = 0; i < volumes.size(); ++i) {
    if (volumes[i].id == *id) return i;
  }
  return std::nullopt;
}

}  // namespace

Guid FsFreezeWriterClassId() {
  // Fixed, so that requesters recognise the writer across restarts.
  static const Guid id = *Guid::Parse("6e5c1f0a-3b7d-4f2e-9a41-f5f2e0a1c0de");
  return id;
}

std::vector<FsMount> FindMountedFilesystems(const std::vector<EventVolume>& volumes) {
  std::vector<FsMount> out;
  if (volumes.empty()) return out;
  const auto mounts = ReadMounts();
  std::set<std::string> seen_devs;
  for (const std::string& loop : ListDir("/sys/block", "loop")) {
    const std::string sys = "/sys/block/" + loop;
    std::string backing = ReadLine(sys + "/loop/backing_file");
    if (backing.empty()) continue;  // not bound to a file
    std::optional<size_t> vol = VolumeOfBackingFile(backing, volumes);
    if (!vol) continue;
    // The whole device and each partition (loopNp1, ...).
    std::vector<std::string> devices = {loop};
    for (const std::string& part : ListDir(sys, loop + "p")) devices.push_back(part);
    for (const std::string& name : devices) {
      const std::string dev = ReadLine(
          name == loop ? sys + "/dev" : sys + "/" + name + "/dev");
      if (dev.empty() || !seen_devs.insert(dev).second) continue;
      // The first mount: freezing one mount freezes the superblock, and a
      // second FIFREEZE of it would fail with EBUSY.
      for (const auto& [mdev, mountpoint] : mounts) {
        if (mdev == dev) {
          out.push_back({volumes[*vol].name, "/dev/" + name, dev, mountpoint});
          break;
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------

FsFreezer::FsFreezer(std::chrono::milliseconds window, std::vector<std::string> guard_command)
    : window_(std::make_unique<internal::FreezeWindow>(
          window, std::move(guard_command), &mu_,
          [this] { ThawLocked("watchdog thaw").IgnoreError(); })) {
  window_->Start();
}

FsFreezer::~FsFreezer() {
  {
    std::lock_guard<std::mutex> l(mu_);
    ThawLocked("thaw").IgnoreError();
  }
  window_->Stop();
}

VssStatus FsFreezer::StartGuard() {
  std::lock_guard<std::mutex> l(mu_);
  return window_->StartGuard(&events_);
}

VssStatus FsFreezer::Freeze(const std::vector<std::string>& mountpoints) {
  std::lock_guard<std::mutex> l(mu_);
  if (!frozen_.empty()) return VssError(VSS_E_BAD_STATE, "filesystems are already frozen");
  if (VssStatus s = window_->StartGuard(&events_); !s.ok()) return s;
  // Armed before the first FIFREEZE: the window counts from the Freeze
  // event, as the coordinator's does.
  window_->Arm();
  for (const std::string& mp : mountpoints) {
    int fd = ::open(mp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && window_->guard() != nullptr) {
      // The helper holds its own descriptor of the filesystem before the
      // FIFREEZE: if this process dies from here on, the helper thaws it.
      Status g = window_->guard()->WillFreeze(mp, fd);
      if (!g.ok() && frozen_.empty()) {
        // The helper died since the last set (nothing of ours is under it
        // yet): a new one, once.
        if (window_->StartGuard(&events_).ok()) g = window_->guard()->WillFreeze(mp, fd);
      }
      if (!g.ok()) {
        ::close(fd);
        ThawLocked("thaw").IgnoreError();
        events_.push_back("freeze failed " + mp + ": " + g.message());
        return VssError(VSS_E_WRITERERROR_NONRETRYABLE,
                        "cannot freeze " + mp + " under the thaw guard: " + g.message());
      }
    }
    if (fd >= 0 && ::ioctl(fd, FIFREEZE, 0) != 0) err = errno;
    if (err != 0 && fd >= 0 && window_->guard() != nullptr) {
      // Not frozen by us (not even on EBUSY: that freeze is someone
      // else's): the helper must not thaw it.
      window_->guard()->Thawed(mp).IgnoreError();  // a broken guard is replaced at the next Freeze
    }
    if (err == EOPNOTSUPP) {
      // This filesystem type cannot freeze (vfat, ...): flushing it is the
      // best that can be done, as fsfreeze-less VSS writers do.
      ::syncfs(fd);
      ::close(fd);
      events_.push_back("sync " + mp);
      continue;
    }
    if (err != 0) {
      if (fd >= 0) ::close(fd);
      ThawLocked("thaw").IgnoreError();
      std::string what = "cannot freeze " + mp + ": " + std::strerror(err);
      events_.push_back("freeze failed " + mp + ": " + std::strerror(err));
      if (err == EBUSY) {
        return VssError(VSS_E_WRITERERROR_RETRYABLE, what + " (already frozen by someone else)");
      }
      return VssError(VSS_E_WRITERERROR_NONRETRYABLE, what);
    }
    frozen_.push_back({mp, fd});
    events_.push_back("freeze " + mp);
  }
  if (frozen_.empty()) window_->Disarm();
  return VssStatus::Ok();
}

VssStatus FsFreezer::ThawAll() {
  std::lock_guard<std::mutex> l(mu_);
  return ThawLocked("thaw");
}

VssStatus FsFreezer::ThawLocked(const char* why) {
  window_->Disarm();
  std::string failed;
  // Reverse order, as nested freezes would need.
  for (auto it = frozen_.rbegin(); it != frozen_.rend(); ++it) {
    if (::ioctl(it->fd, FITHAW, 0) == 0) {
      events_.push_back(std::string(why) + " " + it->mountpoint);
    } else {
      const std::string err = std::strerror(errno);
      events_.push_back("thaw failed " + it->mountpoint + ": " + err);
      failed += (failed.empty() ? "" : ", ") + it->mountpoint + " (" + err + ")";
    }
    // After the FITHAW: until then the helper must still be able to thaw.
    // Forgotten on failure too, as here. A broken guard is replaced at the
    // next Freeze.
    if (window_->guard() != nullptr) window_->guard()->Thawed(it->mountpoint).IgnoreError();
    ::close(it->fd);
  }
  frozen_.clear();
  if (!failed.empty()) return VssError(VSS_E_WRITERERROR_NONRETRYABLE, "cannot thaw " + failed);
  return VssStatus::Ok();
}

std::vector<std::string> FsFreezer::frozen() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const Frozen& f : frozen_) out.push_back(f.mountpoint);
  return out;
}

bool FsFreezer::watchdog_fired() const {
  std::lock_guard<std::mutex> l(mu_);
  return window_->fired();
}

std::vector<std::string> FsFreezer::events() const {
  std::lock_guard<std::mutex> l(mu_);
  return events_;
}

pid_t FsFreezer::guard_pid() const {
  std::lock_guard<std::mutex> l(mu_);
  const ThawGuard* guard = window_->guard();
  return guard != nullptr && !guard->broken() ? guard->pid() : -1;
}

// ---------------------------------------------------------------------------

FsFreezeWriter::FsFreezeWriter(uint32_t freeze_timeout_ms, std::vector<std::string> guard_command)
    : freeze_timeout_ms_(freeze_timeout_ms),
      freezer_(std::chrono::milliseconds(freeze_timeout_ms), std::move(guard_command)) {}

FsFreezeWriter::~FsFreezeWriter() {
  // No handler may run while the freezer goes; then thaw whatever is left.
  Unsubscribe().IgnoreError();
  freezer_.ThawAll().IgnoreError();
}

VssStatus FsFreezeWriter::Initialize() {
  if (VssStatus s = freezer_.StartGuard(); !s.ok()) return s;
  return Writer::Initialize(FsFreezeWriterClassId(), "fsfreeze", VSS_UT_SYSTEMSERVICE,
                            VSS_ST_OTHER, VSS_APP_SYSTEM, freeze_timeout_ms_);
}

bool FsFreezeWriter::OnPrepareSnapshot() {
  // Found here, while writes still flow: getxattr on a FUSE file goes to
  // its server, which must not be waiting on a frozen filesystem.
  mounts_ = FindMountedFilesystems(GetCurrentVolumes());
  return true;
}

bool FsFreezeWriter::OnFreeze() {
  std::vector<std::string> mountpoints;
  for (const FsMount& m : mounts_) mountpoints.push_back(m.mountpoint);
  VssStatus s = freezer_.Freeze(mountpoints);
  if (s.ok()) return true;
  SetWriterFailureEx(s.code(), S_OK, s.message()).IgnoreError();
  return false;  // a veto: the set is aborted
}

bool FsFreezeWriter::OnThaw() {
  const bool fired = freezer_.watchdog_fired();
  VssStatus s = freezer_.ThawAll();
  mounts_.clear();
  // Non-fatal: the set is committed by now; the failure shows in the
  // writer's status.
  if (!s.ok()) {
    SetWriterFailureEx(s.code(), S_OK, s.message()).IgnoreError();
  } else if (fired) {
    SetWriterFailureEx(VSS_E_WRITERERROR_TIMEOUT, S_OK,
                       "the freeze window ran out before Thaw; the watchdog thawed")
        .IgnoreError();
  }
  return true;
}

bool FsFreezeWriter::OnAbort() {
  mounts_.clear();
  VssStatus s = freezer_.ThawAll();
  if (!s.ok()) SetWriterFailureEx(s.code(), S_OK, s.message()).IgnoreError();
  return true;
}

}  // namespace vss
