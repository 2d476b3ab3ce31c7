// qcow2::Image: opening, the mapping of guest clusters, reads and extents.
// Allocation and the metadata flush are in qcow2_alloc.cc, writes in
// qcow2_write.cc.

#include "qcow2_image.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>

namespace vss::qcow2 {
namespace {

std::string Hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Inflates raw deflate data (no zlib header, as qcow2 stores it) into
// exactly out.size() bytes. Bytes after the stream's end are ignored.
bool InflateRaw(std::span<const uint8_t> in, std::span<uint8_t> out) {
  z_stream z{};
  if (inflateInit2(&z, -15) != Z_OK) return false;
  z.next_in = const_cast<uint8_t*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&z, Z_FINISH);
  bool full = z.avail_out == 0;
  inflateEnd(&z);
  return full && (rc == Z_STREAM_END || rc == Z_BUF_ERROR || rc == Z_OK);
}

// Decompresses zstd frames until out is full.
bool DecompressZstd(std::span<const uint8_t> in, std::span<uint8_t> out) {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  if (ctx == nullptr) return false;
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  ZSTD_outBuffer output{out.data(), out.size(), 0};
  bool ok = true;
  while (output.pos < output.size) {
    size_t rc = ZSTD_decompressStream(ctx, &output, &input);
    if (ZSTD_isError(rc)) {
      ok = false;
      break;
    }
    // No progress possible: the input ran out before the cluster was full.
    if (input.pos == input.size && output.pos < output.size && rc != 0) {
      ok = false;
      break;
    }
    if (rc == 0 && output.pos < output.size && input.pos == input.size) {
      ok = false;
      break;
    }
  }
  ZSTD_freeDCtx(ctx);
  return ok;
}

}  // namespace

Image::Image(std::unique_ptr<File> file, std::string name, Header header,
             ImageOptions options)
    : BlockDevice(std::move(name), header.size, !options.writable),
      file_(std::move(file)),
      header_(std::move(header)),
      options_(std::move(options)) {}

Image::~Image() {
  if (read_only()) return;
  std::lock_guard lock(mu_);
  FlushMetadata().IgnoreError();
}

StatusOr<std::unique_ptr<Image>> Image::Open(std::unique_ptr<File> file,
                                             const std::string& name,
                                             ImageOptions options) {
  VSS_ASSIGN_OR_RETURN(uint64_t file_size, file->Size());
  std::vector<uint8_t> head(
      std::min<uint64_t>(file_size, 1u << kMaxClusterBits));
  if (head.size() >= 24) {
    // Read the header cluster only once its size is known.
    VSS_ASSIGN_OR_RETURN(size_t got,
                         file->ReadAt(0, std::span(head).first(24)));
    uint32_t bits = got == 24 ? Be32(&head[20]) : 0;
    if (bits >= kMinClusterBits && bits <= kMaxClusterBits) {
      head.resize(std::min<uint64_t>(head.size(), 1ull << bits));
    }
  }
  VSS_ASSIGN_OR_RETURN(size_t got, file->ReadAt(0, head));
  head.resize(got);
  StatusOr<Header> parsed = ParseHeader(head, file_size);
  if (!parsed.ok()) return parsed.status().WithContext(name);
  if (auto problem = SupportProblem(*parsed, options.writable)) {
    return UnsupportedError(name +
                            ": qcow2 feature not supported: " + *problem);
  }
  if (options.writable && (parsed->incompatible_features & kIncompatDirty)) {
    return UnsupportedError(
        name +
        ": the image is dirty (lazy refcounts were not written back); "
        "repair it (vssctl image check --repair) before writing to it");
  }
  std::unique_ptr<Image> image(
      new Image(std::move(file), name, std::move(*parsed), std::move(options)));
  image->free_hint_ =
      (file_size + image->cluster_size() - 1) / image->cluster_size();
  VSS_RETURN_IF_ERROR(image->Load());
  return image;
}

Status Image::Load() {
  const uint64_t cs = cluster_size();
  VSS_ASSIGN_OR_RETURN(uint64_t file_size, file_->Size());
  host_end_ = (file_size + cs - 1) / cs * cs;
  l1_.assign(header_.l1_size, 0);
  if (header_.l1_size > 0) {
    std::vector<uint8_t> bytes(uint64_t{header_.l1_size} * 8);
    VSS_ASSIGN_OR_RETURN(size_t got,
                         file_->ReadAt(header_.l1_table_offset, bytes));
    if (got != bytes.size()) {
      return CorruptionError(name() + ": the L1 table at " +
                             Hex(header_.l1_table_offset) +
                             " runs past the end of the file");
    }
    for (size_t i = 0; i < l1_.size(); ++i) {
      l1_[i] = Be64(&bytes[i * 8]);
      if ((l1_[i] & kL1OffsetMask & (cs - 1)) != 0) {
        return CorruptionError(name() + ": L1 entry " + std::to_string(i) +
                               " names an unaligned L2 table " +
                               Hex(l1_[i] & kL1OffsetMask));
      }
    }
  }
  VSS_RETURN_IF_ERROR(LoadRefcountTable());
  if (!header_.backing_file.empty() &&
      !(options_.ignore_backing && read_only())) {
    if (!options_.open_backing) {
      return UnsupportedError(name() + ": names backing file " +
                              header_.backing_file +
                              ", which this opener cannot open");
    }
    StatusOr<std::unique_ptr<BlockDevice>> backing =
        options_.open_backing(header_.backing_file, header_.backing_format);
    if (!backing.ok()) return backing.status().WithContext(name());
    backing_ = std::move(*backing);
  }
  if (!read_only() && header_.version >= 3 && header_.autoclear_features) {
    // Autoclear features (bitmaps) would go stale under our writes: clearing
    // their bits tells every reader to ignore them.
    uint8_t zero[8] = {};
    VSS_RETURN_IF_ERROR(file_->WriteAt(88, zero));
    VSS_RETURN_IF_ERROR(file_->Sync());
    header_.autoclear_features = 0;
  }
  return OkStatus();
}

Status Image::LoadRefcountTable() {
  const uint64_t entries =
      uint64_t{header_.refcount_table_clusters} * cluster_size() / 8;
  std::vector<uint8_t> bytes(entries * 8);
  VSS_ASSIGN_OR_RETURN(size_t got,
                       file_->ReadAt(header_.refcount_table_offset, bytes));
  if (got != bytes.size()) {
    return CorruptionError(name() + ": the refcount table at " +
                           Hex(header_.refcount_table_offset) +
                           " runs past the end of the file");
  }
  reftable_.assign(entries, 0);
  for (size_t i = 0; i < entries; ++i) {
    reftable_[i] = Be64(&bytes[i * 8]) & kRefTableOffsetMask;
    if ((reftable_[i] & (cluster_size() - 1)) != 0) {
      return CorruptionError(name() + ": refcount table entry " +
                             std::to_string(i) + " is not cluster aligned");
    }
    if (reftable_[i] >= host_end_) {
      return CorruptionError(name() + ": refcount table entry " +
                             std::to_string(i) + " names a block past the end of the file");
    }
  }
  return OkStatus();
}

StatusOr<uint64_t> Image::AllocatedBytes() {
  std::lock_guard lock(mu_);
  return file_->AllocatedBytes();
}

// --- the metadata caches ---

StatusOr<CachedTable*> Image::GetTable(
    std::unordered_map<uint64_t, CachedTable>& cache, uint64_t offset,
    const char* what) {
  auto it = cache.find(offset);
  if (it != cache.end()) {
    it->second.last_use = ++use_clock_;
    return &it->second;
  }
  if (offset == 0 || (offset & (cluster_size() - 1)) != 0) {
    return CorruptionError(name() + ": " + what + " at " + Hex(offset) +
                           " is not a valid cluster offset");
  }
  CachedTable table;
  table.bytes.resize(cluster_size());
  VSS_ASSIGN_OR_RETURN(size_t got, file_->ReadAt(offset, table.bytes));
  if (got != table.bytes.size()) {
    return CorruptionError(name() + ": " + what + " at " + Hex(offset) +
                           " runs past the end of the file");
  }
  table.last_use = ++use_clock_;
  return &cache.emplace(offset, std::move(table)).first->second;
}

StatusOr<CachedTable*> Image::GetL2(uint64_t offset) {
  return GetTable(l2_cache_, offset, "L2 table");
}

// Called only between steps of an operation, when no table pointer is held.
Status Image::MaybeEvict() {
  for (auto* cache : {&l2_cache_, &ref_cache_}) {
    while (cache->size() > 1 &&
           cache->size() * cluster_size() > options_.cache_bytes) {
      auto victim = cache->end();
      for (auto it = cache->begin(); it != cache->end(); ++it) {
        if (it->second.dirty) continue;
        if (victim == cache->end() ||
            it->second.last_use < victim->second.last_use) {
          victim = it;
        }
      }
      if (victim == cache->end()) {
        // Only changed tables left: write them back in order first.
        VSS_RETURN_IF_ERROR(FlushMetadata());
        continue;
      }
      cache->erase(victim);
    }
  }
  return OkStatus();
}

// --- the mapping ---

StatusOr<Image::Lookup> Image::Find(uint64_t gc) {
  Lookup l;
  const uint64_t l1i = gc / header_.l2_entries();
  if (l1i >= l1_.size()) return l;
  const uint64_t l2_offset = l1_[l1i] & kL1OffsetMask;
  if (l2_offset == 0) return l;
  VSS_ASSIGN_OR_RETURN(CachedTable * table, GetL2(l2_offset));
  const uint8_t* p =
      &table->bytes[(gc % header_.l2_entries()) * header_.l2_entry_bytes()];
  l.entry = Be64(p);
  if (header_.extended_l2()) l.bitmap = Be64(p + 8);
  if (l.entry & kL2Compressed) {
    l.kind = Kind::kCompressed;
    return l;
  }
  l.host = l.entry & kL2OffsetMask;
  l.copied = (l.entry & kCopied) != 0;
  if (l.host & (cluster_size() - 1)) {
    return CorruptionError(name() + ": the L2 entry of guest offset " +
                           Hex(gc * cluster_size()) +
                           " names an unaligned cluster " + Hex(l.host));
  }
  if (l.host >= host_end_) {
    return CorruptionError(name() + ": the L2 entry of guest offset " +
                           Hex(gc * cluster_size()) + " names cluster " + Hex(l.host) +
                           " past the end of the file");
  }
  if (header_.extended_l2()) {
    const uint64_t alloc = l.bitmap & 0xffffffffu;
    if ((alloc & (l.bitmap >> 32)) != 0 || (alloc != 0 && l.host == 0)) {
      return CorruptionError(name() +
                             ": the subcluster bitmap of guest offset " +
                             Hex(gc * cluster_size()) + " is invalid");
    }
    l.kind = l.host ? Kind::kNormal : Kind::kUnallocated;
    return l;
  }
  if ((l.entry & kL2Zero) && header_.version >= 3) {
    l.kind = Kind::kZero;
  } else {
    l.kind = l.host ? Kind::kNormal : Kind::kUnallocated;
  }
  return l;
}

Image::Kind Image::SubKind(const Lookup& l, uint32_t sc) const {
  if (!header_.extended_l2() || l.kind == Kind::kCompressed) return l.kind;
  if ((l.bitmap >> (32 + sc)) & 1) return Kind::kZero;
  if ((l.bitmap >> sc) & 1) return Kind::kNormal;
  return Kind::kUnallocated;
}

// --- reads ---

Status Image::ReadHost(uint64_t host, std::span<uint8_t> buf) {
  VSS_ASSIGN_OR_RETURN(size_t got, file_->ReadAt(host, buf));
  // A cluster past the end of the file (metadata preallocation) is zeroes.
  std::fill(buf.begin() + got, buf.end(), 0);
  return OkStatus();
}

Status Image::ReadBacking(uint64_t offset, std::span<uint8_t> buf) {
  uint64_t have = 0;
  if (backing_ && offset < backing_->size()) {
    have = std::min<uint64_t>(buf.size(), backing_->size() - offset);
    VSS_RETURN_IF_ERROR(backing_->Read(offset, buf.first(have)));
  }
  std::fill(buf.begin() + have, buf.end(), 0);
  return OkStatus();
}

Status Image::ReadCompressed(uint64_t entry, std::span<uint8_t> cluster) {
  const CompressedRef ref = DecodeCompressed(entry, header_.cluster_bits);
  std::vector<uint8_t> in(
      std::min<uint64_t>(ref.max_bytes, 2 * cluster_size() + 512));
  VSS_ASSIGN_OR_RETURN(size_t got, file_->ReadAt(ref.host_offset, in));
  in.resize(got);
  bool ok = header_.compression_type == kCompressionZstd
                ? DecompressZstd(in, cluster)
                : InflateRaw(in, cluster);
  if (!ok) {
    return CorruptionError(name() + ": the compressed cluster at " +
                           Hex(ref.host_offset) + " does not decompress");
  }
  return OkStatus();
}

Status Image::ReadInCluster(uint64_t offset, std::span<uint8_t> buf) {
  const uint64_t cs = cluster_size();
  const uint64_t gc = offset / cs;
  VSS_ASSIGN_OR_RETURN(Lookup l, Find(gc));
  if (l.kind == Kind::kCompressed) {
    if (inflated_entry_ != l.entry || inflated_.size() != cs) {
      inflated_.assign(cs, 0);
      inflated_entry_ = 0;
      VSS_RETURN_IF_ERROR(ReadCompressed(l.entry, inflated_));
      inflated_entry_ = l.entry;
    }
    std::memcpy(buf.data(), &inflated_[offset % cs], buf.size());
    return OkStatus();
  }
  const uint64_t unit = header_.extended_l2() ? header_.subcluster_size() : cs;
  size_t done = 0;
  while (done < buf.size()) {
    const uint64_t pos = offset + done;
    const uint32_t sc = static_cast<uint32_t>((pos % cs) / unit);
    const Kind kind = SubKind(l, sc);
    uint64_t n = unit - pos % unit;
    // Merge the following subclusters of the same kind.
    while (done + n < buf.size() &&
           SubKind(l, sc + (n + pos % unit) / unit) == kind) {
      n += unit;
    }
    n = std::min<uint64_t>(n, buf.size() - done);
    std::span<uint8_t> piece = buf.subspan(done, n);
    if (kind == Kind::kNormal) {
      VSS_RETURN_IF_ERROR(ReadHost(l.host + pos % cs, piece));
    } else if (kind == Kind::kZero) {
      std::fill(piece.begin(), piece.end(), 0);
    } else {
      VSS_RETURN_IF_ERROR(ReadBacking(pos, piece));
    }
    done += n;
  }
  return OkStatus();
}

Status Image::ReadLocked(uint64_t offset, std::span<uint8_t> buf) {
  const uint64_t cs = cluster_size();
  size_t done = 0;
  while (done < buf.size()) {
    const uint64_t pos = offset + done;
    uint64_t n = std::min<uint64_t>(cs - pos % cs, buf.size() - done);
    VSS_ASSIGN_OR_RETURN(Lookup l, Find(pos / cs));
    if (header_.extended_l2() || l.kind != Kind::kNormal) {
      VSS_RETURN_IF_ERROR(ReadInCluster(pos, buf.subspan(done, n)));
      done += n;
      continue;
    }
    // Contiguous host clusters are read in one call.
    while (done + n < buf.size()) {
      VSS_ASSIGN_OR_RETURN(Lookup next, Find((pos + n) / cs));
      if (next.kind != Kind::kNormal || next.host != l.host + (pos % cs) + n) {
        break;
      }
      n += std::min<uint64_t>(cs, buf.size() - done - n);
    }
    VSS_RETURN_IF_ERROR(ReadHost(l.host + pos % cs, buf.subspan(done, n)));
    done += n;
  }
  return OkStatus();
}

Status Image::ForEachPiece(
    uint64_t offset, uint64_t length, uint64_t unit,
    const std::function<Status(uint64_t, uint64_t)>& fn) {
  uint64_t done = 0;
  while (done < length) {
    const uint64_t pos = offset + done;
    const uint64_t n = std::min(unit - pos % unit, length - done);
    if (done == 0 || pos % table_cover() == 0) {
      VSS_RETURN_IF_ERROR(MaybeEvict());
    }
    VSS_RETURN_IF_ERROR(fn(done, n));
    done += n;
  }
  return OkStatus();
}

Status Image::DoRead(uint64_t offset, std::span<uint8_t> buf) {
  std::lock_guard lock(mu_);
  return ForEachPiece(offset, buf.size(), table_cover(),
                      [&](uint64_t done, uint64_t n) {
                        return ReadLocked(offset + done, buf.subspan(done, n));
                      });
}

// --- extents ---

Status Image::ExtentsInCluster(uint64_t offset, uint64_t length,
                               ExtentBuilder* out) {
  const uint64_t cs = cluster_size();
  VSS_ASSIGN_OR_RETURN(Lookup l, Find(offset / cs));
  const uint64_t unit = header_.extended_l2() && l.kind != Kind::kCompressed
                            ? header_.subcluster_size()
                            : cs;
  uint64_t done = 0;
  while (done < length) {
    const uint64_t pos = offset + done;
    const uint64_t n = std::min(unit - pos % unit, length - done);
    const Kind kind = SubKind(l, static_cast<uint32_t>((pos % cs) / unit));
    if (kind == Kind::kNormal || kind == Kind::kCompressed) {
      out->Add(pos, n, true);
    } else if (kind == Kind::kZero || !backing_ || pos >= backing_->size()) {
      out->Add(pos, n, false);
    } else {
      const uint64_t in_backing = std::min(n, backing_->size() - pos);
      VSS_ASSIGN_OR_RETURN(std::vector<Extent> below,
                           backing_->Extents(pos, in_backing));
      for (const Extent& e : below) out->Add(e.offset, e.length, e.allocated);
      out->Add(pos + in_backing, n - in_backing, false);
    }
    done += n;
  }
  return OkStatus();
}

StatusOr<std::vector<Extent>> Image::DoExtents(uint64_t offset,
                                               uint64_t length) {
  std::lock_guard lock(mu_);
  ExtentBuilder out;
  VSS_RETURN_IF_ERROR(ForEachPiece(
      offset, length, cluster_size(), [&](uint64_t done, uint64_t n) {
        return ExtentsInCluster(offset + done, n, &out);
      }));
  return out.Take();
}

Status Image::DoFlush() {
  std::lock_guard lock(mu_);
  return FlushMetadata();
}

}  // namespace vss::qcow2
