// FileSystem::Default(): the real file system, in a temporary directory.

#include <gtest/gtest.h>

#include "test_util.h"
#include "vss/file.h"

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

TEST_F(PosixFileSystemTest, DefaultIsASingleton) {
  EXPECT_EQ(FileSystem::Default(), FileSystem::Default());
}

}  // namespace
}  // namespace vss
