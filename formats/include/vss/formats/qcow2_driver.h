// Qcow2Driver: the "qcow2" image driver (QEMU's format, versions 2 and 3),
// opening a file as a qcow2::Image (formats/qcow2/qcow2_image.h) whose
// BlockDevice is the guest's view.
//
// Open(): the file is opened O_NOFOLLOW, read-write and locked exclusively
// (flock) when writable, read-only with a shared lock otherwise; a
// read-only open writes no byte. Backing files are opened read-only with a
// shared lock, their names resolved relative to the directory of the image
// that names them (as QEMU does), as qcow2 or raw (the backing format
// extension, else probed); a chain that loops or names a missing file is
// refused naming the file. Unsupported features (encryption, external data
// files, unknown incompatible bits, a corrupt image opened writable, a dirty
// image opened writable) are kUnsupported naming the file and the feature.
// Options:
//   cache_size      bytes of each metadata cache (L2 tables, refcount
//                   blocks); default 2 MiB, at least one table is kept.
// Create() options (a version 3, compat 1.1, image):
//   cluster_size    512 .. 2M, a power of two (suffixes K, M); default 64K
//   compression_type zlib | zstd (of clusters others write compressed)
//   preallocation   off | metadata
//   backing_file    the backing file's name, stored as given
//   backing_format  qcow2 | raw (default: probed)
//   extended_l2     on | off (subclusters; cluster_size at least 16K)
//   refcount_bits   1, 2, 4, 8, 16, 32 or 64; default 16
//   cache_size      as for Open()
// Info() reports compat, compression type, lazy refcounts, refcount bits,
// corrupt and extended l2 as its specific facts; it names the backing file
// without opening it (a broken chain can still be described).
//
// Thread safety: stateless; any number of threads.
#pragma once

#include "vss/formats/driver.h"

namespace vss {

class Qcow2Driver final : public ImageDriver {
 public:
  std::string_view name() const override { return "qcow2"; }
  bool Probe(std::span<const uint8_t> head,
             std::span<const uint8_t> tail) const override;
  StatusOr<std::unique_ptr<BlockDevice>> Open(
      const ImageOpenRequest& request) const override;
  StatusOr<std::unique_ptr<BlockDevice>> Create(
      const ImageCreateRequest& request) const override;
  StatusOr<ImageInfo> Info(const std::string& path) const override;
  // qcow2::CheckImage (formats/qcow2/qcow2_check.h) on the file, under a
  // shared lock: kBusy while a writer (a volume in use) holds the image.
  StatusOr<ImageCheckResult> Check(const std::string& path) const override;
  // The same with repair, under an exclusive lock.
  StatusOr<ImageCheckResult> Repair(const std::string& path) const override;
  // A qcow2::Writer (qcow2_writer.h). Options: cluster_size (as for
  // Create(), default 64K), compress = zlib | zstd (data clusters stored
  // compressed where that shrinks them). A backing file must be a qcow2 or
  // raw image of the same size; its format is recorded in the header.
  StatusOr<std::unique_ptr<ImageWriter>> CreateWriter(
      const ImageWriterRequest& request) const override;
};

}  // namespace vss
