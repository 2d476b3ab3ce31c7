// PowerLossDevice: unflushed writes are visible but not durable; a power
// loss drops, keeps or tears them; a flush applies them in order.

#include "vss/formats/power_loss_device.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "vss/formats/memory_device.h"

namespace vss {
namespace {

using testing::Pattern;
constexpr uint64_t kSize = 1 << 20;
constexpr uint64_t kBlock = 4096;

std::vector<uint8_t> ReadAll(BlockDevice& dev, uint64_t offset, uint64_t n) {
  std::vector<uint8_t> buf(n);
  EXPECT_TRUE(dev.Read(offset, buf).ok());
  return buf;
}

class PowerLossDeviceTest : public ::testing::Test {
 protected:
  MemoryDevice target_{kSize};
  PowerLossDevice dev_{&target_};
};

TEST_F(PowerLossDeviceTest, UnflushedWrite_VisibleThroughDeviceNotInTarget) {
  std::vector<uint8_t> data = Pattern(1000, 1);
  VSS_ASSERT_OK(dev_.Write(10, data));
  EXPECT_EQ(ReadAll(dev_, 10, 1000), data);
  EXPECT_EQ(ReadAll(target_, 10, 1000), std::vector<uint8_t>(1000, 0));
  EXPECT_EQ(dev_.pending(), 1u);
}

TEST_F(PowerLossDeviceTest, DropAll_LosesUnflushedKeepsFlushed) {
  std::vector<uint8_t> synced = Pattern(kBlock, 2);
  std::vector<uint8_t> unsynced = Pattern(kBlock, 3);
  VSS_ASSERT_OK(dev_.Write(0, synced));
  VSS_ASSERT_OK(dev_.Flush());
  VSS_ASSERT_OK(dev_.Write(0, unsynced));
  VSS_ASSERT_OK(dev_.Discard(kBlock, kBlock));
  dev_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_EQ(dev_.pending(), 0u);
  EXPECT_EQ(ReadAll(dev_, 0, kBlock), synced);
}

TEST_F(PowerLossDeviceTest, Flush_AppliesInOrderLastWriteWins) {
  std::vector<uint8_t> model(3 * kBlock, 0);
  std::vector<uint8_t> a = Pattern(3 * kBlock, 4);
  std::vector<uint8_t> b = Pattern(1000, 5);
  VSS_ASSERT_OK(dev_.Write(0, a));
  model = a;
  VSS_ASSERT_OK(dev_.WriteZeroes(100, 5000));
  std::fill_n(model.begin() + 100, 5000, 0);
  VSS_ASSERT_OK(dev_.Write(3000, b));
  std::copy(b.begin(), b.end(), model.begin() + 3000);
  VSS_ASSERT_OK(dev_.Discard(2 * kBlock, kBlock));
  std::fill_n(model.begin() + 2 * kBlock, kBlock, 0);
  EXPECT_EQ(ReadAll(dev_, 0, 3 * kBlock), model);  // overlay before flush
  VSS_ASSERT_OK(dev_.Flush());
  EXPECT_EQ(dev_.pending(), 0u);
  EXPECT_EQ(ReadAll(target_, 0, 3 * kBlock), model);
  dev_.PowerLoss(PowerLossMode::kDropAll, 0);
  EXPECT_EQ(ReadAll(dev_, 0, 3 * kBlock), model);
}

TEST_F(PowerLossDeviceTest, Extents_ReportPendingRangesAllocated) {
  VSS_ASSERT_OK(dev_.Write(8192, Pattern(10, 6)));
  auto extents = dev_.Extents(0, 3 * kBlock);
  ASSERT_TRUE(extents.ok());
  std::vector<Extent> want = {
      {0, 8192, false}, {8192, 10, true}, {8202, 3 * kBlock - 8202, false}};
  EXPECT_EQ(*extents, want);
}

// Each of many unflushed block writes must end up whole, absent, or a
// 512-aligned prefix; with this many writes all three fates appear.
TEST_F(PowerLossDeviceTest, Random_KeepsDropsOrTearsEachWrite) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr int kWrites = 64;
  for (int i = 0; i < kWrites; ++i) {
    VSS_ASSERT_OK(dev_.Write(i * kBlock, Pattern(kBlock, 100 + i)));
  }
  dev_.PowerLoss(PowerLossMode::kRandom, seed);
  int kept = 0, dropped = 0, torn = 0;
  for (int i = 0; i < kWrites; ++i) {
    std::vector<uint8_t> got = ReadAll(target_, i * kBlock, kBlock);
    std::vector<uint8_t> full = Pattern(kBlock, 100 + i);
    uint64_t prefix = 0;
    while (prefix < kBlock && got[prefix] == full[prefix]) ++prefix;
    ASSERT_EQ(prefix % 512, 0u) << "write " << i << " torn off a sector";
    for (uint64_t j = prefix; j < kBlock; ++j) {
      ASSERT_EQ(got[j], 0) << "write " << i << " byte " << j;
    }
    (prefix == kBlock ? kept : prefix == 0 ? dropped : torn)++;
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(dropped, 0);
  EXPECT_GT(torn, 0);
  EXPECT_EQ(dev_.pending(), 0u);
}

TEST_F(PowerLossDeviceTest, Random_SameSeedGivesSameResult) {
  const uint64_t seed = testing::TestSeed();
  MemoryDevice other_target(kSize);
  PowerLossDevice other(&other_target);
  for (PowerLossDevice* d : {&dev_, &other}) {
    for (int i = 0; i < 32; ++i) {
      VSS_ASSERT_OK(d->Write(i * 1000, Pattern(3000, i)));
    }
    d->PowerLoss(PowerLossMode::kRandom, seed);
  }
  EXPECT_EQ(ReadAll(target_, 0, kSize), ReadAll(other_target, 0, kSize));
}

TEST_F(PowerLossDeviceTest, FailedFlush_KeepsUnappliedWritesPending) {
  MemoryDevice medium(kSize);
  // A target that fails writes: flush reports the error and keeps pending.
  class FailingTarget : public ForwardingDevice {
   public:
    using ForwardingDevice::ForwardingDevice;
    Status DoWrite(uint64_t, std::span<const uint8_t>) override {
      return IoError("medium error");
    }
  } failing(&medium);
  PowerLossDevice dev(&failing);
  VSS_ASSERT_OK(dev.Write(0, Pattern(10, 7)));
  EXPECT_EQ(dev.Flush().code(), StatusCode::kIoError);
  EXPECT_EQ(dev.pending(), 1u);
  EXPECT_EQ(ReadAll(dev, 0, 10), Pattern(10, 7));
}

}  // namespace
}  // namespace vss
