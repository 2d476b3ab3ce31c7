// ShadowProperties: what the software provider keeps with each shadow that
// the engine does not know about (its VSS context, attribute bits, state,
// provider, device object and machines), and the mapping of an engine
// shadow to VSS_SNAPSHOT_PROP.
//
// The properties travel through the engine as engine::ShadowInfo::properties,
// an opaque text the engine stores and returns unread. The text is
// "key=value" lines (keys: context, attributes, state, provider_id,
// device_object, originating_machine, service_machine); unknown keys are
// ignored and a missing key keeps its default, so that older and newer
// stores read alike. Pure functions: any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vss/api/types.h"
#include "vss/base/guid.h"
#include "vss/base/status.h"
#include "vss/engine/store.h"
#include "vss/engine/types.h"

namespace vss {

// The software provider's id (VSS_PROVIDER_PROP::m_ProviderId).
inline constexpr const char* kSoftwareProviderId =
    "b5946137-7b9f-4925-af80-51abd60b20d5";
Guid SoftwareProviderId();

struct ShadowProperties {
  int32_t context = VSS_CTX_BACKUP;  // VSS_CTX_* value (context bits only)
  // VSS_VOLSNAP_ATTR_* bits given at creation. EXPOSED_LOCALLY is not kept
  // here: it follows the shadow's exposure.
  int32_t attributes = 0;
  VSS_SNAPSHOT_STATE state = VSS_SS_CREATED;
  Guid provider_id = SoftwareProviderId();
  std::string device_object;  // empty: "vss:shadow/<shadow id>"
  std::string originating_machine;
  std::string service_machine;
};

// The text of `p` for engine::ShadowInfo::properties.
std::string EncodeShadowProperties(const ShadowProperties& p);
// Parses what EncodeShadowProperties made (or a store written before it
// existed). kCorruption naming the key when a number or id does not parse.
StatusOr<ShadowProperties> DecodeShadowProperties(std::string_view text);

// The properties and persistence of shadows the software provider makes in
// `context` (context bits plus extra VSS_VOLSNAP_ATTR_* bits, as
// SetContext takes it), on this machine: fills req->persistent and
// req->properties.
void DescribeSoftwareShadows(int32_t context, engine::CreateSetRequest* req);

// The properties of an engine shadow: decoded, or for a shadow made through
// the engine alone (no properties), those of a client-accessible shadow
// when it is persistent and of a backup one when not. kCorruption as
// DecodeShadowProperties.
StatusOr<ShadowProperties> PropertiesOf(const engine::ShadowInfo& shadow);
// VSS_SNAPSHOT_PROP of an engine shadow; kCorruption as PropertiesOf.
StatusOr<SnapshotProp> SnapshotPropOf(const engine::ShadowInfo& shadow);
// The VSS context a shadow was made in; kCorruption as above.
StatusOr<int32_t> ContextOf(const engine::ShadowInfo& shadow);

}  // namespace vss
