// CreateImage: the layout of a new qcow2 image. Cluster 0 holds the header
// (with the backing file name), then come the refcount table, the refcount
// blocks counting every metadata cluster, and the L1 table (all zero).

#include <algorithm>

#include "qcow2_image.h"

namespace vss::qcow2 {
namespace {

Status CheckCreateOptions(const CreateOptions& o, const std::string& name) {
  auto bad = [&](const std::string& what) {
    return InvalidArgumentError(name + ": qcow2 " + what);
  };
  if (o.size == 0) return bad("size must be above 0");
  if (o.size > (1ull << 56)) return bad("size is above 2^56 bytes");
  if (o.cluster_bits < kMinClusterBits || o.cluster_bits > kMaxClusterBits) {
    return bad("cluster_size must be a power of two from 512 to 2M");
  }
  if (o.refcount_order > 6) {
    return bad("refcount_bits must be 1, 2, 4, 8, 16, 32 or 64");
  }
  if (o.extended_l2 && o.cluster_bits < 14) {
    return bad("extended_l2 needs a cluster_size of at least 16K");
  }
  if (o.preallocate_metadata && !o.backing_file.empty()) {
    return bad("preallocation=metadata cannot be used with a backing file");
  }
  return OkStatus();
}

// The header of the new image, with table offsets filled in by Layout().
Header NewHeader(const CreateOptions& o) {
  Header h;
  h.version = 3;
  h.cluster_bits = o.cluster_bits;
  h.size = o.size;
  h.refcount_order = o.refcount_order;
  h.header_length = kV3HeaderLengthWithCompression;
  h.compression_type = o.compression_type;
  if (o.compression_type != kCompressionZlib) {
    h.incompatible_features |= kIncompatCompressionType;
  }
  if (o.extended_l2) h.incompatible_features |= kIncompatExtendedL2;
  h.backing_file = o.backing_file;
  h.backing_format = o.backing_format;
  h.l1_size = static_cast<uint32_t>(h.l1_entries_needed());
  return h;
}

uint64_t CeilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

}  // namespace

StatusOr<std::unique_ptr<Image>> CreateImage(std::unique_ptr<File> file,
                                             const std::string& name,
                                             const CreateOptions& options,
                                             ImageOptions image_options) {
  VSS_RETURN_IF_ERROR(CheckCreateOptions(options, name));
  Header h = NewHeader(options);
  if (uint64_t{h.l1_size} * 8 > kMaxL1Bytes) {
    return InvalidArgumentError(name +
                                ": qcow2 size needs an L1 table above "
                                "32 MiB; use a larger cluster_size");
  }
  const uint64_t cs = h.cluster_size();
  const uint64_t l1_clusters =
      std::max<uint64_t>(1, CeilDiv(h.l1_size * 8ull, cs));
  // Metadata clusters: header, table, blocks, L1; the blocks and table
  // count themselves, so iterate to the fixed point.
  uint64_t table_clusters = 1, blocks = 1;
  for (;;) {
    const uint64_t total = 1 + table_clusters + blocks + l1_clusters;
    const uint64_t need_blocks = CeilDiv(total, h.refcount_block_entries());
    const uint64_t need_table = CeilDiv(need_blocks * 8, cs);
    if (need_blocks == blocks && need_table == table_clusters) break;
    blocks = need_blocks;
    table_clusters = need_table;
  }
  const uint64_t total = 1 + table_clusters + blocks + l1_clusters;
  h.refcount_table_offset = cs;
  h.refcount_table_clusters = static_cast<uint32_t>(table_clusters);
  const uint64_t blocks_offset = (1 + table_clusters) * cs;
  h.l1_table_offset = blocks_offset + blocks * cs;
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, SerializeHeader(h));
  bytes.resize((1 + table_clusters + blocks) * cs, 0);
  for (uint64_t b = 0; b < blocks; ++b) {
    PutBe64(&bytes[cs + b * 8], blocks_offset + b * cs);
  }
  std::span<uint8_t> block_bytes = std::span(bytes).subspan(blocks_offset);
  for (uint64_t c = 0; c < total; ++c) {
    SetRefcount(block_bytes, c, h.refcount_order, 1);
  }
  VSS_RETURN_IF_ERROR(file->WriteAt(0, bytes));
  // The L1 table: zeroes up to the end of its clusters.
  VSS_RETURN_IF_ERROR(file->Truncate(total * cs));
  // The image is complete on disk before it is opened and used.
  VSS_RETURN_IF_ERROR(file->Sync());
  image_options.writable = true;
  VSS_ASSIGN_OR_RETURN(
      auto image, Image::Open(std::move(file), name, std::move(image_options)));
  if (options.preallocate_metadata) {
    VSS_RETURN_IF_ERROR(image->PreallocateMetadata());
  }
  return image;
}

}  // namespace vss::qcow2
