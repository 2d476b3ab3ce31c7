// DriverRegistry: the image drivers (driver.h) by name, and the choice of a
// driver for a file from its bytes.
//
// Probing follows rule 11 of DESIGN.md (image files are never misread):
// each registered driver is asked whether the file's head and tail are its
// own; when none claims them, image_probe.h names the disk-image format the
// bytes are, and the file is refused with one line naming the file and the
// format ("PATH is a VHDX image; vss reads only raw volumes until a VHDX
// driver lands"). The raw driver claims exactly the files that
// ProbeImageFormat() calls raw, so a file of a known image format is never
// opened as raw bytes.
//
// Default() is the process-wide registry with every driver this build has:
// "raw" (raw_driver.h), "qcow2" (qcow2_driver.h) and "nbd" (nbd_driver.h).
// It is built on first use and never changes afterwards, so it may be read
// from any thread. A
// registry of one's own (tests) is filled with Register() before it is
// shared; Register() is not thread safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "vss/base/status.h"
#include "vss/formats/driver.h"

namespace vss {

class DriverRegistry {
 public:
  DriverRegistry() = default;
  DriverRegistry(const DriverRegistry&) = delete;
  DriverRegistry& operator=(const DriverRegistry&) = delete;

  // The registry with the drivers of this build.
  static const DriverRegistry& Default();

  // Adds `driver`. kAlreadyExists if a driver of that name is registered.
  [[nodiscard]] Status Register(std::unique_ptr<ImageDriver> driver);

  // The driver called `name` (lower case, as name() says). A disk-image
  // format that image_probe.h knows but no driver reads yet ("vhdx",
  // "vmdk", …) is kUnsupported ("vss has no vhdx driver yet; formats:
  // nbd, qcow2, raw"); any other name is kInvalidArgument ("unknown image
  // format 'foo'; formats: nbd, qcow2, raw").
  [[nodiscard]] StatusOr<const ImageDriver*> Find(std::string_view name) const;

  // The registered drivers, ordered by name.
  std::vector<const ImageDriver*> List() const;

  // The driver whose Probe() claims `head` and `tail` (see
  // ImageDriver::Probe). When none does: kUnsupported with the one-line
  // refusal above, naming `path`.
  [[nodiscard]] StatusOr<const ImageDriver*> Probe(
      std::span<const uint8_t> head, std::span<const uint8_t> tail,
      const std::string& path) const;

  // Reads the head and tail of the file at `path` (opened read-only,
  // without a lock and without following a final symbolic link) and
  // probes them. Errors: those of RawImage::Open and of reading, and
  // Probe()'s.
  [[nodiscard]] StatusOr<const ImageDriver*> ProbeFile(
      const std::string& path) const;

 private:
  std::vector<std::unique_ptr<ImageDriver>> drivers_;  // ordered by name
};

}  // namespace vss
