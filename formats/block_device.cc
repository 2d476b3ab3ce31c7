#include "vss/formats/block_device.h"

#include <string>

namespace vss {

// Every public entry point checks the request once here so that the Do*
// hooks may trust offset and length: the range lies inside the device and
// write operations only reach writable devices. Zero-length requests inside
// (or at the end of) the device succeed without calling the Do* method.

Status BlockDevice::CheckRange(uint64_t offset, uint64_t length) const {
  // offset + length must neither overflow nor pass the end.
  if (offset > size_ || length > size_ - offset) {
    return OutOfRangeError(name_ + ": range [" + std::to_string(offset) +
                           ", +" + std::to_string(length) +
                           ") passes the end of the device (size " +
                           std::to_string(size_) + ")");
  }
  return Status();
}

Status BlockDevice::CheckWritable() const {
  if (read_only_) return FailedPreconditionError(name_ + " is read-only");
  return Status();
}

Status BlockDevice::Read(uint64_t offset, std::span<uint8_t> buf) {
  VSS_RETURN_IF_ERROR(CheckRange(offset, buf.size()));
  if (buf.empty()) return Status();
  return DoRead(offset, buf);
}

Status BlockDevice::Write(uint64_t offset, std::span<const uint8_t> buf) {
  VSS_RETURN_IF_ERROR(CheckWritable());
  VSS_RETURN_IF_ERROR(CheckRange(offset, buf.size()));
  if (buf.empty()) return Status();
  return DoWrite(offset, buf);
}

Status BlockDevice::WriteZeroes(uint64_t offset, uint64_t length) {
  VSS_RETURN_IF_ERROR(CheckWritable());
  VSS_RETURN_IF_ERROR(CheckRange(offset, length));
  if (length == 0) return Status();
  return DoWriteZeroes(offset, length);
}

Status BlockDevice::Discard(uint64_t offset, uint64_t length) {
  VSS_RETURN_IF_ERROR(CheckWritable());
  VSS_RETURN_IF_ERROR(CheckRange(offset, length));
  if (length == 0) return Status();
  return DoDiscard(offset, length);
}

// Flush is allowed on read-only devices (it has nothing to do there, but a
// caller flushing everything it holds need not special-case them).
Status BlockDevice::Flush() { return DoFlush(); }

StatusOr<std::vector<Extent>> BlockDevice::Extents(uint64_t offset,
                                                   uint64_t length) {
  VSS_RETURN_IF_ERROR(CheckRange(offset, length));
  if (length == 0) return std::vector<Extent>();
  return DoExtents(offset, length);
}

Status BlockDevice::Allocate(uint64_t offset, uint64_t length) {
  VSS_RETURN_IF_ERROR(CheckWritable());
  VSS_RETURN_IF_ERROR(CheckRange(offset, length));
  if (length == 0) return Status();
  return DoAllocate(offset, length);
}

}  // namespace vss
