// The cases of the BlockDevice conformance suite; the kinds are described
// and instantiated by the test files (device_conformance.h says how).

#include "vss/testing/device_conformance.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "vss/testing/pattern.h"
#include "vss/testing/status_matchers.h"

namespace vss::testing {

std::vector<uint8_t> ConformanceDevice::InitialContents() {
  return std::vector<uint8_t>(device().size(), 0);
}

std::string DeviceKindName(const ::testing::TestParamInfo<DeviceKind>& info) {
  return info.param.name;
}

void PrintTo(const DeviceKind& kind, std::ostream* os) { *os << kind.name; }

void DeviceConformanceTest::SetUp() {
  ASSERT_TRUE(kind().make) << kind().name << " has no factory";
  StatusOr<std::unique_ptr<ConformanceDevice>> made = kind().make();
  ASSERT_THAT(made, IsOk()) << "making a " << kind().name;
  made_ = std::move(made).value();
  dev_ = &made_->device();
  ASSERT_EQ(dev_->size(), kConformanceDeviceSize);
  ASSERT_EQ(dev_->read_only(), kind().read_only);
  model_ = made_->InitialContents();
  ASSERT_EQ(model_.size(), kConformanceDeviceSize);
}

void DeviceConformanceTest::TearDown() {
  dev_ = nullptr;
  made_.reset();
}

StatusCode DeviceConformanceTest::WriteCode(StatusCode writable) const {
  return kind().read_only ? StatusCode::kFailedPrecondition : writable;
}

void DeviceConformanceTest::WriteBoth(uint64_t offset,
                                      const std::vector<uint8_t>& data) {
  if (kind().read_only) {
    EXPECT_THAT(dev_->Write(offset, data),
                StatusIs(StatusCode::kFailedPrecondition));
    return;
  }
  VSS_ASSERT_OK(dev_->Write(offset, data));
  std::copy(data.begin(), data.end(), model_.begin() + offset);
}

void DeviceConformanceTest::ZeroBoth(uint64_t offset, uint64_t length) {
  ClearBoth(&BlockDevice::WriteZeroes, offset, length);
}

void DeviceConformanceTest::DiscardBoth(uint64_t offset, uint64_t length) {
  ClearBoth(&BlockDevice::Discard, offset, length);
}

void DeviceConformanceTest::ClearBoth(ClearOp op, uint64_t offset,
                                      uint64_t length) {
  if (kind().read_only) {
    EXPECT_THAT((dev_->*op)(offset, length),
                StatusIs(StatusCode::kFailedPrecondition));
    return;
  }
  VSS_ASSERT_OK((dev_->*op)(offset, length));
  std::fill_n(model_.begin() + offset, length, 0);
}

void DeviceConformanceTest::ExpectMatchesModel(uint64_t offset,
                                               uint64_t length) {
  std::vector<uint8_t> buf(length, 0xEE);
  VSS_ASSERT_OK(dev_->Read(offset, buf));
  std::vector<uint8_t> want(model_.begin() + offset,
                            model_.begin() + offset + length);
  ASSERT_TRUE(buf == want) << "mismatch in [" << offset << ", +" << length
                           << ")";
}

bool DeviceConformanceTest::ModelIsZero(uint64_t offset,
                                        uint64_t length) const {
  return std::all_of(model_.begin() + offset, model_.begin() + offset + length,
                     [](uint8_t b) { return b == 0; });
}

void DeviceConformanceTest::ExpectValidExtents(uint64_t offset,
                                               uint64_t length) {
  StatusOr<std::vector<Extent>> extents = dev_->Extents(offset, length);
  ASSERT_THAT(extents, IsOk());
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
      EXPECT_TRUE(kind().reports_holes) << "hole at " << e.offset;
      EXPECT_TRUE(ModelIsZero(e.offset, e.length))
          << "data inside hole at " << e.offset;
    }
    pos = e.offset + e.length;
  }
  EXPECT_EQ(pos, offset + length);
}

namespace {

constexpr uint64_t kSize = kConformanceDeviceSize;

TEST_P(DeviceConformanceTest, Read_FreshDeviceReadsItsInitialContents) {
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
  ExpectMatchesModel(65536 + 13, 9);
  ExpectMatchesModel(kSize - 9, 9);
}

TEST_P(DeviceConformanceTest, PastEnd_FailsOutOfRangeAndWritesNothing) {
  std::vector<uint8_t> data = Pattern(20, 6);
  std::vector<uint8_t> buf(2);
  Status s = dev_->Write(kSize - 10, data);
  EXPECT_EQ(s.code(), WriteCode(StatusCode::kOutOfRange));
  EXPECT_THAT(s.message(), ::testing::HasSubstr(dev_->name()));
  EXPECT_THAT(dev_->Read(kSize - 1, buf), StatusIs(StatusCode::kOutOfRange));
  EXPECT_THAT(dev_->Read(kSize + 1, {}), StatusIs(StatusCode::kOutOfRange));
  EXPECT_EQ(dev_->Write(kSize + 1, {}).code(),
            WriteCode(StatusCode::kOutOfRange));
  EXPECT_EQ(dev_->WriteZeroes(kSize - 1, 2).code(),
            WriteCode(StatusCode::kOutOfRange));
  EXPECT_EQ(dev_->Discard(kSize, 1).code(), WriteCode(StatusCode::kOutOfRange));
  EXPECT_THAT(dev_->Extents(1, kSize), StatusIs(StatusCode::kOutOfRange));
  ExpectMatchesModel(0, kSize);
}

TEST_P(DeviceConformanceTest, OffsetPlusLengthOverflow_FailsOutOfRange) {
  std::vector<uint8_t> data = Pattern(16, 7);
  std::vector<uint8_t> buf(16);
  const uint64_t huge = UINT64_MAX - 7;
  EXPECT_THAT(dev_->Read(huge, buf), StatusIs(StatusCode::kOutOfRange));
  EXPECT_EQ(dev_->Write(huge, data).code(), WriteCode(StatusCode::kOutOfRange));
  EXPECT_EQ(dev_->WriteZeroes(8, UINT64_MAX).code(),
            WriteCode(StatusCode::kOutOfRange));
  EXPECT_EQ(dev_->Discard(huge, 16).code(), WriteCode(StatusCode::kOutOfRange));
  EXPECT_THAT(dev_->Extents(16, UINT64_MAX - 8),
              StatusIs(StatusCode::kOutOfRange));
  ExpectMatchesModel(0, kSize);
}

TEST_P(DeviceConformanceTest, ZeroLengthOps_SucceedAsNoOps) {
  VSS_EXPECT_OK(dev_->Read(kSize, {}));
  EXPECT_EQ(dev_->Write(0, {}).code(), WriteCode(StatusCode::kOk));
  EXPECT_EQ(dev_->WriteZeroes(kSize, 0).code(), WriteCode(StatusCode::kOk));
  EXPECT_EQ(dev_->Discard(100, 0).code(), WriteCode(StatusCode::kOk));
  StatusOr<std::vector<Extent>> extents = dev_->Extents(100, 0);
  ASSERT_THAT(extents, IsOk());
  EXPECT_TRUE(extents->empty());
  ExpectMatchesModel(0, kSize);
}

TEST_P(DeviceConformanceTest, WriteZeroes_RangeReadsZeroes) {
  WriteBoth(0, Pattern(200000, 8));
  ZeroBoth(1000, 70000);
  ZeroBoth(131072, 8192);  // aligned
  ExpectMatchesModel(0, 250000);
}

TEST_P(DeviceConformanceTest, Discard_RangeReadsZeroes) {
  WriteBoth(0, Pattern(200000, 9));
  DiscardBoth(4097, 65535);
  DiscardBoth(131072, 65536);
  ExpectMatchesModel(0, 250000);
}

TEST_P(DeviceConformanceTest, Discard_ToTheEndReadsZeroes) {
  WriteBoth(kSize - 5000, Pattern(5000, 10));
  DiscardBoth(kSize - 4000, 4000);
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

// A zeroed device that reports holes is one hole; one that does not is one
// allocated extent; a device made with data is checked against it.
TEST_P(DeviceConformanceTest, Extents_FreshDeviceMatchesItsContents) {
  StatusOr<std::vector<Extent>> extents = dev_->Extents(0, kSize);
  ASSERT_THAT(extents, IsOk());
  if (!kind().reports_holes) {
    EXPECT_EQ(*extents, (std::vector<Extent>{{0, kSize, true}}));
  } else if (ModelIsZero(0, kSize)) {
    EXPECT_EQ(*extents, (std::vector<Extent>{{0, kSize, false}}));
  } else {
    ExpectValidExtents(0, kSize);
  }
}

TEST_P(DeviceConformanceTest, Extents_ReportHoleAfterDiscardAndFlush) {
  WriteBoth(0, Pattern(262144, 14));
  VSS_ASSERT_OK(dev_->Flush());
  DiscardBoth(65536, 131072);
  VSS_ASSERT_OK(dev_->Flush());
  ExpectMatchesModel(0, 262144);
  if (kind().read_only || !kind().reports_holes) {
    ExpectValidExtents(0, 262144);
    return;
  }
  StatusOr<std::vector<Extent>> extents = dev_->Extents(0, 262144);
  ASSERT_THAT(extents, IsOk());
  std::vector<Extent> want = {
      {0, 65536, true}, {65536, 131072, false}, {196608, 65536, true}};
  EXPECT_EQ(*extents, want);
}

TEST_P(DeviceConformanceTest, Extents_DataIsReportedAllocated) {
  WriteBoth(40960, Pattern(4096, 15));
  ExpectValidExtents(40960, 4096);
  if (kind().read_only) return;  // checked against what it was made with
  StatusOr<std::vector<Extent>> extents = dev_->Extents(40960, 4096);
  ASSERT_THAT(extents, IsOk());
  EXPECT_EQ(*extents, (std::vector<Extent>{{40960, 4096, true}}));
}

TEST_P(DeviceConformanceTest, Flush_SucceedsAndKeepsData) {
  WriteBoth(12345, Pattern(6789, 16));
  VSS_ASSERT_OK(dev_->Flush());
  VSS_ASSERT_OK(dev_->Flush());
  ExpectMatchesModel(0, kSize);
}

// Each thread writes its own span in pieces (refused on a read-only kind),
// then reads it back; all threads run at once.
TEST_P(DeviceConformanceTest, ConcurrentWritersOnDisjointRanges_AllLand) {
  constexpr int kThreads = 4;
  constexpr uint64_t kSpan = 65536 + 100;
  const StatusCode want = WriteCode(StatusCode::kOk);
  std::vector<std::thread> threads;
  std::vector<std::string> failures(kThreads);
  if (!kind().read_only) {
    for (int t = 0; t < kThreads; ++t) {
      std::vector<uint8_t> data = Pattern(kSpan, 20 + t);
      std::copy(data.begin(), data.end(), model_.begin() + t * kSpan);
    }
  }
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, want, &failures] {
      std::vector<uint8_t> data = Pattern(kSpan, 20 + t);
      for (uint64_t off = 0; off < kSpan; off += 1000) {
        uint64_t n = std::min<uint64_t>(1000, kSpan - off);
        Status s =
            dev_->Write(t * kSpan + off, std::span(data.data() + off, n));
        if (s.code() != want) failures[t] = "write: " + s.ToString();
      }
      std::vector<uint8_t> back(kSpan);
      Status s = dev_->Read(t * kSpan, back);
      if (!s.ok()) {
        failures[t] = "read: " + s.ToString();
      } else if (!std::equal(back.begin(), back.end(),
                             model_.begin() + t * kSpan)) {
        failures[t] = "read back other bytes";
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << t;
  ExpectMatchesModel(0, kSize);
}

// read_only() is what the kind says; a read-only device refuses every
// write whatever its range and still flushes; a writable one takes them.
TEST_P(DeviceConformanceTest, WriteAccess_FollowsReadOnlyFlag) {
  EXPECT_EQ(dev_->read_only(), kind().read_only);
  std::vector<uint8_t> data = Pattern(100, 17);
  WriteBoth(0, data);
  ZeroBoth(10, 20);
  DiscardBoth(0, kSize);
  if (kind().read_only) {
    EXPECT_THAT(dev_->Write(kSize / 2, data),
                StatusIs(StatusCode::kFailedPrecondition,
                         ::testing::HasSubstr(dev_->name())));
  }
  VSS_EXPECT_OK(dev_->Flush());
  ExpectMatchesModel(0, kSize);
}

}  // namespace
}  // namespace vss::testing
