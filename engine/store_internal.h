// Engine-private access to a Store's catalog and the mapping of catalog rows
// to the engine's public types. Not installed: code above the engine uses
// the Store's queries; engine internals and engine tests that must inspect
// or damage the catalog use these.
#pragma once

#include "vss/engine/store.h"
#include "vss/engine/types.h"
#include "vss/metadata/catalog.h"

namespace vss::engine {

// The catalog of `store`, valid as long as the store.
metadata::Catalog& CatalogOf(Store& store);

// The diff area of a volume as its catalog row (the default one, under the
// store, when none was added). Errors are the catalog's.
StatusOr<metadata::DiffAreaRow> DiffAreaRowOf(Store& store, const Guid& volume_id);

// Copies of catalog rows as the engine's public values.
VolumeInfo ToVolumeInfo(const metadata::VolumeRow& row);
DiffAreaInfo ToDiffAreaInfo(const metadata::DiffAreaRow& row);
SetInfo ToSetInfo(const metadata::ShadowSetRow& row);
ShadowInfo ToShadowInfo(const metadata::ShadowRow& row);
EventInfo ToEventInfo(const metadata::EventRow& row);

}  // namespace vss::engine
