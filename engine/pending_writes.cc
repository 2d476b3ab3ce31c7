#include "pending_writes.h"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace vss::engine {
namespace {

// Heap bytes of one node of a std::map (three pointers and a colour, plus
// the allocator's header), for memory_bytes().
constexpr uint64_t kMapNodeOverhead = 48;

}  // namespace

uint64_t PendingWrites::Add(uint64_t offset, uint64_t length, ModKind kind,
                            std::span<const uint8_t> data) {
  Entry e;
  e.seq = next_seq_++;
  e.offset = offset;
  e.length = length;
  e.kind = kind;
  if (kind == ModKind::kWrite) e.data.assign(data.begin(), data.end());
  e.first_chunk = offset / chunk_size_;
  e.last_chunk = (offset + length - 1) / chunk_size_;
  bytes_ += e.data.size();
  const uint64_t seq = e.seq, end = offset + length;
  entries_.emplace(seq, std::move(e));

  // The new entry is the newest over [offset, end): cut that range out of
  // the pieces (keeping what older pieces cover outside it) and add it.
  auto it = pieces_.lower_bound(offset);
  if (it != pieces_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.end > offset) {
      const Piece old = prev->second;
      prev->second.end = offset;
      if (old.end > end) pieces_.emplace(end, Piece{old.end, old.seq});
    }
  }
  while (it != pieces_.end() && it->first < end) {
    if (it->second.end > end)
      pieces_.emplace(end, Piece{it->second.end, it->second.seq});
    it = pieces_.erase(it);
  }
  pieces_.emplace(offset, Piece{end, seq});
  return seq;
}

void PendingWrites::Overlay(uint64_t offset, std::span<uint8_t> buf) const {
  if (pieces_.empty() || buf.empty()) return;
  const uint64_t end = offset + buf.size();
  auto it = pieces_.upper_bound(offset);
  if (it != pieces_.begin()) --it;  // the piece that may start before offset
  for (; it != pieces_.end() && it->first < end; ++it) {
    uint64_t from = std::max(offset, it->first);
    uint64_t to = std::min(end, it->second.end);
    if (from >= to) continue;
    const Entry& e = entries_.at(it->second.seq);
    uint8_t* dst = buf.data() + (from - offset);
    if (e.kind == ModKind::kWrite)
      std::memcpy(dst, e.data.data() + (from - e.offset), to - from);
    else
      std::memset(dst, 0, to - from);
  }
}

uint64_t PendingWrites::EraseOverlapping(uint64_t offset,
                                         uint64_t length) const {
  if (pieces_.empty() || length == 0) return 0;
  const uint64_t end = offset + length;
  bool erase = false;
  uint64_t newest = 0;
  auto it = pieces_.upper_bound(offset);
  if (it != pieces_.begin()) --it;
  for (; it != pieces_.end() && it->first < end; ++it) {
    if (it->second.end <= offset) continue;
    newest = std::max(newest, it->second.seq);
    erase |= entries_.at(it->second.seq).kind != ModKind::kWrite;
  }
  return erase ? newest : 0;
}

const PendingWrites::Entry* PendingWrites::Oldest() const {
  return entries_.empty() ? nullptr : &entries_.begin()->second;
}

void PendingWrites::Pop() {
  auto oldest = entries_.begin();
  const Entry& e = oldest->second;
  // The oldest entry is the newest over what no later entry covers: exactly
  // the pieces tagged with it, all inside its range.
  const uint64_t end = e.offset + e.length;
  for (auto it = pieces_.lower_bound(e.offset);
       it != pieces_.end() && it->first < end;) {
    if (it->second.seq == e.seq)
      it = pieces_.erase(it);
    else
      ++it;
  }
  bytes_ -= e.data.size();
  entries_.erase(oldest);
}

uint64_t PendingWrites::memory_bytes() const {
  return entries_.size() *
             (sizeof(std::pair<const uint64_t, Entry>) + kMapNodeOverhead) +
         pieces_.size() *
             (sizeof(std::pair<const uint64_t, Piece>) + kMapNodeOverhead) +
         bytes_;
}

}  // namespace vss::engine
