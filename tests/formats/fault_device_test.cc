// FaultDevice: the Nth matching call fails once or from then on; failed
// calls do not reach the target.

#include "vss/formats/fault_device.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "vss/formats/memory_device.h"

namespace vss {
namespace {

using testing::Pattern;

class FaultDeviceTest : public ::testing::Test {
 protected:
  MemoryDevice target_{1 << 20};
  FaultDevice dev_{&target_};
  std::vector<uint8_t> data_ = Pattern(100, 1);
};

TEST_F(FaultDeviceTest, NoRule_ForwardsEverything) {
  VSS_ASSERT_OK(dev_.Write(0, data_));
  std::vector<uint8_t> buf(100);
  VSS_ASSERT_OK(target_.Read(0, buf));
  EXPECT_EQ(buf, data_);
  EXPECT_EQ(dev_.calls(), 0u);
}

TEST_F(FaultDeviceTest, NthRule_FailsOnlyTheNthMatchingCallOnce) {
  dev_.SetRule({.ops = static_cast<uint32_t>(DeviceOp::kWrite), .nth = 3});
  VSS_EXPECT_OK(dev_.Write(0, data_));
  VSS_EXPECT_OK(dev_.Write(100, data_));
  Status s = dev_.Write(200, data_);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_EQ(s.message(), "injected fault");
  VSS_EXPECT_OK(dev_.Write(300, data_));
  EXPECT_EQ(dev_.calls(), 4u);
  EXPECT_EQ(dev_.failures(), 1u);
  std::vector<uint8_t> buf(100);
  VSS_ASSERT_OK(target_.Read(200, buf));
  EXPECT_EQ(buf, std::vector<uint8_t>(100, 0)) << "failed write reached target";
}

TEST_F(FaultDeviceTest, PersistentRule_FailsEveryCallFromNthOn) {
  dev_.SetRule({.ops = static_cast<uint32_t>(DeviceOp::kAnyWrite),
                .nth = 2,
                .persistent = true,
                .error = NoSpaceError("disk full")});
  VSS_EXPECT_OK(dev_.Write(0, data_));
  EXPECT_EQ(dev_.WriteZeroes(0, 10).code(), StatusCode::kNoSpace);
  EXPECT_EQ(dev_.Discard(0, 10).code(), StatusCode::kNoSpace);
  EXPECT_EQ(dev_.Write(0, data_).code(), StatusCode::kNoSpace);
  EXPECT_EQ(dev_.failures(), 3u);
  std::vector<uint8_t> buf(100);
  VSS_EXPECT_OK(dev_.Read(0, buf));  // reads do not match the rule
  EXPECT_EQ(buf, data_);
}

TEST_F(FaultDeviceTest, NonMatchingOps_AreNotCountedOrFailed) {
  dev_.SetRule({.ops = static_cast<uint32_t>(DeviceOp::kFlush), .nth = 1});
  VSS_EXPECT_OK(dev_.Write(0, data_));
  auto extents = dev_.Extents(0, 4096);
  EXPECT_TRUE(extents.ok());
  EXPECT_EQ(dev_.calls(), 0u);
  EXPECT_EQ(dev_.Flush().code(), StatusCode::kIoError);
  VSS_EXPECT_OK(dev_.Flush());
}

TEST_F(FaultDeviceTest, ExtentsRule_FailsExtents) {
  dev_.SetRule({.ops = static_cast<uint32_t>(DeviceOp::kExtents)});
  EXPECT_EQ(dev_.Extents(0, 10).status().code(), StatusCode::kIoError);
}

TEST_F(FaultDeviceTest, RangeErrors_AreNotCountedAsCalls) {
  dev_.SetRule({.nth = 1});
  EXPECT_EQ(dev_.Write(1 << 20, data_).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(dev_.calls(), 0u);
}

TEST_F(FaultDeviceTest, ClearRule_StopsFailures_SetRuleResetsCounter) {
  dev_.SetRule({.persistent = true});
  EXPECT_FALSE(dev_.Flush().ok());
  dev_.ClearRule();
  VSS_EXPECT_OK(dev_.Flush());
  dev_.SetRule({.nth = 2});
  EXPECT_EQ(dev_.calls(), 0u);
  VSS_EXPECT_OK(dev_.Flush());
  EXPECT_FALSE(dev_.Flush().ok());
}

}  // namespace
}  // namespace vss
