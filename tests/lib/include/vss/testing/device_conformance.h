// The BlockDevice conformance suite (style rule 9: every BlockDevice, real
// or fake, passes it). It is a parameterised GoogleTest suite: a test file
// describes each kind of device it can make, as a DeviceKind, and
// instantiates the suite on them:
//
//   std::vector<vss::testing::DeviceKind> Kinds() {
//     return {{.name = "RawImage", .make = MakeRawImage}};
//   }
//   INSTANTIATE_TEST_SUITE_P(Formats, DeviceConformanceTest,
//                            ::testing::ValuesIn(Kinds()),
//                            vss::testing::DeviceKindName);
//
// (`using vss::testing::DeviceConformanceTest;` first.) Every case then runs
// once per kind, and `ctest -N` lists one entry per kind and case. The
// cases live in the vss_device_conformance object library, which the test
// binary links.
//
// Each case makes a fresh device with the kind's factory and destroys it at
// the end, so kinds may hold anything a device needs (a directory, a store,
// a server thread) in their ConformanceDevice. The suite keeps a model of
// the bytes (starting from InitialContents()) and checks every read, write,
// write-zeroes, discard, flush and extents query against it, at unaligned
// offsets, past the end, with zero lengths and from several threads. On a
// read-only kind every write, write-zeroes and discard must be refused with
// kFailedPrecondition and change nothing; on a kind that does not report
// holes Extents() must call everything allocated (the BlockDevice contract
// allows it), and on one that does, a hole must hold zeroes.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "vss/base/status.h"
#include "vss/formats/block_device.h"

namespace vss::testing {

// The size of every device the suite tests: not a multiple of any block or
// chunk size, so that the tail is exercised.
inline constexpr uint64_t kConformanceDeviceSize = 1024 * 1024 + 1000;

// One device under test and everything it needs; destroying it tears the
// device down first, then the rest.
class ConformanceDevice {
 public:
  virtual ~ConformanceDevice() = default;
  // The device; valid until this object is destroyed.
  virtual BlockDevice& device() = 0;
  // The bytes the device held when it was made (device().size() of them).
  // The default is all zeroes.
  virtual std::vector<uint8_t> InitialContents();
};

// A ConformanceDevice that owns its device and nothing else.
class OwnedConformanceDevice final : public ConformanceDevice {
 public:
  explicit OwnedConformanceDevice(std::unique_ptr<BlockDevice> device)
      : device_(std::move(device)) {}
  BlockDevice& device() override { return *device_; }

 private:
  std::unique_ptr<BlockDevice> device_;
};

// One kind of device the suite runs on.
struct DeviceKind {
  // Names the kind's tests: letters, digits and underscores only.
  std::string name;
  // The device refuses every write (BlockDevice::read_only() is true).
  bool read_only = false;
  // Extents() tells holes from data. When false the kind reports every
  // range allocated.
  bool reports_holes = true;
  // Makes a fresh device of kConformanceDeviceSize bytes. A failure fails
  // the case.
  std::function<StatusOr<std::unique_ptr<ConformanceDevice>>()> make;
};

// The name of an instantiation's test: the kind's name.
std::string DeviceKindName(const ::testing::TestParamInfo<DeviceKind>& info);
// Prints a kind (in failure messages) as its name.
void PrintTo(const DeviceKind& kind, std::ostream* os);

// The fixture: a fresh device per case and the model of its bytes.
class DeviceConformanceTest : public ::testing::TestWithParam<DeviceKind> {
 protected:
  void SetUp() override;
  void TearDown() override;

  const DeviceKind& kind() const { return GetParam(); }
  // The code a write call gets where a writable device answers `writable`:
  // kFailedPrecondition on a read-only kind (checked before the range).
  StatusCode WriteCode(StatusCode writable) const;

  // Write(offset, data) on the device and in the model; on a read-only
  // kind, checks the refusal and leaves the model as it is.
  void WriteBoth(uint64_t offset, const std::vector<uint8_t>& data);
  // WriteZeroes or Discard on the device and in the model, the same way.
  void ZeroBoth(uint64_t offset, uint64_t length);
  void DiscardBoth(uint64_t offset, uint64_t length);
  // WriteZeroes or Discard (`op`): both read back as zeroes.
  using ClearOp = Status (BlockDevice::*)(uint64_t, uint64_t);
  void ClearBoth(ClearOp op, uint64_t offset, uint64_t length);
  // Reads [offset, offset + length) and compares it with the model.
  void ExpectMatchesModel(uint64_t offset, uint64_t length);
  // Checks Extents(offset, length) against the model: an exact ordered
  // cover, merged, no data inside a hole, and no hole at all on a kind that
  // does not report holes.
  void ExpectValidExtents(uint64_t offset, uint64_t length);
  // True when the model holds only zeroes in [offset, offset + length).
  bool ModelIsZero(uint64_t offset, uint64_t length) const;

  std::unique_ptr<ConformanceDevice> made_;
  BlockDevice* dev_ = nullptr;
  std::vector<uint8_t> model_;
};

}  // namespace vss::testing
