// WriteBehind: the queue of volume writes that completed for their caller
// but are not yet issued to the image, the background applier that issues
// them, the barrier that waits for them, and the volume's sticky failure.
//
// A write that had to preserve chunks while a persistent shadow exists
// completes once its records are appended to the diff area (not yet
// synced); VolumeState then Enqueue()s it (reads see it through Overlay()).
// The applier thread syncs the diff area once for every write queued at
// that moment (Hooks::sync) and then issues them to the image oldest first
// (Hooks::issue). So the sync that rule 1 requires before each overwrite is
// shared by all writes in flight and is not on the write's own path.
// Drain() is the barrier: it returns once every write queued before it is
// on the image; Flush(), a shadow-set commit and every structural operation
// of the volume drain first.
//
// An acknowledged write is never dropped (rule 9): Enqueue() reserves the
// image range of a write (BlockDevice::Allocate) before queueing it, so
// issuing it cannot fail for lack of space; a full image fails that write
// alone with kNoSpace. What can still fail later (a medium error, a
// diff-area sync) is sticky: the volume fails every write and flush until
// it is reopened, whoever sees the failure first.
//
// Locks, in the order they are taken:
//   apply_mu_  one thread at a time syncs and issues queued writes (the
//              applier, or a caller draining). Held while Hooks::issue
//              takes the chunk stripes.
//   mu_        the queue, applied_seq_, stop_ and sticky_. Never held while
//              a hook runs; the owner may hold its chunk stripes when it
//              calls in (stripes before mu_).
// The queue's entries are immutable and only the holder of apply_mu_ pops
// them, so it reads the oldest entries without mu_.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "pending_writes.h"
#include "vss/base/status.h"
#include "vss/formats/block_device.h"

namespace vss::engine {

// "write of 4096 bytes at offset 8192", for messages.
std::string ModLabel(ModKind kind, uint64_t offset, uint64_t length);

class WriteBehind {
 public:
  // Queue limits: Enqueue'd data bytes and entries above which WaitForRoom
  // blocks writers until the applier catches up.
  static constexpr uint64_t kMaxPendingBytes = 64 << 20;
  static constexpr size_t kMaxPendingEntries = 64 << 10;

  // What the owner does for the applier. Both are called with apply_mu_
  // held, from the applier thread or a draining caller, never with mu_.
  struct Hooks {
    // Makes every diff-area record appended so far durable. A failure
    // becomes the sticky failure; no queued write is issued.
    std::function<Status()> sync;
    // Issues one queued write to the image, with its chunks locked against
    // readers. A failure becomes the sticky failure.
    std::function<Status(const PendingWrites::Entry&)> issue;
  };

  // `volume` names the volume in messages; `image` (not owned, outliving
  // this) is where Enqueue reserves space.
  WriteBehind(std::string volume, uint32_t chunk_size, BlockDevice* image,
              Hooks hooks);
  // Stops the applier; writes still queued are dropped, as a crash would.
  ~WriteBehind();
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;

  // Blocks while the queue is over its limits; returns the sticky failure
  // (at once, when there is one). Call holding no lock.
  Status WaitForRoom();
  // The sticky failure, OK while the volume works.
  Status Sticky();
  // Makes `s` (not OK) the sticky failure unless there is one already, and
  // wakes every waiter.
  void Fail(Status s);

  // Whether writes are queued; a lock-free hint for the read fast path (a
  // write queued meanwhile is concurrent with that read).
  bool has_pending() const {
    return count_.load(std::memory_order_acquire) != 0;
  }
  // Whether the queue is empty, under the queue mutex.
  bool empty();
  // PendingWrites::EraseOverlapping under the queue mutex: the sequence
  // number to apply up to before a write of the range may be queued, or 0.
  uint64_t EraseOverlapping(uint64_t offset, uint64_t length);
  // Queues a modification (length > 0; `data` its bytes for kWrite) and
  // starts the applier. For a write, first reserves its image range: when
  // that fails (kNoSpace on a full image) nothing is queued and the error
  // names the volume and the write; the volume stays usable.
  Status Enqueue(uint64_t offset, uint64_t length, ModKind kind,
                 std::span<const uint8_t> data);
  // Copies into `buf` (the image's bytes at `offset`) what queued writes put
  // there. The caller holds the range's stripes shared, so the applier does
  // not move a write from the queue to the image during the read.
  void Overlay(uint64_t offset, std::span<uint8_t> buf);

  // Syncs and issues queued writes up to at least sequence number `upto`.
  // Returns the sticky failure if there is one or this sets it.
  Status ApplyUpTo(uint64_t upto);
  // The barrier: issues every write queued now; OK once they are all on
  // the image (not yet flushed to its medium). Returns the sticky failure.
  Status Drain();

  struct Stats {
    size_t count = 0;           // queued writes
    uint64_t memory_bytes = 0;  // heap memory the queue holds
  };
  Stats stats();

 private:
  void ApplierLoop();

  const std::string volume_;
  BlockDevice* const image_;
  const Hooks hooks_;

  std::mutex apply_mu_;
  std::mutex mu_;
  std::condition_variable work_cv_;      // applier: writes queued, or stop
  std::condition_variable progress_cv_;  // writers and drainers: applied
  PendingWrites queue_;                  // guarded by mu_
  std::atomic<size_t> count_{0};         // queue_.count()
  uint64_t applied_seq_ = 0;             // guarded by mu_
  bool stop_ = false;                    // guarded by mu_
  Status sticky_;                        // guarded by mu_
  std::thread applier_;                  // started by the first Enqueue
};

}  // namespace vss::engine
