#include "vss/engine/types.h"

#include "vss/metadata/catalog.h"

namespace vss::engine {

int64_t NowTimestamp() { return metadata::NowVssTimestamp(); }

std::string TimestampToIso8601(int64_t time) {
  return metadata::VssTimestampToIso8601(time);
}

}  // namespace vss::engine
