// One short test per engine behaviour: the record codec, the chunk map, and
// the Volume/Store lifecycle on real files and on MemFileSystem.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "../../engine/chunk_map.h"
#include "../../engine/pending_writes.h"
#include "../../engine/record.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/formats/fault_device.h"
#include "vss/base/mem_file_system.h"
#include "vss/formats/memory_device.h"
#include "vss/testing/status_matchers.h"
#include "vss/testing/temp_dir.h"

namespace vss::engine {
namespace {

using ::vss::testing::TempDir;

// This file's short name for VSS_ASSERT_OK (a Status or a StatusOr).
#define ASSERT_OK(expr) VSS_ASSERT_OK(expr)

constexpr uint32_t kChunk = 64 * 1024;

std::vector<uint8_t> Bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng() % 5);  // compressible
  return v;
}

// A store on real files with one volume.
class VolumeTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void Open(StoreOptions extra = {}) {
    extra.dir = dir_.path() + "/store";
    auto s = Store::Open(extra);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    if (volume_id_.IsNull()) {
      auto row = store_->CreateVolume(
          {.path = dir_.path() + "/disk.img", .size = size_, .chunk_size = kChunk});
      ASSERT_TRUE(row.ok()) << row.status().ToString();
      volume_id_ = row->id;
    }
    auto v = store_->OpenVolume(volume_id_);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    vol_ = *v;
  }
  void Reopen(StoreOptions extra = {}) {
    vol_ = nullptr;
    store_.reset();
    Open(std::move(extra));
  }
  Guid Snap(bool persistent = true) {
    auto set = store_->CreateShadowSet({.volumes = {volume_id_}, .persistent = persistent});
    EXPECT_TRUE(set.ok()) << set.status().ToString();
    return set.ok() ? set->shadows[0].shadow_id : Guid{};
  }
  std::vector<uint8_t> ReadShadow(const Guid& id) {
    auto dev = vol_->OpenShadow(id);
    EXPECT_TRUE(dev.ok()) << dev.status().ToString();
    std::vector<uint8_t> out(vol_->size());
    if (dev.ok()) {
      Status s = (*dev)->Read(0, out);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    return out;
  }
  std::vector<uint8_t> ReadLive() {
    std::vector<uint8_t> out(vol_->size());
    EXPECT_TRUE(vol_->Read(0, out).ok());
    return out;
  }

  TempDir dir_;
  uint64_t size_ = 2 * 1024 * 1024 + 1000;  // last chunk partial
  std::unique_ptr<Store> store_;
  Guid volume_id_;
  Volume* vol_ = nullptr;
};

TEST(RecordTest, RoundTripsZeroRawAndZstd) {
  Guid vol = Guid::Generate();
  std::vector<uint8_t> zero(kChunk, 0), comp = Bytes(kChunk, 1), rnd(kChunk);
  std::mt19937 rng(2);
  for (auto& b : rnd) b = static_cast<uint8_t>(rng());
  for (auto* data : {&zero, &comp, &rnd}) {
    std::vector<uint8_t> rec;
    RecordHeader h = AppendRecord(vol, 7, 3, *data, &rec);
    EXPECT_EQ(rec.size() % kRecordAlign, 0u);
    auto d = DecodeHeader(rec);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->chunk, 7u);
    EXPECT_EQ(d->epoch, 3u);
    EXPECT_EQ(d->codec, h.codec);
    std::vector<uint8_t> out(kChunk);
    ASSERT_TRUE(DecodePayload(*d, std::span(rec).subspan(kRecordHeaderBytes, d->stored_len), out).ok());
    EXPECT_EQ(out, *data);
  }
}

TEST(RecordTest, PicksCodecByContent) {
  Guid vol = Guid::Generate();
  std::vector<uint8_t> rec;
  EXPECT_EQ(AppendRecord(vol, 0, 1, std::vector<uint8_t>(kChunk, 0), &rec).codec, Codec::kZero);
  EXPECT_EQ(rec.size(), kRecordAlign);
  rec.clear();
  EXPECT_EQ(AppendRecord(vol, 0, 1, Bytes(kChunk, 3), &rec).codec, Codec::kZstd);
  std::vector<uint8_t> rnd(kChunk);
  std::mt19937 rng(4);
  for (auto& b : rnd) b = static_cast<uint8_t>(rng());
  rec.clear();
  EXPECT_EQ(AppendRecord(vol, 0, 1, rnd, &rec).codec, Codec::kRaw);
}

TEST(RecordTest, DecodeRejectsEveryFlippedHeaderByte) {
  std::vector<uint8_t> rec;
  AppendRecord(Guid::Generate(), 9, 2, Bytes(kChunk, 5), &rec);
  for (size_t i = 0; i < kRecordHeaderBytes; ++i) {
    std::vector<uint8_t> bad = rec;
    bad[i] ^= 0x40;
    EXPECT_FALSE(DecodeHeader(bad).ok()) << "byte " << i;
  }
}

TEST(RecordTest, DecodePayloadRejectsFlippedPayloadByte) {
  std::vector<uint8_t> rec;
  AppendRecord(Guid::Generate(), 9, 2, Bytes(kChunk, 6), &rec);
  auto h = DecodeHeader(rec);
  ASSERT_TRUE(h.ok());
  rec[kRecordHeaderBytes + 10] ^= 1;
  std::vector<uint8_t> out(kChunk);
  Status s = DecodePayload(*h, std::span(rec).subspan(kRecordHeaderBytes, h->stored_len), out);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
}

TEST(ChunkMapTest, FindsEveryInsertedChunkAcrossGrowth) {
  ChunkMap m;
  for (uint64_t c = 0; c < 100000; ++c) m.Put(c * 7919, {uint32_t(c), uint32_t(c), 0, 1, 0, 0});
  EXPECT_EQ(m.size(), 100000u);
  for (uint64_t c = 0; c < 100000; ++c) {
    const Location* l = m.Find(c * 7919);
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(l->segment, c);
  }
  EXPECT_EQ(m.Find(1), nullptr);
  EXPECT_LT(m.memory_bytes() / m.size(), 64u);
}

TEST(PendingWritesTest, OverlayAppliesOverlappingWritesOldestFirst) {
  PendingWrites p(4096);
  std::vector<uint8_t> a(6000, 0xA), b(10, 0xB);
  EXPECT_EQ(p.Add(1000, a.size(), ModKind::kWrite, a), 1u);
  EXPECT_EQ(p.Add(5000, b.size(), ModKind::kWrite, b), 2u);
  EXPECT_EQ(p.Add(6990, 20, ModKind::kDiscard, {}), 3u);
  EXPECT_EQ(p.bytes(), 6010u);
  std::vector<uint8_t> buf(8192, 0x1), want(8192, 0x1);
  std::fill(want.begin() + 1000, want.begin() + 7000, 0xA);
  std::fill(want.begin() + 5000, want.begin() + 5010, 0xB);
  std::fill(want.begin() + 6990, want.begin() + 7010, 0);
  p.Overlay(0, buf);
  EXPECT_EQ(buf, want);
  // A window that cuts every entry.
  std::vector<uint8_t> part(20, 0x1);
  p.Overlay(4995, part);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), want.begin() + 4995));
}

TEST(PendingWritesTest, PopRemovesTheOldestFromEveryChunkItCovers) {
  PendingWrites p(4096);
  std::vector<uint8_t> a(4098, 1);
  p.Add(4095, a.size(), ModKind::kWrite, a);  // chunks 0..2
  p.Add(3 * 4096, 4096, ModKind::kZeroes, {});  // chunk 3
  ASSERT_NE(p.Oldest(), nullptr);
  EXPECT_EQ(p.Oldest()->seq, 1u);
  EXPECT_EQ(p.Oldest()->first_chunk, 0u);
  EXPECT_EQ(p.Oldest()->last_chunk, 2u);
  p.Pop();
  EXPECT_EQ(p.bytes(), 0u);
  EXPECT_EQ(p.count(), 1u);
  // Chunks 0..2 no longer overlay; chunk 3 still reads as zeroes.
  std::vector<uint8_t> buf(4 * 4096, 7), want(4 * 4096, 7);
  std::fill(want.begin() + 3 * 4096, want.end(), 0);
  p.Overlay(0, buf);
  EXPECT_EQ(buf, want);
  p.Pop();
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.Oldest(), nullptr);
  EXPECT_EQ(p.last_seq(), 2u);
}

TEST_F(VolumeTest, ShadowRead_ReturnsPreimageAfterOverwrite) {
  auto orig = Bytes(vol_->size(), 10);
  ASSERT_OK(vol_->Write(0, orig));
  Guid s = Snap();
  ASSERT_OK(vol_->Write(5000, Bytes(300000, 11)));
  EXPECT_EQ(ReadShadow(s), orig);
  EXPECT_NE(ReadLive(), orig);
}

TEST_F(VolumeTest, ChunkIsPreservedOncePerEpoch) {
  ASSERT_OK(vol_->Write(0, Bytes(kChunk, 1)));
  Snap();
  ASSERT_OK(vol_->Write(10, Bytes(100, 2)));
  ASSERT_OK(vol_->Write(20, Bytes(100, 3)));
  EXPECT_EQ(vol_->Stats().preserved_chunks, 1u);
}

TEST_F(VolumeTest, UnallocatedChunkIsPreservedAsZeroRecord) {
  Guid s = Snap();
  ASSERT_OK(vol_->Write(kChunk * 3, Bytes(kChunk, 4)));
  VolumeStats st = vol_->Stats();
  EXPECT_EQ(st.preserved_chunks, 1u);
  EXPECT_EQ(st.diff_used_bytes, kRecordAlign);
  EXPECT_EQ(ReadShadow(s), std::vector<uint8_t>(vol_->size(), 0));
}

TEST_F(VolumeTest, DiscardAndZeroesPreserveAllocatedChunks) {
  auto orig = Bytes(vol_->size(), 12);
  ASSERT_OK(vol_->Write(0, orig));
  Guid s = Snap();
  ASSERT_OK(vol_->Discard(kChunk, kChunk * 2));
  ASSERT_OK(vol_->WriteZeroes(kChunk * 5 + 7, 100));
  EXPECT_EQ(vol_->Stats().preserved_chunks, 3u);
  EXPECT_EQ(ReadShadow(s), orig);
}

TEST_F(VolumeTest, DiscardOfUnallocatedChunkChangesNothingAndPreservesNothing) {
  Guid s = Snap();
  ASSERT_OK(vol_->Discard(0, kChunk * 4));
  EXPECT_EQ(vol_->Stats().preserved_chunks, 0u);
  EXPECT_EQ(ReadShadow(s), std::vector<uint8_t>(vol_->size(), 0));
}

TEST_F(VolumeTest, PartialLastChunkIsPreservedAndRead) {
  auto orig = Bytes(vol_->size(), 13);
  ASSERT_OK(vol_->Write(0, orig));
  Guid s = Snap();
  ASSERT_OK(vol_->Write(vol_->size() - 10, Bytes(10, 14)));
  EXPECT_EQ(ReadShadow(s), orig);
  Reopen();
  EXPECT_EQ(ReadShadow(s), orig);
}

TEST_F(VolumeTest, DeleteMiddleShadowKeepsOlderAndNewerExact) {
  auto v0 = Bytes(vol_->size(), 20);
  ASSERT_OK(vol_->Write(0, v0));
  Guid s1 = Snap();
  ASSERT_OK(vol_->Write(0, Bytes(kChunk * 4, 21)));
  auto v1 = ReadLive();
  Guid s2 = Snap();
  ASSERT_OK(vol_->Write(kChunk * 2, Bytes(kChunk * 4, 22)));
  auto v2 = ReadLive();
  Guid s3 = Snap();
  ASSERT_OK(vol_->Write(0, Bytes(vol_->size(), 23)));
  ASSERT_OK(store_->DeleteShadow(s2));
  EXPECT_EQ(ReadShadow(s1), v0);
  EXPECT_EQ(ReadShadow(s3), v2);
  ASSERT_OK(store_->DeleteShadow(s3));  // newest
  EXPECT_EQ(ReadShadow(s1), v0);
  Reopen();
  EXPECT_EQ(ReadShadow(s1), v0);
  EXPECT_EQ(vol_->OpenShadow(s2).status().code(), StatusCode::kNotFound);
  (void)v1;
}

TEST_F(VolumeTest, DeletingAllShadowsGivesSpaceBack) {
  ASSERT_OK(vol_->Write(0, Bytes(vol_->size(), 30)));
  Guid s1 = Snap();
  ASSERT_OK(vol_->Write(0, Bytes(vol_->size(), 31)));
  EXPECT_GT(vol_->Stats().diff_allocated_bytes, 0u);
  ASSERT_OK(store_->DeleteShadow(s1));
  VolumeStats st = vol_->Stats();
  EXPECT_EQ(st.diff_used_bytes, 0u);
  EXPECT_EQ(st.diff_allocated_bytes, 0u);
}

TEST_F(VolumeTest, RevertRestoresShadowAndKeepsOlderShadowsExact) {
  auto v0 = Bytes(vol_->size(), 40);
  ASSERT_OK(vol_->Write(0, v0));
  Guid s1 = Snap();
  ASSERT_OK(vol_->Write(kChunk, Bytes(kChunk * 3, 41)));
  auto v1 = ReadLive();
  Guid s2 = Snap();
  ASSERT_OK(vol_->Write(0, Bytes(kChunk * 10, 42)));
  Guid s3 = Snap();
  ASSERT_OK(vol_->Discard(0, vol_->size()));
  ASSERT_OK(store_->RevertToShadow(s2));
  EXPECT_EQ(ReadLive(), v1);
  EXPECT_EQ(ReadShadow(s1), v0);
  EXPECT_EQ(vol_->OpenShadow(s2).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(vol_->OpenShadow(s3).status().code(), StatusCode::kNotFound);
  ASSERT_OK(vol_->Write(0, Bytes(vol_->size(), 43)));
  EXPECT_EQ(ReadShadow(s1), v0);
}

TEST_F(VolumeTest, ChangedExtentsBetweenShadowsAndToLive) {
  Guid s1 = Snap();
  ASSERT_OK(vol_->Write(kChunk * 2 + 5, Bytes(10, 50)));
  Guid s2 = Snap();
  ASSERT_OK(vol_->Write(kChunk * 3, Bytes(kChunk, 51)));
  auto a = vol_->ChangedExtents(s1, s2);
  ASSERT_OK(a);
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].offset, kChunk * 2);
  EXPECT_EQ((*a)[0].length, kChunk);
  auto b = vol_->ChangedExtents(s1, std::nullopt);
  ASSERT_OK(b);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].length, 2 * kChunk);
  EXPECT_EQ(vol_->ChangedExtents(s2, s1).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(VolumeTest, FullDiffAreaDeletesOldestShadowAndRecordsEvent) {
  ASSERT_OK(vol_->Write(0, Bytes(vol_->size(), 60)));
  ASSERT_OK(store_->ResizeDiffArea(volume_id_, 64 * 1024));
  Guid s1 = Snap();
  Guid s2 = Snap();
  auto before = ReadLive();
  // Needs far more than 64 KiB of diff area: the write must still succeed.
  ASSERT_OK(vol_->Write(0, Bytes(vol_->size(), 61)));
  EXPECT_EQ(vol_->OpenShadow(s1).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(vol_->OpenShadow(s2).status().code(), StatusCode::kNotFound);
  auto events = store_->ListEvents(volume_id_);
  ASSERT_OK(events);
  int full = 0;
  for (const auto& e : *events) full += e.kind == "shadow-deleted-diff-area-full";
  EXPECT_EQ(full, 2);
  EXPECT_LE(vol_->Stats().diff_used_bytes, 64u * 1024);
  (void)before;
}

TEST_F(VolumeTest, NonPersistentShadowIsRemovedOnReopenWithEvent) {
  ASSERT_OK(vol_->Write(0, Bytes(kChunk, 70)));
  Guid keep = Snap();
  Guid gone = Snap(/*persistent=*/false);
  ASSERT_OK(vol_->Write(0, Bytes(kChunk, 71)));
  Reopen();
  EXPECT_EQ(vol_->OpenShadow(gone).status().code(), StatusCode::kNotFound);
  auto shadow = vol_->OpenShadow(keep);
  ASSERT_OK(shadow);
  std::vector<uint8_t> b(kChunk);
  ASSERT_OK((*shadow)->Read(0, b));
  EXPECT_EQ(b, Bytes(kChunk, 70));
  auto events = store_->ListEvents(volume_id_);
  ASSERT_OK(events);
  bool seen = false;
  for (const auto& e : *events) seen |= e.kind == "shadow-removed-at-recovery";
  EXPECT_TRUE(seen);
}

TEST_F(VolumeTest, UnflushedIndexIsRebuiltFromSegmentTails) {
  auto v0 = Bytes(vol_->size(), 80);
  ASSERT_OK(vol_->Write(0, v0));
  Guid s = Snap();
  ASSERT_OK(vol_->Write(0, Bytes(vol_->size(), 81)));
  // Destroy without flushing: the catalog has no index rows for the records.
  Reopen({.flush_on_close = false});
  EXPECT_EQ(ReadShadow(s), v0);
  EXPECT_EQ(vol_->Stats().preserved_chunks, (vol_->size() + kChunk - 1) / kChunk);
}

TEST_F(VolumeTest, SecondStoreCannotOpenALockedVolume) {
  auto other = Store::Open({.dir = dir_.path() + "/store"});
  ASSERT_OK(other);
  auto v = (*other)->OpenVolume(volume_id_);
  EXPECT_EQ(v.status().code(), StatusCode::kBusy);
  EXPECT_NE(v.status().message().find("pid"), std::string::npos) << v.status().message();
}

TEST_F(VolumeTest, ShadowSetTakesCallerChosenIds) {
  Guid set_id = Guid::Generate(), shadow_id = Guid::Generate();
  auto set = store_->CreateShadowSet(
      {.volumes = {volume_id_}, .set_id = set_id, .shadow_ids = {shadow_id}});
  ASSERT_OK(set);
  EXPECT_EQ(set->set_id, set_id);
  EXPECT_EQ(set->shadows[0].shadow_id, shadow_id);
  auto row = store_->FindShadow(shadow_id);
  ASSERT_OK(row);
  EXPECT_EQ(row->set_id, set_id);
  EXPECT_EQ(store_->CreateShadowSet({.volumes = {volume_id_}, .shadow_ids = {shadow_id, set_id}})
                .status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(store_->CreateShadowSet({.volumes = {volume_id_}, .shadow_ids = {shadow_id}}).ok());
}

TEST_F(VolumeTest, ShadowDeviceRefusesWrites) {
  Guid s = Snap();
  auto dev = vol_->OpenShadow(s);
  ASSERT_OK(dev);
  EXPECT_TRUE((*dev)->read_only());
  EXPECT_FALSE((*dev)->Write(0, Bytes(10, 1)).ok());
  EXPECT_FALSE((*dev)->Discard(0, 4096).ok());
  EXPECT_EQ(vol_->Stats().preserved_chunks, 0u);
}

TEST_F(VolumeTest, ShadowExtentsReportHolesAndPreservedData) {
  ASSERT_OK(vol_->Write(kChunk, Bytes(kChunk, 90)));
  Guid s = Snap();
  ASSERT_OK(vol_->Write(kChunk * 4, Bytes(kChunk, 91)));  // hole preserved as zero
  ASSERT_OK(vol_->Discard(kChunk, kChunk));                // data preserved
  auto dev = vol_->OpenShadow(s);
  ASSERT_OK(dev);
  auto ext = (*dev)->Extents(0, vol_->size());
  ASSERT_OK(ext);
  uint64_t allocated = 0, covered = 0;
  for (const Extent& e : *ext) {
    covered += e.length;
    if (e.allocated) allocated += e.length;
  }
  EXPECT_EQ(covered, vol_->size());
  EXPECT_EQ(allocated, kChunk);
}

TEST_F(VolumeTest, ConcurrentWritersAndShadowsSeeConsistentInstants) {
  // Each writer owns blocks; a block holds one (writer, version) stamp.
  constexpr int kWriters = 4, kBlocks = 64;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      uint32_t version = 0;
      std::vector<uint8_t> block(4096);
      while (!stop) {
        ++version;
        for (int b = w; b < kBlocks; b += kWriters) {
          for (size_t i = 0; i < block.size(); i += 4) std::memcpy(&block[i], &version, 4);
          if (!vol_->Write(uint64_t(b) * 4096 * 5, block).ok()) return;
        }
      }
    });
  }
  std::vector<Guid> shadows;
  for (int i = 0; i < 8; ++i) {
    shadows.push_back(Snap());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop = true;
  for (auto& t : threads) t.join();
  std::vector<uint32_t> last(kBlocks, 0);
  for (const Guid& s : shadows) {
    auto img = ReadShadow(s);
    for (int b = 0; b < kBlocks; ++b) {
      const uint8_t* p = img.data() + uint64_t(b) * 4096 * 5;
      uint32_t v0;
      std::memcpy(&v0, p, 4);
      for (size_t i = 0; i < 4096; i += 4) {
        uint32_t v;
        std::memcpy(&v, p + i, 4);
        ASSERT_EQ(v, v0) << "torn block " << b;
      }
      EXPECT_GE(v0, last[b]) << "shadow went back in time at block " << b;
      last[b] = v0;
    }
  }
}

// Diff area on MemFileSystem, for file-system faults.
class MemFsVolumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = std::make_shared<MemoryDevice>(1024 * 1024);
    Open();
  }
  void Open() {
    auto img = image_;
    StoreOptions o;
    o.dir = dir_.path();
    o.fs = &fs_;
    o.open_image = [img, this](const std::string&, bool, uint64_t)
        -> StatusOr<std::unique_ptr<BlockDevice>> {
      auto dev = std::make_unique<FaultDevice>(img.get());
      image_faults_ = dev.get();
      return std::unique_ptr<BlockDevice>(std::move(dev));
    };
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    if (id_.IsNull()) {
      auto row = store_->CreateVolume({.path = "mem.img", .size = 1024 * 1024, .chunk_size = 4096});
      ASSERT_TRUE(row.ok()) << row.status().ToString();
      id_ = row->id;
    }
    auto v = store_->OpenVolume(id_);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    vol_ = *v;
  }
  TempDir dir_;
  MemFileSystem fs_;
  std::shared_ptr<MemoryDevice> image_;
  FaultDevice* image_faults_ = nullptr;  // the open volume's view of image_
  std::unique_ptr<Store> store_;
  Guid id_;
  Volume* vol_ = nullptr;
};

TEST_F(MemFsVolumeTest, FullFileSystemDeletesOldestShadowAndWriteSucceeds) {
  ASSERT_OK(vol_->Write(0, Bytes(1024 * 1024, 1)));
  auto set = store_->CreateShadowSet({.volumes = {id_}});
  ASSERT_OK(set);
  fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kWrite), .nth = 1,
                    .persistent = true, .error = NoSpaceError("file system full")});
  ASSERT_OK(vol_->Write(0, Bytes(8192, 2)));
  fs_.ClearFaultRule();
  EXPECT_EQ(vol_->OpenShadow(set->shadows[0].shadow_id).status().code(), StatusCode::kNotFound);
  std::vector<uint8_t> b(8192);
  ASSERT_OK(vol_->Read(0, b));
  EXPECT_EQ(b, Bytes(8192, 2));
}

TEST_F(MemFsVolumeTest, FailedSyncFailsTheFlushAndLeavesTheImageUntouched) {
  ASSERT_OK(vol_->Write(0, Bytes(1024 * 1024, 3)));
  auto set = store_->CreateShadowSet({.volumes = {id_}});
  ASSERT_OK(set);
  fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kSync), .nth = 1,
                    .persistent = false, .error = IoError("sync failed")});
  // The write completes with its record appended; its overwrite waits for
  // the diff-area sync, which fails.
  ASSERT_OK(vol_->Write(0, Bytes(4096, 4)));
  EXPECT_FALSE(vol_->Flush().ok());
  // Rule 1: without a durable record the image was never overwritten.
  std::vector<uint8_t> b(4096);
  ASSERT_OK(image_->Read(0, b));
  EXPECT_EQ(b, Bytes(4096, 3));
  // The shadow still reads the old bytes.
  auto shadow = vol_->OpenShadow(set->shadows[0].shadow_id);
  ASSERT_OK(shadow);
  ASSERT_OK((*shadow)->Read(0, b));
  EXPECT_EQ(b, Bytes(4096, 3));
  // Durability is unknown from now on: writes and flushes fail until reopened.
  EXPECT_FALSE(vol_->Write(8192, Bytes(4096, 5)).ok());
  EXPECT_FALSE(vol_->Flush().ok());
}

TEST_F(MemFsVolumeTest, FailedImageWriteOfAPendingWriteFailsTheFlushAndLaterWrites) {
  ASSERT_OK(vol_->Write(0, Bytes(1024 * 1024, 3)));
  auto set = store_->CreateShadowSet({.volumes = {id_}});
  ASSERT_OK(set);
  image_faults_->SetRule({.ops = static_cast<uint32_t>(DeviceOp::kWrite), .nth = 1,
                          .persistent = true, .error = IoError("medium error")});
  // Completes pending; issuing it to the image fails later.
  ASSERT_OK(vol_->Write(0, Bytes(4096, 4)));
  Status flush = vol_->Flush();
  EXPECT_FALSE(flush.ok());
  EXPECT_NE(flush.message().find("medium error"), std::string::npos) << flush.ToString();
  image_faults_->ClearRule();
  // The shadow is intact, and the failure sticks until the volume is reopened.
  auto shadow = vol_->OpenShadow(set->shadows[0].shadow_id);
  ASSERT_OK(shadow);
  std::vector<uint8_t> b(4096);
  ASSERT_OK((*shadow)->Read(0, b));
  EXPECT_EQ(b, Bytes(4096, 3));
  EXPECT_FALSE(vol_->Write(8192, Bytes(4096, 5)).ok());
  EXPECT_FALSE(vol_->Flush().ok());
}

TEST_F(MemFsVolumeTest, PendingWriteReadsBackAtOnceAndReachesTheImageAtFlush) {
  ASSERT_OK(vol_->Write(0, Bytes(1024 * 1024, 1)));
  auto set = store_->CreateShadowSet({.volumes = {id_}});
  ASSERT_OK(set);
  // Overlapping writes, the second over a chunk the first still has pending.
  const std::vector<uint8_t> two = Bytes(8192, 2), three = Bytes(100, 3);
  ASSERT_OK(vol_->Write(4096, two));
  ASSERT_OK(vol_->Write(8192, three));
  ASSERT_OK(vol_->WriteZeroes(12288, 4096));
  std::vector<uint8_t> want = Bytes(1024 * 1024, 1);
  std::copy(two.begin(), two.end(), want.begin() + 4096);
  std::copy(three.begin(), three.end(), want.begin() + 8192);
  std::fill(want.begin() + 12288, want.begin() + 16384, 0);
  std::vector<uint8_t> b(1024 * 1024);
  ASSERT_OK(vol_->Read(0, b));
  EXPECT_TRUE(b == want);
  auto shadow = vol_->OpenShadow(set->shadows[0].shadow_id);
  ASSERT_OK(shadow);
  ASSERT_OK((*shadow)->Read(0, b));
  EXPECT_TRUE(b == Bytes(1024 * 1024, 1));
  ASSERT_OK(vol_->Flush());
  ASSERT_OK(image_->Read(0, b));
  EXPECT_TRUE(b == want);
}

TEST_F(MemFsVolumeTest, FailedRecordWriteFailsTheVolumeWrite) {
  ASSERT_OK(vol_->Write(0, Bytes(1024 * 1024, 6)));
  ASSERT_OK(store_->CreateShadowSet({.volumes = {id_}}));
  fs_.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kWrite), .nth = 1,
                    .persistent = false, .error = IoError("medium error")});
  EXPECT_FALSE(vol_->Write(0, Bytes(4096, 7)).ok());
  fs_.ClearFaultRule();
  std::vector<uint8_t> b(4096), want = Bytes(1024 * 1024, 6);
  ASSERT_OK(vol_->Read(0, b));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), want.begin()));
}

TEST(StoreTest, ShadowCreationOnTerabyteSparseVolumeDoesNoPerChunkWork) {
  TempDir dir;
  auto store = Store::Open({.dir = dir.path() + "/store"});
  ASSERT_OK(store);
  auto row = (*store)->CreateVolume({.path = dir.path() + "/big.img", .size = uint64_t{1} << 40});
  ASSERT_OK(row);
  auto v = (*store)->OpenVolume(row->id);
  ASSERT_OK(v);
  ASSERT_OK((*v)->Write((uint64_t{1} << 40) - 4096, Bytes(4096, 1)));
  auto set = (*store)->CreateShadowSet({.volumes = {row->id}});
  ASSERT_OK(set);
  EXPECT_EQ((*v)->Stats().preserved_chunks, 0u);
  EXPECT_EQ((*v)->Stats().index_memory_bytes, 0u);
}

TEST(StoreTest, BadRequestsAreRefusedAndChangeNothing) {
  TempDir dir;
  auto store = Store::Open({.dir = dir.path() + "/store"});
  ASSERT_OK(store);
  Store& s = **store;
  EXPECT_EQ(s.CreateVolume({.path = dir.path() + "/a.img", .size = 1 << 20, .chunk_size = 3000})
                .status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.CreateVolume({.path = dir.path() + "/a.img"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(s.CreateVolume({.path = dir.path() + "/missing.img", .create = false})
                .status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/a.img"));
  auto row = s.CreateVolume({.path = dir.path() + "/a.img", .size = 1 << 20});
  ASSERT_OK(row);
  EXPECT_EQ(s.CreateVolume({.path = dir.path() + "/b.img", .size = 1 << 20, .name = "a.img"})
                .status().code(), StatusCode::kAlreadyExists);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/b.img"));
  EXPECT_EQ(s.CreateShadowSet({.volumes = {row->id, row->id}}).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(s.DeleteShadow(Guid::Generate()).code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ResolveShadow("zz").status().code(), StatusCode::kNotFound);
  auto shadows = s.ListShadows();
  ASSERT_OK(shadows);
  EXPECT_TRUE(shadows->empty());
}

}  // namespace
}  // namespace vss::engine
