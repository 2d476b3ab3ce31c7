#include "chunk_index.h"

#include <algorithm>
#include <iterator>

#include "record.h"

namespace vss::engine {

Location MakeLocation(uint32_t segment, uint64_t offset, uint32_t stored_len,
                      uint8_t codec) {
  const uint64_t bytes = RecordBytes(stored_len);
  return Location{segment,    static_cast<uint32_t>(offset / kRecordAlign),
                  stored_len, static_cast<uint16_t>(bytes / kRecordAlign),
                  codec,      0};
}

void ChunkIndex::AddEpoch(uint64_t epoch) { epochs_[epoch]; }

void ChunkIndex::Put(uint64_t epoch, uint64_t chunk, const Location& loc) {
  ChunkMap& map = epochs_.at(epoch);
  if (const Location* old = map.Find(chunk)) live_bytes_ -= old->record_bytes();
  map.Put(chunk, loc);
  live_bytes_ += loc.record_bytes();
}

bool ChunkIndex::Contains(uint64_t epoch, uint64_t chunk) const {
  auto it = epochs_.find(epoch);
  return it != epochs_.end() && it->second.Contains(chunk);
}

const Location* ChunkIndex::Lookup(uint64_t epoch, uint64_t chunk) const {
  for (auto it = epochs_.lower_bound(epoch); it != epochs_.end(); ++it) {
    if (const Location* loc = it->second.Find(chunk)) return loc;
  }
  return nullptr;
}

uint64_t ChunkIndex::CountFrom(uint64_t epoch) const {
  uint64_t n = 0;
  for (auto e = epochs_.lower_bound(epoch); e != epochs_.end(); ++e)
    n += e->second.size();
  return n;
}

std::vector<uint64_t> ChunkIndex::ChunksOf(uint64_t from_epoch,
                                           uint64_t to_epoch) const {
  std::vector<uint64_t> chunks;
  ForEachIn(from_epoch, to_epoch,
            [&](uint64_t c, const Location&) { chunks.push_back(c); });
  std::sort(chunks.begin(), chunks.end());
  chunks.erase(std::unique(chunks.begin(), chunks.end()), chunks.end());
  return chunks;
}

ChunkIndex::DropPlan ChunkIndex::PlanDrop(uint64_t first_epoch,
                                          uint64_t end_epoch,
                                          bool merge) const {
  DropPlan plan;
  plan.first_epoch = first_epoch;
  plan.end_epoch = end_epoch;
  auto first = epochs_.lower_bound(first_epoch);
  if (merge && first != epochs_.begin())
    plan.merge_into = std::prev(first)->first;
  const ChunkMap* keep =
      plan.merge_into ? &epochs_.at(*plan.merge_into) : nullptr;
  ChunkMap moved;  // chunks handed over so far (their value is unused)
  for (auto e = first; e != epochs_.end() && e->first < end_epoch; ++e) {
    e->second.ForEach([&](uint64_t c, const Location& loc) {
      if (keep && !keep->Contains(c) && !moved.Contains(c)) {
        plan.moves.push_back({e->first, c, loc});
        moved.Put(c, loc);
      } else {
        plan.freed.push_back(loc);
      }
    });
  }
  return plan;
}

void ChunkIndex::ApplyDrop(const DropPlan& plan) {
  for (const DropPlan::Move& m : plan.moves)
    epochs_.at(*plan.merge_into).Put(m.chunk, m.loc);
  if (plan.first_epoch < plan.end_epoch)
    epochs_.erase(epochs_.lower_bound(plan.first_epoch),
                  epochs_.lower_bound(plan.end_epoch));
  for (const Location& loc : plan.freed) live_bytes_ -= loc.record_bytes();
}

std::map<uint32_t, uint64_t> ChunkIndex::LiveBytesBySegment() const {
  std::map<uint32_t, uint64_t> live;
  for (const auto& [epoch, map] : epochs_)
    map.ForEach([&](uint64_t, const Location& loc) {
      live[loc.segment] += loc.record_bytes();
    });
  return live;
}

uint64_t ChunkIndex::record_count() const { return CountFrom(0); }

uint64_t ChunkIndex::memory_bytes() const {
  uint64_t n = 0;
  for (const auto& [epoch, map] : epochs_) n += map.memory_bytes();
  return n;
}

}  // namespace vss::engine
