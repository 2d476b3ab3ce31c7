// ImageFs for builds without libfuse3: mounting reports that FUSE is missing.
#include "image_fs.h"

namespace vss::fuse {

StatusOr<std::unique_ptr<ImageFs>> ImageFs::Mount(ImageFsConfig,
                                                  const std::string&) {
  return UnsupportedError(
      "this vssctl was built without FUSE (install libfuse3-dev and rebuild)");
}

ImageFs::~ImageFs() = default;

Status ImageFs::Run() { return UnsupportedError("built without FUSE"); }

}  // namespace vss::fuse
