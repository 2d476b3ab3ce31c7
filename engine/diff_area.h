// DiffArea: the segment files of one volume's differential area.
//
// Records (engine/record.h, DIFF-AREA-FORMAT.md) are appended to the active
// segment, the one with the highest sequence number, until it reaches the
// segment size; then a new segment is started. Space of dropped records is
// given back by punching holes; a segment without live records that is not
// the active one is removed. The DiffArea knows nothing of epochs or
// shadows: VolumeState decides what is live.
//
// Thread safety: Append() must be serialised by the caller (VolumeState's
// append mutex); everything else may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "chunk_map.h"
#include "record.h"
#include "vss/base/file.h"
#include "vss/base/guid.h"
#include "vss/metadata/catalog.h"
#include "vss/base/status.h"

namespace vss::engine {

class DiffArea {
 public:
  struct Options {
    FileSystem* fs = nullptr;
    std::string dir;
    Guid volume_id;
    uint64_t segment_bytes = uint64_t{1} << 30;
  };

  // Opens the segments found in options.dir plus those the catalog knows
  // (`rows`; a known segment whose file is missing stays unreadable and is
  // reported in `warnings`). Creates the directory if needed.
  static StatusOr<std::unique_ptr<DiffArea>> Open(
      Options options, const std::vector<metadata::SegmentRow>& rows,
      std::vector<std::string>* warnings);

  static std::string SegmentName(uint32_t seq);

  struct Scanned {
    RecordHeader header;
    uint32_t segment = 0;
    uint64_t offset = 0;
  };
  // Reads every segment past its indexed mark and calls `found` for each
  // intact record (header and payload checksums good, volume id ours), in
  // file order. Damaged or torn blocks are skipped 4 KiB at a time. Sets the
  // append position after the last intact record of the active segment.
  Status ScanTails(const std::function<void(const Scanned&)>& found);

  // Writes `records` (whole aligned records) at the end of the active
  // segment, starting a new segment first when it would pass the segment
  // size. Returns the segment and offset of the first byte. Not durable
  // until Sync(). kNoSpace when the file system is full (nothing counted).
  StatusOr<std::pair<uint32_t, uint64_t>> Append(std::span<const uint8_t> records);

  // Makes every append and hole punch made before the call durable
  // (fdatasync of the segments written). Concurrent callers share syncs.
  // A failure is permanent: this call, the calls waiting on the same sync
  // and every later one return it, because a file system reports a
  // writeback error once (a retried fdatasync may succeed although the
  // data it should have written is gone). Only a reopen starts afresh.
  Status Sync();
  // True when an append or hole punch is not yet known durable (a Sync()
  // is needed before relying on it), or when a sync has failed.
  bool HasUnsynced();

  // Reads the record at `loc` that must preserve chunk `chunk` of this
  // volume and decodes its payload into `out` (the chunk's length). Checks
  // the header and payload checksums and that the record is the one the
  // index expects; kCorruption / kIoError otherwise, naming segment and offset.
  Status ReadRecord(const Location& loc, uint64_t chunk, std::span<uint8_t> out);

  // Gives back [offset, offset+length) of a segment (hole punch).
  Status PunchHole(uint32_t segment, uint64_t offset, uint64_t length);
  // Removes a segment file (not the active one).
  Status RemoveSegment(uint32_t segment);

  // Per segment: indexed_to = the append position (the active segment) or
  // its end; live_bytes as last set by SetLive().
  std::vector<metadata::SegmentRow> Marks();
  void SetLive(const std::map<uint32_t, uint64_t>& live);
  uint32_t active_segment();
  std::vector<uint32_t> segments();
  uint64_t AllocatedBytes();
  const std::string& dir() const { return opt_.dir; }

 private:
  struct Segment {
    std::shared_ptr<File> file;   // null when the file is missing
    uint64_t indexed_to = 0;
    uint64_t end = 0;             // append position / size
    uint64_t live = 0;
  };
  explicit DiffArea(Options o) : opt_(std::move(o)) {}
  std::string PathOf(uint32_t seq) const;
  Status StartSegment(uint32_t seq);
  Status ScanSegment(uint32_t seq, Segment& seg,
                     const std::function<void(const Scanned&)>& found);
  std::shared_ptr<File> FileOf(uint32_t seq);

  Options opt_;
  std::mutex mu_;  // guards the fields below
  std::map<uint32_t, Segment> segments_;
  std::set<uint32_t> dirty_;
  // Sync generations: change_gen_ counts changes, synced_gen_ is the last
  // one known durable; syncing_ while one caller runs the fdatasyncs.
  uint64_t change_gen_ = 0;
  uint64_t synced_gen_ = 0;
  bool syncing_ = false;
  Status sync_failed_;  // the first sync failure; permanent
  std::condition_variable sync_cv_;
};

}  // namespace vss::engine
