// The BlockDevice conformance suite (tests/lib) on the devices of the
// formats library: RawImage, qcow2 images (alone and over a raw backing
// file) and the test doubles, each writable and read-only.

#include "vss/testing/device_conformance.h"

#include <memory>
#include <string>
#include <vector>

#include "vss/formats/block_device.h"
#include "vss/formats/fault_device.h"
#include "vss/formats/memory_device.h"
#include "vss/formats/power_loss_device.h"
#include "vss/formats/raw_image.h"
#include "vss/formats/registry.h"
#include "vss/testing/pattern.h"
#include "vss/testing/temp_dir.h"

namespace vss {
namespace {

using testing::ConformanceDevice;
using testing::DeviceConformanceTest;
using testing::DeviceKind;
using testing::kConformanceDeviceSize;
using testing::OwnedConformanceDevice;
using testing::Pattern;
using testing::TempDir;

using Made = StatusOr<std::unique_ptr<ConformanceDevice>>;

// A raw image in a TempDir, made by RawImage directly or through the
// registry's raw driver; the read-only one holds a pattern in
// [kDataOffset, +kDataLength) and zeroes elsewhere.
class RawImageDevice final : public ConformanceDevice {
 public:
  static constexpr uint64_t kDataOffset = 500;
  static constexpr uint64_t kDataLength = 10000;

  static Made Make(bool read_only) { return MakeWith(read_only, false); }
  static Made MakeThroughDriver(bool read_only) {
    return MakeWith(read_only, true);
  }

 private:
  static StatusOr<std::unique_ptr<BlockDevice>> Create(
      const std::string& path, bool through_driver) {
    if (!through_driver) {
      VSS_ASSIGN_OR_RETURN(auto image,
                           RawImage::Create(path, kConformanceDeviceSize));
      return std::unique_ptr<BlockDevice>(std::move(image));
    }
    return RawDriver()->Create({.path = path, .size = kConformanceDeviceSize});
  }
  static StatusOr<std::unique_ptr<BlockDevice>> OpenReadOnly(
      const std::string& path, bool through_driver) {
    if (!through_driver) {
      VSS_ASSIGN_OR_RETURN(auto image,
                           RawImage::Open(path, {.read_only = true}));
      return std::unique_ptr<BlockDevice>(std::move(image));
    }
    return RawDriver()->Open({.path = path, .writable = false});
  }
  static const ImageDriver* RawDriver() {
    return *DriverRegistry::Default().Find("raw");
  }

  static Made MakeWith(bool read_only, bool through_driver) {
    auto made = std::make_unique<RawImageDevice>();
    const std::string path = made->dir_.File("disk.img");
    VSS_ASSIGN_OR_RETURN(auto image, Create(path, through_driver));
    if (read_only) {
      VSS_RETURN_IF_ERROR(image->Write(kDataOffset, Data()));
      VSS_RETURN_IF_ERROR(image->Flush());
      image.reset();
      VSS_ASSIGN_OR_RETURN(image, OpenReadOnly(path, through_driver));
      made->initial_ = std::vector<uint8_t>(kConformanceDeviceSize, 0);
      std::vector<uint8_t> data = Data();
      std::copy(data.begin(), data.end(), made->initial_.begin() + kDataOffset);
    }
    made->image_ = std::move(image);
    return std::unique_ptr<ConformanceDevice>(std::move(made));
  }

 public:
  BlockDevice& device() override { return *image_; }
  std::vector<uint8_t> InitialContents() override {
    return initial_.empty() ? ConformanceDevice::InitialContents() : initial_;
  }

 private:
  static std::vector<uint8_t> Data() { return Pattern(kDataLength, 9); }

  TempDir dir_;
  std::unique_ptr<BlockDevice> image_;
  std::vector<uint8_t> initial_;
};

// A qcow2 image made by the qcow2 driver, alone or over a raw backing file
// holding a pattern (which the image then reads through); the read-only
// one also holds a pattern written through the image.
class Qcow2Device final : public ConformanceDevice {
 public:
  static Made Make(bool read_only) { return MakeWith(read_only, false); }
  static Made MakeOverBacking(bool read_only) {
    return MakeWith(read_only, true);
  }

  BlockDevice& device() override { return *image_; }
  std::vector<uint8_t> InitialContents() override { return initial_; }

 private:
  static constexpr uint64_t kDataOffset = 70000;

  static Made MakeWith(bool read_only, bool over_backing) {
    const ImageDriver* qcow2 = *DriverRegistry::Default().Find("qcow2");
    auto made = std::make_unique<Qcow2Device>();
    made->initial_.assign(kConformanceDeviceSize, 0);
    DriverOptions options{{"cluster_size", "4K"}};
    if (over_backing) {
      const ImageDriver* raw = *DriverRegistry::Default().Find("raw");
      VSS_ASSIGN_OR_RETURN(auto base,
                           raw->Create({.path = made->dir_.File("base.raw"),
                                        .size = kConformanceDeviceSize}));
      made->initial_ = Pattern(kConformanceDeviceSize, 4);
      VSS_RETURN_IF_ERROR(base->Write(0, made->initial_));
      VSS_RETURN_IF_ERROR(base->Flush());
      options["backing_file"] = "base.raw";
      options["backing_format"] = "raw";
    }
    const std::string path = made->dir_.File("disk.qcow2");
    VSS_ASSIGN_OR_RETURN(made->image_,
                         qcow2->Create({.path = path,
                                        .size = kConformanceDeviceSize,
                                        .options = options}));
    if (read_only) {
      std::vector<uint8_t> data = Pattern(10000, 9);
      VSS_RETURN_IF_ERROR(made->image_->Write(kDataOffset, data));
      VSS_RETURN_IF_ERROR(made->image_->Flush());
      std::copy(data.begin(), data.end(), made->initial_.begin() + kDataOffset);
      made->image_.reset();
      VSS_ASSIGN_OR_RETURN(made->image_,
                           qcow2->Open({.path = path, .writable = false}));
    }
    return std::unique_ptr<ConformanceDevice>(std::move(made));
  }

  TempDir dir_;
  std::unique_ptr<BlockDevice> image_;
  std::vector<uint8_t> initial_;
};

Made MakeMemory(bool read_only) {
  return std::unique_ptr<ConformanceDevice>(
      std::make_unique<OwnedConformanceDevice>(std::make_unique<MemoryDevice>(
          kConformanceDeviceSize, "memory", read_only)));
}

// A wrapper (FaultDevice, PowerLossDevice, ForwardingDevice) owning a
// MemoryDevice.
template <typename Wrapper>
Made MakeWrapper(bool read_only) {
  return std::unique_ptr<ConformanceDevice>(
      std::make_unique<OwnedConformanceDevice>(
          std::make_unique<Wrapper>(std::make_unique<MemoryDevice>(
              kConformanceDeviceSize, "memory", read_only))));
}

// Each maker as a writable and a read-only kind.
void AddBoth(std::vector<DeviceKind>& kinds, const std::string& name,
             Made (*make)(bool)) {
  kinds.push_back({.name = name, .make = [make] { return make(false); }});
  kinds.push_back({.name = name + "ReadOnly",
                   .read_only = true,
                   .make = [make] { return make(true); }});
}

std::vector<DeviceKind> FormatsKinds() {
  std::vector<DeviceKind> kinds;
  AddBoth(kinds, "RawImage", &RawImageDevice::Make);
  AddBoth(kinds, "RawDriver", &RawImageDevice::MakeThroughDriver);
  AddBoth(kinds, "Qcow2", &Qcow2Device::Make);
  AddBoth(kinds, "Qcow2OverBacking", &Qcow2Device::MakeOverBacking);
  AddBoth(kinds, "MemoryDevice", &MakeMemory);
  AddBoth(kinds, "FaultDeviceWithoutRule", &MakeWrapper<FaultDevice>);
  AddBoth(kinds, "PowerLossDeviceOverMemory", &MakeWrapper<PowerLossDevice>);
  AddBoth(kinds, "ForwardingDevice", &MakeWrapper<ForwardingDevice>);
  return kinds;
}

INSTANTIATE_TEST_SUITE_P(AllDevices, DeviceConformanceTest,
                         ::testing::ValuesIn(FormatsKinds()),
                         testing::DeviceKindName);

}  // namespace
}  // namespace vss
