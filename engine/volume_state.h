// VolumeState: the private state and algorithms behind engine::Volume:
// copy-on-write, the in-memory index, shadow reads, delete with merge,
// revert, recovery. See DESIGN.md (Data flow, Rules) for the model.
//
// Epochs: every shadow of the volume owns one epoch (its number, increasing
// with time). epochs_[e] maps chunk -> record preserving the chunk as it was
// when shadow e was taken, for chunks first modified while e was the newest
// shadow (or handed over to e when a newer shadow was deleted). Shadow k
// reads chunk c from the first epoch >= k that has c, else from the image.
//
// Locks, in the order they are taken:
//   structure_mu_  shared by reads and writes; exclusive for shadow create,
//                  delete, revert and eviction ("writes held"). shadows_ and
//                  the set of keys of epochs_ change only under it exclusive.
//   stripes_       per-chunk (chunk % kStripes): exclusive for a write that
//                  preserves and overwrites the chunk, shared for a shadow
//                  read of it, so a shadow read never sees a half-preserved
//                  chunk.
//   apply_mu_      one thread at a time syncs the diff area for pending
//                  writes and issues them to the image (the applier, or a
//                  caller draining them). Taken before stripes.
//   flush_mu_      one index flush at a time.
//   append_mu_     appends to the diff area.
//   index_mu_      contents of the ChunkMaps, pending_.
//   defer_mu_      pending_writes_, applier state, sticky_. Taken after
//                  stripes, never together with index_mu_.
//
// Write-behind: a write that had to preserve chunks while a persistent
// shadow exists completes once its records are appended (not yet synced);
// it is kept in pending_writes_ (reads see it) and the applier thread syncs
// the diff area once for every write pending at that moment and then issues
// them to the image, oldest first. So the sync that rule 1 requires before
// each overwrite is shared by all writes in flight, and it is not on the
// write's own path. Flush(), a shadow-set commit and every structural
// operation drain the pending writes first.
//
// An acknowledged write is never dropped (rule 9): before a write is made
// pending, its image range is allocated (BlockDevice::Allocate), so issuing
// it cannot fail for lack of space; a full image fails that write alone
// with kNoSpace. An older pending zeroes or discard over the range would
// give the space back when issued, so it is issued first. What can still
// fail later (a medium error, a diff-area sync) makes the volume fail every
// write and flush until it is reopened (sticky_): a failed diff-area sync in
// particular is permanent, whoever sees it first.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "chunk_map.h"
#include "diff_area.h"
#include "pending_writes.h"
#include "vss/formats/block_device.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/metadata/catalog.h"

namespace vss::engine {

// A shared mutex that does not let a stream of shared holders starve an
// exclusive one: an exclusive locker closes the gate first, so shared lockers
// arriving after it wait until it is done.
class FairSharedMutex {
 public:
  void lock() {
    std::lock_guard g(gate_);
    mu_.lock();
  }
  void unlock() { mu_.unlock(); }
  void lock_shared() {
    { std::lock_guard g(gate_); }
    mu_.lock_shared();
  }
  void unlock_shared() { mu_.unlock_shared(); }

 private:
  std::mutex gate_;
  std::shared_mutex mu_;
};

class VolumeState {
 public:
  struct ShadowInfo {
    Guid id;
    uint64_t epoch = 0;
    bool persistent = true;
  };

  // Loads the index, indexes segment tails, finishes an interrupted revert
  // and removes non-persistent shadows of a previous owner.
  static StatusOr<std::unique_ptr<VolumeState>> Open(
      Store* store, const metadata::VolumeRow& row,
      std::unique_ptr<BlockDevice> image);
  ~VolumeState();

  const metadata::VolumeRow& row() const { return row_; }
  uint32_t chunk_size() const { return row_.chunk_size; }
  uint64_t size() const { return row_.size; }

  // Live volume I/O (Volume's Do* hooks).
  using ModKind = engine::ModKind;
  // Completes when the image holds the modification or it is pending (see
  // write-behind above); either way later reads see it.
  Status Modify(uint64_t offset, uint64_t length, ModKind kind,
                std::span<const uint8_t> data);
  Status ReadLive(uint64_t offset, std::span<uint8_t> buf);
  StatusOr<std::vector<Extent>> LiveExtents(uint64_t offset, uint64_t length);
  // Issues every pending write, syncs the image and the diff area and writes
  // the index to the catalog.
  Status Flush();
  // Flush on close unless crash-testing (then pending writes are dropped,
  // as a crash would); releases nothing else.
  Status Close();

  // Shadow reads (ShadowDevice).
  Status ReadShadow(const Guid& shadow, std::span<uint8_t> buf, uint64_t offset);
  StatusOr<std::vector<Extent>> ShadowExtents(const Guid& shadow,
                                              uint64_t offset, uint64_t length);
  std::optional<ShadowInfo> FindShadow(const Guid& id);

  // Structural operations (Store). Hold / Release bracket a shadow-set commit.
  void HoldWrites() { structure_mu_.lock(); }
  void ReleaseWrites() { structure_mu_.unlock(); }
  // REQUIRES: writes held. Makes the image and diff area durable.
  Status FlushForCommit();
  // REQUIRES: writes held; the shadow row is committed.
  void AddShadowLocked(const metadata::ShadowRow& row);
  Status DeleteShadow(const Guid& id);
  Status Revert(const Guid& id);
  Status SetMaxBytes(int64_t max_bytes);

  StatusOr<std::vector<ChangedExtent>> ChangedExtents(const Guid& from,
                                                      std::optional<Guid> to);
  StatusOr<VerifyReport> Verify(const Guid& id);
  VolumeStats Stats();

 private:
  static constexpr size_t kStripes = 256;
  class StripeGuard;

  VolumeState(Store* store, const metadata::VolumeRow& row,
              std::unique_ptr<BlockDevice> image);
  Status Load();
  Status Recover();

  uint64_t chunk_count() const;
  // Bytes of chunk `chunk`. REQUIRES: chunk < chunk_count().
  uint64_t ChunkLen(uint64_t chunk) const;
  // What makes a record read from disk unusable for this volume, or "".
  std::string CheckRecordFields(uint64_t chunk, uint32_t raw_len, uint64_t offset,
                                uint32_t stored_len, uint8_t codec) const;
  // Preserves the chunks of [first, last] not yet preserved in the newest
  // epoch by appending records (not synced); sets *appended when it
  // appended any, also when it then fails part-way (the records appended
  // so far are indexed). kNoSpace when the diff area is full. Zeroes and
  // discards look only at the allocated chunks of the range. REQUIRES:
  // structure shared, stripes of the range exclusive, shadows_ not empty.
  Status Preserve(uint64_t first, uint64_t last, ModKind kind, bool* appended);
  // Finishes a modification whose chunks are preserved: queues it behind
  // the pending writes (reserving its image space first) or issues it now.
  // kNoSpace naming the volume when the image is full; this write fails
  // and the volume stays usable. REQUIRES: structure shared, stripes of the
  // range exclusive.
  Status CompleteLocked(uint64_t offset, uint64_t length, ModKind kind,
                        std::span<const uint8_t> data, bool appended);
  // Issues a modification to the image. REQUIRES: stripes exclusive.
  Status IssueToImage(uint64_t offset, uint64_t length, ModKind kind,
                      std::span<const uint8_t> data);

  // Write-behind. WaitForRoom blocks a writer while the pending writes hold
  // more than kMaxPendingBytes (before any lock is taken). ApplyPending
  // syncs the diff area and issues every pending write up to at least
  // sequence `upto`; DrainPending does it for all writes pending now.
  // Both return sticky_ when the volume has failed.
  Status WaitForRoom();
  Status ApplyPending(uint64_t upto);
  Status DrainPending();
  void ApplierLoop();
  Status Sticky();
  void SetSticky(Status s);
  // diff_->Sync(); a failure sets the sticky failure (a diff-area sync
  // failure is permanent for the open volume) and is returned.
  Status SyncDiffArea();
  // Appends packed records and indexes them; kNoSpace past the maximum.
  Status AppendBatch(uint64_t epoch, std::span<const uint8_t> records,
                     const std::vector<RecordHeader>& headers);
  // Deletes the oldest shadow if the structure is still at `generation`.
  Status EvictOldest(uint64_t generation);

  // fdatasync of the image, skipped when nothing was written since the
  // last one (a clean fdatasync still costs a device cache flush).
  Status FlushImageIfDirty();
  // Writes pending index rows to the catalog after syncing the diff area.
  Status FlushIndex();
  // REQUIRES: structure exclusive. Drops shadows_[from..to) with their
  // epochs (merging records the shadow before `from` still needs when
  // `merge`), in one catalog transaction, then gives space back.
  Status DropShadowsLocked(size_t from, size_t to, bool merge,
                           const std::string& event_kind,
                           const std::string& event_message,
                           bool clear_journal);
  Status RevertWorkLocked(size_t index);
  // Reads and checks every record shadow `info` depends on.
  // REQUIRES: structure_mu_ held (either mode).
  VerifyReport CheckRecordsLocked(const ShadowInfo& info, bool stop_at_first_error);
  Status GiveBack(std::vector<metadata::FreeRange> ranges);
  void RecountLive();

  // The record shadow epoch `epoch` reads chunk `chunk` from, if any.
  // REQUIRES: index_mu_ held.
  const Location* LookupLocked(uint64_t epoch, uint64_t chunk) const;
  Status ReadChunkRecord(const Location& loc, uint64_t chunk,
                         std::span<uint8_t> out);
  std::vector<uint64_t> ChunksOfEpochs(uint64_t from_epoch,
                                       uint64_t to_epoch);  // [from, to)
  std::string ShadowLabel(const Guid& id) const;

  Store* store_;
  metadata::Catalog* catalog_;
  metadata::VolumeRow row_;
  std::unique_ptr<BlockDevice> image_;
  std::unique_ptr<DiffArea> diff_;
  metadata::DiffAreaRow diff_row_;

  FairSharedMutex structure_mu_;
  std::array<std::shared_mutex, kStripes> stripes_;
  std::mutex flush_mu_;
  std::mutex append_mu_;
  mutable std::mutex index_mu_;

  std::vector<ShadowInfo> shadows_;       // ascending epoch
  std::map<uint64_t, ChunkMap> epochs_;   // one per shadow
  std::vector<metadata::IndexRow> pending_;
  uint64_t used_bytes_ = 0;               // bytes of live records
  std::atomic<uint64_t> generation_{0};   // bumped by structural changes
  bool any_persistent_ = false;
  std::atomic<bool> image_dirty_{true};   // written since the last image flush

  std::mutex apply_mu_;
  std::mutex defer_mu_;
  std::condition_variable work_cv_;       // applier: writes pending, or stop
  std::condition_variable progress_cv_;   // writers and drainers: applied
  PendingWrites pending_writes_;          // guarded by defer_mu_
  std::atomic<size_t> pending_count_{0};  // pending_writes_.count()
  uint64_t applied_seq_ = 0;              // guarded by defer_mu_
  bool stop_ = false;                     // guarded by defer_mu_
  std::thread applier_;                   // started at the first pending write
  Status sticky_;  // guarded by defer_mu_; set when durability is unknown
};

}  // namespace vss::engine
