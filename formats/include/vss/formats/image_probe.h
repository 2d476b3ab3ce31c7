// Image probe: which known disk-image format a file's bytes are.
//
// A volume is read as raw bytes only when its file is not another disk-image
// format (rule 11 of DESIGN.md: image files are never misread). The probe is
// a pure function of the first bytes of the file (the head) and its last 512
// bytes (the tail, where a VHD keeps its footer), kept apart from I/O so that
// it can be unit tested on byte arrays and fuzzed. ProbeDevice() is the thin
// I/O wrapper that reads those bytes from a BlockDevice.
//
// Recognised (magic and where it sits):
//   qcow / qcow2  "QFI\xfb" at 0, big-endian version at 4 (1: qcow, else qcow2)
//   QED           "QED\0" at 0
//   VHDX          "vhdxfile" at 0
//   VHD           "conectix" at 0 (dynamic disk's footer copy) or at the
//                 start of the last 512 bytes (the footer of every VHD)
//   VMDK          "KDMV" (hosted sparse) or "COWD" (ESX sparse) at 0, or a
//                 text descriptor starting "# Disk DescriptorFile"
//   VDI           little-endian 0xbeda107f at 0x40, or a head starting
//                 "<<< " whose pre-header text contains "Disk Image >>>"
// Anything else is kRaw. A probe never reads past the spans it is given;
// shorter spans simply match fewer formats.
//
// Thread safety: pure functions; ProbeDevice() as thread safe as the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vss/base/status.h"
#include "vss/formats/block_device.h"

namespace vss {

enum class ImageFormat {
  kRaw,  // none of the formats below
  kQcow,
  kQcow2,
  kQed,
  kVhdx,
  kVhd,
  kVmdk,
  kVdi,
};

// How many bytes of the head and the tail the probe looks at.
inline constexpr size_t kProbeHeadBytes = 4096;
inline constexpr size_t kProbeTailBytes = 512;

// The format's usual name: "raw", "qcow", "qcow2", "QED", "VHDX", "VHD",
// "VMDK", "VDI".
std::string_view ImageFormatName(ImageFormat format);

// Judges a file from its first bytes (`head`, up to kProbeHeadBytes are
// used) and its last kProbeTailBytes bytes (`tail`; empty when the file is
// shorter, or unknown). Never fails; kRaw when no known magic matches.
ImageFormat ProbeImageFormat(std::span<const uint8_t> head,
                             std::span<const uint8_t> tail);

// Reads the head (up to kProbeHeadBytes) and the tail (kProbeTailBytes,
// or nothing when the device is shorter) of `dev`, as the probe takes
// them. Errors: the device's read errors.
Status ReadProbeBytes(BlockDevice& dev, std::vector<uint8_t>* head,
                      std::vector<uint8_t>* tail);

// Reads the head and tail of `dev` and probes them. Errors: the device's
// read errors.
StatusOr<ImageFormat> ProbeDevice(BlockDevice& dev);

// The refusal of a file of `format` that no driver reads: kUnsupported
// with one line naming `path` and the format ("PATH is a qcow2 image; vss
// reads only raw volumes until a qcow2 driver lands").
// REQUIRES: format != ImageFormat::kRaw.
Status UnreadableImageError(ImageFormat format, const std::string& path);

// OK when `dev` probes as raw; otherwise UnreadableImageError(format,
// path). Read errors are returned as they are.
Status CheckRawImage(BlockDevice& dev, const std::string& path);

}  // namespace vss
