#include "volume_state.h"

#include "store_internal.h"
#include "worker_pool.h"

#include <algorithm>
#include <cstring>
#include <set>

namespace vss::engine {
namespace {

// Chunk bytes preserved per diff-area append: bounds the scratch memory.
constexpr size_t kBatchBytes = 8 << 20;

bool IsPersistent(const metadata::ShadowRow& r) {
  return r.persistent;
}

// "write of 4096 bytes at offset 8192", for messages.
std::string ModLabel(ModKind kind, uint64_t offset, uint64_t length) {
  const char* what = kind == ModKind::kWrite    ? "write"
                     : kind == ModKind::kZeroes ? "write of zeroes"
                                                : "discard";
  return std::string(what) + " of " + std::to_string(length) + " bytes at offset " +
         std::to_string(offset);
}

bool RangeUnallocated(const std::vector<Extent>& extents, uint64_t off,
                      uint64_t len) {
  for (const Extent& e : extents) {
    if (e.offset + e.length <= off || e.offset >= off + len) continue;
    if (e.allocated) return false;
  }
  return true;
}

}  // namespace

// Locks the stripes of chunks [first, last] in ascending stripe order.
class VolumeState::StripeGuard {
 public:
  StripeGuard(VolumeState* v, uint64_t first, uint64_t last, bool exclusive)
      : v_(v), exclusive_(exclusive) {
    if (last - first + 1 >= kStripes) {
      for (size_t i = 0; i < kStripes; ++i) held_.push_back(i);
    } else {
      for (uint64_t c = first; c <= last; ++c) held_.push_back(c % kStripes);
      std::sort(held_.begin(), held_.end());
      held_.erase(std::unique(held_.begin(), held_.end()), held_.end());
    }
    for (size_t i : held_) {
      if (exclusive_) v_->stripes_[i].lock();
      else v_->stripes_[i].lock_shared();
    }
  }
  ~StripeGuard() {
    for (auto it = held_.rbegin(); it != held_.rend(); ++it) {
      if (exclusive_) v_->stripes_[*it].unlock();
      else v_->stripes_[*it].unlock_shared();
    }
  }

 private:
  VolumeState* v_;
  bool exclusive_;
  std::vector<size_t> held_;
};

VolumeState::VolumeState(Store* store, const metadata::VolumeRow& row,
                         std::unique_ptr<BlockDevice> image)
    : store_(store), catalog_(&CatalogOf(*store)), row_(row),
      image_(std::move(image)), pending_writes_(row.chunk_size) {}

VolumeState::~VolumeState() {
  {
    std::lock_guard l(defer_mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (applier_.joinable()) applier_.join();
}

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

// Fields read from the catalog or a segment are never trusted: a chunk past
// the end would wrap chunk * chunk_size around 2^64 (and land on another
// chunk's bytes), an offset past 16 TiB would not fit the in-memory
// Location. Returns what is wrong, or "" when the record can be indexed.
std::string VolumeState::CheckRecordFields(uint64_t chunk, uint32_t raw_len, uint64_t offset,
                                           uint32_t stored_len, uint8_t codec) const {
  if (chunk >= chunk_count())
    return "chunk " + std::to_string(chunk) + " is past the end of volume " + row_.name + " (" +
           std::to_string(chunk_count()) + " chunks)";
  if (raw_len != ChunkLen(chunk))
    return "chunk " + std::to_string(chunk) + " has " + std::to_string(raw_len) +
           " bytes, not " + std::to_string(ChunkLen(chunk));
  if (offset % kRecordAlign != 0 || offset / kRecordAlign > UINT32_MAX)
    return "offset " + std::to_string(offset) + " is not a valid record offset";
  if (stored_len > kMaxChunkSize || codec > static_cast<uint8_t>(Codec::kZstd))
    return "stored length " + std::to_string(stored_len) + " or codec " +
           std::to_string(codec) + " is invalid";
  return "";
}

std::string VolumeState::ShadowLabel(const Guid& id) const {
  return "shadow " + id.ToString() + " of volume " + row_.name;
}

// Loads shadows and index rows from the catalog, then indexes the segment
// tails past the catalog's marks.
Status VolumeState::Load() {
  VSS_ASSIGN_OR_RETURN(diff_row_, DiffAreaRowOf(*store_, row_.id));
  VSS_ASSIGN_OR_RETURN(auto shadows, catalog_->ListShadowsOfVolume(row_.id));
  for (const metadata::ShadowRow& s : shadows) {
    shadows_.push_back({s.id, s.epoch, IsPersistent(s)});
    epochs_[s.epoch];
    any_persistent_ |= IsPersistent(s);
  }
  std::sort(shadows_.begin(), shadows_.end(),
            [](const ShadowInfo& a, const ShadowInfo& b) { return a.epoch < b.epoch; });
  VSS_ASSIGN_OR_RETURN(auto rows, catalog_->ListIndexRows(row_.id));
  for (const metadata::IndexRow& r : rows) {
    auto it = epochs_.find(r.epoch);
    if (it == epochs_.end()) continue;  // epoch without shadow: never read
    std::string bad = CheckRecordFields(r.chunk, r.raw_len, r.offset, r.stored_len, r.codec);
    if (bad.empty() && r.record_bytes != RecordBytes(r.stored_len))
      bad = "record length " + std::to_string(r.record_bytes) + " does not match its payload";
    if (!bad.empty())
      return CorruptionError("catalog index row of volume " + row_.name + " (epoch " +
                             std::to_string(r.epoch) + ", segment " + std::to_string(r.segment) +
                             ") is invalid: " + bad);
    Location loc{r.segment, static_cast<uint32_t>(r.offset / kRecordAlign),
                 r.stored_len, static_cast<uint16_t>(r.record_bytes / kRecordAlign),
                 r.codec, 0};
    it->second.Put(r.chunk, loc);
  }
  VSS_ASSIGN_OR_RETURN(auto segs, catalog_->ListSegments(row_.id));
  std::vector<std::string> warnings;
  DiffArea::Options o{store_->fs(), diff_row_.dir, row_.id,
                      store_->options().segment_bytes};
  VSS_ASSIGN_OR_RETURN(diff_, DiffArea::Open(o, segs, &warnings));
  for (const std::string& w : warnings)
    store_->RecordEvent(row_.id, std::nullopt, "diff-area-damaged", w).IgnoreError();
  // A record in a tail has intact checksums and our volume id, but it may
  // still be forged or damaged consistently: one that cannot be a record of
  // this volume is left out of the index and reported as an event.
  uint64_t rejected = 0;
  std::string first_rejected;
  VSS_RETURN_IF_ERROR(diff_->ScanTails([&](const DiffArea::Scanned& s) {
    std::string bad = CheckRecordFields(s.header.chunk, s.header.raw_len, s.offset,
                                        s.header.stored_len,
                                        static_cast<uint8_t>(s.header.codec));
    if (!bad.empty()) {
      if (rejected++ == 0)
        first_rejected = DiffArea::SegmentName(s.segment) + " offset " +
                         std::to_string(s.offset) + ": " + bad;
      return;
    }
    auto it = epochs_.find(s.header.epoch);
    if (it == epochs_.end() || it->second.Contains(s.header.chunk)) return;
    uint64_t bytes = RecordBytes(s.header.stored_len);
    Location loc{s.segment, static_cast<uint32_t>(s.offset / kRecordAlign),
                 s.header.stored_len, static_cast<uint16_t>(bytes / kRecordAlign),
                 static_cast<uint8_t>(s.header.codec), 0};
    it->second.Put(s.header.chunk, loc);
    pending_.push_back({s.header.chunk, s.header.epoch, s.segment, s.offset,
                        static_cast<uint32_t>(bytes), s.header.stored_len,
                        s.header.raw_len, static_cast<uint8_t>(s.header.codec),
                        s.header.payload_hash});
  }));
  if (rejected > 0)
    store_->RecordEvent(row_.id, std::nullopt, "diff-area-damaged",
                        std::to_string(rejected) + " diff-area record(s) of volume " +
                            row_.name + " in " + diff_row_.dir +
                            " ignored as invalid; first: " + first_rejected)
        .IgnoreError();
  RecountLive();
  return FlushIndex();
}

// Finishes what a previous owner left: space to give back, a revert, and
// non-persistent shadows (which do not survive their owner).
Status VolumeState::Recover() {
  std::unique_lock s(structure_mu_);
  VSS_ASSIGN_OR_RETURN(auto free, catalog_->ListFreeRanges(row_.id));
  if (!free.empty()) VSS_RETURN_IF_ERROR(GiveBack(std::move(free)));
  VSS_ASSIGN_OR_RETURN(auto journal, catalog_->FindJournal(row_.id));
  if (journal && journal->op == "revert") {
    std::optional<Guid> target = Guid::Parse(journal->arg);
    auto it = std::find_if(shadows_.begin(), shadows_.end(), [&](const ShadowInfo& i) {
      return target && i.id == *target;
    });
    if (it == shadows_.end()) {
      VSS_RETURN_IF_ERROR(catalog_->ClearJournal(row_.id));
    } else {
      VSS_RETURN_IF_ERROR(RevertWorkLocked(it - shadows_.begin()));
    }
  }
  for (size_t i = shadows_.size(); i-- > 0;) {
    if (shadows_[i].persistent) continue;
    Guid id = shadows_[i].id;
    VSS_RETURN_IF_ERROR(DropShadowsLocked(
        i, i + 1, true, "shadow-removed-at-recovery",
        "non-persistent " + ShadowLabel(id) + " removed: its owner is gone", false));
  }
  // Segments without live records (left by a crash during a deletion).
  uint32_t active = diff_->active_segment();
  for (const metadata::SegmentRow& m : diff_->Marks()) {
    if (m.live_bytes != 0 || m.seq == active) continue;
    VSS_RETURN_IF_ERROR(catalog_->DeleteSegment(row_.id, m.seq));
    VSS_RETURN_IF_ERROR(diff_->RemoveSegment(m.seq));
  }
  return OkStatus();
}

void VolumeState::RecountLive() {
  std::map<uint32_t, uint64_t> live;
  uint64_t used = 0;
  for (const auto& [epoch, map] : epochs_) {
    map.ForEach([&](uint64_t, const Location& loc) {
      live[loc.segment] += loc.record_bytes();
      used += loc.record_bytes();
    });
  }
  diff_->SetLive(live);
  used_bytes_ = used;
}

const Location* VolumeState::LookupLocked(uint64_t epoch, uint64_t chunk) const {
  for (auto it = epochs_.lower_bound(epoch); it != epochs_.end(); ++it) {
    if (const Location* loc = it->second.Find(chunk)) return loc;
  }
  return nullptr;
}

Status VolumeState::ReadChunkRecord(const Location& loc, uint64_t chunk,
                                    std::span<uint8_t> out) {
  Status s = diff_->ReadRecord(loc, chunk, out);
  if (!s.ok()) return s.WithContext("chunk " + std::to_string(chunk));
  return s;
}

// ---------------------------------------------------------------------------
// Writes.

Status VolumeState::Modify(uint64_t offset, uint64_t length, ModKind kind,
                           std::span<const uint8_t> data) {
  if (length == 0) return OkStatus();
  VSS_RETURN_IF_ERROR(WaitForRoom());
  uint64_t first = offset / row_.chunk_size;
  uint64_t last = (offset + length - 1) / row_.chunk_size;
  for (;;) {
    uint64_t generation;
    uint64_t erase_first = 0;  // a pending zeroes/discard to issue first
    {
      std::shared_lock s(structure_mu_);
      VSS_RETURN_IF_ERROR(Sticky());
      generation = generation_.load();
      StripeGuard g(this, first, last, true);
      if (kind == ModKind::kWrite) {
        // The space a pending write reserves must stay reserved until it is
        // issued: an older pending zeroes or discard of the range would give
        // it back when issued, so it goes to the image first.
        std::lock_guard l(defer_mu_);
        erase_first = pending_writes_.EraseOverlapping(offset, length);
      }
      if (erase_first == 0) {
        bool appended = false;
        Status st = shadows_.empty() ? OkStatus() : Preserve(first, last, kind, &appended);
        if (st.ok()) return CompleteLocked(offset, length, kind, data, appended);
        if (st.code() != StatusCode::kNoSpace) return st;
      }
    }
    if (erase_first != 0) {
      VSS_RETURN_IF_ERROR(ApplyPending(erase_first));
      continue;
    }
    // The diff area is full: volume writes never fail for that; the oldest
    // shadow goes instead, then the write is tried again.
    VSS_RETURN_IF_ERROR(EvictOldest(generation));
  }
}

Status VolumeState::CompleteLocked(uint64_t offset, uint64_t length, ModKind kind,
                                   std::span<const uint8_t> data, bool appended) {
  bool pending;
  {
    std::lock_guard l(defer_mu_);
    // While any write is pending, later ones queue behind it, so the image
    // always holds a prefix of the completed writes (a killed process leaves
    // the volume as of one instant).
    pending = !pending_writes_.empty();
  }
  // Rule 1: a record of a persistent shadow that is not known durable (this
  // write's, or one an earlier write appended before it failed half-way)
  // makes the overwrite wait for the applier's sync.
  if (!pending && any_persistent_) pending = appended || diff_->HasUnsynced();
  if (pending && kind == ModKind::kWrite) {
    // Write-behind acknowledges the write before the image has it: reserve
    // its space first, so that issuing it later cannot fail for lack of
    // space (rule 9). A full image fails this write alone.
    Status st = image_->Allocate(offset, length);
    if (!st.ok())
      return st.WithContext("volume " + row_.name + ": " + ModLabel(kind, offset, length));
  }
  if (pending) {
    {
      std::lock_guard l(defer_mu_);
      pending_writes_.Add(offset, length, kind, data);
      pending_count_.store(pending_writes_.count(), std::memory_order_release);
      if (!applier_.joinable()) applier_ = std::thread([this] { ApplierLoop(); });
    }
    work_cv_.notify_one();
  } else {
    // Nothing preserved, or only for non-persistent shadows (which need no
    // sync), or every record durable: overwrite now. A failure (a full
    // image) fails this write only; what it preserved stays right for the
    // shadows, since the chunk's old bytes are what they hold.
    Status st = IssueToImage(offset, length, kind, data);
    if (!st.ok())
      return st.WithContext("volume " + row_.name + ": " + ModLabel(kind, offset, length));
  }
  bool flush;
  {
    std::lock_guard l(index_mu_);
    flush = pending_.size() >= store_->options().index_flush_rows;
  }
  return flush ? FlushIndex() : OkStatus();
}

Status VolumeState::IssueToImage(uint64_t offset, uint64_t length, ModKind kind,
                                 std::span<const uint8_t> data) {
  Status st;
  switch (kind) {
    case ModKind::kWrite: st = image_->Write(offset, data); break;
    case ModKind::kZeroes: st = image_->WriteZeroes(offset, length); break;
    case ModKind::kDiscard: st = image_->Discard(offset, length); break;
  }
  image_dirty_ = true;
  return st;
}

// ---------------------------------------------------------------------------
// Write-behind.

namespace {
// Bytes of write data pending before writers wait for the applier.
constexpr uint64_t kMaxPendingBytes = 64 << 20;
// Pending entries before writers wait: bounds the memory of many small
// writes, zeroes and discards, which carry few or no bytes.
constexpr size_t kMaxPendingEntries = 64 << 10;
}  // namespace

Status VolumeState::Sticky() {
  std::lock_guard l(defer_mu_);
  return sticky_;
}

Status VolumeState::SyncDiffArea() {
  Status s = diff_->Sync();
  if (s.ok()) return s;
  // The index says chunks are preserved by records whose durability is now
  // unknown for good (DiffArea::Sync): no overwrite may rely on them, so the
  // volume fails every write and flush until it is reopened.
  SetSticky(s.WithContext("diff area of volume " + row_.name + " failed; reopen the volume"));
  return Sticky();
}

void VolumeState::SetSticky(Status s) {
  {
    std::lock_guard l(defer_mu_);
    if (sticky_.ok()) sticky_ = std::move(s);
  }
  progress_cv_.notify_all();
}

Status VolumeState::WaitForRoom() {
  std::unique_lock l(defer_mu_);
  progress_cv_.wait(l, [&] {
    return !sticky_.ok() || (pending_writes_.bytes() < kMaxPendingBytes &&
                             pending_writes_.count() < kMaxPendingEntries);
  });
  return sticky_;
}

void VolumeState::ApplierLoop() {
  for (;;) {
    uint64_t upto;
    {
      std::unique_lock l(defer_mu_);
      work_cv_.wait(l, [&] {
        return stop_ || (sticky_.ok() && pending_writes_.last_seq() > applied_seq_);
      });
      if (stop_) return;
      upto = pending_writes_.last_seq();
    }
    ApplyPending(upto).IgnoreError();  // a failure is sticky_, reported by callers
  }
}

Status VolumeState::DrainPending() {
  uint64_t upto;
  {
    std::lock_guard l(defer_mu_);
    if (!sticky_.ok()) return sticky_;
    if (pending_writes_.empty()) return OkStatus();
    upto = pending_writes_.last_seq();
  }
  return ApplyPending(upto);
}

Status VolumeState::ApplyPending(uint64_t upto) {
  std::lock_guard a(apply_mu_);
  uint64_t target;
  {
    std::lock_guard l(defer_mu_);
    if (!sticky_.ok()) return sticky_;
    if (applied_seq_ >= upto || pending_writes_.empty()) return OkStatus();
    target = pending_writes_.last_seq();
  }
  // Rule 1: every write up to `target` was added after the records that
  // preserve its chunks were appended, so this one sync makes all those
  // records durable before any of the writes is issued to the image.
  // A failure is sticky (see SyncDiffArea): none of these writes is issued.
  VSS_RETURN_IF_ERROR(SyncDiffArea());
  for (;;) {
    const PendingWrites::Entry* e;
    {
      std::lock_guard l(defer_mu_);
      e = pending_writes_.Oldest();
      if (!e || e->seq > target) break;
    }
    // Entries are immutable and only this thread (holding apply_mu_) pops.
    {
      StripeGuard g(this, e->first_chunk, e->last_chunk, true);
      Status st = IssueToImage(e->offset, e->length, e->kind, e->data);
      if (!st.ok()) {
        SetSticky(st.WithContext("volume " + row_.name + ": a completed write could not be "
                                 "issued to the image; reopen the volume"));
        return Sticky();
      }
      std::lock_guard l(defer_mu_);
      applied_seq_ = e->seq;
      pending_writes_.Pop();
      pending_count_.store(pending_writes_.count(), std::memory_order_release);
    }
  }
  progress_cv_.notify_all();  // writers waiting for room
  return OkStatus();
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

Status VolumeState::Preserve(uint64_t first, uint64_t last, ModKind kind,
                             bool* appended) {
  const uint64_t epoch = shadows_.back().epoch;
  const uint64_t cs = row_.chunk_size;
  // Chunks to preserve, with whether they hold data (else: a hole).
  std::vector<std::pair<uint64_t, bool>> todo;
  if (kind == ModKind::kWrite) {
    // A write's range is as long as its data: walk its chunks.
    std::vector<uint64_t> need;
    {
      std::lock_guard l(index_mu_);
      const ChunkMap& map = epochs_.at(epoch);
      for (uint64_t c = first; c <= last; ++c)
        if (!map.Contains(c)) need.push_back(c);
    }
    if (need.empty()) return OkStatus();
    uint64_t lo = need.front() * cs;
    uint64_t hi = need.back() * cs + ChunkLen(need.back());
    VSS_ASSIGN_OR_RETURN(std::vector<Extent> extents, image_->Extents(lo, hi - lo));
    for (uint64_t c : need) todo.push_back({c, !RangeUnallocated(extents, c * cs, ChunkLen(c))});
  } else {
    // Zeroing or discarding a hole changes nothing, and a discard may span
    // the whole volume: only the allocated chunks of the range are looked
    // at, so the work follows the data, not the length (rule 8).
    const uint64_t lo = first * cs, hi = last * cs + ChunkLen(last);
    VSS_ASSIGN_OR_RETURN(std::vector<Extent> extents, image_->Extents(lo, hi - lo));
    std::lock_guard l(index_mu_);
    const ChunkMap& map = epochs_.at(epoch);
    for (const Extent& e : extents) {
      if (!e.allocated || e.length == 0) continue;
      uint64_t c = e.offset / cs;
      // An extent may start in the chunk the previous one ended in.
      if (!todo.empty() && todo.back().first >= c) c = todo.back().first + 1;
      for (; c <= (e.offset + e.length - 1) / cs; ++c)
        if (!map.Contains(c)) todo.push_back({c, true});
    }
  }
  const size_t per_batch = std::max<size_t>(1, kBatchBytes / cs);
  const size_t slot = RecordBytes(static_cast<uint32_t>(cs));
  Scratch& scratch = ThreadScratch();
  scratch.Reserve(per_batch * cs, per_batch * slot);
  std::vector<RecordHeader> headers;
  for (size_t begin = 0; begin < todo.size(); begin += per_batch) {
    size_t n = std::min(per_batch, todo.size() - begin);
    for (size_t i = 0; i < n; ++i) {
      auto [c, data] = todo[begin + i];
      if (data)
        VSS_RETURN_IF_ERROR(image_->Read(
            c * cs, std::span(scratch.old_data.get() + i * cs, ChunkLen(c))));
    }
    // Compress the chunks of the batch in parallel, each into its own slot.
    headers.assign(n, RecordHeader{});
    WorkerPool::Get().ParallelFor(n, [&](size_t i) {
      auto [c, data] = todo[begin + i];
      uint8_t* out = scratch.records.get() + i * slot;
      uint8_t* old = scratch.old_data.get() + i * cs;
      if (data) {
        headers[i] = EncodeRecord(row_.id, c, epoch, std::span(old, ChunkLen(c)), out);
      } else {
        headers[i] = {row_.id, c, epoch, static_cast<uint32_t>(ChunkLen(c)), 0, Codec::kZero, 0};
        EncodeHeader(headers[i], out);
        std::memset(out + kRecordHeaderBytes, 0, kRecordAlign - kRecordHeaderBytes);
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
    VSS_RETURN_IF_ERROR(AppendBatch(
        epoch, std::span<const uint8_t>(scratch.records.get(), packed), headers));
    // Set at once: if a later batch fails, the chunks of this one are
    // indexed as preserved by records not yet synced.
    *appended = true;
  }
  // Not synced here: the caller makes the overwrite wait for a sync (rule 1).
  return OkStatus();
}

Status VolumeState::AppendBatch(uint64_t epoch, std::span<const uint8_t> records,
                                const std::vector<RecordHeader>& headers) {
  std::lock_guard a(append_mu_);
  {
    std::lock_guard l(index_mu_);
    if (diff_row_.max_bytes >= 0 &&
        used_bytes_ + records.size() > static_cast<uint64_t>(diff_row_.max_bytes))
      return NoSpaceError("diff area of volume " + row_.name + " is full");
  }
  VSS_ASSIGN_OR_RETURN(auto where, diff_->Append(records));
  std::lock_guard l(index_mu_);
  ChunkMap& map = epochs_.at(epoch);
  uint64_t at = where.second;
  for (const RecordHeader& h : headers) {
    uint64_t bytes = RecordBytes(h.stored_len);
    Location loc{where.first, static_cast<uint32_t>(at / kRecordAlign), h.stored_len,
                 static_cast<uint16_t>(bytes / kRecordAlign),
                 static_cast<uint8_t>(h.codec), 0};
    map.Put(h.chunk, loc);
    pending_.push_back({h.chunk, epoch, where.first, at, static_cast<uint32_t>(bytes),
                        h.stored_len, h.raw_len, static_cast<uint8_t>(h.codec),
                        h.payload_hash});
    at += bytes;
  }
  used_bytes_ += records.size();
  return OkStatus();
}

Status VolumeState::EvictOldest(uint64_t generation) {
  std::unique_lock s(structure_mu_);
  if (generation_.load() != generation || shadows_.empty()) return OkStatus();
  VSS_RETURN_IF_ERROR(DrainPending());
  std::string max = diff_row_.max_bytes < 0 ? "unbounded"
                                            : std::to_string(diff_row_.max_bytes) + " bytes";
  return DropShadowsLocked(
      0, 1, true, "shadow-deleted-diff-area-full",
      ShadowLabel(shadows_[0].id) + " deleted: diff area full (" +
          std::to_string(used_bytes_) + " bytes used, maximum " + max + ")",
      false);
}

Status VolumeState::ReadLive(uint64_t offset, std::span<uint8_t> buf) {
  std::shared_lock s(structure_mu_);
  // No pending write: the image has every completed write. (One that is
  // added meanwhile is concurrent with this read, which may miss it.)
  if (buf.empty() || pending_count_.load(std::memory_order_acquire) == 0)
    return image_->Read(offset, buf);
  // The stripes keep the applier from moving a write from pending_writes_
  // to the image between the image read and the overlay.
  StripeGuard g(this, offset / row_.chunk_size, (offset + buf.size() - 1) / row_.chunk_size,
                false);
  VSS_RETURN_IF_ERROR(image_->Read(offset, buf));
  std::lock_guard l(defer_mu_);
  pending_writes_.Overlay(offset, buf);
  return OkStatus();
}

StatusOr<std::vector<Extent>> VolumeState::LiveExtents(uint64_t offset,
                                                       uint64_t length) {
  // Allocation is the image's: issue the pending writes first.
  VSS_RETURN_IF_ERROR(DrainPending());
  std::shared_lock s(structure_mu_);
  return image_->Extents(offset, length);
}

Status VolumeState::Flush() {
  VSS_RETURN_IF_ERROR(DrainPending());
  {
    std::shared_lock s(structure_mu_);
    VSS_RETURN_IF_ERROR(Sticky());
    VSS_RETURN_IF_ERROR(FlushImageIfDirty());
  }
  return FlushIndex();
}

Status VolumeState::Close() {
  if (!store_->options().flush_on_close) return OkStatus();
  return Flush();
}

Status VolumeState::FlushIndex() {
  std::lock_guard f(flush_mu_);
  std::vector<metadata::IndexRow> rows;
  std::vector<metadata::SegmentRow> marks;
  uint64_t used;
  {
    std::lock_guard a(append_mu_);
    std::lock_guard l(index_mu_);
    if (pending_.empty()) return OkStatus();
    rows.swap(pending_);
    marks = diff_->Marks();
    used = used_bytes_;
  }
  // The records must be durable before the catalog says they exist. This
  // may be the first sync to see a failure: it is sticky then, as it is for
  // the applier, so no overwrite relies on these records.
  Status s = SyncDiffArea();
  if (s.ok()) {
    StatusOr<metadata::Transaction> tx = catalog_->Begin();
    s = tx.status();
    if (s.ok()) s = catalog_->InsertIndexRows(row_.id, rows);
    for (const metadata::SegmentRow& m : marks)
      if (s.ok()) s = catalog_->UpsertSegment(row_.id, m);
    metadata::DiffAreaRow d = diff_row_;
    d.used_bytes = used;
    if (s.ok()) s = catalog_->UpsertDiffArea(d);
    if (s.ok()) s = tx->Commit();
  }
  if (!s.ok()) {
    std::lock_guard l(index_mu_);
    pending_.insert(pending_.begin(), rows.begin(), rows.end());
  }
  return s;
}

// ---------------------------------------------------------------------------
// Shadow reads.

std::optional<VolumeState::ShadowInfo> VolumeState::FindShadow(const Guid& id) {
  std::lock_guard l(index_mu_);
  for (const ShadowInfo& s : shadows_)
    if (s.id == id) return s;
  return std::nullopt;
}

Status VolumeState::ReadShadow(const Guid& shadow, std::span<uint8_t> buf,
                               uint64_t offset) {
  if (buf.empty()) return OkStatus();
  std::shared_lock s(structure_mu_);
  auto it = std::find_if(shadows_.begin(), shadows_.end(),
                         [&](const ShadowInfo& i) { return i.id == shadow; });
  if (it == shadows_.end()) return NotFoundError(ShadowLabel(shadow) + " was deleted");
  const uint64_t epoch = it->epoch, cs = row_.chunk_size;
  uint64_t first = offset / cs, last = (offset + buf.size() - 1) / cs;
  StripeGuard g(this, first, last, false);
  std::vector<std::optional<Location>> locs;
  {
    std::lock_guard l(index_mu_);
    for (uint64_t c = first; c <= last; ++c) {
      const Location* loc = LookupLocked(epoch, c);
      locs.push_back(loc ? std::optional<Location>(*loc) : std::nullopt);
    }
  }
  uint64_t end = offset + buf.size();
  std::vector<uint64_t> preserved;  // chunks read from records
  for (uint64_t c = first; c <= last;) {
    if (locs[c - first]) {
      preserved.push_back(c++);
      continue;
    }
    // Unchanged since the shadow: one image read per run of chunks.
    uint64_t run_end = c;
    while (run_end + 1 <= last && !locs[run_end + 1 - first]) ++run_end;
    uint64_t from = std::max(offset, c * cs), to = std::min(end, (run_end + 1) * cs);
    VSS_RETURN_IF_ERROR(image_->Read(from, buf.subspan(from - offset, to - from)));
    c = run_end + 1;
  }
  // Records decode in parallel, whole chunks straight into the caller's
  // buffer; a chunk cut by the range goes through a temporary.
  std::vector<Status> results(preserved.size());
  WorkerPool::Get().ParallelFor(preserved.size(), [&](size_t i) {
    uint64_t c = preserved[i], len = ChunkLen(c);
    uint64_t from = std::max(offset, c * cs), to = std::min(end, c * cs + len);
    if (from == c * cs && to == c * cs + len) {
      results[i] = ReadChunkRecord(*locs[c - first], c, buf.subspan(from - offset, len));
      return;
    }
    std::vector<uint8_t> chunk(len);
    results[i] = ReadChunkRecord(*locs[c - first], c, chunk);
    if (results[i].ok())
      std::memcpy(buf.data() + (from - offset), chunk.data() + (from - c * cs), to - from);
  });
  for (const Status& st : results)
    if (!st.ok()) return IoError(ShadowLabel(shadow) + ": " + st.message());
  return OkStatus();
}

StatusOr<std::vector<Extent>> VolumeState::ShadowExtents(const Guid& shadow,
                                                         uint64_t offset,
                                                         uint64_t length) {
  std::shared_lock s(structure_mu_);
  auto it = std::find_if(shadows_.begin(), shadows_.end(),
                         [&](const ShadowInfo& i) { return i.id == shadow; });
  if (it == shadows_.end()) return NotFoundError(ShadowLabel(shadow) + " was deleted");
  VSS_ASSIGN_OR_RETURN(std::vector<Extent> live, image_->Extents(offset, length));
  // Preserved chunks in range: allocated unless they are zero records.
  // Found by probing each chunk of the range or by walking the index,
  // whichever is smaller, so the cost is bounded by both.
  std::map<uint64_t, bool> preserved;  // chunk -> allocated
  if (length > 0) {
    const uint64_t first = offset / row_.chunk_size;
    const uint64_t last = (offset + length - 1) / row_.chunk_size;
    const uint8_t zero = static_cast<uint8_t>(Codec::kZero);
    std::lock_guard l(index_mu_);
    uint64_t indexed = 0;
    for (auto e = epochs_.lower_bound(it->epoch); e != epochs_.end(); ++e)
      indexed += e->second.size();
    if (last - first < indexed) {
      for (uint64_t c = first; c <= last; ++c)
        if (const Location* loc = LookupLocked(it->epoch, c)) preserved[c] = loc->codec != zero;
    } else {
      for (auto e = epochs_.lower_bound(it->epoch); e != epochs_.end(); ++e) {
        e->second.ForEach([&](uint64_t c, const Location&) {
          if (c < first || c > last || preserved.count(c)) return;
          preserved[c] = LookupLocked(it->epoch, c)->codec != zero;
        });
      }
    }
  }
  // Overlay: split live extents at preserved chunks.
  std::vector<Extent> out;
  auto push = [&](uint64_t off, uint64_t len, bool alloc) {
    if (len == 0) return;
    if (!out.empty() && out.back().allocated == alloc &&
        out.back().offset + out.back().length == off)
      out.back().length += len;
    else
      out.push_back({off, len, alloc});
  };
  auto pit = preserved.begin();
  for (const Extent& e : live) {
    uint64_t pos = e.offset, stop = e.offset + e.length;
    while (pos < stop) {
      while (pit != preserved.end() &&
             pit->first * row_.chunk_size + ChunkLen(pit->first) <= pos)
        ++pit;
      if (pit == preserved.end() || pit->first * row_.chunk_size >= stop) {
        push(pos, stop - pos, e.allocated);
        break;
      }
      uint64_t cstart = pit->first * row_.chunk_size;
      uint64_t cend = cstart + ChunkLen(pit->first);
      if (cstart > pos) {
        push(pos, cstart - pos, e.allocated);
        pos = cstart;
      }
      uint64_t to = std::min(stop, cend);
      push(pos, to - pos, pit->second);
      pos = to;
    }
  }
  return out;
}

std::vector<uint64_t> VolumeState::ChunksOfEpochs(uint64_t from, uint64_t to) {
  std::vector<uint64_t> chunks;
  std::lock_guard l(index_mu_);
  for (auto e = epochs_.lower_bound(from); e != epochs_.end() && e->first < to; ++e)
    e->second.ForEach([&](uint64_t c, const Location&) { chunks.push_back(c); });
  std::sort(chunks.begin(), chunks.end());
  chunks.erase(std::unique(chunks.begin(), chunks.end()), chunks.end());
  return chunks;
}

StatusOr<std::vector<ChangedExtent>> VolumeState::ChangedExtents(
    const Guid& from, std::optional<Guid> to) {
  std::shared_lock s(structure_mu_);
  auto find = [&](const Guid& id) -> const ShadowInfo* {
    for (const ShadowInfo& i : shadows_)
      if (i.id == id) return &i;
    return nullptr;
  };
  const ShadowInfo* a = find(from);
  if (!a) return NotFoundError("shadow " + from.ToString() + " is not a shadow of volume " + row_.name);
  uint64_t end_epoch = UINT64_MAX;
  if (to) {
    const ShadowInfo* b = find(*to);
    if (!b) return NotFoundError("shadow " + to->ToString() + " is not a shadow of volume " + row_.name);
    if (b->epoch < a->epoch)
      return InvalidArgumentError("shadow " + to->ToString() + " is older than shadow " +
                                  from.ToString());
    end_epoch = b->epoch;
  }
  std::vector<ChangedExtent> out;
  for (uint64_t c : ChunksOfEpochs(a->epoch, end_epoch)) {
    uint64_t off = c * row_.chunk_size, len = ChunkLen(c);
    if (!out.empty() && out.back().offset + out.back().length == off)
      out.back().length += len;
    else
      out.push_back({off, len});
  }
  return out;
}

StatusOr<VerifyReport> VolumeState::Verify(const Guid& id) {
  std::shared_lock s(structure_mu_);
  std::optional<ShadowInfo> info = FindShadow(id);
  if (!info) return NotFoundError(ShadowLabel(id) + " does not exist");
  return CheckRecordsLocked(*info, /*stop_at_first_error=*/false);
}

VerifyReport VolumeState::CheckRecordsLocked(const ShadowInfo& info,
                                             bool stop_at_first_error) {
  VerifyReport report;
  std::vector<uint8_t> chunk;
  for (uint64_t c : ChunksOfEpochs(info.epoch, UINT64_MAX)) {
    Location loc;
    {
      std::lock_guard l(index_mu_);
      loc = *LookupLocked(info.epoch, c);
    }
    chunk.resize(ChunkLen(c));
    ++report.records_checked;
    report.bytes_checked += chunk.size();
    Status st = ReadChunkRecord(loc, c, chunk);
    if (st.ok()) continue;
    report.errors.push_back(ShadowLabel(info.id) + ": " + st.message());
    if (stop_at_first_error) break;
  }
  return report;
}

VolumeStats VolumeState::Stats() {
  VolumeStats st;
  {
    std::lock_guard l(index_mu_);
    for (const auto& [e, map] : epochs_) {
      st.preserved_chunks += map.size();
      st.index_memory_bytes += map.memory_bytes();
    }
    st.diff_used_bytes = used_bytes_;
  }
  {
    std::lock_guard l(defer_mu_);
    st.pending_writes = pending_writes_.count();
    st.pending_memory_bytes = pending_writes_.memory_bytes();
  }
  st.diff_allocated_bytes = diff_->AllocatedBytes();
  st.segments = static_cast<uint32_t>(diff_->segments().size());
  return st;
}

}  // namespace vss::engine
