// What a simulated power cut does to writes not yet made durable; shared by
// the test doubles of files (MemFileSystem) and of devices (PowerLossDevice).
#pragma once

namespace vss {

enum class PowerLossMode {
  kDropAll,     // every unsynced write is lost
  kRandom,      // each unsynced write is kept, dropped or torn at random
};

}  // namespace vss
