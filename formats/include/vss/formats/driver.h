// ImageDriver: one disk-image format (raw, qcow2, VHDX, …) or one remote
// block protocol (NBD), as a small table of operations in the manner of
// QEMU's BlockDriver: it recognises its files from their first bytes, opens
// one as the guest-visible BlockDevice, creates new ones, checks their
// integrity and describes them. Everything else a volume needs (reads,
// writes, flush, allocation extents) is that BlockDevice's.
//
// Drivers are looked up by name in a DriverRegistry (registry.h), which
// also picks the driver of a file by probing it. A driver holds no state of
// its own: every method may be called from any thread at any time, and each
// device it returns is owned by the caller and follows the thread-safety
// contract of BlockDevice.
//
// Options are text key/value pairs ("cluster_size" -> "65536") as a user
// gives them on the command line. A driver reads the keys it knows and
// refuses any other with kInvalidArgument naming the key and the driver, so
// that a misspelt option is never silently ignored. Paths are those of the
// local file system; a driver that reaches no file (nbd) documents what its
// "path" is.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vss/base/status.h"
#include "vss/formats/block_device.h"

namespace vss {

class ImageWriter;
struct ImageWriterRequest;

// Driver options: key -> value, as given by the user.
using DriverOptions = std::map<std::string, std::string>;

// What Open() opens.
struct ImageOpenRequest {
  std::string path;
  // False: the device is read-only and no byte of the file is ever
  // written (not even a header's dirty flag).
  bool writable = true;
  // The path must be the file's real absolute path, reached through no
  // symbolic link at all (a path read from a store: rule 10 of DESIGN.md).
  // A path that does not name the opened file that way is
  // kFailedPrecondition, and nothing stays open.
  bool require_real_path = false;
  DriverOptions options;
};

// What Create() makes.
struct ImageCreateRequest {
  std::string path;   // must not exist yet
  uint64_t size = 0;  // the guest-visible size in bytes, > 0
  DriverOptions options;
};

// The outcome of Check(): what is wrong with an image, like `qemu-img
// check`. Leaks are space the image holds that nothing refers to (harmless
// but wasted); errors are damage that may lose or misreport data.
struct ImageCheckResult {
  std::vector<std::string> errors;  // one line each, naming the place
  uint64_t leaks = 0;               // leaked clusters or blocks
  uint64_t leaked_bytes = 0;
  uint64_t checked_units = 0;  // clusters, blocks or extents looked at
  bool clean() const { return errors.empty() && leaks == 0; }
};

// The outcome of Info(): a short description of an image, like `qemu-img
// info`.
struct ImageInfo {
  std::string format;            // the driver's name
  uint64_t virtual_size = 0;     // guest-visible bytes
  uint64_t allocated_bytes = 0;  // bytes the file takes on its medium
  uint64_t cluster_size = 0;     // allocation unit; 0 when it has none
  std::string backing_file;      // empty when the image has none
  // Format-specific facts in a stable order ("compat" -> "1.1").
  std::vector<std::pair<std::string, std::string>> specific;
};

class ImageDriver {
 public:
  virtual ~ImageDriver() = default;

  // The format's name, lower case ("raw", "qcow2", "nbd"); the key of the
  // registry and the value stored in a store's catalog.
  virtual std::string_view name() const = 0;

  // True when a file whose first bytes are `head` (up to kProbeHeadBytes
  // of image_probe.h) and whose last kProbeTailBytes are `tail` (empty when
  // the file is shorter) is this driver's. Pure and never fails; a driver
  // that reaches no file answers false.
  virtual bool Probe(std::span<const uint8_t> head,
                     std::span<const uint8_t> tail) const = 0;

  // Opens an existing image as the guest's BlockDevice. Errors: kNotFound
  // (no such file or export), kBusy (another writer holds it),
  // kFailedPrecondition (see require_real_path), kInvalidArgument (an
  // unknown option), kUnsupported or kCorruption (the file is not an image
  // this driver can read, naming the file and the reason).
  [[nodiscard]] virtual StatusOr<std::unique_ptr<BlockDevice>> Open(
      const ImageOpenRequest& request) const = 0;

  // Makes a new image and returns it open and writable. Its name is
  // durable (the directory synced) before this returns, so that a record
  // naming it may follow. kAlreadyExists if the path exists,
  // kInvalidArgument for size 0 or an unknown option; on failure no file is
  // left. The default: kUnsupported (the driver cannot create images).
  [[nodiscard]] virtual StatusOr<std::unique_ptr<BlockDevice>> Create(
      const ImageCreateRequest& request) const;

  // Checks the image at `path` without changing it. Errors are those of
  // Open(); what is wrong inside the image is the result, not an error.
  // The default: kUnsupported.
  [[nodiscard]] virtual StatusOr<ImageCheckResult> Check(
      const std::string& path) const;

  // Repairs what a check of the image at `path` finds and a repair can
  // fix safely (leaks and refcounts, for qcow2), then checks it again and
  // returns that second check. An image with damage it cannot fix is
  // refused with kFailedPrecondition naming the damage, and nothing is
  // written. Other errors are those of Open(). The default: kUnsupported.
  [[nodiscard]] virtual StatusOr<ImageCheckResult> Repair(
      const std::string& path) const;

  // Describes the image at `path` without changing it. Errors are those
  // of Open(). The default: kUnsupported.
  [[nodiscard]] virtual StatusOr<ImageInfo> Info(const std::string& path) const;

  // Starts a one-pass writer of a new image of this format, for exports
  // and backups (image_writer.h has the contract). Errors: kAlreadyExists,
  // kInvalidArgument (size 0, an unknown or bad option, a backing file of
  // another format or size), kNotFound (a missing backing file), I/O errors
  // naming the file; no file is left on failure. The default: kUnsupported.
  [[nodiscard]] virtual StatusOr<std::unique_ptr<ImageWriter>> CreateWriter(
      const ImageWriterRequest& request) const;

 protected:
  // kInvalidArgument naming the first key of `options` that is not in
  // `known`, and this driver; OK when every key is known.
  Status CheckOptionKeys(const DriverOptions& options,
                         std::initializer_list<std::string_view> known) const;
};

}  // namespace vss
