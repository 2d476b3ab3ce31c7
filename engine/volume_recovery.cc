// VolumeState's loading and recovery: the index from the catalog and the
// segment tails, then what a previous owner left unfinished (space to give
// back, a revert, non-persistent shadows, empty segments).
#include <algorithm>

#include "volume_state.h"
#include "store_internal.h"

namespace vss::engine {

// Fields read from the catalog or a segment are never trusted: a chunk past
// the end would wrap chunk * chunk_size around 2^64 (and land on another
// chunk's bytes), an offset past 16 TiB would not fit the in-memory
// Location. Returns what is wrong, or "" when the record can be indexed.
std::string VolumeState::CheckRecordFields(uint64_t chunk, uint32_t raw_len,
                                           uint64_t offset, uint32_t stored_len,
                                           uint8_t codec) const {
  if (chunk >= chunk_count())
    return "chunk " + std::to_string(chunk) + " is past the end of volume " +
           row_.name + " (" + std::to_string(chunk_count()) + " chunks)";
  if (raw_len != ChunkLen(chunk))
    return "chunk " + std::to_string(chunk) + " has " +
           std::to_string(raw_len) + " bytes, not " +
           std::to_string(ChunkLen(chunk));
  if (offset % kRecordAlign != 0 || offset / kRecordAlign > UINT32_MAX)
    return "offset " + std::to_string(offset) + " is not a valid record offset";
  if (stored_len > kMaxChunkSize || codec > static_cast<uint8_t>(Codec::kZstd))
    return "stored length " + std::to_string(stored_len) + " or codec " +
           std::to_string(codec) + " is invalid";
  return "";
}

// Loads shadows and index rows from the catalog, then indexes the segment
// tails past the catalog's marks.
Status VolumeState::Load() {
  VSS_ASSIGN_OR_RETURN(diff_row_, DiffAreaRowOf(*store_, row_.id));
  VSS_ASSIGN_OR_RETURN(auto shadows, catalog_->ListShadowsOfVolume(row_.id));
  for (const metadata::ShadowRow& s : shadows) {
    shadows_.push_back({s.id, s.epoch, s.persistent});
    index_.AddEpoch(s.epoch);
    any_persistent_ |= s.persistent;
  }
  std::sort(shadows_.begin(), shadows_.end(),
            [](const ShadowInfo& a, const ShadowInfo& b) {
              return a.epoch < b.epoch;
            });
  VSS_ASSIGN_OR_RETURN(auto rows, catalog_->ListIndexRows(row_.id));
  for (const metadata::IndexRow& r : rows) {
    if (!index_.HasEpoch(r.epoch))
      continue;  // epoch without shadow: never read
    std::string bad =
        CheckRecordFields(r.chunk, r.raw_len, r.offset, r.stored_len, r.codec);
    if (bad.empty() && r.record_bytes != RecordBytes(r.stored_len))
      bad = "record length " + std::to_string(r.record_bytes) +
            " does not match its payload";
    if (!bad.empty())
      return CorruptionError("catalog index row of volume " + row_.name +
                             " (epoch " + std::to_string(r.epoch) +
                             ", segment " + std::to_string(r.segment) +
                             ") is invalid: " + bad);
    index_.Put(r.epoch, r.chunk,
               MakeLocation(r.segment, r.offset, r.stored_len, r.codec));
  }
  VSS_ASSIGN_OR_RETURN(auto segs, catalog_->ListSegments(row_.id));
  std::vector<std::string> warnings;
  DiffArea::Options o{store_->fs(), diff_row_.dir, row_.id,
                      store_->options().segment_bytes};
  VSS_ASSIGN_OR_RETURN(diff_, DiffArea::Open(o, segs, &warnings));
  for (const std::string& w : warnings)
    store_->RecordEvent(row_.id, std::nullopt, "diff-area-damaged", w)
        .IgnoreError();
  VSS_RETURN_IF_ERROR(IndexSegmentTails());
  RecountLive();
  return FlushIndex();
}

// A record in a tail has intact checksums and our volume id, but it may
// still be forged or damaged consistently: one that cannot be a record of
// this volume is left out of the index and reported as an event.
Status VolumeState::IndexSegmentTails() {
  uint64_t rejected = 0;
  std::string first_rejected;
  VSS_RETURN_IF_ERROR(diff_->ScanTails([&](const DiffArea::Scanned& s) {
    const RecordHeader& h = s.header;
    const uint8_t codec = static_cast<uint8_t>(h.codec);
    std::string bad =
        CheckRecordFields(h.chunk, h.raw_len, s.offset, h.stored_len, codec);
    if (!bad.empty()) {
      if (rejected++ == 0)
        first_rejected = DiffArea::SegmentName(s.segment) + " offset " +
                         std::to_string(s.offset) + ": " + bad;
      return;
    }
    if (!index_.HasEpoch(h.epoch) || index_.Contains(h.epoch, h.chunk)) return;
    index_.Put(h.epoch, h.chunk,
               MakeLocation(s.segment, s.offset, h.stored_len, codec));
    pending_rows_.push_back({h.chunk, h.epoch, s.segment, s.offset,
                             static_cast<uint32_t>(RecordBytes(h.stored_len)),
                             h.stored_len, h.raw_len, codec, h.payload_hash});
  }));
  if (rejected > 0)
    store_
        ->RecordEvent(row_.id, std::nullopt, "diff-area-damaged",
                      std::to_string(rejected) +
                          " diff-area record(s) of volume " + row_.name +
                          " in " + diff_row_.dir +
                          " ignored as invalid; first: " + first_rejected)
        .IgnoreError();
  return OkStatus();
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
    std::optional<size_t> index = target ? ShadowIndex(*target) : std::nullopt;
    if (!index) {
      VSS_RETURN_IF_ERROR(catalog_->ClearJournal(row_.id));
    } else {
      VSS_RETURN_IF_ERROR(RevertWorkLocked(*index));
    }
  }
  for (size_t i = shadows_.size(); i-- > 0;) {
    if (shadows_[i].persistent) continue;
    VSS_RETURN_IF_ERROR(DropShadowsLocked(
        {.first = i,
         .end = i + 1,
         .merge = true,
         .event_kind = "shadow-removed-at-recovery",
         .event_message = "non-persistent " + ShadowLabel(shadows_[i].id) +
                          " removed: its owner is gone"}));
  }
  // Segments without live records (left by a crash during a deletion).
  return RemoveEmptySegments();
}

void VolumeState::RecountLive() { diff_->SetLive(index_.LiveBytesBySegment()); }

}  // namespace vss::engine
