// ChunkStripes: per-chunk reader/writer locks, striped (chunk % kStripes)
// so that memory does not grow with the volume.
//
// VolumeState holds a chunk's stripe exclusively while it preserves and
// overwrites the chunk (a volume write, or the applier issuing a pending
// write), and shared while it reads the chunk for a shadow or overlays
// pending writes on a live read, so that no read sees a half-preserved
// chunk or a write between the image and the pending queue.
//
// Lock order: stripes are taken in ascending stripe order (Guard does it),
// after VolumeState's structure mutex and WriteBehind's apply mutex, and
// before any other mutex of VolumeState or WriteBehind.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <shared_mutex>
#include <vector>

namespace vss::engine {

class ChunkStripes {
 public:
  static constexpr size_t kStripes = 256;

  // Holds the stripes of chunks [first, last] (first <= last) for its
  // lifetime, exclusively or shared.
  class Guard {
   public:
    Guard(ChunkStripes* s, uint64_t first, uint64_t last, bool exclusive)
        : s_(s), exclusive_(exclusive) {
      if (last - first + 1 >= kStripes) {
        for (size_t i = 0; i < kStripes; ++i) held_.push_back(i);
      } else {
        for (uint64_t c = first; c <= last; ++c) held_.push_back(c % kStripes);
        std::sort(held_.begin(), held_.end());
        held_.erase(std::unique(held_.begin(), held_.end()), held_.end());
      }
      for (size_t i : held_) {
        if (exclusive_)
          s_->mu_[i].lock();
        else
          s_->mu_[i].lock_shared();
      }
    }
    ~Guard() {
      for (auto it = held_.rbegin(); it != held_.rend(); ++it) {
        if (exclusive_)
          s_->mu_[*it].unlock();
        else
          s_->mu_[*it].unlock_shared();
      }
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    ChunkStripes* s_;
    bool exclusive_;
    std::vector<size_t> held_;
  };

 private:
  std::array<std::shared_mutex, kStripes> mu_;
};

}  // namespace vss::engine
