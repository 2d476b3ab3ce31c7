// qcow2::Writer: the qcow2 ImageWriter (image_writer.h): writes a new qcow2
// version 3 image in one pass, from guest clusters given in ascending
// order, for exports and backups. The "qcow2" driver's CreateWriter() makes
// one; the file it makes is opened afterwards by that driver (or by QEMU)
// like any other image.
//
// Layout of the file it writes (byte offsets are multiples of the cluster
// size except for compressed data):
//   cluster 0        the header (version 3, refcount order 4), its
//                    extensions (the backing format when there is a
//                    backing file) and the backing file name;
//   clusters 1..     the data, in the order it was given: a whole cluster
//                    per uncompressed guest cluster, or compressed bytes
//                    starting on a 512-byte boundary and packed one after
//                    the other (a host cluster then holds several);
//   then             one L2 table per L1 entry in use, the L1 table, the
//                    refcount blocks, the refcount table.
// Every host cluster's refcount is the number of references to it (1 for
// metadata and uncompressed data; for compressed data, the number of
// compressed clusters whose bytes touch it), so `qemu-img check` finds no
// leak and no error. Uncompressed data clusters and L2 tables carry the
// "copied" bit. A guest cluster that reads as zero is left unallocated
// when there is no backing file, and written as a zero cluster (L2 bit 0)
// when there is one, so that it hides the backing file's data.
//
// Durability: nothing names the data until Finish(): it writes the tables,
// syncs the file, then writes the header, syncs the file again and syncs
// the directory. A writer destroyed without a successful Finish() removes
// its file, so a failed export leaves nothing behind.
//
// Memory: the L2 tables of the clusters written so far (8 bytes per guest
// cluster of each L2 table in use) and 2 bytes per host data cluster for
// refcounts; never the image's data.
//
// Not thread-safe: one thread uses a Writer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vss/base/file.h"
#include "vss/base/status.h"
#include "vss/formats/block_device.h"
#include "vss/formats/image_writer.h"

namespace vss::qcow2 {

enum class Compression { kNone, kZlib, kZstd };

struct WriterOptions {
  std::string path;   // must not exist
  uint64_t size = 0;  // guest-visible bytes, > 0
  uint32_t cluster_bits = 16;
  // Data clusters are stored compressed with this codec when that makes
  // them smaller (zlib: raw deflate, as qcow2 compression type 0; zstd:
  // compression type 1).
  Compression compression = Compression::kNone;
  // Stored in the header as given (QEMU resolves a relative name against
  // the image's directory). Empty: no backing file.
  std::string backing_file;
  std::string backing_format;  // "qcow2" or "raw"; required with a backing file
  FileSystem* fs = FileSystem::Default();  // not owned
};

// Its stats count clusters as units; zero_units are zero-cluster entries.
class Writer final : public ImageWriter {
 public:
  // Creates the file (0600). kAlreadyExists when the path exists;
  // kInvalidArgument for size 0, cluster bits outside 9..21, a backing file
  // without a format of "qcow2"/"raw", or a size whose L1 table would pass
  // 32 MiB; I/O errors name the file. No file is left on failure.
  [[nodiscard]] static StatusOr<std::unique_ptr<Writer>> Create(
      const WriterOptions& options);
  // Removes the file unless Finish() returned OK.
  ~Writer() override;
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  std::string_view format() const override { return "qcow2"; }
  uint64_t cluster_size() const { return uint64_t{1} << options_.cluster_bits; }
  uint64_t unit_size() const override { return cluster_size(); }
  uint64_t size() const override { return options_.size; }
  bool has_backing() const override { return !options_.backing_file.empty(); }
  const std::string& path() const override { return options_.path; }
  const ImageWriterStats& stats() const override { return stats_; }

  // Stores `data` as the guest clusters from `offset` on. REQUIRES (else
  // kInvalidArgument, nothing written): `offset` a multiple of the cluster
  // size, at or after the end of everything given before; data.size() a
  // multiple of the cluster size, or ending exactly at size(). A cluster
  // of zeroes is stored as by WriteZeroes(). I/O errors name the file.
  [[nodiscard]] Status Write(uint64_t offset,
                             std::span<const uint8_t> data) override;
  // Makes the guest clusters of [offset, offset+length) read as zeroes:
  // zero clusters with a backing file, nothing without. Same REQUIREs as
  // Write().
  [[nodiscard]] Status WriteZeroes(uint64_t offset, uint64_t length) override;
  // Writes the tables and the header and makes the image durable (see the
  // file comment). After it, only the accessors may be called.
  [[nodiscard]] Status Finish() override;

 private:
  Writer(WriterOptions options, std::unique_ptr<File> file);
  Status CheckNext(uint64_t offset, uint64_t length);
  Status StoreCluster(uint64_t guest_cluster, std::span<const uint8_t> data);
  Status StoreRaw(uint64_t guest_cluster, std::span<const uint8_t> data);
  Status StoreCompressed(uint64_t guest_cluster,
                         std::span<const uint8_t> packed);
  void SetL2(uint64_t guest_cluster, uint64_t entry);
  void AddRef(uint64_t host_cluster);
  Status WriteTables();

  WriterOptions options_;
  std::unique_ptr<File> file_;
  bool finished_ = false;
  uint64_t next_offset_ = 0;    // guest offset the next call may start at
  uint64_t host_end_ = 0;       // bytes of the file in use so far
  std::vector<uint16_t> refs_;  // refcount of each host cluster so far
  std::map<uint64_t, std::vector<uint64_t>> l2_;  // L1 index -> L2 entries
  std::vector<uint8_t> packed_;                   // compression output buffer
  std::vector<uint8_t> padded_;  // a short last cluster, padded
  std::vector<uint8_t> header_;  // cluster 0, made by WriteTables()
  ImageWriterStats stats_;
};

// What a backing file for a new image is.
struct BackingImage {
  std::string format;  // "qcow2" or "raw", as the header's backing format
  uint64_t size = 0;   // guest-visible bytes
};

// Reads the head of the file at `path` (read-only; the path as the
// caller resolved it): a qcow2 image (its header parsed and checked as a
// reader would) or a raw file (no disk-image magic; its size is the file's).
// kNotFound when missing; kInvalidArgument naming the file when it is
// another disk-image format or a qcow2 image this build cannot read.
[[nodiscard]] StatusOr<BackingImage> InspectBackingFile(
    const std::string& path);

}  // namespace vss::qcow2
