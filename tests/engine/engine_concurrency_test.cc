// Concurrency test of the engine: writer threads hammer one volume while
// another thread creates, reads and deletes shadows.
//
// Writer t owns the 1 KiB region [1024 t, 1024 t + 1024) of every 4 KiB
// chunk (so every chunk is shared by all writers and first-write
// copy-on-write races between them), and writes 512 or 1024 bytes of it in
// one call, stamped with (t, i) for its i-th write. Before a shadow is
// created the test notes how many writes each thread had completed, after it
// returns how many each had started. A shadow is one instant: per writer it
// shows exactly a prefix p of that writer's writes (every block holds the
// last write <= p that covered it), with completed_before <= p <=
// started_after. A shadow read while writes go on must read the same after
// they stop. Seed: VSS_SEED, printed.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine_test_util.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/base/mem_file_system.h"
#include "vss/formats/memory_device.h"

namespace vss::engine {
namespace {

using test_util::ReadAll;
using test_util::TempDir;

constexpr int kWriters = 4;
constexpr uint32_t kChunk = 4096;
constexpr uint64_t kChunks = 64;
constexpr uint64_t kSize = kChunks * kChunk;
constexpr uint64_t kBlock = 512;
constexpr uint64_t kBlocks = kSize / kBlock;

int OwnerOf(uint64_t block) { return int((block % (kChunk / kBlock)) / 2); }

void Stamp(int t, uint64_t i, std::span<uint8_t> out) {
  uint64_t w = (uint64_t(t + 1) << 48) | i;
  for (size_t k = 0; k + 8 <= out.size(); k += 8) std::memcpy(&out[k], &w, 8);
}

// The write number in a block of writer `t`, 0 if never written, or -1 if
// the block is not a whole stamp of `t` (torn or foreign).
int64_t ReadStamp(int t, std::span<const uint8_t> block) {
  uint64_t w;
  std::memcpy(&w, block.data(), 8);
  for (size_t k = 8; k < block.size(); k += 8) {
    uint64_t x;
    std::memcpy(&x, &block[k], 8);
    if (x != w) return -1;
  }
  if (w == 0) return 0;
  if ((w >> 48) != uint64_t(t + 1)) return -1;
  return int64_t(w & ((uint64_t{1} << 48) - 1));
}

struct WriteLog {
  std::vector<std::pair<uint64_t, uint64_t>> writes;  // first block, count
};

struct ShadowTaken {
  Guid id;
  std::vector<uint64_t> completed_before, started_after;
  std::vector<uint8_t> read_during;  // read while writers ran
};

// Checks `bytes` against the per-writer prefix rule; "" if fine.
std::string CheckInstant(const std::vector<uint8_t>& bytes,
                         const ShadowTaken& s,
                         const std::vector<WriteLog>& logs) {
  for (int t = 0; t < kWriters; ++t) {
    std::vector<int64_t> stamp(kBlocks, 0);
    int64_t p = 0;
    for (uint64_t b = 0; b < kBlocks; ++b) {
      if (OwnerOf(b) != t) continue;
      stamp[b] = ReadStamp(t, {bytes.data() + b * kBlock, kBlock});
      if (stamp[b] < 0)
        return "block " + std::to_string(b) + " is torn or foreign";
      p = std::max(p, stamp[b]);
    }
    if (uint64_t(p) > s.started_after[t]) {
      return "writer " + std::to_string(t) + " write " + std::to_string(p) +
             " started after the shadow was created";
    }
    // Expected: the last write <= p covering each block; and p >= completed.
    std::vector<int64_t> expect(kBlocks, 0);
    for (int64_t i = 1; i <= p; ++i) {
      auto [first, n] = logs[t].writes[i - 1];
      for (uint64_t b = first; b < first + n; ++b) expect[b] = i;
    }
    for (uint64_t b = 0; b < kBlocks; ++b) {
      if (OwnerOf(b) == t && expect[b] != stamp[b]) {
        return "writer " + std::to_string(t) + ": block " + std::to_string(b) +
               " (chunk " + std::to_string(b * kBlock / kChunk) +
               ") holds write " + std::to_string(stamp[b]) + " but write " +
               std::to_string(p) +
               " is in the shadow and the last write before it there is " +
               std::to_string(expect[b]);
      }
    }
    // Writes completed before the create must be in: the last of them
    // would show (or a later one over it), so p cannot be below it.
    if (uint64_t(p) < s.completed_before[t]) {
      return "writer " + std::to_string(t) + " write " +
             std::to_string(s.completed_before[t]) +
             " completed before the shadow was created but the shadow only has "
             "writes up to " +
             std::to_string(p);
    }
  }
  return "";
}

TEST(EngineConcurrencyTest,
     Concurrent_ShadowsAreOneInstantUnderParallelWrites) {
  const uint64_t seed = test_util::TestSeed();
  std::cout << "engine concurrency test: VSS_SEED=" << seed << std::endl;
  SCOPED_TRACE("VSS_SEED=" + std::to_string(seed));
  const int max_writes = 2000000;  // writers run until the shadows are done
  TempDir dir({.prefer_shm = true});
  MemoryDevice image(kSize, "conc.img");
  MemFileSystem fs;
  StoreOptions o;
  o.dir = dir.path() + "/store";
  o.fs = &fs;
  o.open_image = test_util::GatedOpener(&image, nullptr);
  o.segment_bytes = 256 * 1024;
  VSS_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(std::move(o)));
  VSS_ASSERT_OK_AND_ASSIGN(
      auto row, store->CreateVolume({.path = dir.path() + "/conc.img",
                                     .size = kSize,
                                     .name = "conc",
                                     .chunk_size = kChunk,
                                     .create = true}));
  VSS_ASSERT_OK_AND_ASSIGN(Volume * vol, store->OpenVolume(row.id));

  std::vector<WriteLog> logs(kWriters);
  std::vector<std::atomic<uint64_t>> started(kWriters), completed(kWriters);
  std::atomic<bool> stop{false};
  std::mutex err_mu;
  std::vector<std::string> errors;
  auto Error = [&](std::string e) {
    std::lock_guard<std::mutex> l(err_mu);
    errors.push_back(std::move(e));
  };

  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(seed + uint64_t(t) * 7919);
      std::vector<uint8_t> buf(2 * kBlock);
      for (uint64_t i = 1; !stop.load() && i <= uint64_t(max_writes); ++i) {
        uint64_t chunk = rng() % kChunks;
        uint64_t first = chunk * (kChunk / kBlock) + 2 * uint64_t(t);
        uint64_t n = 1 + rng() % 2;
        if (n == 1) first += rng() % 2;
        logs[t].writes.push_back({first, n});
        Stamp(t, i, {buf.data(), n * kBlock});
        started[t].store(i);
        Status st = vol->Write(first * kBlock, {buf.data(), n * kBlock});
        if (!st.ok()) {
          Error("writer " + std::to_string(t) + " write " + std::to_string(i) +
                ": " + st.ToString());
          return;
        }
        completed[t].store(i);
      }
    });
  }

  std::vector<ShadowTaken> taken;
  std::vector<Guid> deleted;
  std::mt19937_64 rng(seed);
  for (int k = 0; k < 40; ++k) {
    ShadowTaken s;
    for (int t = 0; t < kWriters; ++t)
      s.completed_before.push_back(completed[t].load());
    CreateSetRequest req;
    req.volumes = {row.id};
    auto set = store->CreateShadowSet(req);
    for (int t = 0; t < kWriters; ++t)
      s.started_after.push_back(started[t].load());
    ASSERT_TRUE(set.ok()) << set.status().ToString();
    s.id = set->shadows[0].shadow_id;
    VSS_ASSERT_OK_AND_ASSIGN(auto dev, vol->OpenShadow(s.id));
    VSS_ASSERT_OK_AND_ASSIGN(s.read_during, ReadAll(*dev));
    taken.push_back(std::move(s));
    // Delete a random older shadow now and then, while writes go on.
    if (taken.size() - deleted.size() > 5) {
      for (;;) {
        const Guid& id = taken[rng() % taken.size()].id;
        if (std::find(deleted.begin(), deleted.end(), id) != deleted.end())
          continue;
        VSS_ASSERT_OK(store->DeleteShadow(id));
        deleted.push_back(id);
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 3000));
  }
  stop = true;
  for (auto& w : writers) w.join();
  ASSERT_TRUE(errors.empty()) << errors[0];

  int checked = 0;
  for (const ShadowTaken& s : taken) {
    SCOPED_TRACE("shadow " + s.id.ToString());
    std::string e = CheckInstant(s.read_during, s, logs);
    EXPECT_EQ(e, "") << "read while writers ran";
    if (std::find(deleted.begin(), deleted.end(), s.id) != deleted.end())
      continue;
    VSS_ASSERT_OK_AND_ASSIGN(auto dev, vol->OpenShadow(s.id));
    VSS_ASSERT_OK_AND_ASSIGN(auto after, ReadAll(*dev));
    EXPECT_EQ(test_util::DescribeDiff(s.read_during, after, 0, kChunk), "")
        << "shadow changed between a read during the writes and one after";
    ++checked;
  }
  // The live volume holds every writer's last write of each block.
  VSS_ASSERT_OK_AND_ASSIGN(auto live, ReadAll(*vol));
  ShadowTaken all;
  for (int t = 0; t < kWriters; ++t) {
    all.completed_before.push_back(logs[t].writes.size());
    all.started_after.push_back(logs[t].writes.size());
  }
  EXPECT_EQ(CheckInstant(live, all, logs), "") << "live volume";
  uint64_t total = 0;
  for (const auto& l : logs) total += l.writes.size();
  std::cout << "checked " << taken.size() << " shadows over " << total
            << " concurrent writes (" << checked
            << " re-read after the writers stopped)" << std::endl;
}

}  // namespace
}  // namespace vss::engine
