// MemoryDevice specifics: page accounting (cost follows the data).

#include "vss/formats/memory_device.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace vss {
namespace {

using testing::Pattern;
constexpr uint64_t kPage = MemoryDevice::kPageSize;

TEST(MemoryDeviceTest, Write_AllocatesOnlyTouchedPages) {
  MemoryDevice dev(1ull << 40);  // 1 TiB costs nothing until written
  EXPECT_EQ(dev.allocated_bytes(), 0u);
  VSS_ASSERT_OK(dev.Write(kPage - 1, Pattern(2, 1)));
  EXPECT_EQ(dev.allocated_bytes(), 2 * kPage);
}

TEST(MemoryDeviceTest, WriteZeroes_FreesPagesThatBecomeZero) {
  MemoryDevice dev(16 * kPage);
  VSS_ASSERT_OK(dev.Write(0, Pattern(4 * kPage, 2)));
  VSS_ASSERT_OK(dev.WriteZeroes(kPage, kPage));  // a whole page
  EXPECT_EQ(dev.allocated_bytes(), 3 * kPage);
  VSS_ASSERT_OK(dev.WriteZeroes(2 * kPage + 10, kPage - 10));  // partial
  EXPECT_EQ(dev.allocated_bytes(), 3 * kPage);
  VSS_ASSERT_OK(dev.Discard(2 * kPage, 10));  // now all zero: freed
  EXPECT_EQ(dev.allocated_bytes(), 2 * kPage);
}

TEST(MemoryDeviceTest, Extents_OnHugeSparseDeviceAreFewAndExact) {
  const uint64_t size = 1ull << 40;
  MemoryDevice dev(size);
  VSS_ASSERT_OK(dev.Write(size / 2, Pattern(kPage, 3)));
  auto extents = dev.Extents(0, size);
  ASSERT_TRUE(extents.ok());
  std::vector<Extent> want = {{0, size / 2, false},
                              {size / 2, kPage, true},
                              {size / 2 + kPage, size / 2 - kPage, false}};
  EXPECT_EQ(*extents, want);
}

}  // namespace
}  // namespace vss
