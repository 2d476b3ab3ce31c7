// ChunkIndex: the in-memory index of a volume's diff area, epoch by epoch.
//
// Every shadow of a volume owns one epoch (its number, increasing with
// time). Epoch e maps chunk -> the record preserving the chunk as it was
// when shadow e was taken, for chunks first modified while e was the newest
// shadow (or handed over to e when a newer shadow was dropped). Shadow k
// reads chunk c from the first epoch >= k that has c, else from the image
// (DESIGN.md, Data flow).
//
// Pure: no I/O, no catalog, and no locks of its own. Not thread safe; the
// owner (VolumeState) serialises every call with its index mutex, and
// changes the set of epochs only while it holds its structure mutex
// exclusively.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "chunk_map.h"

namespace vss::engine {

// The Location of the record at byte `offset` of diff-area segment
// `segment` whose payload is `stored_len` bytes in codec `codec`.
// REQUIRES: offset is a multiple of kRecordAlign below 16 TiB.
Location MakeLocation(uint32_t segment, uint64_t offset, uint32_t stored_len,
                      uint8_t codec);

class ChunkIndex {
 public:
  // What dropping a range of epochs does to the index: the records handed
  // over to the epoch below the range, and the records freed.
  struct DropPlan {
    uint64_t first_epoch = 0;  // dropped: epochs in [first_epoch, end_epoch)
    uint64_t end_epoch = 0;
    std::optional<uint64_t> merge_into;  // the epoch receiving `moves`
    struct Move {
      uint64_t from_epoch = 0;
      uint64_t chunk = 0;
      Location loc;
    };
    std::vector<Move> moves;
    std::vector<Location> freed;
  };

  // Adds an empty epoch; does nothing when it exists.
  void AddEpoch(uint64_t epoch);
  bool HasEpoch(uint64_t epoch) const { return epochs_.count(epoch) != 0; }
  size_t epoch_count() const { return epochs_.size(); }

  // Records that `loc` preserves `chunk` in `epoch`, replacing any record
  // the epoch had for it. REQUIRES: HasEpoch(epoch).
  void Put(uint64_t epoch, uint64_t chunk, const Location& loc);
  // Whether `epoch` itself has a record of `chunk` (false when there is no
  // such epoch).
  bool Contains(uint64_t epoch, uint64_t chunk) const;
  // The record a shadow of epoch `epoch` reads `chunk` from: the one of the
  // first epoch >= `epoch` that has the chunk; null when the chunk is read
  // from the image. The pointer is valid until the next change.
  const Location* Lookup(uint64_t epoch, uint64_t chunk) const;

  // Records held by the epochs >= `epoch`.
  uint64_t CountFrom(uint64_t epoch) const;
  // Calls f(chunk, location) for every record of the epochs in
  // [from_epoch, to_epoch), epoch by epoch, in no order within an epoch.
  template <typename F>
  void ForEachIn(uint64_t from_epoch, uint64_t to_epoch, F&& f) const {
    for (auto e = epochs_.lower_bound(from_epoch);
         e != epochs_.end() && e->first < to_epoch; ++e)
      e->second.ForEach(f);
  }
  // The distinct chunks that have a record in [from_epoch, to_epoch),
  // ascending: the chunks changed between those shadows.
  std::vector<uint64_t> ChunksOf(uint64_t from_epoch, uint64_t to_epoch) const;

  // Plans dropping every epoch in [first_epoch, end_epoch). With `merge`,
  // the greatest epoch below first_epoch (if any) receives, for each chunk
  // it has no record of, the record of the lowest dropped epoch that has
  // the chunk, so that every epoch kept reads what it read before; every
  // other record of the range is freed. Without `merge`, all are freed.
  // Changes nothing: the owner commits the plan elsewhere first, then
  // calls ApplyDrop.
  DropPlan PlanDrop(uint64_t first_epoch, uint64_t end_epoch, bool merge) const;
  // Applies a plan made by PlanDrop with no change to the index since.
  void ApplyDrop(const DropPlan& plan);

  // Bytes of the records indexed (the diff area's live bytes), in total
  // and per segment.
  uint64_t live_bytes() const { return live_bytes_; }
  std::map<uint32_t, uint64_t> LiveBytesBySegment() const;
  // Records indexed, and the bytes of memory the index holds.
  uint64_t record_count() const;
  uint64_t memory_bytes() const;

 private:
  std::map<uint64_t, ChunkMap> epochs_;
  uint64_t live_bytes_ = 0;
};

}  // namespace vss::engine
