// Diff-area records: encoding and decoding, kept apart from I/O so that the
// parser can be tested and fuzzed on byte arrays. The byte layout is
// specified in engine/DIFF-AREA-FORMAT.md; keep the two in step.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vss/base/guid.h"
#include "vss/base/status.h"

namespace vss::engine {

inline constexpr uint64_t kRecordAlign = 4096;
inline constexpr size_t kRecordHeaderBytes = 72;
inline constexpr uint32_t kMaxChunkSize = 1 << 20;

enum class Codec : uint8_t { kZero = 0, kRaw = 1, kZstd = 2 };

struct RecordHeader {
  Guid volume_id;
  uint64_t chunk = 0;
  uint64_t epoch = 0;
  uint32_t raw_len = 0;     // bytes of the chunk
  uint32_t stored_len = 0;  // payload bytes after the header
  Codec codec = Codec::kZero;
  uint64_t payload_hash = 0;  // xxh3-64 of the payload (0 for kZero)
};

// Bytes a record with `stored_len` payload bytes occupies (4 KiB aligned).
inline uint64_t RecordBytes(uint32_t stored_len) {
  return (kRecordHeaderBytes + stored_len + kRecordAlign - 1) / kRecordAlign *
         kRecordAlign;
}

// Writes the 72-byte header (with its own checksum) into out[0..72).
void EncodeHeader(const RecordHeader& h, uint8_t* out);

// Parses a header from at least kRecordHeaderBytes bytes. kCorruption when the
// magic, the header checksum, the codec or the lengths are wrong. Never
// trusts a field: raw_len <= kMaxChunkSize, stored_len <= raw_len (kRaw:
// equal, kZero: zero).
StatusOr<RecordHeader> DecodeHeader(std::span<const uint8_t> bytes);

uint64_t PayloadHash(std::span<const uint8_t> payload);

// Encodes the record preserving `chunk` (raw bytes `data`) into `out`, which
// must have room for RecordBytes(data.size()) bytes. All-zero data becomes a
// kZero record; data that zstd does not shrink by at least one 4 KiB block
// is stored raw. Only the record's own bytes are written (padding zeroed);
// it occupies RecordBytes(result.stored_len) bytes. Thread safe.
RecordHeader EncodeRecord(const Guid& volume_id, uint64_t chunk, uint64_t epoch,
                          std::span<const uint8_t> data, uint8_t* out);

// Builds the record preserving `chunk` (raw bytes `data`) and appends it to
// `out` (padded to 4 KiB). All-zero data becomes a kZero record; data that
// zstd does not shrink by at least one 4 KiB block is stored raw.
// Returns the header that was written.
RecordHeader AppendRecord(const Guid& volume_id, uint64_t chunk,
                          uint64_t epoch, std::span<const uint8_t> data,
                          std::vector<uint8_t>* out);

// Appends a kZero record for a chunk of `raw_len` bytes.
RecordHeader AppendZeroRecord(const Guid& volume_id, uint64_t chunk,
                              uint64_t epoch, uint32_t raw_len,
                              std::vector<uint8_t>* out);

// Decodes the payload of a record whose header `h` was checked into `out`
// (h.raw_len bytes). kCorruption if the payload hash or decompression fails.
Status DecodePayload(const RecordHeader& h, std::span<const uint8_t> payload,
                     std::span<uint8_t> out);

bool IsAllZero(std::span<const uint8_t> data);

}  // namespace vss::engine
