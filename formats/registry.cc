#include "vss/formats/registry.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "vss/formats/image_probe.h"
#include "vss/formats/nbd_driver.h"
#include "vss/formats/qcow2_driver.h"
#include "vss/formats/raw_driver.h"
#include "vss/formats/raw_image.h"

namespace vss {
namespace {

// The disk-image formats image_probe.h recognises besides raw.
constexpr ImageFormat kProbedFormats[] = {
    ImageFormat::kQcow, ImageFormat::kQcow2, ImageFormat::kQed,
    ImageFormat::kVhdx, ImageFormat::kVhd,   ImageFormat::kVmdk,
    ImageFormat::kVdi,
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

const DriverRegistry& DriverRegistry::Default() {
  static const DriverRegistry* registry = [] {
    auto* r = new DriverRegistry;
    // Distinct names: registering cannot fail.
    r->Register(std::make_unique<RawDriver>()).IgnoreError();
    r->Register(std::make_unique<NbdDriver>()).IgnoreError();
    r->Register(std::make_unique<Qcow2Driver>()).IgnoreError();
    return r;
  }();
  return *registry;
}

Status DriverRegistry::Register(std::unique_ptr<ImageDriver> driver) {
  auto at = std::lower_bound(
      drivers_.begin(), drivers_.end(), driver->name(),
      [](const auto& d, std::string_view n) { return d->name() < n; });
  if (at != drivers_.end() && (*at)->name() == driver->name()) {
    return AlreadyExistsError("an image driver named '" +
                              std::string(driver->name()) +
                              "' is already registered");
  }
  drivers_.insert(at, std::move(driver));
  return OkStatus();
}

StatusOr<const ImageDriver*> DriverRegistry::Find(std::string_view name) const {
  std::string names;
  for (const auto& d : drivers_) {
    if (d->name() == name) return d.get();
    names += (names.empty() ? "" : ", ") + std::string(d->name());
  }
  for (ImageFormat f : kProbedFormats) {
    if (Lower(ImageFormatName(f)) == name) {
      return UnsupportedError("vss has no " + std::string(name) +
                              " driver yet; formats: " + names);
    }
  }
  return InvalidArgumentError("unknown image format '" + std::string(name) +
                              "'; formats: " + names);
}

std::vector<const ImageDriver*> DriverRegistry::List() const {
  std::vector<const ImageDriver*> out;
  for (const auto& d : drivers_) out.push_back(d.get());
  return out;
}

StatusOr<const ImageDriver*> DriverRegistry::Probe(
    std::span<const uint8_t> head, std::span<const uint8_t> tail,
    const std::string& path) const {
  for (const auto& d : drivers_) {
    if (d->Probe(head, tail)) return d.get();
  }
  ImageFormat format = ProbeImageFormat(head, tail);
  if (format == ImageFormat::kRaw) {
    return UnsupportedError(path +
                            " is a raw image and no raw driver is "
                            "registered");
  }
  return UnreadableImageError(format, path);
}

StatusOr<const ImageDriver*> DriverRegistry::ProbeFile(
    const std::string& path) const {
  RawImageOptions options{.read_only = true, .lock = false};
  VSS_ASSIGN_OR_RETURN(auto file, RawImage::Open(path, options));
  std::vector<uint8_t> head, tail;
  VSS_RETURN_IF_ERROR(ReadProbeBytes(*file, &head, &tail));
  return Probe(head, tail, path);
}

}  // namespace vss
