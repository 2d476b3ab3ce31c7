// VolumeState's shadow reads: a shadow's bytes and extents, the chunks
// changed between shadows, and verification of a shadow's records. Shadow
// k reads chunk c from the record the ChunkIndex finds for epoch k, else
// from the image.
#include <algorithm>
#include <cstring>

#include "volume_state.h"
#include "worker_pool.h"

namespace vss::engine {
namespace {

// Appends [off, off+len) of kind `alloc` to `out`, joining it to the last
// extent when they are adjacent and of one kind.
void PushExtent(std::vector<Extent>& out, uint64_t off, uint64_t len,
                bool alloc) {
  if (len == 0) return;
  if (!out.empty() && out.back().allocated == alloc &&
      out.back().offset + out.back().length == off)
    out.back().length += len;
  else
    out.push_back({off, len, alloc});
}

}  // namespace

std::string VolumeState::ShadowLabel(const Guid& id) const {
  return "shadow " + id.ToString() + " of volume " + row_.name;
}

std::optional<VolumeState::ShadowInfo> VolumeState::FindShadow(const Guid& id) {
  std::lock_guard l(index_mu_);
  for (const ShadowInfo& s : shadows_)
    if (s.id == id) return s;
  return std::nullopt;
}

Location VolumeState::LookupRecord(uint64_t epoch, uint64_t chunk) {
  std::lock_guard l(index_mu_);
  return *index_.Lookup(epoch, chunk);
}

Status VolumeState::ReadChunkRecord(const Location& loc, uint64_t chunk,
                                    std::span<uint8_t> out) {
  Status s = diff_->ReadRecord(loc, chunk, out);
  if (!s.ok()) return s.WithContext("chunk " + std::to_string(chunk));
  return s;
}

Status VolumeState::ReadShadow(const Guid& shadow, std::span<uint8_t> buf,
                               uint64_t offset) {
  if (buf.empty()) return OkStatus();
  std::shared_lock s(structure_mu_);
  std::optional<size_t> index = ShadowIndex(shadow);
  if (!index) return NotFoundError(ShadowLabel(shadow) + " was deleted");
  const uint64_t epoch = shadows_[*index].epoch, cs = row_.chunk_size;
  uint64_t first = offset / cs, last = (offset + buf.size() - 1) / cs;
  ChunkStripes::Guard g(&stripes_, first, last, false);
  std::vector<std::optional<Location>> locs;
  {
    std::lock_guard l(index_mu_);
    for (uint64_t c = first; c <= last; ++c) {
      const Location* loc = index_.Lookup(epoch, c);
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
    uint64_t from = std::max(offset, c * cs),
             to = std::min(end, (run_end + 1) * cs);
    VSS_RETURN_IF_ERROR(
        image_->Read(from, buf.subspan(from - offset, to - from)));
    c = run_end + 1;
  }
  // Records decode in parallel, whole chunks straight into the caller's
  // buffer; a chunk cut by the range goes through a temporary.
  std::vector<Status> results(preserved.size());
  WorkerPool::Get().ParallelFor(preserved.size(), [&](size_t i) {
    uint64_t c = preserved[i], len = ChunkLen(c);
    uint64_t from = std::max(offset, c * cs), to = std::min(end, c * cs + len);
    if (from == c * cs && to == c * cs + len) {
      results[i] =
          ReadChunkRecord(*locs[c - first], c, buf.subspan(from - offset, len));
      return;
    }
    std::vector<uint8_t> chunk(len);
    results[i] = ReadChunkRecord(*locs[c - first], c, chunk);
    if (results[i].ok())
      std::memcpy(buf.data() + (from - offset), chunk.data() + (from - c * cs),
                  to - from);
  });
  for (const Status& st : results)
    if (!st.ok()) return IoError(ShadowLabel(shadow) + ": " + st.message());
  return OkStatus();
}

// Found by probing each chunk of the range or by walking the index,
// whichever is smaller, so the cost is bounded by both.
std::map<uint64_t, bool> VolumeState::PreservedChunks(uint64_t epoch,
                                                      uint64_t first,
                                                      uint64_t last) {
  std::map<uint64_t, bool> preserved;  // chunk -> allocated
  const uint8_t zero = static_cast<uint8_t>(Codec::kZero);
  std::lock_guard l(index_mu_);
  if (last - first < index_.CountFrom(epoch)) {
    for (uint64_t c = first; c <= last; ++c)
      if (const Location* loc = index_.Lookup(epoch, c))
        preserved[c] = loc->codec != zero;
  } else {
    index_.ForEachIn(epoch, UINT64_MAX, [&](uint64_t c, const Location&) {
      if (c < first || c > last || preserved.count(c)) return;
      preserved[c] = index_.Lookup(epoch, c)->codec != zero;
    });
  }
  return preserved;
}

StatusOr<std::vector<Extent>> VolumeState::ShadowExtents(const Guid& shadow,
                                                         uint64_t offset,
                                                         uint64_t length) {
  std::shared_lock s(structure_mu_);
  std::optional<size_t> index = ShadowIndex(shadow);
  if (!index) return NotFoundError(ShadowLabel(shadow) + " was deleted");
  VSS_ASSIGN_OR_RETURN(std::vector<Extent> live,
                       image_->Extents(offset, length));
  // Preserved chunks in range: allocated unless they are zero records.
  std::map<uint64_t, bool> preserved;
  if (length > 0)
    preserved =
        PreservedChunks(shadows_[*index].epoch, offset / row_.chunk_size,
                        (offset + length - 1) / row_.chunk_size);
  // Overlay: split live extents at preserved chunks.
  std::vector<Extent> out;
  auto pit = preserved.begin();
  for (const Extent& e : live) {
    uint64_t pos = e.offset, stop = e.offset + e.length;
    while (pos < stop) {
      while (pit != preserved.end() &&
             pit->first * row_.chunk_size + ChunkLen(pit->first) <= pos)
        ++pit;
      if (pit == preserved.end() || pit->first * row_.chunk_size >= stop) {
        PushExtent(out, pos, stop - pos, e.allocated);
        break;
      }
      uint64_t cstart = pit->first * row_.chunk_size;
      uint64_t cend = cstart + ChunkLen(pit->first);
      if (cstart > pos) {
        PushExtent(out, pos, cstart - pos, e.allocated);
        pos = cstart;
      }
      uint64_t to = std::min(stop, cend);
      PushExtent(out, pos, to - pos, pit->second);
      pos = to;
    }
  }
  return out;
}

std::vector<uint64_t> VolumeState::ChunksOfEpochs(uint64_t from, uint64_t to) {
  std::lock_guard l(index_mu_);
  return index_.ChunksOf(from, to);
}

StatusOr<std::vector<ChangedExtent>> VolumeState::ChangedExtents(
    const Guid& from, std::optional<Guid> to) {
  std::shared_lock s(structure_mu_);
  std::optional<size_t> a = ShadowIndex(from);
  if (!a)
    return NotFoundError("shadow " + from.ToString() +
                         " is not a shadow of volume " + row_.name);
  uint64_t end_epoch = UINT64_MAX;
  if (to) {
    std::optional<size_t> b = ShadowIndex(*to);
    if (!b)
      return NotFoundError("shadow " + to->ToString() +
                           " is not a shadow of volume " + row_.name);
    if (shadows_[*b].epoch < shadows_[*a].epoch)
      return InvalidArgumentError("shadow " + to->ToString() +
                                  " is older than shadow " + from.ToString());
    end_epoch = shadows_[*b].epoch;
  }
  std::vector<ChangedExtent> out;
  for (uint64_t c : ChunksOfEpochs(shadows_[*a].epoch, end_epoch)) {
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
    Location loc = LookupRecord(info.epoch, c);
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

}  // namespace vss::engine
