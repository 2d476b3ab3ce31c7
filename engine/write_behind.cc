#include "write_behind.h"

#include <utility>

namespace vss::engine {

std::string ModLabel(ModKind kind, uint64_t offset, uint64_t length) {
  const char* what = kind == ModKind::kWrite    ? "write"
                     : kind == ModKind::kZeroes ? "write of zeroes"
                                                : "discard";
  return std::string(what) + " of " + std::to_string(length) +
         " bytes at offset " + std::to_string(offset);
}

WriteBehind::WriteBehind(std::string volume, uint32_t chunk_size,
                         BlockDevice* image, Hooks hooks)
    : volume_(std::move(volume)),
      image_(image),
      hooks_(std::move(hooks)),
      queue_(chunk_size) {}

WriteBehind::~WriteBehind() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (applier_.joinable()) applier_.join();
}

Status WriteBehind::Sticky() {
  std::lock_guard l(mu_);
  return sticky_;
}

void WriteBehind::Fail(Status s) {
  {
    std::lock_guard l(mu_);
    if (sticky_.ok()) sticky_ = std::move(s);
  }
  progress_cv_.notify_all();
}

Status WriteBehind::WaitForRoom() {
  std::unique_lock l(mu_);
  progress_cv_.wait(l, [&] {
    return !sticky_.ok() || (queue_.bytes() < kMaxPendingBytes &&
                             queue_.count() < kMaxPendingEntries);
  });
  return sticky_;
}

bool WriteBehind::empty() {
  std::lock_guard l(mu_);
  return queue_.empty();
}

uint64_t WriteBehind::EraseOverlapping(uint64_t offset, uint64_t length) {
  std::lock_guard l(mu_);
  return queue_.EraseOverlapping(offset, length);
}

Status WriteBehind::Enqueue(uint64_t offset, uint64_t length, ModKind kind,
                            std::span<const uint8_t> data) {
  if (kind == ModKind::kWrite) {
    // The write is acknowledged before the image has it: reserve its space
    // first, so that issuing it later cannot fail for lack of space.
    Status st = image_->Allocate(offset, length);
    if (!st.ok())
      return st.WithContext("volume " + volume_ + ": " +
                            ModLabel(kind, offset, length));
  }
  {
    std::lock_guard l(mu_);
    queue_.Add(offset, length, kind, data);
    count_.store(queue_.count(), std::memory_order_release);
    if (!applier_.joinable()) applier_ = std::thread([this] { ApplierLoop(); });
  }
  work_cv_.notify_one();
  return OkStatus();
}

void WriteBehind::Overlay(uint64_t offset, std::span<uint8_t> buf) {
  std::lock_guard l(mu_);
  queue_.Overlay(offset, buf);
}

void WriteBehind::ApplierLoop() {
  for (;;) {
    uint64_t upto;
    {
      std::unique_lock l(mu_);
      work_cv_.wait(l, [&] {
        return stop_ || (sticky_.ok() && queue_.last_seq() > applied_seq_);
      });
      if (stop_) return;
      upto = queue_.last_seq();
    }
    ApplyUpTo(upto).IgnoreError();  // a failure is sticky_, seen by callers
  }
}

Status WriteBehind::Drain() {
  uint64_t upto;
  {
    std::lock_guard l(mu_);
    if (!sticky_.ok()) return sticky_;
    if (queue_.empty()) return OkStatus();
    upto = queue_.last_seq();
  }
  return ApplyUpTo(upto);
}

Status WriteBehind::ApplyUpTo(uint64_t upto) {
  std::lock_guard a(apply_mu_);
  uint64_t target;
  {
    std::lock_guard l(mu_);
    if (!sticky_.ok()) return sticky_;
    if (applied_seq_ >= upto || queue_.empty()) return OkStatus();
    target = queue_.last_seq();
  }
  // Rule 1: every write up to `target` was queued after the records that
  // preserve its chunks were appended, so this one sync makes all those
  // records durable before any of the writes is issued to the image. A
  // failure is sticky: none of these writes is issued.
  if (Status s = hooks_.sync(); !s.ok()) {
    Fail(std::move(s));
    return Sticky();
  }
  for (;;) {
    const PendingWrites::Entry* e;
    {
      std::lock_guard l(mu_);
      e = queue_.Oldest();
      if (!e || e->seq > target) break;
    }
    // Entries are immutable and only this thread (holding apply_mu_) pops.
    if (Status st = hooks_.issue(*e); !st.ok()) {
      Fail(st.WithContext("volume " + volume_ +
                          ": a completed write could not be issued to the "
                          "image; reopen the volume"));
      return Sticky();
    }
    std::lock_guard l(mu_);
    applied_seq_ = e->seq;
    queue_.Pop();
    count_.store(queue_.count(), std::memory_order_release);
  }
  progress_cv_.notify_all();  // writers waiting for room
  return OkStatus();
}

WriteBehind::Stats WriteBehind::stats() {
  std::lock_guard l(mu_);
  return {queue_.count(), queue_.memory_bytes()};
}

}  // namespace vss::engine
