// Tests of the SQLite catalog: round trips of every row type, constraint
// errors, transactions, schema versioning and damaged files.
#include "vss/metadata/catalog.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "vss/testing/temp_dir.h"

namespace vss::metadata {
namespace {

namespace fs = std::filesystem;

// A fresh directory (a TempDir), removed with the fixture.
class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    path_ = dir_ + "/catalog.db";
  }
  void TearDown() override { catalog_.reset(); }

  // Opens (or reopens) the catalog at path_ into catalog_.
  void Open() {
    catalog_.reset();
    auto c = Catalog::Open(path_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(c).value();
  }

  VolumeRow MakeVolume(const std::string& name) {
    VolumeRow v;
    v.id = Guid::Generate();
    v.name = name;
    v.path = "/images/" + name + ".img";
    v.size = (uint64_t{1} << 40) + 4096;
    v.chunk_size = 65536;
    v.next_epoch = 7;
    v.created = 134400744001234567;
    return v;
  }

  ShadowSetRow MakeSet() {
    ShadowSetRow s;
    s.id = Guid::Generate();
    s.created = 134400744001234567;
    s.context = 0x19;
    s.shadow_count = 2;
    return s;
  }

  ShadowRow MakeShadow(const VolumeRow& v, const ShadowSetRow& set,
                       uint64_t epoch) {
    ShadowRow s;
    s.id = Guid::Generate();
    s.set_id = set.id;
    s.volume_id = v.id;
    s.epoch = epoch;
    s.count_in_set = 2;
    s.original_volume = "\\\\?\\Volume{" + v.id.ToString() + "}\\";
    s.device_object = "\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy3";
    s.originating_machine = "host-a";
    s.service_machine = "host-b";
    s.exposed_name = "X:";
    s.exposed_path = "/mnt/shadow";
    s.provider_id = Guid::Generate();
    s.attributes = static_cast<int32_t>(0x80000000u | 0x1d);
    s.context = -1;
    s.state = 12;
    s.created = -5;
    s.persistent = false;
    s.owner_pid = 4242;
    s.properties = "context=-1\nanything=at all\n\xff";
    return s;
  }

  IndexRow MakeIndexRow(uint64_t epoch, uint64_t chunk) {
    IndexRow r;
    r.epoch = epoch;
    r.chunk = chunk;
    r.segment = 0xfffffffeu;
    r.offset = (uint64_t{5} << 40) + 4096;
    r.record_bytes = 8192;
    r.stored_len = 5000;
    r.raw_len = 65536;
    r.codec = 2;
    r.checksum = 0xfedcba9876543210ull;  // top bit set
    return r;
  }

  // Runs one SQL statement on path_ through a separate raw connection.
  void RawExec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err != nullptr ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << msg;
  }

  // Returns the single integer `sql` yields on a raw connection to path_.
  int64_t RawInt(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    int64_t v = -999;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
  }

  void WriteFile(const std::string& bytes) {
    std::ofstream f(path_, std::ios::binary | std::ios::trunc);
    f << bytes;
  }

  std::string ReadFile() {
    std::ifstream f(path_, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

  ::vss::testing::TempDir tmp_;
  std::string dir_;
  std::string path_;
  std::unique_ptr<Catalog> catalog_;
};

void ExpectSameShadow(const ShadowRow& a, const ShadowRow& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.set_id, b.set_id);
  EXPECT_EQ(a.volume_id, b.volume_id);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.count_in_set, b.count_in_set);
  EXPECT_EQ(a.original_volume, b.original_volume);
  EXPECT_EQ(a.device_object, b.device_object);
  EXPECT_EQ(a.originating_machine, b.originating_machine);
  EXPECT_EQ(a.service_machine, b.service_machine);
  EXPECT_EQ(a.exposed_name, b.exposed_name);
  EXPECT_EQ(a.exposed_path, b.exposed_path);
  EXPECT_EQ(a.provider_id, b.provider_id);
  EXPECT_EQ(a.attributes, b.attributes);
  EXPECT_EQ(a.context, b.context);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.created, b.created);
  EXPECT_EQ(a.persistent, b.persistent);
  EXPECT_EQ(a.owner_pid, b.owner_pid);
  EXPECT_EQ(a.properties, b.properties);
}

void ExpectSameIndexRow(const IndexRow& a, const IndexRow& b) {
  EXPECT_EQ(a.chunk, b.chunk);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.segment, b.segment);
  EXPECT_EQ(a.offset, b.offset);
  EXPECT_EQ(a.record_bytes, b.record_bytes);
  EXPECT_EQ(a.stored_len, b.stored_len);
  EXPECT_EQ(a.raw_len, b.raw_len);
  EXPECT_EQ(a.codec, b.codec);
  EXPECT_EQ(a.checksum, b.checksum);
}

// --- Round trips. ------------------------------------------------------------

TEST_F(CatalogTest, Volume_RoundTripsEveryFieldAcrossReopen) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  v.next_epoch = 0x8000000000000001ull;
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  Open();
  auto found = catalog_->FindVolume(v.id);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_TRUE(found->has_value());
  const VolumeRow& g = **found;
  EXPECT_EQ(g.id, v.id);
  EXPECT_EQ(g.name, v.name);
  EXPECT_EQ(g.path, v.path);
  EXPECT_EQ(g.size, v.size);
  EXPECT_EQ(g.chunk_size, v.chunk_size);
  EXPECT_EQ(g.next_epoch, v.next_epoch);
  EXPECT_EQ(g.created, v.created);
  EXPECT_EQ(g.format, "raw");
  auto all = catalog_->ListVolumes();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].id, v.id);
}

TEST_F(CatalogTest, FindVolume_UnknownIdIsEmpty) {
  Open();
  auto found = catalog_->FindVolume(Guid::Generate());
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
}

TEST_F(CatalogTest, SetVolumeNextEpoch_UpdatesAndRejectsUnknownId) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  ASSERT_TRUE(catalog_->SetVolumeNextEpoch(v.id, 99).ok());
  EXPECT_EQ((*catalog_->FindVolume(v.id))->next_epoch, 99u);
  EXPECT_EQ(catalog_->SetVolumeNextEpoch(Guid::Generate(), 1).code(),
            StatusCode::kNotFound);
}

TEST_F(CatalogTest, DiffArea_RoundTripsAndUpsertReplacesEveryField) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  DiffAreaRow d{v.id, "/store/diff/vm1", kUnbounded, 0x8000000000000000ull};
  ASSERT_TRUE(catalog_->UpsertDiffArea(d).ok());
  auto got = catalog_->FindDiffArea(v.id);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->volume_id, v.id);
  EXPECT_EQ((*got)->dir, d.dir);
  EXPECT_EQ((*got)->max_bytes, kUnbounded);
  EXPECT_EQ((*got)->used_bytes, d.used_bytes);

  d.dir = "/elsewhere";
  d.max_bytes = int64_t{10} << 30;
  d.used_bytes = 12345;
  ASSERT_TRUE(catalog_->UpsertDiffArea(d).ok());
  auto all = catalog_->ListDiffAreas();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].dir, "/elsewhere");
  EXPECT_EQ((*all)[0].max_bytes, int64_t{10} << 30);
  EXPECT_EQ((*all)[0].used_bytes, 12345u);
}

TEST_F(CatalogTest, ShadowSetAndShadow_RoundTripEveryField) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ShadowSetRow set = MakeSet();
  ShadowRow s = MakeShadow(v, set, 0xffffffffffffffffull);
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  ASSERT_TRUE(catalog_->InsertShadowSet(set).ok());
  ASSERT_TRUE(catalog_->InsertShadow(s).ok());
  Open();

  auto sets = catalog_->ListShadowSets();
  ASSERT_TRUE(sets.ok());
  ASSERT_EQ(sets->size(), 1u);
  EXPECT_EQ((*sets)[0].id, set.id);
  EXPECT_EQ((*sets)[0].created, set.created);
  EXPECT_EQ((*sets)[0].context, set.context);
  EXPECT_EQ((*sets)[0].shadow_count, set.shadow_count);

  auto found = catalog_->FindShadow(s.id);
  ASSERT_TRUE(found.ok() && found->has_value());
  ExpectSameShadow(**found, s);
  auto all = catalog_->ListShadows();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  ExpectSameShadow((*all)[0], s);
}

TEST_F(CatalogTest, UpdateShadow_ChangesEveryFieldAndRejectsUnknownId) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ShadowSetRow set = MakeSet();
  ShadowRow s = MakeShadow(v, set, 1);
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  ASSERT_TRUE(catalog_->InsertShadowSet(set).ok());
  ASSERT_TRUE(catalog_->InsertShadow(s).ok());

  ShadowRow u = MakeShadow(v, set, 2);
  u.id = s.id;
  u.exposed_name = "";
  u.persistent = true;
  u.state = 1;
  ASSERT_TRUE(catalog_->UpdateShadow(u).ok());
  ExpectSameShadow(**catalog_->FindShadow(s.id), u);

  ShadowRow unknown = MakeShadow(v, set, 3);
  EXPECT_EQ(catalog_->UpdateShadow(unknown).code(), StatusCode::kNotFound);
}

TEST_F(CatalogTest, ListShadowsOfVolume_OrdersByEpoch) {
  Open();
  VolumeRow a = MakeVolume("a");
  VolumeRow b = MakeVolume("b");
  ShadowSetRow set = MakeSet();
  ASSERT_TRUE(catalog_->InsertVolume(a).ok());
  ASSERT_TRUE(catalog_->InsertVolume(b).ok());
  ASSERT_TRUE(catalog_->InsertShadowSet(set).ok());
  for (uint64_t e : {3, 1, 2}) {
    ASSERT_TRUE(catalog_->InsertShadow(MakeShadow(a, set, e)).ok());
  }
  ASSERT_TRUE(catalog_->InsertShadow(MakeShadow(b, set, 1)).ok());
  auto of_a = catalog_->ListShadowsOfVolume(a.id);
  ASSERT_TRUE(of_a.ok());
  ASSERT_EQ(of_a->size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ((*of_a)[i].epoch, i + 1);
  EXPECT_EQ(catalog_->ListShadows()->size(), 4u);
}

TEST_F(CatalogTest, IndexRows_RoundTripEveryFieldWithTopBitChecksum) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  IndexRow a = MakeIndexRow(2, 0xffffffffffffffffull);
  IndexRow b = MakeIndexRow(1, 5);
  b.checksum = 0xffffffffffffffffull;
  b.codec = 0;
  b.segment = 0;
  ASSERT_TRUE(catalog_->InsertIndexRows(v.id, {a, b}).ok());
  Open();
  auto all = catalog_->ListIndexRows(v.id);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 2u);
  ExpectSameIndexRow((*all)[0], b);  // ordered by epoch, then chunk
  ExpectSameIndexRow((*all)[1], a);
  auto of2 = catalog_->ListIndexRowsOfEpoch(v.id, 2);
  ASSERT_TRUE(of2.ok());
  ASSERT_EQ(of2->size(), 1u);
  ExpectSameIndexRow((*of2)[0], a);
}

TEST_F(CatalogTest, IndexRows_DeleteOneAndDeleteEpoch) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  ASSERT_TRUE(
      catalog_
          ->InsertIndexRows(v.id, {MakeIndexRow(1, 1), MakeIndexRow(1, 2),
                                   MakeIndexRow(2, 1)})
          .ok());
  ASSERT_TRUE(catalog_->DeleteIndexRow(v.id, 1, 2).ok());
  EXPECT_EQ(catalog_->ListIndexRowsOfEpoch(v.id, 1)->size(), 1u);
  ASSERT_TRUE(catalog_->DeleteIndexRowsOfEpoch(v.id, 1).ok());
  auto rest = catalog_->ListIndexRows(v.id);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].epoch, 2u);
  // Deleting what is not there is not an error (recovery replays deletes).
  EXPECT_TRUE(catalog_->DeleteIndexRow(v.id, 9, 9).ok());
}

TEST_F(CatalogTest, MoveIndexRow_ChangesOnlyTheEpoch) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  IndexRow r = MakeIndexRow(3, 42);
  ASSERT_TRUE(catalog_->InsertIndexRows(v.id, {r}).ok());
  ASSERT_TRUE(catalog_->MoveIndexRow(v.id, 3, 42, 2).ok());
  EXPECT_TRUE(catalog_->ListIndexRowsOfEpoch(v.id, 3)->empty());
  auto moved = catalog_->ListIndexRowsOfEpoch(v.id, 2);
  ASSERT_EQ(moved->size(), 1u);
  r.epoch = 2;
  ExpectSameIndexRow((*moved)[0], r);
}

TEST_F(CatalogTest, MoveIndexRow_MissingRowIsNotFoundAndOccupiedTargetExists) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  ASSERT_TRUE(
      catalog_->InsertIndexRows(v.id, {MakeIndexRow(1, 7), MakeIndexRow(2, 7)})
          .ok());
  EXPECT_EQ(catalog_->MoveIndexRow(v.id, 5, 7, 1).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(catalog_->MoveIndexRow(v.id, 2, 7, 1).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(catalog_->ListIndexRows(v.id)->size(), 2u);
}

TEST_F(CatalogTest, Segments_UpsertListDelete) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  ASSERT_TRUE(
      catalog_->UpsertSegment(v.id, {2, 1ull << 35, 0x8000000000000000ull})
          .ok());
  ASSERT_TRUE(catalog_->UpsertSegment(v.id, {1, 4096, 0}).ok());
  ASSERT_TRUE(catalog_->UpsertSegment(v.id, {1, 8192, 4096}).ok());
  auto segs = catalog_->ListSegments(v.id);
  ASSERT_TRUE(segs.ok());
  ASSERT_EQ(segs->size(), 2u);
  EXPECT_EQ((*segs)[0].seq, 1u);
  EXPECT_EQ((*segs)[0].indexed_to, 8192u);
  EXPECT_EQ((*segs)[0].live_bytes, 4096u);
  EXPECT_EQ((*segs)[1].seq, 2u);
  EXPECT_EQ((*segs)[1].indexed_to, 1ull << 35);
  EXPECT_EQ((*segs)[1].live_bytes, 0x8000000000000000ull);
  ASSERT_TRUE(catalog_->DeleteSegment(v.id, 1).ok());
  EXPECT_EQ(catalog_->ListSegments(v.id)->size(), 1u);
}

TEST_F(CatalogTest, FreeRanges_InsertListClear) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  std::vector<FreeRange> in = {{3, 8192, 4096}, {1, 1ull << 40, 65536}};
  ASSERT_TRUE(catalog_->InsertFreeRanges(v.id, in).ok());
  auto out = catalog_->ListFreeRanges(v.id);
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->size(), 2u);
  EXPECT_EQ((*out)[0].segment, 1u);
  EXPECT_EQ((*out)[0].offset, 1ull << 40);
  EXPECT_EQ((*out)[0].length, 65536u);
  EXPECT_EQ((*out)[1].segment, 3u);
  ASSERT_TRUE(catalog_->ClearFreeRanges(v.id).ok());
  EXPECT_TRUE(catalog_->ListFreeRanges(v.id)->empty());
}

TEST_F(CatalogTest, Journal_PutReplacesFindAndClear) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  EXPECT_FALSE(catalog_->FindJournal(v.id)->has_value());
  ASSERT_TRUE(catalog_->PutJournal({v.id, "revert", "abc"}).ok());
  ASSERT_TRUE(catalog_->PutJournal({v.id, "delete-merge", "def"}).ok());
  auto j = catalog_->FindJournal(v.id);
  ASSERT_TRUE(j.ok() && j->has_value());
  EXPECT_EQ((*j)->volume_id, v.id);
  EXPECT_EQ((*j)->op, "delete-merge");
  EXPECT_EQ((*j)->arg, "def");
  ASSERT_TRUE(catalog_->ClearJournal(v.id).ok());
  EXPECT_FALSE(catalog_->FindJournal(v.id)->has_value());
}

TEST_F(CatalogTest, Events_RoundTripWithAndWithoutIds) {
  Open();
  Guid vol = Guid::Generate();
  Guid shadow = Guid::Generate();
  ASSERT_TRUE(catalog_
                  ->InsertEvent({0, 134400744001234567, vol, shadow,
                                 "shadow-deleted-diff-area-full",
                                 "deleted shadow X: diff area full"})
                  .ok());
  ASSERT_TRUE(
      catalog_
          ->InsertEvent({0, -1, std::nullopt, std::nullopt, "store-opened", ""})
          .ok());
  auto ev = catalog_->ListEvents(std::nullopt);
  ASSERT_TRUE(ev.ok());
  ASSERT_EQ(ev->size(), 2u);
  EXPECT_GT((*ev)[0].id, 0);
  EXPECT_GT((*ev)[1].id, (*ev)[0].id);
  EXPECT_EQ((*ev)[0].time, 134400744001234567);
  EXPECT_EQ((*ev)[0].volume_id, vol);
  EXPECT_EQ((*ev)[0].shadow_id, shadow);
  EXPECT_EQ((*ev)[0].kind, "shadow-deleted-diff-area-full");
  EXPECT_EQ((*ev)[0].message, "deleted shadow X: diff area full");
  EXPECT_EQ((*ev)[1].time, -1);
  EXPECT_FALSE((*ev)[1].volume_id.has_value());
  EXPECT_FALSE((*ev)[1].shadow_id.has_value());
  EXPECT_EQ((*ev)[1].message, "");
}

TEST_F(CatalogTest, ListEvents_FiltersByVolumeOldestFirst) {
  Open();
  Guid a = Guid::Generate();
  Guid b = Guid::Generate();
  // Times deliberately out of order: the order is insertion order.
  ASSERT_TRUE(catalog_->InsertEvent({0, 30, a, std::nullopt, "k", "a1"}).ok());
  ASSERT_TRUE(catalog_->InsertEvent({0, 20, b, std::nullopt, "k", "b1"}).ok());
  ASSERT_TRUE(catalog_->InsertEvent({0, 10, a, std::nullopt, "k", "a2"}).ok());
  ASSERT_TRUE(
      catalog_->InsertEvent({0, 5, std::nullopt, std::nullopt, "k", "n"}).ok());
  auto of_a = catalog_->ListEvents(a);
  ASSERT_TRUE(of_a.ok());
  ASSERT_EQ(of_a->size(), 2u);
  EXPECT_EQ((*of_a)[0].message, "a1");
  EXPECT_EQ((*of_a)[1].message, "a2");
  auto all = catalog_->ListEvents(std::nullopt);
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].message, "a1");
  EXPECT_EQ((*all)[1].message, "b1");
  EXPECT_EQ((*all)[2].message, "a2");
  EXPECT_EQ((*all)[3].message, "n");
}

// --- Constraints. ------------------------------------------------------------

TEST_F(CatalogTest, InsertVolume_DuplicateIdNameOrPathIsAlreadyExists) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  VolumeRow same_id = MakeVolume("other");
  same_id.id = v.id;
  VolumeRow same_name = MakeVolume("vm1");
  same_name.path = "/elsewhere.img";
  VolumeRow same_path = MakeVolume("vm2");
  same_path.path = v.path;
  for (const VolumeRow& dup : {same_id, same_name, same_path}) {
    Status s = catalog_->InsertVolume(dup);
    EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
    EXPECT_NE(s.message().find(path_), std::string::npos) << s.message();
  }
  EXPECT_EQ(catalog_->ListVolumes()->size(), 1u);
}

TEST_F(CatalogTest, InsertShadow_DuplicateIdOrEpochIsAlreadyExists) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ShadowSetRow set = MakeSet();
  ShadowRow s = MakeShadow(v, set, 1);
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  ASSERT_TRUE(catalog_->InsertShadowSet(set).ok());
  ASSERT_TRUE(catalog_->InsertShadow(s).ok());
  EXPECT_EQ(catalog_->InsertShadowSet(set).code(), StatusCode::kAlreadyExists);
  ShadowRow same_epoch = MakeShadow(v, set, 1);
  EXPECT_EQ(catalog_->InsertShadow(same_epoch).code(),
            StatusCode::kAlreadyExists);
  ShadowRow same_id = MakeShadow(v, set, 2);
  same_id.id = s.id;
  EXPECT_EQ(catalog_->InsertShadow(same_id).code(), StatusCode::kAlreadyExists);
}

TEST_F(CatalogTest, InsertShadow_UnknownVolumeOrSetIsNotFound) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ShadowSetRow set = MakeSet();
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  // The set was never inserted.
  EXPECT_EQ(catalog_->InsertShadow(MakeShadow(v, set, 1)).code(),
            StatusCode::kNotFound);
  ASSERT_TRUE(catalog_->InsertShadowSet(set).ok());
  VolumeRow ghost = MakeVolume("ghost");
  EXPECT_EQ(catalog_->InsertShadow(MakeShadow(ghost, set, 1)).code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(catalog_->ListShadows()->empty());
}

TEST_F(CatalogTest, InsertIndexRows_DuplicateKeyIsAlreadyExistsAndInsertsNone) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  Status s = catalog_->InsertIndexRows(
      v.id, {MakeIndexRow(1, 1), MakeIndexRow(1, 2), MakeIndexRow(1, 1)});
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  EXPECT_TRUE(catalog_->ListIndexRows(v.id)->empty());
}

// --- Transactions. -----------------------------------------------------------

TEST_F(CatalogTest, Transaction_DestroyedWithoutCommitLeavesNothing) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  {
    auto txn = catalog_->Begin();
    ASSERT_TRUE(txn.ok()) << txn.status().ToString();
    ASSERT_TRUE(catalog_->InsertVolume(v).ok());
    ASSERT_TRUE(catalog_->InsertIndexRows(v.id, {MakeIndexRow(1, 1)}).ok());
    ASSERT_TRUE(
        catalog_->InsertEvent({0, 1, v.id, std::nullopt, "k", "m"}).ok());
  }
  EXPECT_TRUE(catalog_->ListVolumes()->empty());
  EXPECT_TRUE(catalog_->ListIndexRows(v.id)->empty());
  EXPECT_TRUE(catalog_->ListEvents(std::nullopt)->empty());
  Open();
  EXPECT_TRUE(catalog_->ListVolumes()->empty());
}

TEST_F(CatalogTest, Transaction_CommitPersistsAcrossReopen) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ShadowSetRow set = MakeSet();
  {
    auto txn = catalog_->Begin();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(catalog_->InsertVolume(v).ok());
    ASSERT_TRUE(catalog_->InsertShadowSet(set).ok());
    ASSERT_TRUE(catalog_->InsertShadow(MakeShadow(v, set, 1)).ok());
    ASSERT_TRUE(catalog_->InsertIndexRows(v.id, {MakeIndexRow(1, 1)}).ok());
    ASSERT_TRUE(txn->Commit().ok());
    EXPECT_EQ(txn->Commit().code(), StatusCode::kFailedPrecondition);
  }
  Open();
  EXPECT_EQ(catalog_->ListVolumes()->size(), 1u);
  EXPECT_EQ(catalog_->ListShadows()->size(), 1u);
  EXPECT_EQ(catalog_->ListIndexRows(v.id)->size(), 1u);
}

TEST_F(CatalogTest, Transaction_MovedFromDoesNotRollBack) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  auto txn = catalog_->Begin();
  ASSERT_TRUE(txn.ok());
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  {
    Transaction moved(std::move(*txn));
    ASSERT_TRUE(moved.Commit().ok());
  }
  EXPECT_EQ(catalog_->ListVolumes()->size(), 1u);
}

TEST_F(CatalogTest, Begin_WhileOneIsOpenIsFailedPrecondition) {
  Open();
  auto txn = catalog_->Begin();
  ASSERT_TRUE(txn.ok());
  auto second = catalog_->Begin();
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(txn->Commit().ok());
}

TEST_F(CatalogTest, Transaction_OtherThreadsWaitForItToEnd) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  auto txn = catalog_->Begin();
  ASSERT_TRUE(txn.ok());
  std::atomic<bool> other_done{false};
  size_t other_saw = 99;
  std::thread other([&] {
    // Blocks on the catalog mutex until the transaction ends, then sees the
    // committed volume.
    auto vols = catalog_->ListVolumes();
    other_saw = vols.ok() ? vols->size() : 99;
    other_done = true;
  });
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(other_done.load());
  ASSERT_TRUE(txn->Commit().ok());  // releases the mutex
  other.join();
  EXPECT_EQ(other_saw, 1u);
}

TEST_F(CatalogTest, ManyThreads_InsertEventsConcurrently) {
  Open();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        EXPECT_TRUE(catalog_
                        ->InsertEvent({0, i, std::nullopt, std::nullopt, "k",
                                       std::to_string(t)})
                        .ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(catalog_->ListEvents(std::nullopt)->size(), 200u);
}

TEST_F(CatalogTest, SecondConnection_SeesCommittedRows) {
  Open();
  auto other = Catalog::Open(path_);
  ASSERT_TRUE(other.ok());
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  EXPECT_TRUE((*other)->FindVolume(v.id)->has_value());
}

// --- Deletion. ---------------------------------------------------------------

TEST_F(CatalogTest, DeleteShadow_RemovesTheSetWithItsLastShadow) {
  Open();
  VolumeRow a = MakeVolume("a");
  VolumeRow b = MakeVolume("b");
  ShadowSetRow set = MakeSet();
  ShadowRow sa = MakeShadow(a, set, 1);
  ShadowRow sb = MakeShadow(b, set, 1);
  ASSERT_TRUE(catalog_->InsertVolume(a).ok());
  ASSERT_TRUE(catalog_->InsertVolume(b).ok());
  ASSERT_TRUE(catalog_->InsertShadowSet(set).ok());
  ASSERT_TRUE(catalog_->InsertShadow(sa).ok());
  ASSERT_TRUE(catalog_->InsertShadow(sb).ok());

  ASSERT_TRUE(catalog_->DeleteShadow(sa.id).ok());
  EXPECT_FALSE(catalog_->FindShadow(sa.id)->has_value());
  EXPECT_EQ(catalog_->ListShadowSets()->size(), 1u);
  ASSERT_TRUE(catalog_->DeleteShadow(sb.id).ok());
  EXPECT_TRUE(catalog_->ListShadowSets()->empty());
  EXPECT_EQ(catalog_->DeleteShadow(sb.id).code(), StatusCode::kNotFound);
}

TEST_F(CatalogTest, DeleteVolume_CascadesToEverythingButEvents) {
  Open();
  VolumeRow a = MakeVolume("a");
  VolumeRow b = MakeVolume("b");
  ShadowSetRow only_a = MakeSet();
  ShadowSetRow shared = MakeSet();
  ASSERT_TRUE(catalog_->InsertVolume(a).ok());
  ASSERT_TRUE(catalog_->InsertVolume(b).ok());
  ASSERT_TRUE(catalog_->InsertShadowSet(only_a).ok());
  ASSERT_TRUE(catalog_->InsertShadowSet(shared).ok());
  ASSERT_TRUE(catalog_->InsertShadow(MakeShadow(a, only_a, 1)).ok());
  ASSERT_TRUE(catalog_->InsertShadow(MakeShadow(a, shared, 2)).ok());
  ShadowRow sb = MakeShadow(b, shared, 1);
  ASSERT_TRUE(catalog_->InsertShadow(sb).ok());
  for (const VolumeRow& v : {a, b}) {
    ASSERT_TRUE(
        catalog_->UpsertDiffArea({v.id, "/d/" + v.name, kUnbounded, 0}).ok());
    ASSERT_TRUE(catalog_->InsertIndexRows(v.id, {MakeIndexRow(1, 1)}).ok());
    ASSERT_TRUE(catalog_->UpsertSegment(v.id, {1, 4096, 4096}).ok());
    ASSERT_TRUE(catalog_->InsertFreeRanges(v.id, {{1, 0, 4096}}).ok());
    ASSERT_TRUE(catalog_->PutJournal({v.id, "revert", "x"}).ok());
    ASSERT_TRUE(
        catalog_->InsertEvent({0, 1, v.id, std::nullopt, "k", v.name}).ok());
  }

  ASSERT_TRUE(catalog_->DeleteVolume(a.id).ok());

  EXPECT_FALSE(catalog_->FindVolume(a.id)->has_value());
  EXPECT_FALSE(catalog_->FindDiffArea(a.id)->has_value());
  EXPECT_TRUE(catalog_->ListShadowsOfVolume(a.id)->empty());
  EXPECT_TRUE(catalog_->ListIndexRows(a.id)->empty());
  EXPECT_TRUE(catalog_->ListSegments(a.id)->empty());
  EXPECT_TRUE(catalog_->ListFreeRanges(a.id)->empty());
  EXPECT_FALSE(catalog_->FindJournal(a.id)->has_value());
  auto sets = catalog_->ListShadowSets();
  ASSERT_EQ(sets->size(), 1u);  // the set only a used is gone
  EXPECT_EQ((*sets)[0].id, shared.id);
  EXPECT_EQ(catalog_->ListEvents(a.id)->size(), 1u);  // events stay

  // b is untouched.
  EXPECT_TRUE(catalog_->FindVolume(b.id)->has_value());
  EXPECT_TRUE(catalog_->FindDiffArea(b.id)->has_value());
  EXPECT_EQ(catalog_->ListShadows()->size(), 1u);
  EXPECT_EQ(catalog_->ListIndexRows(b.id)->size(), 1u);
  EXPECT_EQ(catalog_->ListSegments(b.id)->size(), 1u);
  EXPECT_EQ(catalog_->ListFreeRanges(b.id)->size(), 1u);
  EXPECT_TRUE(catalog_->FindJournal(b.id)->has_value());

  EXPECT_EQ(catalog_->DeleteVolume(a.id).code(), StatusCode::kNotFound);
}

// --- Opening, schema and damage. ---------------------------------------------

TEST_F(CatalogTest, Open_SetsSchemaVersionWalAndApplicationId) {
  Open();
  EXPECT_EQ(catalog_->path(), path_);
  EXPECT_EQ(RawInt("PRAGMA user_version"), Catalog::kSchemaVersion);
  EXPECT_EQ(RawInt("PRAGMA application_id"), 0x76737343);
  EXPECT_EQ(RawInt("SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
  // Reopening an up-to-date catalog changes nothing.
  Open();
  EXPECT_EQ(RawInt("PRAGMA user_version"), Catalog::kSchemaVersion);
}

TEST_F(CatalogTest, Open_NewerSchemaIsFailedPreconditionNamingFile) {
  Open();
  catalog_.reset();
  RawExec("PRAGMA user_version = " +
          std::to_string(Catalog::kSchemaVersion + 1));
  auto c = Catalog::Open(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(c.status().message(),
            "catalog " + path_ + " has schema version " +
                std::to_string(Catalog::kSchemaVersion + 1) +
                ", this build knows up to " +
                std::to_string(Catalog::kSchemaVersion));
}

TEST_F(CatalogTest, Open_GarbageFileIsCorruptionNamingPathAndUnchanged) {
  std::string garbage(8192, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) {
    garbage[i] = static_cast<char>(i * 131 + 7);
  }
  WriteFile(garbage);
  auto c = Catalog::Open(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kCorruption);
  EXPECT_EQ(c.status().message(),
            "catalog " + path_ + " is damaged: file is not a database");
  EXPECT_EQ(ReadFile(), garbage);
}

TEST_F(CatalogTest, Open_OtherProgramsSqliteDatabaseIsCorruption) {
  RawExec("CREATE TABLE recipes (name TEXT)");
  auto c = Catalog::Open(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kCorruption);
  EXPECT_NE(c.status().message().find(path_), std::string::npos);
  EXPECT_NE(c.status().message().find("not a vss catalog"), std::string::npos);
}

TEST_F(CatalogTest, Open_MissingDirectoryIsIoError) {
  path_ = dir_ + "/no/such/dir/catalog.db";
  auto c = Catalog::Open(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kIoError);
  EXPECT_NE(c.status().message().find(path_), std::string::npos);
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

TEST_F(CatalogTest, Open_ZeroLengthFileIsCorruptionNamingFileAndUnchanged) {
  WriteFile("");
  auto c = Catalog::Open(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kCorruption);
  EXPECT_NE(c.status().message().find("catalog " + path_ + " is empty"),
            std::string::npos)
      << c.status().ToString();
  EXPECT_EQ(fs::file_size(path_), 0u);
  EXPECT_FALSE(fs::exists(path_ + "-wal"));
}

TEST_F(CatalogTest, Open_SqliteDatabaseWithoutSchemaIsCorruption) {
  // A database file that SQLite initialised but that holds nothing, as a
  // catalog reset by a tool or half made by an older build would.
  RawExec("CREATE TABLE t (x); DROP TABLE t;");
  ASSERT_GT(fs::file_size(path_), 0u);
  std::string before = ReadFile();
  auto c = Catalog::Open(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kCorruption);
  EXPECT_NE(c.status().message().find(path_), std::string::npos);
  EXPECT_NE(c.status().message().find("no vss schema"), std::string::npos)
      << c.status().ToString();
  EXPECT_EQ(RawInt("PRAGMA user_version"), 0);
  EXPECT_EQ(ReadFile(), before);
}

TEST_F(CatalogTest, Open_SymbolicLinkIsRefused) {
  Open();
  catalog_.reset();
  const std::string link = dir_ + "/link.db";
  ASSERT_EQ(symlink(path_.c_str(), link.c_str()), 0);
  auto c = Catalog::Open(link);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(c.status().message().find(link), std::string::npos);
}

TEST_F(CatalogTest, Open_NewCatalogIsPrivateWholeAndLeavesNoTemporaryFile) {
  mode_t old = umask(022);
  Open();
  // A write so that the WAL and shared-memory files exist.
  ASSERT_TRUE(catalog_->InsertVolume(MakeVolume("a")).ok());
  umask(old);
  EXPECT_EQ(ModeOf(path_), 0600u);
  EXPECT_EQ(ModeOf(path_ + "-wal"), 0600u);
  EXPECT_EQ(ModeOf(path_ + "-shm"), 0600u);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"catalog.db", "catalog.db-shm",
                                             "catalog.db-wal"}));
  // The file got its schema before its name: a second connection opened on
  // it while the first is open finds a complete catalog.
  EXPECT_EQ(RawInt("PRAGMA user_version"), Catalog::kSchemaVersion);
}

TEST_F(CatalogTest, DiffArea_TwoVolumesOnOneDirectoryIsAlreadyExists) {
  Open();
  VolumeRow a = MakeVolume("a"), b = MakeVolume("b");
  ASSERT_TRUE(catalog_->InsertVolume(a).ok());
  ASSERT_TRUE(catalog_->InsertVolume(b).ok());
  ASSERT_TRUE(catalog_->UpsertDiffArea({a.id, "/srv/diff", 100, 0}).ok());
  Status s = catalog_->UpsertDiffArea({b.id, "/srv/diff", 100, 0});
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  EXPECT_FALSE(catalog_->FindDiffArea(b.id)->has_value());
  // Moving b's onto a's directory later is refused the same way.
  ASSERT_TRUE(catalog_->UpsertDiffArea({b.id, "/srv/other", 100, 0}).ok());
  EXPECT_EQ(catalog_->UpsertDiffArea({b.id, "/srv/diff", 5, 0}).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ((*catalog_->FindDiffArea(b.id))->dir, "/srv/other");
  // A volume's own row may be rewritten in place.
  EXPECT_TRUE(catalog_->UpsertDiffArea({a.id, "/srv/diff", 7, 3}).ok());
}

TEST_F(CatalogTest, Migration_Version1StoreOpensKeepsRowsAndGainsTheDirRule) {
  Open();
  VolumeRow a = MakeVolume("a"), b = MakeVolume("b"), c = MakeVolume("c");
  for (const VolumeRow& v : {a, b, c}) {
    ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  }
  ASSERT_TRUE(catalog_->UpsertDiffArea({a.id, "/srv/diff", 100, 10}).ok());
  ASSERT_TRUE(catalog_->UpsertDiffArea({b.id, "/srv/b", 100, 20}).ok());
  catalog_.reset();
  // Back to schema version 1, as an older build left it, including the
  // two volumes on one directory that version 1 allowed.
  RawExec(
      "DROP TRIGGER diff_areas_dir_unique_insert;"
      "DROP TRIGGER diff_areas_dir_unique_update;"
      "DROP INDEX diff_areas_by_dir;"
      "UPDATE diff_areas SET dir = '/srv/diff';"
      "ALTER TABLE volumes DROP COLUMN format;"
      "ALTER TABLE volumes DROP COLUMN guest_agent;"
      "ALTER TABLE shadows DROP COLUMN properties;"
      "PRAGMA user_version = 1;");
  Open();
  EXPECT_EQ(RawInt("PRAGMA user_version"), Catalog::kSchemaVersion);
  auto rows = catalog_->ListDiffAreas();
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].dir, "/srv/diff");
  EXPECT_EQ((*rows)[1].dir, "/srv/diff");
  // The old rows stay; a third volume on that directory is refused.
  EXPECT_EQ(catalog_->UpsertDiffArea({c.id, "/srv/diff", 1, 0}).code(),
            StatusCode::kAlreadyExists);
  EXPECT_TRUE(catalog_->UpsertDiffArea({c.id, "/srv/c", 1, 0}).ok());
}

TEST_F(CatalogTest, Volume_FormatRoundTrips) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  v.format = "qcow2";
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  Open();
  auto found = catalog_->FindVolume(v.id);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->format, "qcow2");
  EXPECT_EQ((*catalog_->ListVolumes())[0].format, "qcow2");
}

TEST_F(CatalogTest, Migration_Version2StoreOpensWithEveryVolumeRaw) {
  Open();
  catalog_.reset();
  // Back to schema version 2, as the build before image formats left it,
  // with a volume written by that build's INSERT (no format column).
  RawExec(
      "ALTER TABLE volumes DROP COLUMN format;"
      "ALTER TABLE volumes DROP COLUMN guest_agent;"
      "ALTER TABLE shadows DROP COLUMN properties;"
      "INSERT INTO volumes (id, name, path, size, chunk_size, next_epoch, "
      "created) VALUES ('00000000-0000-0000-0000-0000000000a1', 'old', "
      "'/images/old.img', 1048576, 65536, 3, 1);"
      "PRAGMA user_version = 2;");
  ASSERT_EQ(RawInt("SELECT count(*) FROM pragma_table_info('volumes') "
                   "WHERE name = 'format'"),
            0);
  Open();
  EXPECT_EQ(RawInt("PRAGMA user_version"), Catalog::kSchemaVersion);
  auto rows = catalog_->ListVolumes();
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 1u);
  const VolumeRow& old = (*rows)[0];
  EXPECT_EQ(old.name, "old");
  EXPECT_EQ(old.path, "/images/old.img");
  EXPECT_EQ(old.size, 1048576u);
  EXPECT_EQ(old.next_epoch, 3u);
  EXPECT_EQ(old.format, "raw");
  // The migrated store takes new volumes of any format.
  VolumeRow v = MakeVolume("new");
  v.format = "qcow2";
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  EXPECT_EQ((*catalog_->FindVolume(v.id))->format, "qcow2");
}

TEST_F(CatalogTest, Migration_Version2ShadowsGainTheirProviderColumnsAsProperties) {
  Open();
  VolumeRow v = MakeVolume("a");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  ShadowSetRow set = MakeSet();
  ASSERT_TRUE(catalog_->InsertShadowSet(set).ok());
  ShadowRow sh = MakeShadow(v, set, 1);
  ASSERT_TRUE(catalog_->InsertShadow(sh).ok());
  catalog_.reset();
  // Back to schema version 2, as an older build left it.
  RawExec(
      "ALTER TABLE shadows DROP COLUMN properties;"
       "ALTER TABLE volumes DROP COLUMN format;"
      "ALTER TABLE volumes DROP COLUMN guest_agent;"
      "PRAGMA user_version = 2;");
  Open();
  EXPECT_EQ(RawInt("PRAGMA user_version"), Catalog::kSchemaVersion);
  auto found = catalog_->FindShadow(sh.id);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->properties,
            "context=-1\nattributes=" + std::to_string(sh.attributes) +
                "\nstate=12\nprovider_id=" + sh.provider_id.ToString() +
                "\ndevice_object=" + sh.device_object +
                "\noriginating_machine=host-a\nservice_machine=host-b");
  EXPECT_EQ((*found)->device_object, sh.device_object);  // the column stays
  // New rows carry their own properties.
  ShadowRow next = MakeShadow(v, set, 2);
  next.properties = "new";
  ASSERT_TRUE(catalog_->InsertShadow(next).ok());
  EXPECT_EQ((*catalog_->FindShadow(next.id))->properties, "new");
}

// Fills a catalog with enough rows to span many pages, then closes it.
void FillCatalog(Catalog* c) {
  VolumeRow v;
  v.id = Guid::Generate();
  v.name = "big";
  v.path = "/big.img";
  ASSERT_TRUE(c->InsertVolume(v).ok());
  std::vector<IndexRow> rows(20000);
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].epoch = 1;
    rows[i].chunk = i;
  }
  ASSERT_TRUE(c->InsertIndexRows(v.id, rows).ok());
}

// Every list call, so that damage anywhere in the file is read.
Status ReadEverything(Catalog* c) {
  VSS_ASSIGN_OR_RETURN(std::vector<VolumeRow> vols, c->ListVolumes());
  for (const VolumeRow& v : vols) {
    VSS_RETURN_IF_ERROR(c->ListIndexRows(v.id).status());
  }
  VSS_RETURN_IF_ERROR(c->ListShadows().status());
  return c->ListEvents(std::nullopt).status();
}

TEST_F(CatalogTest, Open_CatalogWithGarbageFirstPageIsCorruption) {
  Open();
  FillCatalog(catalog_.get());
  catalog_.reset();
  std::string bytes = ReadFile();
  ASSERT_GT(bytes.size(), 65536u);
  for (size_t i = 0; i < 4096; ++i) bytes[i] = static_cast<char>(0xa5 ^ i);
  WriteFile(bytes);
  auto c = Catalog::Open(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kCorruption);
  EXPECT_NE(c.status().message().find(path_), std::string::npos);
}

TEST_F(CatalogTest, TruncatedCatalog_IsCorruptionOnOpenOrRead) {
  Open();
  FillCatalog(catalog_.get());
  catalog_.reset();
  fs::resize_file(path_, fs::file_size(path_) / 2);
  auto c = Catalog::Open(path_);
  Status s = c.ok() ? ReadEverything(c->get()) : c.status();
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find(path_), std::string::npos);
}

TEST_F(CatalogTest, CatalogWithGarbageMiddlePagesIsCorruptionOnOpenOrRead) {
  Open();
  FillCatalog(catalog_.get());
  catalog_.reset();
  std::string bytes = ReadFile();
  for (size_t i = bytes.size() / 4; i < bytes.size() * 3 / 4; ++i) {
    bytes[i] = static_cast<char>(i * 7919);
  }
  WriteFile(bytes);
  auto c = Catalog::Open(path_);
  Status s = c.ok() ? ReadEverything(c->get()) : c.status();
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find(path_), std::string::npos);
}

TEST_F(CatalogTest, BadValueInARow_IsCorruptionNamingTheColumn) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  RawExec("UPDATE volumes SET chunk_size = 1 << 40");
  auto vols = catalog_->ListVolumes();
  ASSERT_FALSE(vols.ok());
  EXPECT_EQ(vols.status().code(), StatusCode::kCorruption);
  EXPECT_NE(vols.status().message().find("chunk_size"), std::string::npos);
  RawExec("UPDATE volumes SET chunk_size = 4096, id = 'not-a-guid'");
  vols = catalog_->ListVolumes();
  ASSERT_FALSE(vols.ok());
  EXPECT_EQ(vols.status().code(), StatusCode::kCorruption);
  EXPECT_NE(vols.status().message().find("not-a-guid"), std::string::npos);
}

// --- Bulk index insert. ------------------------------------------------------

TEST_F(CatalogTest, InsertIndexRows_100kRowsWithoutACallerTransaction) {
  Open();
  VolumeRow v = MakeVolume("vm1");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  std::vector<IndexRow> rows(100000);
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i] = MakeIndexRow(1 + i % 3, i);
    rows[i].checksum = 0x8000000000000000ull | i;
  }
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(catalog_->InsertIndexRows(v.id, rows).ok());
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf("InsertIndexRows: 100000 rows in %.3f s\n", secs);
  // Expect ~0.2 s (several under sanitizers on a loaded machine). The bound
  // only catches a synced commit per row, which takes minutes.
  EXPECT_LT(secs, 60.0);
  auto all = catalog_->ListIndexRows(v.id);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), rows.size());
  EXPECT_EQ(catalog_->ListIndexRowsOfEpoch(v.id, 2)->size(), 33333u);
}

// --- Time. -------------------------------------------------------------------

TEST(VssTimestampTest, ConvertsKnownValuesToIso8601) {
  EXPECT_EQ(VssTimestampToIso8601(116444736000000000),
            "1970-01-01T00:00:00.0000000Z");
  EXPECT_EQ(VssTimestampToIso8601(0), "1601-01-01T00:00:00.0000000Z");
  EXPECT_EQ(VssTimestampToIso8601(134400744001234567),
            "2026-11-25T10:00:00.1234567Z");
  EXPECT_EQ(VssTimestampToIso8601(116444736000000000 - 1),
            "1969-12-31T23:59:59.9999999Z");
  // 2000-02-29 (a leap day) 23:59:59.5
  EXPECT_EQ(VssTimestampToIso8601(125963423995000000),
            "2000-02-29T23:59:59.5000000Z");
}

TEST(VssTimestampTest, NowIsUnixTimeIn100nsPlusTheEpochOffset) {
  int64_t before = static_cast<int64_t>(std::time(nullptr));
  int64_t now = NowVssTimestamp();
  int64_t after = static_cast<int64_t>(std::time(nullptr));
  int64_t unix_secs = (now - 116444736000000000) / 10000000;
  EXPECT_GE(unix_secs, before);
  EXPECT_LE(unix_secs, after);
}

TEST_F(CatalogTest, Migration_Version4VolumesHaveNoGuestAgent) {
  Open();
  VolumeRow v = MakeVolume("a");
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  catalog_.reset();
  // Back to schema version 4, as the build before guest agents left it.
  RawExec(
      "ALTER TABLE volumes DROP COLUMN guest_agent;"
      "PRAGMA user_version = 4;");
  Open();
  EXPECT_EQ(RawInt("PRAGMA user_version"), Catalog::kSchemaVersion);
  EXPECT_EQ(RawInt("SELECT count(*) FROM volumes WHERE guest_agent IS NULL"), 1);
  auto found = catalog_->FindVolume(v.id);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->guest_agent, "");
}

TEST_F(CatalogTest, SetVolumeGuestAgentSetsAndClears) {
  Open();
  VolumeRow v = MakeVolume("a");
  v.guest_agent = "/run/vm/a.qga";
  ASSERT_TRUE(catalog_->InsertVolume(v).ok());
  EXPECT_EQ((*catalog_->FindVolume(v.id))->guest_agent, "/run/vm/a.qga");
  ASSERT_TRUE(catalog_->SetVolumeGuestAgent(v.id, "/run/vm/b.qga").ok());
  EXPECT_EQ((*catalog_->ListVolumes())[0].guest_agent, "/run/vm/b.qga");
  ASSERT_TRUE(catalog_->SetVolumeGuestAgent(v.id, "").ok());
  EXPECT_EQ((*catalog_->FindVolume(v.id))->guest_agent, "");
  // Cleared is NULL, never the empty string.
  EXPECT_EQ(RawInt("SELECT count(*) FROM volumes WHERE guest_agent IS NULL"), 1);
  EXPECT_EQ(catalog_->SetVolumeGuestAgent(Guid::Generate(), "/x").code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace vss::metadata
