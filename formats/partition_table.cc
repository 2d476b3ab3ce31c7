// MBR and GPT parsing. On-disk layouts (all integers little-endian):
//
// MBR / EBR sector (512 bytes):
//   446  4 entries of 16 bytes: 0 status (0x00 or 0x80), 4 type,
//        8 first LBA (u32), 12 sector count (u32)
//   510  signature 0x55 0xaa
//   In an EBR, entry 0 is a logical partition (first LBA relative to the
//   EBR) and entry 1 links to the next EBR (first LBA relative to the start
//   of the extended partition).
//
// GPT header (at LBA 1; the backup at the last LBA):
//   0 "EFI PART", 8 revision, 12 header size (92..sector), 16 header CRC32
//   (computed with this field zero, over header-size bytes), 24 MyLBA,
//   32 AlternateLBA, 40 FirstUsableLBA, 48 LastUsableLBA, 56 disk GUID,
//   72 PartitionEntryLBA, 80 NumberOfPartitionEntries,
//   84 SizeOfPartitionEntry (128 * 2^n), 88 PartitionEntryArrayCRC32.
// GPT entry: 0 type GUID, 16 unique GUID, 32 first LBA, 40 last LBA
//   (inclusive), 48 attributes, 56 name (UTF-16LE). A GUID on disk has its
//   first three fields little-endian and the last eight bytes as they are.
#include "vss/formats/partition_table.h"

#include <array>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>

namespace vss {
namespace {

constexpr uint32_t kMbrSector = 512;
constexpr size_t kEntryTable = 446;
constexpr int kMaxLogical = 128;               // EBRs followed at most
constexpr uint64_t kMaxEntryArray = 4u << 20;  // bytes of GPT entries

uint16_t Le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}
uint32_t Le32(const uint8_t* p) {
  return Le16(p) | uint32_t{Le16(p + 2)} << 16;
}
uint64_t Le64(const uint8_t* p) {
  return Le32(p) | uint64_t{Le32(p + 4)} << 32;
}

struct MbrEntry {
  uint8_t status = 0;
  uint8_t type = 0;
  uint32_t first = 0;
  uint32_t count = 0;
  bool used() const { return type != 0 && count != 0; }
};

MbrEntry EntryAt(const std::vector<uint8_t>& sector, int i) {
  const uint8_t* p = sector.data() + kEntryTable + 16 * i;
  return {p[0], p[4], Le32(p + 8), Le32(p + 12)};
}

bool HasSignature(const std::vector<uint8_t>& sector) {
  return sector[510] == 0x55 && sector[511] == 0xaa;
}

bool IsExtended(uint8_t type) {
  return type == 0x05 || type == 0x0f || type == 0x85;
}

// Sector 0 of a whole-device FAT, NTFS or exFAT filesystem also ends in
// 0x55aa; its boot code is not a partition table.
bool IsFilesystemBootSector(const std::vector<uint8_t>& s) {
  bool jump = (s[0] == 0xeb && s[2] == 0x90) || s[0] == 0xe9;
  if (!jump) return false;
  auto at = [&](size_t off, const char* text) {
    return std::memcmp(s.data() + off, text, std::strlen(text)) == 0;
  };
  return at(3, "NTFS    ") || at(3, "EXFAT   ") || at(54, "FAT") ||
         at(82, "FAT32");
}

std::string HexType(uint8_t type) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", type);
  return buf;
}

// The text form of a GUID stored mixed-endian.
std::string GuidText(const uint8_t* p) {
  char buf[40];
  std::snprintf(buf, sizeof buf,
                "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", Le32(p),
                Le16(p + 4), Le16(p + 6), p[8], p[9], p[10], p[11], p[12],
                p[13], p[14], p[15]);
  return buf;
}

// Reads and checks one device's table; holds what every step needs.
class Reader {
 public:
  explicit Reader(BlockDevice& dev) : dev_(dev) {}

  StatusOr<PartitionTable> Read();

 private:
  // Messages name what is wrong; ReadPartitionTable adds the device.
  static Status Corrupt(const std::string& what) {
    return CorruptionError(what);
  }
  StatusOr<std::vector<uint8_t>> ReadBytes(uint64_t offset, uint64_t length);
  // Adds a partition of `count` sectors from `first` after checking that it
  // lies after the first sector and inside the device.
  Status Add(uint32_t index, uint64_t first, uint64_t count, uint32_t sector,
             std::string type);

  StatusOr<PartitionTable> ReadMbr(const std::vector<uint8_t>& mbr);
  Status ReadLogical(const MbrEntry& extended);
  StatusOr<PartitionTable> ReadGpt();
  // Reads the header at `lba` and its entries into table_.
  Status ReadGptAt(uint32_t sector, uint64_t lba);

  BlockDevice& dev_;
  PartitionTable table_;
};

StatusOr<std::vector<uint8_t>> Reader::ReadBytes(uint64_t offset,
                                                 uint64_t length) {
  if (offset > dev_.size() || length > dev_.size() - offset) {
    return Corrupt("the partition table points past the end of the device (" +
                   std::to_string(offset) + "+" + std::to_string(length) +
                   " of " + std::to_string(dev_.size()) + " bytes)");
  }
  std::vector<uint8_t> buf(static_cast<size_t>(length));
  VSS_RETURN_IF_ERROR(dev_.Read(offset, buf));
  return buf;
}

Status Reader::Add(uint32_t index, uint64_t first, uint64_t count,
                   uint32_t sector, std::string type) {
  std::string what = "partition " + std::to_string(index) + " (sectors " +
                     std::to_string(first) + "+" + std::to_string(count) + ")";
  if (first == 0) return Corrupt(what + " overlaps the partition table");
  uint64_t sectors = dev_.size() / sector;
  if (first >= sectors || count > sectors - first) {
    return Corrupt(what + " passes the end of the device (" +
                   std::to_string(dev_.size()) + " bytes)");
  }
  table_.partitions.push_back(
      {index, first * sector, count * sector, std::move(type)});
  return OkStatus();
}

StatusOr<PartitionTable> Reader::Read() {
  if (dev_.size() < kMbrSector) return PartitionTable{};
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> mbr, ReadBytes(0, kMbrSector));
  if (!HasSignature(mbr) || IsFilesystemBootSector(mbr)) {
    return PartitionTable{};
  }
  for (int i = 0; i < 4; ++i) {
    uint8_t status = EntryAt(mbr, i).status;
    // Boot code of something else, not a table (as libblkid decides).
    if (status != 0x00 && status != 0x80) return PartitionTable{};
  }
  for (int i = 0; i < 4; ++i) {
    if (EntryAt(mbr, i).type == 0xee) return ReadGpt();
  }
  return ReadMbr(mbr);
}

StatusOr<PartitionTable> Reader::ReadMbr(const std::vector<uint8_t>& mbr) {
  table_.scheme = PartitionScheme::kMbr;
  table_.sector_size = kMbrSector;
  std::optional<MbrEntry> extended;
  for (int i = 0; i < 4; ++i) {
    MbrEntry e = EntryAt(mbr, i);
    if (!e.used()) continue;
    VSS_RETURN_IF_ERROR(Add(static_cast<uint32_t>(i + 1), e.first, e.count,
                            kMbrSector, HexType(e.type)));
    if (IsExtended(e.type)) {
      if (extended) return Corrupt("the MBR has two extended partitions");
      extended = e;
      table_.partitions.pop_back();  // a container, not an image
    }
  }
  if (extended) VSS_RETURN_IF_ERROR(ReadLogical(*extended));
  return table_;
}

// Follows the chain of EBRs of the extended partition `ext`.
Status Reader::ReadLogical(const MbrEntry& ext) {
  uint64_t ext_end = uint64_t{ext.first} + ext.count;
  std::set<uint64_t> seen;
  uint64_t ebr = ext.first;
  for (uint32_t index = 5;; ++index) {
    if (!seen.insert(ebr).second) return Corrupt("the chain of EBRs loops");
    if (seen.size() > kMaxLogical) {
      return Corrupt("more than " + std::to_string(kMaxLogical) +
                     " logical partitions");
    }
    VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> sector,
                         ReadBytes(ebr * kMbrSector, kMbrSector));
    if (!HasSignature(sector)) {
      return Corrupt("the EBR at sector " + std::to_string(ebr) +
                     " has no 0x55aa signature");
    }
    MbrEntry logical = EntryAt(sector, 0);
    if (logical.used()) {
      uint64_t first = ebr + logical.first;
      if (logical.first == 0 || first + logical.count > ext_end) {
        return Corrupt("logical partition " + std::to_string(index) +
                       " lies outside its extended partition");
      }
      VSS_RETURN_IF_ERROR(
          Add(index, first, logical.count, kMbrSector, HexType(logical.type)));
    }
    MbrEntry next = EntryAt(sector, 1);
    if (!next.used()) return OkStatus();
    ebr = uint64_t{ext.first} + next.first;
    if (next.first == 0 || ebr >= ext_end) {
      return Corrupt("the EBR chain leaves its extended partition");
    }
  }
}

StatusOr<PartitionTable> Reader::ReadGpt() {
  table_.scheme = PartitionScheme::kGpt;
  Status first_error;
  for (uint32_t sector : {512u, 4096u}) {
    if (dev_.size() < 2 * uint64_t{sector}) continue;
    table_.sector_size = sector;
    VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> sig, ReadBytes(sector, 8));
    if (std::memcmp(sig.data(), "EFI PART", 8) != 0) continue;
    Status primary = ReadGptAt(sector, 1);
    if (primary.ok()) return table_;
    // The spec's recovery: the backup header at the last LBA.
    table_.partitions.clear();
    Status backup = ReadGptAt(sector, dev_.size() / sector - 1);
    if (backup.ok()) return table_;
    if (primary.code() != StatusCode::kCorruption) return primary;
    return Corrupt("primary GPT damaged (" + primary.message() +
                   ") and backup unusable (" + backup.message() + ")");
  }
  // No primary header: the backup alone (512-byte sectors).
  if (dev_.size() >= 2 * uint64_t{kMbrSector}) {
    table_.sector_size = kMbrSector;
    Status backup = ReadGptAt(kMbrSector, dev_.size() / kMbrSector - 1);
    if (backup.ok()) return table_;
  }
  return Corrupt("protective MBR without a GPT header");
}

Status Reader::ReadGptAt(uint32_t sector, uint64_t lba) {
  std::string where = "GPT header at LBA " + std::to_string(lba);
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> h, ReadBytes(lba * sector, sector));
  if (std::memcmp(h.data(), "EFI PART", 8) != 0) {
    return CorruptionError(where + ": no EFI PART signature");
  }
  uint32_t header_size = Le32(&h[12]);
  if (header_size < 92 || header_size > sector) {
    return CorruptionError(where + ": header size " +
                           std::to_string(header_size));
  }
  uint32_t crc = Le32(&h[16]);
  std::memset(&h[16], 0, 4);
  if (Crc32({h.data(), header_size}) != crc) {
    return CorruptionError(where + ": header CRC32 mismatch");
  }
  uint64_t sectors = dev_.size() / sector;
  uint64_t my_lba = Le64(&h[24]);
  uint64_t first_usable = Le64(&h[40]);
  uint64_t last_usable = Le64(&h[48]);
  uint64_t entries_lba = Le64(&h[72]);
  uint32_t count = Le32(&h[80]);
  uint32_t entry_size = Le32(&h[84]);
  if (my_lba != lba)
    return CorruptionError(where + ": MyLBA is " + std::to_string(my_lba));
  if (first_usable > last_usable || last_usable >= sectors) {
    return CorruptionError(
        where + ": usable LBAs " + std::to_string(first_usable) + ".." +
        std::to_string(last_usable) + " do not fit the device");
  }
  if (entry_size < 128 || entry_size > 4096 || entry_size % 8 != 0 ||
      uint64_t{count} * entry_size > kMaxEntryArray) {
    return CorruptionError(where + ": " + std::to_string(count) +
                           " entries of " + std::to_string(entry_size) +
                           " bytes");
  }
  if (entries_lba == 0 || entries_lba >= sectors) {
    return CorruptionError(where + ": entry array LBA " +
                           std::to_string(entries_lba));
  }
  uint64_t array_bytes = uint64_t{count} * entry_size;
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> entries,
                       ReadBytes(entries_lba * sector, array_bytes));
  if (Crc32(entries) != Le32(&h[88])) {
    return CorruptionError(where + ": partition entries CRC32 mismatch");
  }
  static constexpr std::array<uint8_t, 16> kUnused{};
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* e = entries.data() + uint64_t{i} * entry_size;
    if (std::memcmp(e, kUnused.data(), 16) == 0) continue;
    uint64_t first = Le64(e + 32), last = Le64(e + 40);
    if (first > last || first < first_usable || last > last_usable) {
      return CorruptionError(where + ": partition " + std::to_string(i + 1) +
                             " (LBA " + std::to_string(first) + ".." +
                             std::to_string(last) +
                             ") lies outside the usable LBAs");
    }
    VSS_RETURN_IF_ERROR(
        Add(i + 1, first, last - first + 1, sector, GuidText(e)));
  }
  return OkStatus();
}

}  // namespace

std::string_view PartitionSchemeName(PartitionScheme scheme) {
  switch (scheme) {
    case PartitionScheme::kMbr:
      return "mbr";
    case PartitionScheme::kGpt:
      return "gpt";
    case PartitionScheme::kNone:
      break;
  }
  return "none";
}

uint32_t Crc32(std::span<const uint8_t> data) {
  static const std::array<uint32_t, 256> kTable = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xffffffffu;
  for (uint8_t b : data) crc = kTable[(crc ^ b) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

StatusOr<PartitionTable> ReadPartitionTable(BlockDevice& dev) {
  StatusOr<PartitionTable> table = Reader(dev).Read();
  if (!table.ok() && table.status().code() == StatusCode::kCorruption) {
    return table.status().WithContext(dev.name());
  }
  return table;
}

}  // namespace vss
