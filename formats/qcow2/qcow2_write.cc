// qcow2::Image: writes, zero writes and discards. New L2 entries live in
// the L2 cache until the metadata flush writes them back in order
// (qcow2_image.h); clusters an entry stops naming are released then.

#include <algorithm>
#include <cstring>

#include "qcow2_image.h"

namespace vss::qcow2 {
namespace {

constexpr uint64_t kAllAllocated = 0xffffffffull;

// Subcluster bits [s0, s1] of one bitmap word.
uint64_t SubMask(uint32_t s0, uint32_t s1) {
  const uint64_t n = s1 - s0 + 1;
  return (n >= 32 ? kAllAllocated : ((1ull << n) - 1)) << s0;
}

}  // namespace

StatusOr<std::pair<CachedTable*, size_t>> Image::WritableL2(uint64_t gc) {
  const uint64_t l1i = gc / header_.l2_entries();
  const size_t index = (gc % header_.l2_entries()) * header_.l2_entry_bytes();
  if (l1i >= l1_.size()) {
    return CorruptionError(name() +
                           ": the L1 table is too small for guest "
                           "cluster " +
                           std::to_string(gc));
  }
  const uint64_t old = l1_[l1i] & kL1OffsetMask;
  if (old != 0 && (l1_[l1i] & kCopied)) {
    VSS_ASSIGN_OR_RETURN(CachedTable * table, GetL2(old));
    return std::make_pair(table, index);
  }
  // A new table, or a copy of one an internal snapshot shares.
  CachedTable table;
  if (old != 0) {
    VSS_ASSIGN_OR_RETURN(CachedTable * shared, GetL2(old));
    table.bytes = shared->bytes;
  } else {
    table.bytes.assign(cluster_size(), 0);
  }
  VSS_ASSIGN_OR_RETURN(uint64_t host, Allocate(1));
  table.dirty = true;
  table.last_use = ++use_clock_;
  CachedTable* placed = &(l2_cache_[host] = std::move(table));
  l1_[l1i] = host | kCopied;
  dirty_l1_.insert(l1i);
  if (old != 0) pending_release_.emplace_back(old, cluster_size());
  return std::make_pair(placed, index);
}

void Image::ReleaseLater(const Lookup& old, uint64_t new_host) {
  if (old.kind == Kind::kCompressed) {
    const CompressedRef ref = DecodeCompressed(old.entry, header_.cluster_bits);
    const uint64_t start = ref.host_offset & ~uint64_t{511};
    pending_release_.emplace_back(start,
                                  ref.max_bytes + (ref.host_offset & 511));
  } else if (old.host != 0 && old.host != new_host) {
    pending_release_.emplace_back(old.host, cluster_size());
  }
}

Status Image::SetEntry(uint64_t gc, uint64_t entry, uint64_t bitmap) {
  VSS_ASSIGN_OR_RETURN(Lookup old, Find(gc));
  VSS_ASSIGN_OR_RETURN(auto where, WritableL2(gc));
  auto [table, index] = where;
  PutBe64(&table->bytes[index], entry);
  if (header_.extended_l2()) PutBe64(&table->bytes[index + 8], bitmap);
  table->dirty = true;
  ReleaseLater(old, entry & kL2Compressed ? 0 : entry & kL2OffsetMask);
  return OkStatus();
}

// Whole clusters whose old contents do not matter: new contiguous clusters,
// one write of the data, then the entries.
Status Image::WriteFreshRun(uint64_t gc, uint64_t n, const uint8_t* data) {
  const uint64_t cs = cluster_size();
  VSS_ASSIGN_OR_RETURN(uint64_t host, Allocate(n));
  VSS_RETURN_IF_ERROR(file_->WriteAt(host, {data, n * cs}));
  const uint64_t bitmap = header_.extended_l2() ? kAllAllocated : 0;
  for (uint64_t i = 0; i < n; ++i) {
    VSS_RETURN_IF_ERROR(SetEntry(gc + i, (host + i * cs) | kCopied, bitmap));
  }
  return OkStatus();
}

// Part of one cluster, standard L2: the cluster's current contents (from
// the backing file, a compressed or shared cluster, or zeroes) with the new
// bytes, written to a new cluster. The flush syncs the copy before the
// entry names it.
Status Image::WriteCluster(uint64_t offset, std::span<const uint8_t> buf) {
  const uint64_t cs = cluster_size();
  const uint64_t gc = offset / cs;
  VSS_ASSIGN_OR_RETURN(Lookup l, Find(gc));
  if (header_.extended_l2()) return WriteExtendedCluster(offset, buf, l);
  std::vector<uint8_t> cluster(cs, 0);
  const uint64_t guest_bytes = std::min(cs, size() - gc * cs);
  VSS_RETURN_IF_ERROR(
      ReadInCluster(gc * cs, std::span(cluster).first(guest_bytes)));
  std::memcpy(&cluster[offset % cs], buf.data(), buf.size());
  VSS_ASSIGN_OR_RETURN(uint64_t host, Allocate(1));
  VSS_RETURN_IF_ERROR(file_->WriteAt(host, cluster));
  return SetEntry(gc, host | kCopied, 0);
}

// Part of one cluster, extended L2: only the touched subclusters change.
Status Image::WriteExtendedCluster(uint64_t offset,
                                   std::span<const uint8_t> buf,
                                   const Lookup& l) {
  const uint64_t cs = cluster_size();
  const uint64_t scs = header_.subcluster_size();
  const uint64_t gc = offset / cs;
  const uint64_t in = offset % cs;
  const uint32_t s0 = static_cast<uint32_t>(in / scs);
  const uint32_t s1 = static_cast<uint32_t>((in + buf.size() - 1) / scs);
  const uint64_t touched = SubMask(s0, s1);
  const bool own = l.kind == Kind::kNormal && l.copied;
  if (own && (l.bitmap & touched) == touched) {
    return file_->WriteAt(l.host + in, buf);
  }
  // Another owner's cluster is copied whole; else only the touched span.
  const bool whole = !own && l.kind != Kind::kUnallocated;
  const uint64_t begin = whole ? 0 : s0 * scs;
  const uint64_t end = whole ? cs : (uint64_t{s1} + 1) * scs;
  std::vector<uint8_t> span(end - begin);
  VSS_RETURN_IF_ERROR(ReadInCluster(gc * cs + begin, span));
  std::memcpy(&span[in - begin], buf.data(), buf.size());
  uint64_t host = l.host;
  if (!own) {
    VSS_ASSIGN_OR_RETURN(host, Allocate(1));
  }
  VSS_RETURN_IF_ERROR(file_->WriteAt(host + begin, span));
  const uint64_t alloc = whole ? kAllAllocated : touched;
  const uint64_t old_bitmap = whole ? 0 : l.bitmap;
  const uint64_t bitmap = (old_bitmap | alloc) & ~(alloc << 32);
  return SetEntry(gc, host | kCopied, bitmap);
}

Status Image::WriteChunk(uint64_t offset, std::span<const uint8_t> buf) {
  const uint64_t cs = cluster_size();
  size_t done = 0;
  while (done < buf.size()) {
    const uint64_t pos = offset + done;
    const uint64_t n = std::min<uint64_t>(cs - pos % cs, buf.size() - done);
    VSS_ASSIGN_OR_RETURN(Lookup l, Find(pos / cs));
    const bool in_place = l.kind == Kind::kNormal && l.copied &&
                          (!header_.extended_l2() || l.bitmap == kAllAllocated);
    if (in_place) {
      // Runs of our own contiguous clusters take one write.
      uint64_t run = n;
      while (done + run < buf.size()) {
        VSS_ASSIGN_OR_RETURN(Lookup next, Find((pos + run) / cs));
        if (next.kind != Kind::kNormal || !next.copied ||
            next.host != l.host + pos % cs + run ||
            (header_.extended_l2() && next.bitmap != kAllAllocated)) {
          break;
        }
        run += std::min<uint64_t>(cs, buf.size() - done - run);
      }
      VSS_RETURN_IF_ERROR(
          file_->WriteAt(l.host + pos % cs, buf.subspan(done, run)));
      done += run;
      continue;
    }
    if (n < cs) {
      VSS_RETURN_IF_ERROR(WriteCluster(pos, buf.subspan(done, n)));
      done += n;
      continue;
    }
    // Whole clusters not written in place: count them, then one run.
    uint64_t count = 1;
    while (done + (count + 1) * cs <= buf.size() && count < MaxRun()) {
      VSS_ASSIGN_OR_RETURN(Lookup next, Find(pos / cs + count));
      if (next.kind == Kind::kNormal && next.copied) break;
      ++count;
    }
    VSS_RETURN_IF_ERROR(WriteFreshRun(pos / cs, count, buf.data() + done));
    done += count * cs;
  }
  return OkStatus();
}

Status Image::DoWrite(uint64_t offset, std::span<const uint8_t> buf) {
  std::lock_guard lock(mu_);
  return ForEachPiece(offset, buf.size(), table_cover(),
                      [&](uint64_t done, uint64_t n) {
                        return WriteChunk(offset + done, buf.subspan(done, n));
                      });
}

Status Image::DoAllocate(uint64_t offset, uint64_t length) {
  std::lock_guard lock(mu_);
  const uint64_t cs = cluster_size();
  const uint64_t last = (offset + length - 1) / cs;
  std::vector<uint8_t> cluster;
  for (uint64_t gc = offset / cs; gc <= last; ++gc) {
    VSS_RETURN_IF_ERROR(MaybeEvict());
    VSS_ASSIGN_OR_RETURN(Lookup l, Find(gc));
    if (l.kind == Kind::kNormal && l.copied &&
        (!header_.extended_l2() || l.bitmap == kAllAllocated)) {
      continue;
    }
    cluster.resize(std::min(cs, size() - gc * cs));
    VSS_RETURN_IF_ERROR(ReadInCluster(gc * cs, cluster));
    VSS_RETURN_IF_ERROR(WriteChunk(gc * cs, cluster));
  }
  return OkStatus();
}

uint64_t Image::FullZeroEntryBitmap() const {
  // Without a backing file an unallocated cluster reads as zeroes.
  return backing_ ? (kAllAllocated << 32) : 0;
}

// Whole clusters become zero (v3 zero flag, or unallocated when nothing
// lies below); partial ones are written with zeroes.
Status Image::ZeroRange(uint64_t offset, uint64_t length) {
  return ForEachPiece(
      offset, length, cluster_size(),
      [&](uint64_t done, uint64_t n) { return ZeroCluster(offset + done, n); });
}

Status Image::ZeroCluster(uint64_t pos, uint64_t n) {
  const uint64_t cs = cluster_size();
  VSS_ASSIGN_OR_RETURN(Lookup l, Find(pos / cs));
  const bool reads_zero = (l.kind == Kind::kUnallocated && !backing_ &&
                           (!header_.extended_l2() || l.bitmap == 0)) ||
                          (l.kind == Kind::kZero && l.host == 0);
  const bool whole = pos % cs == 0 && (n == cs || pos + n == size());
  if (reads_zero) return OkStatus();
  if (whole && header_.extended_l2()) {
    return SetEntry(pos / cs, 0, FullZeroEntryBitmap());
  }
  if (whole && (!backing_ || header_.version >= 3)) {
    return SetEntry(pos / cs, backing_ ? kL2Zero : 0, 0);
  }
  // Version 2 under a backing file, or part of a cluster.
  std::vector<uint8_t> zeroes(n, 0);
  return WriteChunk(pos, zeroes);
}

Status Image::DoWriteZeroes(uint64_t offset, uint64_t length) {
  std::lock_guard lock(mu_);
  return ZeroRange(offset, length);
}

Status Image::DoDiscard(uint64_t offset, uint64_t length) {
  std::lock_guard lock(mu_);
  return ZeroRange(offset, length);
}

}  // namespace vss::qcow2
