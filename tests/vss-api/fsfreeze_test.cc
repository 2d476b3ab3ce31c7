// The fsfreeze writer on a real ext4 filesystem: a store volume's image is
// formatted, attached to a loop device and mounted; backups freeze it while
// the set is committed and thaw it after, on a veto, on an abort, and from
// the watchdog when no Thaw comes. Needs root, losetup, mkfs.ext4 and
// mount; skipped with the reason otherwise.
//
// The loop device reads the image file directly (not through the engine as
// `vssctl attach` does), which is enough to test freezing; the shadows'
// contents are not checked here.
//
// The thaw guard's helper is vssd's `--thaw-guard` mode (VSSD_PATH, built
// with this test). Closing a ThawGuard while something is listed is, to
// the helper, the same end of file as its parent's death; the death of
// vssd itself is tests/e2e/vssd_fsfreeze_kill_test.sh.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <dirent.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <set>

#include "test_util.h"
#include "vss/api/fsfreeze_writer.h"
#include "vss/api/daemon/thaw_guard.h"

namespace vss::testing {
namespace {

using std::chrono::milliseconds;

int Shell(const std::string& cmd) { return std::system(("{ " + cmd + "; } >/dev/null 2>&1").c_str()); }

// Standard output of `cmd` without the trailing newline; empty on failure.
std::string Capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  if (::pclose(p) != 0) return "";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// A formatted image attached to a loop device and mounted. The destructor
// thaws (whatever an assertion left frozen), unmounts (lazily if it must)
// and detaches, so a failing test leaves nothing behind.
class LoopMount {
 public:
  // Sets error() if any step fails.
  LoopMount(const std::string& image, const std::string& mountpoint) : mountpoint_(mountpoint) {
    ::mkdir(mountpoint.c_str(), 0755);
    if (Shell("mkfs.ext4 -q -F " + image) != 0) {
      error_ = "mkfs.ext4 failed on " + image;
      return;
    }
    device_ = Capture("losetup --find --show " + image);
    if (device_.empty()) {
      error_ = "losetup --find --show failed (no loop devices?)";
      return;
    }
    if (Shell("mount " + device_ + " " + mountpoint) != 0) {
      error_ = "mount " + device_ + " failed";
      return;
    }
    mounted_ = true;
  }
  ~LoopMount() {
    Thaw();
    if (mounted_ && Shell("umount " + mountpoint_) != 0) Shell("umount -l " + mountpoint_);
    if (!device_.empty()) Shell("losetup -d " + device_);
  }
  // FITHAW; "not frozen" (EINVAL) is fine.
  void Thaw() const {
    if (!mounted_) return;
    int fd = ::open(mountpoint_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::ioctl(fd, FITHAW, 0);
    ::close(fd);
  }
  const std::string& error() const { return error_; }
  const std::string& device() const { return device_; }
  const std::string& mountpoint() const { return mountpoint_; }

 private:
  std::string mountpoint_;
  std::string device_;
  bool mounted_ = false;
  std::string error_;
};

// Creates, writes and fsyncs a file on the mount; true if it worked.
bool WriteFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::string data(4096, 'x');
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
            ::fsync(fd) == 0;
  return ::close(fd) == 0 && ok;
}

// A write on another thread, which blocks while the filesystem is frozen.
// The destructor thaws the mount before joining, so it never hangs.
class BackgroundWrite {
 public:
  BackgroundWrite(const LoopMount& mount, const std::string& name)
      : mount_(mount),
        result_(std::async(std::launch::async, WriteFile, mount.mountpoint() + "/" + name)
                    .share()) {}
  ~BackgroundWrite() {
    if (result_.wait_for(milliseconds(0)) != std::future_status::ready) mount_.Thaw();
    result_.wait();
  }
  // True if the write finished (successfully) within `ms`.
  bool DoneWithin(int ms) {
    return result_.wait_for(milliseconds(ms)) == std::future_status::ready && result_.get();
  }

 private:
  const LoopMount& mount_;
  std::shared_future<bool> result_;
};

// A FRONT_END writer that checks, at its Freeze and Thaw, that the
// filesystem takes writes: it is frozen after it and thawed before it.
class OrderProbe final : public Writer {
 public:
  explicit OrderProbe(const LoopMount& mount) : mount_(mount) {}
  ~OrderProbe() override { Unsubscribe().IgnoreError(); }
  bool OnPrepareSnapshot() override { return true; }
  bool OnFreeze() override {
    BackgroundWrite w(mount_, "at-freeze");
    writable_at_freeze = w.DoneWithin(2000);
    return true;
  }
  bool OnThaw() override {
    BackgroundWrite w(mount_, "at-thaw");
    writable_at_thaw = w.DoneWithin(2000);
    return true;
  }
  bool OnAbort() override { return true; }

  std::atomic<bool> writable_at_freeze{false};
  std::atomic<bool> writable_at_thaw{false};

 private:
  const LoopMount& mount_;
};

// The command that runs the thaw guard's helper.
std::vector<std::string> GuardCommand() { return {VSSD_PATH, "--thaw-guard"}; }

// The descriptor numbers open in process `pid`.
std::set<int> OpenFds(pid_t pid) {
  std::set<int> out;
  for (const std::string& name : [&] {
         std::vector<std::string> names;
         DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
         if (d == nullptr) return names;
         while (dirent* e = ::readdir(d)) names.push_back(e->d_name);
         ::closedir(d);
         return names;
       }()) {
    if (name != "." && name != "..") out.insert(std::stoi(name));
  }
  return out;
}

// What descriptor `fd` of process `pid` points at.
std::string FdTarget(pid_t pid, int fd) {
  char buf[4096];
  std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf);
  return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
}

// True once process `pid` is gone (or a zombie) within `ms`.
bool ExitsWithin(pid_t pid, int ms) {
  for (int waited = 0; waited <= ms; waited += 20) {
    std::string stat = Capture("cat /proc/" + std::to_string(pid) + "/stat");
    size_t paren = stat.rfind(')');
    if (stat.empty() || (paren != std::string::npos && stat.compare(paren, 4, ") Z ") == 0)) {
      return true;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

WriterStatus StatusOf(BackupComponents& bc, const std::string& name) {
  for (size_t i = 0; i < bc.GetWriterStatusCount(); ++i) {
    WriterStatus s = *bc.GetWriterStatus(i);
    if (s.name == name) return s;
  }
  ADD_FAILURE() << "no writer " << name;
  return {};
}

class FsFreezeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (loop devices, mount, FIFREEZE)";
    if (Shell("command -v losetup && command -v mkfs.ext4 && command -v mount && command -v umount") !=
        0) {
      GTEST_SKIP() << "needs losetup, mkfs.ext4, mount and umount";
    }
    engine::StoreOptions so;
    so.dir = dir_.path() + "/store";
    StatusOr<std::unique_ptr<engine::Store>> s = engine::Store::Open(std::move(so));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    engine::CreateVolumeRequest req;
    req.path = dir_.path() + "/fsvol.img";
    req.size = uint64_t{64} << 20;
    req.name = "fsvol";
    StatusOr<engine::VolumeInfo> v = store_->CreateVolume(req);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    volume_ = *v;
    mount_ = std::make_unique<LoopMount>(volume_.path, dir_.path() + "/mnt");
    if (!mount_->error().empty()) GTEST_SKIP() << "cannot set up a loop mount: " << mount_->error();
    ASSERT_TRUE(WriteFile(mount_->mountpoint() + "/before"));
    provider_ = std::make_unique<SoftwareProvider>(*store_);
  }

  void TearDown() override {
    coordinator_.reset();
    mount_.reset();  // before dir_ goes
  }

  void MakeCoordinator(CoordinatorOptions options) {
    coordinator_ = std::make_unique<Coordinator>(*provider_, std::move(options));
  }

  // GatherWriterMetadata ... PrepareForBackup with the volume, then
  // DoSnapshotSet; returns its result.
  HResult Backup(BackupComponents& bc) {
    EXPECT_TRUE(bc.InitializeForBackup().ok());
    EXPECT_TRUE(bc.SetContext(VSS_CTX_BACKUP).ok());
    EXPECT_TRUE(bc.SetBackupState(false, false, VSS_BT_FULL).ok());
    EXPECT_EQ(WaitOn(bc.GatherWriterMetadata()), VSS_S_ASYNC_FINISHED);
    EXPECT_TRUE(bc.StartSnapshotSet().ok());
    EXPECT_TRUE(bc.AddToSnapshotSet("fsvol").ok());
    EXPECT_EQ(WaitOn(bc.PrepareForBackup()), VSS_S_ASYNC_FINISHED);
    return WaitOn(bc.DoSnapshotSet());
  }

  static HResult WaitOn(const VssStatusOr<std::shared_ptr<Async>>& a) {
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    if (!a.ok()) return a.status().code();
    return (*a)->Wait();
  }

  size_t ShadowCount() {
    StatusOr<std::vector<engine::ShadowInfo>> rows = store_->ListShadows();
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? rows->size() : 0;
  }

  std::vector<std::string> FreezeThaw() const {
    return {"freeze " + mount_->mountpoint(), "thaw " + mount_->mountpoint()};
  }

  TempDir dir_;
  std::unique_ptr<engine::Store> store_;
  engine::VolumeInfo volume_;
  std::unique_ptr<LoopMount> mount_;
  std::unique_ptr<SoftwareProvider> provider_;
  std::unique_ptr<Coordinator> coordinator_;
  EventLog log_;
};

TEST_F(FsFreezeTest, Discovery_FindsTheLoopMountOfTheImage_AndNothingElse) {
  EventVolume vol{volume_.name, volume_.id, volume_.path, ""};
  std::vector<FsMount> found = FindMountedFilesystems({vol});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].volume, "fsvol");
  EXPECT_EQ(found[0].device, mount_->device());
  EXPECT_EQ(found[0].mountpoint, mount_->mountpoint());

  EventVolume other{"other", Guid::Generate(), dir_.path() + "/other.img", ""};
  EXPECT_TRUE(FindMountedFilesystems({other}).empty());
  EXPECT_TRUE(FindMountedFilesystems({}).empty());
}

TEST_F(FsFreezeTest, Discovery_FindsAFileNamingTheVolumeInItsXattr) {
  // Stands in for a `vssctl attach` FUSE file: another file whose
  // user.vss.volume attribute is the volume's id.
  const std::string attached = dir_.path() + "/attached.img";
  ASSERT_EQ(Shell("truncate -s 16M " + attached), 0);
  const std::string id = volume_.id.ToString();
  if (::setxattr(attached.c_str(), "user.vss.volume", id.data(), id.size(), 0) != 0) {
    GTEST_SKIP() << "the temporary directory takes no user xattrs";
  }
  LoopMount second(attached, dir_.path() + "/mnt2");
  ASSERT_EQ(second.error(), "");
  EventVolume vol{volume_.name, volume_.id, dir_.path() + "/elsewhere.img", ""};
  std::vector<FsMount> found = FindMountedFilesystems({vol});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].mountpoint, second.mountpoint());
}

TEST_F(FsFreezeTest, FullBackup_FrozenWhileCommitted_ThawedAfter_LastToFreeze) {
  std::unique_ptr<BackgroundWrite> during;
  std::atomic<bool> done_at_hold{true};
  CoordinatorOptions o;
  o.on_hold_for_test = [&] {
    during = std::make_unique<BackgroundWrite>(*mount_, "during");
    done_at_hold = during->DoneWithin(300);
  };
  MakeCoordinator(std::move(o));
  FsFreezeWriter fsw;
  ASSERT_TRUE(fsw.Initialize().ok());
  ASSERT_TRUE(fsw.Subscribe(*coordinator_).ok());
  OrderProbe probe(*mount_);
  ASSERT_TRUE(probe.Initialize(Guid::Generate(), "probe", VSS_UT_USERDATA, VSS_ST_OTHER,
                               VSS_APP_FRONT_END)
                  .ok());
  ASSERT_TRUE(probe.Subscribe(*coordinator_).ok());

  LocalBackupComponents bc(*coordinator_);
  ASSERT_EQ(Backup(bc), VSS_S_ASYNC_FINISHED);
  ASSERT_NE(during, nullptr);
  EXPECT_FALSE(done_at_hold) << "a write finished while the set was committed";
  EXPECT_TRUE(during->DoneWithin(5000)) << "the write did not finish after the thaw";
  EXPECT_TRUE(probe.writable_at_freeze) << "frozen before the FRONT_END writer's Freeze";
  EXPECT_TRUE(probe.writable_at_thaw) << "still frozen at the FRONT_END writer's Thaw";
  EXPECT_EQ(fsw.freezer().events(), FreezeThaw());
  EXPECT_TRUE(fsw.freezer().frozen().empty());
  EXPECT_EQ(StatusOf(bc, "fsfreeze").state, VSS_WS_WAITING_FOR_BACKUP_COMPLETE);
  EXPECT_EQ(StatusOf(bc, "fsfreeze").failure, S_OK);
  EXPECT_EQ(ShadowCount(), 1u);
  EXPECT_EQ(WaitOn(bc.BackupComplete()), VSS_S_ASYNC_FINISHED);
}

TEST_F(FsFreezeTest, VetoAtFreeze_Thawed_SetAborted) {
  MakeCoordinator({});
  FsFreezeWriter fsw;
  ASSERT_TRUE(fsw.Initialize().ok());
  ASSERT_TRUE(fsw.Subscribe(*coordinator_).ok());
  // SYSTEM is the last level, so the vetoing writer shares it: both get
  // Freeze at once and the set is aborted after both answered.
  TestWriter veto(&log_, "V", "fsvol/app",
                  FailAt(WriterEventKind::kFreeze, VSS_E_WRITERERROR_RETRYABLE));
  ASSERT_TRUE(veto.Initialize(veto.class_id, "V", VSS_UT_USERDATA, VSS_ST_OTHER, VSS_APP_SYSTEM)
                  .ok());
  ASSERT_TRUE(veto.Subscribe(*coordinator_).ok());

  LocalBackupComponents bc(*coordinator_);
  EXPECT_EQ(Backup(bc), VSS_E_WRITERERROR_RETRYABLE);
  BackgroundWrite after(*mount_, "after");
  EXPECT_TRUE(after.DoneWithin(2000)) << "still frozen after the veto";
  EXPECT_EQ(fsw.freezer().events(), FreezeThaw());
  EXPECT_EQ(ShadowCount(), 0u);
  EXPECT_NE(log_.IndexOf("V:Abort"), -1);
}

TEST_F(FsFreezeTest, HoldTimeoutAfterFreeze_Thawed_SetAborted) {
  CoordinatorOptions o;
  o.hold_writes_timeout_ms = 50;
  o.on_hold_for_test = [] { std::this_thread::sleep_for(milliseconds(150)); };
  MakeCoordinator(std::move(o));
  FsFreezeWriter fsw;
  ASSERT_TRUE(fsw.Initialize().ok());
  ASSERT_TRUE(fsw.Subscribe(*coordinator_).ok());

  LocalBackupComponents bc(*coordinator_);
  EXPECT_EQ(Backup(bc), VSS_E_HOLD_WRITES_TIMEOUT);
  BackgroundWrite after(*mount_, "after");
  EXPECT_TRUE(after.DoneWithin(2000)) << "still frozen after the abort";
  EXPECT_EQ(fsw.freezer().events(), FreezeThaw());
  EXPECT_EQ(ShadowCount(), 0u);
}

TEST_F(FsFreezeTest, AlreadyFrozenBySomeoneElse_Retryable_NothingLeftFrozen) {
  int fd = ::open(mount_->mountpoint().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ioctl(fd, FIFREEZE, 0), 0);
  {
    FsFreezer f(milliseconds(60000));
    VssStatus s = f.Freeze({mount_->mountpoint()});
    EXPECT_EQ(s.code(), VSS_E_WRITERERROR_RETRYABLE) << s.ToString();
    EXPECT_NE(s.message().find("already frozen"), std::string::npos) << s.message();
    EXPECT_TRUE(f.frozen().empty());
  }
  // The other freezer's freeze is still in place: ours did not thaw it.
  EXPECT_EQ(::ioctl(fd, FITHAW, 0), 0);
  ::close(fd);
}

TEST_F(FsFreezeTest, SecondMountFails_FirstIsThawed_NonRetryable) {
  FsFreezer f(milliseconds(60000));
  VssStatus s = f.Freeze({mount_->mountpoint(), dir_.path() + "/no-such-mount"});
  EXPECT_EQ(s.code(), VSS_E_WRITERERROR_NONRETRYABLE) << s.ToString();
  EXPECT_TRUE(f.frozen().empty());
  BackgroundWrite after(*mount_, "after");
  EXPECT_TRUE(after.DoneWithin(2000));
  ASSERT_GE(f.events().size(), 2u);
  EXPECT_EQ(f.events()[0], "freeze " + mount_->mountpoint());
  EXPECT_EQ(f.events()[1], "thaw " + mount_->mountpoint());
}

TEST_F(FsFreezeTest, NoThawComes_WatchdogThawsAfterTheWindow) {
  FsFreezer f(milliseconds(500));
  ASSERT_TRUE(f.Freeze({mount_->mountpoint()}).ok());
  BackgroundWrite w(*mount_, "blocked");
  EXPECT_FALSE(w.DoneWithin(200)) << "not frozen";
  EXPECT_TRUE(w.DoneWithin(3000)) << "the watchdog did not thaw";
  EXPECT_TRUE(f.watchdog_fired());
  EXPECT_TRUE(f.frozen().empty());
  EXPECT_EQ(f.events().back(), "watchdog thaw " + mount_->mountpoint());
  // A late Thaw finds nothing to do.
  EXPECT_TRUE(f.ThawAll().ok());
}

TEST_F(FsFreezeTest, WriterDestroyedWhileFrozen_Thaws) {
  auto f = std::make_unique<FsFreezer>(milliseconds(60000));
  ASSERT_TRUE(f->Freeze({mount_->mountpoint()}).ok());
  BackgroundWrite w(*mount_, "blocked");
  EXPECT_FALSE(w.DoneWithin(200)) << "not frozen";
  f.reset();
  EXPECT_TRUE(w.DoneWithin(2000)) << "the destructor did not thaw";
}

// ---------------------------------------------------------------- thaw guard

TEST_F(FsFreezeTest, ThawGuard_ClosedWhileFrozen_HelperThawsAndExits) {
  StatusOr<std::unique_ptr<ThawGuard>> guard = ThawGuard::Start(GuardCommand());
  ASSERT_TRUE(guard.ok()) << guard.status().ToString();
  const pid_t pid = (*guard)->pid();
  int fd = ::open(mount_->mountpoint().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE((*guard)->WillFreeze(mount_->mountpoint(), fd).ok());
  ASSERT_EQ(::ioctl(fd, FIFREEZE, 0), 0);
  BackgroundWrite w(*mount_, "blocked");
  EXPECT_FALSE(w.DoneWithin(200)) << "not frozen";
  // End of file, as when this process dies: the helper thaws.
  guard.value().reset();
  EXPECT_TRUE(w.DoneWithin(3000)) << "the helper did not thaw";
  EXPECT_TRUE(ExitsWithin(pid, 3000)) << "the helper is still running";
  // It was thawed by the helper, not by someone else: ours is not frozen.
  EXPECT_NE(::ioctl(fd, FITHAW, 0), 0);
  ::close(fd);
}

TEST_F(FsFreezeTest, ThawGuard_ToldThawed_LeavesALaterFreezeAlone) {
  StatusOr<std::unique_ptr<ThawGuard>> guard = ThawGuard::Start(GuardCommand());
  ASSERT_TRUE(guard.ok()) << guard.status().ToString();
  int fd = ::open(mount_->mountpoint().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE((*guard)->WillFreeze(mount_->mountpoint(), fd).ok());
  ASSERT_EQ(::ioctl(fd, FIFREEZE, 0), 0);
  ASSERT_EQ(::ioctl(fd, FITHAW, 0), 0);
  ASSERT_TRUE((*guard)->Thawed(mount_->mountpoint()).ok());
  // Someone else's freeze, after ours ended: the helper must not undo it.
  ASSERT_EQ(::ioctl(fd, FIFREEZE, 0), 0);
  const pid_t pid = (*guard)->pid();
  guard.value().reset();
  EXPECT_TRUE(ExitsWithin(pid, 3000));
  EXPECT_EQ(::ioctl(fd, FITHAW, 0), 0) << "the helper thawed a freeze it was told had ended";
  ::close(fd);
}

TEST_F(FsFreezeTest, ThawGuard_HelperHoldsOnlyDevNullItsSocketAndTheFrozenFs) {
  // Descriptors this process leaks on purpose (no O_CLOEXEC) must not reach
  // the helper either.
  int leaked = ::open("/dev/zero", O_RDONLY);
  ASSERT_GE(leaked, 0);
  StatusOr<std::unique_ptr<ThawGuard>> guard = ThawGuard::Start(GuardCommand());
  ::close(leaked);
  ASSERT_TRUE(guard.ok()) << guard.status().ToString();
  const pid_t pid = (*guard)->pid();
  EXPECT_EQ(OpenFds(pid), (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(FdTarget(pid, 0), "/dev/null");
  EXPECT_EQ(FdTarget(pid, 1), "/dev/null");
  EXPECT_EQ(FdTarget(pid, 3).rfind("socket:", 0), 0u) << FdTarget(pid, 3);
  EXPECT_EQ(Capture("cat /proc/" + std::to_string(pid) + "/comm"), "vss-thaw-guard");

  int fd = ::open(mount_->mountpoint().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE((*guard)->WillFreeze(mount_->mountpoint(), fd).ok());
  std::set<int> fds = OpenFds(pid);
  EXPECT_EQ(fds.size(), 5u);
  bool holds_mount = false;
  for (int f : fds) holds_mount |= FdTarget(pid, f) == mount_->mountpoint();
  EXPECT_TRUE(holds_mount) << "the helper holds no descriptor of the mountpoint";
  ASSERT_TRUE((*guard)->Thawed(mount_->mountpoint()).ok());
  ::close(fd);
}

TEST_F(FsFreezeTest, FreezerWithGuard_ProgramIsNoGuard_RefusesToFreeze) {
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{dir_.path() + "/no-such-program"},
        std::vector<std::string>{"/bin/true"}}) {
    SCOPED_TRACE(command[0]);
    FsFreezer f(milliseconds(60000), command);
    VssStatus s = f.StartGuard();
    EXPECT_EQ(s.code(), VSS_E_WRITERERROR_NONRETRYABLE) << s.ToString();
    EXPECT_NE(s.message().find("thaw guard"), std::string::npos) << s.message();
    s = f.Freeze({mount_->mountpoint()});
    EXPECT_EQ(s.code(), VSS_E_WRITERERROR_NONRETRYABLE) << s.ToString();
    EXPECT_TRUE(f.frozen().empty());
    EXPECT_EQ(f.guard_pid(), -1);
    BackgroundWrite w(*mount_, "after");
    EXPECT_TRUE(w.DoneWithin(2000)) << "frozen without a guard";
  }
}

TEST_F(FsFreezeTest, FreezerWithGuard_HelperKilledBetweenSets_NextFreezeStartsANewOne) {
  FsFreezer f(milliseconds(60000), GuardCommand());
  ASSERT_TRUE(f.StartGuard().ok());
  const pid_t first = f.guard_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(ExitsWithin(first, 3000));
  VssStatus s = f.Freeze({mount_->mountpoint()});
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_GT(f.guard_pid(), 0);
  EXPECT_NE(f.guard_pid(), first);
  BackgroundWrite w(*mount_, "blocked");
  EXPECT_FALSE(w.DoneWithin(200)) << "not frozen";
  EXPECT_TRUE(f.ThawAll().ok());
  EXPECT_TRUE(w.DoneWithin(2000));
  EXPECT_EQ(f.events(), FreezeThaw());
}

TEST_F(FsFreezeTest, FreezerWithGuard_Destroyed_HelperExits) {
  pid_t pid;
  {
    FsFreezer f(milliseconds(60000), GuardCommand());
    ASSERT_TRUE(f.Freeze({mount_->mountpoint()}).ok());
    pid = f.guard_pid();
    ASSERT_GT(pid, 0);
  }
  EXPECT_TRUE(ExitsWithin(pid, 3000));
  BackgroundWrite w(*mount_, "after");
  EXPECT_TRUE(w.DoneWithin(2000));
}

}  // namespace
}  // namespace vss::testing
