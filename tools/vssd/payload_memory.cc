#include "payload_memory.h"

#include <algorithm>

namespace vss::vssd {
namespace {

// Kept buffers: at most this many, none larger than kKeepMaxBytes.
constexpr size_t kKeepBuffers = 64;
constexpr size_t kKeepMaxBytes = 4u << 20;

}  // namespace

PayloadMemory::Buffer PayloadMemory::Take(size_t n, const std::atomic<bool>& cancel) {
  if (n == 0) n = 1;
  std::unique_lock l(mu_);
  int ticket;  // its address identifies this waiter in queue_
  queue_.push_back(&ticket);
  cv_.wait(l, [&] {
    return cancel.load() || (queue_.front() == &ticket && in_use_ + n <= limit_);
  });
  queue_.remove(&ticket);
  if (cancel.load()) {
    cv_.notify_all();  // the next in line may be able to go now
    return {};
  }
  // The smallest kept buffer that holds n bytes and is not much larger
  // (a large one would charge the cap for bytes nobody uses).
  Buffer b;
  size_t best = pool_.size();
  for (size_t i = 0; i < pool_.size(); ++i) {
    size_t c = pool_[i].capacity;
    if (c < n || c > 2 * n || in_use_ + c > limit_) continue;
    if (best == pool_.size() || c < pool_[best].capacity) best = i;
  }
  if (best < pool_.size()) {
    b = std::move(pool_[best]);
    pool_[best] = std::move(pool_.back());
    pool_.pop_back();
    kept_ -= b.capacity;
    in_use_ += b.capacity;
  } else {
    in_use_ += n;
    TrimLocked();  // room for the new buffer before it is allocated
    b.bytes.reset(new uint8_t[n]);
    b.capacity = n;
  }
  peak_ = std::max(peak_, in_use_ + kept_);
  cv_.notify_all();  // the next in line
  return b;
}

void PayloadMemory::Give(Buffer b) {
  if (!b.bytes) return;
  std::lock_guard l(mu_);
  in_use_ -= b.capacity;
  if (b.capacity <= kKeepMaxBytes && pool_.size() < kKeepBuffers) {
    kept_ += b.capacity;
    pool_.push_back(std::move(b));
  }
  cv_.notify_all();
}

void PayloadMemory::Wake() {
  std::lock_guard l(mu_);
  cv_.notify_all();
}

void PayloadMemory::TrimLocked() {
  // Oldest first: the front of the pool was kept longest.
  size_t i = 0;
  while (in_use_ + kept_ > limit_ && i < pool_.size()) {
    kept_ -= pool_[i].capacity;
    pool_[i].bytes.reset();
    ++i;
  }
  pool_.erase(pool_.begin(), pool_.begin() + static_cast<ptrdiff_t>(i));
}

uint64_t PayloadMemory::held() const {
  std::lock_guard l(mu_);
  return in_use_ + kept_;
}

uint64_t PayloadMemory::peak() const {
  std::lock_guard l(mu_);
  return peak_;
}

}  // namespace vss::vssd
