// ImageWriter: writes a new image of one format in one pass, from guest
// data given in ascending order, for exports and backups. A driver makes
// one with ImageDriver::CreateWriter() (driver.h); the file it writes is
// opened afterwards by that driver (or by another tool) like any other
// image. One writer per format: qcow2, vhdx, vhd, vmdk.
//
// The contract every writer keeps:
//   - Create: the file is made 0600 and must not exist (kAlreadyExists);
//     nothing names the data until Finish(); a writer destroyed without a
//     successful Finish() removes its file, so a failed export leaves
//     nothing behind.
//   - Write/WriteZeroes take guest ranges in ascending order, each
//     starting at a multiple of unit_size() at or after the end of the
//     previous one, with a length that is a multiple of unit_size() or ends
//     exactly at size(). Ranges never given read as zeroes without a
//     backing file, and as the backing file with one.
//   - WriteZeroes makes the range read as zeroes, hiding the backing
//     file's data there when there is one.
//   - Finish writes the format's tables, syncs the file, writes what makes
//     the image valid (header, footer, descriptor) last, syncs the file and
//     the directory.
//
// A writer with a backing file (an incremental export: a qcow2 overlay, a
// VHDX or VHD differencing disk, a VMDK sparse child) reads what the
// format records of its parent (its identity, its size) when it is created,
// and refuses a parent of another format or size with kInvalidArgument
// naming the parent.
//
// Not thread-safe: one thread uses a writer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vss/base/file.h"
#include "vss/base/status.h"
#include "vss/formats/block_device.h"
#include "vss/formats/driver.h"

namespace vss {

// The formats whose drivers have a writer, in the order tools list them;
// each is also the file name extension of its images (".vhdx").
inline constexpr std::string_view kWriterFormats[] = {"qcow2", "vhdx", "vhd",
                                                      "vmdk"};

// True when `format` is one of kWriterFormats.
bool IsWriterFormat(std::string_view format);

// What ImageDriver::CreateWriter() makes.
struct ImageWriterRequest {
  std::string path;   // must not exist
  uint64_t size = 0;  // guest-visible bytes, > 0
  // Format options, as for ImageDriver::Create() (the same keys where they
  // mean the same: "subformat", "cluster_size", "block_size", "compress"
  // = "zlib" | "zstd" | "deflate", ...). Unknown keys: kInvalidArgument.
  DriverOptions options;
  // The backing (parent) file's name as the new image will record it;
  // resolved relative to the new image's directory when it is relative.
  // Empty: a standalone image.
  std::string backing_file;
  FileSystem* fs = FileSystem::Default();  // not owned
};

// What a writer wrote.
struct ImageWriterStats {
  uint64_t data_units = 0;        // units stored with data
  uint64_t compressed_units = 0;  // of which compressed
  uint64_t zero_units = 0;        // units recorded as zeroes
  uint64_t data_bytes = 0;        // bytes of guest data stored
  uint64_t file_bytes = 0;        // size of the file(s) after Finish()
};

class ImageWriter {
 public:
  virtual ~ImageWriter() = default;

  // The format's name, as its driver's ("qcow2", "vhdx", "vhd", "vmdk").
  virtual std::string_view format() const = 0;
  // The granularity of Write/WriteZeroes: a cluster, a sector or a grain.
  virtual uint64_t unit_size() const = 0;
  virtual uint64_t size() const = 0;
  virtual const std::string& path() const = 0;
  virtual bool has_backing() const = 0;
  virtual const ImageWriterStats& stats() const = 0;

  // Stores `data` as the guest bytes from `offset` on (see the file
  // comment for the REQUIREs; else kInvalidArgument, nothing written). A
  // unit of zeroes may be stored as by WriteZeroes(). I/O errors name the
  // file.
  [[nodiscard]] virtual Status Write(uint64_t offset,
                                     std::span<const uint8_t> data) = 0;
  // Makes [offset, offset+length) read as zeroes. Same REQUIREs.
  [[nodiscard]] virtual Status WriteZeroes(uint64_t offset,
                                           uint64_t length) = 0;
  // Writes the tables and what makes the image valid, durably (see the
  // file comment). After it, only the accessors may be called.
  [[nodiscard]] virtual Status Finish() = 0;
};

// The extents of `src` within each of `ranges` (ascending, disjoint), in
// order: what an incremental copy of changed ranges hands CopyUnits, so
// that the holes among the changes need no read.
[[nodiscard]] StatusOr<std::vector<Extent>> ExtentsWithin(
    BlockDevice& src, std::span<const Extent> ranges);

// Copies into `writer` every unit that `extents` touch, in order: a unit
// that only a zero extent (allocated == false: `src` reads it as zeroes)
// covers whole is written as zeroes without being read; any other touched
// unit is read whole from `src` (so the part outside the extents is the
// source's too). Units no extent touches are not written. REQUIRES:
// `extents` ascending and disjoint (else kInvalidArgument), inside `src`,
// whose size is writer.size(). `progress` (may be empty) hears the bytes of
// each piece handled.
[[nodiscard]] Status CopyUnits(BlockDevice& src,
                               std::span<const Extent> extents,
                               ImageWriter& writer,
                               const std::function<void(uint64_t)>& progress);

}  // namespace vss
