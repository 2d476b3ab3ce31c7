// The VSS model for disk image files: everything a requester or a writer
// needs, in one include.
#pragma once

#include "vss/api/async.h"               // IWYU pragma: export
#include "vss/api/backup_components.h"   // IWYU pragma: export
#include "vss/api/components.h"          // IWYU pragma: export
#include "vss/api/coordinator.h"         // IWYU pragma: export
#include "vss/api/hresult.h"             // IWYU pragma: export
#include "vss/api/provider.h"            // IWYU pragma: export
#include "vss/api/service.h"             // IWYU pragma: export
#include "vss/api/shadow_properties.h"   // IWYU pragma: export
#include "vss/api/snapshot_mgmt.h"       // IWYU pragma: export
#include "vss/api/types.h"               // IWYU pragma: export
#include "vss/api/writer.h"              // IWYU pragma: export
#include "vss/api/writer_event.h"        // IWYU pragma: export
#include "vss/api/writer_metadata.h"     // IWYU pragma: export
