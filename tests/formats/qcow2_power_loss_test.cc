// Crash safety of qcow2::Image on MemFileSystem: a workload of writes (with
// copy on write from a backing device), zero writes, discards and flushes
// is cut at every file sync in turn; the unsynced file operations are then
// kept, dropped or torn at random. The image reopened must hold every byte
// acknowledged before the last completed Flush, and a walk of its tables
// must find no cluster referenced more often than its refcount says (leaks
// are allowed). When qemu-img is installed it checks each cut image too.

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "qcow2_image.h"
#include "qcow2_test_util.h"
#include "vss/base/mem_file_system.h"
#include "vss/formats/memory_device.h"
#include "vss/testing/pattern.h"
#include "vss/testing/status_matchers.h"
#include "vss/testing/temp_dir.h"

namespace vss::qcow2 {
namespace {

using testing::Pattern;

constexpr uint64_t kSize = 512 * 1024 + 512;
constexpr char kPath[] = "/img.qcow2";

std::unique_ptr<BlockDevice> Backing() {
  auto dev = std::make_unique<MemoryDevice>(kSize, "base");
  std::vector<uint8_t> bytes = Pattern(kSize, 42);
  EXPECT_THAT(dev->Write(0, bytes), testing::IsOk());
  return dev;
}

ImageOptions Options(bool writable) {
  ImageOptions o;
  o.writable = writable;
  o.cache_bytes = 4096;  // small: evictions write tables back mid-workload
  o.open_backing = [](const std::string&, const std::string&) {
    return StatusOr<std::unique_ptr<BlockDevice>>(Backing());
  };
  return o;
}

// The clean image the workload starts from.
std::vector<uint8_t> FreshImage(bool extended_l2) {
  MemFileSystem fs;
  auto file = fs.Open(kPath, true);
  EXPECT_THAT(file, testing::IsOk());
  CreateOptions c{.size = kSize,
                  .cluster_bits = extended_l2 ? 14u : 12u,
                  .extended_l2 = extended_l2,
                  .backing_file = "base",
                  .backing_format = "raw"};
  auto image = CreateImage(std::move(*file), kPath, c, Options(true));
  EXPECT_THAT(image, testing::IsOk());
  image->reset();
  return fs.Contents(kPath);
}

struct Models {
  std::vector<uint8_t> current = Pattern(kSize, 42);
  std::vector<uint8_t> durable = current;
  std::vector<bool> touched = std::vector<bool>(kSize, false);
};

// Runs the fixed workload until it ends or an operation fails; true when
// every operation succeeded.
bool Workload(BlockDevice& dev, Models& m) {
  std::mt19937_64 rng(1234);
  for (int i = 0; i < 100; ++i) {
    const uint64_t len = 1 + rng() % 20000;
    const uint64_t off = rng() % (kSize - len);
    const int kind = static_cast<int>(rng() % 8);
    Status s;
    if (kind == 7) {
      s = dev.Flush();
      if (!s.ok()) return false;
      m.durable = m.current;
      std::fill(m.touched.begin(), m.touched.end(), false);
      continue;
    }
    std::vector<uint8_t> data(len, 0);
    if (kind < 5) {
      data = Pattern(len, static_cast<uint32_t>(i));
      s = dev.Write(off, data);
    } else {
      s = kind == 5 ? dev.WriteZeroes(off, len) : dev.Discard(off, len);
    }
    // Acknowledged or not, the range may now hold either contents.
    std::fill_n(m.touched.begin() + off, len, true);
    if (!s.ok()) return false;
    std::copy(data.begin(), data.end(), m.current.begin() + off);
  }
  if (!dev.Flush().ok()) return false;
  m.durable = m.current;
  std::fill(m.touched.begin(), m.touched.end(), false);
  return true;
}

// Counts the references of every cluster (header, tables, data) and
// compares them with the refcounts: a referenced cluster must have a
// refcount at least its references, and one marked copied exactly 1.
void ExpectRefcountsCoverReferences(const std::vector<uint8_t>& file) {
  auto h = ParseHeader(file, file.size());
  ASSERT_THAT(h, testing::IsOk());
  const uint64_t cs = h->cluster_size();
  std::map<uint64_t, uint64_t> refs;
  auto add = [&](uint64_t offset, uint64_t bytes) {
    for (uint64_t c = offset / cs; c <= (offset + bytes - 1) / cs; ++c)
      ++refs[c];
  };
  auto at = [&](uint64_t off) {
    return off + 8 <= file.size() ? Be64(&file[off]) : 0;
  };
  add(0, cs);
  add(h->refcount_table_offset, uint64_t{h->refcount_table_clusters} * cs);
  add(h->l1_table_offset, uint64_t{h->l1_size} * 8);
  std::vector<uint64_t> copied;
  for (uint32_t i = 0; i < h->l1_size; ++i) {
    const uint64_t l2 = at(h->l1_table_offset + i * 8ull) & kL1OffsetMask;
    if (l2 == 0) continue;
    add(l2, cs);
    for (uint64_t j = 0; j < h->l2_entries(); ++j) {
      const uint64_t e = at(l2 + j * h->l2_entry_bytes());
      const uint64_t host = e & kL2OffsetMask;
      if (host == 0 || (e & kL2Compressed)) continue;
      add(host, cs);
      if (e & kCopied) copied.push_back(host / cs);
    }
  }
  std::map<uint64_t, uint64_t> counts;
  for (uint64_t ti = 0; ti < uint64_t{h->refcount_table_clusters} * cs / 8;
       ++ti) {
    const uint64_t block =
        at(h->refcount_table_offset + ti * 8) & kRefTableOffsetMask;
    if (block == 0) continue;
    add(block, cs);
    std::vector<uint8_t> bytes(cs, 0);
    for (uint64_t k = 0; k < cs && block + k < file.size(); ++k)
      bytes[k] = file[block + k];
    for (uint64_t i = 0; i < h->refcount_block_entries(); ++i) {
      uint64_t rc = GetRefcount(bytes, i, h->refcount_order);
      if (rc) counts[ti * h->refcount_block_entries() + i] = rc;
    }
  }
  for (const auto& [cluster, n] : refs) {
    EXPECT_GE(counts[cluster], n)
        << "cluster " << cluster << " is referenced " << n
        << " times with refcount " << counts[cluster];
  }
  for (uint64_t c : copied) EXPECT_EQ(counts[c], 1u) << "copied cluster " << c;
}

void ExpectQemuCheckClean(const std::vector<uint8_t>& file) {
  if (!qcow2_test::HaveQemuImg()) return;
  testing::TempDir dir;
  const std::string path = dir.File("cut.qcow2");
  qcow2_test::WriteWholeFile(path, file);
  qcow2_test::WriteWholeFile(dir.File("base"), Pattern(kSize, 42));
  std::string out;
  // Exit status 0: clean; 3: leaks only. Anything else is corruption.
  const int rc = qcow2_test::Run("qemu-img check -U -f qcow2 " + path, &out);
  EXPECT_TRUE(rc == 0 || rc == 3) << out;
}

// Reopens the image of `fs` read-only: every byte not `unknown` must read
// as `expected`, and its tables must be consistent.
void ExpectReopenedImageHolds(MemFileSystem& fs,
                              const std::vector<uint8_t>& expected,
                              const std::vector<bool>& unknown) {
  auto file = fs.Open(kPath, false);
  ASSERT_THAT(file, testing::IsOk());
  auto image = Image::Open(std::move(*file), kPath, Options(false));
  ASSERT_THAT(image, testing::IsOk());
  std::vector<uint8_t> now(kSize);
  EXPECT_THAT((*image)->Read(0, now), testing::IsOk());
  uint64_t wrong = 0;
  for (uint64_t i = 0; i < kSize; ++i) {
    if (!unknown[i] && now[i] != expected[i]) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "bytes that lost their acknowledged contents";
  const std::vector<uint8_t> bytes = fs.Contents(kPath);
  ExpectRefcountsCoverReferences(bytes);
  ExpectQemuCheckClean(bytes);
}

// One cut: the workload stops at sync number `cut` (that sync and every
// later one fail), the power goes, the image is reopened and checked.
// Returns false when the workload finished before the cut.
bool RunCut(const std::vector<uint8_t>& fresh, uint64_t cut, uint64_t seed) {
  SCOPED_TRACE("cut at sync " + std::to_string(cut) + ", seed " +
               std::to_string(seed));
  MemFileSystem fs;
  fs.SetContents(kPath, fresh);
  Models m;
  bool finished = false;
  {
    auto file = fs.Open(kPath, false);
    EXPECT_THAT(file, testing::IsOk());
    auto image = Image::Open(std::move(*file), kPath, Options(true));
    EXPECT_THAT(image, testing::IsOk());
    if (!image.ok()) return false;
    fs.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kSync),
                     .nth = cut,
                     .persistent = true});
    finished = Workload(**image, m);
  }  // closing flushes too, and fails at the cut
  fs.PowerLoss(PowerLossMode::kRandom, seed);
  fs.ClearFaultRule();
  ExpectReopenedImageHolds(fs, m.durable, m.touched);
  return !finished;
}

// One injected failure: write number `nth` of the file fails once with
// kNoSpace; the workload goes on. Ranges of failed operations become
// unknown; the rest must read as the model after a reopen, and the tables
// must stay consistent. Returns false when the workload made fewer writes.
bool RunWriteFault(const std::vector<uint8_t>& fresh, uint64_t nth) {
  SCOPED_TRACE("failing write " + std::to_string(nth));
  MemFileSystem fs;
  fs.SetContents(kPath, fresh);
  Models m;
  bool failed = false;
  {
    auto file = fs.Open(kPath, false);
    EXPECT_THAT(file, testing::IsOk());
    auto image = Image::Open(std::move(*file), kPath, Options(true));
    EXPECT_THAT(image, testing::IsOk());
    if (!image.ok()) return false;
    fs.SetFaultRule({.ops = static_cast<uint32_t>(FileOp::kWrite),
                     .nth = nth,
                     .error = NoSpaceError("injected: no space")});
    std::mt19937_64 rng(99);
    for (int i = 0; i < 60; ++i) {
      const uint64_t len = 1 + rng() % 20000;
      const uint64_t off = rng() % (kSize - len);
      std::vector<uint8_t> data = Pattern(len, static_cast<uint32_t>(i));
      Status s = i % 5 == 4   ? (*image)->Flush()
                 : i % 7 == 3 ? (*image)->Discard(off, len)
                              : (*image)->Write(off, data);
      if (i % 7 == 3) std::fill(data.begin(), data.end(), 0);
      if (s.ok() && i % 5 != 4) {
        std::copy(data.begin(), data.end(), m.current.begin() + off);
      } else if (!s.ok()) {
        failed = true;
        if (i % 5 != 4) std::fill_n(m.touched.begin() + off, len, true);
      }
    }
    EXPECT_THAT((*image)->Flush(), testing::IsOk());
  }
  fs.ClearFaultRule();
  ExpectReopenedImageHolds(fs, m.current, m.touched);
  return failed;
}

TEST(Qcow2FaultTest, EachFailedWriteLeavesAConsistentImage) {
  const std::vector<uint8_t> fresh = FreshImage(false);
  uint64_t faults = 0;
  for (uint64_t nth = 1; nth < 5000 && RunWriteFault(fresh, nth); nth += 3) {
    if (::testing::Test::HasFailure()) break;
    ++faults;
  }
  EXPECT_GT(faults, 10u);
}

// Cuts the workload at every sync in turn, three power losses each.
void RunAllCuts(const std::vector<uint8_t>& fresh) {
  uint64_t cuts = 0;
  for (uint64_t cut = 1; cut < 2000; ++cut) {
    bool cut_hit = true;
    for (uint64_t seed = 1; seed <= 3; ++seed) {
      cut_hit = RunCut(fresh, cut, seed * 7919 + cut);
    }
    if (::testing::Test::HasFailure() || !cut_hit) break;
    ++cuts;
  }
  EXPECT_GT(cuts, 10u);
  std::printf("power-loss cuts tried: %llu\n",
              static_cast<unsigned long long>(cuts));
}

class Qcow2PowerLossTest : public ::testing::TestWithParam<bool> {};

TEST_P(Qcow2PowerLossTest, EveryCutKeepsFlushedWritesAndRefcounts) {
  RunAllCuts(FreshImage(GetParam()));
}

// An image with an internal snapshot: every write copies a shared cluster
// (and first its shared L2 table) and releases the old reference.
TEST(Qcow2PowerLossSnapshotTest, EveryCutKeepsFlushedWritesAndRefcounts) {
  VSS_REQUIRE_QEMU_IMG();
  testing::TempDir dir;
  const std::string raw = dir.File("base.raw");
  const std::string image = dir.File("snap.qcow2");
  qcow2_test::WriteWholeFile(raw, Pattern(kSize, 42));
  qcow2_test::MustRun("qemu-img convert -f raw -O qcow2 -o cluster_size=4k " +
                      raw + " " + image + " && qemu-img snapshot -c s1 " +
                      image);
  RunAllCuts(qcow2_test::ReadWholeFile(image));
}

INSTANTIATE_TEST_SUITE_P(Layouts, Qcow2PowerLossTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "ExtendedL2" : "Standard";
                         });

}  // namespace
}  // namespace vss::qcow2
