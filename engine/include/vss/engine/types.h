// The engine's view of what a store holds: volumes, their diff areas, shadow
// sets, shadows and events, as plain values copied out of the catalog.
//
// These types say nothing about the API a provider offers on top of the
// engine. What a provider wants to keep with a shadow beyond them goes in
// ShadowInfo::properties, which the engine stores and returns as given and
// never reads. Values are snapshots: they do not change when the store does.
// Times are 100 ns ticks since 1601-01-01 UTC; sizes and offsets are bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "vss/base/guid.h"

namespace vss::engine {

// A diff area without a size limit.
inline constexpr int64_t kUnbounded = -1;

// A volume: an image file registered in the store.
struct VolumeInfo {
  Guid id;
  std::string name;         // unique in the store
  std::string path;         // the image's real path, unique in the store
  uint64_t size = 0;        // bytes
  uint32_t chunk_size = 0;  // copy-on-write unit, power of two, 4 KiB..1 MiB
  int64_t created = 0;      // time it was registered
  // The image driver that opens it (vss/formats/registry.h), e.g. "raw".
  std::string format = "raw";
  // The Unix socket of the QEMU guest agent of the guest running on this
  // volume, which the guest agent writer freezes the guest through
  // (vss/api/guest_agent_writer.h); empty: none.
  std::string guest_agent;
};

// Where a volume's preserved chunks go and how much room they may take.
struct DiffAreaInfo {
  Guid volume_id;
  std::string dir;                // absolute directory of the segment files
  int64_t max_bytes = kUnbounded; // kUnbounded or a byte count
  uint64_t used_bytes = 0;        // bytes held by live records
};

// Shadows of several volumes taken at one instant.
struct SetInfo {
  Guid id;
  int64_t created = 0;
  uint32_t shadow_count = 0;  // shadows the set was created with
};

// A point-in-time, read-only view of one volume.
struct ShadowInfo {
  Guid id;
  Guid set_id;
  Guid volume_id;
  std::string volume_name;    // the volume's name when the shadow was taken
  uint64_t epoch = 0;         // unique per volume, increasing with time
  uint32_t count_in_set = 0;  // shadows in its set when it was created
  int64_t created = 0;
  // Survives a crash and a restart of its owner; false: removed when the
  // volume is next opened by another process.
  bool persistent = true;
  int64_t owner_pid = 0;      // the process that created it
  // Where the shadow is exposed (both empty: not exposed).
  std::string exposed_name;
  std::string exposed_path;
  // The provider's own record of the shadow, opaque to the engine.
  std::string properties;
};

// Something the store did on its own or that a user should know about
// (a shadow deleted because the diff area was full, damage found...).
struct EventInfo {
  int64_t id = 0;    // increasing in the order events were recorded
  int64_t time = 0;
  std::optional<Guid> volume_id;
  std::optional<Guid> shadow_id;
  std::string kind;     // e.g. "shadow-deleted-diff-area-full"
  std::string message;  // one line for people
};

// The current time, in the units of the times above.
int64_t NowTimestamp();
// A time above as ISO 8601 UTC with 100 ns digits:
// "2026-11-25T10:00:00.1234567Z".
std::string TimestampToIso8601(int64_t time);

}  // namespace vss::engine
