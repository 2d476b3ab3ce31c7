// The qcow2 on-disk layout (QEMU's docs/interop/qcow2.txt), versions 2 and
// 3: the header, its extensions, and the bit fields of L1, L2 and refcount
// entries. Pure functions on bytes, shared by the driver (qcow2_image.cc),
// the checker (qcow2_check.cc) and the export writer (qcow2_writer.cc).
// Every integer on disk is big-endian.
//
// ParseHeader validates everything a reader relies on before any table is
// touched: magic, version, cluster bits 9..21, refcount order 0..6, table
// offsets cluster-aligned and table sizes that fit the file's address space,
// header length, extensions in bounds. A header it accepts can still name
// features this build does not support (encryption, external data files,
// unknown incompatible bits): SupportProblem() names them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vss/base/status.h"

namespace vss::qcow2 {

inline constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
inline constexpr uint32_t kMinClusterBits = 9;   // 512 B
inline constexpr uint32_t kMaxClusterBits = 21;  // 2 MiB
inline constexpr uint32_t kV2HeaderLength = 72;
inline constexpr uint32_t kV3HeaderLength = 104;  // without compression_type
inline constexpr uint32_t kV3HeaderLengthWithCompression = 112;
// QEMU refuses L1 tables above 32 MiB and refcount tables above 8 MiB; so do we
// (a hostile header cannot make us allocate more).
inline constexpr uint64_t kMaxL1Bytes = 32ull << 20;
inline constexpr uint64_t kMaxRefcountTableBytes = 8ull << 20;
inline constexpr uint64_t kMaxBackingNameBytes = 1023;

// incompatible_features bits.
inline constexpr uint64_t kIncompatDirty = 1ull << 0;
inline constexpr uint64_t kIncompatCorrupt = 1ull << 1;
inline constexpr uint64_t kIncompatExternalData = 1ull << 2;
inline constexpr uint64_t kIncompatCompressionType = 1ull << 3;
inline constexpr uint64_t kIncompatExtendedL2 = 1ull << 4;
inline constexpr uint64_t kIncompatKnown = (1ull << 5) - 1;
// compatible_features bits.
inline constexpr uint64_t kCompatLazyRefcounts = 1ull << 0;
// autoclear_features bits.
inline constexpr uint64_t kAutoclearBitmaps = 1ull << 0;
inline constexpr uint64_t kAutoclearRawExternal = 1ull << 1;

// Header extension types.
inline constexpr uint32_t kExtEnd = 0;
inline constexpr uint32_t kExtBackingFormat = 0xe2792aca;
inline constexpr uint32_t kExtFeatureNames = 0x6803f857;
inline constexpr uint32_t kExtBitmaps = 0x23852875;
inline constexpr uint32_t kExtEncryption = 0x0537be77;
inline constexpr uint32_t kExtDataFile = 0x44415441;

// compression_type values.
inline constexpr uint8_t kCompressionZlib = 0;
inline constexpr uint8_t kCompressionZstd = 1;

// L1 entry: bits 9..55 the L2 table's offset, bit 63 "copied" (refcount 1).
inline constexpr uint64_t kL1OffsetMask = 0x00fffffffffffe00ull;
inline constexpr uint64_t kCopied = 1ull << 63;
// Standard L2 entry: bit 0 reads as zero (v3), bits 9..55 the cluster's
// offset, bit 62 compressed, bit 63 copied.
inline constexpr uint64_t kL2Zero = 1ull << 0;
inline constexpr uint64_t kL2OffsetMask = 0x00fffffffffffe00ull;
inline constexpr uint64_t kL2Compressed = 1ull << 62;
// Refcount table entry: bits 9..63 the refcount block's offset.
inline constexpr uint64_t kRefTableOffsetMask = 0xfffffffffffffe00ull;
// Extended L2: 32 subclusters per cluster; the second word's bits 0..31
// say "allocated", bits 32..63 "reads as zero".
inline constexpr uint32_t kSubclusters = 32;

struct HeaderExtension {
  uint32_t type = 0;
  std::vector<uint8_t> data;
};

struct Header {
  uint32_t version = 3;
  uint64_t backing_file_offset = 0;
  uint32_t backing_file_size = 0;
  uint32_t cluster_bits = 16;
  uint64_t size = 0;  // guest-visible bytes
  uint32_t crypt_method = 0;
  uint32_t l1_size = 0;  // entries
  uint64_t l1_table_offset = 0;
  uint64_t refcount_table_offset = 0;
  uint32_t refcount_table_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  // Version 3 (zero in version 2, refcount_order 4).
  uint64_t incompatible_features = 0;
  uint64_t compatible_features = 0;
  uint64_t autoclear_features = 0;
  uint32_t refcount_order = 4;
  uint32_t header_length = kV3HeaderLengthWithCompression;
  uint8_t compression_type = kCompressionZlib;

  // Extensions in file order, the end marker excluded; unknown ones kept.
  std::vector<HeaderExtension> extensions;
  std::string backing_file;    // empty when there is none
  std::string backing_format;  // from kExtBackingFormat, may be empty

  uint64_t cluster_size() const { return 1ull << cluster_bits; }
  bool extended_l2() const { return (incompatible_features & kIncompatExtendedL2) != 0; }
  // Bytes of one L2 entry: 8, or 16 with extended L2.
  uint32_t l2_entry_bytes() const { return extended_l2() ? 16 : 8; }
  uint64_t l2_entries() const { return cluster_size() / l2_entry_bytes(); }
  uint32_t refcount_bits() const { return 1u << refcount_order; }
  uint64_t refcount_block_entries() const { return cluster_size() * 8 / refcount_bits(); }
  uint64_t subcluster_size() const { return cluster_size() / kSubclusters; }
  // The number of L1 entries `size` needs.
  uint64_t l1_entries_needed() const;
};

// Parses the first bytes of an image file (the header cluster: at least
// the header, its extensions and the backing file name when they lie in
// it). `file_size` bounds the offsets. kCorruption (or kUnsupported for a
// version other than 2 and 3) naming the field; never throws.
[[nodiscard]] StatusOr<Header> ParseHeader(std::span<const uint8_t> bytes,
                                           uint64_t file_size);

// A one-line reason this build cannot open the image with `writable`
// access, or nullopt: encryption, an external data file, unknown
// incompatible feature bits, a compression type other than zlib/zstd, a
// corrupt-marked image opened for writing.
std::optional<std::string> SupportProblem(const Header& h, bool writable);

// The header cluster's bytes for `h`: header, extensions (backing format
// from h.backing_format, the others from h.extensions unless their type is
// the backing format's), end marker, then the backing file name, whose
// offset and size are written into the header. kInvalidArgument when it
// does not fit in one cluster.
[[nodiscard]] StatusOr<std::vector<uint8_t>> SerializeHeader(const Header& h);

// Compressed L2 entry fields (bits 0..x-1 host offset, x..61 the count of
// additional 512-byte sectors, x = 62 - (cluster_bits - 8)).
struct CompressedRef {
  uint64_t host_offset = 0;
  uint64_t max_bytes = 0;  // bytes the compressed data may span from host_offset
};
CompressedRef DecodeCompressed(uint64_t l2_entry, uint32_t cluster_bits);
uint64_t EncodeCompressed(uint64_t host_offset, uint64_t bytes, uint32_t cluster_bits);

// Reads and writes one refcount of `bits` width at index `i` of a block.
uint64_t GetRefcount(std::span<const uint8_t> block, uint64_t i, uint32_t refcount_order);
void SetRefcount(std::span<uint8_t> block, uint64_t i, uint32_t refcount_order, uint64_t value);

// Big-endian helpers.
inline uint64_t Be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}
inline uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline void PutBe64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void PutBe32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void PutBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

}  // namespace vss::qcow2
