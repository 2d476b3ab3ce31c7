// libFuzzer target for the qcow2 header parser, the driver's reads and
// writes, and the check and repair (formats/qcow2/qcow2_layout.h,
// qcow2_image.h, qcow2_check.h). The input is a whole image file, put in a
// MemFileSystem. Properties checked beyond "no crash, no hang, bounded
// memory":
//   - opened read-only, the image reads (its extents, its first MiB and the
//     first allocated extents) without writing a byte;
//   - opened writable, a write, a zeroing and a flush either work or fail
//     with a Status;
//   - a check without repair writes nothing;
//   - a repair that is not refused leaves an image whose check is clean.
// Seeds: testdata/fuzz/qcow2/, the images of testdata/qcow2/ made by
// qemu-img (the larger ones cut to their first 64 KiB).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "qcow2_check.h"
#include "qcow2_image.h"
#include "qcow2_layout.h"
#include "vss/base/mem_file_system.h"

namespace {

std::unique_ptr<vss::File> OpenImage(vss::MemFileSystem& fs) {
  vss::StatusOr<std::unique_ptr<vss::File>> f = fs.Open("/image.qcow2", false);
  if (!f.ok()) __builtin_trap();
  return std::move(*f);
}

// Reads what a guest would first: the extents of the first GiB, the first
// MiB, and up to 1 MiB of each of the first allocated extents.
void ReadSome(vss::BlockDevice& dev) {
  const uint64_t span = std::min<uint64_t>(dev.size(), 1ull << 30);
  std::vector<uint8_t> buf(std::min<uint64_t>(dev.size(), 1 << 20));
  if (!buf.empty()) (void)dev.Read(0, buf);
  vss::StatusOr<std::vector<vss::Extent>> extents = dev.Extents(0, span);
  if (!extents.ok()) return;
  int n = 0;
  for (const vss::Extent& e : *extents) {
    if (!e.allocated) continue;
    std::vector<uint8_t> data(std::min<uint64_t>(e.length, 1 << 20));
    (void)dev.Read(e.offset, data);
    if (++n == 8) break;
  }
}

void ReadAndWrite(vss::MemFileSystem& fs, const std::vector<uint8_t>& bytes) {
  {
    vss::StatusOr<std::unique_ptr<vss::qcow2::Image>> ro =
        vss::qcow2::Image::Open(OpenImage(fs), "fuzz", {.writable = false});
    if (ro.ok()) ReadSome(**ro);
  }
  if (fs.Contents("/image.qcow2") != bytes) __builtin_trap();
  vss::StatusOr<std::unique_ptr<vss::qcow2::Image>> rw =
      vss::qcow2::Image::Open(OpenImage(fs), "fuzz", {});
  if (!rw.ok()) return;
  vss::BlockDevice& dev = **rw;
  const uint64_t size = dev.size();
  if (size == 0) return;
  // A write across cluster boundaries in the middle, then a zeroing.
  std::vector<uint8_t> data(std::min<uint64_t>(size, 70000), 0x5a);
  (void)dev.Write((size - data.size()) / 2, data);
  (void)dev.WriteZeroes(0, std::min<uint64_t>(size, 8192));
  (void)dev.Flush();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  (void)vss::qcow2::ParseHeader(bytes, bytes.size());

  {
    vss::MemFileSystem fs;
    fs.SetContents("/image.qcow2", bytes);
    ReadAndWrite(fs, bytes);
  }
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
