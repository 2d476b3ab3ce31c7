// ReadPartitionTable: MBR (primary and logical) and GPT tables built byte by
// byte here, damaged variants of each, and images partitioned by sfdisk
// (util-linux) compared with sfdisk's own reading of them.
#include "vss/formats/partition_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "vss/formats/fault_device.h"
#include "vss/formats/memory_device.h"
#include "vss/formats/raw_image.h"

namespace vss {
namespace {

constexpr uint64_t kMiB = 1 << 20;
// The Linux filesystem type GUID and its on-disk (mixed-endian) bytes.
constexpr const char* kLinuxType = "0fc63daf-8483-4772-8e79-3d69d8477de4";
constexpr uint8_t kLinuxTypeBytes[16] = {0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84,
                                         0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69,
                                         0xd8, 0x47, 0x7d, 0xe4};

void PutLe32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutLe64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  PutLe32(b, at, static_cast<uint32_t>(v));
  PutLe32(b, at + 4, static_cast<uint32_t>(v >> 32));
}

// A disk image built in memory, sector by sector (512-byte sectors).
class Disk {
 public:
  explicit Disk(uint64_t size) : bytes_(size) {}

  // MBR-style entry `i` (0..3) of the sector at `lba`, with its signature.
  void Entry(uint64_t lba, int i, uint8_t type, uint32_t first, uint32_t count,
             uint8_t status = 0) {
    size_t at = lba * 512 + 446 + 16 * i;
    bytes_[at] = status;
    bytes_[at + 4] = type;
    PutLe32(bytes_, at + 8, first);
    PutLe32(bytes_, at + 12, count);
    bytes_[lba * 512 + 510] = 0x55;
    bytes_[lba * 512 + 511] = 0xaa;
  }

  // A GPT header at `lba` with `count` 128-byte entries at `entries_lba`;
  // each (first, last) pair of `parts` fills the next slot.
  void Gpt(uint64_t lba, uint64_t entries_lba,
           const std::vector<std::pair<uint64_t, uint64_t>>& parts,
           uint32_t count = 128) {
    uint64_t sectors = bytes_.size() / 512;
    // A huge declared count gets a small array: it must be refused unread.
    std::vector<uint8_t> entries(
        std::min<uint64_t>(uint64_t{count} * 128, 1 << 20));
    for (size_t i = 0; i < parts.size(); ++i) {
      std::memcpy(&entries[i * 128], kLinuxTypeBytes, 16);
      entries[i * 128 + 16] = static_cast<uint8_t>(i + 1);  // unique GUID
      PutLe64(entries, i * 128 + 32, parts[i].first);
      PutLe64(entries, i * 128 + 40, parts[i].second);
    }
    std::memcpy(&bytes_[entries_lba * 512], entries.data(), entries.size());
    std::vector<uint8_t> h(512);
    std::memcpy(h.data(), "EFI PART", 8);
    PutLe32(h, 8, 0x10000);
    PutLe32(h, 12, 92);
    PutLe64(h, 24, lba);
    PutLe64(h, 32, lba == 1 ? sectors - 1 : 1);
    PutLe64(h, 40, 34);
    PutLe64(h, 48, sectors - 34);
    PutLe64(h, 72, entries_lba);
    PutLe32(h, 80, count);
    PutLe32(h, 84, 128);
    PutLe32(h, 88, Crc32(entries));
    PutLe32(h, 16, Crc32({h.data(), 92}));
    std::memcpy(&bytes_[lba * 512], h.data(), 512);
  }

  // Protective MBR and primary and backup GPTs.
  void FullGpt(const std::vector<std::pair<uint64_t, uint64_t>>& parts) {
    uint64_t sectors = bytes_.size() / 512;
    Entry(0, 0, 0xee, 1, static_cast<uint32_t>(sectors - 1));
    Gpt(1, 2, parts);
    Gpt(sectors - 1, sectors - 33, parts);
  }

  uint8_t& at(uint64_t offset) { return bytes_[offset]; }

  std::unique_ptr<MemoryDevice> Device() const {
    auto dev = std::make_unique<MemoryDevice>(bytes_.size(), "disk.img");
    EXPECT_TRUE(dev->Write(0, bytes_).ok());
    return dev;
  }

 private:
  std::vector<uint8_t> bytes_;
};

StatusOr<PartitionTable> Parse(const Disk& disk) {
  return ReadPartitionTable(*disk.Device());
}

TEST(PartitionTableTest, Crc32_MatchesZlibCheckValue) {
  const char* text = "123456789";
  EXPECT_EQ(Crc32({reinterpret_cast<const uint8_t*>(text), 9}), 0xcbf43926u);
}

TEST(PartitionTableTest, EmptyDevice_HasNoTable) {
  auto t = Parse(Disk(4 * kMiB));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->scheme, PartitionScheme::kNone);
  EXPECT_TRUE(t->partitions.empty());
}

TEST(PartitionTableTest, DeviceSmallerThanASector_HasNoTable) {
  MemoryDevice dev(100);
  auto t = ReadPartitionTable(dev);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->scheme, PartitionScheme::kNone);
}

TEST(PartitionTableTest, Mbr_PrimaryPartitions_InEntryOrder) {
  Disk d(64 * kMiB);
  d.Entry(0, 0, 0x83, 2048, 20480, 0x80);
  d.Entry(0, 2, 0x0c, 40960, 8192);  // entry 2 empty, entry 3 used
  auto t = Parse(d);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->scheme, PartitionScheme::kMbr);
  ASSERT_EQ(t->partitions.size(), 2u);
  EXPECT_EQ(t->partitions[0], (Partition{1, 2048 * 512, 20480 * 512, "0x83"}));
  EXPECT_EQ(t->partitions[1], (Partition{3, 40960 * 512, 8192 * 512, "0x0c"}));
}

TEST(PartitionTableTest, Mbr_LogicalPartitions_FollowTheEbrChain) {
  Disk d(64 * kMiB);
  d.Entry(0, 0, 0x83, 2048, 8192);
  d.Entry(0, 1, 0x05, 16384, 65536);      // extended: 16384..81919
  d.Entry(16384, 0, 0x83, 2048, 4096);    // logical 5 at 18432
  d.Entry(16384, 1, 0x05, 10240, 10240);  // next EBR at 26624
  d.Entry(26624, 0, 0x82, 2048, 4096);    // logical 6 at 28672
  auto t = Parse(d);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->partitions.size(), 3u);
  EXPECT_EQ(t->partitions[0].index, 1u);
  EXPECT_EQ(t->partitions[1], (Partition{5, 18432 * 512, 4096 * 512, "0x83"}));
  EXPECT_EQ(t->partitions[2], (Partition{6, 28672 * 512, 4096 * 512, "0x82"}));
}

TEST(PartitionTableTest, Mbr_EbrChainThatLoops_IsCorruption) {
  Disk d(64 * kMiB);
  d.Entry(0, 0, 0x05, 2048, 65536);
  d.Entry(2048, 0, 0x83, 2048, 100);
  d.Entry(2048, 1, 0x05, 4096, 100);
  d.Entry(6144, 0, 0x83, 2048, 100);
  d.Entry(6144, 1, 0x05, 4096, 100);  // points at itself
  auto t = Parse(d);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kCorruption);
  EXPECT_NE(t.status().message().find("disk.img"), std::string::npos);
  EXPECT_NE(t.status().message().find("loops"), std::string::npos)
      << t.status().message();
}

TEST(PartitionTableTest, Mbr_PartitionPastTheEnd_IsCorruptionNamingIt) {
  Disk d(8 * kMiB);
  d.Entry(0, 1, 0x83, 2048, 1 << 20);
  auto t = Parse(d);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kCorruption);
  EXPECT_NE(t.status().message().find("partition 2"), std::string::npos)
      << t.status().message();
}

TEST(PartitionTableTest, Mbr_PartitionAtSectorZero_IsCorruption) {
  Disk d(8 * kMiB);
  d.Entry(0, 0, 0x83, 0, 100);
  EXPECT_EQ(Parse(d).status().code(), StatusCode::kCorruption);
}

TEST(PartitionTableTest, BadStatusBytes_AreBootCodeNotATable) {
  Disk d(8 * kMiB);
  d.Entry(0, 0, 0x83, 2048, 100, /*status=*/0x41);
  auto t = Parse(d);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->scheme, PartitionScheme::kNone);
}

TEST(PartitionTableTest, FatBootSectorOnWholeDevice_IsNotATable) {
  Disk d(8 * kMiB);
  d.Entry(0, 0, 0, 0, 0);  // only the signature
  d.at(0) = 0xeb;
  d.at(1) = 0x3c;
  d.at(2) = 0x90;
  std::memcpy(&d.at(54), "FAT16   ", 8);
  auto t = Parse(d);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->scheme, PartitionScheme::kNone);
}

TEST(PartitionTableTest, Gpt_EntriesBySlotWithTypeGuids) {
  Disk d(16 * kMiB);
  d.FullGpt({{2048, 4095}, {4096, 20000}});
  auto t = Parse(d);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->scheme, PartitionScheme::kGpt);
  ASSERT_EQ(t->partitions.size(), 2u);
  EXPECT_EQ(t->partitions[0],
            (Partition{1, 2048 * 512, 2048 * 512, kLinuxType}));
  EXPECT_EQ(t->partitions[1],
            (Partition{2, 4096 * 512, 15905 * 512, kLinuxType}));
}

TEST(PartitionTableTest, Gpt_DamagedPrimaryHeader_UsesTheBackup) {
  Disk d(16 * kMiB);
  d.FullGpt({{2048, 4095}});
  d.at(512 + 40) ^= 1;  // FirstUsableLBA: header CRC no longer matches
  auto t = Parse(d);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->partitions.size(), 1u);
  EXPECT_EQ(t->partitions[0].start, 2048u * 512);
}

TEST(PartitionTableTest, Gpt_BothHeadersDamaged_IsCorruptionNamingTheCrc) {
  Disk d(16 * kMiB);
  d.FullGpt({{2048, 4095}});
  d.at(512 + 40) ^= 1;
  d.at(16 * kMiB - 512 + 40) ^= 1;
  auto t = Parse(d);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kCorruption);
  EXPECT_NE(t.status().message().find("header CRC32"), std::string::npos)
      << t.status().message();
}

TEST(PartitionTableTest, Gpt_DamagedEntries_AreCaughtByTheirCrc) {
  Disk d(16 * kMiB);
  d.Gpt(1, 2, {{2048, 4095}});
  d.Entry(0, 0, 0xee, 1, 32767);
  d.at(2 * 512 + 32) ^= 0x10;  // first LBA of entry 1
  auto t = Parse(d);           // no backup GPT either
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("entries CRC32"), std::string::npos)
      << t.status().message();
}

TEST(PartitionTableTest, Gpt_PartitionOutsideUsableLbas_IsCorruption) {
  Disk d(16 * kMiB);
  d.FullGpt({{10, 4095}});  // starts inside the table
  auto t = Parse(d);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kCorruption);
  EXPECT_NE(t.status().message().find("usable"), std::string::npos);
}

TEST(PartitionTableTest, Gpt_HugeEntryCount_IsRefusedBeforeReading) {
  Disk d(16 * kMiB);
  d.Entry(0, 0, 0xee, 1, 32767);
  d.Gpt(1, 2, {}, /*count=*/1u << 30);
  auto t = Parse(d);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kCorruption);
}

TEST(PartitionTableTest, ProtectiveMbrWithoutGpt_IsCorruption) {
  Disk d(16 * kMiB);
  d.Entry(0, 0, 0xee, 1, 32767);
  EXPECT_EQ(Parse(d).status().code(), StatusCode::kCorruption);
}

TEST(PartitionTableTest, ReadError_IsPassedOn) {
  Disk d(16 * kMiB);
  d.FullGpt({{2048, 4095}});
  FaultDevice dev(d.Device());
  dev.SetRule({.ops = static_cast<uint32_t>(DeviceOp::kRead), .nth = 2});
  auto t = ReadPartitionTable(dev);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kIoError);
}

// Random damage to a valid MBR+EBR and GPT: any result but a crash, and
// every partition returned lies inside the device.
TEST(PartitionTableTest, RandomDamage_NeverCrashesOrEscapesTheDevice) {
  uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (int round = 0; round < 400; ++round) {
    Disk d(4 * kMiB);
    if (round % 2) {
      d.FullGpt({{40, 99}, {100, 2000}});
    } else {
      d.Entry(0, 0, 0x05, 2048, 4096);
      d.Entry(2048, 0, 0x83, 64, 64);
      d.Entry(2048, 1, 0x05, 1024, 512);
      d.Entry(3072, 0, 0x83, 64, 64);
    }
    for (int k = 0; k < 4; ++k) {
      uint64_t sector = std::vector<uint64_t>{0, 1, 2, 2048, 3072}[rng() % 5];
      d.at(sector * 512 + rng() % 512) = static_cast<uint8_t>(rng());
    }
    auto t = Parse(d);
    if (!t.ok()) continue;
    for (const Partition& p : t->partitions) {
      EXPECT_GT(p.length, 0u);
      EXPECT_LE(p.start + p.length, 4 * kMiB);
    }
  }
}

// ---- images partitioned by sfdisk -------------------------------------------

class SfdiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v sfdisk >/dev/null 2>&1") != 0) {
      GTEST_SKIP() << "sfdisk (util-linux fdisk package) is not installed";
    }
    path_ = dir_.path() + "/disk.img";
  }
  // Partitions a new 64 MiB image with an sfdisk script.
  void Partition(const std::string& script) {
    auto img = RawImage::Create(path_, 64 * kMiB);
    ASSERT_TRUE(img.ok());
    img->reset();
    std::string cmd =
        "printf '" + script + "' | sfdisk -q " + path_ + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  StatusOr<PartitionTable> Read() {
    auto img = RawImage::Open(path_, {.read_only = true, .lock = false});
    if (!img.ok()) return img.status();
    return ReadPartitionTable(**img);
  }
  // "start size" lines (in sectors) of sfdisk's own dump of the table.
  std::string SfdiskView() {
    std::string cmd =
        "sfdisk -d " + path_ +
        " | sed -n 's/.*start= *\\([0-9]*\\), size= *\\([0-9]*\\).*/\\1 \\2/p'";
    std::string out;
    FILE* f = popen(cmd.c_str(), "r");
    char buf[256];
    while (f && fgets(buf, sizeof buf, f)) out += buf;
    if (f) pclose(f);
    return out;
  }
  static std::string View(const PartitionTable& t) {
    std::string out;
    for (const auto& p : t.partitions) {
      out += std::to_string(p.start / 512) + " " +
             std::to_string(p.length / 512) + "\n";
    }
    return out;
  }

  testing::TempDir dir_;
  std::string path_;
};

TEST_F(SfdiskTest, Gpt_MatchesSfdisk) {
  Partition("label: gpt\\n,10MiB,L\\n,20MiB,L\\n,,L\\n");
  auto t = Read();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->scheme, PartitionScheme::kGpt);
  ASSERT_EQ(t->partitions.size(), 3u);
  EXPECT_EQ(t->partitions[0].type, kLinuxType);
  EXPECT_EQ(View(*t), SfdiskView());
}

TEST_F(SfdiskTest, MbrWithLogicals_MatchesSfdisk) {
  Partition("label: dos\\n,8MiB,83\\n,8MiB,c\\n,,E\\n,10MiB,83\\n,,82\\n");
  auto t = Read();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->scheme, PartitionScheme::kMbr);
  ASSERT_EQ(t->partitions.size(), 4u);
  EXPECT_EQ(t->partitions[2].index, 5u);
  EXPECT_EQ(t->partitions[3].index, 6u);
  EXPECT_EQ(t->partitions[3].type, "0x82");
  // sfdisk -d lists the extended container too; we do not.
  std::string expected;
  std::string all = SfdiskView();
  size_t line = 0;
  for (size_t pos = 0; pos < all.size(); ++line) {
    size_t end = all.find('\n', pos) + 1;
    if (line != 2) expected += all.substr(pos, end - pos);
    pos = end;
  }
  EXPECT_EQ(View(*t), expected);
}

}  // namespace
}  // namespace vss
