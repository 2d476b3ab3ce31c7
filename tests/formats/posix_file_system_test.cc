// FileSystem::Default(): the real file system, in a temporary directory.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "vss/base/file.h"

namespace vss {
namespace {

using testing::Pattern;
using testing::TempDir;

class PosixFileSystemTest : public ::testing::Test {
 protected:
  FileSystem* fs_ = FileSystem::Default();
  TempDir dir_;
};

TEST_F(PosixFileSystemTest, CreateDirs_MakesParentsAndIsIdempotent) {
  const std::string d = dir_.File("a/b/c");
  VSS_ASSERT_OK(fs_->CreateDirs(d));
  VSS_ASSERT_OK(fs_->CreateDirs(d));
  EXPECT_TRUE(fs_->Exists(d));
  VSS_EXPECT_OK(fs_->SyncDir(dir_.File("a/b")));
}

TEST_F(PosixFileSystemTest, Open_MissingWithoutCreateFailsNotFound) {
  EXPECT_EQ(fs_->Open(dir_.File("none"), false).status().code(),
            StatusCode::kNotFound);
  EXPECT_FALSE(fs_->Exists(dir_.File("none")));
}

TEST_F(PosixFileSystemTest, WriteSyncRead_RoundTripsWithShortReadAtEnd) {
  auto f = fs_->Open(dir_.File("f"), true);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  VSS_ASSERT_OK((*f)->WriteAt(100, Pattern(5000, 1)));
  VSS_ASSERT_OK((*f)->Sync());
  EXPECT_EQ(*(*f)->Size(), 5100u);
  std::vector<uint8_t> buf(6000);
  auto n = (*f)->ReadAt(100, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 5000u);
  EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + 5000),
            Pattern(5000, 1));
  VSS_ASSERT_OK((*f)->Truncate(10));
  EXPECT_EQ(*(*f)->Size(), 10u);
}

TEST_F(PosixFileSystemTest, ListRemoveAndSyncDir) {
  VSS_ASSERT_OK(fs_->CreateDirs(dir_.File("sub")));
  for (const char* name : {"b", "a", "c"}) {
    ASSERT_TRUE(fs_->Open(dir_.File(name), true).ok());
  }
  auto names = fs_->List(dir_.path());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "c", "sub"}));
  VSS_ASSERT_OK(fs_->Remove(dir_.File("b")));
  VSS_ASSERT_OK(fs_->Remove(dir_.File("sub")));
  VSS_ASSERT_OK(fs_->SyncDir(dir_.path()));
  EXPECT_EQ(*fs_->List(dir_.path()), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(fs_->Remove(dir_.File("b")).code(), StatusCode::kNotFound);
  EXPECT_EQ(fs_->List(dir_.File("none")).status().code(),
            StatusCode::kNotFound);
}

TEST_F(PosixFileSystemTest, PunchHole_ReducesAllocatedBytesKeepsSize) {
  auto f = fs_->Open(dir_.File("f"), true);
  ASSERT_TRUE(f.ok());
  constexpr uint64_t kMiB = 1 << 20;
  VSS_ASSERT_OK((*f)->WriteAt(0, Pattern(kMiB, 2)));
  VSS_ASSERT_OK((*f)->Sync());
  uint64_t before = *(*f)->AllocatedBytes();
  EXPECT_GE(before, kMiB);
  VSS_ASSERT_OK((*f)->PunchHole(0, kMiB / 2));
  EXPECT_LE(*(*f)->AllocatedBytes(), before - kMiB / 2);
  EXPECT_EQ(*(*f)->Size(), kMiB);
  std::vector<uint8_t> buf(kMiB / 2);
  ASSERT_TRUE((*f)->ReadAt(0, buf).ok());
  EXPECT_EQ(buf, std::vector<uint8_t>(kMiB / 2, 0));
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

// Sets the umask for the life of the object.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t m) : old_(umask(m)) {}
  ~ScopedUmask() { umask(old_); }

 private:
  mode_t old_;
};

TEST_F(PosixFileSystemTest, Created_FilesAre0600DirsAre0700UnderUmask022) {
  ScopedUmask u(022);
  VSS_ASSERT_OK(fs_->CreateDirs(dir_.File("a/b")));
  auto f = fs_->Open(dir_.File("a/b/seg"), true);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(ModeOf(dir_.File("a")), 0700u);
  EXPECT_EQ(ModeOf(dir_.File("a/b")), 0700u);
  EXPECT_EQ(ModeOf(dir_.File("a/b/seg")), 0600u);
}

TEST_F(PosixFileSystemTest, Created_PrivateEvenUnderAUmaskThatHidesOwnerBits) {
  ScopedUmask u(0277);
  VSS_ASSERT_OK(fs_->CreateDirs(dir_.File("d")));
  auto f = fs_->Open(dir_.File("d/f"), true);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(ModeOf(dir_.File("d")), 0700u);
  EXPECT_EQ(ModeOf(dir_.File("d/f")), 0600u);
  VSS_EXPECT_OK((*f)->WriteAt(0, Pattern(10, 3)));
}

TEST_F(PosixFileSystemTest, Open_ExistingFileKeepsItsMode) {
  const std::string p = dir_.File("shared");
  { ASSERT_TRUE(fs_->Open(p, true).ok()); }
  ASSERT_EQ(chmod(p.c_str(), 0640), 0);
  ASSERT_TRUE(fs_->Open(p, true).ok());
  EXPECT_EQ(ModeOf(p), 0640u);
}

TEST_F(PosixFileSystemTest, Open_DoesNotFollowASymbolicLink) {
  const std::string target = dir_.File("target");
  { ASSERT_TRUE(fs_->Open(target, true).ok()); }
  const std::string link = dir_.File("seg-000001.vsd");
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  for (bool create : {false, true}) {
    auto f = fs_->Open(link, create);
    EXPECT_EQ(f.status().code(), StatusCode::kFailedPrecondition) << create;
    EXPECT_NE(f.status().message().find(link), std::string::npos);
  }
  // A dangling link is not followed to create its target either.
  const std::string dangling = dir_.File("dangling");
  ASSERT_EQ(symlink(dir_.File("made-through-link").c_str(), dangling.c_str()),
            0);
  EXPECT_FALSE(fs_->Open(dangling, true).ok());
  EXPECT_FALSE(fs_->Exists(dir_.File("made-through-link")));
}

TEST_F(PosixFileSystemTest, RealPath_ResolvesLinksAndDots) {
  VSS_ASSERT_OK(fs_->CreateDirs(dir_.File("real/sub")));
  ASSERT_EQ(symlink(dir_.File("real").c_str(), dir_.File("ln").c_str()), 0);
  auto real = fs_->RealPath(dir_.File("ln/sub/../sub"));
  ASSERT_TRUE(real.ok()) << real.status().ToString();
  auto expected = fs_->RealPath(dir_.File("real/sub"));
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(*real, *expected);
  EXPECT_EQ(fs_->RealPath(dir_.File("none")).status().code(),
            StatusCode::kNotFound);
}

TEST_F(PosixFileSystemTest, DefaultIsASingleton) {
  EXPECT_EQ(FileSystem::Default(), FileSystem::Default());
}

}  // namespace
}  // namespace vss
