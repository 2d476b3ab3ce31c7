#include "vss/formats/driver.h"

#include <algorithm>

#include "vss/formats/image_writer.h"

namespace vss {

StatusOr<std::unique_ptr<BlockDevice>> ImageDriver::Create(
    const ImageCreateRequest& request) const {
  return UnsupportedError("the " + std::string(name()) +
                          " driver cannot create images (" + request.path +
                          ")");
}

StatusOr<ImageCheckResult> ImageDriver::Check(const std::string& path) const {
  return UnsupportedError("the " + std::string(name()) +
                          " driver cannot check images (" + path + ")");
}

StatusOr<ImageCheckResult> ImageDriver::Repair(const std::string& path) const {
  return UnsupportedError("the " + std::string(name()) +
                          " driver cannot repair images (" + path + ")");
}

StatusOr<ImageInfo> ImageDriver::Info(const std::string& path) const {
  return UnsupportedError("the " + std::string(name()) +
                          " driver cannot describe images (" + path + ")");
}

StatusOr<std::unique_ptr<ImageWriter>> ImageDriver::CreateWriter(
    const ImageWriterRequest& request) const {
  return UnsupportedError("the " + std::string(name()) +
                          " driver cannot write exports (" + request.path +
                          ")");
}

Status ImageDriver::CheckOptionKeys(
    const DriverOptions& options,
    std::initializer_list<std::string_view> known) const {
  for (const auto& [key, value] : options) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return InvalidArgumentError("the " + std::string(name()) +
                                  " driver has no option '" + key + "'");
    }
  }
  return OkStatus();
}

}  // namespace vss
