// The conformance suite every BlockDevice implementation passes (style rule
// 9). Each kind of device is built by a harness; the same tests run on all.

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "vss/formats/block_device.h"
#include "vss/formats/fault_device.h"
#include "vss/formats/memory_device.h"
#include "vss/formats/power_loss_device.h"
#include "vss/formats/raw_image.h"
#include "vss/formats/registry.h"

namespace vss {
namespace {

using testing::Pattern;
using testing::TempDir;

// Not a multiple of any block size, so the tail is exercised.
constexpr uint64_t kSize = 1024 * 1024 + 1000;

// Owns one device under test, and builds read-only devices of the same kind.
class Harness {
 public:
  virtual ~Harness() = default;
  virtual BlockDevice* device() = 0;
  // A new read-only device of the same kind (its contents do not matter).
  virtual StatusOr<std::unique_ptr<BlockDevice>> ReadOnly() = 0;
};

class RawImageHarness : public Harness {
 public:
  RawImageHarness() {
    auto image = RawImage::Create(dir_.File("disk.img"), kSize);
    EXPECT_TRUE(image.ok()) << image.status().ToString();
    if (image.ok()) device_ = std::move(image).value();
  }
  BlockDevice* device() override { return device_.get(); }
  StatusOr<std::unique_ptr<BlockDevice>> ReadOnly() override {
    const std::string path = dir_.File("ro.img");
    {
      VSS_ASSIGN_OR_RETURN(auto rw, RawImage::Create(path, kSize));
      std::vector<uint8_t> data = Pattern(10000, 9);
      VSS_RETURN_IF_ERROR(rw->Write(500, data));
    }
    VSS_ASSIGN_OR_RETURN(auto ro, RawImage::Open(path, {.read_only = true}));
    return std::unique_ptr<BlockDevice>(std::move(ro));
  }

 private:
  TempDir dir_;
  std::unique_ptr<RawImage> device_;
};

// The raw image driver, created and opened through the registry.
class RawDriverHarness : public Harness {
 public:
  RawDriverHarness() {
    auto dev = Driver()->Create({.path = dir_.File("disk.img"), .size = kSize});
    EXPECT_TRUE(dev.ok()) << dev.status().ToString();
    if (dev.ok()) device_ = std::move(dev).value();
  }
  BlockDevice* device() override { return device_.get(); }
  StatusOr<std::unique_ptr<BlockDevice>> ReadOnly() override {
    const std::string path = dir_.File("ro.img");
    {
      VSS_ASSIGN_OR_RETURN(auto rw,
                           Driver()->Create({.path = path, .size = kSize}));
      VSS_RETURN_IF_ERROR(rw->Write(500, Pattern(10000, 9)));
    }
    return Driver()->Open({.path = path, .writable = false});
  }

 private:
  static const ImageDriver* Driver() {
    return *DriverRegistry::Default().Find("raw");
  }
  TempDir dir_;
  std::unique_ptr<BlockDevice> device_;
};

class MemoryHarness : public Harness {
 public:
  BlockDevice* device() override { return &device_; }
  StatusOr<std::unique_ptr<BlockDevice>> ReadOnly() override {
    return std::unique_ptr<BlockDevice>(
        std::make_unique<MemoryDevice>(kSize, "ro", /*read_only=*/true));
  }

 private:
  MemoryDevice device_{kSize};
};

// A wrapper (FaultDevice, PowerLossDevice, ForwardingDevice) owning a
// MemoryDevice; the read-only variant wraps a read-only MemoryDevice.
template <typename Wrapper>
class WrapperHarness : public Harness {
 public:
  BlockDevice* device() override { return &device_; }
  StatusOr<std::unique_ptr<BlockDevice>> ReadOnly() override {
    return std::unique_ptr<BlockDevice>(std::make_unique<Wrapper>(
        std::make_unique<MemoryDevice>(kSize, "ro", /*read_only=*/true)));
  }

 private:
  Wrapper device_{std::make_unique<MemoryDevice>(kSize)};
};

struct DeviceKind {
  std::string name;
  std::function<std::unique_ptr<Harness>()> make;
};

class DeviceConformanceTest : public ::testing::TestWithParam<DeviceKind> {
 protected:
  void SetUp() override {
    harness_ = GetParam().make();
    dev_ = harness_->device();
    ASSERT_NE(dev_, nullptr);
    ASSERT_EQ(dev_->size(), kSize);
  }

  // Writes through the device and into the model.
  void WriteBoth(uint64_t offset, const std::vector<uint8_t>& data) {
    VSS_ASSERT_OK(dev_->Write(offset, data));
    std::copy(data.begin(), data.end(), model_.begin() + offset);
  }
  void ZeroModel(uint64_t offset, uint64_t length) {
    std::fill_n(model_.begin() + offset, length, 0);
  }
  // Reads [offset, offset+length) and compares it with the model.
  void ExpectMatchesModel(uint64_t offset, uint64_t length) {
    std::vector<uint8_t> buf(length, 0xEE);
    VSS_ASSERT_OK(dev_->Read(offset, buf));
    std::vector<uint8_t> want(model_.begin() + offset,
                              model_.begin() + offset + length);
    ASSERT_TRUE(buf == want)
        << "mismatch in [" << offset << ", +" << length << ")";
  }
  // Checks the Extents() contract for [offset, offset+length) against the
  // model: exact ordered cover, merged, and no data inside a hole.
  void ExpectValidExtents(uint64_t offset, uint64_t length) {
    auto extents = dev_->Extents(offset, length);
    ASSERT_TRUE(extents.ok()) << extents.status().ToString();
    ASSERT_FALSE(extents->empty());
    uint64_t pos = offset;
    for (size_t i = 0; i < extents->size(); ++i) {
      const Extent& e = (*extents)[i];
      EXPECT_EQ(e.offset, pos);
      EXPECT_GT(e.length, 0u);
      if (i > 0) {
        EXPECT_NE(e.allocated, (*extents)[i - 1].allocated) << "not merged";
      }
      if (!e.allocated) {
        bool zero = std::all_of(model_.begin() + e.offset,
                                model_.begin() + e.offset + e.length,
                                [](uint8_t b) { return b == 0; });
        EXPECT_TRUE(zero) << "data inside hole at " << e.offset;
      }
      pos = e.offset + e.length;
    }
    EXPECT_EQ(pos, offset + length);
  }

  std::unique_ptr<Harness> harness_;
  BlockDevice* dev_ = nullptr;
  std::vector<uint8_t> model_ = std::vector<uint8_t>(kSize, 0);
};

TEST_P(DeviceConformanceTest, Read_FreshDeviceReadsZeroes) {
  ExpectMatchesModel(0, kSize);
}

TEST_P(DeviceConformanceTest, WriteRead_UnalignedRangesRoundTrip) {
  WriteBoth(1, Pattern(3, 1));
  WriteBoth(4095, Pattern(10000, 2));
  WriteBoth(65536 + 17, Pattern(511, 3));
  WriteBoth(kSize - 7, Pattern(7, 4));
  WriteBoth(4000, Pattern(200, 5));  // overlaps an earlier write
  ExpectMatchesModel(0, kSize);
  ExpectMatchesModel(4090, 20);
  ExpectMatchesModel(kSize - 9, 9);
}

TEST_P(DeviceConformanceTest, PastEnd_FailsOutOfRangeAndWritesNothing) {
  std::vector<uint8_t> data = Pattern(20, 6);
  std::vector<uint8_t> buf(2);
  Status s = dev_->Write(kSize - 10, data);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find(dev_->name()), std::string::npos) << s.message();
  EXPECT_EQ(dev_->Read(kSize - 1, buf).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(dev_->Write(kSize + 1, {}).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(dev_->WriteZeroes(kSize - 1, 2).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(dev_->Discard(kSize, 1).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(dev_->Extents(1, kSize).status().code(), StatusCode::kOutOfRange);
  ExpectMatchesModel(0, kSize);
}

TEST_P(DeviceConformanceTest, OffsetPlusLengthOverflow_FailsOutOfRange) {
  std::vector<uint8_t> data = Pattern(16, 7);
  const uint64_t huge = UINT64_MAX - 7;
  EXPECT_EQ(dev_->Write(huge, data).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(dev_->WriteZeroes(8, UINT64_MAX).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(dev_->Discard(huge, 16).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(dev_->Extents(16, UINT64_MAX - 8).status().code(),
            StatusCode::kOutOfRange);
  ExpectMatchesModel(0, kSize);
}

TEST_P(DeviceConformanceTest, ZeroLengthOps_SucceedAsNoOps) {
  VSS_EXPECT_OK(dev_->Read(kSize, {}));
  VSS_EXPECT_OK(dev_->Write(0, {}));
  VSS_EXPECT_OK(dev_->WriteZeroes(kSize, 0));
  VSS_EXPECT_OK(dev_->Discard(100, 0));
  auto extents = dev_->Extents(100, 0);
  ASSERT_TRUE(extents.ok());
  EXPECT_TRUE(extents->empty());
}

TEST_P(DeviceConformanceTest, WriteZeroes_RangeReadsZeroes) {
  WriteBoth(0, Pattern(200000, 8));
  VSS_ASSERT_OK(dev_->WriteZeroes(1000, 70000));
  ZeroModel(1000, 70000);
  VSS_ASSERT_OK(dev_->WriteZeroes(131072, 8192));  // aligned
  ZeroModel(131072, 8192);
  ExpectMatchesModel(0, 250000);
}

TEST_P(DeviceConformanceTest, Discard_RangeReadsZeroes) {
  WriteBoth(0, Pattern(200000, 9));
  VSS_ASSERT_OK(dev_->Discard(4097, 65535));
  ZeroModel(4097, 65535);
  VSS_ASSERT_OK(dev_->Discard(131072, 65536));
  ZeroModel(131072, 65536);
  ExpectMatchesModel(0, 250000);
}

TEST_P(DeviceConformanceTest, Discard_ToTheEndReadsZeroes) {
  WriteBoth(kSize - 5000, Pattern(5000, 10));
  VSS_ASSERT_OK(dev_->Discard(kSize - 4000, 4000));
  ZeroModel(kSize - 4000, 4000);
  ExpectMatchesModel(kSize - 6000, 6000);
}

TEST_P(DeviceConformanceTest, Extents_CoverRequestedRangeExactly) {
  WriteBoth(8192, Pattern(4096, 11));
  WriteBoth(300000, Pattern(1, 12));
  WriteBoth(kSize - 3, Pattern(3, 13));
  ExpectValidExtents(0, kSize);
  ExpectValidExtents(1, 9000);
  ExpectValidExtents(8200, 10);
  ExpectValidExtents(299999, 3);
  ExpectValidExtents(kSize - 100, 100);
  ExpectValidExtents(kSize - 1, 1);
}

TEST_P(DeviceConformanceTest, Extents_FreshDeviceIsOneHole) {
  auto extents = dev_->Extents(0, kSize);
  ASSERT_TRUE(extents.ok()) << extents.status().ToString();
  ASSERT_EQ(extents->size(), 1u);
  EXPECT_EQ((*extents)[0], (Extent{0, kSize, false}));
}

TEST_P(DeviceConformanceTest, Extents_ReportHoleAfterDiscardAndFlush) {
  WriteBoth(0, Pattern(262144, 14));
  VSS_ASSERT_OK(dev_->Flush());
  VSS_ASSERT_OK(dev_->Discard(65536, 131072));
  ZeroModel(65536, 131072);
  VSS_ASSERT_OK(dev_->Flush());
  auto extents = dev_->Extents(0, 262144);
  ASSERT_TRUE(extents.ok()) << extents.status().ToString();
  std::vector<Extent> want = {
      {0, 65536, true}, {65536, 131072, false}, {196608, 65536, true}};
  EXPECT_EQ(*extents, want);
  ExpectMatchesModel(0, 262144);
}

TEST_P(DeviceConformanceTest, Extents_DataIsReportedAllocated) {
  WriteBoth(40960, Pattern(4096, 15));
  auto extents = dev_->Extents(40960, 4096);
  ASSERT_TRUE(extents.ok()) << extents.status().ToString();
  EXPECT_EQ(*extents, (std::vector<Extent>{{40960, 4096, true}}));
}

TEST_P(DeviceConformanceTest, Flush_SucceedsAndKeepsData) {
  WriteBoth(12345, Pattern(6789, 16));
  VSS_ASSERT_OK(dev_->Flush());
  VSS_ASSERT_OK(dev_->Flush());
  ExpectMatchesModel(0, kSize);
}

TEST_P(DeviceConformanceTest, ConcurrentWritersOnDisjointRanges_AllLand) {
  constexpr int kThreads = 4;
  constexpr uint64_t kSpan = 65536 + 100;
  std::vector<std::thread> threads;
  std::vector<Status> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    std::vector<uint8_t> data = Pattern(kSpan, 20 + t);
    std::copy(data.begin(), data.end(), model_.begin() + t * kSpan);
    threads.emplace_back([this, t, data, &results] {
      for (uint64_t off = 0; off < kSpan; off += 1000) {
        uint64_t n = std::min<uint64_t>(1000, kSpan - off);
        Status s =
            dev_->Write(t * kSpan + off, std::span(data.data() + off, n));
        if (!s.ok()) results[t] = s;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const Status& s : results) VSS_EXPECT_OK(s);
  ExpectMatchesModel(0, kSize);
}

TEST_P(DeviceConformanceTest, ReadOnly_RejectsWritesAndChangesNothing) {
  auto ro = harness_->ReadOnly();
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  BlockDevice& dev = **ro;
  ASSERT_TRUE(dev.read_only());
  std::vector<uint8_t> before(dev.size());
  VSS_ASSERT_OK(dev.Read(0, before));
  std::vector<uint8_t> data = Pattern(100, 17);
  EXPECT_EQ(dev.Write(0, data).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(dev.WriteZeroes(0, 4096).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(dev.Discard(0, dev.size()).code(), StatusCode::kFailedPrecondition);
  VSS_EXPECT_OK(dev.Flush());
  std::vector<uint8_t> after(dev.size());
  VSS_ASSERT_OK(dev.Read(0, after));
  EXPECT_TRUE(before == after);
}

std::vector<DeviceKind> AllKinds() {
  return {
      {"RawImage", [] { return std::make_unique<RawImageHarness>(); }},
      {"RawDriver", [] { return std::make_unique<RawDriverHarness>(); }},
      {"MemoryDevice", [] { return std::make_unique<MemoryHarness>(); }},
      {"FaultDeviceWithoutRule",
       [] { return std::make_unique<WrapperHarness<FaultDevice>>(); }},
      {"PowerLossDeviceOverMemory",
       [] { return std::make_unique<WrapperHarness<PowerLossDevice>>(); }},
      {"ForwardingDevice",
       [] { return std::make_unique<WrapperHarness<ForwardingDevice>>(); }},
  };
}

INSTANTIATE_TEST_SUITE_P(AllDevices, DeviceConformanceTest,
                         ::testing::ValuesIn(AllKinds()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace vss
