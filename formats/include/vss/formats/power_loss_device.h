// PowerLossDevice: a crash simulator (SQLite's test6.c idea). It forwards
// reads to its target but keeps every write, write-zeroes and discard since
// the last Flush() pending in memory (reads see them, as a page cache
// would). Flush() applies the pending writes to the target in order, then
// flushes it. PowerLoss() throws pending writes away as a power cut would:
// each pending write is, per the mode, dropped, kept, or torn (a random
// 512-byte-aligned prefix kept), chosen with the given seed. After
// PowerLoss() the device behaves as freshly opened on the target.
// Thread safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "vss/base/power_loss_mode.h"
#include "vss/formats/block_device.h"

namespace vss {


class PowerLossDevice final : public ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;

  void PowerLoss(PowerLossMode mode, uint64_t seed);
  // Writes waiting for a flush.
  size_t pending();

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override;
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override;
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override;
  Status DoDiscard(uint64_t offset, uint64_t length) override;
  Status DoFlush() override;
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override;

 private:
  struct Pending {
    uint64_t offset;
    uint64_t length;            // bytes covered (data.size() for writes)
    std::vector<uint8_t> data;  // empty for write-zeroes and discard
    bool zero;                  // write-zeroes / discard
    bool discard;               // a discard (applied as Discard)
  };
  Status ApplyLocked(const Pending& p, uint64_t length);
  std::mutex mu_;
  std::vector<Pending> pending_;
};

}  // namespace vss
