// ChunkIndex on its own: lookups across epochs, the merge that a dropped
// shadow hands over to the previous one, and a randomized comparison with a
// trivial model (std::map of std::map). Seed: VSS_SEED (default random),
// printed at start and in every failure.
#include "../../engine/chunk_index.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <random>

#include "engine_test_util.h"

namespace vss::engine {
namespace {

// A location told apart by `id` (its segment), of `blocks` * 4096 bytes.
Location Loc(uint32_t id, uint16_t blocks = 1) {
  Location loc;
  loc.segment = id;
  loc.offset_blocks = id;
  loc.stored_len = 100;
  loc.record_blocks = blocks;
  return loc;
}

// An index with the given empty epochs.
ChunkIndex WithEpochs(std::initializer_list<uint64_t> epochs) {
  ChunkIndex index;
  for (uint64_t e : epochs) index.AddEpoch(e);
  return index;
}

std::optional<uint32_t> LookupId(const ChunkIndex& index, uint64_t epoch,
                                 uint64_t chunk) {
  const Location* loc = index.Lookup(epoch, chunk);
  if (!loc) return std::nullopt;
  return loc->segment;
}

TEST(ChunkIndexTest, MakeLocation_KeepsOffsetLengthAndCodec) {
  Location loc = MakeLocation(7, 3 * 4096, 5000, 2);
  EXPECT_EQ(loc.segment, 7u);
  EXPECT_EQ(loc.offset(), 3u * 4096);
  EXPECT_EQ(loc.stored_len, 5000u);
  EXPECT_EQ(loc.codec, 2u);
  EXPECT_GE(loc.record_bytes(), 5000u);
  EXPECT_EQ(loc.record_bytes() % 4096, 0u);
}

TEST(ChunkIndexTest, Lookup_ReadsFirstEpochAtOrAfterTheShadowsOwn) {
  ChunkIndex index = WithEpochs({1, 2, 3});
  index.Put(2, 5, Loc(20));
  index.Put(3, 5, Loc(30));
  index.Put(3, 6, Loc(31));

  EXPECT_EQ(LookupId(index, 1, 5), 20u);  // epoch 1 has none: epoch 2's
  EXPECT_EQ(LookupId(index, 2, 5), 20u);
  EXPECT_EQ(LookupId(index, 3, 5), 30u);
  EXPECT_EQ(LookupId(index, 1, 6), 31u);
  EXPECT_EQ(LookupId(index, 1, 7), std::nullopt);  // never changed
  EXPECT_EQ(LookupId(index, 4, 5), std::nullopt);  // no epoch at or after
  EXPECT_TRUE(index.Contains(2, 5));
  EXPECT_FALSE(index.Contains(1, 5));
  EXPECT_FALSE(index.Contains(9, 5));  // no such epoch
  EXPECT_EQ(index.CountFrom(1), 3u);
  EXPECT_EQ(index.CountFrom(3), 2u);
  EXPECT_EQ(index.record_count(), 3u);
}

TEST(ChunkIndexTest, ChunksOf_IsSortedDistinctAndBoundedByTheEpochRange) {
  ChunkIndex index = WithEpochs({1, 2, 3});
  index.Put(1, 9, Loc(1));
  index.Put(2, 4, Loc(2));
  index.Put(2, 9, Loc(3));
  index.Put(3, 1, Loc(4));
  EXPECT_EQ(index.ChunksOf(1, 3), (std::vector<uint64_t>{4, 9}));
  EXPECT_EQ(index.ChunksOf(2, UINT64_MAX), (std::vector<uint64_t>{1, 4, 9}));
  EXPECT_TRUE(index.ChunksOf(4, UINT64_MAX).empty());
}

TEST(ChunkIndexTest, LiveBytes_FollowPutsReplacementsAndSegments) {
  ChunkIndex index = WithEpochs({1});
  index.Put(1, 0, Loc(1, 2));
  index.Put(1, 1, Loc(2, 3));
  EXPECT_EQ(index.live_bytes(), 5u * 4096);
  index.Put(1, 1, Loc(1, 1));  // replaces: its old record no longer counts
  EXPECT_EQ(index.live_bytes(), 3u * 4096);
  EXPECT_EQ(index.LiveBytesBySegment(),
            (std::map<uint32_t, uint64_t>{{1, 3u * 4096}}));
}

TEST(ChunkIndexTest, DropWithMerge_HandsOverOnlyWhatThePreviousShadowLacks) {
  ChunkIndex index = WithEpochs({1, 2, 3});
  index.Put(1, 0, Loc(10));
  index.Put(2, 0, Loc(20));  // epoch 1 has chunk 0: freed
  index.Put(2, 1, Loc(21));  // epoch 1 reads it from here: handed over
  index.Put(3, 1, Loc(31));

  ChunkIndex::DropPlan plan = index.PlanDrop(2, 3, /*merge=*/true);
  ASSERT_EQ(plan.merge_into, 1u);
  ASSERT_EQ(plan.moves.size(), 1u);
  EXPECT_EQ(plan.moves[0].from_epoch, 2u);
  EXPECT_EQ(plan.moves[0].chunk, 1u);
  ASSERT_EQ(plan.freed.size(), 1u);
  EXPECT_EQ(plan.freed[0].segment, 20u);
  EXPECT_TRUE(index.HasEpoch(2));  // planning changes nothing

  index.ApplyDrop(plan);
  EXPECT_FALSE(index.HasEpoch(2));
  EXPECT_EQ(LookupId(index, 1, 0), 10u);
  EXPECT_EQ(LookupId(index, 1, 1), 21u);  // as before the drop
  EXPECT_EQ(LookupId(index, 3, 1), 31u);
  EXPECT_EQ(index.live_bytes(), 3u * 4096);
}

TEST(ChunkIndexTest, DropOldestWithMerge_FreesEverything) {
  ChunkIndex index = WithEpochs({1, 2});
  index.Put(1, 0, Loc(10));
  index.Put(2, 0, Loc(20));
  ChunkIndex::DropPlan plan = index.PlanDrop(1, 2, /*merge=*/true);
  EXPECT_FALSE(plan.merge_into.has_value());
  EXPECT_TRUE(plan.moves.empty());
  ASSERT_EQ(plan.freed.size(), 1u);
  index.ApplyDrop(plan);
  EXPECT_EQ(index.epoch_count(), 1u);
  EXPECT_EQ(LookupId(index, 2, 0), 20u);
}

TEST(ChunkIndexTest, DropRangeWithoutMerge_FreesEveryRecordOfTheRange) {
  ChunkIndex index = WithEpochs({1, 2, 3});
  index.Put(1, 0, Loc(10));
  index.Put(2, 1, Loc(21));
  index.Put(3, 2, Loc(32));
  ChunkIndex::DropPlan plan = index.PlanDrop(2, UINT64_MAX, /*merge=*/false);
  EXPECT_TRUE(plan.moves.empty());
  EXPECT_EQ(plan.freed.size(), 2u);
  index.ApplyDrop(plan);
  EXPECT_EQ(index.epoch_count(), 1u);
  EXPECT_EQ(LookupId(index, 1, 1), std::nullopt);
  EXPECT_EQ(index.live_bytes(), 4096u);
}

// The trivial model: epoch -> chunk -> record id, and a linear lookup.
class Model {
 public:
  std::map<uint64_t, std::map<uint64_t, uint32_t>> epochs;

  std::optional<uint32_t> Lookup(uint64_t epoch, uint64_t chunk) const {
    for (auto e = epochs.lower_bound(epoch); e != epochs.end(); ++e) {
      auto it = e->second.find(chunk);
      if (it != e->second.end()) return it->second;
    }
    return std::nullopt;
  }
  // Drops [first, end); with merge, the epoch below takes what it lacks
  // from the lowest dropped epoch that has it.
  void Drop(uint64_t first, uint64_t end, bool merge) {
    auto lo = epochs.lower_bound(first), hi = epochs.lower_bound(end);
    if (merge && lo != epochs.begin()) {
      auto& prev = std::prev(lo)->second;
      for (auto e = lo; e != hi; ++e)
        for (auto [c, id] : e->second) prev.emplace(c, id);  // keeps existing
    }
    epochs.erase(lo, hi);
  }
};

TEST(ChunkIndexTest, Randomized_MatchesTrivialModel) {
  const uint64_t seed = test_util::TestSeed();
  std::cout << "ChunkIndexTest seed " << seed << " (VSS_SEED)\n";
  SCOPED_TRACE("VSS_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  constexpr uint64_t kChunks = 64;
  ChunkIndex index;
  Model model;
  uint64_t next_epoch = 1;
  uint32_t next_id = 1;
  for (int step = 0; step < 3000; ++step) {
    const int op = static_cast<int>(rng() % 100);
    if (op < 12 || model.epochs.empty()) {
      index.AddEpoch(next_epoch);
      model.epochs[next_epoch++];
    } else if (op < 94) {
      // A write preserves a chunk in the newest epoch once.
      const uint64_t epoch = model.epochs.rbegin()->first;
      const uint64_t c = rng() % kChunks;
      ASSERT_EQ(index.Contains(epoch, c), model.epochs[epoch].count(c) != 0);
      if (index.Contains(epoch, c)) continue;
      const uint16_t blocks = static_cast<uint16_t>(1 + rng() % 4);
      index.Put(epoch, c, Loc(next_id, blocks));
      model.epochs[epoch][c] = next_id++;
    } else {
      // A merged drop of one or two epochs (a delete), or a revert: a
      // suffix freed.
      auto it = std::next(model.epochs.begin(), rng() % model.epochs.size());
      const bool merge = op < 99;
      auto after = std::next(it);
      if (after != model.epochs.end() && rng() % 4 == 0) ++after;
      const uint64_t end =
          merge && after != model.epochs.end() ? after->first : UINT64_MAX;
      // What every kept epoch reads before the drop.
      std::map<std::pair<uint64_t, uint64_t>, std::optional<uint32_t>> before;
      for (const auto& [e, m] : model.epochs)
        for (uint64_t c = 0; c < kChunks; ++c)
          before[{e, c}] = model.Lookup(e, c);
      const uint64_t first = it->first;
      index.ApplyDrop(index.PlanDrop(first, end, merge));
      model.Drop(first, end, merge);
      if (merge) {
        for (const auto& [e, m] : model.epochs)
          for (uint64_t c = 0; c < kChunks; ++c)
            ASSERT_EQ(LookupId(index, e, c), (before[{e, c}]))
                << "epoch " << e << " chunk " << c << " changed, step " << step;
      }
    }
    // The whole index against the model.
    ASSERT_EQ(index.epoch_count(), model.epochs.size()) << "step " << step;
    uint64_t live = 0;
    for (const auto& [e, m] : model.epochs) {
      ASSERT_TRUE(index.HasEpoch(e));
      for (uint64_t c = 0; c < kChunks; ++c)
        ASSERT_EQ(LookupId(index, e, c), model.Lookup(e, c))
            << "epoch " << e << " chunk " << c << " step " << step;
    }
    uint64_t sum = 0;
    for (const auto& [seg, bytes] : index.LiveBytesBySegment()) sum += bytes;
    index.ForEachIn(0, UINT64_MAX, [&](uint64_t, const Location& loc) {
      live += loc.record_bytes();
    });
    ASSERT_EQ(index.live_bytes(), live) << "step " << step;
    ASSERT_EQ(sum, live) << "step " << step;
  }
}

}  // namespace
}  // namespace vss::engine
