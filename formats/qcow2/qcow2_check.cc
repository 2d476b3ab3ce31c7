#include "qcow2_check.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <type_traits>
#include <vector>

namespace vss::qcow2 {
namespace {

// QEMU's limits on the snapshot table (qcow2.txt leaves them open).
constexpr uint64_t kMaxSnapshots = 65536;
constexpr uint64_t kMaxSnapshotTableBytes = 64ull << 20;
// The fixed part of a snapshot table entry: l1_table_offset (8), l1_size
// (4), id_str_size (2), name_size (2), date_sec (4), date_nsec (4),
// vm_clock_nsec (8), vm_state_size (4), extra_data_size (4).
constexpr uint64_t kSnapshotFixedBytes = 40;
// The bitmaps header extension: nb_bitmaps (4), reserved (4),
// bitmap_directory_size (8), bitmap_directory_offset (8).
constexpr uint64_t kBitmapsExtensionBytes = 24;
// The fixed part of a bitmap directory entry: bitmap_table_offset (8),
// bitmap_table_size (4), flags (4), type (1), granularity_bits (1),
// name_size (2), extra_data_size (4).
constexpr uint64_t kBitmapEntryFixedBytes = 24;
constexpr uint64_t kMaxBitmapDirectoryBytes = 64ull << 20;
// Reserved bits, which must be zero: of an L1 entry (0-8, 56-62) and of a
// standard (not compressed) L2 entry (1-8, 56-61); those of a refcount
// table entry (0-8) are outside kRefTableOffsetMask.
constexpr uint64_t kL1Reserved = 0x7f000000000001ffull;
constexpr uint64_t kL2StandardReserved = 0x3f000000000001feull;
constexpr uint64_t kNoBlock = std::numeric_limits<uint64_t>::max();

std::string Hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof(b), "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

// What a repair can do about an error.
enum class Fix { kNone, kRefcount, kCopied };

// One L2 table as the L1 tables reach it.
struct L2Ref {
  uint32_t refs = 0;      // L1 entries (of all L1 tables) pointing to it
  bool readable = false;  // within the file
};

// A snapshot's L1 table as the snapshot table names it.
struct SnapshotL1 {
  uint64_t offset = 0;
  uint64_t entries = 0;
};

class Checker {
 public:
  Checker(File& file, const CheckOptions& options)
      : file_(file), options_(options) {}

  // Reads the header and sizes the working set.
  Status Load();
  // The whole check: the walk, the refcount comparison, the copied bits.
  Status Run();
  // Rewrites refcounts and copied bits to match the walk and clears the
  // header's dirty and corrupt bits, each step made durable before the next.
  Status Repair();

  // The result, with the line for errors beyond max_error_lines.
  ImageCheckResult TakeResult();
  // How many errors a repair cannot fix, and the first of them.
  uint64_t unfixable() const { return unfixable_; }
  const std::string& first_unfixable() const { return first_unfixable_; }
  bool header_flags_set() const {
    return (h_.incompatible_features & (kIncompatDirty | kIncompatCorrupt)) !=
           0;
  }

 private:
  void Error(Fix fix, std::string line);
  // `what` names the range in an error: a string, or a callable making it
  // (so that the walk builds no text for the many ranges without errors).
  template <typename Describe>
  bool Use(uint64_t offset, uint64_t bytes, uint32_t times, bool metadata,
           const Describe& what);
  StatusOr<std::vector<uint8_t>> Read(uint64_t offset, uint64_t bytes);
  Status LoadRefcountTable();
  Status LoadL1(SnapshotL1 l1, bool active, const std::string& what);
  Status LoadSnapshots();
  Status LoadBitmaps();
  Status LoadBitmapTable(uint64_t index, uint64_t offset, uint64_t entries);
  StatusOr<std::vector<SnapshotL1>> ParseSnapshotTable();
  Status WalkL2Tables();
  void UseL2Entry(uint64_t l2_offset, uint64_t index, uint64_t entry,
                  uint64_t bitmap, uint32_t refs);
  Status CompareRefcounts();
  Status CheckCopied(bool fix);
  Status CheckCopiedL2(uint64_t l2_offset, bool fix);
  bool RefcountIsOne(uint64_t offset, bool fix) const;
  Status FixCopied(uint64_t entry_offset, uint64_t entry);
  StatusOr<uint64_t> StoredRefcount(uint64_t cluster);
  Status RewriteRefcounts(bool raise);
  StatusOr<std::map<uint64_t, uint64_t>> PlaceMissingBlocks();
  Status WriteNewBlocks(const std::map<uint64_t, uint64_t>& placed);
  Status LinkNewBlocks(const std::map<uint64_t, uint64_t>& placed);
  Status ClearHeaderFlags();

  File& file_;
  const CheckOptions& options_;
  Header h_;
  uint64_t file_size_ = 0;
  uint64_t cs_ = 0;         // cluster size
  uint64_t nclusters_ = 0;  // host clusters of the file, the last maybe partial
  std::vector<uint32_t> uses_;       // per host cluster, saturating
  std::vector<bool> metadata_;       // per host cluster
  std::vector<bool> stored_one_;     // per host cluster: a stored refcount of 1
  std::vector<uint64_t> refblocks_;  // per refcount table entry; 0: none
  std::map<uint64_t, L2Ref> l2_;
  std::vector<uint64_t> active_l1_;
  uint64_t cached_block_ = kNoBlock;
  std::vector<uint8_t> cache_;
  ImageCheckResult result_;
  uint64_t errors_ = 0;
  uint64_t unfixable_ = 0;
  std::string first_unfixable_;
};

void Checker::Error(Fix fix, std::string line) {
  ++errors_;
  if (fix == Fix::kNone && unfixable_++ == 0) first_unfixable_ = line;
  if (result_.errors.size() < options_.max_error_lines) {
    result_.errors.push_back(std::move(line));
  }
}

ImageCheckResult Checker::TakeResult() {
  if (errors_ > result_.errors.size()) {
    result_.errors.push_back(std::to_string(errors_ - result_.errors.size()) +
                             " more errors not listed");
  }
  return std::move(result_);
}

StatusOr<std::vector<uint8_t>> Checker::Read(uint64_t offset, uint64_t bytes) {
  std::vector<uint8_t> buf(bytes, 0);
  uint64_t done = 0;
  while (done < bytes) {
    VSS_ASSIGN_OR_RETURN(
        size_t n, file_.ReadAt(offset + done, std::span(buf).subspan(done)));
    if (n == 0) break;  // past the end: reads as zeroes
    done += n;
  }
  return buf;
}

// Counts `times` uses of each cluster that [offset, offset + bytes)
// touches. False, with an error, when the range lies past the file's last
// cluster or (for metadata) overlaps metadata counted before: the caller
// then does not parse it, so that no table is parsed twice. Metadata stops
// being counted at the first overlapping cluster, so that all the
// metadata ranges of a file cost at most one step per cluster plus one per
// range, however they overlap.
template <typename Describe>
bool Checker::Use(uint64_t offset, uint64_t bytes, uint32_t times,
                  bool metadata, const Describe& describe) {
  if (bytes == 0) return true;
  auto what = [&]() -> std::string {
    if constexpr (std::is_invocable_v<Describe>) {
      return describe();
    } else {
      return describe;
    }
  };
  const uint64_t end = nclusters_ * cs_;
  if (offset >= end || bytes > end - offset) {
    Error(Fix::kNone,
          what() + " at " + Hex(offset) + " (" + std::to_string(bytes) +
              " bytes) lies past the end of the file at " + Hex(file_size_));
    return false;
  }
  const uint64_t first = offset >> h_.cluster_bits;
  const uint64_t last = (offset + bytes - 1) >> h_.cluster_bits;
  bool overlap = false;
  for (uint64_t c = first; c <= last; ++c) {
    if (metadata_[c]) {
      overlap = true;
      if (metadata) break;
    }
    uses_[c] = static_cast<uint32_t>(
        std::min<uint64_t>(uint64_t{uses_[c]} + times, UINT32_MAX));
    if (metadata) metadata_[c] = true;
  }
  if (overlap) {
    Error(Fix::kNone,
          what() + " at " + Hex(offset) + " overlaps other metadata");
  }
  return !overlap;
}

Status Checker::Load() {
  VSS_ASSIGN_OR_RETURN(file_size_, file_.Size());
  const uint64_t head_bytes =
      std::min<uint64_t>(file_size_, 1ull << kMaxClusterBits);
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> head, Read(0, head_bytes));
  StatusOr<Header> h = ParseHeader(head, file_size_);
  if (!h.ok())
    return CorruptionError(options_.name + ": " + h.status().message());
  h_ = *std::move(h);
  if (h_.incompatible_features & kIncompatExternalData) {
    return UnsupportedError(options_.name +
                            ": the data clusters lie in an external data file");
  }
  if (h_.crypt_method != 0) {
    return UnsupportedError(options_.name + ": an encrypted image");
  }
  cs_ = h_.cluster_size();
  nclusters_ = (file_size_ + cs_ - 1) / cs_;
  if (nclusters_ > options_.max_clusters) {
    return UnsupportedError(options_.name + ": " + std::to_string(nclusters_) +
                            " host clusters, above the checker's limit of " +
                            std::to_string(options_.max_clusters));
  }
  uses_.assign(nclusters_, 0);
  metadata_.assign(nclusters_, false);
  stored_one_.assign(nclusters_, false);
  return OkStatus();
}

Status Checker::LoadRefcountTable() {
  const uint64_t bytes = uint64_t{h_.refcount_table_clusters} * cs_;
  refblocks_.assign(bytes / 8, 0);
  if (!Use(h_.refcount_table_offset, bytes, 1, true, "the refcount table")) {
    return OkStatus();
  }
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> table,
                       Read(h_.refcount_table_offset, bytes));
  for (uint64_t i = 0; i < refblocks_.size(); ++i) {
    const uint64_t entry = Be64(&table[8 * i]);
    const uint64_t off = entry & kRefTableOffsetMask;
    const std::string what = "refcount block " + std::to_string(i);
    if (entry & ~kRefTableOffsetMask) {
      Error(Fix::kNone, "refcount table entry " + std::to_string(i) +
                            ": reserved bits set (" + Hex(entry) + ")");
      continue;
    }
    if (off == 0) continue;
    if (off & (cs_ - 1)) {
      Error(Fix::kNone, what + " at " + Hex(off) + " is not cluster-aligned");
      continue;
    }
    if (Use(off, cs_, 1, true, what)) refblocks_[i] = off;
  }
  return OkStatus();
}

Status Checker::LoadL1(SnapshotL1 l1, bool active, const std::string& what) {
  if (l1.entries == 0) return OkStatus();
  if (l1.entries * 8 > kMaxL1Bytes) {
    Error(Fix::kNone, what + " has " + std::to_string(l1.entries) +
                          " entries, above the 32 MiB limit");
    return OkStatus();
  }
  if (l1.offset & (cs_ - 1)) {
    Error(Fix::kNone,
          what + " at " + Hex(l1.offset) + " is not cluster-aligned");
    return OkStatus();
  }
  if (!Use(l1.offset, l1.entries * 8, 1, true, what)) return OkStatus();
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> table,
                       Read(l1.offset, l1.entries * 8));
  for (uint64_t i = 0; i < l1.entries; ++i) {
    const uint64_t entry = Be64(&table[8 * i]);
    if (active) active_l1_.push_back(entry);
    if (entry & kL1Reserved) {
      Error(Fix::kNone, what + " entry " + std::to_string(i) +
                            ": reserved bits set (" + Hex(entry) + ")");
    }
    const uint64_t off = entry & kL1OffsetMask;
    if (off == 0) continue;
    if (off & (cs_ - 1)) {
      Error(Fix::kNone, what + " entry " + std::to_string(i) +
                            ": L2 table offset " + Hex(off) +
                            " is not cluster-aligned");
      continue;
    }
    L2Ref& ref = l2_[off];
    ref.refs = std::min<uint32_t>(ref.refs, UINT32_MAX - 1) + 1;
  }
  return OkStatus();
}

// The snapshots' L1 tables, as far as the table can be parsed (errors for
// the rest).
StatusOr<std::vector<SnapshotL1>> Checker::ParseSnapshotTable() {
  std::vector<SnapshotL1> out;
  const uint64_t off = h_.snapshots_offset;
  if (h_.nb_snapshots > kMaxSnapshots) {
    Error(Fix::kNone, "the header counts " + std::to_string(h_.nb_snapshots) +
                          " snapshots, above the limit of 65536");
    return out;
  }
  if (off >= file_size_) {
    Error(Fix::kNone, "the snapshot table at " + Hex(off) +
                          " lies past the end of the file at " +
                          Hex(file_size_));
    return out;
  }
  const uint64_t avail = std::min(file_size_ - off, kMaxSnapshotTableBytes);
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> t, Read(off, avail));
  uint64_t pos = 0;
  for (uint32_t s = 0; s < h_.nb_snapshots; ++s) {
    uint64_t end = pos + kSnapshotFixedBytes;
    if (end <= avail) {
      end += uint64_t{Be32(&t[pos + 36])} + Be16(&t[pos + 12]) +
             Be16(&t[pos + 14]);
    }
    if (end > avail) {
      Error(Fix::kNone,
            "snapshot table entry " + std::to_string(s) +
                " runs past the end of the file or the 64 MiB limit");
      break;
    }
    out.push_back({Be64(&t[pos]), Be32(&t[pos + 8])});
    pos = (end + 7) & ~uint64_t{7};
  }
  Use(off, std::min(pos, avail), 1, true, "the snapshot table");
  return out;
}

Status Checker::LoadSnapshots() {
  if (h_.nb_snapshots == 0) return OkStatus();
  VSS_ASSIGN_OR_RETURN(std::vector<SnapshotL1> l1s, ParseSnapshotTable());
  for (size_t i = 0; i < l1s.size(); ++i) {
    VSS_RETURN_IF_ERROR(
        LoadL1(l1s[i], false, "the L1 table of snapshot " + std::to_string(i)));
  }
  return OkStatus();
}

Status Checker::LoadBitmapTable(uint64_t index, uint64_t offset,
                                uint64_t entries) {
  const std::string what = "the table of bitmap " + std::to_string(index);
  if (offset & (cs_ - 1)) {
    Error(Fix::kNone, what + " at " + Hex(offset) + " is not cluster-aligned");
    return OkStatus();
  }
  if (!Use(offset, entries * 8, 1, true, what)) return OkStatus();
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> table, Read(offset, entries * 8));
  for (uint64_t i = 0; i < entries; ++i) {
    const uint64_t off = Be64(&table[8 * i]) & kL1OffsetMask;
    if (off == 0) continue;
    auto place = [&] { return what + " entry " + std::to_string(i); };
    if (off & (cs_ - 1)) {
      Error(Fix::kNone,
            place() + ": data offset " + Hex(off) + " is not cluster-aligned");
      continue;
    }
    Use(off, cs_, 1, true, [&] { return place() + ": bitmap data"; });
  }
  return OkStatus();
}

// The persistent bitmaps, when the autoclear bit says they are valid (else
// their clusters are leaks, as for QEMU).
Status Checker::LoadBitmaps() {
  if (!(h_.autoclear_features & kAutoclearBitmaps)) return OkStatus();
  for (const HeaderExtension& e : h_.extensions) {
    if (e.type != kExtBitmaps) continue;
    if (e.data.size() < kBitmapsExtensionBytes) {
      Error(Fix::kNone,
            "the bitmaps header extension is shorter than 24 bytes");
      return OkStatus();
    }
    const uint32_t count = Be32(&e.data[0]);
    const uint64_t bytes = Be64(&e.data[8]);
    const uint64_t offset = Be64(&e.data[16]);
    if ((offset & (cs_ - 1)) || bytes > kMaxBitmapDirectoryBytes) {
      Error(Fix::kNone, "the bitmap directory at " + Hex(offset) + " of " +
                            std::to_string(bytes) +
                            " bytes is unaligned or too large");
      return OkStatus();
    }
    if (!Use(offset, bytes, 1, true, "the bitmap directory")) return OkStatus();
    VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> dir, Read(offset, bytes));
    uint64_t pos = 0;
    for (uint32_t i = 0; i < count; ++i) {
      uint64_t end = pos + kBitmapEntryFixedBytes;
      if (end <= bytes)
        end += uint64_t{Be32(&dir[pos + 20])} + Be16(&dir[pos + 18]);
      if (end > bytes) {
        Error(Fix::kNone, "bitmap directory entry " + std::to_string(i) +
                              " runs past the end of the directory");
        break;
      }
      VSS_RETURN_IF_ERROR(
          LoadBitmapTable(i, Be64(&dir[pos]), Be32(&dir[pos + 8])));
      pos = (end + 7) & ~uint64_t{7};
    }
  }
  return OkStatus();
}

void Checker::UseL2Entry(uint64_t l2_offset, uint64_t index, uint64_t entry,
                         uint64_t bitmap, uint32_t refs) {
  auto place = [&] {
    return "L2 table " + Hex(l2_offset) + " entry " + std::to_string(index);
  };
  if (entry & kL2Compressed) {
    if (entry & kCopied) {
      Error(Fix::kNone,
            place() + ": a compressed cluster with the copied bit set");
    }
    if (h_.extended_l2() && bitmap != 0) {
      Error(Fix::kNone,
            place() + ": a compressed cluster with a subcluster bitmap");
    }
    const CompressedRef c = DecodeCompressed(entry, h_.cluster_bits);
    Use(c.host_offset, c.max_bytes, refs, false,
        [&] { return place() + ": compressed data"; });
    return;
  }
  if (entry & kL2StandardReserved) {
    Error(Fix::kNone, place() + ": reserved bits set (" + Hex(entry) + ")");
  }
  const uint64_t off = entry & kL2OffsetMask;
  if (h_.extended_l2()) {
    const uint32_t alloc = static_cast<uint32_t>(bitmap);
    const uint32_t zero = static_cast<uint32_t>(bitmap >> 32);
    if (alloc & zero) {
      Error(Fix::kNone,
            place() + ": subclusters marked both allocated and zero");
    }
    if (off == 0 && alloc != 0) {
      Error(Fix::kNone,
            place() + ": allocated subclusters in an unallocated cluster");
    }
  }
  if (off == 0) return;
  if (off & (cs_ - 1)) {
    Error(Fix::kNone,
          place() + ": data offset " + Hex(off) + " is not cluster-aligned");
    return;
  }
  Use(off, cs_, refs, false, [&] { return place() + ": data cluster"; });
}

Status Checker::WalkL2Tables() {
  // Every L2 table is metadata before any data cluster is counted, so that
  // a data cluster on an L2 table is an overlap whatever the order. An L2
  // table that overlaps other metadata is still walked, as by qemu-img:
  // each distinct one once, so that costs at most the file's size.
  for (auto& [off, ref] : l2_) {
    Use(off, cs_, ref.refs, true, "L2 table");
    ref.readable = off < nclusters_ * cs_;
  }
  const uint64_t esz = h_.l2_entry_bytes();
  for (const auto& [off, ref] : l2_) {
    if (!ref.readable) continue;
    VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> t, Read(off, cs_));
    for (uint64_t i = 0; i < h_.l2_entries(); ++i) {
      const uint8_t* p = &t[i * esz];
      UseL2Entry(off, i, Be64(p), esz == 16 ? Be64(p + 8) : 0, ref.refs);
    }
  }
  return OkStatus();
}

StatusOr<uint64_t> Checker::StoredRefcount(uint64_t cluster) {
  const uint64_t per_block = h_.refcount_block_entries();
  const uint64_t b = cluster / per_block;
  if (b >= refblocks_.size() || refblocks_[b] == 0) return 0;
  if (cached_block_ != b) {
    VSS_ASSIGN_OR_RETURN(cache_, Read(refblocks_[b], cs_));
    cached_block_ = b;
  }
  return GetRefcount(cache_, cluster % per_block, h_.refcount_order);
}

Status Checker::CompareRefcounts() {
  const uint64_t max_refcount =
      h_.refcount_order == 6 ? UINT64_MAX : (1ull << h_.refcount_bits()) - 1;
  const uint64_t per_block = h_.refcount_block_entries();
  for (uint64_t c = 0; c < nclusters_; ++c) {
    VSS_ASSIGN_OR_RETURN(uint64_t stored, StoredRefcount(c));
    stored_one_[c] = stored == 1;
    const uint64_t uses = uses_[c];
    if (stored == uses) continue;
    if (stored > uses) {
      ++result_.leaks;
      result_.leaked_bytes += cs_;
      continue;
    }
    const uint64_t b = c / per_block;
    std::string line = "cluster " + std::to_string(c) + " at " + Hex(c * cs_) +
                       ": refcount " + std::to_string(stored) + ", used " +
                       std::to_string(uses) + " times";
    if (b >= refblocks_.size()) {
      Error(Fix::kNone, line + " (beyond what the refcount table covers)");
    } else if (uses > max_refcount) {
      Error(Fix::kNone, line + " (above the largest refcount, " +
                            std::to_string(max_refcount) + ")");
    } else if (refblocks_[b] == 0) {
      Error(Fix::kRefcount, line + " (its refcount block is missing)");
    } else {
      Error(Fix::kRefcount, line);
    }
  }
  result_.checked_units = nclusters_;
  return OkStatus();
}

// Whether the cluster at `offset` has a refcount of exactly 1: the stored
// one, or with `fix` (after the refcounts were rewritten to the walk's
// counts) the walk's. A cluster past the end of the file counts as 0.
bool Checker::RefcountIsOne(uint64_t offset, bool fix) const {
  const uint64_t c = offset >> h_.cluster_bits;
  if (c >= nclusters_) return false;
  return fix ? uses_[c] == 1 : stored_one_[c];
}

// Rewrites an entry with its copied bit flipped.
Status Checker::FixCopied(uint64_t entry_offset, uint64_t entry) {
  uint8_t b[8];
  PutBe64(b, entry ^ kCopied);
  return file_.WriteAt(entry_offset, b);
}

// An entry's copied bit must be set exactly when the cluster it points to
// has a refcount of 1. With `fix`, a wrong bit is rewritten.
Status Checker::CheckCopiedL2(uint64_t l2_offset, bool fix) {
  const uint64_t esz = h_.l2_entry_bytes();
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> t, Read(l2_offset, cs_));
  for (uint64_t i = 0; i < h_.l2_entries(); ++i) {
    const uint64_t entry = Be64(&t[i * esz]);
    const uint64_t off = entry & kL2OffsetMask;
    if ((entry & kL2Compressed) || off == 0 || (off & (cs_ - 1))) continue;
    const bool one = RefcountIsOne(off, fix);
    if (one == ((entry & kCopied) != 0)) continue;
    if (fix) {
      VSS_RETURN_IF_ERROR(FixCopied(l2_offset + i * esz, entry));
    } else {
      Error(Fix::kCopied,
            "L2 table " + Hex(l2_offset) + " entry " + std::to_string(i) +
                (one ? ": copied bit clear for a data cluster of refcount 1"
                     : ": copied bit set for a data cluster whose refcount "
                       "is not 1"));
    }
  }
  return OkStatus();
}

Status Checker::CheckCopied(bool fix) {
  std::set<uint64_t> done;
  for (uint64_t i = 0; i < active_l1_.size(); ++i) {
    const uint64_t entry = active_l1_[i];
    const uint64_t off = entry & kL1OffsetMask;
    auto it = l2_.find(off);
    if (it == l2_.end() || !it->second.readable) continue;
    const bool one = RefcountIsOne(off, fix);
    if (one != ((entry & kCopied) != 0)) {
      if (fix) {
        VSS_RETURN_IF_ERROR(FixCopied(h_.l1_table_offset + 8 * i, entry));
      } else {
        Error(Fix::kCopied,
              "L1 entry " + std::to_string(i) +
                  (one ? ": copied bit clear for an L2 table of refcount 1"
                       : ": copied bit set for an L2 table whose refcount "
                         "is not 1"));
      }
    }
    if (done.insert(off).second) VSS_RETURN_IF_ERROR(CheckCopiedL2(off, fix));
  }
  return OkStatus();
}

Status Checker::Run() {
  VSS_RETURN_IF_ERROR(Load());
  Use(0, std::min(cs_, file_size_), 1, true, "the header");
  VSS_RETURN_IF_ERROR(LoadRefcountTable());
  VSS_RETURN_IF_ERROR(
      LoadL1({h_.l1_table_offset, h_.l1_size}, true, "the L1 table"));
  VSS_RETURN_IF_ERROR(LoadSnapshots());
  VSS_RETURN_IF_ERROR(LoadBitmaps());
  VSS_RETURN_IF_ERROR(WalkL2Tables());
  VSS_RETURN_IF_ERROR(CompareRefcounts());
  return CheckCopied(false);
}

// Sets each refcount that differs from the walk's count to that count:
// with `raise` only those below it, else only those above it.
Status Checker::RewriteRefcounts(bool raise) {
  const uint64_t per_block = h_.refcount_block_entries();
  for (uint64_t b = 0; b < refblocks_.size(); ++b) {
    if (refblocks_[b] == 0) continue;
    const uint64_t first = b * per_block;
    if (first >= nclusters_) continue;
    VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> block, Read(refblocks_[b], cs_));
    bool changed = false;
    for (uint64_t j = 0; j < per_block && first + j < nclusters_; ++j) {
      const uint64_t stored = GetRefcount(block, j, h_.refcount_order);
      const uint64_t want = uses_[first + j];
      if (stored == want || (want > stored) != raise) continue;
      SetRefcount(block, j, h_.refcount_order, want);
      changed = true;
    }
    if (changed) VSS_RETURN_IF_ERROR(file_.WriteAt(refblocks_[b], block));
  }
  cached_block_ = kNoBlock;
  return OkStatus();
}

Status Checker::ClearHeaderFlags() {
  if (h_.version < 3 || !header_flags_set()) return OkStatus();
  uint8_t b[8];
  PutBe64(b, h_.incompatible_features & ~(kIncompatDirty | kIncompatCorrupt));
  return file_.WriteAt(72, b);
}

// Where new refcount blocks go: one for each refcount table entry that is
// empty but covers used clusters, and, in turn, for each entry that covers
// a new block, at the end of the file (table index -> host cluster). The
// new clusters join the walk's counts with one use each. kFailedPrecondition
// when a new block lies beyond what the refcount table covers.
StatusOr<std::map<uint64_t, uint64_t>> Checker::PlaceMissingBlocks() {
  const uint64_t per_block = h_.refcount_block_entries();
  std::map<uint64_t, uint64_t> placed;
  auto place = [&](uint64_t b) -> Status {
    if (b >= refblocks_.size()) {
      return FailedPreconditionError(
          options_.name +
          ": not repaired: the refcount table has no room "
          "for the refcount block a repair must add");
    }
    if (refblocks_[b] != 0 || placed.count(b)) return OkStatus();
    placed[b] = nclusters_;
    uses_.push_back(1);
    metadata_.push_back(true);
    stored_one_.push_back(false);
    ++nclusters_;
    return OkStatus();
  };
  for (uint64_t c = 0; c < nclusters_; ++c) {
    if (uses_[c] != 0) VSS_RETURN_IF_ERROR(place(c / per_block));
  }
  // A new block may itself lie where no block covers it; each round covers
  // per_block clusters, so this ends after a few rounds.
  for (size_t seen = 0; seen < placed.size();) {
    seen = placed.size();
    std::vector<uint64_t> clusters;
    for (const auto& [b, c] : placed) clusters.push_back(c);
    for (uint64_t c : clusters) VSS_RETURN_IF_ERROR(place(c / per_block));
  }
  return placed;
}

// Writes each new block with the walk's counts of the clusters it covers;
// nothing points to them yet.
Status Checker::WriteNewBlocks(const std::map<uint64_t, uint64_t>& placed) {
  const uint64_t per_block = h_.refcount_block_entries();
  for (const auto& [b, cluster] : placed) {
    std::vector<uint8_t> block(cs_, 0);
    for (uint64_t j = 0; j < per_block && b * per_block + j < nclusters_; ++j) {
      SetRefcount(block, j, h_.refcount_order, uses_[b * per_block + j]);
    }
    VSS_RETURN_IF_ERROR(file_.WriteAt(cluster * cs_, block));
  }
  return OkStatus();
}

// Points the refcount table at the new blocks, which must be durable.
Status Checker::LinkNewBlocks(const std::map<uint64_t, uint64_t>& placed) {
  for (const auto& [b, cluster] : placed) {
    uint8_t entry[8];
    PutBe64(entry, cluster * cs_);
    VSS_RETURN_IF_ERROR(file_.WriteAt(h_.refcount_table_offset + 8 * b, entry));
    refblocks_[b] = cluster * cs_;
  }
  return OkStatus();
}

Status Checker::Repair() {
  VSS_ASSIGN_OR_RETURN(auto placed, PlaceMissingBlocks());
  // New blocks and raised counts first (a raise is what protects data;
  // until the blocks are linked, the new clusters are at worst leaks).
  VSS_RETURN_IF_ERROR(WriteNewBlocks(placed));
  VSS_RETURN_IF_ERROR(RewriteRefcounts(true));
  VSS_RETURN_IF_ERROR(file_.Sync());
  // The table points to new blocks only once they and their own counts are
  // durable.
  VSS_RETURN_IF_ERROR(LinkNewBlocks(placed));
  VSS_RETURN_IF_ERROR(file_.Sync());
  // Lowered counts: each stays at the walk's count, never below the uses.
  VSS_RETURN_IF_ERROR(RewriteRefcounts(false));
  VSS_RETURN_IF_ERROR(file_.Sync());
  // Copied bits against the now durable refcounts.
  VSS_RETURN_IF_ERROR(CheckCopied(true));
  VSS_RETURN_IF_ERROR(file_.Sync());
  // Only a consistent image loses its dirty and corrupt bits.
  VSS_RETURN_IF_ERROR(ClearHeaderFlags());
  return file_.Sync();
}

}  // namespace

StatusOr<ImageCheckResult> CheckImage(File& file, const CheckOptions& options) {
  Checker checker(file, options);
  VSS_RETURN_IF_ERROR(checker.Run());
  if (!options.repair) return checker.TakeResult();
  if (checker.unfixable() > 0) {
    std::string more = checker.unfixable() > 1
                           ? " (and " +
                                 std::to_string(checker.unfixable() - 1) +
                                 " more errors a repair cannot fix)"
                           : "";
    return FailedPreconditionError(
        options.name +
        ": not repaired, nothing written: " + checker.first_unfixable() + more);
  }
  ImageCheckResult before = checker.TakeResult();
  if (before.clean() && !checker.header_flags_set()) return before;
  VSS_RETURN_IF_ERROR(checker.Repair());
  Checker after(file, options);
  VSS_RETURN_IF_ERROR(after.Run());
  return after.TakeResult();
}

}  // namespace vss::qcow2
