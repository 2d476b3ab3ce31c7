// qcow2::Image: a qcow2 file (versions 2 and 3) as the guest's BlockDevice.
//
// The image owns its File and its backing device (opened through a
// BackingOpener given by the caller, so that tests run on MemFileSystem and
// the driver on POSIX files). Reads follow L1 -> L2 -> data cluster: normal,
// zero (both the v3 zero flag and extended-L2 zero subclusters), compressed
// (zlib raw deflate or zstd), unallocated (read from the backing device, or
// zeroes). Writes allocate clusters through the refcount tables, copy on
// write clusters and L2 tables that internal snapshots share (no "copied"
// bit), copy the untouched part of a cluster from the backing device, and
// rewrite compressed clusters as normal ones.
//
// Crash safety (durability order): refcount increments are written through
// at once; L2 tables are written back, and L1 entries after them, only by
// the metadata flush (Flush(), or evicting a changed table), which runs:
//   1. Sync: data and raised refcounts become durable before any L2 entry
//      names them (so a cluster is never referenced with refcount 0, and the
//      copied part of a copy-on-write cluster is on disk before the entry);
//   2. write the changed L2 tables; Sync (a new table before the L1 entry);
//   3. write the changed L1 entries; Sync;
//   4. lower the refcounts of clusters the new entries no longer name (the
//      entries are durable, so a crash leaves at worst a leak); Sync.
// A new refcount block is written and synced before the refcount table
// entry that names it; a grown refcount table before the header names it.
// The dirty bit is never set (refcounts are always kept exact), so images
// with lazy_refcounts are written as without; a dirty image is opened
// read-only only (its refcounts need a repair first).
//
// Metadata caches: L2 tables and refcount blocks are kept in two caches of
// cache_bytes each (least recently used first out).
//
// Thread safety: every operation holds one mutex; any number of threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "../extent_builder.h"
#include "qcow2_layout.h"
#include "vss/base/file.h"
#include "vss/formats/block_device.h"

namespace vss::qcow2 {

// Opens the backing file `name` (as the header stores it) of `format`
// ("qcow2", "raw" or empty: probe), read-only. Errors name the file.
using BackingOpener = std::function<StatusOr<std::unique_ptr<BlockDevice>>(
    const std::string& name, const std::string& format)>;

inline constexpr uint64_t kDefaultCacheBytes = 2ull << 20;

struct ImageOptions {
  bool writable = true;
  // Bytes of each metadata cache (L2 tables, refcount blocks); at least one
  // table of each is always kept.
  uint64_t cache_bytes = kDefaultCacheBytes;
  // Called when the header names a backing file; null: a backing file is
  // refused (kUnsupported naming it).
  BackingOpener open_backing;
  // The backing file is named but not opened (describing an image whose
  // chain may be broken): unallocated clusters then read as zeroes.
  // REQUIRES: !writable.
  bool ignore_backing = false;
};

// A table cached from the file (one cluster: an L2 table or a refcount
// block).
struct CachedTable {
  std::vector<uint8_t> bytes;
  bool dirty = false;  // L2 only: changed since written back
  uint64_t last_use = 0;
};

// What CreateImage() makes: a version 3 (compat 1.1) image.
struct CreateOptions {
  uint64_t size = 0;  // guest bytes, > 0
  uint32_t cluster_bits = 16;
  uint8_t compression_type = kCompressionZlib;
  bool extended_l2 = false;
  uint32_t refcount_order = 4;
  std::string backing_file;    // as stored in the header
  std::string backing_format;  // "qcow2", "raw" or empty
  bool preallocate_metadata = false;
};

class Image;

// Writes a new, empty image into `file` (which must be empty), syncs it and
// opens it writable with `image_options`. kInvalidArgument for a size 0, a
// cluster size or refcount order out of range, extended L2 with clusters
// under 16 KiB, or a backing file with metadata preallocation.
[[nodiscard]] StatusOr<std::unique_ptr<Image>> CreateImage(
    std::unique_ptr<File> file, const std::string& name,
    const CreateOptions& options, ImageOptions image_options);

class Image final : public BlockDevice {
 public:
  // Opens the qcow2 image in `file`; `name` is its name in messages (the
  // path). kCorruption for a damaged header or table, kUnsupported for a
  // feature this build does not handle (SupportProblem()), either naming
  // `name`. A read-only image writes no byte of the file, ever.
  static StatusOr<std::unique_ptr<Image>> Open(std::unique_ptr<File> file,
                                               const std::string& name,
                                               ImageOptions options);
  // Writes back changed metadata (as Flush()); errors are dropped (call
  // Flush() first to see them).
  ~Image() override;

  const Header& header() const { return header_; }
  BlockDevice* backing() const { return backing_.get(); }
  // Bytes the file takes on its medium.
  [[nodiscard]] StatusOr<uint64_t> AllocatedBytes();

  // Makes every cluster of the guest range allocated with normal clusters
  // (preallocation=metadata: entries point at clusters that read as
  // zeroes). REQUIRES: a fresh image without backing file.
  [[nodiscard]] Status PreallocateMetadata();

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override;
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override;
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override;
  Status DoDiscard(uint64_t offset, uint64_t length) override;
  Status DoFlush() override;
  // Makes every cluster the range touches one this image owns (normal,
  // "copied", every subcluster allocated) holding what the guest reads
  // there now, so that a later write inside the range is made in place and
  // allocates nothing: it cannot fail for lack of space. A cluster it owns
  // already costs a lookup; any other is written once more (the backing
  // file's, a compressed or shared cluster's contents, or zeroes).
  Status DoAllocate(uint64_t offset, uint64_t length) override;
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override;

 private:
  // What an L2 entry says about one guest cluster (or subcluster).
  enum class Kind { kUnallocated, kZero, kNormal, kCompressed };
  struct Lookup {
    Kind kind = Kind::kUnallocated;
    uint64_t host = 0;    // kNormal: host offset of the cluster
    uint64_t entry = 0;   // the raw first word
    uint64_t bitmap = 0;  // extended L2: the second word
    bool copied = false;  // kNormal: may be written in place
  };

  Image(std::unique_ptr<File> file, std::string name, Header header,
        ImageOptions options);
  Status Load();
  Status LoadRefcountTable();

  // --- mapping (qcow2_image.cc) ---
  // The L2 entry of guest cluster `gc` (kUnallocated if no L2 table).
  StatusOr<Lookup> Find(uint64_t gc);
  // Kind of the subcluster `sc` of `l` (extended L2), or of the cluster.
  Kind SubKind(const Lookup& l, uint32_t sc) const;
  StatusOr<CachedTable*> GetL2(uint64_t offset);
  StatusOr<CachedTable*> GetTable(
      std::unordered_map<uint64_t, CachedTable>& cache, uint64_t offset,
      const char* what);
  Status MaybeEvict();
  // Calls fn(done, n) for consecutive pieces [offset+done, +n) of the
  // range that do not cross a multiple of `unit` (a cluster, or the guest
  // range of one L2 table), evicting from the caches before the first
  // piece and each piece that starts an L2 table's range (no table pointer
  // is held then); stops at the first error.
  Status ForEachPiece(uint64_t offset, uint64_t length, uint64_t unit,
                      const std::function<Status(uint64_t, uint64_t)>& fn);
  uint64_t table_cover() const { return cluster_size() * header_.l2_entries(); }
  Status ReadHost(uint64_t host, std::span<uint8_t> buf);
  Status ReadBacking(uint64_t offset, std::span<uint8_t> buf);
  Status ReadCompressed(uint64_t entry, std::span<uint8_t> cluster);
  // Reads the guest bytes [offset, offset+buf.size()) inside one cluster.
  Status ReadInCluster(uint64_t offset, std::span<uint8_t> buf);
  Status ReadLocked(uint64_t offset, std::span<uint8_t> buf);
  Status ExtentsInCluster(uint64_t offset, uint64_t length, ExtentBuilder* out);

  // --- refcounts and allocation (qcow2_alloc.cc) ---
  StatusOr<uint64_t> Refcount(uint64_t cluster);
  // Sets the refcounts of clusters [first, first+n) to `value`, writing
  // them through. REQUIRES: their refcount blocks exist.
  Status SetRefcounts(uint64_t first, uint64_t n, uint64_t value);
  // The most clusters one Allocate() may ask for: half a refcount block's
  // range, so that a range given a new block (in its first cluster) still
  // holds the run.
  uint64_t MaxRun() const {
    return std::max<uint64_t>(1, header_.refcount_block_entries() / 2);
  }
  // Allocates n (at most MaxRun()) contiguous free clusters (refcount 1,
  // written through, not synced); returns the host offset of the first.
  StatusOr<uint64_t> Allocate(uint64_t n);
  StatusOr<uint64_t> FindFree(uint64_t n);
  Status CreateRefBlock(uint64_t table_index);
  Status GrowRefTable(uint64_t table_index);
  // Lowers by one the refcount of every cluster overlapping [host,
  // host+bytes); punches out clusters that reach zero.
  Status Release(uint64_t host, uint64_t bytes);
  // The durability sequence of the class comment.
  Status FlushMetadata();

  // --- writes (qcow2_write.cc) ---
  Status WriteChunk(uint64_t offset, std::span<const uint8_t> buf);
  Status WriteCluster(uint64_t offset, std::span<const uint8_t> buf);
  Status WriteFreshRun(uint64_t gc, uint64_t n, const uint8_t* data);
  Status WriteExtendedCluster(uint64_t offset, std::span<const uint8_t> buf,
                              const Lookup& l);
  // The L2 table of guest cluster `gc` made writable (allocated or copied
  // on write); returns it and the entry's byte index.
  StatusOr<std::pair<CachedTable*, size_t>> WritableL2(uint64_t gc);
  // Replaces the entry of `gc`, releasing (at the next metadata flush) the
  // host clusters the old entry named and the new one does not.
  Status SetEntry(uint64_t gc, uint64_t entry, uint64_t bitmap);
  void ReleaseLater(const Lookup& old, uint64_t new_host);
  // WriteZeroes and Discard alike: the range reads as zeroes after.
  Status ZeroRange(uint64_t offset, uint64_t length);
  // [pos, pos+n) inside one cluster.
  Status ZeroCluster(uint64_t pos, uint64_t n);
  // The bitmap of an extended L2 entry whose cluster reads as zeroes.
  uint64_t FullZeroEntryBitmap() const;

  uint64_t cluster_size() const { return header_.cluster_size(); }

  std::mutex mu_;
  std::unique_ptr<File> file_;
  Header header_;
  ImageOptions options_;
  std::unique_ptr<BlockDevice> backing_;
  std::vector<uint64_t> l1_;
  std::set<uint64_t> dirty_l1_;  // indexes of changed L1 entries
  std::vector<uint64_t> reftable_;
  // The end of the host space: the file's size at open rounded up to a
  // cluster, raised by each allocation. An entry naming a cluster at or
  // past it is damage (kCorruption), never followed by a write.
  uint64_t host_end_ = 0;
  std::unordered_map<uint64_t, CachedTable> l2_cache_;
  std::unordered_map<uint64_t, CachedTable> ref_cache_;
  uint64_t use_clock_ = 0;
  uint64_t free_hint_ = 0;  // clusters below are not searched first
  // Host ranges to release once the metadata naming them no more is
  // durable (step 4 of the flush).
  std::vector<std::pair<uint64_t, uint64_t>> pending_release_;
  // The last compressed cluster read (its L2 entry and bytes), for reads
  // smaller than a cluster; dropped when any cluster is freed.
  uint64_t inflated_entry_ = 0;
  std::vector<uint8_t> inflated_;
};

}  // namespace vss::qcow2
