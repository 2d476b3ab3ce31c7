// ExtentBuilder: private helper of the formats library that turns a walk
// over a device range into the list Extents() must return: consecutive,
// in order, adjacent extents of the same kind merged. Not thread safe; one
// builder per call.
#pragma once

#include <cstdint>
#include <vector>

#include "vss/formats/block_device.h"

namespace vss {

class ExtentBuilder {
 public:
  // Appends [offset, offset+length) of the given kind. REQUIRES: offset is
  // the end of the previous piece (or the start of the walk). Zero lengths
  // are ignored.
  void Add(uint64_t offset, uint64_t length, bool allocated);
  std::vector<Extent> Take() { return std::move(extents_); }

 private:
  std::vector<Extent> extents_;
};

// A sorted, merged list of [begin, end) ranges marked allocated inside
// [offset, offset+length), turned into extents covering the range exactly.
struct Range {
  uint64_t begin;
  uint64_t end;
};
std::vector<Extent> ExtentsFromAllocated(uint64_t offset, uint64_t length,
                                         std::vector<Range> allocated);

}  // namespace vss
