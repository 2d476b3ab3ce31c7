// ChunkMap: the in-memory index of one epoch, chunk number -> where its
// preserved record is. An open-addressing hash table with linear probing,
// 24 bytes a slot, grown at 70 % load; entries are only added (an epoch is
// dropped or merged as a whole). Not thread safe: VolumeState guards it.
#pragma once

#include <cstdint>
#include <vector>

namespace vss::engine {

// Where a record is: 16 bytes.
struct Location {
  uint32_t segment = 0;
  uint32_t offset_blocks = 0;  // record offset / 4096
  uint32_t stored_len = 0;
  uint16_t record_blocks = 0;  // record bytes / 4096
  uint8_t codec = 0;
  uint8_t reserved = 0;

  uint64_t offset() const { return uint64_t{offset_blocks} * 4096; }
  uint64_t record_bytes() const { return uint64_t{record_blocks} * 4096; }
};
static_assert(sizeof(Location) == 16);

class ChunkMap {
 public:
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Bytes of memory held.
  size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }

  const Location* Find(uint64_t chunk) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = Hash(chunk) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == kEmpty) return nullptr;
      if (s.key == chunk) return &s.loc;
    }
  }
  bool Contains(uint64_t chunk) const { return Find(chunk) != nullptr; }

  // Inserts or replaces.
  void Put(uint64_t chunk, const Location& loc) {
    if ((size_ + 1) * 10 > slots_.size() * 7) Grow();
    for (size_t i = Hash(chunk) & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key == kEmpty) {
        s = {chunk, loc};
        ++size_;
        return;
      }
      if (s.key == chunk) {
        s.loc = loc;
        return;
      }
    }
  }

  template <typename F>
  void ForEach(F&& f) const {
    for (const Slot& s : slots_)
      if (s.key != kEmpty) f(s.key, s.loc);
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    Location loc;
  };
  static size_t Hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  void Grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    size_ = 0;
    for (const Slot& s : old)
      if (s.key != kEmpty) Put(s.key, s.loc);
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace vss::engine
