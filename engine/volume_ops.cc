// VolumeState's structural operations: shadow commit, delete with merge,
// revert, diff-area limits, giving space back. Each runs with writes held
// (structure_mu_ exclusive) and changes the catalog in one transaction, so a
// crash leaves either the old or the new state; work that follows the
// commit (hole punching) is recorded in the same transaction and replayed on
// the next open.
#include <algorithm>
#include <tuple>

#include "volume_state.h"

namespace vss::engine {

namespace {

// Sorts ranges and joins adjacent ones.
std::vector<metadata::FreeRange> MergeRanges(std::vector<metadata::FreeRange> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](const auto& a, const auto& b) {
    return std::tie(a.segment, a.offset) < std::tie(b.segment, b.offset);
  });
  std::vector<metadata::FreeRange> merged;
  for (const metadata::FreeRange& r : ranges) {
    if (!merged.empty() && merged.back().segment == r.segment &&
        merged.back().offset + merged.back().length == r.offset)
      merged.back().length += r.length;
    else
      merged.push_back(r);
  }
  return merged;
}

}  // namespace

Status VolumeState::FlushImageIfDirty() {
  if (!image_dirty_.exchange(false)) return OkStatus();
  Status s = image_->Flush();
  if (!s.ok()) image_dirty_ = true;
  return s;
}

Status VolumeState::FlushForCommit() {
  // The shadow will read unchanged chunks from the image: everything
  // written before the instant must be in it and on the medium first.
  VSS_RETURN_IF_ERROR(DrainPending());
  VSS_RETURN_IF_ERROR(FlushImageIfDirty());
  return SyncDiffArea();
}

void VolumeState::AddShadowLocked(const metadata::ShadowRow& row) {
  std::lock_guard l(index_mu_);
  shadows_.push_back({row.id, row.epoch, row.persistent});
  epochs_[row.epoch];
  any_persistent_ |= row.persistent;
  row_.next_epoch = row.epoch + 1;
  ++generation_;
}

Status VolumeState::DeleteShadow(const Guid& id) {
  std::unique_lock s(structure_mu_);
  // Structural changes see every completed write in the image.
  VSS_RETURN_IF_ERROR(DrainPending());
  auto it = std::find_if(shadows_.begin(), shadows_.end(),
                         [&](const ShadowInfo& i) { return i.id == id; });
  if (it == shadows_.end()) return NotFoundError(ShadowLabel(id) + " does not exist");
  size_t i = it - shadows_.begin();
  return DropShadowsLocked(i, i + 1, true, "", "", false);
}

Status VolumeState::DropShadowsLocked(size_t from, size_t to, bool merge,
                                      const std::string& event_kind,
                                      const std::string& event_message,
                                      bool clear_journal) {
  VSS_RETURN_IF_ERROR(FlushIndex());
  // Records of the dropped epochs that the shadow before `from` still needs
  // move to its epoch (when merging a single shadow); the rest are freed.
  std::optional<uint64_t> prev;
  if (merge && from > 0) prev = shadows_[from - 1].epoch;
  std::vector<std::pair<uint64_t, Location>> moves;
  std::vector<metadata::FreeRange> freed;
  {
    std::lock_guard l(index_mu_);
    for (size_t i = from; i < to; ++i) {
      epochs_.at(shadows_[i].epoch).ForEach([&](uint64_t c, const Location& loc) {
        if (prev && to == from + 1 && !epochs_.at(*prev).Contains(c))
          moves.push_back({c, loc});
        else
          freed.push_back({loc.segment, loc.offset(), loc.record_bytes()});
      });
    }
  }
  StatusOr<metadata::Transaction> tx = catalog_->Begin();
  VSS_RETURN_IF_ERROR(tx.status());
  for (const auto& [c, loc] : moves)
    VSS_RETURN_IF_ERROR(catalog_->MoveIndexRow(row_.id, shadows_[from].epoch, c, *prev));
  for (size_t i = from; i < to; ++i) {
    VSS_RETURN_IF_ERROR(catalog_->DeleteIndexRowsOfEpoch(row_.id, shadows_[i].epoch));
    VSS_RETURN_IF_ERROR(catalog_->DeleteShadow(shadows_[i].id));
  }
  freed = MergeRanges(std::move(freed));
  VSS_RETURN_IF_ERROR(catalog_->InsertFreeRanges(row_.id, freed));
  if (!event_kind.empty()) {
    metadata::EventRow e;
    e.time = metadata::NowVssTimestamp();
    e.volume_id = row_.id;
    e.shadow_id = shadows_[from].id;
    e.kind = event_kind;
    e.message = event_message;
    VSS_RETURN_IF_ERROR(catalog_->InsertEvent(e));
  }
  if (clear_journal) VSS_RETURN_IF_ERROR(catalog_->ClearJournal(row_.id));
  VSS_RETURN_IF_ERROR(tx->Commit());

  {
    std::lock_guard l(index_mu_);
    for (const auto& [c, loc] : moves) epochs_.at(*prev).Put(c, loc);
    for (size_t i = from; i < to; ++i) epochs_.erase(shadows_[i].epoch);
    shadows_.erase(shadows_.begin() + from, shadows_.begin() + to);
    any_persistent_ = std::any_of(shadows_.begin(), shadows_.end(),
                                  [](const ShadowInfo& s) { return s.persistent; });
    RecountLive();
    ++generation_;
  }
  return GiveBack(std::move(freed));
}

Status VolumeState::GiveBack(std::vector<metadata::FreeRange> ranges) {
  for (const metadata::FreeRange& r : MergeRanges(std::move(ranges)))
    VSS_RETURN_IF_ERROR(diff_->PunchHole(r.segment, r.offset, r.length));
  // The holes are durable before the catalog forgets the ranges.
  VSS_RETURN_IF_ERROR(SyncDiffArea());
  // Whole segments without live records go (never the active one). The
  // catalog forgets a segment before its file is removed, so a crash in
  // between leaves a file that the next open rescans and removes.
  uint32_t active = diff_->active_segment();
  for (const metadata::SegmentRow& m : diff_->Marks()) {
    if (m.live_bytes != 0 || m.seq == active) continue;
    VSS_RETURN_IF_ERROR(catalog_->DeleteSegment(row_.id, m.seq));
    VSS_RETURN_IF_ERROR(diff_->RemoveSegment(m.seq));
  }
  VSS_RETURN_IF_ERROR(catalog_->ClearFreeRanges(row_.id));
  // Usage figures for `storage list` (recomputed from the index on open).
  StatusOr<metadata::Transaction> tx = catalog_->Begin();
  VSS_RETURN_IF_ERROR(tx.status());
  for (const metadata::SegmentRow& m : diff_->Marks())
    VSS_RETURN_IF_ERROR(catalog_->UpsertSegment(row_.id, m));
  metadata::DiffAreaRow d = diff_row_;
  {
    std::lock_guard l(index_mu_);
    d.used_bytes = used_bytes_;
  }
  VSS_RETURN_IF_ERROR(catalog_->UpsertDiffArea(d));
  return tx->Commit();
}

Status VolumeState::Revert(const Guid& id) {
  std::unique_lock s(structure_mu_);
  VSS_RETURN_IF_ERROR(DrainPending());
  VSS_RETURN_IF_ERROR(Sticky());
  auto it = std::find_if(shadows_.begin(), shadows_.end(),
                         [&](const ShadowInfo& i) { return i.id == id; });
  if (it == shadows_.end()) return NotFoundError(ShadowLabel(id) + " does not exist");
  size_t index = it - shadows_.begin();
  VSS_RETURN_IF_ERROR(FlushIndex());
  // Every record the revert needs must read back intact before the volume
  // is touched: a revert that started must be able to finish.
  VerifyReport check = CheckRecordsLocked(*it, /*stop_at_first_error=*/true);
  if (!check.errors.empty()) return IoError("cannot revert to " + check.errors.front());
  VSS_RETURN_IF_ERROR(catalog_->PutJournal({row_.id, "revert", id.ToString()}));
  return RevertWorkLocked(index);
}

// Writes shadow `index`'s view of every chunk changed since it back to the
// image, makes it durable, then drops the shadow and all newer ones. Safe to
// run again after a crash: the records stay until the final transaction.
// Older shadows stay exact: where they have no record of their own for a
// chunk, they read the image, which now holds the same bytes as before.
Status VolumeState::RevertWorkLocked(size_t index) {
  const uint64_t epoch = shadows_[index].epoch;
  const Guid id = shadows_[index].id;
  std::vector<uint8_t> chunk;
  for (uint64_t c : ChunksOfEpochs(epoch, UINT64_MAX)) {
    Location loc;
    {
      std::lock_guard l(index_mu_);
      loc = *LookupLocked(epoch, c);
    }
    uint64_t off = c * row_.chunk_size, len = ChunkLen(c);
    if (loc.codec == static_cast<uint8_t>(Codec::kZero)) {
      VSS_RETURN_IF_ERROR(image_->WriteZeroes(off, len));
      continue;
    }
    chunk.resize(len);
    Status st = ReadChunkRecord(loc, c, chunk);
    if (!st.ok()) return IoError("revert to " + ShadowLabel(id) + ": " + st.message());
    VSS_RETURN_IF_ERROR(image_->Write(off, chunk));
  }
  // The image must hold the shadow's bytes before the records go.
  image_dirty_ = true;
  VSS_RETURN_IF_ERROR(FlushImageIfDirty());
  return DropShadowsLocked(index, shadows_.size(), false, "volume-reverted",
                           "volume " + row_.name + " reverted to shadow " + id.ToString(),
                           true);
}

Status VolumeState::SetMaxBytes(int64_t max_bytes) {
  std::unique_lock s(structure_mu_);
  VSS_RETURN_IF_ERROR(DrainPending());
  diff_row_.max_bytes = max_bytes;
  metadata::DiffAreaRow d = diff_row_;
  d.used_bytes = used_bytes_;
  VSS_RETURN_IF_ERROR(catalog_->UpsertDiffArea(d));
  // Shrinking below the used space deletes the oldest shadows.
  while (max_bytes >= 0 && used_bytes_ > static_cast<uint64_t>(max_bytes) &&
         !shadows_.empty()) {
    VSS_RETURN_IF_ERROR(DropShadowsLocked(
        0, 1, true, "shadow-deleted-diff-area-resized",
        ShadowLabel(shadows_[0].id) + " deleted: diff area resized to " +
            std::to_string(max_bytes) + " bytes",
        false));
  }
  return OkStatus();
}

}  // namespace vss::engine
