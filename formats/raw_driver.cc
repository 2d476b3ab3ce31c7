#include "vss/formats/raw_driver.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "vss/base/file.h"
#include "vss/formats/image_probe.h"
#include "vss/formats/raw_image.h"
#include "opened_path.h"

namespace vss {
namespace {

// The directory holding `path`, for syncing its entry.
std::string DirectoryOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

// Opens `path` to look at it: read-only, without a lock (a volume in use
// may be described), refused when it is another image format.
StatusOr<std::unique_ptr<RawImage>> OpenToInspect(const std::string& path) {
  RawImageOptions options{.read_only = true, .lock = false};
  VSS_ASSIGN_OR_RETURN(auto img, RawImage::Open(path, options));
  VSS_RETURN_IF_ERROR(CheckRawImage(*img, path));
  return img;
}

}  // namespace

bool RawDriver::Probe(std::span<const uint8_t> head,
                      std::span<const uint8_t> tail) const {
  return ProbeImageFormat(head, tail) == ImageFormat::kRaw;
}

StatusOr<std::unique_ptr<BlockDevice>> RawDriver::Open(
    const ImageOpenRequest& request) const {
  VSS_RETURN_IF_ERROR(CheckOptionKeys(request.options, {}));
  RawImageOptions options;
  options.read_only = !request.writable;
  VSS_ASSIGN_OR_RETURN(auto img, RawImage::Open(request.path, options));
  if (request.require_real_path) {
    VSS_RETURN_IF_ERROR(CheckOpenedByRealPath(img->fd(), request.path));
  }
  // Rule 11: a qcow2 file read as raw would be destroyed by the first write.
  VSS_RETURN_IF_ERROR(CheckRawImage(*img, request.path));
  return std::unique_ptr<BlockDevice>(std::move(img));
}

StatusOr<std::unique_ptr<BlockDevice>> RawDriver::Create(
    const ImageCreateRequest& request) const {
  VSS_RETURN_IF_ERROR(CheckOptionKeys(request.options, {}));
  VSS_ASSIGN_OR_RETURN(auto img, RawImage::Create(request.path, request.size));
  // Orders the new image's name before any record that names it.
  Status synced = FileSystem::Default()->SyncDir(DirectoryOf(request.path));
  if (!synced.ok()) {
    img.reset();
    std::filesystem::remove(request.path);
    return synced;
  }
  return std::unique_ptr<BlockDevice>(std::move(img));
}

StatusOr<ImageCheckResult> RawDriver::Check(const std::string& path) const {
  VSS_ASSIGN_OR_RETURN(auto img, OpenToInspect(path));
  VSS_ASSIGN_OR_RETURN(std::vector<Extent> extents,
                       img->Extents(0, img->size()));
  ImageCheckResult result;
  for (const Extent& e : extents) result.checked_units += e.allocated ? 1 : 0;
  return result;
}

StatusOr<ImageInfo> RawDriver::Info(const std::string& path) const {
  VSS_ASSIGN_OR_RETURN(auto img, OpenToInspect(path));
  struct stat st;
  if (fstat(img->fd(), &st) != 0) return ErrnoError(errno, path);
  ImageInfo info;
  info.format = std::string(name());
  info.virtual_size = img->size();
  info.allocated_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  return info;
}

}  // namespace vss
