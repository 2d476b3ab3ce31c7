// The Store's queries: what callers above the engine see of a store
// (volumes, diff areas, sets, shadows, events) as engine values, and the
// provider's opaque properties stored with each shadow.

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "engine_test_util.h"
#include "vss/engine/store.h"
#include "vss/engine/types.h"
#include "vss/engine/volume.h"

namespace vss::engine {
namespace {

using test_util::TempDir;

constexpr uint64_t kSize = 1 << 20;
constexpr uint32_t kChunk = 64 * 1024;

class QueryTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    VSS_ASSERT_OK_AND_ASSIGN(store_, Store::Open({.dir = dir_.path() + "/store"}));
  }

  VolumeInfo NewVolume(const std::string& name) {
    auto v = store_->CreateVolume(
        {.path = dir_.path() + "/" + name + ".img", .size = kSize, .name = name,
         .chunk_size = kChunk});
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : VolumeInfo{};
  }

  CreatedSet NewSet(std::vector<Guid> volumes, bool persistent = true,
                    std::string properties = "") {
    auto set = store_->CreateShadowSet({.volumes = std::move(volumes),
                                        .persistent = persistent,
                                        .properties = std::move(properties)});
    EXPECT_TRUE(set.ok()) << set.status().ToString();
    return set.ok() ? *set : CreatedSet{};
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(QueryTest, CreateVolume_ReturnsWhatListAndFindGiveBack) {
  VolumeInfo b = NewVolume("b"), a = NewVolume("a");
  EXPECT_EQ(a.size, kSize);
  EXPECT_EQ(a.chunk_size, kChunk);
  EXPECT_EQ(a.path, dir_.path() + "/a.img");
  EXPECT_GT(a.created, 0);
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<VolumeInfo> all, store_->ListVolumes());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "a");  // by name
  EXPECT_EQ(all[1].id, b.id);
  VSS_ASSERT_OK_AND_ASSIGN(VolumeInfo found, store_->FindVolume(a.id));
  EXPECT_EQ(found.name, "a");
  EXPECT_EQ(found.path, a.path);
  EXPECT_EQ(found.created, a.created);
  VSS_ASSERT_OK_AND_ASSIGN(Volume * vol, store_->OpenVolume(a.id));
  EXPECT_EQ(vol->info().id, a.id);
  EXPECT_EQ(vol->info().name, "a");
}

TEST_F(QueryTest, FindUnknownVolumeOrShadow_IsNotFoundNamingTheId) {
  const Guid id = Guid::Generate();
  StatusOr<VolumeInfo> v = store_->FindVolume(id);
  EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
  EXPECT_NE(v.status().message().find(id.ToString()), std::string::npos);
  StatusOr<ShadowInfo> s = store_->FindShadow(id);
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_NE(s.status().message().find(id.ToString()), std::string::npos);
}

TEST_F(QueryTest, ShadowSet_ListedWithItsShadowsAndTheirFields) {
  VolumeInfo a = NewVolume("a"), b = NewVolume("b"), c = NewVolume("c");
  CreatedSet first = NewSet({a.id, b.id});
  CreatedSet second = NewSet({a.id});
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<ShadowInfo> of_first,
                           store_->ListShadowsOfSet(first.set_id));
  ASSERT_EQ(of_first.size(), 2u);
  for (const ShadowInfo& s : of_first) {
    EXPECT_EQ(s.set_id, first.set_id);
    EXPECT_EQ(s.count_in_set, 2u);
    EXPECT_EQ(s.created, first.created);
    EXPECT_TRUE(s.persistent);
    EXPECT_EQ(s.owner_pid, getpid());
    EXPECT_EQ(s.volume_name, s.volume_id == a.id ? "a" : "b");
  }
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<ShadowInfo> of_a, store_->ListShadowsOfVolume(a.id));
  ASSERT_EQ(of_a.size(), 2u);
  EXPECT_LT(of_a[0].epoch, of_a[1].epoch);  // oldest first
  EXPECT_EQ(of_a[1].id, second.shadows[0].shadow_id);
  VSS_ASSERT_OK_AND_ASSIGN(auto of_c, store_->ListShadowsOfVolume(c.id));
  EXPECT_TRUE(of_c.empty());
  VSS_ASSERT_OK_AND_ASSIGN(auto of_unknown, store_->ListShadowsOfSet(Guid::Generate()));
  EXPECT_TRUE(of_unknown.empty());
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<SetInfo> sets, store_->ListShadowSets());
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[0].id, first.set_id);
  EXPECT_EQ(sets[0].shadow_count, 2u);
  EXPECT_EQ(sets[1].shadow_count, 1u);
  VSS_ASSERT_OK_AND_ASSIGN(SetInfo resolved,
                           store_->ResolveShadowSet(second.set_id.ToString().substr(0, 8)));
  EXPECT_EQ(resolved.id, second.set_id);
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<ShadowInfo> all, store_->ListShadows());
  EXPECT_EQ(all.size(), 3u);
}

TEST_F(QueryTest, Properties_AreStoredAsGivenAndSurviveReopen) {
  VolumeInfo a = NewVolume("a");
  // Any text, including separators a provider might use, comes back as is.
  const std::string props = "context=9\nattributes=-1\n=\nk=v=w\n\xc3\xa9";
  CreatedSet set = NewSet({a.id}, true, props);
  CreatedSet plain = NewSet({a.id});
  Reopen();
  VSS_ASSERT_OK_AND_ASSIGN(ShadowInfo s, store_->FindShadow(set.shadows[0].shadow_id));
  EXPECT_EQ(s.properties, props);
  VSS_ASSERT_OK_AND_ASSIGN(ShadowInfo p, store_->FindShadow(plain.shadows[0].shadow_id));
  EXPECT_EQ(p.properties, "");
}

TEST_F(QueryTest, SetShadowExposure_SetsAndClearsBothFields) {
  VolumeInfo a = NewVolume("a");
  const Guid id = NewSet({a.id}).shadows[0].shadow_id;
  VSS_ASSERT_OK(store_->SetShadowExposure(id, "shadow-a", "/mnt/a"));
  VSS_ASSERT_OK_AND_ASSIGN(ShadowInfo s, store_->ResolveShadow("{" + id.ToString() + "}"));
  EXPECT_EQ(s.exposed_name, "shadow-a");
  EXPECT_EQ(s.exposed_path, "/mnt/a");
  VSS_ASSERT_OK(store_->SetShadowExposure(id, "", ""));
  VSS_ASSERT_OK_AND_ASSIGN(s, store_->FindShadow(id));
  EXPECT_EQ(s.exposed_name, "");
  EXPECT_EQ(s.exposed_path, "");
  EXPECT_EQ(store_->SetShadowExposure(Guid::Generate(), "x", "y").code(),
            StatusCode::kNotFound);
}

TEST_F(QueryTest, NonPersistentShadow_IsReportedAndGoneForTheNextOwner) {
  VolumeInfo a = NewVolume("a");
  const Guid id = NewSet({a.id}, /*persistent=*/false).shadows[0].shadow_id;
  VSS_ASSERT_OK_AND_ASSIGN(ShadowInfo s, store_->FindShadow(id));
  EXPECT_FALSE(s.persistent);
  // A non-persistent shadow of another process that has gone: recovery on
  // open removes it and records an event naming it.
  Reopen();
  VSS_ASSERT_OK(store_->OpenVolume(a.id).status());
  EXPECT_EQ(store_->FindShadow(id).status().code(), StatusCode::kNotFound);
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<EventInfo> events, store_->ListEvents(a.id));
  bool named = false;
  for (const EventInfo& e : events)
    named |= e.shadow_id == id || e.message.find(id.ToString()) != std::string::npos;
  EXPECT_TRUE(named);
}

TEST_F(QueryTest, ListEvents_FiltersByVolumeInOrder) {
  VolumeInfo a = NewVolume("a"), b = NewVolume("b");
  VSS_ASSERT_OK(store_->RecordEvent(a.id, std::nullopt, "k1", "first"));
  VSS_ASSERT_OK(store_->RecordEvent(b.id, std::nullopt, "k2", "second"));
  VSS_ASSERT_OK(store_->RecordEvent(a.id, Guid::Generate(), "k3", "third"));
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<EventInfo> of_a, store_->ListEvents(a.id));
  ASSERT_EQ(of_a.size(), 2u);
  EXPECT_EQ(of_a[0].message, "first");
  EXPECT_EQ(of_a[1].kind, "k3");
  EXPECT_TRUE(of_a[1].shadow_id.has_value());
  EXPECT_LT(of_a[0].id, of_a[1].id);
  VSS_ASSERT_OK_AND_ASSIGN(std::vector<EventInfo> all, store_->ListEvents(std::nullopt));
  EXPECT_EQ(all.size(), 3u);
}

TEST_F(QueryTest, DiffAreaOf_DefaultThenAdded) {
  VolumeInfo a = NewVolume("a");
  VSS_ASSERT_OK_AND_ASSIGN(DiffAreaInfo d, store_->DiffAreaOf(a.id));
  EXPECT_EQ(d.volume_id, a.id);
  EXPECT_EQ(d.max_bytes, kUnbounded);
  EXPECT_EQ(d.used_bytes, 0u);
  VSS_ASSERT_OK(store_->AddDiffArea(a.id, dir_.path() + "/da", 1 << 30));
  VSS_ASSERT_OK_AND_ASSIGN(d, store_->DiffAreaOf(a.id));
  EXPECT_EQ(d.max_bytes, 1 << 30);
  EXPECT_EQ(d.dir.substr(d.dir.size() - a.id.ToString().size()), a.id.ToString());
}

TEST(TimestampTest, NowFormatsAsIso8601Utc) {
  const int64_t now = NowTimestamp();
  EXPECT_GT(now, 0);
  EXPECT_EQ(TimestampToIso8601(0), "1601-01-01T00:00:00.0000000Z");
  const std::string text = TimestampToIso8601(now);
  EXPECT_EQ(text.size(), 28u) << text;
  EXPECT_EQ(text.back(), 'Z');
}

}  // namespace
}  // namespace vss::engine
