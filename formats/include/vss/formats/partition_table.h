// Partition tables: the MBR or GPT table at the start of a disk image.
//
// ReadPartitionTable() reads the table of any BlockDevice and returns its
// partitions as byte ranges of the device, so that a caller can present
// each one as an image of its own. Logical sectors are 512 bytes; a GPT is
// also looked for with 4096-byte sectors (native 4Kn images).
//
//   MBR  the four primary entries of sector 0 (numbered 1-4) and the logical
//        partitions of an extended partition (type 0x05, 0x0f or 0x85),
//        followed along their chain of EBRs (numbered 5, 6, ... in chain
//        order, as Linux does). Empty entries (type 0 or no sectors) are
//        skipped. Type text: "0x83".
//   GPT  a protective MBR (an entry of type 0xee), then the GPT header at
//        LBA 1 (signature "EFI PART", header CRC32, MyLBA == 1) and its
//        entry array (entries CRC32). When the primary header or its entries
//        fail a check, the backup header at the last LBA is used instead.
//        Partition N is entry slot N-1; unused slots (zero type GUID) are
//        skipped. Type text: the type GUID, "0fc63daf-8483-4772-8e79-...".
//
// Every field read from the disk is checked before it is used: partitions
// that pass the end of the device, overlap the table, a chain of EBRs that
// loops or is too long, entry counts or sizes out of bounds. Such a table
// is kCorruption with a message naming the device and what is wrong, never
// a crash. A device without a table (no 0x55aa signature, or sector 0 is
// the boot sector of a FAT/NTFS/exFAT filesystem written on the whole
// device) has scheme kNone and no partitions.
//
// Thread safety: a plain function; it only reads the device.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vss/formats/block_device.h"
#include "vss/base/status.h"

namespace vss {

enum class PartitionScheme { kNone, kMbr, kGpt };

// "none", "mbr" or "gpt".
std::string_view PartitionSchemeName(PartitionScheme scheme);

struct Partition {
  uint32_t index = 0;   // 1-based number, as Linux names /dev/sdaN
  uint64_t start = 0;   // byte offset on the device
  uint64_t length = 0;  // bytes, > 0
  std::string type;     // "0x83" (MBR) or the type GUID (GPT)
  friend bool operator==(const Partition&, const Partition&) = default;
};

struct PartitionTable {
  PartitionScheme scheme = PartitionScheme::kNone;
  uint32_t sector_size = 512;
  std::vector<Partition> partitions;  // ordered by index
};

// Reads the partition table of `dev`. I/O errors of the device are passed
// on; a damaged table is kCorruption (see above). A device smaller than one
// sector has no table.
StatusOr<PartitionTable> ReadPartitionTable(BlockDevice& dev);

// The CRC-32 of the GPT (IEEE 802.3, reflected, as zlib's crc32()).
uint32_t Crc32(std::span<const uint8_t> data);

}  // namespace vss
