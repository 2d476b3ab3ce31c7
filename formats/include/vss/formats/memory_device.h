// MemoryDevice: a sparse in-memory BlockDevice for tests. Storage is kept in
// 4 KiB pages allocated on first write; discarded or zeroed pages are freed,
// so Extents() reports real holes. Flush() does nothing (memory is "durable"
// for as long as the object lives). Thread safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vss/formats/block_device.h"

namespace vss {

class MemoryDevice final : public BlockDevice {
 public:
  static constexpr uint64_t kPageSize = 4096;
  // A zero-filled device of `size` bytes; `read_only` devices reject writes
  // (useful as a read-only view in tests).
  explicit MemoryDevice(uint64_t size, std::string name = "memory",
                        bool read_only = false);

  // Bytes of pages currently allocated.
  uint64_t allocated_bytes();

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override;
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override;
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override;
  Status DoDiscard(uint64_t offset, uint64_t length) override;
  Status DoFlush() override { return Status(); }
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override;

 private:
  std::mutex mu_;
  std::map<uint64_t, std::vector<uint8_t>> pages_;  // page index -> bytes
};

}  // namespace vss
