// OverlayDevice: a writable scratch view of a byte range of a read-only
// device. Reads see the range as it is until a block is written; writes go
// to memory only and are never passed to the device underneath, so the
// shadow it shows stays as it was taken.
//
// It exists for journal replay: XFS reads a filesystem whose log is dirty
// (a crash-consistent shadow) with its recent metadata only if the kernel
// replays the log, which it does only on a writable device. vssctl mount
// --filesystem gives the kernel this overlay (as a hidden FUSE file on a
// loop device) so that the replay lands here. Memory grows with what is
// written (for a replay, at most about the size of the log), in 4 KiB
// blocks; everything written is lost when the overlay is destroyed.
//
// Extents() reports the whole range allocated. Flush() does nothing (there
// is no medium). Writes past the end are kOutOfRange (BlockDevice checks).
//
// Ownership: the base device is not owned and must outlive the overlay.
// Thread safety: any number of threads (one mutex around the written
// blocks; reads of the base happen outside it).
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "vss/base/status.h"
#include "vss/formats/block_device.h"

namespace vss {

class OverlayDevice final : public BlockDevice {
 public:
  // The range [offset, offset + size) of `base`.
  // REQUIRES: the range lies inside base.
  OverlayDevice(BlockDevice* base, uint64_t offset, uint64_t size);

  // Bytes held in memory for written blocks.
  uint64_t memory_bytes() const;

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override;
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override;
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override;
  Status DoDiscard(uint64_t offset, uint64_t length) override;
  Status DoFlush() override { return OkStatus(); }
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override;

 private:
  static constexpr uint64_t kBlock = 4096;
  // Bytes of block `b` (the last one may be short).
  uint64_t BlockLength(uint64_t b) const;
  // Applies `fill(block_bytes, from, n)` to [offset, offset + length),
  // loading each block from the base the first time it is written.
  template <typename Fill>
  Status Modify(uint64_t offset, uint64_t length, Fill fill);

  BlockDevice* const base_;
  const uint64_t base_offset_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<uint8_t>> blocks_;  // written
};

}  // namespace vss
