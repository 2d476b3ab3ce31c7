// Private: the values of the vss-api model as JSON for the vssd protocol
// (PROTOCOL.md). Readers throw (nlohmann::json or ShapeError) on a value of
// the wrong shape; Channel turns that into E_INVALIDARG for the caller.
#pragma once

#include "json_util.h"
#include "vss/api/backup_components.h"
#include "vss/api/coordinator.h"
#include "vss/api/writer_event.h"

namespace vss::internal {

Json ToJson(const WriterRegistration& r);
WriterRegistration RegistrationFromJson(const Json& j);

Json ToJson(const WriterEvent& e);
WriterEvent EventFromJson(const Json& j);

Json ToJson(const WriterEventResult& r);
WriterEventResult EventResultFromJson(const Json& j);

Json ToJson(const WriterStatus& s);
WriterStatus WriterStatusFromJson(const Json& j);

Json ToJson(const SnapshotProp& p);
SnapshotProp SnapshotPropFromJson(const Json& j);

Json ToJson(const ProviderProp& p);
ProviderProp ProviderPropFromJson(const Json& j);

Json ToJson(const ComponentKey& k);
ComponentKey ComponentKeyFromJson(const Json& j);

Json ToJson(const WriterComponents& c);
WriterComponents WriterComponentsFromJson(const Json& j);

Json ToJson(const WriterMetadataDocument& d);
WriterMetadataDocument WriterMetadataFromJsonValue(const Json& j);

}  // namespace vss::internal
