// WriteBehind on its own, over a MemoryDevice image: queued writes reach
// the image in order after one sync, Drain() is a barrier, reads see queued
// writes, a failed sync or issue is sticky, and a reservation that finds
// the image full fails that write alone. Waits are on events, never time.
#include "../../engine/write_behind.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine_test_util.h"
#include "vss/formats/fault_device.h"
#include "vss/formats/memory_device.h"

namespace vss::engine {
namespace {

constexpr uint32_t kChunk = 64 * 1024;
constexpr uint64_t kSize = 1 << 20;

// A device whose medium is full from `full_from` on: Allocate() of a range
// reaching there fails with kNoSpace (writes still succeed, as they would
// into space that was already allocated).
class FullFromDevice final : public ForwardingDevice {
 public:
  FullFromDevice(BlockDevice* target, uint64_t full_from)
      : ForwardingDevice(target), full_from_(full_from) {}

 protected:
  Status DoAllocate(uint64_t offset, uint64_t length) override {
    if (offset + length > full_from_) return NoSpaceError("no space left");
    return OkStatus();
  }

 private:
  uint64_t full_from_;
};

// The hooks of a WriteBehind, recording what they are asked to do. The sync
// hook can be held closed (it then waits inside, with the apply mutex held)
// or made to fail.
class Recorder {
 public:
  explicit Recorder(BlockDevice* image) : image_(image) {}

  WriteBehind::Hooks Hooks() {
    return {
        .sync = [this] { return Sync(); },
        .issue = [this](const PendingWrites::Entry& e) { return Issue(e); }};
  }
  void CloseGate() {
    std::lock_guard l(mu_);
    gate_open_ = false;
  }
  void OpenGate() {
    {
      std::lock_guard l(mu_);
      gate_open_ = true;
    }
    cv_.notify_all();
  }
  // Waits until the sync hook has been entered `n` times in all.
  void WaitForSyncs(int n) {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return syncs_ >= n; });
  }
  void FailSync(Status s) {
    std::lock_guard l(mu_);
    sync_error_ = std::move(s);
  }
  std::vector<std::string> events() {
    std::lock_guard l(mu_);
    return events_;
  }
  size_t issued() {
    std::lock_guard l(mu_);
    return issued_;
  }

 private:
  Status Sync() {
    std::unique_lock l(mu_);
    ++syncs_;
    events_.push_back("sync");
    cv_.notify_all();
    cv_.wait(l, [&] { return gate_open_; });
    return sync_error_;
  }
  Status Issue(const PendingWrites::Entry& e) {
    Status st;
    switch (e.kind) {
      case ModKind::kWrite:
        st = image_->Write(e.offset, e.data);
        break;
      case ModKind::kZeroes:
        st = image_->WriteZeroes(e.offset, e.length);
        break;
      case ModKind::kDiscard:
        st = image_->Discard(e.offset, e.length);
        break;
    }
    std::lock_guard l(mu_);
    events_.push_back("issue " + std::to_string(e.seq));
    if (st.ok()) ++issued_;
    return st;
  }

  BlockDevice* image_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool gate_open_ = true;
  int syncs_ = 0;
  Status sync_error_;
  std::vector<std::string> events_;
  size_t issued_ = 0;
};

std::vector<uint8_t> Filled(size_t n, uint8_t v) {
  return std::vector<uint8_t>(n, v);
}

std::vector<uint8_t> ReadBack(BlockDevice* d, uint64_t offset, size_t n) {
  std::vector<uint8_t> out(n);
  EXPECT_TRUE(d->Read(offset, out).ok());
  return out;
}

class WriteBehindTest : public ::testing::Test {
 protected:
  MemoryDevice memory_{kSize};
  FaultDevice image_{&memory_};
  Recorder rec_{&image_};
};

TEST_F(WriteBehindTest, Drain_IssuesQueuedWritesOldestFirstAfterOneSync) {
  rec_.CloseGate();  // keep the applier from starting before all are queued
  WriteBehind wb("vol", kChunk, &image_, rec_.Hooks());
  VSS_ASSERT_OK(wb.Enqueue(0, 8192, ModKind::kWrite, Filled(8192, 'a')));
  rec_.WaitForSyncs(1);  // the applier took the first write and waits
  VSS_ASSERT_OK(wb.Enqueue(4096, 8192, ModKind::kWrite, Filled(8192, 'b')));
  VSS_ASSERT_OK(wb.Enqueue(6144, 1024, ModKind::kZeroes, {}));
  VSS_ASSERT_OK(wb.Enqueue(7168, 100, ModKind::kWrite, Filled(100, 'c')));
  rec_.OpenGate();
  VSS_ASSERT_OK(wb.Drain());

  EXPECT_FALSE(wb.has_pending());
  // Every issue follows a sync that began after the write was queued or
  // covers it; writes go oldest first.
  std::vector<std::string> issues;
  for (const std::string& e : rec_.events())
    if (e != "sync") issues.push_back(e);
  EXPECT_EQ(issues, (std::vector<std::string>{"issue 1", "issue 2", "issue 3",
                                              "issue 4"}));
  EXPECT_EQ(rec_.events().front(), "sync");
  std::vector<uint8_t> want(12288, 0);
  std::fill(want.begin(), want.begin() + 4096, 'a');
  std::fill(want.begin() + 4096, want.end(), 'b');
  std::fill(want.begin() + 6144, want.begin() + 7168, 0);
  std::fill(want.begin() + 7168, want.begin() + 7268, 'c');
  EXPECT_EQ(ReadBack(&memory_, 0, want.size()), want);
}

TEST_F(WriteBehindTest, Drain_ReturnsOnlyOnceEveryQueuedWriteIsOnTheImage) {
  rec_.CloseGate();
  WriteBehind wb("vol", kChunk, &image_, rec_.Hooks());
  VSS_ASSERT_OK(wb.Enqueue(0, 4096, ModKind::kWrite, Filled(4096, 'x')));
  rec_.WaitForSyncs(1);  // the applier holds the apply mutex, blocked
  VSS_ASSERT_OK(wb.Enqueue(65536, 4096, ModKind::kWrite, Filled(4096, 'y')));
  size_t issued_at_return = 0;
  Status drained;
  std::thread drainer([&] {
    drained = wb.Drain();
    issued_at_return = rec_.issued();
  });
  rec_.OpenGate();
  drainer.join();
  VSS_ASSERT_OK(drained);
  EXPECT_EQ(issued_at_return, 2u);
  EXPECT_EQ(ReadBack(&memory_, 0, 4096), Filled(4096, 'x'));
  EXPECT_EQ(ReadBack(&memory_, 65536, 4096), Filled(4096, 'y'));
}

TEST_F(WriteBehindTest, Overlay_ShowsQueuedWritesBeforeTheImageHasThem) {
  rec_.CloseGate();
  WriteBehind wb("vol", kChunk, &image_, rec_.Hooks());
  VSS_ASSERT_OK(image_.Write(0, Filled(8192, 'o')));
  VSS_ASSERT_OK(wb.Enqueue(1024, 1024, ModKind::kWrite, Filled(1024, 'n')));
  VSS_ASSERT_OK(wb.Enqueue(4096, 1024, ModKind::kDiscard, {}));
  rec_.WaitForSyncs(1);
  EXPECT_TRUE(wb.has_pending());
  std::vector<uint8_t> buf = ReadBack(&memory_, 0, 8192);
  EXPECT_EQ(buf, Filled(8192, 'o'));  // not issued yet
  wb.Overlay(0, buf);
  std::vector<uint8_t> want = Filled(8192, 'o');
  std::fill(want.begin() + 1024, want.begin() + 2048, 'n');
  std::fill(want.begin() + 4096, want.begin() + 5120, 0);
  EXPECT_EQ(buf, want);
  // A write over the queued discard must wait for it (sequence 2).
  EXPECT_EQ(wb.EraseOverlapping(4096, 10), 2u);
  EXPECT_EQ(wb.EraseOverlapping(1024, 10), 0u);
  rec_.OpenGate();
  VSS_ASSERT_OK(wb.Drain());
  EXPECT_EQ(ReadBack(&memory_, 0, 8192), want);
}

TEST_F(WriteBehindTest, FailedIssue_IsStickyForEveryLaterCall) {
  image_.SetRule({.ops = static_cast<uint32_t>(DeviceOp::kWrite),
                  .nth = 1,
                  .persistent = false,  // the device works again afterwards
                  .error = IoError("medium error")});
  WriteBehind wb("vol", kChunk, &image_, rec_.Hooks());
  VSS_ASSERT_OK(wb.Enqueue(0, 4096, ModKind::kWrite, Filled(4096, 'a')));
  Status s = wb.Drain();
  ASSERT_EQ(s.code(), StatusCode::kIoError) << s.ToString();
  EXPECT_NE(s.message().find("volume vol"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("reopen the volume"), std::string::npos)
      << s.message();
  EXPECT_EQ(wb.Sticky().code(), StatusCode::kIoError);
  EXPECT_EQ(wb.WaitForRoom().code(), StatusCode::kIoError);
  EXPECT_EQ(wb.Drain().code(), StatusCode::kIoError);
  EXPECT_EQ(wb.ApplyUpTo(1).code(), StatusCode::kIoError);
  EXPECT_EQ(rec_.issued(), 0u);
  EXPECT_EQ(ReadBack(&memory_, 0, 4096), Filled(4096, 0));
}

TEST_F(WriteBehindTest, FailedSync_IsStickyAndIssuesNothing) {
  rec_.FailSync(IoError("fdatasync failed"));
  WriteBehind wb("vol", kChunk, &image_, rec_.Hooks());
  VSS_ASSERT_OK(wb.Enqueue(0, 4096, ModKind::kWrite, Filled(4096, 'a')));
  Status s = wb.Drain();
  EXPECT_EQ(s.code(), StatusCode::kIoError) << s.ToString();
  rec_.FailSync(OkStatus());  // a later sync would work: still failed
  EXPECT_EQ(wb.Drain().code(), StatusCode::kIoError);
  EXPECT_EQ(wb.Sticky().code(), StatusCode::kIoError);
  for (const std::string& e : rec_.events()) EXPECT_EQ(e, "sync");
  EXPECT_EQ(ReadBack(&memory_, 0, 4096), Filled(4096, 0));
}

TEST_F(WriteBehindTest, Fail_KeepsTheFirstFailure) {
  WriteBehind wb("vol", kChunk, &image_, rec_.Hooks());
  VSS_ASSERT_OK(wb.Sticky());
  wb.Fail(IoError("first"));
  wb.Fail(CorruptionError("second"));
  EXPECT_EQ(wb.Sticky().code(), StatusCode::kIoError);
  EXPECT_EQ(wb.Sticky().message(), "first");
}

TEST_F(WriteBehindTest, NoSpaceOnReservation_FailsOnlyThatWrite) {
  FullFromDevice full(&image_, kSize / 2);
  WriteBehind wb("vol", kChunk, &full, rec_.Hooks());
  Status s = wb.Enqueue(kSize / 2, 4096, ModKind::kWrite, Filled(4096, 'z'));
  ASSERT_EQ(s.code(), StatusCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("volume vol: write of 4096 bytes at offset " +
                             std::to_string(kSize / 2)),
            std::string::npos)
      << s.message();
  EXPECT_FALSE(wb.has_pending());  // nothing queued
  VSS_EXPECT_OK(wb.Sticky());      // the volume stays usable
  // Zeroes and discards reserve nothing; other writes go on.
  VSS_ASSERT_OK(wb.Enqueue(kSize / 2, 4096, ModKind::kZeroes, {}));
  VSS_ASSERT_OK(wb.Enqueue(0, 4096, ModKind::kWrite, Filled(4096, 'k')));
  VSS_ASSERT_OK(wb.Drain());
  EXPECT_EQ(ReadBack(&memory_, 0, 4096), Filled(4096, 'k'));
  EXPECT_EQ(ReadBack(&memory_, kSize / 2, 4096), Filled(4096, 0));
}

TEST_F(WriteBehindTest, Destructor_StopsAnIdleApplier) {
  auto wb = std::make_unique<WriteBehind>("vol", kChunk, &image_, rec_.Hooks());
  VSS_ASSERT_OK(wb->Enqueue(0, 4096, ModKind::kWrite, Filled(4096, 'a')));
  VSS_ASSERT_OK(wb->Drain());
  wb.reset();  // joins the applier thread; would hang if it did not stop
  EXPECT_EQ(ReadBack(&memory_, 0, 4096), Filled(4096, 'a'));
}

}  // namespace
}  // namespace vss::engine
