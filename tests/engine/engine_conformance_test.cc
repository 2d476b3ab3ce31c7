// The BlockDevice conformance suite (tests/lib) on the engine's devices:
// a Volume (alone, and under a shadow so that writes copy on write) and a
// shadow of a volume that changed after it was taken (read-only).

#include <vector>

#include "vss/testing/device_conformance.h"
#include "vss/testing/volume_devices.h"

namespace vss::testing {
namespace {

std::vector<DeviceKind> EngineKinds() {
  return {
      {.name = "Volume", .make = [] { return VolumeDevice::Make(false); }},
      {.name = "VolumeUnderShadow",
       .make = [] { return VolumeDevice::Make(true); }},
      {.name = "ShadowDevice", .read_only = true, .make = ShadowDevice::Make},
  };
}

INSTANTIATE_TEST_SUITE_P(Engine, DeviceConformanceTest,
                         ::testing::ValuesIn(EngineKinds()), DeviceKindName);

}  // namespace
}  // namespace vss::testing
