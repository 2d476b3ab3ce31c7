// VolumeState's flushes: the diff area, the image, and the index rows that
// tell the catalog which records exist. A record is durable before the
// catalog names it, and a failed diff-area sync is sticky (rule 1).
#include "volume_state.h"

namespace vss::engine {

Status VolumeState::SyncDiffArea() {
  Status s = diff_->Sync();
  if (s.ok()) return s;
  // The index says chunks are preserved by records whose durability is now
  // unknown for good (DiffArea::Sync): no overwrite may rely on them, so the
  // volume fails every write and flush until it is reopened.
  write_behind_.Fail(s.WithContext("diff area of volume " + row_.name +
                                   " failed; reopen the volume"));
  return write_behind_.Sticky();
}

Status VolumeState::FlushImageIfDirty() {
  if (!image_dirty_.exchange(false)) return OkStatus();
  Status s = image_->Flush();
  if (!s.ok()) image_dirty_ = true;
  return s;
}

Status VolumeState::FlushForCommit() {
  // The shadow will read unchanged chunks from the image: everything
  // written before the instant must be in it and on the medium first.
  VSS_RETURN_IF_ERROR(write_behind_.Drain());
  VSS_RETURN_IF_ERROR(FlushImageIfDirty());
  return SyncDiffArea();
}

Status VolumeState::Flush() {
  VSS_RETURN_IF_ERROR(write_behind_.Drain());
  {
    std::shared_lock s(structure_mu_);
    VSS_RETURN_IF_ERROR(write_behind_.Sticky());
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
    if (pending_rows_.empty()) return OkStatus();
    rows.swap(pending_rows_);
    marks = diff_->Marks();
    used = index_.live_bytes();
  }
  // The records must be durable before the catalog says they exist. This
  // may be the first sync to see a failure: it is sticky then, as it is for
  // the applier, so no overwrite relies on these records.
  Status s = SyncDiffArea();
  if (s.ok()) s = CommitIndexRows(rows, marks, used);
  if (!s.ok()) {
    std::lock_guard l(index_mu_);
    pending_rows_.insert(pending_rows_.begin(), rows.begin(), rows.end());
  }
  return s;
}

Status VolumeState::CommitIndexRows(
    const std::vector<metadata::IndexRow>& rows,
    const std::vector<metadata::SegmentRow>& marks, uint64_t used) {
  StatusOr<metadata::Transaction> tx = catalog_->Begin();
  VSS_RETURN_IF_ERROR(tx.status());
  VSS_RETURN_IF_ERROR(catalog_->InsertIndexRows(row_.id, rows));
  for (const metadata::SegmentRow& m : marks)
    VSS_RETURN_IF_ERROR(catalog_->UpsertSegment(row_.id, m));
  metadata::DiffAreaRow d = diff_row_;
  d.used_bytes = used;
  VSS_RETURN_IF_ERROR(catalog_->UpsertDiffArea(d));
  return tx->Commit();
}

}  // namespace vss::engine
