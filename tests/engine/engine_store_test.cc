// The Store on the real file system: where diff areas live and whose they
// are, which catalogs a store accepts, privacy of what it creates, symbolic
// links in paths read from a store, and images of other formats.

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine_test_util.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"

namespace vss::engine {
namespace {

namespace fs = std::filesystem;
using test_util::TempDir;

constexpr uint64_t kSize = 4 << 20;
constexpr uint32_t kChunk = 64 * 1024;

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

std::vector<uint8_t> Bytes(size_t n, uint8_t v) { return std::vector<uint8_t>(n, v); }

void WriteFileBytes(const std::string& path, const std::string& bytes, uint64_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
  f.close();
  fs::resize_file(path, size);
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The names of the files in `dir` whose names start "seg-".
std::vector<std::string> Segments(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind("seg-", 0) == 0)
      out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_dir_ = dir_.path() + "/store"; }

  StatusOr<std::unique_ptr<Store>> OpenStore() {
    StoreOptions o;
    o.dir = store_dir_;
    return Store::Open(std::move(o));
  }

  void Reopen() {
    store_.reset();
    VSS_ASSERT_OK_AND_ASSIGN(store_, OpenStore());
  }

  // A new volume `name` whose image is dir/name.img.
  VolumeInfo NewVolume(const std::string& name) {
    auto row = store_->CreateVolume(
        {.path = dir_.path() + "/" + name + ".img", .size = kSize, .name = name,
         .chunk_size = kChunk});
    EXPECT_TRUE(row.ok()) << row.status().ToString();
    return row.ok() ? *row : VolumeInfo{};
  }

  // Writes `v` over [0, 1 MiB) of the volume.
  void Fill(const Guid& id, uint8_t v) {
    VSS_ASSERT_OK_AND_ASSIGN(Volume * vol, store_->OpenVolume(id));
    VSS_ASSERT_OK(vol->Write(0, Bytes(1 << 20, v)));
    VSS_ASSERT_OK(vol->Flush());
  }

  Guid Shadow(const Guid& id) {
    auto set = store_->CreateShadowSet({.volumes = {id}});
    EXPECT_TRUE(set.ok()) << set.status().ToString();
    return set.ok() ? set->shadows[0].shadow_id : Guid();
  }

  // Checks that the shadow verifies and reads `v` in its first MiB.
  void ExpectShadow(const Guid& volume, const Guid& shadow, uint8_t v) {
    VSS_ASSERT_OK_AND_ASSIGN(Volume * vol, store_->OpenVolume(volume));
    VSS_ASSERT_OK_AND_ASSIGN(VerifyReport report, vol->Verify(shadow));
    EXPECT_TRUE(report.errors.empty()) << report.errors.front();
    EXPECT_GT(report.records_checked, 0u);
    VSS_ASSERT_OK_AND_ASSIGN(auto view, vol->OpenShadow(shadow));
    std::vector<uint8_t> buf(1 << 20);
    VSS_ASSERT_OK(view->Read(0, buf));
    EXPECT_EQ(buf, Bytes(1 << 20, v));
  }

  TempDir dir_;
  std::string store_dir_;
  std::unique_ptr<Store> store_;
};

// --- Finding 1: each volume's segments are its own. ------------------------

TEST_F(StoreTest, SetVolumeGuestAgent_SetsKeepsAcrossReopenAndClears) {
  Reopen();
  VolumeInfo v = NewVolume("vm");
  EXPECT_EQ(v.guest_agent, "");
  VSS_ASSERT_OK_AND_ASSIGN(VolumeInfo set, store_->SetVolumeGuestAgent(v.id, "/run/vm.qga"));
  EXPECT_EQ(set.guest_agent, "/run/vm.qga");
  Reopen();
  VSS_ASSERT_OK_AND_ASSIGN(VolumeInfo found, store_->FindVolume(v.id));
  EXPECT_EQ(found.guest_agent, "/run/vm.qga");
  // Refused, and nothing changed: a relative path, an unknown volume.
  EXPECT_EQ(store_->SetVolumeGuestAgent(v.id, "vm.qga").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->SetVolumeGuestAgent(Guid::Generate(), "/x").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ((*store_->ListVolumes())[0].guest_agent, "/run/vm.qga");
  VSS_ASSERT_OK_AND_ASSIGN(VolumeInfo cleared, store_->SetVolumeGuestAgent(v.id, ""));
  EXPECT_EQ(cleared.guest_agent, "");
}

TEST_F(StoreTest, TwoVolumesOnOneDiffAreaDirectory_BothShadowsVerify) {
  Reopen();
  VolumeInfo a = NewVolume("a"), b = NewVolume("b");
  const std::string d = dir_.path() + "/diff";
  VSS_ASSERT_OK(store_->AddDiffArea(a.id, d, kUnbounded));
  VSS_ASSERT_OK(store_->AddDiffArea(b.id, d, kUnbounded));
  Fill(a.id, 0xa1);
  Fill(b.id, 0xb1);
  Guid sa = Shadow(a.id), sb = Shadow(b.id);
  Fill(a.id, 0xa2);
  Fill(b.id, 0xb2);
  Reopen();  // and again after DiffArea::Open has listed the directories
  Fill(a.id, 0xa3);
  Fill(b.id, 0xb3);
  ExpectShadow(a.id, sa, 0xa1);
  ExpectShadow(b.id, sb, 0xb1);
  EXPECT_FALSE(Segments(d + "/" + a.id.ToString()).empty());
  EXPECT_FALSE(Segments(d + "/" + b.id.ToString()).empty());
  EXPECT_TRUE(Segments(d).empty());
}

TEST_F(StoreTest, RemoveVolume_LeavesTheOtherVolumesSegmentsOnTheSameDirectory) {
  Reopen();
  VolumeInfo a = NewVolume("a"), b = NewVolume("b");
  const std::string d = dir_.path() + "/diff";
  VSS_ASSERT_OK(store_->AddDiffArea(a.id, d, kUnbounded));
  VSS_ASSERT_OK(store_->AddDiffArea(b.id, d, kUnbounded));
  Fill(a.id, 1);
  Fill(b.id, 2);
  Shadow(a.id);
  Guid sb = Shadow(b.id);
  Fill(a.id, 3);
  Fill(b.id, 4);
  std::vector<std::string> b_segments = Segments(d + "/" + b.id.ToString());
  ASSERT_FALSE(b_segments.empty());
  VSS_ASSERT_OK(store_->RemoveVolume(a.id));
  EXPECT_FALSE(fs::exists(d + "/" + a.id.ToString()));
  EXPECT_EQ(Segments(d + "/" + b.id.ToString()), b_segments);
  Reopen();
  ExpectShadow(b.id, sb, 2);
}

TEST_F(StoreTest, AddDiffArea_MakesAPrivateDirectoryOfTheVolumesOwn) {
  Reopen();
  VolumeInfo a = NewVolume("a");
  const std::string d = dir_.path() + "/x/diff";
  VSS_ASSERT_OK(store_->AddDiffArea(a.id, d, 1 << 30));
  VSS_ASSERT_OK_AND_ASSIGN(DiffAreaInfo row, store_->DiffAreaOf(a.id));
  VSS_ASSERT_OK_AND_ASSIGN(std::string real_d, FileSystem::Default()->RealPath(d));
  EXPECT_EQ(row.dir, real_d + "/" + a.id.ToString());
  EXPECT_EQ(ModeOf(row.dir), 0700u);
}

// A store made by an older version may have two volumes on one directory;
// it opens, and those volumes are refused rather than damaged further.
TEST_F(StoreTest, LegacySharedDiffArea_VolumesRefusedAndRemovalKeepsFiles) {
  Reopen();
  VolumeInfo a = NewVolume("a"), b = NewVolume("b");
  const std::string d = dir_.path() + "/shared";
  VSS_ASSERT_OK(store_->AddDiffArea(a.id, d, kUnbounded));
  Fill(a.id, 1);
  Shadow(a.id);
  Fill(a.id, 2);
  VSS_ASSERT_OK_AND_ASSIGN(DiffAreaInfo row, store_->DiffAreaOf(a.id));
  std::vector<std::string> a_segments = Segments(row.dir);
  ASSERT_FALSE(a_segments.empty());
  store_.reset();
  {  // What schema version 1 allowed: b's row on a's directory.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((store_dir_ + "/catalog.db").c_str(), &db), SQLITE_OK);
    std::string sql =
        "DROP TRIGGER diff_areas_dir_unique_insert;"
        "INSERT INTO diff_areas VALUES ('" + b.id.ToString() + "', '" + row.dir +
        "', -1, 0);";
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << msg;
  }
  Reopen();
  for (const Guid& id : {a.id, b.id}) {
    auto v = store_->OpenVolume(id);
    EXPECT_EQ(v.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(v.status().message().find(row.dir), std::string::npos) << v.status().ToString();
  }
  VSS_ASSERT_OK(store_->RemoveVolume(b.id));
  EXPECT_EQ(Segments(row.dir), a_segments);
  VSS_EXPECT_OK(store_->OpenVolume(a.id).status());
}

// --- Finding 5: a catalog that cannot be the store's is never a new one. ---

class CatalogDamageTest : public StoreTest {
 protected:
  // A store with one volume, a shadow and preserved records, closed.
  void MakeStore() {
    Reopen();
    VolumeInfo a = NewVolume("a");
    Fill(a.id, 1);
    Shadow(a.id);
    Fill(a.id, 2);
    store_.reset();
    catalog_ = store_dir_ + "/catalog.db";
    ASSERT_FALSE(Segments(store_dir_ + "/diff/" + a.id.ToString()).empty());
    for (const char* ext : {"-wal", "-shm"}) fs::remove(catalog_ + ext);
  }

  void ExpectRefused(const std::string& words) {
    auto s = OpenStore();
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), StatusCode::kCorruption) << s.status().ToString();
    EXPECT_NE(s.status().message().find(catalog_), std::string::npos) << s.status().ToString();
    EXPECT_NE(s.status().message().find(words), std::string::npos) << s.status().ToString();
  }

  std::string catalog_;
};

TEST_F(CatalogDamageTest, ZeroLengthCatalog_IsRefusedAndLeftAsItIs) {
  MakeStore();
  fs::resize_file(catalog_, 0);
  ExpectRefused("is empty");
  EXPECT_EQ(fs::file_size(catalog_), 0u);
  ExpectRefused("is empty");  // still: nothing was initialised
}

TEST_F(CatalogDamageTest, MissingCatalogWhileDiffAreasRemain_IsRefused) {
  MakeStore();
  fs::remove(catalog_);
  ExpectRefused("is missing");
  EXPECT_FALSE(fs::exists(catalog_));
}

TEST_F(CatalogDamageTest, MissingCatalogWithItsLogLeft_IsRefused) {
  MakeStore();
  fs::remove_all(store_dir_ + "/diff");
  fs::rename(catalog_, catalog_ + "-wal");
  ExpectRefused("-wal");
  EXPECT_FALSE(fs::exists(catalog_));
}

TEST_F(CatalogDamageTest, NotADatabase_IsRefusedAndLeftAsItIs) {
  MakeStore();
  std::string junk(8192, 'j');
  WriteFileBytes(catalog_, junk, junk.size());
  ExpectRefused("not a database");
  EXPECT_EQ(ReadFileBytes(catalog_), junk);
}

TEST_F(CatalogDamageTest, DatabaseWithoutSchema_IsRefused) {
  MakeStore();
  fs::remove(catalog_);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(catalog_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t (x); DROP TABLE t;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  ExpectRefused("no vss schema");
}

TEST_F(CatalogDamageTest, DamagedSchemaPage_IsRefused) {
  MakeStore();
  std::string bytes = ReadFileBytes(catalog_);
  ASSERT_GT(bytes.size(), 4096u);
  for (size_t i = 100; i < 4096; ++i) bytes[i] = static_cast<char>(i * 37);
  WriteFileBytes(catalog_, bytes, bytes.size());
  auto s = OpenStore();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption) << s.status().ToString();
  EXPECT_NE(s.status().message().find(catalog_), std::string::npos);
}

TEST_F(StoreTest, NewStore_IsCreatedWithItsCatalogAndReopens) {
  Reopen();
  NewVolume("a");
  Reopen();
  VSS_ASSERT_OK_AND_ASSIGN(auto vols, store_->ListVolumes());
  ASSERT_EQ(vols.size(), 1u);
  EXPECT_EQ(vols[0].name, "a");
}

// --- Finding 10: everything a store creates is private. --------------------

TEST_F(StoreTest, EverythingCreatedInAStore_IsPrivateUnderUmask022) {
  mode_t old = umask(022);
  Reopen();
  VolumeInfo a = NewVolume("a"), b = NewVolume("b");
  VSS_ASSERT_OK(store_->AddDiffArea(b.id, dir_.path() + "/elsewhere/diff", kUnbounded));
  for (const Guid& id : {a.id, b.id}) {
    Fill(id, 1);
    Shadow(id);
    Fill(id, 2);
  }
  umask(old);
  int files = 0, dirs = 0;
  for (const std::string& top : {store_dir_, dir_.path() + "/elsewhere"}) {
    EXPECT_EQ(ModeOf(top), 0700u) << top;
    for (const auto& e : fs::recursive_directory_iterator(top)) {
      std::string p = e.path().string();
      if (e.is_directory()) {
        ++dirs;
        EXPECT_EQ(ModeOf(p), 0700u) << p;
      } else {
        ++files;
        EXPECT_EQ(ModeOf(p), 0600u) << p;
      }
    }
  }
  EXPECT_GE(dirs, 4);   // diff, diff/<a>, diff (elsewhere), diff/<b>
  EXPECT_GE(files, 5);  // catalog.db, -wal, -shm, a segment of each volume
  EXPECT_EQ(ModeOf(dir_.path() + "/a.img"), 0600u);
}

// --- Finding 8: paths read from a store are not followed through links. ----

TEST_F(StoreTest, AddThroughASymbolicLink_RecordsTheRealPathAndWorks) {
  Reopen();
  const std::string real = dir_.path() + "/real.img";
  WriteFileBytes(real, "", kSize);
  fs::create_symlink(real, dir_.path() + "/link.img");
  VSS_ASSERT_OK_AND_ASSIGN(
      auto row, store_->CreateVolume({.path = dir_.path() + "/link.img", .create = false}));
  VSS_ASSERT_OK_AND_ASSIGN(std::string canonical, FileSystem::Default()->RealPath(real));
  EXPECT_EQ(row.path, canonical);
  Fill(row.id, 7);
  EXPECT_EQ(ReadFileBytes(real).substr(0, 4), std::string(4, '\x07'));
}

TEST_F(StoreTest, ImagePathReplacedByASymbolicLink_IsRefusedAndTargetUntouched) {
  Reopen();
  VolumeInfo a = NewVolume("a");
  store_.reset();
  const std::string victim = dir_.path() + "/victim";
  WriteFileBytes(victim, "precious", kSize);
  fs::remove(a.path);
  fs::create_symlink(victim, a.path);
  Reopen();
  auto v = store_->OpenVolume(a.id);
  EXPECT_EQ(v.status().code(), StatusCode::kFailedPrecondition) << v.status().ToString();
  EXPECT_NE(v.status().message().find(a.path), std::string::npos);
  EXPECT_EQ(ReadFileBytes(victim).substr(0, 8), "precious");
  // The volume can still be forgotten.
  VSS_EXPECT_OK(store_->RemoveVolume(a.id));
}

TEST_F(StoreTest, ImagePathThroughALinkedDirectory_IsRefused) {
  Reopen();
  fs::create_directory(dir_.path() + "/images");
  auto row = store_->CreateVolume(
      {.path = dir_.path() + "/images/a.img", .size = kSize, .chunk_size = kChunk});
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  store_.reset();
  fs::rename(dir_.path() + "/images", dir_.path() + "/moved");
  fs::create_directory_symlink(dir_.path() + "/moved", dir_.path() + "/images");
  Reopen();
  auto v = store_->OpenVolume(row->id);
  EXPECT_EQ(v.status().code(), StatusCode::kFailedPrecondition) << v.status().ToString();
  EXPECT_NE(v.status().message().find("symbolic link"), std::string::npos);
}

TEST_F(StoreTest, SegmentReplacedByASymbolicLink_IsRefusedAndTargetUntouched) {
  Reopen();
  VolumeInfo a = NewVolume("a");
  Fill(a.id, 1);
  Shadow(a.id);
  Fill(a.id, 2);
  store_.reset();
  const std::string seg = store_dir_ + "/diff/" + a.id.ToString() + "/seg-000001.vsd";
  ASSERT_TRUE(fs::exists(seg));
  const std::string victim = dir_.path() + "/victim";
  WriteFileBytes(victim, "precious", 8);
  fs::remove(seg);
  fs::create_symlink(victim, seg);
  Reopen();
  auto v = store_->OpenVolume(a.id);
  EXPECT_EQ(v.status().code(), StatusCode::kFailedPrecondition) << v.status().ToString();
  EXPECT_EQ(ReadFileBytes(victim), "precious");
}

// --- Finding 0: images of other formats are refused, never read as raw. ----

constexpr char kQcow2Header[] = "QFI\xfb\0\0\0\x03";

TEST_F(StoreTest, AddVhdxImage_IsRefusedNamingFileAndFormatAndChangesNothing) {
  Reopen();
  const std::string img = dir_.path() + "/web.vhdx";
  WriteFileBytes(img, "vhdxfile", 1 << 20);
  std::string before = ReadFileBytes(img);
  auto row = store_->CreateVolume({.path = img, .create = false});
  ASSERT_FALSE(row.ok());
  EXPECT_EQ(row.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(row.status().message().find("web.vhdx is a VHDX image"), std::string::npos)
      << row.status().ToString();
  EXPECT_EQ(ReadFileBytes(img), before);
  VSS_ASSERT_OK_AND_ASSIGN(auto vols, store_->ListVolumes());
  EXPECT_TRUE(vols.empty());
}

TEST_F(StoreTest, AddVhdWithFooterAtTheEnd_IsRefused) {
  Reopen();
  const std::string img = dir_.path() + "/d.vhd";
  WriteFileBytes(img, "", 1 << 20);
  {
    std::fstream f(img, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp((1 << 20) - 512);
    f << "conectix";
  }
  auto row = store_->CreateVolume({.path = img, .create = false});
  EXPECT_EQ(row.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(row.status().message().find("is a VHD image"), std::string::npos);
}

TEST_F(StoreTest, RegisteredVolumeWhoseHeaderBecameQcow2_IsRefusedAtOpen) {
  Reopen();
  VolumeInfo a = NewVolume("a");
  store_.reset();
  {
    std::fstream f(a.path, std::ios::in | std::ios::out | std::ios::binary);
    f.write(kQcow2Header, 8);
  }
  std::string before = ReadFileBytes(a.path);
  Reopen();
  auto v = store_->OpenVolume(a.id);
  EXPECT_EQ(v.status().code(), StatusCode::kUnsupported) << v.status().ToString();
  EXPECT_NE(v.status().message().find(a.path + " is a qcow2 image"), std::string::npos);
  EXPECT_EQ(ReadFileBytes(a.path), before);
}

}  // namespace
}  // namespace vss::engine
