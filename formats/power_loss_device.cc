#include "vss/formats/power_loss_device.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "extent_builder.h"

namespace vss {
namespace {

constexpr uint64_t kSector = 512;

enum class Fate { kKeep, kDrop, kTear };

// The length of a torn write's surviving prefix: a random 512-aligned
// boundary strictly inside [offset, offset+length), or 0 (dropped) if the
// range holds no such boundary.
uint64_t TornLength(uint64_t offset, uint64_t length, std::mt19937_64& rng) {
  uint64_t first = (offset / kSector + 1) * kSector;
  uint64_t end = offset + length;
  if (first >= end) return 0;
  uint64_t boundaries = (end - 1 - first) / kSector + 1;
  return first + (rng() % boundaries) * kSector - offset;
}

}  // namespace

size_t PowerLossDevice::pending() {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

// Applies the first `length` bytes of a pending operation to the target.
Status PowerLossDevice::ApplyLocked(const Pending& p, uint64_t length) {
  if (length == 0) return Status();
  if (!p.zero) {
    return target()->Write(p.offset, std::span(p.data.data(), length));
  }
  if (p.discard) return target()->Discard(p.offset, length);
  return target()->WriteZeroes(p.offset, length);
}

// Reads the target, then replays the pending operations over the buffer in
// order, so the last one wins as in a page cache.
Status PowerLossDevice::DoRead(uint64_t offset, std::span<uint8_t> buf) {
  std::lock_guard<std::mutex> lock(mu_);
  VSS_RETURN_IF_ERROR(target()->Read(offset, buf));
  const uint64_t end = offset + buf.size();
  for (const Pending& p : pending_) {
    uint64_t begin = std::max(offset, p.offset);
    uint64_t stop = std::min(end, p.offset + p.length);
    if (begin >= stop) continue;
    uint8_t* dst = buf.data() + (begin - offset);
    if (p.zero) {
      std::memset(dst, 0, stop - begin);
    } else {
      std::memcpy(dst, p.data.data() + (begin - p.offset), stop - begin);
    }
  }
  return Status();
}

Status PowerLossDevice::DoWrite(uint64_t offset, std::span<const uint8_t> buf) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_.push_back(Pending{offset, buf.size(),
                             std::vector<uint8_t>(buf.begin(), buf.end()),
                             /*zero=*/false, /*discard=*/false});
  return Status();
}

Status PowerLossDevice::DoWriteZeroes(uint64_t offset, uint64_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_.push_back(Pending{offset, length, {}, true, false});
  return Status();
}

Status PowerLossDevice::DoDiscard(uint64_t offset, uint64_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_.push_back(Pending{offset, length, {}, true, true});
  return Status();
}

// Durability order: every pending operation reaches the target in the order
// it was issued, then the target's flush makes them durable. On a failure
// the operations not yet applied stay pending.
Status PowerLossDevice::DoFlush() {
  std::lock_guard<std::mutex> lock(mu_);
  size_t applied = 0;
  Status status;
  for (; applied < pending_.size(); ++applied) {
    status = ApplyLocked(pending_[applied], pending_[applied].length);
    if (!status.ok()) break;
  }
  pending_.erase(pending_.begin(), pending_.begin() + applied);
  VSS_RETURN_IF_ERROR(status);
  return target()->Flush();
}

// Conservative: ranges touched by pending operations are reported allocated
// (the contract allows reporting a hole as allocated), merged with the
// target's own extents.
StatusOr<std::vector<Extent>> PowerLossDevice::DoExtents(uint64_t offset,
                                                         uint64_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  VSS_ASSIGN_OR_RETURN(std::vector<Extent> target_extents,
                       target()->Extents(offset, length));
  std::vector<Range> allocated;
  for (const Extent& e : target_extents) {
    if (e.allocated) allocated.push_back({e.offset, e.offset + e.length});
  }
  for (const Pending& p : pending_) {
    allocated.push_back({p.offset, p.offset + p.length});
  }
  return ExtentsFromAllocated(offset, length, std::move(allocated));
}

// Each pending operation reaches the target whole, not at all, or (kRandom)
// as a 512-aligned prefix; the survivors are then flushed. Errors from the
// target are ignored: a power cut has no one to report them to.
void PowerLossDevice::PowerLoss(PowerLossMode mode, uint64_t seed) {
  std::lock_guard<std::mutex> lock(mu_);
  std::mt19937_64 rng(seed);
  bool any = false;
  for (const Pending& p : pending_) {
    if (mode == PowerLossMode::kDropAll) break;
    auto fate = static_cast<Fate>(rng() % 3);
    uint64_t keep = fate == Fate::kKeep   ? p.length
                    : fate == Fate::kDrop ? 0
                                          : TornLength(p.offset, p.length, rng);
    ApplyLocked(p, keep).IgnoreError();
    any = any || keep > 0;
  }
  pending_.clear();
  if (any) target()->Flush().IgnoreError();
}

}  // namespace vss
