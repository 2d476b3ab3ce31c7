// libFuzzer target for the disk-image header probe (formats/image_probe.cc).
// The input stands for a whole small file: its first kProbeHeadBytes bytes
// are the head and, when it holds at least kProbeTailBytes, its last
// kProbeTailBytes bytes are the tail, as ProbeDevice() reads them. Seeds:
// testdata/fuzz/image_probe/ (headers made by qemu-img, a VHD footer, raw).
#include <cstddef>
#include <cstdint>
#include <span>

#include "vss/formats/image_probe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> file(data, size);
  std::span<const uint8_t> head =
      file.first(size < vss::kProbeHeadBytes ? size : vss::kProbeHeadBytes);
  std::span<const uint8_t> tail;
  if (size >= vss::kProbeTailBytes) tail = file.last(vss::kProbeTailBytes);
  vss::ImageFormat format = vss::ProbeImageFormat(head, tail);
  // Every answer has a name; the whole input as head alone must not crash.
  if (vss::ImageFormatName(format).empty()) __builtin_trap();
  vss::ProbeImageFormat(file, {});
  return 0;
}
