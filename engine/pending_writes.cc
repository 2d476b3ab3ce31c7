#include "pending_writes.h"

#include <algorithm>
#include <cstring>
#include <set>

namespace vss::engine {

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
  for (uint64_t c = e.first_chunk; c <= e.last_chunk; ++c) by_chunk_[c].push_back(e.seq);
  bytes_ += e.data.size();
  uint64_t seq = e.seq;
  entries_.emplace(seq, std::move(e));
  return seq;
}

void PendingWrites::Overlay(uint64_t offset, std::span<uint8_t> buf) const {
  if (entries_.empty() || buf.empty()) return;
  const uint64_t end = offset + buf.size();
  std::set<uint64_t> seqs;
  for (uint64_t c = offset / chunk_size_; c <= (end - 1) / chunk_size_; ++c) {
    auto it = by_chunk_.find(c);
    if (it != by_chunk_.end()) seqs.insert(it->second.begin(), it->second.end());
  }
  for (uint64_t seq : seqs) {
    const Entry& e = entries_.at(seq);
    uint64_t from = std::max(offset, e.offset);
    uint64_t to = std::min(end, e.offset + e.length);
    if (from >= to) continue;
    uint8_t* dst = buf.data() + (from - offset);
    if (e.kind == ModKind::kWrite)
      std::memcpy(dst, e.data.data() + (from - e.offset), to - from);
    else
      std::memset(dst, 0, to - from);
  }
}

const PendingWrites::Entry* PendingWrites::Oldest() const {
  return entries_.empty() ? nullptr : &entries_.begin()->second;
}

void PendingWrites::Pop() {
  auto it = entries_.begin();
  const Entry& e = it->second;
  for (uint64_t c = e.first_chunk; c <= e.last_chunk; ++c) {
    auto q = by_chunk_.find(c);
    q->second.pop_front();  // the oldest entry is the first of every chunk
    if (q->second.empty()) by_chunk_.erase(q);
  }
  bytes_ -= e.data.size();
  entries_.erase(it);
}

}  // namespace vss::engine
