// RawDriver: the "raw" image driver, a plain (normally sparse) file whose
// bytes are the guest's bytes, opened as a RawImage (raw_image.h).
//
// It claims exactly the files that ProbeImageFormat() calls raw, and Open()
// checks the header again, so that a file holding another disk-image format
// is refused rather than read as raw (rule 11 of DESIGN.md). No options.
// Create() makes a sparse file, 0600, whose name is durable on return.
// Check() finds nothing to repair in a raw file (it has no metadata): it
// confirms the file opens as raw and counts its allocated extents. Info()
// reports the file's size and the bytes its blocks take.
//
// Thread safety: stateless; any number of threads.
#pragma once

#include "vss/formats/driver.h"

namespace vss {

class RawDriver final : public ImageDriver {
 public:
  std::string_view name() const override { return "raw"; }
  bool Probe(std::span<const uint8_t> head,
             std::span<const uint8_t> tail) const override;
  StatusOr<std::unique_ptr<BlockDevice>> Open(
      const ImageOpenRequest& request) const override;
  StatusOr<std::unique_ptr<BlockDevice>> Create(
      const ImageCreateRequest& request) const override;
  StatusOr<ImageCheckResult> Check(const std::string& path) const override;
  StatusOr<ImageInfo> Info(const std::string& path) const override;
};

}  // namespace vss
