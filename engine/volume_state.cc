// VolumeState: opening, volume writes with copy-on-write, and live reads.
// The other members are defined by topic in volume_reads.cc, volume_ops.cc,
// volume_flush.cc and volume_recovery.cc (see volume_state.h).
#include "volume_state.h"

#include "store_internal.h"

#include <algorithm>
#include <cstring>

#include "worker_pool.h"

namespace vss::engine {
namespace {

// Chunk bytes preserved per diff-area append: bounds the scratch memory.
constexpr size_t kBatchBytes = 8 << 20;

bool RangeUnallocated(const std::vector<Extent>& extents, uint64_t off,
                      uint64_t len) {
  for (const Extent& e : extents) {
    if (e.offset + e.length <= off || e.offset >= off + len) continue;
    if (e.allocated) return false;
  }
  return true;
}

}  // namespace

VolumeState::VolumeState(Store* store, const metadata::VolumeRow& row,
                         std::unique_ptr<BlockDevice> image)
    : store_(store),
      catalog_(&CatalogOf(*store)),
      row_(row),
      image_(std::move(image)),
      write_behind_(row.name, row.chunk_size, image_.get(),
                    {.sync = [this] { return SyncDiffArea(); },
                     .issue =
                         [this](const PendingWrites::Entry& e) {
                           return IssuePending(e);
                         }}) {}

VolumeState::~VolumeState() = default;

StatusOr<std::unique_ptr<VolumeState>> VolumeState::Open(
    Store* store, const metadata::VolumeRow& row,
    std::unique_ptr<BlockDevice> image) {
  if (image->size() != row.size)
    return FailedPreconditionError(
        "image " + row.path + " is " + std::to_string(image->size()) +
        " bytes but volume " + row.name + " was registered with " +
        std::to_string(row.size));
  std::unique_ptr<VolumeState> v(new VolumeState(store, row, std::move(image)));
  VSS_RETURN_IF_ERROR(v->Load());
  VSS_RETURN_IF_ERROR(v->Recover());
  return v;
}

uint64_t VolumeState::chunk_count() const {
  return row_.size / row_.chunk_size + (row_.size % row_.chunk_size != 0);
}

uint64_t VolumeState::ChunkLen(uint64_t chunk) const {
  uint64_t start = chunk * row_.chunk_size;
  return std::min<uint64_t>(row_.chunk_size, row_.size - start);
}

// ---------------------------------------------------------------------------
// Writes.

Status VolumeState::Modify(uint64_t offset, uint64_t length, ModKind kind,
                           std::span<const uint8_t> data) {
  if (length == 0) return OkStatus();
  VSS_RETURN_IF_ERROR(write_behind_.WaitForRoom());
  uint64_t first = offset / row_.chunk_size;
  uint64_t last = (offset + length - 1) / row_.chunk_size;
  for (;;) {
    uint64_t generation;
    uint64_t erase_first = 0;  // a pending zeroes/discard to issue first
    {
      std::shared_lock s(structure_mu_);
      VSS_RETURN_IF_ERROR(write_behind_.Sticky());
      generation = generation_.load();
      ChunkStripes::Guard g(&stripes_, first, last, true);
      if (kind == ModKind::kWrite) {
        // The space a pending write reserves must stay reserved until it is
        // issued: an older pending zeroes or discard of the range would give
        // it back when issued, so it goes to the image first.
        erase_first = write_behind_.EraseOverlapping(offset, length);
      }
      if (erase_first == 0) {
        bool appended = false;
        Status st = shadows_.empty() ? OkStatus()
                                     : Preserve(first, last, kind, &appended);
        if (st.ok())
          return CompleteLocked(offset, length, kind, data, appended);
        if (st.code() != StatusCode::kNoSpace) return st;
      }
    }
    if (erase_first != 0) {
      VSS_RETURN_IF_ERROR(write_behind_.ApplyUpTo(erase_first));
      continue;
    }
    // The diff area is full: volume writes never fail for that; the oldest
    // shadow goes instead, then the write is tried again.
    VSS_RETURN_IF_ERROR(EvictOldest(generation));
  }
}

Status VolumeState::CompleteLocked(uint64_t offset, uint64_t length,
                                   ModKind kind, std::span<const uint8_t> data,
                                   bool appended) {
  // While any write is pending, later ones queue behind it, so the image
  // always holds a prefix of the completed writes (a killed process leaves
  // the volume as of one instant).
  bool pending = !write_behind_.empty();
  // Rule 1: a record of a persistent shadow that is not known durable (this
  // write's, or one an earlier write appended before it failed half-way)
  // makes the overwrite wait for the applier's sync.
  if (!pending && any_persistent_) pending = appended || diff_->HasUnsynced();
  if (pending) {
    // Write-behind acknowledges the write before the image has it; its
    // space is reserved first (rule 9). A full image fails this write alone.
    VSS_RETURN_IF_ERROR(write_behind_.Enqueue(offset, length, kind, data));
  } else {
    // Nothing preserved, or only for non-persistent shadows (which need no
    // sync), or every record durable: overwrite now. A failure (a full
    // image) fails this write only; what it preserved stays right for the
    // shadows, since the chunk's old bytes are what they hold.
    Status st = IssueToImage(offset, length, kind, data);
    if (!st.ok())
      return st.WithContext("volume " + row_.name + ": " +
                            ModLabel(kind, offset, length));
  }
  bool flush;
  {
    std::lock_guard l(index_mu_);
    flush = pending_rows_.size() >= store_->options().index_flush_rows;
  }
  return flush ? FlushIndex() : OkStatus();
}

Status VolumeState::IssueToImage(uint64_t offset, uint64_t length, ModKind kind,
                                 std::span<const uint8_t> data) {
  Status st;
  switch (kind) {
    case ModKind::kWrite:
      st = image_->Write(offset, data);
      break;
    case ModKind::kZeroes:
      st = image_->WriteZeroes(offset, length);
      break;
    case ModKind::kDiscard:
      st = image_->Discard(offset, length);
      break;
  }
  image_dirty_ = true;
  return st;
}

Status VolumeState::IssuePending(const PendingWrites::Entry& e) {
  ChunkStripes::Guard g(&stripes_, e.first_chunk, e.last_chunk, true);
  return IssueToImage(e.offset, e.length, e.kind, e.data);
}

namespace {

// Per-thread scratch memory that is reused, not zero-filled: a fresh heap
// buffer per write costs a page fault per 4 KiB.
struct Scratch {
  std::unique_ptr<uint8_t[]> old_data, records;
  size_t old_cap = 0, records_cap = 0;
  void Reserve(size_t old_bytes, size_t record_bytes) {
    if (old_cap < old_bytes) {
      old_data.reset(new uint8_t[old_bytes]);
      old_cap = old_bytes;
    }
    if (records_cap < record_bytes) {
      records.reset(new uint8_t[record_bytes]);
      records_cap = record_bytes;
    }
  }
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

}  // namespace

StatusOr<std::vector<std::pair<uint64_t, bool>>> VolumeState::ChunksToPreserve(
    uint64_t epoch, uint64_t first, uint64_t last, ModKind kind) {
  const uint64_t cs = row_.chunk_size;
  std::vector<std::pair<uint64_t, bool>> todo;
  if (kind == ModKind::kWrite) {
    // A write's range is as long as its data: walk its chunks.
    std::vector<uint64_t> need;
    {
      std::lock_guard l(index_mu_);
      for (uint64_t c = first; c <= last; ++c)
        if (!index_.Contains(epoch, c)) need.push_back(c);
    }
    if (need.empty()) return todo;
    uint64_t lo = need.front() * cs;
    uint64_t hi = need.back() * cs + ChunkLen(need.back());
    VSS_ASSIGN_OR_RETURN(std::vector<Extent> extents,
                         image_->Extents(lo, hi - lo));
    for (uint64_t c : need)
      todo.push_back({c, !RangeUnallocated(extents, c * cs, ChunkLen(c))});
    return todo;
  }
  // Zeroing or discarding a hole changes nothing, and a discard may span
  // the whole volume: only the allocated chunks of the range are looked
  // at, so the work follows the data, not the length (rule 8).
  const uint64_t lo = first * cs, hi = last * cs + ChunkLen(last);
  VSS_ASSIGN_OR_RETURN(std::vector<Extent> extents,
                       image_->Extents(lo, hi - lo));
  std::lock_guard l(index_mu_);
  for (const Extent& e : extents) {
    if (!e.allocated || e.length == 0) continue;
    uint64_t c = e.offset / cs;
    // An extent may start in the chunk the previous one ended in.
    if (!todo.empty() && todo.back().first >= c) c = todo.back().first + 1;
    for (; c <= (e.offset + e.length - 1) / cs; ++c)
      if (!index_.Contains(epoch, c)) todo.push_back({c, true});
  }
  return todo;
}

Status VolumeState::Preserve(uint64_t first, uint64_t last, ModKind kind,
                             bool* appended) {
  const uint64_t epoch = shadows_.back().epoch;
  // Chunks to preserve, with whether they hold data (else: a hole).
  VSS_ASSIGN_OR_RETURN(auto todo, ChunksToPreserve(epoch, first, last, kind));
  const size_t per_batch = std::max<size_t>(1, kBatchBytes / row_.chunk_size);
  for (size_t begin = 0; begin < todo.size(); begin += per_batch) {
    size_t n = std::min(per_batch, todo.size() - begin);
    VSS_RETURN_IF_ERROR(
        PreserveBatch(epoch, std::span(todo).subspan(begin, n)));
    // Set at once: if a later batch fails, the chunks of this one are
    // indexed as preserved by records not yet synced.
    *appended = true;
  }
  // Not synced here: the caller makes the overwrite wait for a sync (rule 1).
  return OkStatus();
}

Status VolumeState::PreserveBatch(
    uint64_t epoch, std::span<const std::pair<uint64_t, bool>> todo) {
  const uint64_t cs = row_.chunk_size;
  const size_t n = todo.size();
  const size_t slot = RecordBytes(static_cast<uint32_t>(cs));
  const size_t per_batch = std::max<size_t>(1, kBatchBytes / cs);  // >= n
  Scratch& scratch = ThreadScratch();
  scratch.Reserve(per_batch * cs, per_batch * slot);
  for (size_t i = 0; i < n; ++i) {
    auto [c, data] = todo[i];
    if (data)
      VSS_RETURN_IF_ERROR(image_->Read(
          c * cs, std::span(scratch.old_data.get() + i * cs, ChunkLen(c))));
  }
  // Compress the chunks of the batch in parallel, each into its own slot.
  std::vector<RecordHeader> headers(n);
  WorkerPool::Get().ParallelFor(n, [&](size_t i) {
    auto [c, data] = todo[i];
    uint8_t* out = scratch.records.get() + i * slot;
    uint8_t* old = scratch.old_data.get() + i * cs;
    if (data) {
      headers[i] =
          EncodeRecord(row_.id, c, epoch, std::span(old, ChunkLen(c)), out);
    } else {
      headers[i] = {
          row_.id,      c, epoch, static_cast<uint32_t>(ChunkLen(c)), 0,
          Codec::kZero, 0};
      EncodeHeader(headers[i], out);
      std::memset(out + kRecordHeaderBytes, 0,
                  kRecordAlign - kRecordHeaderBytes);
    }
  });
  // Pack the records end to end.
  size_t packed = 0;
  for (size_t i = 0; i < n; ++i) {
    size_t bytes = RecordBytes(headers[i].stored_len);
    uint8_t* base = scratch.records.get();
    if (packed != i * slot) std::memmove(base + packed, base + i * slot, bytes);
    packed += bytes;
  }
  return AppendBatch(
      epoch, std::span<const uint8_t>(scratch.records.get(), packed), headers);
}

Status VolumeState::AppendBatch(uint64_t epoch,
                                std::span<const uint8_t> records,
                                const std::vector<RecordHeader>& headers) {
  std::lock_guard a(append_mu_);
  {
    std::lock_guard l(index_mu_);
    if (diff_row_.max_bytes >= 0 &&
        index_.live_bytes() + records.size() >
            static_cast<uint64_t>(diff_row_.max_bytes))
      return NoSpaceError("diff area of volume " + row_.name + " is full");
  }
  VSS_ASSIGN_OR_RETURN(auto where, diff_->Append(records));
  std::lock_guard l(index_mu_);
  uint64_t at = where.second;
  for (const RecordHeader& h : headers) {
    const uint8_t codec = static_cast<uint8_t>(h.codec);
    const uint64_t bytes = RecordBytes(h.stored_len);
    index_.Put(epoch, h.chunk,
               MakeLocation(where.first, at, h.stored_len, codec));
    pending_rows_.push_back({h.chunk, epoch, where.first, at,
                             static_cast<uint32_t>(bytes), h.stored_len,
                             h.raw_len, codec, h.payload_hash});
    at += bytes;
  }
  return OkStatus();
}

Status VolumeState::EvictOldest(uint64_t generation) {
  std::unique_lock s(structure_mu_);
  if (generation_.load() != generation || shadows_.empty()) return OkStatus();
  VSS_RETURN_IF_ERROR(write_behind_.Drain());
  std::string max = diff_row_.max_bytes < 0
                        ? "unbounded"
                        : std::to_string(diff_row_.max_bytes) + " bytes";
  return DropShadowsLocked(DropRequest::Oldest(
      "shadow-deleted-diff-area-full",
      ShadowLabel(shadows_[0].id) + " deleted: diff area full (" +
          std::to_string(index_.live_bytes()) + " bytes used, maximum " + max +
          ")"));
}

Status VolumeState::ReadLive(uint64_t offset, std::span<uint8_t> buf) {
  std::shared_lock s(structure_mu_);
  // No pending write: the image has every completed write. (One that is
  // added meanwhile is concurrent with this read, which may miss it.)
  if (buf.empty() || !write_behind_.has_pending())
    return image_->Read(offset, buf);
  // The stripes keep the applier from issuing a queued write to the image
  // between the image read and the overlay.
  ChunkStripes::Guard g(&stripes_, offset / row_.chunk_size,
                        (offset + buf.size() - 1) / row_.chunk_size, false);
  VSS_RETURN_IF_ERROR(image_->Read(offset, buf));
  write_behind_.Overlay(offset, buf);
  return OkStatus();
}

StatusOr<std::vector<Extent>> VolumeState::LiveExtents(uint64_t offset,
                                                       uint64_t length) {
  // Allocation is the image's: issue the pending writes first.
  VSS_RETURN_IF_ERROR(write_behind_.Drain());
  std::shared_lock s(structure_mu_);
  return image_->Extents(offset, length);
}

VolumeStats VolumeState::Stats() {
  VolumeStats st;
  {
    std::lock_guard l(index_mu_);
    st.preserved_chunks = index_.record_count();
    st.index_memory_bytes = index_.memory_bytes();
    st.diff_used_bytes = index_.live_bytes();
  }
  WriteBehind::Stats pending = write_behind_.stats();
  st.pending_writes = pending.count;
  st.pending_memory_bytes = pending.memory_bytes;
  st.diff_allocated_bytes = diff_->AllocatedBytes();
  st.segments = static_cast<uint32_t>(diff_->segments().size());
  return st;
}

}  // namespace vss::engine
