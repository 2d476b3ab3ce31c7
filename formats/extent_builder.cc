#include "extent_builder.h"

#include <algorithm>

namespace vss {

void ExtentBuilder::Add(uint64_t offset, uint64_t length, bool allocated) {
  if (length == 0) return;
  if (!extents_.empty() && extents_.back().allocated == allocated) {
    extents_.back().length += length;
    return;
  }
  extents_.push_back(Extent{offset, length, allocated});
}

// `allocated` may be unsorted, overlapping and reach outside the range; it is
// clipped, sorted and merged here.
std::vector<Extent> ExtentsFromAllocated(uint64_t offset, uint64_t length,
                                         std::vector<Range> allocated) {
  const uint64_t end = offset + length;
  std::sort(allocated.begin(), allocated.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  ExtentBuilder builder;
  uint64_t pos = offset;
  for (const Range& r : allocated) {
    uint64_t begin = std::max(r.begin, pos);
    uint64_t stop = std::min(r.end, end);
    if (begin >= stop) continue;
    builder.Add(pos, begin - pos, false);
    builder.Add(begin, stop - begin, true);
    pos = stop;
  }
  builder.Add(pos, end - pos, false);
  return builder.Take();
}

}  // namespace vss
