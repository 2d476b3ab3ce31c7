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
std::vector<metadata::FreeRange> MergeRanges(
    std::vector<metadata::FreeRange> ranges) {
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

std::optional<size_t> VolumeState::ShadowIndex(const Guid& id) const {
  for (size_t i = 0; i < shadows_.size(); ++i)
    if (shadows_[i].id == id) return i;
  return std::nullopt;
}

void VolumeState::AddShadowLocked(const metadata::ShadowRow& row) {
  std::lock_guard l(index_mu_);
  shadows_.push_back({row.id, row.epoch, row.persistent});
  index_.AddEpoch(row.epoch);
  any_persistent_ |= row.persistent;
  row_.next_epoch = row.epoch + 1;
  ++generation_;
}

Status VolumeState::DeleteShadow(const Guid& id) {
  std::unique_lock s(structure_mu_);
  // Structural changes see every completed write in the image.
  VSS_RETURN_IF_ERROR(write_behind_.Drain());
  std::optional<size_t> i = ShadowIndex(id);
  if (!i) return NotFoundError(ShadowLabel(id) + " does not exist");
  return DropShadowsLocked({.first = *i, .end = *i + 1, .merge = true});
}

Status VolumeState::DropShadowsLocked(const DropRequest& req) {
  VSS_RETURN_IF_ERROR(FlushIndex());
  const uint64_t first_epoch = shadows_[req.first].epoch;
  const uint64_t end_epoch =
      req.end < shadows_.size() ? shadows_[req.end].epoch : UINT64_MAX;
  ChunkIndex::DropPlan plan;
  {
    std::lock_guard l(index_mu_);
    plan = index_.PlanDrop(first_epoch, end_epoch, req.merge);
  }
  std::vector<metadata::FreeRange> freed;
  for (const Location& loc : plan.freed)
    freed.push_back({loc.segment, loc.offset(), loc.record_bytes()});
  freed = MergeRanges(std::move(freed));
  VSS_RETURN_IF_ERROR(CommitDrop(req, plan, freed));
  {
    std::lock_guard l(index_mu_);
    index_.ApplyDrop(plan);
    shadows_.erase(shadows_.begin() + req.first, shadows_.begin() + req.end);
    any_persistent_ =
        std::any_of(shadows_.begin(), shadows_.end(),
                    [](const ShadowInfo& s) { return s.persistent; });
    RecountLive();
    ++generation_;
  }
  return GiveBack(std::move(freed));
}

Status VolumeState::CommitDrop(const DropRequest& req,
                               const ChunkIndex::DropPlan& plan,
                               const std::vector<metadata::FreeRange>& freed) {
  StatusOr<metadata::Transaction> tx = catalog_->Begin();
  VSS_RETURN_IF_ERROR(tx.status());
  for (const ChunkIndex::DropPlan::Move& m : plan.moves)
    VSS_RETURN_IF_ERROR(catalog_->MoveIndexRow(row_.id, m.from_epoch, m.chunk,
                                               *plan.merge_into));
  for (size_t i = req.first; i < req.end; ++i) {
    VSS_RETURN_IF_ERROR(
        catalog_->DeleteIndexRowsOfEpoch(row_.id, shadows_[i].epoch));
    VSS_RETURN_IF_ERROR(catalog_->DeleteShadow(shadows_[i].id));
  }
  VSS_RETURN_IF_ERROR(catalog_->InsertFreeRanges(row_.id, freed));
  if (!req.event_kind.empty()) {
    metadata::EventRow e;
    e.time = metadata::NowVssTimestamp();
    e.volume_id = row_.id;
    e.shadow_id = shadows_[req.first].id;
    e.kind = req.event_kind;
    e.message = req.event_message;
    VSS_RETURN_IF_ERROR(catalog_->InsertEvent(e));
  }
  if (req.clear_journal) VSS_RETURN_IF_ERROR(catalog_->ClearJournal(row_.id));
  return tx->Commit();
}

Status VolumeState::GiveBack(std::vector<metadata::FreeRange> ranges) {
  for (const metadata::FreeRange& r : MergeRanges(std::move(ranges)))
    VSS_RETURN_IF_ERROR(diff_->PunchHole(r.segment, r.offset, r.length));
  // The holes are durable before the catalog forgets the ranges.
  VSS_RETURN_IF_ERROR(SyncDiffArea());
  VSS_RETURN_IF_ERROR(RemoveEmptySegments());
  VSS_RETURN_IF_ERROR(catalog_->ClearFreeRanges(row_.id));
  // Usage figures for `storage list` (recomputed from the index on open).
  StatusOr<metadata::Transaction> tx = catalog_->Begin();
  VSS_RETURN_IF_ERROR(tx.status());
  for (const metadata::SegmentRow& m : diff_->Marks())
    VSS_RETURN_IF_ERROR(catalog_->UpsertSegment(row_.id, m));
  metadata::DiffAreaRow d = diff_row_;
  {
    std::lock_guard l(index_mu_);
    d.used_bytes = index_.live_bytes();
  }
  VSS_RETURN_IF_ERROR(catalog_->UpsertDiffArea(d));
  return tx->Commit();
}

Status VolumeState::RemoveEmptySegments() {
  uint32_t active = diff_->active_segment();
  for (const metadata::SegmentRow& m : diff_->Marks()) {
    if (m.live_bytes != 0 || m.seq == active) continue;
    VSS_RETURN_IF_ERROR(catalog_->DeleteSegment(row_.id, m.seq));
    VSS_RETURN_IF_ERROR(diff_->RemoveSegment(m.seq));
  }
  return OkStatus();
}

Status VolumeState::Revert(const Guid& id) {
  std::unique_lock s(structure_mu_);
  VSS_RETURN_IF_ERROR(write_behind_.Drain());
  VSS_RETURN_IF_ERROR(write_behind_.Sticky());
  std::optional<size_t> index = ShadowIndex(id);
  if (!index) return NotFoundError(ShadowLabel(id) + " does not exist");
  VSS_RETURN_IF_ERROR(FlushIndex());
  // Every record the revert needs must read back intact before the volume
  // is touched: a revert that started must be able to finish.
  VerifyReport check =
      CheckRecordsLocked(shadows_[*index], /*stop_at_first_error=*/true);
  if (!check.errors.empty())
    return IoError("cannot revert to " + check.errors.front());
  VSS_RETURN_IF_ERROR(catalog_->PutJournal({row_.id, "revert", id.ToString()}));
  return RevertWorkLocked(*index);
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
    Location loc = LookupRecord(epoch, c);
    uint64_t off = c * row_.chunk_size, len = ChunkLen(c);
    if (loc.codec == static_cast<uint8_t>(Codec::kZero)) {
      VSS_RETURN_IF_ERROR(image_->WriteZeroes(off, len));
      continue;
    }
    chunk.resize(len);
    Status st = ReadChunkRecord(loc, c, chunk);
    if (!st.ok())
      return IoError("revert to " + ShadowLabel(id) + ": " + st.message());
    VSS_RETURN_IF_ERROR(image_->Write(off, chunk));
  }
  // The image must hold the shadow's bytes before the records go.
  image_dirty_ = true;
  VSS_RETURN_IF_ERROR(FlushImageIfDirty());
  return DropShadowsLocked(
      {.first = index,
       .end = shadows_.size(),
       .merge = false,
       .event_kind = "volume-reverted",
       .event_message =
           "volume " + row_.name + " reverted to shadow " + id.ToString(),
       .clear_journal = true});
}

Status VolumeState::SetMaxBytes(int64_t max_bytes) {
  std::unique_lock s(structure_mu_);
  VSS_RETURN_IF_ERROR(write_behind_.Drain());
  diff_row_.max_bytes = max_bytes;
  metadata::DiffAreaRow d = diff_row_;
  d.used_bytes = index_.live_bytes();
  VSS_RETURN_IF_ERROR(catalog_->UpsertDiffArea(d));
  // Shrinking below the used space deletes the oldest shadows.
  while (max_bytes >= 0 &&
         index_.live_bytes() > static_cast<uint64_t>(max_bytes) &&
         !shadows_.empty()) {
    VSS_RETURN_IF_ERROR(DropShadowsLocked(DropRequest::Oldest(
        "shadow-deleted-diff-area-resized",
        ShadowLabel(shadows_[0].id) + " deleted: diff area resized to " +
            std::to_string(max_bytes) + " bytes")));
  }
  return OkStatus();
}

}  // namespace vss::engine
