// ShadowProperties: the software provider's record of a shadow kept in the
// engine's opaque properties, and VSS_SNAPSHOT_PROP made from an engine
// shadow.

#include "vss/api/shadow_properties.h"

#include <gtest/gtest.h>

#include <string>

namespace vss {
namespace {

engine::ShadowInfo Shadow(std::string properties) {
  engine::ShadowInfo s;
  s.id = Guid::Generate();
  s.set_id = Guid::Generate();
  s.volume_id = Guid::Generate();
  s.volume_name = "vol1";
  s.count_in_set = 2;
  s.created = 134400744001234567;
  s.properties = std::move(properties);
  return s;
}

TEST(ShadowPropertiesTest, EncodeDecode_RoundTripsEveryField) {
  ShadowProperties p;
  p.context = VSS_CTX_APP_ROLLBACK;
  p.attributes = VSS_CTX_APP_ROLLBACK | VSS_VOLSNAP_ATTR_DIFFERENTIAL;
  p.state = VSS_SS_COMMITTED;
  p.provider_id = Guid::Generate();
  p.device_object = "vss:somewhere";
  p.originating_machine = "host-a";
  p.service_machine = "host-b";
  StatusOr<ShadowProperties> back = DecodeShadowProperties(EncodeShadowProperties(p));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->context, p.context);
  EXPECT_EQ(back->attributes, p.attributes);
  EXPECT_EQ(back->state, p.state);
  EXPECT_EQ(back->provider_id, p.provider_id);
  EXPECT_EQ(back->device_object, p.device_object);
  EXPECT_EQ(back->originating_machine, p.originating_machine);
  EXPECT_EQ(back->service_machine, p.service_machine);
}

TEST(ShadowPropertiesTest, Decode_EmptyGivesDefaultsAndUnknownKeysAreIgnored) {
  StatusOr<ShadowProperties> p = DecodeShadowProperties("future=1\nno equals sign\n");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->context, VSS_CTX_BACKUP);
  EXPECT_EQ(p->state, VSS_SS_CREATED);
  EXPECT_EQ(p->provider_id, SoftwareProviderId());
  EXPECT_TRUE(p->device_object.empty());
}

TEST(ShadowPropertiesTest, Decode_BadNumberOrIdIsCorruptionNamingTheKey) {
  StatusOr<ShadowProperties> p = DecodeShadowProperties("context=12x");
  EXPECT_EQ(p.status().code(), StatusCode::kCorruption);
  EXPECT_NE(p.status().message().find("context"), std::string::npos);
  p = DecodeShadowProperties("attributes=");
  EXPECT_EQ(p.status().code(), StatusCode::kCorruption);
  p = DecodeShadowProperties("provider_id=not-a-guid");
  EXPECT_EQ(p.status().code(), StatusCode::kCorruption);
  EXPECT_NE(p.status().message().find("provider_id"), std::string::npos);
  StatusOr<SnapshotProp> prop = SnapshotPropOf(Shadow("state=?"));
  EXPECT_EQ(prop.status().code(), StatusCode::kCorruption);
}

TEST(ShadowPropertiesTest, DescribeSoftwareShadows_PersistenceFollowsTheContext) {
  engine::CreateSetRequest req;
  DescribeSoftwareShadows(VSS_CTX_BACKUP | VSS_VOLSNAP_ATTR_NO_AUTORECOVERY, &req);
  EXPECT_FALSE(req.persistent);
  StatusOr<ShadowProperties> p = DecodeShadowProperties(req.properties);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->context, VSS_CTX_BACKUP);
  EXPECT_EQ(p->attributes,
            VSS_VOLSNAP_ATTR_NO_AUTORECOVERY | VSS_VOLSNAP_ATTR_DIFFERENTIAL);
  EXPECT_FALSE(p->originating_machine.empty());
  EXPECT_EQ(p->service_machine, p->originating_machine);
  DescribeSoftwareShadows(VSS_CTX_CLIENT_ACCESSIBLE, &req);
  EXPECT_TRUE(req.persistent);
  ASSERT_TRUE((p = DecodeShadowProperties(req.properties)).ok());
  EXPECT_EQ(p->context, VSS_CTX_CLIENT_ACCESSIBLE);
}

TEST(ShadowPropertiesTest, SnapshotPropOf_FillsEveryFieldAndDerivesExposure) {
  engine::CreateSetRequest req;
  DescribeSoftwareShadows(VSS_CTX_NAS_ROLLBACK, &req);
  engine::ShadowInfo s = Shadow(req.properties);
  StatusOr<SnapshotProp> p = SnapshotPropOf(s);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->snapshot_id, s.id);
  EXPECT_EQ(p->snapshot_set_id, s.set_id);
  EXPECT_EQ(p->snapshots_count, 2);
  EXPECT_EQ(p->snapshot_device_object, "vss:shadow/" + s.id.ToString());
  EXPECT_EQ(p->original_volume_name, "vol1");
  EXPECT_EQ(p->provider_id, SoftwareProviderId());
  EXPECT_EQ(p->creation_timestamp, s.created);
  EXPECT_EQ(p->status, VSS_SS_CREATED);
  EXPECT_EQ(p->snapshot_attributes, VSS_CTX_NAS_ROLLBACK | VSS_VOLSNAP_ATTR_DIFFERENTIAL);
  StatusOr<int32_t> context = ContextOf(s);
  ASSERT_TRUE(context.ok());
  EXPECT_EQ(*context, VSS_CTX_NAS_ROLLBACK);

  s.exposed_name = "shadow1";
  s.exposed_path = "/mnt/x";
  ASSERT_TRUE((p = SnapshotPropOf(s)).ok());
  EXPECT_TRUE(p->snapshot_attributes & VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY);
  EXPECT_EQ(p->exposed_path, "/mnt/x");
  // A store written before exposure was derived may hold the bit: it
  // follows the exposure either way.
  s.exposed_name.clear();
  s.exposed_path.clear();
  s.properties = "attributes=" + std::to_string(VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY | 1);
  ASSERT_TRUE((p = SnapshotPropOf(s)).ok());
  EXPECT_EQ(p->snapshot_attributes, 1);
}

TEST(ShadowPropertiesTest, ShadowMadeThroughTheEngineAlone_IsDescribedByItsPersistence) {
  engine::ShadowInfo s = Shadow("");
  s.persistent = true;
  StatusOr<SnapshotProp> p = SnapshotPropOf(s);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->snapshot_attributes, VSS_CTX_CLIENT_ACCESSIBLE | VSS_VOLSNAP_ATTR_DIFFERENTIAL);
  EXPECT_EQ(*ContextOf(s), VSS_CTX_CLIENT_ACCESSIBLE);
  s.persistent = false;
  ASSERT_TRUE((p = SnapshotPropOf(s)).ok());
  EXPECT_EQ(p->snapshot_attributes & VSS_VOLSNAP_ATTR_PERSISTENT, 0);
  EXPECT_EQ(*ContextOf(s), VSS_CTX_BACKUP);
}

}  // namespace
}  // namespace vss
