// qcow2::Image::Allocate: after it, writes inside the range are made in
// place (the file does not grow, no cluster is allocated), and what the
// range reads is unchanged by it: zeroes, a backing file's data, zero
// clusters, compressed or snapshot-shared clusters.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "qcow2_image.h"
#include "vss/base/mem_file_system.h"
#include "vss/formats/memory_device.h"
#include "vss/testing/status_matchers.h"

namespace vss::qcow2 {
namespace {

constexpr uint64_t kSize = 3 * 65536 + 5000;  // a short last cluster

std::vector<uint8_t> ReadAll(BlockDevice& dev) {
  std::vector<uint8_t> buf(dev.size());
  EXPECT_TRUE(dev.Read(0, buf).ok());
  return buf;
}

struct Fixture {
  MemFileSystem fs;
  std::unique_ptr<Image> image;

  void Create(uint32_t cluster_bits, bool extended_l2, bool backing) {
    auto file = fs.Open("/a.qcow2", true);
    ASSERT_TRUE(file.ok());
    CreateOptions c;
    c.size = kSize;
    c.cluster_bits = cluster_bits;
    c.extended_l2 = extended_l2;
    ImageOptions o;
    if (backing) {
      c.backing_file = "base.raw";
      c.backing_format = "raw";
      o.open_backing = [](const std::string&, const std::string&)
          -> StatusOr<std::unique_ptr<BlockDevice>> {
        auto base = std::make_unique<MemoryDevice>(kSize, "base.raw");
        std::vector<uint8_t> pattern(kSize);
        for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = uint8_t(i * 7 + 1);
        VSS_RETURN_IF_ERROR(base->Write(0, pattern));
        return std::unique_ptr<BlockDevice>(std::move(base));
      };
    }
    auto made = CreateImage(std::move(*file), "/a.qcow2", c, o);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    image = std::move(*made);
  }
  uint64_t FileSize() { return fs.Contents("/a.qcow2").size(); }
};

void CheckAllocateThenWriteInPlace(Fixture& f, uint64_t offset, uint64_t length) {
  const std::vector<uint8_t> before = ReadAll(*f.image);
  VSS_ASSERT_OK(static_cast<BlockDevice&>(*f.image).Allocate(offset, length));
  EXPECT_EQ(ReadAll(*f.image), before) << "Allocate changed what the image reads";
  VSS_ASSERT_OK(f.image->Flush());
  const uint64_t size_after_allocate = f.FileSize();
  std::vector<uint8_t> data(length);
  std::mt19937 rng(uint32_t(offset + length));
  for (auto& b : data) b = uint8_t(rng());
  VSS_ASSERT_OK(f.image->Write(offset, data));
  VSS_ASSERT_OK(f.image->Flush());
  EXPECT_EQ(f.FileSize(), size_after_allocate) << "the write allocated clusters";
  std::vector<uint8_t> want = before;
  std::memcpy(&want[offset], data.data(), length);
  EXPECT_EQ(ReadAll(*f.image), want);
}

TEST(Qcow2AllocateTest, UnallocatedClustersOfAnEmptyImage) {
  for (uint32_t bits : {9u, 12u, 16u}) {
    SCOPED_TRACE("cluster_bits " + std::to_string(bits));
    Fixture f;
    ASSERT_NO_FATAL_FAILURE(f.Create(bits, false, false));
    CheckAllocateThenWriteInPlace(f, 1000, 70000);
    CheckAllocateThenWriteInPlace(f, kSize - 3000, 3000);  // the short last cluster
  }
}

TEST(Qcow2AllocateTest, KeepsTheBackingFilesDataVisible) {
  Fixture f;
  ASSERT_NO_FATAL_FAILURE(f.Create(12, false, true));
  CheckAllocateThenWriteInPlace(f, 4096 * 3 + 17, 10000);
}

TEST(Qcow2AllocateTest, ExtendedL2PartlyAllocatedCluster) {
  Fixture f;
  ASSERT_NO_FATAL_FAILURE(f.Create(16, true, true));
  std::vector<uint8_t> some(2048, 0xee);
  VSS_ASSERT_OK(f.image->Write(65536 + 4096, some));  // one subcluster of cluster 1
  CheckAllocateThenWriteInPlace(f, 65536, 65536);
}

TEST(Qcow2AllocateTest, ZeroedClustersStayZeroUntilWritten) {
  Fixture f;
  ASSERT_NO_FATAL_FAILURE(f.Create(12, false, true));
  VSS_ASSERT_OK(f.image->WriteZeroes(8192, 8192));  // zero clusters over backing data
  CheckAllocateThenWriteInPlace(f, 8192, 100);
}

TEST(Qcow2AllocateTest, OwnedClustersCostNothing) {
  Fixture f;
  ASSERT_NO_FATAL_FAILURE(f.Create(12, false, false));
  std::vector<uint8_t> data(8192, 0x42);
  VSS_ASSERT_OK(f.image->Write(0, data));
  VSS_ASSERT_OK(f.image->Flush());
  const uint64_t size = f.FileSize();
  VSS_ASSERT_OK(static_cast<BlockDevice&>(*f.image).Allocate(0, 8192));
  VSS_ASSERT_OK(f.image->Flush());
  EXPECT_EQ(f.FileSize(), size);
}

}  // namespace
}  // namespace vss::qcow2
