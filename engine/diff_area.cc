#include "diff_area.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace vss::engine {
namespace {

constexpr char kPrefix[] = "seg-";
constexpr char kSuffix[] = ".vsd";

// Parses "seg-000012.vsd" into 12; 0 when the name is not a segment.
uint32_t ParseSegmentName(const std::string& name) {
  unsigned seq = 0;
  char tail[8] = {};
  if (std::sscanf(name.c_str(), "seg-%6u%4s", &seq, tail) != 2) return 0;
  if (std::strcmp(tail, kSuffix) != 0 || name.size() != 14) return 0;
  return seq;
}

std::vector<uint8_t>& ThreadBuffer(size_t n) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

}  // namespace

std::string DiffArea::SegmentName(uint32_t seq) {
  char name[32];
  std::snprintf(name, sizeof name, "%s%06u%s", kPrefix, seq, kSuffix);
  return name;
}

std::string DiffArea::PathOf(uint32_t seq) const {
  return opt_.dir + "/" + SegmentName(seq);
}

StatusOr<std::unique_ptr<DiffArea>> DiffArea::Open(
    Options options, const std::vector<metadata::SegmentRow>& rows,
    std::vector<std::string>* warnings) {
  std::unique_ptr<DiffArea> da(new DiffArea(std::move(options)));
  FileSystem* fs = da->opt_.fs;
  VSS_RETURN_IF_ERROR(fs->CreateDirs(da->opt_.dir));
  VSS_ASSIGN_OR_RETURN(std::vector<std::string> names, fs->List(da->opt_.dir));
  for (const std::string& name : names) {
    uint32_t seq = ParseSegmentName(name);
    if (seq != 0) da->segments_[seq] = Segment{};
  }
  for (const metadata::SegmentRow& r : rows) {
    auto [it, inserted] = da->segments_.try_emplace(r.seq);
    it->second.indexed_to = r.indexed_to;
    if (inserted)
      warnings->push_back("diff-area segment " + da->PathOf(r.seq) + " is missing");
  }
  for (auto& [seq, seg] : da->segments_) {
    if (!fs->Exists(da->PathOf(seq))) continue;
    VSS_ASSIGN_OR_RETURN(std::unique_ptr<File> f, fs->Open(da->PathOf(seq), false));
    seg.file = std::move(f);
    VSS_ASSIGN_OR_RETURN(uint64_t size, seg.file->Size());
    if (size < seg.indexed_to)
      warnings->push_back("diff-area segment " + da->PathOf(seq) +
                          " is shorter than its indexed records (truncated)");
    seg.end = std::max(size, seg.indexed_to);
  }
  return da;
}

Status DiffArea::StartSegment(uint32_t seq) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<File> f, opt_.fs->Open(PathOf(seq), true));
  // The new name must be durable before records in it are relied on.
  VSS_RETURN_IF_ERROR(opt_.fs->SyncDir(opt_.dir));
  Segment seg;
  seg.file = std::move(f);
  segments_[seq] = std::move(seg);
  return OkStatus();
}

Status DiffArea::ScanSegment(uint32_t seq, Segment& seg,
                             const std::function<void(const Scanned&)>& found) {
  VSS_ASSIGN_OR_RETURN(uint64_t size, seg.file->Size());
  uint64_t pos = (seg.indexed_to + kRecordAlign - 1) / kRecordAlign * kRecordAlign;
  uint64_t append = seg.indexed_to;
  std::vector<uint8_t> head(kRecordHeaderBytes);
  std::vector<uint8_t> payload;
  while (pos + kRecordHeaderBytes <= size) {
    VSS_ASSIGN_OR_RETURN(size_t n, seg.file->ReadAt(pos, head));
    StatusOr<RecordHeader> h = n == head.size() ? DecodeHeader(head)
                                                : StatusOr<RecordHeader>(CorruptionError("short"));
    bool good = h.ok() && h->volume_id == opt_.volume_id &&
                pos + kRecordHeaderBytes + h->stored_len <= size;
    if (good && h->stored_len > 0) {
      payload.resize(h->stored_len);
      VSS_ASSIGN_OR_RETURN(size_t m, seg.file->ReadAt(pos + kRecordHeaderBytes, payload));
      good = m == payload.size() && PayloadHash(payload) == h->payload_hash;
    }
    if (!good) {  // torn or damaged: look for the next intact record
      pos += kRecordAlign;
      continue;
    }
    found(Scanned{*h, seq, pos});
    pos += RecordBytes(h->stored_len);
    append = pos;
  }
  seg.end = append;
  return OkStatus();
}

Status DiffArea::ScanTails(const std::function<void(const Scanned&)>& found) {
  std::lock_guard l(mu_);
  for (auto& [seq, seg] : segments_) {
    if (!seg.file) continue;
    VSS_RETURN_IF_ERROR(ScanSegment(seq, seg, found).WithContext(PathOf(seq)));
  }
  return OkStatus();
}

StatusOr<std::pair<uint32_t, uint64_t>> DiffArea::Append(
    std::span<const uint8_t> records) {
  std::shared_ptr<File> file;
  uint32_t seq;
  uint64_t at;
  {
    std::lock_guard l(mu_);
    if (segments_.empty() || !segments_.rbegin()->second.file ||
        (segments_.rbegin()->second.end > 0 &&
         segments_.rbegin()->second.end + records.size() > opt_.segment_bytes)) {
      uint32_t next = segments_.empty() ? 1 : segments_.rbegin()->first + 1;
      VSS_RETURN_IF_ERROR(StartSegment(next));
    }
    seq = segments_.rbegin()->first;
    file = segments_.rbegin()->second.file;
    at = segments_.rbegin()->second.end;
  }
  VSS_RETURN_IF_ERROR(file->WriteAt(at, records).WithContext(PathOf(seq)));
  std::lock_guard l(mu_);
  segments_[seq].end = at + records.size();
  dirty_.insert(seq);
  ++change_gen_;
  return std::make_pair(seq, at);
}

// Group commit: a caller needs every change made before it called
// (generation `want`) to be durable. One caller at a time syncs the dirty
// segments; callers arriving meanwhile wait and are covered by the next
// sync, which takes everything dirty by then. A caller never returns before
// a sync that started after its own change has finished: returning while
// another thread's fdatasync is still in flight would let an overwrite of
// the image reach the disk before its preserved record (rule 1).
//
// A failed fdatasync leaves the segments' durability unknown for good: the
// kernel may have dropped the dirty pages it could not write and reports
// that once, so a second fdatasync could return OK over lost records. The
// failure is kept and returned to every caller from then on.
Status DiffArea::Sync() {
  std::unique_lock l(mu_);
  const uint64_t want = change_gen_;
  while (synced_gen_ < want) {
    if (!sync_failed_.ok()) return sync_failed_;
    if (syncing_) {
      sync_cv_.wait(l);
      continue;
    }
    syncing_ = true;
    std::set<uint32_t> dirty;
    dirty.swap(dirty_);
    const uint64_t covers = change_gen_;
    l.unlock();
    Status s;
    uint32_t failed = 0;
    for (uint32_t seq : dirty) {
      std::shared_ptr<File> f = FileOf(seq);
      s = f ? f->Sync() : OkStatus();
      if (!s.ok()) {
        failed = seq;
        break;
      }
    }
    l.lock();
    syncing_ = false;
    sync_cv_.notify_all();
    if (!s.ok()) {
      dirty_.insert(dirty.begin(), dirty.end());
      sync_failed_ = s.WithContext(PathOf(failed));
      return sync_failed_;
    }
    synced_gen_ = std::max(synced_gen_, covers);
  }
  // Callers whose changes an earlier successful sync covered return OK even
  // after a later failure: their records are durable.
  return OkStatus();
}

bool DiffArea::HasUnsynced() {
  std::lock_guard l(mu_);
  return synced_gen_ < change_gen_ || !sync_failed_.ok();
}

std::shared_ptr<File> DiffArea::FileOf(uint32_t seq) {
  std::lock_guard l(mu_);
  auto it = segments_.find(seq);
  return it == segments_.end() ? nullptr : it->second.file;
}

Status DiffArea::ReadRecord(const Location& loc, uint64_t chunk,
                            std::span<uint8_t> out) {
  // Messages are built only on failure: this is the shadow read path.
  auto where = [&] {
    return "diff-area record at " + SegmentName(loc.segment) + " offset " +
           std::to_string(loc.offset());
  };
  std::shared_ptr<File> f = FileOf(loc.segment);
  if (!f) return IoError("diff-area segment " + SegmentName(loc.segment) + " is missing");
  size_t want = kRecordHeaderBytes + loc.stored_len;
  std::vector<uint8_t>& buf = ThreadBuffer(want);
  VSS_ASSIGN_OR_RETURN(size_t n, f->ReadAt(loc.offset(), std::span(buf.data(), want)));
  if (n != want) return IoError(where() + " is cut short (segment truncated)");
  StatusOr<RecordHeader> h = DecodeHeader(std::span(buf.data(), want));
  if (!h.ok()) return h.status().WithContext(where());
  if (h->volume_id != opt_.volume_id || h->chunk != chunk ||
      h->stored_len != loc.stored_len || static_cast<uint8_t>(h->codec) != loc.codec ||
      h->raw_len != out.size())
    return CorruptionError(where() + " is not the one the index expects");
  Status s = DecodePayload(*h, std::span(buf.data() + kRecordHeaderBytes, h->stored_len), out);
  if (!s.ok()) return s.WithContext(where());
  return s;
}

Status DiffArea::PunchHole(uint32_t segment, uint64_t offset, uint64_t length) {
  std::shared_ptr<File> f = FileOf(segment);
  if (!f) return OkStatus();
  std::lock_guard l(mu_);
  dirty_.insert(segment);
  ++change_gen_;
  return f->PunchHole(offset, length).WithContext(PathOf(segment));
}

Status DiffArea::RemoveSegment(uint32_t segment) {
  {
    std::lock_guard l(mu_);
    if (!segments_.empty() && segments_.rbegin()->first == segment)
      return InternalError("the active segment cannot be removed");
    segments_.erase(segment);
    dirty_.erase(segment);
  }
  Status s = opt_.fs->Remove(PathOf(segment));
  if (!s.ok() && s.code() != StatusCode::kNotFound) return s;
  return opt_.fs->SyncDir(opt_.dir);
}

std::vector<metadata::SegmentRow> DiffArea::Marks() {
  std::lock_guard l(mu_);
  std::vector<metadata::SegmentRow> rows;
  for (const auto& [seq, seg] : segments_)
    if (seg.file) rows.push_back({seq, seg.end, seg.live});
  return rows;
}

void DiffArea::SetLive(const std::map<uint32_t, uint64_t>& live) {
  std::lock_guard l(mu_);
  for (auto& [seq, seg] : segments_) {
    auto it = live.find(seq);
    seg.live = it == live.end() ? 0 : it->second;
  }
}

uint32_t DiffArea::active_segment() {
  std::lock_guard l(mu_);
  return segments_.empty() ? 0 : segments_.rbegin()->first;
}

std::vector<uint32_t> DiffArea::segments() {
  std::lock_guard l(mu_);
  std::vector<uint32_t> v;
  for (const auto& [seq, seg] : segments_) v.push_back(seq);
  return v;
}

uint64_t DiffArea::AllocatedBytes() {
  std::vector<std::shared_ptr<File>> files;
  {
    std::lock_guard l(mu_);
    for (const auto& [seq, seg] : segments_)
      if (seg.file) files.push_back(seg.file);
  }
  uint64_t total = 0;
  for (auto& f : files) {
    StatusOr<uint64_t> n = f->AllocatedBytes();
    if (n.ok()) total += *n;
  }
  return total;
}

}  // namespace vss::engine
