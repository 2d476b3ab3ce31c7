// Damage tests of the engine on a real store directory: a flipped byte in a
// diff-area record's payload or header, a truncated segment, a missing
// segment file, and a damaged catalog. Damaged records must never be served:
// reading a shadow range that needs one fails with a status naming the
// shadow and the chunk, and Verify() reports it; every other shadow, every
// other range and the live volume still read exactly. A damaged catalog is
// kCorruption naming the catalog file, never a crash.
//
// The setup: incompressible data over the whole volume; shadow A; chunks
// kX overwritten; shadow B; chunks kY overwritten. So epoch A holds records
// for kX (A's contents), epoch B for kY (B's contents); A reads a chunk of kY
// that is not in kX from B's record.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "../../engine/store_internal.h"
#include "engine_test_util.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"

namespace vss::engine {
namespace {

namespace fs = std::filesystem;
using test_util::DescribeDiff;
using test_util::ReadAll;
using test_util::TempDir;

constexpr uint32_t kChunk = 8192;
constexpr uint64_t kChunks = 64;
constexpr uint64_t kSize = kChunks * kChunk + 3072;  // partial last chunk
const std::vector<uint64_t> kX = {2, 5, 9, 20, 64};  // 64: the partial one
const std::vector<uint64_t> kY = {5, 30, 31, 40, 41};

struct RecordKey {
  uint64_t epoch;
  uint64_t chunk;
  auto operator<=>(const RecordKey&) const = default;
};

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()),
          std::streamsize(bytes.size()));
}

class DamageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = test_util::TestSeed();
    std::cout << "engine damage test: VSS_SEED=" << seed_ << std::endl;
    ASSERT_NO_FATAL_FAILURE(Build());
  }

  StatusOr<std::unique_ptr<Store>> OpenStore() {
    StoreOptions o;
    o.dir = dir_.path() + "/store";
    o.segment_bytes = 64 * 1024;  // several segments
    return Store::Open(std::move(o));
  }

  void Build() {
    VSS_ASSERT_OK_AND_ASSIGN(auto store, OpenStore());
    VSS_ASSERT_OK_AND_ASSIGN(
        auto row, store->CreateVolume({.path = dir_.path() + "/d.img",
                                       .size = kSize,
                                       .name = "damage",
                                       .chunk_size = kChunk,
                                       .create = true}));
    vol_id_ = row.id;
    VSS_ASSERT_OK_AND_ASSIGN(Volume * vol, store->OpenVolume(vol_id_));
    live_.resize(kSize);
    test_util::FillRandom(seed_, 1, live_);
    VSS_ASSERT_OK(vol->Write(0, live_));
    a_ = {};
    ASSERT_NO_FATAL_FAILURE(CreateShadow(*store, &a_id_));
    a_ = live_;
    ASSERT_NO_FATAL_FAILURE(Overwrite(*vol, kX, 2));
    ASSERT_NO_FATAL_FAILURE(CreateShadow(*store, &b_id_));
    b_ = live_;
    ASSERT_NO_FATAL_FAILURE(Overwrite(*vol, kY, 3));
    VSS_ASSERT_OK_AND_ASSIGN(auto da, store->DiffAreaOf(vol_id_));
    diff_dir_ = da.dir;
    store.reset();  // a clean close: everything indexed in the catalog

    // The index, as the catalog has it after the clean close.
    VSS_ASSERT_OK_AND_ASSIGN(store, OpenStore());
    VSS_ASSERT_OK_AND_ASSIGN(rows_, CatalogOf(*store).ListIndexRows(vol_id_));
    VSS_ASSERT_OK_AND_ASSIGN(ShadowInfo sa, store->FindShadow(a_id_));
    VSS_ASSERT_OK_AND_ASSIGN(ShadowInfo sb, store->FindShadow(b_id_));
    a_epoch_ = sa.epoch;
    b_epoch_ = sb.epoch;
    ASSERT_EQ(rows_.size(), kX.size() + kY.size())
        << "expected one record per preserved chunk";
  }

  void CreateShadow(Store& store, Guid* id) {
    CreateSetRequest req;
    req.volumes = {vol_id_};
    VSS_ASSERT_OK_AND_ASSIGN(auto set, store.CreateShadowSet(req));
    *id = set.shadows.at(0).shadow_id;
  }

  void Overwrite(Volume& vol, const std::vector<uint64_t>& chunks,
                 uint64_t key) {
    for (uint64_t c : chunks) {
      uint64_t off = c * kChunk;
      uint64_t len = std::min<uint64_t>(kChunk, kSize - off);
      std::vector<uint8_t> data(len);
      test_util::FillRandom(seed_, key * 1000 + c, data);
      VSS_ASSERT_OK(vol.Write(off, data));
      std::copy(data.begin(), data.end(), live_.begin() + off);
    }
  }

  const metadata::IndexRow& Row(uint64_t epoch, uint64_t chunk) {
    for (const auto& r : rows_) {
      if (r.epoch == epoch && r.chunk == chunk) return r;
    }
    ADD_FAILURE() << "no index row for epoch " << epoch << " chunk " << chunk;
    return rows_.at(0);
  }

  // The content a record holds: the chunk as the shadow of its epoch saw it.
  std::vector<uint8_t> RecordContent(const metadata::IndexRow& r) {
    const auto& img = r.epoch == a_epoch_ ? a_ : b_;
    uint64_t off = r.chunk * kChunk;
    uint64_t len = std::min<uint64_t>(kChunk, kSize - off);
    return {img.begin() + off, img.begin() + off + len};
  }

  // Finds the segment file holding a record and where its payload is, by
  // searching for its (incompressible, so stored verbatim) content.
  void Locate(const metadata::IndexRow& r, std::string* file,
              uint64_t* payload) {
    std::vector<uint8_t> content = RecordContent(r);
    std::span<const uint8_t> needle(content.data(),
                                    std::min<size_t>(256, content.size()));
    for (const auto& e : fs::directory_iterator(diff_dir_)) {
      if (!e.is_regular_file()) continue;
      std::vector<uint8_t> bytes = ReadFile(e.path());
      auto it =
          std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
      if (it != bytes.end()) {
        *file = e.path();
        *payload = uint64_t(it - bytes.begin());
        ASSERT_GE(*payload, r.offset) << "payload before its record's start";
        ASSERT_LT(*payload, r.offset + r.record_bytes)
            << "payload past its record";
        return;
      }
    }
    FAIL() << "no segment file in " << diff_dir_
           << " holds the record of epoch " << r.epoch << " chunk " << r.chunk;
  }

  void FlipByte(const std::string& file, uint64_t at) {
    std::vector<uint8_t> bytes = ReadFile(file);
    ASSERT_LT(at, bytes.size());
    bytes[at] ^= 0x5a;
    WriteFile(file, bytes);
  }

  // Which record shadow (epoch) reads for `chunk`: the first among epochs
  // >= its epoch, or none (the live image).
  std::optional<RecordKey> RecordFor(uint64_t epoch, uint64_t chunk) {
    std::optional<RecordKey> best;
    for (const auto& r : rows_) {
      if (r.chunk == chunk && r.epoch >= epoch &&
          (!best || r.epoch < best->epoch)) {
        best = RecordKey{r.epoch, r.chunk};
      }
    }
    return best;
  }

  static bool NamesChunk(const std::string& msg, uint64_t chunk) {
    std::regex re("chunk[^0-9a-zA-Z]{0,3}" + std::to_string(chunk) +
                  "([^0-9]|$)");
    return std::regex_search(msg, re);
  }

  // Reopens the store and checks every chunk of both shadows and the live
  // volume: chunks that need a damaged record fail naming shadow and chunk,
  // everything else is exact. Verify reports exactly the damaged shadows.
  void CheckAfterDamage(const std::set<RecordKey>& damaged) {
    VSS_ASSERT_OK_AND_ASSIGN(auto store, OpenStore());
    VSS_ASSERT_OK_AND_ASSIGN(Volume * vol, store->OpenVolume(vol_id_));
    VSS_ASSERT_OK_AND_ASSIGN(auto live, ReadAll(*vol));
    EXPECT_EQ(DescribeDiff(live_, live, 0, kChunk), "") << "live volume";
    struct S {
      Guid id;
      uint64_t epoch;
      const std::vector<uint8_t>* bytes;
      const char* name;
    };
    for (const S& s :
         {S{a_id_, a_epoch_, &a_, "A"}, S{b_id_, b_epoch_, &b_, "B"}}) {
      SCOPED_TRACE(std::string("shadow ") + s.name + " " + s.id.ToString());
      VSS_ASSERT_OK_AND_ASSIGN(auto dev, vol->OpenShadow(s.id));
      bool depends = false;
      for (uint64_t c = 0; c <= kChunks; ++c) {
        uint64_t off = c * kChunk;
        uint64_t len = std::min<uint64_t>(kChunk, kSize - off);
        std::vector<uint8_t> buf(len);
        Status st = dev->Read(off, buf);
        auto rec = RecordFor(s.epoch, c);
        if (rec && damaged.count(*rec)) {
          depends = true;
          EXPECT_FALSE(st.ok()) << "chunk " << c << " needs a damaged record "
                                << "(epoch " << rec->epoch << ") but read OK";
          if (!st.ok()) {
            EXPECT_TRUE(st.code() == StatusCode::kCorruption ||
                        st.code() == StatusCode::kIoError)
                << st.ToString();
            EXPECT_NE(st.message().find(s.id.ToString()), std::string::npos)
                << "error does not name the shadow: " << st.ToString();
            EXPECT_TRUE(NamesChunk(st.message(), c))
                << "error does not name chunk " << c << ": " << st.ToString();
          }
          // A read inside the chunk fails too.
          std::vector<uint8_t> small(7);
          EXPECT_FALSE(dev->Read(off + len / 2, small).ok())
              << "partial read of damaged chunk " << c << " succeeded";
        } else {
          ASSERT_TRUE(st.ok())
              << "undamaged chunk " << c << ": " << st.ToString();
          EXPECT_EQ(
              DescribeDiff({s.bytes->data() + off, len}, buf, off, kChunk), "")
              << "chunk " << c;
        }
      }
      auto rep = vol->Verify(s.id);
      if (!rep.ok()) {
        EXPECT_TRUE(depends) << "Verify failed on an undamaged shadow: "
                             << rep.status().ToString();
        std::cout << "  note: Verify returned a status instead of a report: "
                  << rep.status().ToString() << std::endl;
      } else if (depends) {
        EXPECT_FALSE(rep->errors.empty()) << "Verify missed the damage";
        bool named = false;
        for (const auto& e : rep->errors) {
          for (const auto& k : damaged) named |= NamesChunk(e, k.chunk);
        }
        EXPECT_TRUE(named)
            << "Verify errors do not name a damaged chunk; first: "
            << (rep->errors.empty() ? "" : rep->errors[0]);
      } else {
        EXPECT_TRUE(rep->errors.empty())
            << "Verify of an undamaged shadow: " << rep->errors[0];
      }
    }
  }

  uint64_t seed_ = 0;
  TempDir dir_;
  Guid vol_id_, a_id_, b_id_;
  uint64_t a_epoch_ = 0, b_epoch_ = 0;
  std::vector<uint8_t> live_, a_, b_;
  std::string diff_dir_;
  std::vector<metadata::IndexRow> rows_;
};

TEST_F(DamageTest, FlippedPayloadByte_FailsReadsNamingShadowAndChunk) {
  // (A, 2): only A reads it. (B, 30): A and B read it.
  std::set<RecordKey> damaged = {{a_epoch_, 2}, {b_epoch_, 30}};
  for (const auto& k : damaged) {
    std::string file;
    uint64_t payload = 0;
    ASSERT_NO_FATAL_FAILURE(Locate(Row(k.epoch, k.chunk), &file, &payload));
    ASSERT_NO_FATAL_FAILURE(FlipByte(file, payload + 1000));
  }
  CheckAfterDamage(damaged);
}

TEST_F(DamageTest, FlippedHeaderByte_FailsReadsNamingShadowAndChunk) {
  std::set<RecordKey> damaged = {{b_epoch_, 31}, {a_epoch_, 9}};
  for (const auto& k : damaged) {
    const auto& r = Row(k.epoch, k.chunk);
    std::string file;
    uint64_t payload = 0;
    ASSERT_NO_FATAL_FAILURE(Locate(r, &file, &payload));
    ASSERT_NO_FATAL_FAILURE(FlipByte(file, r.offset + 9));  // inside the header
  }
  CheckAfterDamage(damaged);
}

TEST_F(DamageTest, FlippedByteInPartialLastChunkRecord_Detected) {
  std::set<RecordKey> damaged = {{a_epoch_, 64}};
  std::string file;
  uint64_t payload = 0;
  ASSERT_NO_FATAL_FAILURE(Locate(Row(a_epoch_, 64), &file, &payload));
  ASSERT_NO_FATAL_FAILURE(FlipByte(file, payload + 3000));
  CheckAfterDamage(damaged);
}

TEST_F(DamageTest, TruncatedSegment_FailsOnlyReadsOfLostRecords) {
  // Cut the segment holding B's record of chunk 41 in the middle of it.
  const auto& r = Row(b_epoch_, 41);
  std::string file;
  uint64_t payload = 0;
  ASSERT_NO_FATAL_FAILURE(Locate(r, &file, &payload));
  fs::resize_file(file, payload + 100);
  std::set<RecordKey> damaged;
  for (const auto& x : rows_) {
    if (x.segment == r.segment && x.offset + x.record_bytes > payload + 100) {
      damaged.insert({x.epoch, x.chunk});
    }
  }
  std::cout << "  truncated " << file << " to " << payload + 100 << "; "
            << damaged.size() << " record(s) lost" << std::endl;
  CheckAfterDamage(damaged);
}

TEST_F(DamageTest, MissingSegmentFile_FailsOnlyReadsOfItsRecords) {
  const auto& r = Row(a_epoch_, 2);
  std::string file;
  uint64_t payload = 0;
  ASSERT_NO_FATAL_FAILURE(Locate(r, &file, &payload));
  std::set<uint32_t> segs;
  for (const auto& x : rows_) segs.insert(x.segment);
  ASSERT_GE(segs.size(), 2u) << "setup should span several segments";
  fs::remove(file);
  std::set<RecordKey> damaged;
  for (const auto& x : rows_) {
    if (x.segment == r.segment) damaged.insert({x.epoch, x.chunk});
  }
  std::cout << "  removed " << file << " (segment " << r.segment << ", "
            << damaged.size() << " records)" << std::endl;
  CheckAfterDamage(damaged);
}

// Opens the store and runs queries until one fails; returns that status (OK
// if none did).
Status OpenAndQuery(const std::string& dir, const Guid& vol) {
  StoreOptions o;
  o.dir = dir;
  auto store = Store::Open(std::move(o));
  if (!store.ok()) return store.status();
  if (auto r = (*store)->ListVolumes(); !r.ok()) return r.status();
  if (auto r = (*store)->ListShadows(); !r.ok()) return r.status();
  if (auto r = CatalogOf(**store).ListIndexRows(vol); !r.ok())
    return r.status();
  if (auto r = (*store)->ListEvents(std::nullopt); !r.ok())
    return r.status();
  if (auto r = (*store)->OpenVolume(vol); !r.ok()) return r.status();
  return OkStatus();
}

void DamageCatalog(const std::string& path, uint64_t from, uint64_t length,
                   uint64_t seed) {
  std::vector<uint8_t> bytes = ReadFile(path);
  ASSERT_GT(bytes.size(), from)
      << path << " is only " << bytes.size() << " bytes";
  length = std::min<uint64_t>(length, bytes.size() - from);
  test_util::FillRandom(seed, 77,
                        std::span<uint8_t>(bytes.data() + from, length));
  WriteFile(path, bytes);
}

TEST_F(DamageTest, GarbageCatalogHeader_IsCorruptionNamingTheFile) {
  const std::string path = dir_.path() + "/store/catalog.db";
  ASSERT_TRUE(fs::exists(path));
  if (fs::exists(path + "-wal") && fs::file_size(path + "-wal") > 0) {
    std::cout << "  note: " << path << "-wal is left after a clean close"
              << std::endl;
  }
  ASSERT_NO_FATAL_FAILURE(DamageCatalog(path, 0, 100, seed_));
  Status st = OpenAndQuery(dir_.path() + "/store", vol_id_);
  ASSERT_FALSE(st.ok()) << "a catalog with a garbage header was accepted";
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find("catalog.db"), std::string::npos)
      << "error does not name the catalog: " << st.ToString();
}

TEST_F(DamageTest, GarbageCatalogPages_IsCorruptionNamingTheFile) {
  const std::string path = dir_.path() + "/store/catalog.db";
  ASSERT_TRUE(fs::exists(path));
  const uint64_t size = fs::file_size(path);
  // Everything after the first page (the schema's roots and all rows).
  ASSERT_NO_FATAL_FAILURE(DamageCatalog(path, 4096, size, seed_));
  Status st = OpenAndQuery(dir_.path() + "/store", vol_id_);
  ASSERT_FALSE(st.ok()) << "a catalog with garbage pages was accepted";
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find("catalog.db"), std::string::npos)
      << "error does not name the catalog: " << st.ToString();
}

TEST_F(DamageTest, GarbageInMiddleOfCatalog_NoCrashAndCorruptionIfNoticed) {
  const std::string path = dir_.path() + "/store/catalog.db";
  const uint64_t size = fs::file_size(path);
  ASSERT_NO_FATAL_FAILURE(DamageCatalog(path, size / 3, size / 3, seed_));
  Status st = OpenAndQuery(dir_.path() + "/store", vol_id_);
  if (!st.ok()) {
    EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find("catalog.db"), std::string::npos)
        << "error does not name the catalog: " << st.ToString();
  } else {
    std::cout << "  note: garbage in bytes [" << size / 3 << ", "
              << 2 * size / 3 << ") of a " << size
              << "-byte catalog went unnoticed by these queries" << std::endl;
  }
}

}  // namespace
}  // namespace vss::engine
