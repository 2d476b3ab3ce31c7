// OverlayDevice: writes stay in the overlay and never reach the device
// underneath; reads combine both at any alignment; a failing base read is
// an error, not stale or zero data.
#include "vss/formats/overlay_device.h"

#include <gtest/gtest.h>

#include <vector>

#include "vss/formats/fault_device.h"
#include "vss/formats/memory_device.h"

namespace vss {
namespace {

constexpr uint64_t kBaseSize = 64 << 10;
// The overlay shows [kOffset, kOffset + kSize) of the base: not block
// aligned, and its last block is short.
constexpr uint64_t kOffset = 1000;
constexpr uint64_t kSize = 5 * 4096 + 123;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(i * 7 + seed);
  return out;
}

class OverlayDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(base_.Write(0, original_).ok()); }
  std::vector<uint8_t> BaseBytes() {
    std::vector<uint8_t> b(kBaseSize);
    EXPECT_TRUE(base_.Read(0, b).ok());
    return b;
  }
  const std::vector<uint8_t> original_ = Pattern(kBaseSize, 1);
  // What the overlay must read: the base's range, then what a test wrote.
  std::vector<uint8_t> expected_{original_.begin() + kOffset,
                                 original_.begin() + kOffset + kSize};
  MemoryDevice base_{kBaseSize};
  OverlayDevice overlay_{&base_, kOffset, kSize};
};

TEST_F(OverlayDeviceTest, Read_ShowsTheBaseRangeUntilWritten) {
  EXPECT_EQ(overlay_.size(), kSize);
  EXPECT_FALSE(overlay_.read_only());
  std::vector<uint8_t> all(kSize);
  ASSERT_TRUE(overlay_.Read(0, all).ok());
  EXPECT_EQ(all, expected_);
  EXPECT_EQ(overlay_.memory_bytes(), 0u);
}

TEST_F(OverlayDeviceTest, Write_StaysInTheOverlayAndKeepsTheRestOfItsBlock) {
  auto data = Pattern(5000, 9);  // across two block boundaries, unaligned
  ASSERT_TRUE(overlay_.Write(3000, data).ok());
  std::copy(data.begin(), data.end(), expected_.begin() + 3000);
  ASSERT_TRUE(overlay_.WriteZeroes(kSize - 100, 100).ok());  // short block
  std::fill(expected_.end() - 100, expected_.end(), 0);
  ASSERT_TRUE(overlay_.Discard(0, 10).ok());
  std::fill(expected_.begin(), expected_.begin() + 10, 0);

  std::vector<uint8_t> all(kSize);
  ASSERT_TRUE(overlay_.Read(0, all).ok());
  EXPECT_EQ(all, expected_);
  std::vector<uint8_t> part(6000);  // unaligned read over written and not
  ASSERT_TRUE(overlay_.Read(2500, part).ok());
  EXPECT_EQ(part, std::vector<uint8_t>(expected_.begin() + 2500,
                                       expected_.begin() + 8500));
  EXPECT_EQ(BaseBytes(), original_) << "a write reached the base device";
  EXPECT_EQ(overlay_.memory_bytes(), 2u * 4096 + 123);  // blocks 0, 1, last
}

TEST_F(OverlayDeviceTest, Write_PastTheEndIsOutOfRange) {
  std::vector<uint8_t> b(2);
  EXPECT_EQ(overlay_.Write(kSize - 1, b).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(BaseBytes(), original_);
}

TEST_F(OverlayDeviceTest, Extents_ReportEverythingAllocated) {
  auto e = overlay_.Extents(10, 5000);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, (std::vector<Extent>{{10, 5000, true}}));
  EXPECT_TRUE(overlay_.Flush().ok());
}

TEST(OverlayDevice, BaseReadErrorsAreReturned) {
  MemoryDevice memory(kBaseSize);
  FaultDevice faulty(&memory);
  OverlayDevice overlay(&faulty, 0, kBaseSize);
  faulty.SetRule(
      {.ops = static_cast<uint32_t>(DeviceOp::kRead), .persistent = true});
  std::vector<uint8_t> b(100);
  EXPECT_EQ(overlay.Read(0, b).code(), StatusCode::kIoError);
  // A partial-block write must read the rest of its block first.
  EXPECT_EQ(overlay.Write(10, b).code(), StatusCode::kIoError);
  // A whole-block write needs no read.
  std::vector<uint8_t> block(4096, 5);
  EXPECT_TRUE(overlay.Write(4096, block).ok());
  faulty.ClearRule();
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(overlay.Read(4096, back).ok());
  EXPECT_EQ(back, block);
}

}  // namespace
}  // namespace vss
