// libFuzzer target for the qcow2 header parser and the check and repair
// (formats/qcow2/qcow2_layout.h, qcow2_check.h). The input is a whole image
// file, put in a MemFileSystem. Properties checked beyond "no crash, no
// hang, bounded memory":
//   - a check without repair writes nothing;
//   - a repair that is not refused leaves an image whose check is clean.
// Seeds: testdata/fuzz/qcow2/, the images of testdata/qcow2/ made by
// qemu-img (the larger ones cut to their first 64 KiB).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "qcow2_check.h"
#include "qcow2_layout.h"
#include "vss/base/mem_file_system.h"

namespace {

std::unique_ptr<vss::File> OpenImage(vss::MemFileSystem& fs) {
  vss::StatusOr<std::unique_ptr<vss::File>> f = fs.Open("/image.qcow2", false);
  if (!f.ok()) __builtin_trap();
  return std::move(*f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  (void)vss::qcow2::ParseHeader(bytes, bytes.size());

  vss::MemFileSystem fs;
  fs.SetContents("/image.qcow2", bytes);
  std::unique_ptr<vss::File> file = OpenImage(fs);
  vss::qcow2::CheckOptions options;
  (void)vss::qcow2::CheckImage(*file, options);
  if (fs.Contents("/image.qcow2") != bytes) __builtin_trap();

  options.repair = true;
  vss::StatusOr<vss::ImageCheckResult> repaired =
      vss::qcow2::CheckImage(*file, options);
  if (repaired.ok() && !repaired->clean()) __builtin_trap();
  return 0;
}
