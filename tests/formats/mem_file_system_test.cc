// MemFileSystem: POSIX-like names and handles, power loss of unsynced data
// and names, fault rules.

#include "vss/base/mem_file_system.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace vss {
namespace {

using testing::Pattern;

class MemFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override { VSS_ASSERT_OK(fs_.CreateDirs("/store/diff")); }

  std::unique_ptr<File> OpenOrDie(const std::string& path, bool create) {
    auto f = fs_.Open(path, create);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? std::move(f).value() : nullptr;
  }

  MemFileSystem fs_;
};

TEST_F(MemFileSystemTest, WriteRead_RoundTripsAndShortReadAtEnd) {
  auto f = OpenOrDie("/store/a", true);
  VSS_ASSERT_OK(f->WriteAt(10, Pattern(100, 1)));
  EXPECT_EQ(*f->Size(), 110u);
  std::vector<uint8_t> buf(200, 0xEE);
  auto n = f->ReadAt(0, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 110u);
  EXPECT_EQ(buf[0], 0);
  EXPECT_EQ(std::vector<uint8_t>(buf.begin() + 10, buf.begin() + 110),
            Pattern(100, 1));
  EXPECT_EQ(*f->ReadAt(500, buf), 0u);
}

TEST_F(MemFileSystemTest, Open_MissingFileFailsNotFound) {
  EXPECT_EQ(fs_.Open("/store/none", false).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(fs_.Open("/nodir/x", true).status().code(), StatusCode::kNotFound);
}

TEST_F(MemFileSystemTest, List_ReturnsSortedFilesAndDirsDirectlyInside) {
  OpenOrDie("/store/b", true);
  OpenOrDie("/store/a", true);
  OpenOrDie("/store/diff/seg", true);
  auto names = fs_.List("/store/");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "diff"}));
  EXPECT_EQ(fs_.List("/missing").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(fs_.Exists("/store/diff"));
  EXPECT_TRUE(fs_.Exists("/store/diff/seg"));
}

TEST_F(MemFileSystemTest, Remove_NameGoesButOpenHandleStillWorks) {
  auto f = OpenOrDie("/store/a", true);
  VSS_ASSERT_OK(fs_.Remove("/store/a"));
  EXPECT_FALSE(fs_.Exists("/store/a"));
  VSS_EXPECT_OK(f->WriteAt(0, Pattern(10, 2)));
  EXPECT_EQ(*f->Size(), 10u);
  EXPECT_EQ(fs_.Remove("/store/a").code(), StatusCode::kNotFound);
  EXPECT_EQ(fs_.Remove("/store").code(), StatusCode::kFailedPrecondition);
}

TEST_F(MemFileSystemTest, PowerLoss_LosesUnsyncedWriteKeepsSyncedOne) {
  auto f = OpenOrDie("/store/a", true);
  VSS_ASSERT_OK(fs_.SyncDir("/store"));
  VSS_ASSERT_OK(f->WriteAt(0, Pattern(1000, 3)));
  VSS_ASSERT_OK(f->Sync());
  VSS_ASSERT_OK(f->WriteAt(0, Pattern(2000, 4)));
  fs_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_EQ(fs_.Contents("/store/a"), Pattern(1000, 3));
}

TEST_F(MemFileSystemTest, PowerLoss_UnsyncedCreatedFileVanishes) {
  auto f = OpenOrDie("/store/new", true);
  VSS_ASSERT_OK(f->WriteAt(0, Pattern(10, 5)));
  VSS_ASSERT_OK(f->Sync());  // data synced, but the name is not
  fs_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_FALSE(fs_.Exists("/store/new"));
}

TEST_F(MemFileSystemTest, PowerLoss_SyncDirMakesCreationDurable) {
  auto f = OpenOrDie("/store/new", true);
  VSS_ASSERT_OK(f->WriteAt(0, Pattern(10, 6)));
  VSS_ASSERT_OK(f->Sync());
  VSS_ASSERT_OK(fs_.SyncDir("/store"));
  fs_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_EQ(fs_.Contents("/store/new"), Pattern(10, 6));
}

TEST_F(MemFileSystemTest, PowerLoss_UnsyncedRemovalIsUndone) {
  fs_.SetContents("/store/old", Pattern(50, 7));
  VSS_ASSERT_OK(fs_.Remove("/store/old"));
  auto replacement = OpenOrDie("/store/old", true);  // recreated, unsynced
  fs_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_EQ(fs_.Contents("/store/old"), Pattern(50, 7));
}

TEST_F(MemFileSystemTest, PowerLoss_SyncedRemovalStays) {
  fs_.SetContents("/store/old", Pattern(50, 8));
  VSS_ASSERT_OK(fs_.Remove("/store/old"));
  VSS_ASSERT_OK(fs_.SyncDir("/store"));
  fs_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_FALSE(fs_.Exists("/store/old"));
}

TEST_F(MemFileSystemTest, PowerLoss_UnsyncedTruncateAndPunchAreLost) {
  fs_.SetContents("/store/a", Pattern(8192, 9));
  auto f = OpenOrDie("/store/a", false);
  VSS_ASSERT_OK(f->PunchHole(0, 4096));
  VSS_ASSERT_OK(f->Truncate(100));
  fs_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_EQ(fs_.Contents("/store/a"), Pattern(8192, 9));
}

TEST_F(MemFileSystemTest, PowerLoss_SyncedWriteTruncateAndPunchAreKept) {
  fs_.SetContents("/store/a", Pattern(8192, 14));
  auto f = OpenOrDie("/store/a", false);
  VSS_ASSERT_OK(f->WriteAt(8192, Pattern(100, 15)));
  VSS_ASSERT_OK(f->PunchHole(0, 4096));
  VSS_ASSERT_OK(f->Truncate(8200));
  std::vector<uint8_t> want = fs_.Contents("/store/a");
  ASSERT_EQ(want.size(), 8200u);
  VSS_ASSERT_OK(f->Sync());
  VSS_ASSERT_OK(f->WriteAt(0, Pattern(10, 16)));  // lost
  fs_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_EQ(fs_.Contents("/store/a"), want);
}

TEST_F(MemFileSystemTest, PowerLossRandom_EachWriteWholeAbsentOrSectorPrefix) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr uint64_t kBlock = 4096;
  constexpr int kWrites = 48;
  fs_.SetContents("/store/a", std::vector<uint8_t>(kWrites * kBlock, 0));
  auto f = OpenOrDie("/store/a", false);
  for (int i = 0; i < kWrites; ++i) {
    VSS_ASSERT_OK(f->WriteAt(i * kBlock, Pattern(kBlock, 50 + i)));
  }
  fs_.PowerLoss(PowerLossMode::kRandom, seed);
  std::vector<uint8_t> got = fs_.Contents("/store/a");
  ASSERT_EQ(got.size(), kWrites * kBlock);
  int kept = 0, dropped = 0, torn = 0;
  for (int i = 0; i < kWrites; ++i) {
    std::vector<uint8_t> full = Pattern(kBlock, 50 + i);
    uint64_t prefix = 0;
    while (prefix < kBlock && got[i * kBlock + prefix] == full[prefix])
      ++prefix;
    ASSERT_EQ(prefix % 512, 0u) << "write " << i;
    for (uint64_t j = prefix; j < kBlock; ++j) {
      ASSERT_EQ(got[i * kBlock + j], 0) << "write " << i << " byte " << j;
    }
    (prefix == kBlock ? kept : prefix == 0 ? dropped : torn)++;
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(dropped, 0);
  EXPECT_GT(torn, 0);
}

TEST_F(MemFileSystemTest, FaultRule_FailsNthWriteOnceWithoutEffect) {
  auto f = OpenOrDie("/store/a", true);
  fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kWrite),
                    .nth = 2,
                    .error = NoSpaceError("full")});
  VSS_EXPECT_OK(f->WriteAt(0, Pattern(10, 10)));
  EXPECT_EQ(f->WriteAt(10, Pattern(10, 11)).code(), StatusCode::kNoSpace);
  EXPECT_EQ(*f->Size(), 10u);
  VSS_EXPECT_OK(f->WriteAt(10, Pattern(10, 11)));
}

TEST_F(MemFileSystemTest, FaultRule_PersistentFailsFromNthOn) {
  fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kOpen) |
                           static_cast<uint32_t>(FileOp::kSync),
                    .nth = 2,
                    .persistent = true});
  auto f = OpenOrDie("/store/a", true);  // call 1
  EXPECT_EQ(f->Sync().code(), StatusCode::kIoError);
  EXPECT_EQ(fs_.Open("/store/a", false).status().code(), StatusCode::kIoError);
  VSS_EXPECT_OK(f->WriteAt(0, Pattern(1, 1)));  // not matched
  fs_.ClearFaultRule();
  VSS_EXPECT_OK(f->Sync());
}

// A simulated power cut (kAny, persistent) stops name changes too: a
// removal or directory sync after it neither happens nor survives.
TEST_F(MemFileSystemTest, FaultRule_AnyCoversRemoveAndSyncDir) {
  auto f = OpenOrDie("/store/a", true);
  VSS_ASSERT_OK(f->Sync());
  VSS_ASSERT_OK(fs_.SyncDir("/store"));
  OpenOrDie("/store/b", true);
  fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kAny),
                    .nth = 1,
                    .persistent = true});
  EXPECT_EQ(fs_.Remove("/store/a").code(), StatusCode::kIoError);
  EXPECT_EQ(fs_.SyncDir("/store").code(), StatusCode::kIoError);
  EXPECT_TRUE(fs_.Exists("/store/a"));
  fs_.PowerLoss(PowerLossMode::kDropAll, 1);
  fs_.ClearFaultRule();
  EXPECT_TRUE(fs_.Exists("/store/a"));
  EXPECT_FALSE(fs_.Exists("/store/b"));  // its name was never synced
}

TEST_F(MemFileSystemTest, PunchHole_ReadsZeroesKeepsSizeLowersAllocatedBytes) {
  auto f = OpenOrDie("/store/a", true);
  VSS_ASSERT_OK(f->WriteAt(0, Pattern(5 * 4096, 12)));
  EXPECT_EQ(*f->AllocatedBytes(), 5 * 4096u);
  VSS_ASSERT_OK(f->PunchHole(4096, 2 * 4096));
  EXPECT_EQ(*f->AllocatedBytes(), 3 * 4096u);
  EXPECT_EQ(*f->Size(), 5 * 4096u);
  std::vector<uint8_t> buf(2 * 4096);
  ASSERT_TRUE(f->ReadAt(4096, buf).ok());
  EXPECT_EQ(buf, std::vector<uint8_t>(2 * 4096, 0));
}

TEST_F(MemFileSystemTest, SetContents_ReplacesDurablyAndCreatesDirs) {
  fs_.SetContents("/x/y/z", Pattern(3, 13));
  EXPECT_TRUE(fs_.Exists("/x/y"));
  fs_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_EQ(fs_.Contents("/x/y/z"), Pattern(3, 13));
  EXPECT_TRUE(fs_.Contents("/x/none").empty());
}

}  // namespace
}  // namespace vss
