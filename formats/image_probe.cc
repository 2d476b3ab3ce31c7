#include "vss/formats/image_probe.h"

#include <algorithm>
#include <vector>

namespace vss {
namespace {

// True when `bytes` holds `magic` at `offset`.
bool HasAt(std::span<const uint8_t> bytes, size_t offset,
           std::string_view magic) {
  if (offset > bytes.size() || bytes.size() - offset < magic.size()) {
    return false;
  }
  return std::equal(
      magic.begin(), magic.end(), bytes.begin() + offset,
      [](char m, uint8_t b) { return static_cast<uint8_t>(m) == b; });
}

uint32_t LoadBe32(std::span<const uint8_t> b, size_t at) {
  return uint32_t{b[at]} << 24 | uint32_t{b[at + 1]} << 16 |
         uint32_t{b[at + 2]} << 8 | uint32_t{b[at + 3]};
}

uint32_t LoadLe32(std::span<const uint8_t> b, size_t at) {
  return uint32_t{b[at]} | uint32_t{b[at + 1]} << 8 |
         uint32_t{b[at + 2]} << 16 | uint32_t{b[at + 3]} << 24;
}

constexpr std::string_view kQcowMagic("QFI\xfb", 4);
constexpr std::string_view kQedMagic("QED\0", 4);
constexpr std::string_view kVhdxMagic = "vhdxfile";
constexpr std::string_view kVhdCookie = "conectix";
constexpr std::string_view kVmdkSparse = "KDMV";
constexpr std::string_view kVmdkEsxSparse = "COWD";
constexpr std::string_view kVmdkDescriptor = "# Disk DescriptorFile";
constexpr size_t kVdiSignatureAt = 0x40;
constexpr uint32_t kVdiSignature = 0xbeda107f;
constexpr std::string_view kVdiTextStart = "<<< ";
constexpr std::string_view kVdiTextEnd = "Disk Image >>>";

// VirtualBox's pre-header: "<<< Oracle VM VirtualBox Disk Image >>>\n" in
// the 64 bytes before the signature.
bool IsVdiText(std::span<const uint8_t> head) {
  if (!HasAt(head, 0, kVdiTextStart)) return false;
  size_t n = std::min(head.size(), kVdiSignatureAt);
  for (size_t i = 0; i + kVdiTextEnd.size() <= n; ++i) {
    if (HasAt(head.first(n), i, kVdiTextEnd)) return true;
  }
  return false;
}

}  // namespace

std::string_view ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kRaw:
      return "raw";
    case ImageFormat::kQcow:
      return "qcow";
    case ImageFormat::kQcow2:
      return "qcow2";
    case ImageFormat::kQed:
      return "QED";
    case ImageFormat::kVhdx:
      return "VHDX";
    case ImageFormat::kVhd:
      return "VHD";
    case ImageFormat::kVmdk:
      return "VMDK";
    case ImageFormat::kVdi:
      return "VDI";
  }
  return "unknown";
}

ImageFormat ProbeImageFormat(std::span<const uint8_t> head,
                             std::span<const uint8_t> tail) {
  head = head.first(std::min(head.size(), kProbeHeadBytes));
  if (tail.size() > kProbeTailBytes) tail = tail.last(kProbeTailBytes);
  if (HasAt(head, 0, kQcowMagic)) {
    // A header too short to hold the version is still no raw volume.
    if (head.size() >= 8 && LoadBe32(head, 4) == 1) return ImageFormat::kQcow;
    return ImageFormat::kQcow2;
  }
  if (HasAt(head, 0, kQedMagic)) return ImageFormat::kQed;
  if (HasAt(head, 0, kVhdxMagic)) return ImageFormat::kVhdx;
  if (HasAt(head, 0, kVhdCookie)) return ImageFormat::kVhd;
  if (HasAt(head, 0, kVmdkSparse) || HasAt(head, 0, kVmdkEsxSparse) ||
      HasAt(head, 0, kVmdkDescriptor)) {
    return ImageFormat::kVmdk;
  }
  if (head.size() >= kVdiSignatureAt + 4 &&
      LoadLe32(head, kVdiSignatureAt) == kVdiSignature) {
    return ImageFormat::kVdi;
  }
  if (IsVdiText(head)) return ImageFormat::kVdi;
  if (tail.size() == kProbeTailBytes && HasAt(tail, 0, kVhdCookie)) {
    return ImageFormat::kVhd;
  }
  return ImageFormat::kRaw;
}

Status ReadProbeBytes(BlockDevice& dev, std::vector<uint8_t>* head,
                      std::vector<uint8_t>* tail) {
  head->resize(std::min<uint64_t>(dev.size(), kProbeHeadBytes));
  VSS_RETURN_IF_ERROR(dev.Read(0, *head));
  tail->clear();
  if (dev.size() >= kProbeTailBytes) {
    tail->resize(kProbeTailBytes);
    VSS_RETURN_IF_ERROR(dev.Read(dev.size() - kProbeTailBytes, *tail));
  }
  return OkStatus();
}

StatusOr<ImageFormat> ProbeDevice(BlockDevice& dev) {
  std::vector<uint8_t> head, tail;
  VSS_RETURN_IF_ERROR(ReadProbeBytes(dev, &head, &tail));
  return ProbeImageFormat(head, tail);
}

Status UnreadableImageError(ImageFormat format, const std::string& path) {
  std::string name(ImageFormatName(format));
  return UnsupportedError(path + " is a " + name +
                          " image; vss reads only raw volumes until a " + name +
                          " driver lands");
}

Status CheckRawImage(BlockDevice& dev, const std::string& path) {
  VSS_ASSIGN_OR_RETURN(ImageFormat format, ProbeDevice(dev));
  if (format == ImageFormat::kRaw) return OkStatus();
  return UnreadableImageError(format, path);
}

}  // namespace vss
