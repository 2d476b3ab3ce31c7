// Fuzz target: MBR and GPT parsing (formats/include/vss/partition_table.h).
//
// The input is the start of a disk image. It is read twice:
//   1. as a whole device of exactly the input's size, so that the backup
//      GPT at the last LBA and every end-of-device check are reached;
//   2. at the start of a sparse 2 TiB device, so that sector numbers near
//      the 32-bit limits of an MBR, and GPT LBAs far from the table, are
//      inside the device.
// Whatever the table says, a partition that is returned lies inside the
// device, after sector 0, and is not empty, and partitions come in index
// order.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "vss/formats/memory_device.h"
#include "vss/formats/partition_table.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void ReadFrom(vss::MemoryDevice& dev, std::span<const uint8_t> input) {
  Check(dev.Write(0, input).ok());
  vss::StatusOr<vss::PartitionTable> table = vss::ReadPartitionTable(dev);
  if (!table.ok()) {
    Check(table.status().code() == vss::StatusCode::kCorruption);
    return;
  }
  uint32_t last_index = 0;
  for (const vss::Partition& p : table->partitions) {
    Check(p.index > last_index);
    last_index = p.index;
    Check(p.length > 0 && p.start >= table->sector_size);
    Check(p.start < dev.size() && p.length <= dev.size() - p.start);
    Check(!p.type.empty());
  }
  if (table->scheme == vss::PartitionScheme::kNone) {
    Check(table->partitions.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  std::span<const uint8_t> input(bytes, size);
  {
    vss::MemoryDevice dev(size, "fuzz.img");
    ReadFrom(dev, input);
  }
  {
    vss::MemoryDevice dev(uint64_t{2} << 40, "large.img");
    ReadFrom(dev, input);
  }
  return 0;
}
