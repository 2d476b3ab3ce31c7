// The BlockDevice conformance suite (tests/lib) on vssctl's devices:
// NbdDevice against vssd's NBD server run in process (a live volume
// export, read-write, and a shadow export, read-only), and OverlayDevice
// over a range of a memory device and over a shadow.

#include "vss/testing/device_conformance.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "vss/formats/nbd_device.h"
#include "vss/formats/overlay_device.h"
#include "vss/formats/memory_device.h"
#include "vss/testing/nbd_server.h"
#include "vss/testing/pattern.h"
#include "vss/testing/volume_devices.h"

namespace vss::testing {
namespace {

using Made = StatusOr<std::unique_ptr<ConformanceDevice>>;

// An NbdDevice connected to an export of vssd's NBD server, which serves a
// VolumeStore from a thread of this process until the device is destroyed.
class NbdConformanceDevice final : public ConformanceDevice {
 public:
  // The live volume (zeroes) or, when `shadow`, a shadow of it taken before
  // the volume changed (VolumeStore::ShadowThenChange).
  static Made Make(bool shadow) {
    auto made = std::make_unique<NbdConformanceDevice>();
    VSS_ASSIGN_OR_RETURN(made->store_, VolumeStore::Create());
    std::string export_name = "live/disk";
    if (shadow) {
      VSS_ASSIGN_OR_RETURN(Guid id,
                           made->store_->ShadowThenChange(&made->initial_));
      export_name = "shadow/" + id.ToString();
    }
    VSS_RETURN_IF_ERROR(made->Serve());
    VSS_ASSIGN_OR_RETURN(made->device_,
                         NbdDevice::Connect(made->socket_, export_name));
    return std::unique_ptr<ConformanceDevice>(std::move(made));
  }

  BlockDevice& device() override { return *device_; }
  std::vector<uint8_t> InitialContents() override {
    return initial_.empty() ? ConformanceDevice::InitialContents() : initial_;
  }

 private:
  // Starts the server on a Unix socket in the store's directory.
  Status Serve() {
    socket_ = store_->dir().File("nbd.sock");
    VSS_ASSIGN_OR_RETURN(server_,
                         InProcessNbdServer::Start(&store_->store(), socket_));
    return OkStatus();
  }

  std::unique_ptr<VolumeStore> store_;
  std::vector<uint8_t> initial_;
  std::string socket_;
  std::unique_ptr<InProcessNbdServer> server_;
  std::unique_ptr<NbdDevice> device_;  // disconnects before the server
                                             // stops (members go in reverse)
};

// An OverlayDevice over [kOffset, +kConformanceDeviceSize) of a larger
// memory device holding a pattern. Checks on destruction that nothing
// written to the overlay reached the memory device.
class OverlayOverMemory final : public ConformanceDevice {
 public:
  static constexpr uint64_t kOffset = 1234;

  static Made Make() {
    return std::unique_ptr<ConformanceDevice>(
        std::make_unique<OverlayOverMemory>());
  }

  OverlayOverMemory() {
    EXPECT_TRUE(base_.Write(0, original_).ok());
    overlay_ = std::make_unique<OverlayDevice>(&base_, kOffset,
                                                     kConformanceDeviceSize);
  }
  ~OverlayOverMemory() override {
    overlay_.reset();
    std::vector<uint8_t> now(original_.size());
    EXPECT_TRUE(base_.Read(0, now).ok());
    EXPECT_TRUE(now == original_) << "the overlay wrote to its base";
  }

  BlockDevice& device() override { return *overlay_; }
  std::vector<uint8_t> InitialContents() override {
    return {original_.begin() + kOffset,
            original_.begin() + kOffset + kConformanceDeviceSize};
  }

 private:
  const std::vector<uint8_t> original_ =
      Pattern(kConformanceDeviceSize + 3000, 41);
  MemoryDevice base_{original_.size()};
  std::unique_ptr<OverlayDevice> overlay_;
};

// An OverlayDevice over the whole of a shadow device (ShadowDevice), as
// vssctl mount --filesystem makes one.
class OverlayOverShadow final : public ConformanceDevice {
 public:
  static Made Make() {
    auto made = std::make_unique<OverlayOverShadow>();
    VSS_ASSIGN_OR_RETURN(made->shadow_, ShadowDevice::Make());
    made->overlay_ = std::make_unique<OverlayDevice>(
        &made->shadow_->device(), 0, kConformanceDeviceSize);
    return std::unique_ptr<ConformanceDevice>(std::move(made));
  }

  BlockDevice& device() override { return *overlay_; }
  std::vector<uint8_t> InitialContents() override {
    return shadow_->InitialContents();
  }

 private:
  std::unique_ptr<ConformanceDevice> shadow_;
  std::unique_ptr<OverlayDevice> overlay_;  // destroyed first
};

std::vector<DeviceKind> FuseKinds() {
  return {
      {.name = "NbdDevice",
       .make = [] { return NbdConformanceDevice::Make(false); }},
      {.name = "NbdDeviceOfShadow",
       .read_only = true,
       .make = [] { return NbdConformanceDevice::Make(true); }},
      {.name = "OverlayDevice",
       .reports_holes = false,
       .make = OverlayOverMemory::Make},
      {.name = "OverlayDeviceOverShadow",
       .reports_holes = false,
       .make = OverlayOverShadow::Make},
  };
}

INSTANTIATE_TEST_SUITE_P(Fuse, DeviceConformanceTest,
                         ::testing::ValuesIn(FuseKinds()), DeviceKindName);

}  // namespace
}  // namespace vss::testing
