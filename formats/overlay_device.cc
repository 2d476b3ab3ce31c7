#include "vss/formats/overlay_device.h"

#include <algorithm>
#include <cstring>

namespace vss {

OverlayDevice::OverlayDevice(BlockDevice* base, uint64_t offset, uint64_t size)
    : BlockDevice(base->name() + " (overlay)", size, /*read_only=*/false),
      base_(base),
      base_offset_(offset) {}

uint64_t OverlayDevice::memory_bytes() const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& [b, bytes] : blocks_) n += bytes.size();
  return n;
}

uint64_t OverlayDevice::BlockLength(uint64_t b) const {
  return std::min(kBlock, size() - b * kBlock);
}

Status OverlayDevice::DoRead(uint64_t offset, std::span<uint8_t> buf) {
  // Runs of unwritten blocks are read from the base in one call each.
  uint64_t pos = offset;
  const uint64_t end = offset + buf.size();
  while (pos < end) {
    uint64_t b = pos / kBlock;
    uint64_t block_end = std::min(end, (b + 1) * kBlock);
    {
      std::lock_guard lock(mu_);
      auto it = blocks_.find(b);
      if (it != blocks_.end()) {
        std::memcpy(buf.data() + (pos - offset),
                    it->second.data() + (pos - b * kBlock), block_end - pos);
        pos = block_end;
        continue;
      }
      // Extend the run while blocks are unwritten.
      while (block_end < end && !blocks_.count(block_end / kBlock)) {
        block_end = std::min(end, block_end + kBlock);
      }
    }
    VSS_RETURN_IF_ERROR(base_->Read(
        base_offset_ + pos, buf.subspan(static_cast<size_t>(pos - offset),
                                        static_cast<size_t>(block_end - pos))));
    pos = block_end;
  }
  return OkStatus();
}

template <typename Fill>
Status OverlayDevice::Modify(uint64_t offset, uint64_t length, Fill fill) {
  const uint64_t end = offset + length;
  for (uint64_t pos = offset; pos < end;) {
    uint64_t b = pos / kBlock;
    uint64_t from = pos - b * kBlock;
    uint64_t n = std::min(end, (b + 1) * kBlock) - pos;
    std::unique_lock lock(mu_);
    auto it = blocks_.find(b);
    if (it == blocks_.end()) {
      lock.unlock();
      std::vector<uint8_t> bytes(static_cast<size_t>(BlockLength(b)));
      if (n != bytes.size()) {  // partly written: keep the rest
        VSS_RETURN_IF_ERROR(base_->Read(base_offset_ + b * kBlock, bytes));
      }
      lock.lock();
      it = blocks_.try_emplace(b, std::move(bytes)).first;
    }
    fill(it->second.data() + from, pos - offset, n);
    pos += n;
  }
  return OkStatus();
}

Status OverlayDevice::DoWrite(uint64_t offset, std::span<const uint8_t> buf) {
  return Modify(offset, buf.size(), [&](uint8_t* to, uint64_t at, uint64_t n) {
    std::memcpy(to, buf.data() + at, n);
  });
}

Status OverlayDevice::DoWriteZeroes(uint64_t offset, uint64_t length) {
  return Modify(offset, length, [](uint8_t* to, uint64_t, uint64_t n) {
    std::memset(to, 0, n);
  });
}

Status OverlayDevice::DoDiscard(uint64_t offset, uint64_t length) {
  return DoWriteZeroes(offset, length);
}

StatusOr<std::vector<Extent>> OverlayDevice::DoExtents(uint64_t offset,
                                                       uint64_t length) {
  return std::vector<Extent>{{offset, length, true}};
}

}  // namespace vss
