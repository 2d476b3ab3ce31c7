// RawImage behaviour beyond the conformance suite: creation, opening, the
// advisory lock and its holder in messages, durability across reopen.

#include "vss/formats/raw_image.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "test_util.h"

namespace vss {
namespace {

using testing::Pattern;
using testing::TempDir;

constexpr uint64_t kSize = 64 * 1024 * 1024;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(RawImageTest, Create_LeavesSparseFileOfRequestedSize) {
  TempDir dir;
  auto image = RawImage::Create(dir.File("disk.img"), kSize);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  struct stat st;
  ASSERT_EQ(stat(dir.File("disk.img").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize);
  EXPECT_EQ(st.st_blocks, 0);
  EXPECT_EQ((*image)->size(), kSize);
  EXPECT_EQ((*image)->path(), dir.File("disk.img"));
}

TEST(RawImageTest, Create_ExistingPathFailsAlreadyExistsAndLeavesFile) {
  TempDir dir;
  const std::string path = dir.File("disk.img");
  { std::ofstream(path) << "precious"; }
  auto image = RawImage::Create(path, kSize);
  EXPECT_EQ(image.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(image.status().message().find(path), std::string::npos);
  EXPECT_EQ(ReadFile(path), "precious");
}

TEST(RawImageTest, Create_SizeZeroFailsInvalidArgumentAndLeavesNoFile) {
  TempDir dir;
  auto image = RawImage::Create(dir.File("disk.img"), 0);
  EXPECT_EQ(image.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(access(dir.File("disk.img").c_str(), F_OK), 0);
}

TEST(RawImageTest, Create_InMissingDirectoryFailsNotFound) {
  TempDir dir;
  auto image = RawImage::Create(dir.File("no/such/disk.img"), kSize);
  EXPECT_EQ(image.status().code(), StatusCode::kNotFound);
}

TEST(RawImageTest, Open_MissingFileFailsNotFoundNamingPath) {
  TempDir dir;
  auto image = RawImage::Open(dir.File("missing.img"));
  EXPECT_EQ(image.status().code(), StatusCode::kNotFound);
  EXPECT_NE(image.status().message().find("missing.img"), std::string::npos);
}

TEST(RawImageTest, Open_DirectoryFailsInvalidArgument) {
  TempDir dir;
  auto image = RawImage::Open(dir.path(), {.read_only = true});
  EXPECT_EQ(image.status().code(), StatusCode::kInvalidArgument);
}

TEST(RawImageTest, Open_EmptyFileFailsInvalidArgument) {
  TempDir dir;
  { std::ofstream(dir.File("empty.img")); }
  auto image = RawImage::Open(dir.File("empty.img"));
  EXPECT_EQ(image.status().code(), StatusCode::kInvalidArgument);
}

TEST(RawImageTest, Open_SizeIsFileSize) {
  TempDir dir;
  { ASSERT_TRUE(RawImage::Create(dir.File("a.img"), 12345).ok()); }
  auto image = RawImage::Open(dir.File("a.img"));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ((*image)->size(), 12345u);
}

TEST(RawImageTest, FlushedData_SurvivesReopen) {
  TempDir dir;
  const std::string path = dir.File("disk.img");
  std::vector<uint8_t> data = Pattern(10000, 1);
  {
    auto image = RawImage::Create(path, kSize);
    ASSERT_TRUE(image.ok());
    VSS_ASSERT_OK((*image)->Write(777, data));
    VSS_ASSERT_OK((*image)->Flush());
  }
  auto image = RawImage::Open(path, {.read_only = true});
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  std::vector<uint8_t> buf(data.size());
  VSS_ASSERT_OK((*image)->Read(777, buf));
  EXPECT_EQ(buf, data);
}

TEST(RawImageTest, SecondOpenInSameProcess_FailsBusyNamingPid) {
  TempDir dir;
  const std::string path = dir.File("disk.img");
  auto first = RawImage::Create(path, kSize);
  ASSERT_TRUE(first.ok());
  auto second = RawImage::Open(path);
  ASSERT_EQ(second.status().code(), StatusCode::kBusy);
  const Status status = second.status();
  const std::string& msg = status.message();
  EXPECT_NE(msg.find("pid " + std::to_string(getpid())), std::string::npos)
      << msg;
  EXPECT_NE(msg.find(path + " is in use by"), std::string::npos) << msg;
  // A reader is refused too while a writer holds the image.
  EXPECT_EQ(RawImage::Open(path, {.read_only = true}).status().code(),
            StatusCode::kBusy);
}

TEST(RawImageTest, Open_AfterHolderClosesSucceeds) {
  TempDir dir;
  const std::string path = dir.File("disk.img");
  { ASSERT_TRUE(RawImage::Create(path, kSize).ok()); }
  auto again = RawImage::Open(path);
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST(RawImageTest, ReadOnlyOpens_ShareTheLockButExcludeWriters) {
  TempDir dir;
  const std::string path = dir.File("disk.img");
  { ASSERT_TRUE(RawImage::Create(path, kSize).ok()); }
  auto r1 = RawImage::Open(path, {.read_only = true});
  auto r2 = RawImage::Open(path, {.read_only = true});
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(RawImage::Open(path).status().code(), StatusCode::kBusy);
}

TEST(RawImageTest, OpenWithoutLock_IgnoresHolder) {
  TempDir dir;
  const std::string path = dir.File("disk.img");
  auto first = RawImage::Create(path, kSize);
  ASSERT_TRUE(first.ok());
  auto second = RawImage::Open(path, {.read_only = true, .lock = false});
  EXPECT_TRUE(second.ok()) << second.status().ToString();
}

TEST(RawImageTest, OpenLockedByChildProcess_FailsBusyNamingChildPid) {
  TempDir dir;
  const std::string path = dir.File("disk.img");
  { ASSERT_TRUE(RawImage::Create(path, kSize).ok()); }
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child takes the lock, reports, and waits to be killed.
    auto image = RawImage::Open(path);
    char c = image.ok() ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1) _exit(2);
    for (;;) pause();
  }
  close(ready[1]);
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  ASSERT_EQ(c, 'y');
  auto busy = RawImage::Open(path);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_EQ(busy.status().code(), StatusCode::kBusy);
  EXPECT_NE(busy.status().message().find("pid " + std::to_string(child)),
            std::string::npos)
      << busy.status().message();
  // The lock died with its holder.
  EXPECT_TRUE(RawImage::Open(path).ok());
}

TEST(RawImageTest, Discard_PunchesHoleInFile) {
  TempDir dir;
  auto image = RawImage::Create(dir.File("disk.img"), kSize);
  ASSERT_TRUE(image.ok());
  VSS_ASSERT_OK((*image)->Write(0, Pattern(1 << 20, 2)));
  VSS_ASSERT_OK((*image)->Flush());
  struct stat before, after;
  ASSERT_EQ(fstat((*image)->fd(), &before), 0);
  VSS_ASSERT_OK((*image)->Discard(0, 1 << 20));
  ASSERT_EQ(fstat((*image)->fd(), &after), 0);
  EXPECT_LT(after.st_blocks, before.st_blocks);
  EXPECT_EQ(after.st_size, before.st_size);
}

TEST(RawImageTest, ReadOnlyImage_RejectsWriteNamingPath) {
  TempDir dir;
  const std::string path = dir.File("disk.img");
  { ASSERT_TRUE(RawImage::Create(path, kSize).ok()); }
  auto image = RawImage::Open(path, {.read_only = true});
  ASSERT_TRUE(image.ok());
  Status s = (*image)->Write(0, Pattern(1, 3));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find(path), std::string::npos);
}

}  // namespace
}  // namespace vss
