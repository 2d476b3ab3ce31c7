#include "vss/formats/fault_device.h"

namespace vss {

void FaultDevice::SetRule(FaultRule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  rule_ = std::move(rule);
  calls_ = 0;
  failures_ = 0;
}

void FaultDevice::ClearRule() {
  std::lock_guard<std::mutex> lock(mu_);
  rule_.reset();
}

// Counts the call if the rule matches it, and fails the nth matching call
// (and every later one when the rule is persistent).
Status FaultDevice::Check(DeviceOp op) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!rule_ || (rule_->ops & static_cast<uint32_t>(op)) == 0) return Status();
  uint64_t n = ++calls_;
  if (n == rule_->nth || (rule_->persistent && n > rule_->nth)) {
    ++failures_;
    return rule_->error;
  }
  return Status();
}

Status FaultDevice::DoRead(uint64_t offset, std::span<uint8_t> buf) {
  VSS_RETURN_IF_ERROR(Check(DeviceOp::kRead));
  return ForwardingDevice::DoRead(offset, buf);
}

Status FaultDevice::DoWrite(uint64_t offset, std::span<const uint8_t> buf) {
  VSS_RETURN_IF_ERROR(Check(DeviceOp::kWrite));
  return ForwardingDevice::DoWrite(offset, buf);
}

Status FaultDevice::DoWriteZeroes(uint64_t offset, uint64_t length) {
  VSS_RETURN_IF_ERROR(Check(DeviceOp::kWriteZeroes));
  return ForwardingDevice::DoWriteZeroes(offset, length);
}

Status FaultDevice::DoDiscard(uint64_t offset, uint64_t length) {
  VSS_RETURN_IF_ERROR(Check(DeviceOp::kDiscard));
  return ForwardingDevice::DoDiscard(offset, length);
}

Status FaultDevice::DoFlush() {
  VSS_RETURN_IF_ERROR(Check(DeviceOp::kFlush));
  return ForwardingDevice::DoFlush();
}

StatusOr<std::vector<Extent>> FaultDevice::DoExtents(uint64_t offset,
                                                     uint64_t length) {
  VSS_RETURN_IF_ERROR(Check(DeviceOp::kExtents));
  return ForwardingDevice::DoExtents(offset, length);
}

}  // namespace vss
