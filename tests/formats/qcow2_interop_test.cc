// The qcow2 driver against qemu-img, the reference: images qemu-img makes
// (many option combinations, then partial, zero and discard writes by
// qemu-io) read back as `qemu-img convert -O raw` does; after random
// writes, zero writes and discards through the driver they pass `qemu-img
// check` with no errors and no leaks and `qemu-img compare` equal to an
// in-memory model. Skipped when qemu-img is absent.

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "qcow2_test_util.h"
#include "vss/formats/registry.h"
#include "vss/testing/pattern.h"
#include "vss/testing/status_matchers.h"
#include "vss/testing/temp_dir.h"

namespace vss {
namespace {

using qcow2_test::ExpectCleanCheck;
using qcow2_test::MustRun;
using qcow2_test::ReadWholeFile;
using qcow2_test::WriteWholeFile;
using testing::Pattern;
using testing::TempDir;

constexpr uint64_t kSize = 4 * 1024 * 1024 + 1536;  // not a cluster multiple

const ImageDriver& Qcow2() { return **DriverRegistry::Default().Find("qcow2"); }

// A guest image with data, zeroes and a tail.
std::vector<uint8_t> SourceBytes() {
  std::vector<uint8_t> bytes(kSize, 0);
  std::vector<uint8_t> a = Pattern(700000, 1), b = Pattern(900000, 2);
  std::copy(a.begin(), a.end(), bytes.begin() + 4096);
  std::copy(b.begin(), b.end(), bytes.begin() + 2500000);
  std::fill(bytes.end() - 1000, bytes.end(), 0x77);
  return bytes;
}

std::vector<uint8_t> ReadAll(BlockDevice& dev) {
  std::vector<uint8_t> out(dev.size());
  EXPECT_THAT(dev.Read(0, out), testing::IsOk());
  return out;
}

// The image's bytes as qemu-img reads them.
std::vector<uint8_t> QemuRaw(const TempDir& dir, const std::string& image) {
  const std::string raw = dir.File("qemu-view.raw");
  MustRun("rm -f " + raw + " && qemu-img convert -O raw " + image + " " + raw);
  return ReadWholeFile(raw);
}

// Random writes, zero writes and discards on `dev` and `model`; the seed
// is printed.
void RandomOps(BlockDevice& dev, std::vector<uint8_t>& model, uint32_t seed,
               int ops, uint64_t max_len) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < ops; ++i) {
    const uint64_t len = 1 + rng() % max_len;
    const uint64_t off = rng() % (dev.size() - len + 1);
    const int kind = static_cast<int>(rng() % 10);
    if (kind < 6) {
      std::vector<uint8_t> data = Pattern(len, static_cast<uint32_t>(rng()));
      ASSERT_THAT(dev.Write(off, data), testing::IsOk());
      std::copy(data.begin(), data.end(), model.begin() + off);
    } else if (kind < 8) {
      ASSERT_THAT(dev.WriteZeroes(off, len), testing::IsOk());
      std::fill_n(model.begin() + off, len, 0);
    } else if (kind < 9) {
      ASSERT_THAT(dev.Discard(off, len), testing::IsOk());
      std::fill_n(model.begin() + off, len, 0);
    } else {
      ASSERT_THAT(dev.Flush(), testing::IsOk());
    }
  }
}

// After a clean close: qemu-img check is clean and compare equals `model`.
void ExpectQemuAgrees(const TempDir& dir, const std::string& image,
                      const std::vector<uint8_t>& model) {
  ExpectCleanCheck(image);
  const std::string raw = dir.File("model.raw");
  WriteWholeFile(raw, model);
  std::string out;
  EXPECT_EQ(
      qcow2_test::Run("qemu-img compare -F raw " + image + " " + raw, &out), 0)
      << out;
}

struct QemuImage {
  std::string name;
  std::string convert;  // options of qemu-img convert
  bool snapshot = false;
};

void PrintTo(const QemuImage& p, std::ostream* os) { *os << p.name; }

class Qcow2QemuImageTest : public ::testing::TestWithParam<QemuImage> {};

// qemu-img convert, then qemu-io partial, zero and discard writes (zero
// clusters, subclusters, copy on write of snapshot clusters).
std::string MakeQemuImage(const TempDir& dir, const QemuImage& p) {
  const std::string src = dir.File("src.raw");
  const std::string image = dir.File("image.qcow2");
  WriteWholeFile(src, SourceBytes());
  MustRun("qemu-img convert -f raw -O qcow2 " + p.convert + " " + src + " " +
          image);
  if (p.snapshot) MustRun("qemu-img snapshot -c first " + image);
  MustRun(
      "qemu-io -f qcow2 -c 'write -P 0x5a 1000 3000' -c 'write -z 65536 65536'"
      " -c 'write -z 200000 4096' -c 'discard 2621440 131072'"
      " -c 'write -P 0x33 3145728 70000' " +
      image);
  return image;
}

TEST_P(Qcow2QemuImageTest, ReadsAsQemuAndWritesPassQemuCheck) {
  VSS_REQUIRE_QEMU_IMG();
  TempDir dir;
  const std::string image = MakeQemuImage(dir, GetParam());
  std::vector<uint8_t> expected = QemuRaw(dir, image);
  {
    auto dev = Qcow2().Open({.path = image, .writable = false});
    ASSERT_THAT(dev, testing::IsOk());
    ASSERT_EQ((*dev)->size(), expected.size());
    EXPECT_TRUE(ReadAll(**dev) == expected);
  }
  {
    auto dev = Qcow2().Open({.path = image});
    ASSERT_THAT(dev, testing::IsOk());
    RandomOps(**dev, expected, 7, 60, 200000);
    ASSERT_THAT((*dev)->Flush(), testing::IsOk());
    EXPECT_TRUE(ReadAll(**dev) == expected);
  }
  ExpectQemuAgrees(dir, image, expected);
}

INSTANTIATE_TEST_SUITE_P(
    Qemu, Qcow2QemuImageTest,
    ::testing::Values(
        QemuImage{"Cluster512", "-o cluster_size=512"},
        QemuImage{"Cluster4K", "-o cluster_size=4k"},
        QemuImage{"Cluster64K", "-o cluster_size=64k"},
        QemuImage{"Cluster2M", "-o cluster_size=2M"},
        QemuImage{"CompressedZlib", "-c"},
        QemuImage{"CompressedZlib4K", "-c -o cluster_size=4k"},
        QemuImage{"CompressedZstd", "-c -o compression_type=zstd"},
        QemuImage{"ExtendedL2", "-o extended_l2=on,cluster_size=64k"},
        QemuImage{"ExtendedL2Compressed", "-c -o extended_l2=on"},
        QemuImage{"Version2", "-o compat=0.10"},
        QemuImage{"PreallocMetadata", "-o preallocation=metadata"},
        QemuImage{"RefcountBits1", "-o refcount_bits=1"},
        QemuImage{"RefcountBits64", "-o refcount_bits=64,cluster_size=512"},
        QemuImage{"LazyRefcounts", "-o lazy_refcounts=on"},
        QemuImage{"Snapshot", "", true},
        QemuImage{"SnapshotVersion2", "-o compat=0.10", true}),
    [](const auto& info) { return info.param.name; });

TEST(Qcow2BackingTest, ChainOfQcow2OverQcow2OverRawReadsAndWritesAsQemu) {
  VSS_REQUIRE_QEMU_IMG();
  TempDir dir;
  WriteWholeFile(dir.File("base.raw"), SourceBytes());
  MustRun("cd " + dir.path() +
          " && qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2"
          " && qemu-io -f qcow2 -c 'write -P 0x11 30000 100000' -c 'write -z "
          "600000 70000' mid.qcow2"
          " && qemu-img create -q -f qcow2 -o cluster_size=4k -b mid.qcow2 -F "
          "qcow2 top.qcow2"
          " && qemu-io -f qcow2 -c 'write -P 0x22 90000 5000' top.qcow2");
  const std::string top = dir.File("top.qcow2");
  const std::vector<uint8_t> base_before = ReadWholeFile(dir.File("base.raw"));
  const std::vector<uint8_t> mid_before = ReadWholeFile(dir.File("mid.qcow2"));
  std::vector<uint8_t> expected = QemuRaw(dir, top);
  {
    auto dev = Qcow2().Open({.path = top});
    ASSERT_THAT(dev, testing::IsOk());
    EXPECT_TRUE(ReadAll(**dev) == expected);
    RandomOps(**dev, expected, 11, 80, 20000);
    EXPECT_TRUE(ReadAll(**dev) == expected);
    // Extents: what reads as data is reported allocated.
    auto extents = (*dev)->Extents(0, (*dev)->size());
    ASSERT_THAT(extents, testing::IsOk());
    for (const Extent& e : *extents) {
      if (e.allocated) continue;
      EXPECT_TRUE(std::all_of(expected.begin() + e.offset,
                              expected.begin() + e.offset + e.length,
                              [](uint8_t b) { return b == 0; }))
          << "hole at " << e.offset;
    }
  }
  ExpectQemuAgrees(dir, top, expected);
  EXPECT_TRUE(ReadWholeFile(dir.File("base.raw")) == base_before);
  EXPECT_TRUE(ReadWholeFile(dir.File("mid.qcow2")) == mid_before);
}

struct CreateCase {
  std::string name;
  DriverOptions options;
};

void PrintTo(const CreateCase& c, std::ostream* os) { *os << c.name; }

class Qcow2CreateTest : public ::testing::TestWithParam<CreateCase> {};

TEST_P(Qcow2CreateTest, ImagesVssWritesPassQemuCheckAndCompare) {
  VSS_REQUIRE_QEMU_IMG();
  TempDir dir;
  const std::string image = dir.File("new.qcow2");
  std::vector<uint8_t> model(kSize, 0);
  {
    auto dev = Qcow2().Create(
        {.path = image, .size = kSize, .options = GetParam().options});
    ASSERT_THAT(dev, testing::IsOk());
    RandomOps(**dev, model, 3, 80, 300000);
    // Sequential large writes (the contiguous allocation path).
    std::vector<uint8_t> big = Pattern(1 << 20, 5);
    ASSERT_THAT((*dev)->Write(1 << 20, big), testing::IsOk());
    std::copy(big.begin(), big.end(), model.begin() + (1 << 20));
    ASSERT_THAT((*dev)->Flush(), testing::IsOk());
  }
  ExpectQemuAgrees(dir, image, model);
  auto reopened = Qcow2().Open({.path = image, .writable = false});
  ASSERT_THAT(reopened, testing::IsOk());
  EXPECT_TRUE(ReadAll(**reopened) == model);
}

INSTANTIATE_TEST_SUITE_P(
    Create, Qcow2CreateTest,
    ::testing::Values(
        CreateCase{"Default", {}},
        CreateCase{"Cluster512", {{"cluster_size", "512"}}},
        CreateCase{"Cluster4K", {{"cluster_size", "4K"}}},
        CreateCase{"Cluster2M", {{"cluster_size", "2M"}}},
        CreateCase{"ExtendedL2",
                   {{"extended_l2", "on"}, {"cluster_size", "32K"}}},
        CreateCase{"Zstd", {{"compression_type", "zstd"}}},
        CreateCase{"Prealloc", {{"preallocation", "metadata"}}},
        CreateCase{"RefcountBits1", {{"refcount_bits", "1"}}},
        // 512 B clusters and 64-bit refcounts: the refcount table grows.
        CreateCase{"RefcountTableGrows",
                   {{"refcount_bits", "64"}, {"cluster_size", "512"}}},
        CreateCase{"TinyCache", {{"cache_size", "1"}, {"cluster_size", "4K"}}}),
    [](const auto& info) { return info.param.name; });

TEST(Qcow2CreateTest, BackingFileOptionMakesAChildQemuReads) {
  VSS_REQUIRE_QEMU_IMG();
  TempDir dir;
  WriteWholeFile(dir.File("base.raw"), SourceBytes());
  std::vector<uint8_t> model = SourceBytes();
  const std::string image = dir.File("child.qcow2");
  {
    auto dev = Qcow2().Create(
        {.path = image,
         .size = kSize,
         .options = {{"backing_file", "base.raw"}, {"backing_format", "raw"}}});
    ASSERT_THAT(dev, testing::IsOk());
    EXPECT_TRUE(ReadAll(**dev) == model);
    RandomOps(**dev, model, 5, 60, 100000);
  }
  ExpectQemuAgrees(dir, image, model);
  auto info = Qcow2().Info(image);
  ASSERT_THAT(info, testing::IsOk());
  EXPECT_EQ(info->backing_file, "base.raw");
  EXPECT_EQ(info->virtual_size, kSize);
  EXPECT_EQ(info->cluster_size, 65536u);
  EXPECT_EQ(info->specific.front(),
            (std::pair<std::string, std::string>{"compat", "1.1"}));
}

}  // namespace
}  // namespace vss
