// Tests of the qcow2 check and repair (formats/qcow2/qcow2_check.h) against
// qemu-img as the reference: images made by qemu-img check clean, images
// damaged on purpose get qemu-img's verdict (its corruptions are our
// errors, its leaks our leaks), and a repaired image is clean for both and
// reads the same. Tests that need qemu-img skip, saying so, without it.
#include "qcow2_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "vss/base/file.h"
#include "vss/base/mem_file_system.h"
#include "vss/formats/registry.h"
#include "vss/testing/status_matchers.h"
#include "vss/testing/temp_dir.h"

namespace vss::qcow2 {
namespace {

using ::testing::HasSubstr;
using ::vss::testing::StatusIs;
using ::vss::testing::TempDir;

bool HaveQemu() {
  return std::system(
             "qemu-img --version >/dev/null 2>&1 && "
             "qemu-io --version >/dev/null 2>&1") == 0;
}

#define SKIP_WITHOUT_QEMU()                                \
  if (!HaveQemu())                                         \
  GTEST_SKIP() << "qemu-img or qemu-io is not installed; " \
                  "the comparison with QEMU is skipped"

// Runs a shell command; its standard output, or a test failure.
std::string Run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) {
    ADD_FAILURE() << "popen failed: " << command;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

void Sh(const std::string& command) {
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
}

// qemu-img check's counts.
struct QemuVerdict {
  uint64_t corruptions = 0;
  uint64_t leaks = 0;
};

uint64_t JsonCount(const std::string& json, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + key + "\": ([0-9]+)")))
    return 0;
  return std::stoull(m[1]);
}

QemuVerdict QemuCheck(const std::string& path) {
  std::string json = Run("qemu-img check --output=json '" + path + "'");
  EXPECT_THAT(json, HasSubstr("\"check-errors\": 0")) << path;
  return {JsonCount(json, "corruptions"), JsonCount(json, "leaks")};
}

std::string RawSha(const std::string& path) {
  return Run("qemu-img convert -O raw '" + path + "' '" + path +
             ".raw' && sha256sum < '" + path + ".raw' && rm -f '" + path +
             ".raw'");
}

StatusOr<ImageCheckResult> CheckPath(const std::string& path,
                                     bool repair = false) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<File> f,
                       FileSystem::Default()->Open(path, false));
  CheckOptions options;
  options.name = path;
  options.repair = repair;
  return CheckImage(*f, options);
}

std::string Describe(const ImageCheckResult& r) {
  std::string s = std::to_string(r.errors.size()) + " errors, " +
                  std::to_string(r.leaks) + " leaks";
  for (const std::string& e : r.errors) s += "\n  " + e;
  return s;
}

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Makes a qcow2 image with qemu-img and writes a fixed pattern into it.
void MakeImage(const std::string& path, const std::string& options,
               const std::string& size = "4M") {
  std::filesystem::remove(path);
  Sh("qemu-img create -q -f qcow2 -o '" + options + "' '" + path + "' " + size);
  Sh("qemu-io -f qcow2 -c 'write -P 0xab 0 8k' -c 'write -P 0x5c 20k 24k' "
     "-c 'write -P 0x11 1M 4k' -c 'write -z 2M 8k' '" +
     path + "' >/dev/null");
}

void ExpectBothClean(const std::string& path) {
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path));
  EXPECT_TRUE(r.clean()) << path << ": " << Describe(r);
  EXPECT_GT(r.checked_units, 0u);
  QemuVerdict q = QemuCheck(path);
  EXPECT_EQ(q.corruptions, 0u) << path;
  EXPECT_EQ(q.leaks, 0u) << path;
}

// Our verdict and qemu-img's on the same file agree.
void ExpectSameVerdict(const std::string& path) {
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path));
  QemuVerdict q = QemuCheck(path);
  EXPECT_EQ(r.errors.size(), q.corruptions) << Describe(r);
  EXPECT_EQ(r.leaks, q.leaks) << Describe(r);
}

// The seed of a random test: $VSS_SEED replays a run, else a fresh one.
uint64_t Seed() {
  const char* v = std::getenv("VSS_SEED");
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 0)
                                    : std::random_device{}();
}

std::string TestdataDir() { return VSS_TESTDATA_DIR "/qcow2"; }

TEST(Qcow2Check, TestdataImages_CheckClean) {
  int images = 0;
  for (const auto& e : std::filesystem::directory_iterator(TestdataDir())) {
    if (e.path().extension() != ".qcow2") continue;
    ++images;
    VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(e.path()));
    EXPECT_TRUE(r.clean()) << e.path() << ": " << Describe(r);
    EXPECT_GT(r.checked_units, 0u) << e.path();
  }
  EXPECT_GE(images, 10);
}

TEST(Qcow2Check, TestdataImages_RawContentMatchesTheirChecksums) {
  SKIP_WITHOUT_QEMU();
  std::ifstream sums(TestdataDir() + "/SHA256SUMS.raw");
  std::string sha, name;
  int lines = 0;
  while (sums >> sha >> name) {
    ++lines;
    TempDir dir;
    std::filesystem::copy(TestdataDir() + "/" + name, dir.File(name));
    if (name == "chain-overlay.qcow2") {
      std::filesystem::copy(TestdataDir() + "/chain-base.qcow2",
                            dir.File("chain-base.qcow2"));
    }
    EXPECT_EQ(RawSha(dir.File(name)).substr(0, 64), sha) << name;
  }
  EXPECT_GE(lines, 10);
}

TEST(Qcow2Check, QemuImagesOfManyLayouts_CheckCleanForBoth) {
  SKIP_WITHOUT_QEMU();
  TempDir dir;
  const std::vector<std::string> layouts = {
      "cluster_size=512",
      "cluster_size=2k",
      "cluster_size=64k",
      "cluster_size=2M",
      "cluster_size=4k,refcount_bits=1",
      "cluster_size=4k,refcount_bits=2",
      "cluster_size=4k,refcount_bits=4",
      "cluster_size=4k,refcount_bits=8",
      "cluster_size=4k,refcount_bits=16",
      "cluster_size=4k,refcount_bits=32",
      "cluster_size=4k,refcount_bits=64",
      "cluster_size=512,refcount_bits=64",
      "cluster_size=16k,extended_l2=on",
      "cluster_size=2M,extended_l2=on",
      "compat=0.10,cluster_size=4k",
      "cluster_size=4k,lazy_refcounts=on",
      "cluster_size=4k,preallocation=metadata",
      "cluster_size=4k,compression_type=zstd",
  };
  for (const std::string& layout : layouts) {
    SCOPED_TRACE(layout);
    const std::string path = dir.File("image.qcow2");
    MakeImage(path, layout);
    ExpectBothClean(path);
  }
}

TEST(Qcow2Check, CompressedBitmapAndSnapshotImages_CheckCleanForBoth) {
  SKIP_WITHOUT_QEMU();
  TempDir dir;
  const std::string plain = dir.File("plain.qcow2");
  MakeImage(plain, "cluster_size=4k");
  for (const char* type : {"zlib", "zstd"}) {
    const std::string path =
        dir.File(std::string("compressed-") + type + ".qcow2");
    Sh("qemu-img convert -q -c -f qcow2 -O qcow2 -o "
       "cluster_size=4k,compression_type=" +
       std::string(type) + " '" + plain + "' '" + path + "'");
    ExpectBothClean(path);
  }
  const std::string bitmap = dir.File("bitmap.qcow2");
  Sh("qemu-img create -q -f qcow2 -o cluster_size=512 '" + bitmap + "' 4M");
  Sh("qemu-img bitmap --add '" + bitmap + "' one");
  Sh("qemu-img bitmap --add -g 512 '" + bitmap + "' two");
  Sh("qemu-io -f qcow2 -c 'write -P 0x3 0 3k' -c 'write 1M 64k' '" + bitmap +
     "' >/dev/null");
  ExpectBothClean(bitmap);
  for (const char* layout :
       {"cluster_size=4k", "cluster_size=512,refcount_bits=2",
        "compat=0.10,cluster_size=64k"}) {
    SCOPED_TRACE(layout);
    const std::string path = dir.File("snapshots.qcow2");
    MakeImage(path, layout);
    Sh("qemu-img snapshot -c one '" + path + "'");
    Sh("qemu-io -f qcow2 -c 'write -P 0xcd 4k 8k' '" + path + "' >/dev/null");
    Sh("qemu-img snapshot -c two '" + path + "'");
    Sh("qemu-io -f qcow2 -c 'write -P 0xef 0 2k' '" + path + "' >/dev/null");
    Sh("qemu-img snapshot -d one '" + path + "'");
    ExpectBothClean(path);
  }
}

// Where the first allocated structures of an image lie, for damage.
struct Layout {
  Header h;
  uint64_t l2_offset = 0;        // the L2 table of L1 entry 0
  uint64_t refblock_offset = 0;  // refcount block 0
};

Layout ReadLayout(const std::vector<uint8_t>& b) {
  Layout l;
  StatusOr<Header> h = ParseHeader(b, b.size());
  EXPECT_TRUE(h.ok()) << h.status().ToString();
  if (!h.ok()) return l;
  l.h = *h;
  l.l2_offset = Be64(&b[l.h.l1_table_offset]) & kL1OffsetMask;
  l.refblock_offset = Be64(&b[l.h.refcount_table_offset]) & kRefTableOffsetMask;
  return l;
}

class Qcow2Damage : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveQemu()) GTEST_SKIP() << "qemu-img or qemu-io is not installed";
    MakeImage(path_, "cluster_size=4k");
    bytes_ = ReadBytes(path_);
    layout_ = ReadLayout(bytes_);
    ASSERT_NE(layout_.l2_offset, 0u);
    data_offset_ = Be64(&bytes_[layout_.l2_offset]) & kL2OffsetMask;
    ASSERT_NE(data_offset_, 0u);
    raw_sha_ = RawSha(path_);
  }
  void SetRefcount(uint64_t cluster, uint64_t value) {
    qcow2::SetRefcount(std::span(bytes_).subspan(layout_.refblock_offset, 4096),
                       cluster, layout_.h.refcount_order, value);
  }
  void Save() { WriteBytes(path_, bytes_); }
  // Repairs; the image is then clean for both checkers and reads the same.
  void RepairAndExpectClean() {
    VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r,
                             CheckPath(path_, /*repair=*/true));
    EXPECT_TRUE(r.clean()) << Describe(r);
    ExpectBothClean(path_);
    EXPECT_EQ(RawSha(path_), raw_sha_);
  }

  TempDir dir_;
  std::string path_ = dir_.File("image.qcow2");
  std::vector<uint8_t> bytes_;
  Layout layout_;
  uint64_t data_offset_ = 0;
  std::string raw_sha_;
};

TEST_F(Qcow2Damage, ZeroedRefcountOfUsedCluster_IsAnErrorLikeQemu) {
  SetRefcount(data_offset_ / 4096, 0);
  Save();
  ExpectSameVerdict(path_);
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path_));
  EXPECT_FALSE(r.errors.empty());
  RepairAndExpectClean();
}

TEST_F(Qcow2Damage, BumpedRefcountOfUsedCluster_IsALeakLikeQemu) {
  SetRefcount(data_offset_ / 4096, 2);
  Save();
  ExpectSameVerdict(path_);
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path_));
  EXPECT_EQ(r.leaks, 1u);
  EXPECT_EQ(r.leaked_bytes, 4096u);
  RepairAndExpectClean();
}

TEST_F(Qcow2Damage, RefcountOfUnusedCluster_IsOnlyALeakAndRepairFreesIt) {
  const uint64_t extra = bytes_.size() / 4096;  // one more cluster at the end
  bytes_.resize(bytes_.size() + 4096, 0);
  SetRefcount(extra, 1);
  Save();
  ExpectSameVerdict(path_);
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path_));
  EXPECT_TRUE(r.errors.empty()) << Describe(r);
  EXPECT_EQ(r.leaks, 1u);
  RepairAndExpectClean();
}

TEST_F(Qcow2Damage, WrongCopiedBit_IsAnErrorLikeQemuAndRepaired) {
  const uint64_t entry = Be64(&bytes_[layout_.l2_offset]);
  PutBe64(&bytes_[layout_.l2_offset], entry & ~kCopied);
  Save();
  ExpectSameVerdict(path_);
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path_));
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], HasSubstr("copied bit clear"));
  RepairAndExpectClean();
}

TEST_F(Qcow2Damage, WrongCopiedBitOfL1Entry_IsAnErrorLikeQemu) {
  const uint64_t at = layout_.h.l1_table_offset;
  PutBe64(&bytes_[at], Be64(&bytes_[at]) & ~kCopied);
  Save();
  ExpectSameVerdict(path_);
  RepairAndExpectClean();
}

TEST_F(Qcow2Damage, DanglingL2Pointer_IsAnErrorLikeQemuAndRepairRefuses) {
  PutBe64(&bytes_[layout_.l2_offset + 8], kCopied | (1ull << 30));
  Save();
  ExpectSameVerdict(path_);
  StatusOr<ImageCheckResult> r = CheckPath(path_, /*repair=*/true);
  EXPECT_THAT(r.status(), StatusIs(StatusCode::kFailedPrecondition,
                                   HasSubstr("past the end of the file")));
  EXPECT_EQ(ReadBytes(path_), bytes_) << "a refused repair wrote to the image";
}

TEST_F(Qcow2Damage, UnalignedL2Pointer_IsAnErrorAndRepairRefuses) {
  PutBe64(&bytes_[layout_.l2_offset + 8], kCopied | (data_offset_ + 512));
  Save();
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path_));
  EXPECT_FALSE(r.errors.empty());
  EXPECT_GT(QemuCheck(path_).corruptions, 0u);
  EXPECT_THAT(CheckPath(path_, true).status(),
              StatusIs(StatusCode::kFailedPrecondition,
                       HasSubstr("not cluster-aligned")));
  EXPECT_EQ(ReadBytes(path_), bytes_);
}

TEST_F(Qcow2Damage, L2PointerOntoTheRefcountTable_IsAnOverlap) {
  PutBe64(&bytes_[layout_.l2_offset + 8],
          kCopied | layout_.h.refcount_table_offset);
  Save();
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path_));
  EXPECT_THAT(r.errors,
              ::testing::Contains(HasSubstr("overlaps other metadata")));
  EXPECT_GT(QemuCheck(path_).corruptions, 0u);
}

TEST_F(Qcow2Damage, RefcountTableEntryZeroed_RepairAddsABlock) {
  PutBe64(&bytes_[layout_.h.refcount_table_offset], 0);
  Save();
  ExpectSameVerdict(path_);
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path_));
  EXPECT_THAT(r.errors,
              ::testing::Contains(HasSubstr("its refcount block is missing")));
  RepairAndExpectClean();
  // The old block is free now, and the new one lies at the old end.
  EXPECT_EQ(ReadBytes(path_).size(), bytes_.size() + 4096);
}

TEST_F(Qcow2Damage, DirtyAndCorruptBits_AreClearedByRepair) {
  PutBe64(&bytes_[72], Be64(&bytes_[72]) | kIncompatDirty | kIncompatCorrupt);
  SetRefcount(data_offset_ / 4096, 3);
  Save();
  RepairAndExpectClean();
  EXPECT_EQ(Be64(&ReadBytes(path_)[72]) & (kIncompatDirty | kIncompatCorrupt),
            0u);
}

TEST_F(Qcow2Damage, DirtyBitOfACleanImage_IsClearedByRepair) {
  PutBe64(&bytes_[72], Be64(&bytes_[72]) | kIncompatDirty);
  Save();
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path_));
  EXPECT_TRUE(r.clean()) << Describe(r);
  RepairAndExpectClean();
  EXPECT_EQ(Be64(&ReadBytes(path_)[72]) & kIncompatDirty, 0u);
}

TEST_F(Qcow2Damage, CleanImage_IsNotWrittenByRepair) {
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path_, true));
  EXPECT_TRUE(r.clean()) << Describe(r);
  EXPECT_EQ(ReadBytes(path_), bytes_);
}

// The damaged image at `path` gets qemu-img's verdict from us; our repair
// makes it clean for both checkers, and it reads as before.
void ExpectRepairedLikeQemu(const std::string& path) {
  const std::string sha = RawSha(path);
  ExpectSameVerdict(path);
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult repaired, CheckPath(path, true));
  EXPECT_TRUE(repaired.clean()) << Describe(repaired);
  ExpectBothClean(path);
  EXPECT_EQ(RawSha(path), sha);
}

TEST(Qcow2Check, SharedClusterCountedOnce_IsAnErrorLikeQemuAndRepaired) {
  SKIP_WITHOUT_QEMU();
  TempDir dir;
  const std::string path = dir.File("snapshots.qcow2");
  std::vector<uint8_t> bytes =
      ReadBytes(TestdataDir() + "/v3-c4k-snapshots.qcow2");
  Layout l = ReadLayout(bytes);
  auto refblock = std::span(bytes).subspan(l.refblock_offset, 4096);
  const uint64_t clusters = bytes.size() / 4096;
  uint64_t shared = 0;
  while (shared < clusters &&
         GetRefcount(refblock, shared, l.h.refcount_order) != 2)
    ++shared;
  ASSERT_LT(shared, clusters) << "no cluster shared with a snapshot";
  SetRefcount(refblock, shared, l.h.refcount_order, 1);
  WriteBytes(path, bytes);
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult r, CheckPath(path));
  EXPECT_FALSE(r.errors.empty());
  ExpectRepairedLikeQemu(path);
}

TEST(Qcow2Check, RefcountDamageOfEveryWidth_IsRepairedCleanForQemu) {
  SKIP_WITHOUT_QEMU();
  for (int bits : {1, 2, 4, 8, 16, 32, 64}) {
    SCOPED_TRACE("refcount_bits " + std::to_string(bits));
    TempDir dir;
    const std::string path = dir.File("image.qcow2");
    const std::string name =
        bits == 16 ? std::string("v3-c4k.qcow2")
                   : "v3-c4k-refcount" + std::to_string(bits) + ".qcow2";
    std::vector<uint8_t> bytes = ReadBytes(TestdataDir() + "/" + name);
    Layout l = ReadLayout(bytes);
    ASSERT_EQ(l.h.refcount_bits(), static_cast<uint32_t>(bits));
    auto refblock = std::span(bytes).subspan(l.refblock_offset, 4096);
    const uint64_t data = Be64(&bytes[l.l2_offset]) & kL2OffsetMask;
    SetRefcount(refblock, data / 4096, l.h.refcount_order, 0);
    // An unused cluster at the end that claims a use: a leak.
    const uint64_t extra = bytes.size() / 4096;
    bytes.resize(bytes.size() + 4096, 0);
    SetRefcount(refblock, extra, l.h.refcount_order, 1);
    WriteBytes(path, bytes);
    ExpectRepairedLikeQemu(path);
  }
}

// Images our repair accepted after random damage to their refcount
// blocks, L1 and L2 tables are clean for qemu-img too, and read the same.
TEST(Qcow2Check, RandomTableDamageRepaired_IsCleanForQemu) {
  SKIP_WITHOUT_QEMU();
  const uint64_t seed = Seed();
  std::cout << "seed " << seed << " (VSS_SEED replays it)" << std::endl;
  std::mt19937_64 rng(seed);
  TempDir dir;
  const std::string path = dir.File("image.qcow2");
  const std::vector<uint8_t> image =
      ReadBytes(TestdataDir() + "/v3-c4k-snapshots.qcow2");
  const Layout l = ReadLayout(image);
  const std::vector<uint64_t> tables = {l.refblock_offset, l.l2_offset,
                                        l.h.l1_table_offset};
  int repaired = 0;
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::vector<uint8_t> bytes = image;
    for (int flips = 1 + rng() % 3; flips > 0; --flips) {
      const uint64_t at = tables[rng() % tables.size()] + rng() % 256;
      bytes[at] ^= 1u << (rng() % 8);
    }
    WriteBytes(path, bytes);
    StatusOr<ImageCheckResult> r = CheckPath(path, true);
    if (!r.ok()) continue;
    ++repaired;
    EXPECT_TRUE(r->clean()) << Describe(*r);
    QemuVerdict q = QemuCheck(path);
    EXPECT_EQ(q.corruptions, 0u);
    EXPECT_EQ(q.leaks, 0u);
  }
  EXPECT_GT(repaired, 0);
}

TEST(ImageDriverRepair, ADriverWithoutRepair_IsUnsupportedNamingThePath) {
  VSS_ASSERT_OK_AND_ASSIGN(const ImageDriver* raw,
                           DriverRegistry::Default().Find("raw"));
  EXPECT_THAT(raw->Repair("/srv/disk.img").status(),
              StatusIs(StatusCode::kUnsupported, HasSubstr("/srv/disk.img")));
}

TEST(Qcow2Check, NotAQcow2File_IsCorruptionNamingTheFile) {
  MemFileSystem fs;
  fs.SetContents("/img", std::vector<uint8_t>(4096, 0x42));
  VSS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> f, fs.Open("/img", false));
  CheckOptions options;
  options.name = "/img";
  EXPECT_THAT(CheckImage(*f, options).status(),
              StatusIs(StatusCode::kCorruption, HasSubstr("/img")));
}

// Prefixes and byte-flipped copies of real images give a result or a
// Status, never a crash; a check alone writes nothing; a repair that is not
// refused leaves an image that checks clean.
TEST(Qcow2Check, DamagedBytes_NeverCrashAndRepairsEndClean) {
  const uint64_t seed = Seed();
  std::cout << "seed " << seed << " (VSS_SEED replays it)" << std::endl;
  std::mt19937_64 rng(seed);
  for (const char* name :
       {"v3-c512.qcow2", "v3-c4k-snapshots.qcow2", "v3-c16k-extl2.qcow2",
        "v3-c4k-compressed-zstd.qcow2", "v3-c4k-refcount1.qcow2",
        "v2-c4k.qcow2"}) {
    SCOPED_TRACE(name);
    const std::vector<uint8_t> image = ReadBytes(TestdataDir() + "/" + name);
    ASSERT_FALSE(image.empty());
    for (int round = 0; round < 150; ++round) {
      std::vector<uint8_t> bytes = image;
      if (round % 3 == 0) bytes.resize(rng() % bytes.size());
      for (int flips = 1 + rng() % 4; flips > 0 && !bytes.empty(); --flips) {
        bytes[rng() % std::min<size_t>(bytes.size(), 64 * 1024)] ^=
            1u << (rng() % 8);
      }
      MemFileSystem fs;
      fs.SetContents("/img", bytes);
      VSS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> f, fs.Open("/img", false));
      CheckOptions options;
      (void)CheckImage(*f, options);
      ASSERT_EQ(fs.Contents("/img"), bytes)
          << "a check without repair wrote, round " << round;
      options.repair = true;
      StatusOr<ImageCheckResult> r = CheckImage(*f, options);
      if (r.ok()) {
        EXPECT_TRUE(r->clean()) << "round " << round << ": " << Describe(*r);
      }
    }
  }
}

// The clusters a check finds with a refcount below their uses ("cluster N").
std::set<std::string> UnderCountedClusters(const ImageCheckResult& r) {
  std::set<std::string> out;
  for (const std::string& e : r.errors) {
    if (e.find(", used ") != std::string::npos)
      out.insert(e.substr(0, e.find(" at ")));
  }
  return out;
}

StatusOr<ImageCheckResult> CheckMem(MemFileSystem& fs, bool repair) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<File> f, fs.Open("/img", false));
  CheckOptions options;
  options.repair = repair;
  return CheckImage(*f, options);
}

// A repair cut short at its Nth write or sync, then a power loss that
// keeps, drops or tears each unsynced write, leaves an image no worse than
// before: no cluster counted below its uses that was not so before, nothing
// a repair cannot fix, and a second repair ends clean.
void ExpectPowerLossSafeRepair(const std::vector<uint8_t>& bytes,
                               uint64_t seed) {
  MemFileSystem fs;
  fs.SetContents("/img", bytes);
  VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult before, CheckMem(fs, false));
  ASSERT_FALSE(UnderCountedClusters(before).empty()) << Describe(before);
  bool completed = false;
  int cuts = 0;
  for (uint64_t n = 1; !completed && n < 200; ++n) {
    SCOPED_TRACE("cut at write or sync " + std::to_string(n));
    MemFileSystem cut;
    cut.SetContents("/img", bytes);
    cut.SetFaultRule({static_cast<uint32_t>(FileOp::kWrite) |
                          static_cast<uint32_t>(FileOp::kSync),
                      n, /*persistent=*/true, IoError("power cut")});
    completed = CheckMem(cut, true).ok();
    cuts += completed ? 0 : 1;
    cut.ClearFaultRule();
    cut.PowerLoss(PowerLossMode::kRandom, seed + n);
    VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult after, CheckMem(cut, false));
    for (const std::string& c : UnderCountedClusters(after)) {
      EXPECT_TRUE(UnderCountedClusters(before).count(c))
          << c << " is newly under-counted";
    }
    VSS_ASSERT_OK_AND_ASSIGN(ImageCheckResult again, CheckMem(cut, true));
    EXPECT_TRUE(again.clean()) << Describe(again);
  }
  EXPECT_TRUE(completed) << "the repair never ran to its end";
  // Raises, lowers, copied bits, header: at least one write and a sync each.
  EXPECT_GE(cuts, 7);
}

TEST(Qcow2Check, RepairCutByPowerLoss_LeavesAnImageNoWorse) {
  const uint64_t seed = Seed();
  std::cout << "seed " << seed << " (VSS_SEED replays it)" << std::endl;
  const std::vector<uint8_t> image =
      ReadBytes(TestdataDir() + "/v3-c4k-snapshots.qcow2");
  Layout l = ReadLayout(image);
  ASSERT_EQ(l.h.cluster_size(), 4096u);
  {
    SCOPED_TRACE("refcounts zeroed and raised, dirty bit set");
    std::vector<uint8_t> bytes = image;
    auto refblock = std::span(bytes).subspan(l.refblock_offset, 4096);
    const uint64_t data = Be64(&bytes[l.l2_offset]) & kL2OffsetMask;
    SetRefcount(refblock, data / 4096, l.h.refcount_order, 0);
    SetRefcount(refblock, l.h.refcount_table_offset / 4096, l.h.refcount_order,
                7);
    SetRefcount(refblock, l.l2_offset / 4096, l.h.refcount_order, 0);
    PutBe64(&bytes[72], Be64(&bytes[72]) | kIncompatDirty);
    ExpectPowerLossSafeRepair(bytes, seed);
  }
  {
    SCOPED_TRACE("refcount table entry zeroed");
    std::vector<uint8_t> bytes = image;
    PutBe64(&bytes[l.h.refcount_table_offset], 0);
    ExpectPowerLossSafeRepair(bytes, seed);
  }
}

}  // namespace
}  // namespace vss::qcow2
