// VolumeState: the private state behind engine::Volume: copy-on-write of
// volume writes into the diff area, shadow reads, structural operations
// (delete with merge, revert, eviction), index flushing and recovery. See
// DESIGN.md (Data flow, Rules) for the model. Its parts, each readable and
// tested alone:
//   ChunkIndex   (chunk_index.h)   epochs, lookup, merge; pure.
//   WriteBehind  (write_behind.h)  the queue of acknowledged writes, its
//                                  applier and barrier, the sticky failure.
//   ChunkStripes (chunk_stripes.h) per-chunk locks.
// Its members are defined by topic: volume_state.cc (open, writes, live
// reads), volume_reads.cc (shadow reads, changed chunks, verification),
// volume_ops.cc (structural operations), volume_flush.cc (flushes and the
// index in the catalog), volume_recovery.cc (loading and recovery).
//
// Locks, in the order they are taken:
//   structure_mu_  shared by reads and writes; exclusive for shadow create,
//                  delete, revert and eviction ("writes held"). shadows_ and
//                  the set of epochs of index_ change only under it
//                  exclusive.
//   WriteBehind's apply mutex: one thread at a time syncs the diff area for
//                  queued writes and issues them. Taken before stripes.
//   stripes_       per chunk: exclusive for a write that preserves and
//                  overwrites the chunk, shared for a shadow read of it.
//   flush_mu_      one index flush at a time.
//   append_mu_     appends to the diff area.
//   index_mu_      the contents of index_, pending_rows_.
//   WriteBehind's queue mutex: taken after stripes, never together with
//                  index_mu_.
//
// Write-behind (write_behind.h): a write that had to preserve chunks while a
// persistent shadow exists completes once its records are appended, and is
// issued to the image after one shared diff-area sync. While any write is
// queued, later ones queue behind it, so the image always holds a prefix of
// the completed writes. An older queued zeroes or discard over a write's
// range would give the write's reserved space back when issued, so it is
// issued first.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "chunk_index.h"
#include "chunk_stripes.h"
#include "diff_area.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/formats/block_device.h"
#include "vss/metadata/catalog.h"
#include "write_behind.h"

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
  Status ReadShadow(const Guid& shadow, std::span<uint8_t> buf,
                    uint64_t offset);
  StatusOr<std::vector<Extent>> ShadowExtents(const Guid& shadow,
                                              uint64_t offset, uint64_t length);
  std::optional<ShadowInfo> FindShadow(const Guid& id);

  // Structural operations (Store; volume_ops.cc). Hold / Release bracket a
  // shadow-set commit.
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
  // A drop of the shadows shadows_[first, end) with their epochs.
  struct DropRequest {
    size_t first = 0;
    size_t end = 0;  // exclusive
    // Hand the records the shadow before `first` still needs over to its
    // epoch (a delete); otherwise free every record of the dropped epochs
    // (a revert, whose image already holds what older shadows read).
    bool merge = true;
    // An event recorded in the same transaction; none when kind is empty.
    std::string event_kind;
    std::string event_message;
    // Clear the volume's journal in the same transaction (a revert ends).
    bool clear_journal = false;

    // The oldest shadow alone, recording event `kind` with `message` (an
    // eviction: the diff area is full or was made smaller).
    static DropRequest Oldest(std::string kind, std::string message) {
      return {.first = 0,
              .end = 1,
              .merge = true,
              .event_kind = std::move(kind),
              .event_message = std::move(message)};
    }
  };

  VolumeState(Store* store, const metadata::VolumeRow& row,
              std::unique_ptr<BlockDevice> image);

  // Recovery (volume_recovery.cc).
  Status Load();
  // Indexes the records of the segment tails past the catalog's marks.
  Status IndexSegmentTails();
  Status Recover();
  void RecountLive();
  // What makes a record read from disk unusable for this volume, or "".
  std::string CheckRecordFields(uint64_t chunk, uint32_t raw_len,
                                uint64_t offset, uint32_t stored_len,
                                uint8_t codec) const;

  uint64_t chunk_count() const;
  // Bytes of chunk `chunk`. REQUIRES: chunk < chunk_count().
  uint64_t ChunkLen(uint64_t chunk) const;

  // Writes (volume_state.cc).
  // The chunks of [first, last] to preserve in `epoch`, each with whether
  // it holds data (else it is a hole). Zeroes and discards look only at the
  // allocated chunks of the range. REQUIRES: as for Preserve.
  StatusOr<std::vector<std::pair<uint64_t, bool>>> ChunksToPreserve(
      uint64_t epoch, uint64_t first, uint64_t last, ModKind kind);
  // Preserves the chunks of [first, last] not yet preserved in the newest
  // epoch by appending records (not synced); sets *appended when it
  // appended any, also when it then fails part-way (the records appended
  // so far are indexed). kNoSpace when the diff area is full. REQUIRES:
  // structure shared, stripes of the range exclusive, shadows_ not empty.
  Status Preserve(uint64_t first, uint64_t last, ModKind kind, bool* appended);
  // Reads, encodes and appends the records of `todo` in `epoch`.
  Status PreserveBatch(uint64_t epoch,
                       std::span<const std::pair<uint64_t, bool>> todo);
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
  // WriteBehind's issue hook: IssueToImage with the entry's stripes held.
  Status IssuePending(const PendingWrites::Entry& e);
  // Appends packed records and indexes them; kNoSpace past the maximum.
  Status AppendBatch(uint64_t epoch, std::span<const uint8_t> records,
                     const std::vector<RecordHeader>& headers);
  // Deletes the oldest shadow if the structure is still at `generation`.
  Status EvictOldest(uint64_t generation);

  // Flushing (volume_flush.cc).
  // diff_->Sync(); a failure becomes the sticky failure (a diff-area sync
  // failure is permanent for the open volume) and is returned.
  Status SyncDiffArea();
  // fdatasync of the image, skipped when nothing was written since the
  // last one (a clean fdatasync still costs a device cache flush).
  Status FlushImageIfDirty();
  // Writes pending index rows to the catalog after syncing the diff area.
  Status FlushIndex();
  // Writes the rows, marks and usage figure in one catalog transaction.
  Status CommitIndexRows(const std::vector<metadata::IndexRow>& rows,
                         const std::vector<metadata::SegmentRow>& marks,
                         uint64_t used);

  // Structural operations (volume_ops.cc). REQUIRES: structure exclusive.
  // Drops the shadows of `req` with their epochs in one catalog
  // transaction, then gives space back.
  Status DropShadowsLocked(const DropRequest& req);
  // The catalog side of a drop, in one transaction.
  Status CommitDrop(const DropRequest& req, const ChunkIndex::DropPlan& plan,
                    const std::vector<metadata::FreeRange>& freed);
  Status RevertWorkLocked(size_t index);
  Status GiveBack(std::vector<metadata::FreeRange> ranges);
  // Removes the segments without live records (never the active one). The
  // catalog forgets a segment before its file is removed, so a crash in
  // between leaves a file that the next open rescans and removes.
  Status RemoveEmptySegments();
  // Index of shadow `id` in shadows_, or nullopt.
  std::optional<size_t> ShadowIndex(const Guid& id) const;

  // Shadow reads (volume_reads.cc).
  // Reads and checks every record shadow `info` depends on.
  // REQUIRES: structure_mu_ held (either mode).
  VerifyReport CheckRecordsLocked(const ShadowInfo& info,
                                  bool stop_at_first_error);
  // The records of the preserved chunks of [first, last] that shadow epoch
  // `epoch` reads, chunk -> allocated (false for zero records).
  std::map<uint64_t, bool> PreservedChunks(uint64_t epoch, uint64_t first,
                                           uint64_t last);
  // The record shadow epoch `epoch` reads `chunk` from. REQUIRES: it has one.
  Location LookupRecord(uint64_t epoch, uint64_t chunk);
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
  ChunkStripes stripes_;
  std::mutex flush_mu_;
  std::mutex append_mu_;
  mutable std::mutex index_mu_;

  std::vector<ShadowInfo> shadows_;               // ascending epoch
  ChunkIndex index_;                              // one epoch per shadow
  std::vector<metadata::IndexRow> pending_rows_;  // not yet in the catalog
  std::atomic<uint64_t> generation_{0};  // bumped by structural changes
  bool any_persistent_ = false;
  std::atomic<bool> image_dirty_{true};  // written since the last image flush

  // Last: its applier thread calls back into the members above, so it is
  // stopped before they are destroyed.
  WriteBehind write_behind_;
};

}  // namespace vss::engine
