// BackupDir and BackupSource: the files of a backup made by vss::Backup
// (vss/api/backup.h), written so that a crash never leaves a backup that
// looks complete but is not, and read back by vss::Restore without trusting
// anything in them. Internal to vss-api.
//
// A backup directory holds (all files 0600, a directory we create 0700,
// whatever the umask):
//   VOLUME.img     one sparse raw image per volume: the shadow's bytes;
//   VOLUME.FORMAT  or, in a backup of an image format (qcow2, vhdx, vhd,
//                  vmdk), one image of that format per volume (a full one,
//                  or an incremental one whose backing file (parent) is the
//                  base backup's image);
//   backup.json    the VSS backup components document;
//   manifest.json  written last: its presence marks a complete backup.
// manifest.json (version 2) is a JSON object; restore relies on these
// fields:
//   "version": 2,
//   "volumes": [{"volume": NAME, "image": FILE, "size": BYTES,
//                "xxh3_128": HEX, "shadow_id": ID, "device_object": PATH,
//                "data_bytes": BYTES}, ...]
// where FILE is a plain file name in the backup directory (no '/', not
// "." or ".."), BYTES the image's and the volume's size, and HEX the
// XXH3-128 of all the image's bytes (holes read as zeroes), 32 lowercase
// hex digits in xxHash's canonical (big-endian) order, as `xxhsum -H2`
// prints it. Version 1 manifests (no checksums) are refused by restore.
//
// Version 3 (written when the backup is of an image format; raw backups
// stay version 2) adds to each volume:
//   "format": "raw" | "qcow2" | "vhdx" | "vhd" | "vmdk",
//   "backing": NAME, "chain": [NAME, ...]   (incremental only)
// where NAME is the backing file as the image stores it (relative to the
// backup directory, as QEMU resolves it) and "chain" every image below this
// one, nearest first. For an image format, "size" is the guest-visible size and HEX
// the XXH3-128 of the guest-visible bytes (through the backing chain); the
// image file's own size is not recorded. The top level gains nothing new
// restore relies on; "shadows_kept" (already written) tells a later
// incremental whether the base's shadows still exist.
//
// Durability order of a backup (BackupDir): each image is written,
// fdatasync'ed and read back against its checksum; the directory is
// fsync'ed (image names) before the writers hear BackupComplete; backup.json
// and then manifest.json are each written to a temporary name, fsync'ed and
// renamed; the directory and then its parent are fsync'ed; only then may
// the shadows be released.
//
// Not thread-safe: one thread uses a BackupDir or a BackupSource.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <memory>
#include <string>
#include <vector>

#include "vss/api/backup.h"
#include "vss/formats/block_device.h"
#include "vss/formats/driver.h"
#include "vss/base/status.h"

namespace vss {

inline constexpr int kBackupManifestVersion = 2;
inline constexpr int kBackupManifestVersionImages = 3;

// Reports one piece of long work to a ProgressCallback (which may be
// empty): done == 0 on construction, each Add, `finished` on destruction.
class ProgressReporter {
 public:
  ProgressReporter(const ProgressCallback& callback, std::string what, uint64_t total);
  ~ProgressReporter();
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;
  void Add(uint64_t bytes);

 private:
  void Report(bool finished);
  const ProgressCallback& callback_;
  ProgressEvent event_;
};

// Reads [offset, offset + length) of `src` in pieces of at most
// `buf.size()` bytes (REQUIRES: not empty) and hands each to `each` with
// its offset, then reports its size to `progress`. Stops at the first
// error, of the read or of `each`.
Status ForEachPiece(BlockDevice& src, uint64_t offset, uint64_t length, std::span<uint8_t> buf,
                    ProgressReporter& progress,
                    const std::function<Status(uint64_t, std::span<uint8_t>)>& each);

// A backup directory being filled. On destruction without Commit(), every
// file this run made is removed, and the directory if this run created it.
class BackupDir {
 public:
  // Creates `dir` (0700) or takes an existing empty directory.
  // kAlreadyExists when it is not a directory or not empty; errors name
  // `--to DIR`. Long work is reported to `progress` (may be empty).
  static StatusOr<std::unique_ptr<BackupDir>> Create(const std::string& dir,
                                                     ProgressCallback progress);
  ~BackupDir();
  BackupDir(const BackupDir&) = delete;
  BackupDir& operator=(const BackupDir&) = delete;

  struct ImageResult {
    uint64_t size = 0;        // bytes, = the source's size
    uint64_t data_bytes = 0;  // non-zero bytes written
    std::string xxh3_128;     // hex, of every byte of the image
  };
  // Copies `src` into a new sparse image `name` (0600): every byte is
  // hashed, non-zero pieces are written, the file is fdatasync'ed and then
  // read back (after dropping its cached pages) and its checksum compared.
  // kCorruption when the read-back differs; I/O errors name the file.
  StatusOr<ImageResult> WriteImage(const std::string& name, BlockDevice& src,
                                   const std::string& what);
  // What an image of a format is made from: `extents` of the source (every
  // extent of it when empty) and, for an incremental, the backing file.
  struct ImagePlan {
    std::string format;  // a driver of the registry with a writer
    std::vector<Extent> extents;
    std::string backing;  // as stored in the image; empty: a full image
    DriverOptions options;  // the writer's (ImageWriterRequest::options)
  };
  // Writes `src` as a new image `name` (0600) per `plan` (the format
  // driver's ImageWriter, synced), then reads it back through that driver
  // with its chain and compares the XXH3-128 of its guest-visible bytes
  // with the source's. kCorruption when they differ; the driver's errors
  // when it cannot write or open the image.
  StatusOr<ImageResult> WriteFormatImage(const std::string& name,
                                         BlockDevice& src, const ImagePlan& plan,
                                         const std::string& what);
  // Writes `text` to `name` through a temporary file that is fsync'ed and
  // renamed over `name`. The name is durable after the next SyncNames().
  Status WriteDocument(const std::string& name, const std::string& text);
  // fsync on the backup directory: every name made in it so far (images,
  // renamed documents) becomes durable.
  Status SyncNames();
  // fsync on the directory that holds the backup directory: the backup
  // directory's own entry becomes durable.
  Status SyncParent();
  // Keeps everything: the backup is complete.
  void Commit() { committed_ = true; }
  const std::string& path() const { return dir_; }

 private:
  BackupDir(std::string dir, int fd, bool created, ProgressCallback progress)
      : dir_(std::move(dir)), fd_(fd), created_(created), progress_(std::move(progress)) {}
  std::string dir_;
  int fd_;
  bool created_;
  ProgressCallback progress_;
  bool committed_ = false;
  std::vector<std::string> names_;  // made by this run, to remove on failure
};

// One volume of a backup's manifest, checked: `image` is a plain file name.
struct ManifestVolume {
  std::string volume;
  std::string image;
  uint64_t size = 0;
  std::string xxh3_128;
  std::string format = "raw";  // "raw", or an image format (version 3)
  std::string backing;         // an incremental: as the image stores it
  std::vector<std::string> chain;
  std::string shadow_id;      // as recorded; may be empty
  bool shadows_kept = false;  // the manifest's "shadows_kept"
};

// A backup directory opened for restore. Files are opened relative to the
// directory's descriptor with O_NOFOLLOW, so nothing outside it is read.
class BackupSource {
 public:
  // kNotFound when `dir` is not a directory. Image checks are reported to
  // `progress` (may be empty).
  static StatusOr<std::unique_ptr<BackupSource>> Open(const std::string& dir,
                                                      ProgressCallback progress);
  ~BackupSource();
  BackupSource(const BackupSource&) = delete;
  BackupSource& operator=(const BackupSource&) = delete;

  // The text of a regular file `name` of the backup (at most 64 MiB).
  // kNotFound when missing; kCorruption for a symlink or another kind of
  // file.
  StatusOr<std::string> ReadDocument(const std::string& name);
  // The volumes of manifest.json, every field checked. kCorruption naming
  // DIR/manifest.json and what is wrong; kUnsupported for a version 1
  // backup (no checksums).
  StatusOr<std::vector<ManifestVolume>> ReadManifest();
  // Opens the image of `v` read-only, checks that it is a regular file of
  // v.size bytes and that its bytes hash to v.xxh3_128. Each failure is one
  // kCorruption naming the image file and what is wrong; the returned
  // device reads the very file that was checked. An image of a format is
  // opened through the registry's driver (with its backing chain): its
  // guest size must be v.size, its backing file v.backing, and its
  // guest-visible bytes must hash to v.xxh3_128.
  StatusOr<std::unique_ptr<BlockDevice>> OpenVerifiedImage(
      const ManifestVolume& v);
  // DIR/name, for messages.
  std::string PathOf(const std::string& name) const {
    return dir_ + "/" + name;
  }

 private:
  StatusOr<std::unique_ptr<BlockDevice>> OpenVerifiedFormatImage(
      const ManifestVolume& v);
  BackupSource(std::string dir, int fd, ProgressCallback progress)
      : dir_(std::move(dir)), fd_(fd), progress_(std::move(progress)) {}
  std::string dir_;
  int fd_;
  ProgressCallback progress_;
};


}  // namespace vss
