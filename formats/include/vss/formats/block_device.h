// BlockDevice: the one interface to anything that stores a volume's bytes.
//
// A device has a fixed size in bytes and supports byte-granular reads and
// writes (no alignment required), writing zeroes, discarding (the range then
// reads as zeroes), flushing to the medium, and reporting which ranges are
// allocated. Public methods are non-virtual: they check the request once
// (range inside the device, writable device) and then call the Do* hooks,
// which may trust their arguments (nbdkit style). A wrapper that changes
// only some operations derives from ForwardingDevice.
//
// Durability contract: a write, write-zeroes or discard that returned OK may
// still be lost by a crash or power loss until a later Flush() returns OK.
// Flush() makes every earlier completed write durable on the medium.
//
// Space: a device whose medium can fill up (a sparse image on a file system)
// may fail a write with kNoSpace. Allocate() reserves the space of a range
// beforehand, so that a later write inside it cannot fail for lack of
// space; a caller that acknowledges a write before issuing it (write-behind)
// allocates first.
//
// Thread safety: implementations in this library are safe for concurrent
// calls from many threads unless their header says otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vss/base/status.h"

namespace vss {

// A range of a device and whether it holds data. Unallocated ranges (holes)
// read as zeroes.
struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool allocated = false;
  friend bool operator==(const Extent&, const Extent&) = default;
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;
  BlockDevice(const BlockDevice&) = delete;
  BlockDevice& operator=(const BlockDevice&) = delete;

  uint64_t size() const { return size_; }
  bool read_only() const { return read_only_; }
  // A short name for messages ("disk.img", "shadow 1a2b…").
  const std::string& name() const { return name_; }

  // Reads buf.size() bytes at `offset`. kOutOfRange if the range passes the
  // end; kIoError (or kCorruption) if the medium fails; buf is then undefined.
  [[nodiscard]] Status Read(uint64_t offset, std::span<uint8_t> buf);
  // Writes buf at `offset`. kOutOfRange past the end, kFailedPrecondition
  // on a read-only device (nothing written).
  [[nodiscard]] Status Write(uint64_t offset, std::span<const uint8_t> buf);
  // Makes [offset, offset+length) read as zeroes (may deallocate).
  [[nodiscard]] Status WriteZeroes(uint64_t offset, uint64_t length);
  // Discards the range: afterwards it reads as zeroes and may be unallocated.
  [[nodiscard]] Status Discard(uint64_t offset, uint64_t length);
  // Makes all completed writes durable (fdatasync for files).
  [[nodiscard]] Status Flush();
  // Describes [offset, offset+length) as consecutive extents that cover it
  // exactly, in order, adjacent extents of equal kind merged. A device may
  // report a hole as allocated (never the reverse).
  [[nodiscard]] StatusOr<std::vector<Extent>> Extents(uint64_t offset,
                                                      uint64_t length);
  // Reserves the medium's space for [offset, offset+length) without
  // changing what the range reads as, so that a later Write() inside the
  // range cannot fail with kNoSpace (until a WriteZeroes() or Discard() of
  // it gives the space back). kNoSpace when the medium is full (some of the
  // range may then be allocated, which changes nothing that reads show);
  // kOutOfRange and kFailedPrecondition as for Write(). Devices that cannot
  // run out of space, or cannot reserve it, return OK (the default).
  [[nodiscard]] Status Allocate(uint64_t offset, uint64_t length);

 protected:
  BlockDevice(std::string name, uint64_t size, bool read_only)
      : name_(std::move(name)), size_(size), read_only_(read_only) {}

  virtual Status DoRead(uint64_t offset, std::span<uint8_t> buf) = 0;
  virtual Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) = 0;
  virtual Status DoWriteZeroes(uint64_t offset, uint64_t length) = 0;
  virtual Status DoDiscard(uint64_t offset, uint64_t length) = 0;
  virtual Status DoFlush() = 0;
  virtual StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                                  uint64_t length) = 0;
  virtual Status DoAllocate(uint64_t /*offset*/, uint64_t /*length*/) {
    return Status();
  }

 private:
  Status CheckRange(uint64_t offset, uint64_t length) const;
  Status CheckWritable() const;

  std::string name_;
  uint64_t size_;
  bool read_only_;
};

// Forwards every operation to a target device it does not own unless given
// ownership. Subclasses override the Do* hooks they change.
class ForwardingDevice : public BlockDevice {
 public:
  explicit ForwardingDevice(BlockDevice* target)
      : BlockDevice(target->name(), target->size(), target->read_only()),
        target_(target) {}
  explicit ForwardingDevice(std::unique_ptr<BlockDevice> target)
      : ForwardingDevice(target.get()) {
    owned_ = std::move(target);
  }

  BlockDevice* target() const { return target_; }

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override {
    return target_->Read(offset, buf);
  }
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override {
    return target_->Write(offset, buf);
  }
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override {
    return target_->WriteZeroes(offset, length);
  }
  Status DoDiscard(uint64_t offset, uint64_t length) override {
    return target_->Discard(offset, length);
  }
  Status DoFlush() override { return target_->Flush(); }
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override {
    return target_->Extents(offset, length);
  }
  Status DoAllocate(uint64_t offset, uint64_t length) override {
    return target_->Allocate(offset, length);
  }

 private:
  BlockDevice* target_;
  std::unique_ptr<BlockDevice> owned_;
};

}  // namespace vss
