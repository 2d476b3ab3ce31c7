// Volume: an open volume of a Store. It is the live volume as a BlockDevice:
// every write, write-zeroes and discard goes through copy-on-write, so that
// before a chunk is first modified after the newest shadow was taken its old
// contents are preserved in the diff area (durably, when any shadow of the
// volume is persistent, before the modification reaches the image). Under
// a persistent shadow a write may complete before it reaches the image: it
// is then pending in memory, visible to reads, issued to the image after one
// diff-area sync shared with other writes, and durable once Flush() returns.
// Pending writes reach the image in the order they completed.
//
// Shadows of the volume are read through read-only BlockDevices made by
// OpenShadow(). Structural operations (shadow create, delete, revert) go
// through the Store; they hold the volume's writes while they run.
//
// Thread safety: reads, writes and shadow reads may run from many threads at
// once. A Volume is owned by its Store.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vss/base/guid.h"
#include "vss/base/status.h"
#include "vss/engine/store.h"
#include "vss/engine/types.h"
#include "vss/formats/block_device.h"

namespace vss::engine {

class VolumeState;  // private: engine/volume_state.h

struct VerifyReport {
  uint64_t records_checked = 0;   // diff-area records read and verified
  uint64_t bytes_checked = 0;     // chunk bytes they hold
  std::vector<std::string> errors;  // one line each; empty when all good
};

struct VolumeStats {
  uint64_t preserved_chunks = 0;     // index entries over all epochs
  uint64_t index_memory_bytes = 0;   // memory the in-memory index holds
  uint64_t diff_used_bytes = 0;      // bytes of live records
  uint64_t diff_allocated_bytes = 0; // bytes the segment files occupy
  uint32_t segments = 0;
  // Write-behind: completed writes not yet issued to the image, and the
  // memory they hold (data included); bounded by the write-behind limits,
  // whatever the length of the writes, zeroes and discards.
  uint64_t pending_writes = 0;
  uint64_t pending_memory_bytes = 0;
};

class Volume final : public BlockDevice {
 public:
  ~Volume() override;

  const Guid& id() const;
  // The volume as the store recorded it when it was opened.
  VolumeInfo info() const;
  uint32_t chunk_size() const;

  // A read-only view of shadow `shadow_id` of this volume. kNotFound if the
  // shadow is not one of this volume's. Reads of preserved chunks check
  // checksums; a damaged record is kCorruption naming the shadow and chunk.
  // Once the shadow is deleted, reads fail with kNotFound.
  StatusOr<std::unique_ptr<BlockDevice>> OpenShadow(const Guid& shadow_id);

  // Extents written since shadow `from` (to shadow `to`, or to the live
  // volume when absent), merged and clipped to the volume size.
  // kInvalidArgument if `to` is older than `from` or of another volume.
  StatusOr<std::vector<ChangedExtent>> ChangedExtents(
      const Guid& from, std::optional<Guid> to);

  // Reads and checks every record shadow `shadow_id` depends on.
  StatusOr<VerifyReport> Verify(const Guid& shadow_id);

  VolumeStats Stats();

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override;
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override;
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override;
  Status DoDiscard(uint64_t offset, uint64_t length) override;
  Status DoFlush() override;
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override;

 private:
  friend class Store;
  friend class VolumeState;
  explicit Volume(std::unique_ptr<VolumeState> state);
  VolumeState& state() { return *state_; }

  std::unique_ptr<VolumeState> state_;
};

}  // namespace vss::engine
