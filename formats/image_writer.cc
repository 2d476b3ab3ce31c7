#include "vss/formats/image_writer.h"

#include <algorithm>

namespace vss {
namespace {

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }
uint64_t DivUp(uint64_t v, uint64_t by) { return (v + by - 1) / by; }


// A run of writer units [first, end) to read from the source, or to write
// as zeroes.
struct UnitRun {
  uint64_t first = 0;
  uint64_t end = 0;
  bool read = true;
};

StatusOr<std::vector<UnitRun>> PlanRuns(std::span<const Extent> extents,
                                        uint64_t cs, uint64_t size) {
  std::vector<UnitRun> runs;
  uint64_t prev_end = 0;
  for (const Extent& e : extents) {
    if (e.length == 0) continue;
    if (e.offset < prev_end || e.offset > size || e.length > size - e.offset) {
      return InvalidArgumentError(
          "extents out of order, overlapping or past the end at " +
          std::to_string(e.offset));
    }
    prev_end = e.offset + e.length;
    const uint64_t first = e.offset / cs, end = DivUp(prev_end, cs);
    if (e.allocated) {
      runs.push_back({first, end, true});
      continue;
    }
    // Whole units inside a zero extent need no read; the units it only
    // partly covers do (or the end of the image, which it covers).
    const uint64_t whole_first = DivUp(e.offset, cs);
    const uint64_t whole_end = prev_end == size ? end : prev_end / cs;
    if (whole_first >= whole_end) {
      runs.push_back({first, end, true});
      continue;
    }
    if (first < whole_first) runs.push_back({first, whole_first, true});
    runs.push_back({whole_first, whole_end, false});
    if (whole_end < end) runs.push_back({whole_end, end, true});
  }
  return runs;
}

}  // namespace

bool IsWriterFormat(std::string_view format) {
  return std::find(std::begin(kWriterFormats), std::end(kWriterFormats),
                   format) != std::end(kWriterFormats);
}

Status CopyUnits(BlockDevice& src, std::span<const Extent> extents,
                 ImageWriter& writer,
                 const std::function<void(uint64_t)>& progress) {
  const uint64_t cs = writer.unit_size();
  const uint64_t size = writer.size();
  VSS_ASSIGN_OR_RETURN(std::vector<UnitRun> runs,
                       PlanRuns(extents, cs, size));
  std::vector<uint8_t> buf(
      std::max<uint64_t>(cs, RoundUp(uint64_t{1} << 20, cs)));
  uint64_t done_until = 0;  // units before it are written
  for (const UnitRun& run : runs) {
    const uint64_t first = std::max(run.first, done_until);
    if (first >= run.end) continue;
    done_until = run.end;
    const uint64_t begin = first * cs, end = std::min(run.end * cs, size);
    if (!run.read) {
      VSS_RETURN_IF_ERROR(writer.WriteZeroes(begin, end - begin));
      if (progress) progress(end - begin);
      continue;
    }
    for (uint64_t at = begin; at < end;) {
      std::span<uint8_t> piece(buf.data(),
                               std::min<uint64_t>(buf.size(), end - at));
      VSS_RETURN_IF_ERROR(src.Read(at, piece));
      VSS_RETURN_IF_ERROR(writer.Write(at, piece));
      if (progress) progress(piece.size());
      at += piece.size();
    }
  }
  return OkStatus();
}

StatusOr<std::vector<Extent>> ExtentsWithin(BlockDevice& src,
                                            std::span<const Extent> ranges) {
  std::vector<Extent> out;
  for (const Extent& r : ranges) {
    VSS_ASSIGN_OR_RETURN(std::vector<Extent> parts,
                         src.Extents(r.offset, r.length));
    out.insert(out.end(), parts.begin(), parts.end());
  }
  return out;
}

}  // namespace vss
