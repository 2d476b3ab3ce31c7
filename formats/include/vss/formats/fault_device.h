// FaultDevice: forwards to a target device and fails chosen calls, for
// error-path tests (SQLite's test_vfs idea). A rule fails the Nth matching
// call (counting from 1) either once or from then on, with a chosen Status.
// Thread safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>

#include "vss/formats/block_device.h"

namespace vss {

enum class DeviceOp : uint32_t {
  kRead = 1,
  kWrite = 2,
  kWriteZeroes = 4,
  kDiscard = 8,
  kFlush = 16,
  kExtents = 32,
  kAnyWrite = 2 | 4 | 8,
  kAny = 63,
};

struct FaultRule {
  uint32_t ops = static_cast<uint32_t>(DeviceOp::kAny);  // mask of DeviceOp
  uint64_t nth = 1;        // the first matching call to fail (1-based)
  bool persistent = false; // keep failing every matching call after that
  Status error = IoError("injected fault");
};

class FaultDevice final : public ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;

  // Replaces the rule and resets the call counter.
  void SetRule(FaultRule rule);
  void ClearRule();
  // Matching calls seen since the rule was set.
  uint64_t calls() const { return calls_.load(); }
  // Calls that were failed.
  uint64_t failures() const { return failures_.load(); }

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override;
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override;
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override;
  Status DoDiscard(uint64_t offset, uint64_t length) override;
  Status DoFlush() override;
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override;

 private:
  // Returns the error to inject for this call, or OK.
  Status Check(DeviceOp op);
  std::mutex mu_;
  std::optional<FaultRule> rule_;
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> failures_{0};
};

}  // namespace vss
