// qcow2::Image: refcounts, cluster allocation, refcount table growth and
// the ordered metadata flush (the durability order of qcow2_image.h).

#include <algorithm>

#include "qcow2_image.h"

namespace vss::qcow2 {

StatusOr<uint64_t> Image::Refcount(uint64_t cluster) {
  const uint64_t per_block = header_.refcount_block_entries();
  const uint64_t ti = cluster / per_block;
  if (ti >= reftable_.size() || reftable_[ti] == 0) return 0;
  VSS_ASSIGN_OR_RETURN(CachedTable * block,
                       GetTable(ref_cache_, reftable_[ti], "refcount block"));
  return GetRefcount(block->bytes, cluster % per_block, header_.refcount_order);
}

Status Image::SetRefcounts(uint64_t first, uint64_t n, uint64_t value) {
  const uint64_t per_block = header_.refcount_block_entries();
  const uint64_t bits = header_.refcount_bits();
  while (n > 0) {
    const uint64_t ti = first / per_block;
    const uint64_t i0 = first % per_block;
    const uint64_t k = std::min(n, per_block - i0);
    if (ti >= reftable_.size() || reftable_[ti] == 0) {
      return InternalError(name() + ": no refcount block for cluster " +
                           std::to_string(first));
    }
    VSS_ASSIGN_OR_RETURN(CachedTable * block,
                         GetTable(ref_cache_, reftable_[ti], "refcount block"));
    for (uint64_t i = i0; i < i0 + k; ++i) {
      SetRefcount(block->bytes, i, header_.refcount_order, value);
    }
    // Written through: only the bytes holding the changed entries.
    const uint64_t begin = i0 * bits / 8;
    const uint64_t end = ((i0 + k) * bits + 7) / 8;
    VSS_RETURN_IF_ERROR(file_->WriteAt(
        reftable_[ti] + begin,
        std::span<const uint8_t>(block->bytes).subspan(begin, end - begin)));
    first += k;
    n -= k;
  }
  return OkStatus();
}

// Scans the refcount blocks from free_hint_ (a range without a block is
// all free) for n consecutive clusters of refcount 0.
StatusOr<uint64_t> Image::FindFree(uint64_t n) {
  const uint64_t per_block = header_.refcount_block_entries();
  const uint64_t limit = (1ull << 56) / cluster_size();
  uint64_t start = free_hint_, run = 0;
  for (uint64_t c = free_hint_; c < limit;) {
    const uint64_t ti = c / per_block;
    const uint64_t range_end = (ti + 1) * per_block;
    if (ti >= reftable_.size() || reftable_[ti] == 0) {
      if (run == 0) start = c;
      run += range_end - c;
      if (run >= n) return start;
      c = range_end;
      continue;
    }
    VSS_ASSIGN_OR_RETURN(CachedTable * block,
                         GetTable(ref_cache_, reftable_[ti], "refcount block"));
    for (; c < range_end; ++c) {
      if (GetRefcount(block->bytes, c % per_block, header_.refcount_order)) {
        run = 0;
        continue;
      }
      if (run == 0) start = c;
      if (++run == n) return start;
    }
  }
  return NoSpaceError(name() + ": no free cluster below 2^56 bytes");
}

StatusOr<uint64_t> Image::Allocate(uint64_t n) {
  const uint64_t per_block = header_.refcount_block_entries();
  for (;;) {
    VSS_ASSIGN_OR_RETURN(uint64_t start, FindFree(n));
    bool made_block = false;
    for (uint64_t ti = start / per_block; ti <= (start + n - 1) / per_block;
         ++ti) {
      if (ti < reftable_.size() && reftable_[ti] != 0) continue;
      // The new block takes a cluster: search again afterwards.
      VSS_RETURN_IF_ERROR(CreateRefBlock(ti));
      made_block = true;
      break;
    }
    if (made_block) continue;
    // Raised (and later synced) before any L2 entry names the clusters.
    VSS_RETURN_IF_ERROR(SetRefcounts(start, n, 1));
    free_hint_ = start + n;
    host_end_ = std::max(host_end_, (start + n) * cluster_size());
    return start * cluster_size();
  }
}

// A range of clusters without a refcount block holds no used cluster, so
// the block is put in the first cluster of the range it describes and
// counts itself.
Status Image::CreateRefBlock(uint64_t ti) {
  if (ti >= reftable_.size()) return GrowRefTable(ti);
  const uint64_t block_cluster = ti * header_.refcount_block_entries();
  if (block_cluster == 0) {
    return CorruptionError(name() +
                           ": the first clusters have no refcount block");
  }
  const uint64_t offset = block_cluster * cluster_size();
  CachedTable block;
  block.bytes.assign(cluster_size(), 0);
  SetRefcount(block.bytes, 0, header_.refcount_order, 1);
  VSS_RETURN_IF_ERROR(file_->WriteAt(offset, block.bytes));
  // The block is durable before the table entry that names it.
  VSS_RETURN_IF_ERROR(file_->Sync());
  uint8_t entry[8];
  PutBe64(entry, offset);
  VSS_RETURN_IF_ERROR(
      file_->WriteAt(header_.refcount_table_offset + ti * 8, entry));
  reftable_[ti] = offset;
  block.last_use = ++use_clock_;
  ref_cache_[offset] = std::move(block);
  return OkStatus();
}

// The new table goes where no cluster is used: from the first cluster of
// range `ti` (every range from the old table's end on is free), followed by
// the refcount blocks of the ranges it spans, which count table and blocks.
Status Image::GrowRefTable(uint64_t ti) {
  const uint64_t cs = cluster_size();
  const uint64_t per_cluster = cs / 8;
  const uint64_t per_block = header_.refcount_block_entries();
  uint64_t entries = std::max<uint64_t>(ti + 1, reftable_.size() * 2);
  uint64_t table_clusters = 0, blocks = 1;
  for (;;) {
    entries = (entries + per_cluster - 1) / per_cluster * per_cluster;
    table_clusters = entries / per_cluster;
    blocks = (table_clusters + blocks + per_block - 1) / per_block;
    if (ti + blocks <= entries &&
        blocks == (table_clusters + blocks + per_block - 1) / per_block) {
      break;
    }
    entries = std::max(entries, ti + blocks);
  }
  if (table_clusters * cs > kMaxRefcountTableBytes) {
    return NoSpaceError(name() + ": the refcount table cannot grow to " +
                        std::to_string(entries) + " entries");
  }
  const uint64_t first = ti * per_block;  // the first new cluster
  const uint64_t used = table_clusters + blocks;
  std::vector<uint8_t> block_bytes(blocks * cs, 0);
  for (uint64_t i = 0; i < used; ++i) {
    SetRefcount(block_bytes, i, header_.refcount_order, 1);
  }
  std::vector<uint64_t> table = reftable_;
  table.resize(entries, 0);
  for (uint64_t j = 0; j < blocks; ++j) {
    table[ti + j] = (first + table_clusters + j) * cs;
  }
  std::vector<uint8_t> bytes(entries * 8);
  for (uint64_t i = 0; i < entries; ++i) PutBe64(&bytes[i * 8], table[i]);
  VSS_RETURN_IF_ERROR(file_->WriteAt(first * cs, bytes));
  VSS_RETURN_IF_ERROR(
      file_->WriteAt((first + table_clusters) * cs, block_bytes));
  // The new table and blocks are durable before the header names them.
  VSS_RETURN_IF_ERROR(file_->Sync());
  uint8_t fields[12];
  PutBe64(fields, first * cs);
  PutBe32(fields + 8, static_cast<uint32_t>(table_clusters));
  VSS_RETURN_IF_ERROR(file_->WriteAt(48, fields));
  // The header names the new table before the old one is released.
  VSS_RETURN_IF_ERROR(file_->Sync());
  pending_release_.emplace_back(header_.refcount_table_offset,
                                uint64_t{header_.refcount_table_clusters} * cs);
  header_.refcount_table_offset = first * cs;
  header_.refcount_table_clusters = static_cast<uint32_t>(table_clusters);
  reftable_ = std::move(table);
  for (uint64_t j = 0; j < blocks; ++j) {
    CachedTable block;
    block.bytes.assign(block_bytes.begin() + j * cs,
                       block_bytes.begin() + (j + 1) * cs);
    block.last_use = ++use_clock_;
    ref_cache_[reftable_[ti + j]] = std::move(block);
  }
  return OkStatus();
}

Status Image::Release(uint64_t host, uint64_t bytes) {
  const uint64_t cs = cluster_size();
  for (uint64_t c = host / cs; c <= (host + bytes - 1) / cs; ++c) {
    VSS_ASSIGN_OR_RETURN(uint64_t rc, Refcount(c));
    if (rc == 0) {
      return CorruptionError(name() + ": cluster " + std::to_string(c) +
                             " is released but has refcount 0");
    }
    VSS_RETURN_IF_ERROR(SetRefcounts(c, 1, rc - 1));
    if (rc > 1) continue;
    // Free: no table of it stays cached, its space goes back to the file
    // system, and it may be allocated again.
    l2_cache_.erase(c * cs);
    inflated_entry_ = 0;
    file_->PunchHole(c * cs, cs).IgnoreError();  // space only; reads unused
    free_hint_ = std::min(free_hint_, c);
  }
  return OkStatus();
}

Status Image::FlushMetadata() {
  // 1. Data and raised refcounts before the entries that name them.
  VSS_RETURN_IF_ERROR(file_->Sync());
  bool wrote = false;
  for (auto& [offset, table] : l2_cache_) {
    if (!table.dirty) continue;
    VSS_RETURN_IF_ERROR(file_->WriteAt(offset, table.bytes));
    table.dirty = false;
    wrote = true;
  }
  // 2. L2 tables (new ones included) before the L1 entries naming them.
  if (wrote) VSS_RETURN_IF_ERROR(file_->Sync());
  if (!dirty_l1_.empty()) {
    for (uint64_t i : dirty_l1_) {
      uint8_t entry[8];
      PutBe64(entry, l1_[i]);
      VSS_RETURN_IF_ERROR(
          file_->WriteAt(header_.l1_table_offset + i * 8, entry));
    }
    dirty_l1_.clear();
    // 3. L1 entries before the old tables they replaced are released.
    VSS_RETURN_IF_ERROR(file_->Sync());
  }
  if (!pending_release_.empty()) {
    std::vector<std::pair<uint64_t, uint64_t>> releases;
    releases.swap(pending_release_);
    for (const auto& [host, bytes] : releases) {
      VSS_RETURN_IF_ERROR(Release(host, bytes));
    }
    // 4. Lowered refcounts durable (a crash before only leaks).
    VSS_RETURN_IF_ERROR(file_->Sync());
  }
  return OkStatus();
}

Status Image::PreallocateMetadata() {
  std::lock_guard lock(mu_);
  const uint64_t cs = cluster_size();
  const uint64_t clusters = (size() + cs - 1) / cs;
  const uint64_t bitmap = header_.extended_l2() ? 0xffffffffull : 0;
  uint64_t end = 0;
  const uint64_t step = std::min(header_.l2_entries(), MaxRun());
  for (uint64_t gc = 0; gc < clusters; gc += step) {
    const uint64_t n = std::min(step, clusters - gc);
    VSS_RETURN_IF_ERROR(MaybeEvict());
    VSS_ASSIGN_OR_RETURN(uint64_t host, Allocate(n));
    for (uint64_t i = 0; i < n; ++i) {
      VSS_RETURN_IF_ERROR(SetEntry(gc + i, (host + i * cs) | kCopied, bitmap));
    }
    end = std::max(end, host + n * cs);
  }
  // The clusters read as zeroes; the file covers them all.
  VSS_ASSIGN_OR_RETURN(uint64_t file_size, file_->Size());
  if (end > file_size) VSS_RETURN_IF_ERROR(file_->Truncate(end));
  return FlushMetadata();
}

}  // namespace vss::qcow2
