// The engine keeps its promises when the medium does not: a full image
// file system fails writes one by one and never an acknowledged one
// (rule 9), a failed diff-area sync is permanent for the open volume and a
// write that preserved part of its range before failing leaves no chunk
// unprotected (rule 1), a discard of a huge range behind a pending write
// costs memory per request, not per chunk (rule 8), and a forged record in
// a segment or the catalog is a clear error, never arithmetic that wraps.
//
// Test doubles here: QuotaDevice (an image on a file system with a fixed
// number of free 4 KiB blocks), HoldDevice (holds the first image write
// after it is armed until released, to keep the applier busy), and
// HoldFileSystem (the same for the first fdatasync of the diff area).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../../engine/diff_area.h"
#include "../../engine/pending_writes.h"
#include "../../engine/record.h"
#include "../../engine/store_internal.h"
#include "engine_test_util.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/base/mem_file_system.h"
#include "vss/formats/memory_device.h"
#include "vss/formats/raw_image.h"

namespace vss::engine {
namespace {

using test_util::TempDir;

constexpr uint64_t kPage = 4096;

std::vector<uint8_t> Bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  test_util::FillRandom(seed, n, v);
  return v;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A one-shot event a test waits for (never a sleep).
class Event {
 public:
  void Set() {
    std::lock_guard l(mu_);
    set_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return set_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool set_ = false;
};

// An image on a file system that has `free_pages` blocks of 4 KiB left:
// writing a page that is a hole takes a block; Allocate() takes the blocks
// of its range (as fallocate does) without changing the data; zeroes and
// discards give whole pages back. With steal_freed, blocks given back are
// taken at once by someone else (another file on a full file system).
// A write that does not fit fails with kNoSpace and writes nothing.
class QuotaDevice final : public ForwardingDevice {
 public:
  QuotaDevice(BlockDevice* target, uint64_t free_pages)
      : ForwardingDevice(target), free_(free_pages) {}

  void AddFreePages(uint64_t n) {
    std::lock_guard l(mu_);
    free_ += n;
  }
  void SetStealFreed(bool steal) {
    std::lock_guard l(mu_);
    steal_ = steal;
  }
  uint64_t free_pages() {
    std::lock_guard l(mu_);
    return free_;
  }

 protected:
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override {
    VSS_RETURN_IF_ERROR(Take(offset, buf.size()));
    return ForwardingDevice::DoWrite(offset, buf);
  }
  Status DoAllocate(uint64_t offset, uint64_t length) override {
    return Take(offset, length);
  }
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override {
    Give(offset, length);
    return ForwardingDevice::DoWriteZeroes(offset, length);
  }
  Status DoDiscard(uint64_t offset, uint64_t length) override {
    Give(offset, length);
    return ForwardingDevice::DoDiscard(offset, length);
  }

 private:
  Status Take(uint64_t offset, uint64_t length) {
    std::lock_guard l(mu_);
    std::vector<uint64_t> fresh;
    for (uint64_t p = offset / kPage; p <= (offset + length - 1) / kPage; ++p)
      if (!allocated_.count(p)) fresh.push_back(p);
    if (fresh.size() > free_)
      return NoSpaceError("quota image: no space left on device");
    free_ -= fresh.size();
    allocated_.insert(fresh.begin(), fresh.end());
    return OkStatus();
  }
  void Give(uint64_t offset, uint64_t length) {
    std::lock_guard l(mu_);
    uint64_t first = (offset + kPage - 1) / kPage,
             end = (offset + length) / kPage;
    for (auto it = allocated_.lower_bound(first);
         it != allocated_.end() && *it < end;) {
      it = allocated_.erase(it);
      if (!steal_) ++free_;
    }
  }

  std::mutex mu_;
  uint64_t free_;
  bool steal_ = false;
  std::set<uint64_t> allocated_;
};

// Forwards; once armed, the first write waits in the device until released.
class HoldDevice final : public ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;
  void Arm() { armed_ = true; }
  Event entered, release;

 protected:
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override {
    if (armed_.exchange(false)) {
      entered.Set();
      release.Wait();
    }
    return ForwardingDevice::DoWrite(offset, buf);
  }

 private:
  std::atomic<bool> armed_{false};
};

// Forwards to a FileSystem; once armed, the first File::Sync() waits until
// released (then syncs).
class HoldFileSystem final : public FileSystem {
 public:
  explicit HoldFileSystem(FileSystem* target) : target_(target) {}
  void Arm() { armed_ = true; }
  Event entered, release;

  StatusOr<std::unique_ptr<File>> Open(const std::string& path,
                                       bool create) override {
    VSS_ASSIGN_OR_RETURN(std::unique_ptr<File> f, target_->Open(path, create));
    return std::unique_ptr<File>(new HeldFile(this, std::move(f)));
  }
  Status Remove(const std::string& path) override {
    return target_->Remove(path);
  }
  Status CreateDirs(const std::string& path) override {
    return target_->CreateDirs(path);
  }
  StatusOr<std::vector<std::string>> List(const std::string& dir) override {
    return target_->List(dir);
  }
  bool Exists(const std::string& path) override {
    return target_->Exists(path);
  }
  Status SyncDir(const std::string& dir) override {
    return target_->SyncDir(dir);
  }

 private:
  class HeldFile final : public File {
   public:
    HeldFile(HoldFileSystem* fs, std::unique_ptr<File> f)
        : fs_(fs), f_(std::move(f)) {}
    StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
      return f_->ReadAt(offset, buf);
    }
    Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) override {
      return f_->WriteAt(offset, buf);
    }
    Status Sync() override {
      if (fs_->armed_.exchange(false)) {
        fs_->entered.Set();
        fs_->release.Wait();
      }
      return f_->Sync();
    }
    Status PunchHole(uint64_t offset, uint64_t length) override {
      return f_->PunchHole(offset, length);
    }
    Status Truncate(uint64_t size) override { return f_->Truncate(size); }
    StatusOr<uint64_t> Size() override { return f_->Size(); }
    StatusOr<uint64_t> AllocatedBytes() override {
      return f_->AllocatedBytes();
    }

   private:
    HoldFileSystem* fs_;
    std::unique_ptr<File> f_;
  };

  FileSystem* target_;
  std::atomic<bool> armed_{false};
};

// A store whose diff area is on a MemFileSystem (behind a HoldFileSystem)
// and whose one volume is `image`, seen through a device the test builds
// (`wrap`), kept across reopens.
class TrustTest : public ::testing::Test {
 protected:
  using Wrap = std::function<std::unique_ptr<BlockDevice>(BlockDevice*)>;

  void Start(uint64_t size, uint32_t chunk_size, Wrap wrap = nullptr,
             StoreOptions extra = {}) {
    image_ = std::make_unique<MemoryDevice>(size, "trust.img");
    wrap_ = std::move(wrap);
    chunk_size_ = chunk_size;
    Open(extra);
  }
  void Open(StoreOptions o = {}) {
    o.dir = dir_.path();
    o.fs = &hold_fs_;
    o.open_image = [this](const std::string&, bool,
                          uint64_t) -> StatusOr<std::unique_ptr<BlockDevice>> {
      if (wrap_) return wrap_(image_.get());
      return std::unique_ptr<BlockDevice>(new ForwardingDevice(image_.get()));
    };
    VSS_ASSERT_OK_AND_ASSIGN(store_, Store::Open(o));
    if (id_.IsNull()) {
      VSS_ASSERT_OK_AND_ASSIGN(
          VolumeInfo row,
          store_->CreateVolume({.path = "trust.img",
                                .size = image_->size(),
                                .name = "trustvol",
                                .chunk_size = chunk_size_}));
      id_ = row.id;
    }
    VSS_ASSERT_OK_AND_ASSIGN(vol_, store_->OpenVolume(id_));
  }
  void Reopen(StoreOptions o = {}) {
    vol_ = nullptr;
    store_.reset();
    Open(o);
  }
  Guid Snap(bool persistent = true) {
    auto set = store_->CreateShadowSet({.volumes = {id_}, .persistent = persistent});
    EXPECT_TRUE(set.ok()) << set.status().ToString();
    return set.ok() ? set->shadows[0].shadow_id : Guid{};
  }
  std::vector<uint8_t> ReadShadow(const Guid& id, uint64_t offset, size_t n) {
    std::vector<uint8_t> out(n);
    auto dev = vol_->OpenShadow(id);
    EXPECT_TRUE(dev.ok()) << dev.status().ToString();
    if (dev.ok()) VSS_EXPECT_OK((*dev)->Read(offset, out));
    return out;
  }
  std::vector<uint8_t> ReadLive(uint64_t offset, size_t n) {
    std::vector<uint8_t> out(n);
    VSS_EXPECT_OK(vol_->Read(offset, out));
    return out;
  }
  std::vector<uint8_t> ReadImage(uint64_t offset, size_t n) {
    std::vector<uint8_t> out(n);
    VSS_EXPECT_OK(image_->Read(offset, out));
    return out;
  }

  TempDir dir_;
  MemFileSystem mem_fs_;
  HoldFileSystem hold_fs_{&mem_fs_};
  std::unique_ptr<MemoryDevice> image_;
  Wrap wrap_;
  uint32_t chunk_size_ = 4096;
  std::unique_ptr<Store> store_;
  Guid id_;
  Volume* vol_ = nullptr;
};

// ---------------------------------------------------------------------------
// Finding 2: a full image file system.

TEST_F(TrustTest,
       FullImage_FailsOnlyWritesThatDoNotFitAndKeepsEveryAcknowledgedOne) {
  QuotaDevice* quota = nullptr;
  // 16 MiB volume with room for 64 KiB of old data plus 2 MiB of new writes.
  Start(16 << 20, 64 * 1024, [&](BlockDevice* t) {
    auto d = std::make_unique<QuotaDevice>(t, (64 * 1024 + (2 << 20)) / kPage);
    quota = d.get();
    return std::unique_ptr<BlockDevice>(std::move(d));
  });
  const std::vector<uint8_t> old = Bytes(64 * 1024, 1);
  VSS_ASSERT_OK(vol_->Write(0, old));
  VSS_ASSERT_OK(vol_->Flush());
  const Guid shadow = Snap();  // persistent: writes go behind (write-behind)

  // 1 MiB writes to fresh ranges until the image is full: each is either
  // acknowledged or fails alone with kNoSpace naming the volume.
  std::vector<uint64_t> acked, refused;
  for (uint64_t i = 0; i < 6; ++i) {
    const uint64_t off = (1 + i) << 20;
    Status s = vol_->Write(off, Bytes(1 << 20, 10 + i));
    if (s.ok()) {
      acked.push_back(i);
      continue;
    }
    EXPECT_EQ(s.code(), StatusCode::kNoSpace) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "volume trustvol")) << s.ToString();
    refused.push_back(i);
  }
  EXPECT_EQ(acked.size(), 2u);
  EXPECT_EQ(refused.size(), 4u);
  // Every acknowledged write reaches the image: the flush succeeds and the
  // image holds them.
  VSS_ASSERT_OK(vol_->Flush());
  for (uint64_t i : acked) {
    EXPECT_TRUE(ReadImage((1 + i) << 20, 1 << 20) == Bytes(1 << 20, 10 + i))
        << "write " << i;
    EXPECT_TRUE(ReadLive((1 + i) << 20, 1 << 20) == Bytes(1 << 20, 10 + i))
        << "write " << i;
  }
  // The volume keeps working once space returns; the shadow never changed.
  quota->AddFreePages((4 << 20) / kPage);
  for (uint64_t i : refused)
    VSS_ASSERT_OK(vol_->Write((1 + i) << 20, Bytes(1 << 20, 10 + i)));
  VSS_ASSERT_OK(vol_->Flush());
  Reopen();
  for (uint64_t i = 0; i < 6; ++i)
    EXPECT_TRUE(ReadLive((1 + i) << 20, 1 << 20) == Bytes(1 << 20, 10 + i))
        << "write " << i;
  EXPECT_TRUE(ReadShadow(shadow, 0, 64 * 1024) == old);
  EXPECT_TRUE(ReadShadow(shadow, 1 << 20, 1 << 20) ==
              std::vector<uint8_t>(1 << 20, 0));
}

TEST_F(TrustTest, FullImage_DirectWriteFailsCleanlyAndTheVolumeStaysUsable) {
  QuotaDevice* quota = nullptr;
  Start(4 << 20, 4096, [&](BlockDevice* t) {
    auto d = std::make_unique<QuotaDevice>(t, 32);  // 128 KiB free
    quota = d.get();
    return std::unique_ptr<BlockDevice>(std::move(d));
  });
  const std::vector<uint8_t> old = Bytes(64 * 1024, 2);
  VSS_ASSERT_OK(vol_->Write(0, old));
  VSS_ASSERT_OK(vol_->Flush());
  // A non-persistent shadow: its records need no sync, so writes are issued
  // to the image at once (no write-behind).
  const Guid shadow = Snap(/*persistent=*/false);
  Status s = vol_->Write(1 << 20, Bytes(256 * 1024, 3));
  EXPECT_EQ(s.code(), StatusCode::kNoSpace) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "volume trustvol")) << s.ToString();
  // Nothing else changed and the volume is not failed: overwriting
  // allocated data, flushing and reading all work.
  EXPECT_TRUE(ReadShadow(shadow, 0, old.size()) == old);
  VSS_ASSERT_OK(vol_->Write(0, Bytes(4096, 4)));
  VSS_ASSERT_OK(vol_->Flush());
  EXPECT_TRUE(ReadLive(0, 4096) == Bytes(4096, 4));
  EXPECT_TRUE(ReadShadow(shadow, 0, old.size()) == old);
  // Space returns: the write that failed now succeeds.
  quota->AddFreePages(1024);
  VSS_ASSERT_OK(vol_->Write(1 << 20, Bytes(256 * 1024, 3)));
  VSS_ASSERT_OK(vol_->Flush());
  EXPECT_TRUE(ReadLive(1 << 20, 256 * 1024) == Bytes(256 * 1024, 3));
}

// A pending discard gives back the space of a later pending write over the
// same range when it is issued; on a full file system that space is gone at
// once. The later write must not be acknowledged on the strength of a
// reservation the discard is about to undo.
TEST_F(TrustTest,
       FullImage_WriteBehindAPendingDiscardIsNeverAcknowledgedWithoutSpace) {
  QuotaDevice* quota = nullptr;
  Start(4 << 20, 4096, [&](BlockDevice* t) {
    auto d =
        std::make_unique<QuotaDevice>(t, 16);  // full after the first write
    quota = d.get();
    return std::unique_ptr<BlockDevice>(std::move(d));
  });
  VSS_ASSERT_OK(vol_->Write(0, Bytes(64 * 1024, 5)));
  VSS_ASSERT_OK(vol_->Flush());
  const Guid shadow = Snap();
  // Keep the applier in its diff-area sync while the writes queue.
  hold_fs_.Arm();
  VSS_ASSERT_OK(vol_->Write(0, Bytes(4096, 6)));
  hold_fs_.entered.Wait();
  VSS_ASSERT_OK(vol_->Discard(0, 64 * 1024));
  quota->SetStealFreed(true);  // the file system is full from now on
  Status second;
  std::thread writer([&] { second = vol_->Write(8192, Bytes(4096, 7)); });
  hold_fs_.release.Set();
  writer.join();
  // Either the write was refused, or its bytes reach the image.
  Status flush = vol_->Flush();
  EXPECT_TRUE(flush.ok()) << flush.ToString();
  if (second.ok()) {
    EXPECT_TRUE(ReadImage(8192, 4096) == Bytes(4096, 7));
  } else {
    EXPECT_EQ(second.code(), StatusCode::kNoSpace) << second.ToString();
  }
  EXPECT_TRUE(ReadShadow(shadow, 0, 64 * 1024) == Bytes(64 * 1024, 5));
}

// The raw image reserves with fallocate: the range keeps its bytes, its
// holes become allocated, and the checks of Write() apply.
TEST(RawImageAllocateTest, AllocateKeepsDataAndFillsHoles) {
  TempDir dir;
  const std::string path = dir.path() + "/a.img";
  VSS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<RawImage> img,
                           RawImage::Create(path, 1 << 20));
  const std::vector<uint8_t> data = Bytes(8192, 1);
  VSS_ASSERT_OK(img->Write(65536, data));
  VSS_ASSERT_OK(img->Allocate(0, 1 << 20));
  std::vector<uint8_t> back(8192);
  VSS_ASSERT_OK(img->Read(65536, back));
  EXPECT_EQ(back, data);
  VSS_ASSERT_OK(img->Read(0, back));
  EXPECT_EQ(back, std::vector<uint8_t>(8192, 0));
  // Blocks are allocated (unwritten extents read as zeroes and may still
  // show as holes to SEEK_DATA, so st_blocks tells).
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_GE(uint64_t(st.st_blocks) * 512, uint64_t{1} << 20);
  EXPECT_EQ(img->Allocate(1 << 20, 1).code(), StatusCode::kOutOfRange);
  img.reset();
  VSS_ASSERT_OK_AND_ASSIGN(img, RawImage::Open(path, {.read_only = true}));
  EXPECT_EQ(img->Allocate(0, 4096).code(), StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------------------
// Finding 3: a failed diff-area sync is permanent.

TEST(DiffAreaTrustTest, SyncFailureIsPermanentEvenWhenTheFileSystemRecovers) {
  MemFileSystem fs;
  std::vector<std::string> warnings;
  const Guid vol = Guid::Generate();
  VSS_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<DiffArea> da,
      DiffArea::Open({&fs, "/diff", vol, 1 << 20}, {}, &warnings));
  std::vector<uint8_t> rec;
  AppendRecord(vol, 0, 1, Bytes(4096, 1), &rec);
  VSS_ASSERT_OK(da->Append(rec).status());
  EXPECT_TRUE(da->HasUnsynced());
  fs.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kSync),
                   .nth = 1,
                   .persistent = false,
                   .error = IoError("writeback error")});
  EXPECT_EQ(da->Sync().code(), StatusCode::kIoError);
  // Linux reports a writeback error once: the next fdatasync succeeds
  // although the pages may be gone. The diff area must not believe it.
  Status again = da->Sync();
  EXPECT_EQ(again.code(), StatusCode::kIoError) << again.ToString();
  EXPECT_TRUE(Contains(again.message(), "writeback error")) << again.ToString();
  EXPECT_TRUE(da->HasUnsynced());
  VSS_ASSERT_OK(da->Append(rec).status());
  EXPECT_FALSE(da->Sync().ok());
}

// The index flush sees the failure first (the applier is busy issuing an
// earlier write); the applier's own next sync would succeed. No overwrite
// may be issued over the records that sync was for.
TEST_F(TrustTest, FailedSyncSeenByTheIndexFlushStopsEveryLaterOverwrite) {
  HoldDevice* hold = nullptr;
  Start(
      1 << 20, 4096,
      [&](BlockDevice* t) {
        auto d = std::make_unique<HoldDevice>(t);
        hold = d.get();
        return std::unique_ptr<BlockDevice>(std::move(d));
      },
      StoreOptions{.index_flush_rows = 1});
  const std::vector<uint8_t> old = Bytes(64 * 1024, 1);
  VSS_ASSERT_OK(vol_->Write(0, old));
  VSS_ASSERT_OK(vol_->Flush());
  const Guid shadow = Snap();
  // The applier takes the first write and stays in the image write.
  hold->Arm();
  VSS_ASSERT_OK(vol_->Write(0, Bytes(4096, 2)));
  hold->entered.Wait();
  // The next write's index flush runs the diff-area sync, which fails once.
  mem_fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kSync),
                        .nth = 1,
                        .persistent = false,
                        .error = IoError("writeback error")});
  Status w = vol_->Write(4096, Bytes(4096, 3));
  EXPECT_FALSE(w.ok());
  mem_fs_.ClearFaultRule();
  hold->release.Set();
  // The failure sticks: the flush fails, and chunk 1 was never overwritten.
  Status flush = vol_->Flush();
  EXPECT_FALSE(flush.ok());
  EXPECT_TRUE(Contains(flush.message(), "volume trustvol")) << flush.ToString();
  EXPECT_TRUE(ReadImage(4096, 4096) ==
              std::vector<uint8_t>(old.begin() + 4096, old.begin() + 8192));
  Status later = vol_->Write(8192, Bytes(4096, 4));
  EXPECT_FALSE(later.ok());
  EXPECT_TRUE(Contains(later.message(), "reopen")) << later.ToString();
  EXPECT_TRUE(ReadImage(8192, 4096) ==
              std::vector<uint8_t>(old.begin() + 8192, old.begin() + 12288));
  EXPECT_TRUE(ReadShadow(shadow, 0, old.size()) == old);
  // A reopened volume starts afresh.
  Reopen();
  VSS_ASSERT_OK(vol_->Write(8192, Bytes(4096, 4)));
  VSS_ASSERT_OK(vol_->Flush());
  EXPECT_TRUE(ReadShadow(shadow, 0, old.size()) == old);
}

// ---------------------------------------------------------------------------
// Finding 4: a write that preserved part of its range, then failed.

TEST_F(TrustTest,
       PartlyPreservedWriteLeavesNoChunkOverwrittenBeforeItsRecordIsDurable) {
  // 4 KiB chunks: one append carries 2048 chunks (8 MiB); a 12 MiB write
  // takes two.
  Start(16 << 20, 4096, nullptr, [] {
    StoreOptions o;
    o.flush_on_close = false;  // destroying the store is a crash
    return o;
  }());
  const std::vector<uint8_t> old = Bytes(12 << 20, 1);
  VSS_ASSERT_OK(vol_->Write(0, old));
  VSS_ASSERT_OK(vol_->Flush());
  const Guid shadow = Snap();
  // The first append lands, the second fails.
  mem_fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kWrite),
                        .nth = 2,
                        .persistent = false,
                        .error = IoError("medium error")});
  EXPECT_FALSE(vol_->Write(0, Bytes(12 << 20, 2)).ok());
  mem_fs_.ClearFaultRule();
  // Chunk 0 is indexed as preserved by a record nobody has synced. This
  // write must not reach the image before it is durable.
  VSS_ASSERT_OK(vol_->Write(0, Bytes(4096, 3)));
  // Power is cut: what was not synced in the diff area is lost; the image
  // (a MemoryDevice) keeps every write it was given.
  vol_ = nullptr;
  store_.reset();  // flush_on_close = false: no flush on the way
  mem_fs_.PowerLoss(PowerLossMode::kDropAll, 1);
  Open();
  EXPECT_TRUE(ReadShadow(shadow, 0, 4096) ==
              std::vector<uint8_t>(old.begin(), old.begin() + 4096));
  EXPECT_TRUE(ReadShadow(shadow, 0, old.size()) == old);
}

// ---------------------------------------------------------------------------
// Finding 7: memory follows requests, not their length.

TEST(PendingWritesTrustTest, DiscardOfATerabyteCostsOnePiece) {
  PendingWrites p(4096);
  std::vector<uint8_t> a(4096, 0xA);
  p.Add(0, a.size(), ModKind::kWrite, a);
  p.Add(0, uint64_t{1} << 40, ModKind::kDiscard, {});
  EXPECT_EQ(p.count(), 2u);
  EXPECT_LE(p.pieces(), 2 * p.count() + 1);
  EXPECT_LT(p.memory_bytes(), 16u * 1024);
  EXPECT_EQ(p.EraseOverlapping(12345678, 10), 2u);
  std::vector<uint8_t> buf(8192, 7);
  p.Overlay((uint64_t{1} << 40) - 8192, buf);
  EXPECT_EQ(buf, std::vector<uint8_t>(8192, 0));
  // Writes inside the discarded range split it; the overlay takes the
  // newest bytes everywhere.
  std::vector<uint8_t> b(100, 0xB);
  p.Add(5000, b.size(), ModKind::kWrite, b);
  EXPECT_EQ(p.EraseOverlapping(5000, 100), 0u);
  EXPECT_EQ(p.EraseOverlapping(4000, 2000), 3u);
  buf.assign(8192, 7);
  p.Overlay(0, buf);
  std::vector<uint8_t> want(8192, 0);
  std::fill(want.begin() + 5000, want.begin() + 5100, 0xB);
  EXPECT_EQ(buf, want);
  p.Pop();  // the first write: it was entirely covered
  p.Pop();  // the discard
  buf.assign(8192, 7);
  p.Overlay(0, buf);
  want.assign(8192, 7);
  std::fill(want.begin() + 5000, want.begin() + 5100, 0xB);
  EXPECT_EQ(buf, want);
  EXPECT_EQ(p.pieces(), 1u);
  p.Pop();
  EXPECT_EQ(p.pieces(), 0u);
  EXPECT_EQ(p.memory_bytes(), 0u);
}

TEST_F(TrustTest,
       DiscardOfATerabyteVolumeBehindAPendingWriteKeepsPendingMemorySmall) {
  const uint64_t kTiB = uint64_t{1} << 40;
  Start(kTiB, 4096);
  const std::vector<uint8_t> old = Bytes(4096, 1);
  VSS_ASSERT_OK(vol_->Write(0, old));
  VSS_ASSERT_OK(vol_->Write(kTiB - 4096, old));
  VSS_ASSERT_OK(vol_->Flush());
  const Guid shadow = Snap();
  // The applier holds in its diff-area sync: the write stays pending.
  hold_fs_.Arm();
  VSS_ASSERT_OK(vol_->Write(0, Bytes(4096, 2)));
  hold_fs_.entered.Wait();
  VSS_ASSERT_OK(vol_->Discard(0, kTiB));  // fstrim of the whole volume
  VolumeStats st = vol_->Stats();
  EXPECT_EQ(st.pending_writes, 2u);
  EXPECT_LT(st.pending_memory_bytes, 64u * 1024)
      << "pending writes hold " << st.pending_memory_bytes << " bytes";
  // Reads see the discard over the pending write.
  EXPECT_TRUE(ReadLive(0, 4096) == std::vector<uint8_t>(4096, 0));
  hold_fs_.release.Set();
  VSS_ASSERT_OK(vol_->Flush());
  EXPECT_EQ(vol_->Stats().pending_writes, 0u);
  EXPECT_TRUE(ReadLive(0, 4096) == std::vector<uint8_t>(4096, 0));
  EXPECT_TRUE(ReadLive(kTiB - 4096, 4096) == std::vector<uint8_t>(4096, 0));
  EXPECT_TRUE(ReadShadow(shadow, 0, 4096) == old);
  EXPECT_TRUE(ReadShadow(shadow, kTiB - 4096, 4096) == old);
}

// ---------------------------------------------------------------------------
// Finding 15: fields read from disk are never trusted.

// The segment files of the volume's diff area.
std::vector<std::string> SegmentPaths(MemFileSystem& fs,
                                      const std::string& dir) {
  std::vector<std::string> out;
  auto names = fs.List(dir);
  if (!names.ok()) return out;
  for (const std::string& n : *names)
    if (n.size() > 4 && n.substr(n.size() - 4) == ".vsd")
      out.push_back(dir + "/" + n);
  return out;
}

TEST_F(TrustTest, ForgedRecordWhoseChunkWrapsAroundIsReportedAndNeverIndexed) {
  const uint32_t cs = 64 * 1024;
  Start(1 << 20, cs);  // 16 chunks
  const std::vector<uint8_t> old = Bytes(2 * cs, 1);
  VSS_ASSERT_OK(vol_->Write(0, old));
  VSS_ASSERT_OK(vol_->Flush());
  const Guid shadow = Snap();
  VSS_ASSERT_OK(vol_->Write(cs, Bytes(cs, 2)));  // preserves chunk 1
  VSS_ASSERT_OK(vol_->Flush());
  VSS_ASSERT_OK_AND_ASSIGN(ShadowInfo srow,
                           store_->ResolveShadow(shadow.ToString()));
  VSS_ASSERT_OK_AND_ASSIGN(DiffAreaInfo da, store_->DiffAreaOf(id_));
  vol_ = nullptr;
  store_.reset();

  // A record with good checksums for chunk 2^64 / chunk_size: chunk *
  // chunk_size wraps to 0, the offset of chunk 0.
  std::vector<std::string> segs = SegmentPaths(mem_fs_, da.dir);
  ASSERT_FALSE(segs.empty()) << "no segment in " << da.dir;
  std::vector<uint8_t> bytes = mem_fs_.Contents(segs.back());
  ASSERT_EQ(bytes.size() % kRecordAlign, 0u);
  const uint64_t forged_chunk = (~uint64_t{0} / cs) + 1;
  ASSERT_EQ(forged_chunk * cs, 0u);
  AppendRecord(id_, forged_chunk, srow.epoch, std::vector<uint8_t>(cs, 0xEE),
               &bytes);
  mem_fs_.SetContents(segs.back(), bytes);

  Open();
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<EventInfo> events,
                           store_->ListEvents(id_));
  bool reported = false;
  for (const EventInfo& e : events)
    reported |=
        e.kind == "diff-area-damaged" && Contains(e.message, "past the end");
  EXPECT_TRUE(reported) << "no diff-area-damaged event for the forged record";
  EXPECT_EQ(vol_->Stats().preserved_chunks, 1u);
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<ChangedExtent> changed,
                           vol_->ChangedExtents(shadow, std::nullopt));
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].offset, cs);
  EXPECT_EQ(changed[0].length, cs);
  // Reverting writes the shadow's chunks back, and nothing at the wrapped
  // offset.
  VSS_ASSERT_OK(store_->RevertToShadow(shadow));
  EXPECT_TRUE(ReadLive(0, old.size()) == old);
}

TEST_F(TrustTest, ForgedCatalogIndexRowIsAClearErrorOnOpen) {
  const uint32_t cs = 64 * 1024;
  Start(1 << 20, cs);
  VSS_ASSERT_OK(vol_->Write(0, Bytes(cs, 1)));
  VSS_ASSERT_OK(vol_->Flush());
  const Guid shadow = Snap();
  VSS_ASSERT_OK(vol_->Write(0, Bytes(cs, 2)));
  VSS_ASSERT_OK(vol_->Flush());
  VSS_ASSERT_OK_AND_ASSIGN(ShadowInfo srow,
                           store_->ResolveShadow(shadow.ToString()));
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<metadata::IndexRow> rows,
                           CatalogOf(*store_).ListIndexRows(id_));
  ASSERT_EQ(rows.size(), 1u);
  VSS_ASSERT_OK(store_->CloseVolume(id_));
  vol_ = nullptr;
  metadata::IndexRow forged = rows[0];
  forged.chunk = (~uint64_t{0} / cs) + 1;  // wraps to offset 0
  forged.epoch = srow.epoch;
  VSS_ASSERT_OK(CatalogOf(*store_).InsertIndexRows(id_, {forged}));
  auto v = store_->OpenVolume(id_);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kCorruption)
      << v.status().ToString();
  EXPECT_TRUE(Contains(v.status().message(), "trustvol"))
      << v.status().ToString();
  EXPECT_TRUE(Contains(v.status().message(), "past the end"))
      << v.status().ToString();
}

}  // namespace
}  // namespace vss::engine
