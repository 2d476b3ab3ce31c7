#include "host_mounts.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "background.h"

namespace vss::fuse {
namespace {

constexpr const char* kFuseType = "fuse.vss";
constexpr const char* kSourcePrefix = "vssctl:";

struct CommandResult {
  int exit_code = -1;  // 127: could not be run
  std::string out;
  std::string err;
};

std::string ReadAllFrom(int fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return s;
    s.append(buf, static_cast<size_t>(n));
  }
}

// Runs argv[0] (found on PATH, plus /sbin and /usr/sbin) and collects its
// output. The programs used here print little, so reading stdout to the
// end before stderr cannot fill a pipe.
StatusOr<CommandResult> Run(const std::vector<std::string>& argv) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return ErrnoError(errno, "pipe");
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    std::string path = ::getenv("PATH") ? ::getenv("PATH") : "/usr/bin:/bin";
    ::setenv("PATH", (path + ":/usr/sbin:/sbin").c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  CommandResult r;
  if (pid > 0) {
    r.out = ReadAllFrom(out[0]);
    r.err = ReadAllFrom(err[0]);
  }
  ::close(out[0]);
  ::close(err[0]);
  if (pid < 0) return ErrnoError(errno, "fork");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  if (r.exit_code == 127) {
    return UnsupportedError(argv[0] + " is not installed (util-linux)");
  }
  return r;
}

std::string FirstLine(std::string s) {
  s = s.substr(0, s.find('\n'));
  return s.empty() ? "failed" : s;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() &&
        std::all_of(s.begin() + i + 1, s.begin() + i + 4,
                    [](char c) { return c >= '0' && c <= '7'; })) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool IsBeneath(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

std::string MountOptions(const std::string& fs_type) {
  if (fs_type == "ext3" || fs_type == "ext4") return "noload";
  if (fs_type == "xfs") return "norecovery,nouuid";
  return "";
}

// Sets up a loop device on `file` (read-only unless `writable`) and mounts
// its `fs_type` filesystem read-only on `mount_point` with `options`.
// Returns the loop device; on failure it is detached again.
StatusOr<std::string> MountThroughLoop(const std::string& file, bool writable,
                                       const std::string& fs_type,
                                       const std::string& mount_point,
                                       const std::string& options) {
  std::vector<std::string> losetup = {"losetup", "-f", "--show", file};
  if (!writable) losetup.insert(losetup.begin() + 1, "-r");
  VSS_ASSIGN_OR_RETURN(CommandResult r, Run(losetup));
  if (r.exit_code != 0) {
    return IoError("losetup " + file + ": " + FirstLine(r.err));
  }
  std::string loop = r.out.substr(0, r.out.find('\n'));
  if (::mount(loop.c_str(), mount_point.c_str(), fs_type.c_str(),
              MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, options.c_str()) != 0) {
    Status s = ErrnoError(errno, "mounting the " + fs_type + " filesystem of " +
                                     file + " (" + loop + ") on " + mount_point);
    Run({"losetup", "-d", loop}).status().IgnoreError();
    return s;
  }
  return loop;
}

// Loop devices ("/dev/loop3") whose backing file is `target` or beneath it.
std::vector<std::string> LoopDevicesOn(const std::string& target) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/block", ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("loop", 0) != 0) continue;
    std::ifstream f(e.path() / "loop" / "backing_file");
    std::string backing;
    if (!std::getline(f, backing)) continue;
    const std::string deleted = " (deleted)";
    if (backing.size() > deleted.size() &&
        backing.compare(backing.size() - deleted.size(), deleted.size(),
                        deleted) == 0) {
      backing.resize(backing.size() - deleted.size());
    }
    if (backing == target || IsBeneath(backing, target)) {
      out.push_back("/dev/" + name);
    }
  }
  return out;
}

// Unmounts one mount point. EBUSY is retried for a second: a loop device
// just detached, or a filesystem just unmounted, lets go of its file a
// moment later.
Status Unmount(const std::string& mount_point) {
  int err = 0;
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (::umount2(mount_point.c_str(), UMOUNT_NOFOLLOW) == 0) return OkStatus();
    err = errno;
    if (err != EBUSY) break;
    ::usleep(50 * 1000);
  }
  if (err == EBUSY) {
    return BusyError(mount_point +
                     " is busy (files open, or a loop device "
                     "or mount uses it); nothing more unmounted");
  }
  return ErrnoError(err, "unmounting " + mount_point);
}

}  // namespace

std::string AbsolutePath(const std::string& path) {
  std::error_code ec;
  std::string abs =
      std::filesystem::absolute(path, ec).lexically_normal().string();
  if (ec) abs = path;
  while (abs.size() > 1 && abs.back() == '/') abs.pop_back();
  return abs;
}

StatusOr<std::vector<MountEntry>> ReadMountTable() {
  std::ifstream f("/proc/self/mountinfo");
  if (!f) return ErrnoError(errno, "/proc/self/mountinfo");
  std::vector<MountEntry> out;
  std::string line;
  while (std::getline(f, line)) {
    // id parent dev root MOUNT_POINT options [optional...] - TYPE SOURCE ...
    std::istringstream in(line);
    std::vector<std::string> fields;
    for (std::string w; in >> w;) fields.push_back(w);
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || fields.end() - dash < 3) {
      continue;
    }
    out.push_back({Unescape(*(dash + 2)), Unescape(fields[4]), *(dash + 1)});
  }
  return out;
}

StatusOr<std::string> ProbeFilesystem(const std::string& path) {
  VSS_ASSIGN_OR_RETURN(CommandResult r,
                       Run({"blkid", "-p", "-o", "value", "-s", "TYPE", path}));
  if (r.exit_code == 2) return std::string();  // nothing recognised
  if (r.exit_code != 0) {
    return IoError("blkid " + path + ": " + FirstLine(r.err));
  }
  return r.out.substr(0, r.out.find('\n'));
}

std::string WhyNotMountable(const std::string& fs_type) {
  static const char* kTypes[] = {"ext2", "ext3", "ext4", "xfs", "vfat"};
  if (std::find(std::begin(kTypes), std::end(kTypes), fs_type) ==
      std::end(kTypes)) {
    return "vssctl mounts only ext2/3/4, xfs and vfat read-only";
  }
  std::ifstream f("/proc/filesystems");
  for (std::string line; std::getline(f, line);) {
    if (line.substr(line.find('\t') + 1) == fs_type) return "";
  }
  return "this kernel has no " + fs_type + " driver";
}

StatusOr<MountedFilesystem> MountReadOnly(const FilesystemMount& m) {
  if (std::string why = WhyNotMountable(m.fs_type); !why.empty()) {
    return UnsupportedError(m.image + ": cannot mount " + m.fs_type + ": " +
                            why);
  }
  const bool replayable =
      m.fs_type == "xfs" || m.fs_type == "ext3" || m.fs_type == "ext4";
  if (replayable && !m.replay_file.empty()) {
    // ro on a writable device: the kernel replays a dirty log or journal
    // into the overlay behind the replay file, never into the image.
    StatusOr<std::string> loop =
        MountThroughLoop(m.replay_file, /*writable=*/true, m.fs_type,
                         m.mount_point, m.fs_type == "xfs" ? "nouuid" : "");
    if (loop.ok()) return MountedFilesystem{*loop, true};
    // A log that cannot be replayed: mount without it, below.
  }
  VSS_ASSIGN_OR_RETURN(
      std::string loop,
      MountThroughLoop(m.image, /*writable=*/false, m.fs_type, m.mount_point,
                       MountOptions(m.fs_type)));
  return MountedFilesystem{loop, false};
}

StatusOr<pid_t> UnmountTree(const std::string& target_path) {
  std::string target = AbsolutePath(target_path);
  VSS_ASSIGN_OR_RETURN(std::vector<MountEntry> mounts, ReadMountTable());
  const MountEntry* top = nullptr;
  for (const MountEntry& m : mounts) {
    if (m.mount_point == target) top = &m;  // the last one is on top
  }
  if (top == nullptr) return NotFoundError(target + " is not mounted");
  if (top->fs_type != kFuseType || top->source.rfind(kSourcePrefix, 0) != 0) {
    return InvalidArgumentError(target + " is not a vssctl mount (it is " +
                                top->fs_type + " from " + top->source + ")");
  }
  pid_t pid = static_cast<pid_t>(
      std::atoi(top->source.c_str() + std::strlen(kSourcePrefix)));
  // Deepest (latest) first.
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
    if (IsBeneath(it->mount_point, target)) {
      VSS_RETURN_IF_ERROR(Unmount(it->mount_point));
    }
  }
  for (const std::string& loop : LoopDevicesOn(target)) {
    VSS_ASSIGN_OR_RETURN(CommandResult r, Run({"losetup", "-d", loop}));
    if (r.exit_code != 0) {
      return BusyError("detaching " + loop + ": " + FirstLine(r.err));
    }
  }
  VSS_RETURN_IF_ERROR(Unmount(target));
  if (pid > 0) WaitForExit(pid, 10);
  return pid;
}

}  // namespace vss::fuse
