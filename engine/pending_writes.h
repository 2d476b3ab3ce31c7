// PendingWrites: volume writes that have completed for the caller but are
// not yet issued to the image, because the diff-area records preserving the
// chunks they overwrite are not yet known to be durable (rule 1: a record is
// durable before the overwrite of its chunk is issued).
//
// VolumeState adds a write here instead of syncing the diff area inline,
// and a background applier later syncs the diff area once for many writes
// and issues them to the image in the order they were added. Until then,
// reads of the live volume see them through Overlay(). A write that arrives
// while any write is pending is pending too, so writes reach the image in
// the order they completed and the image always holds a prefix of them.
//
// Memory follows the number of entries and the bytes they carry, never the
// length of a range (rule 8): besides the entries, the structure keeps the
// volume's byte ranges they cover as disjoint pieces, each tagged with the
// newest entry covering it (at most 2 * count() + 1 pieces). A discard of a
// whole terabyte volume costs one entry and one piece.
//
// Ownership and threads: a plain container, not synchronised. VolumeState
// guards it with its defer mutex. Entries are immutable once added and stay
// at the same address until Pop() removes them, so the applier may read
// the oldest entries without the mutex while it is the only one to Pop().
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

namespace vss::engine {

// What a volume modification does to its range.
enum class ModKind : uint8_t { kWrite, kZeroes, kDiscard };

class PendingWrites {
 public:
  struct Entry {
    uint64_t seq = 0;
    uint64_t offset = 0;
    uint64_t length = 0;
    ModKind kind = ModKind::kWrite;
    std::vector<uint8_t> data;  // kWrite only: the bytes written
    uint64_t first_chunk = 0, last_chunk = 0;
  };

  explicit PendingWrites(uint32_t chunk_size) : chunk_size_(chunk_size) {}

  // Adds a modification of [offset, offset+length) (length > 0); `data` is
  // its bytes for kWrite (copied), empty otherwise. Returns its sequence
  // number, one more than the previous one.
  uint64_t Add(uint64_t offset, uint64_t length, ModKind kind,
               std::span<const uint8_t> data);

  // Copies into `buf` (the volume's bytes at `offset`, as read from the
  // image) what the pending writes overlapping it put there: the newest
  // entry's bytes wherever several overlap. Zeroes and discards read as
  // zeroes.
  void Overlay(uint64_t offset, std::span<uint8_t> buf) const;

  // 0 when no pending entry that is the newest over some byte of
  // [offset, offset+length) is a zeroes or discard; else the highest
  // sequence number among the newest entries over the range (issuing every
  // entry up to it leaves no pending zeroes or discard over the range).
  uint64_t EraseOverlapping(uint64_t offset, uint64_t length) const;

  // The oldest entry, or null when empty.
  const Entry* Oldest() const;
  // Removes the oldest entry. REQUIRES: not empty.
  void Pop();

  bool empty() const { return entries_.empty(); }
  size_t count() const { return entries_.size(); }
  size_t pieces() const { return pieces_.size(); }
  uint64_t bytes() const { return bytes_; }            // data held
  uint64_t last_seq() const { return next_seq_ - 1; }  // 0: none yet
  // Approximate heap memory held: entries, pieces and data.
  uint64_t memory_bytes() const;

 private:
  struct Piece {
    uint64_t end = 0;  // exclusive
    uint64_t seq = 0;  // the newest entry covering [start, end)
  };

  uint32_t chunk_size_;
  uint64_t next_seq_ = 1;
  uint64_t bytes_ = 0;
  std::map<uint64_t, Entry> entries_;  // by seq
  std::map<uint64_t, Piece> pieces_;   // by start; disjoint
};

}  // namespace vss::engine
