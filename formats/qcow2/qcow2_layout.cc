#include "qcow2_layout.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace vss::qcow2 {
namespace {

bool Aligned(uint64_t v, uint64_t cluster_size) { return (v & (cluster_size - 1)) == 0; }

Status Bad(const std::string& what) { return CorruptionError("qcow2 header: " + what); }

// Reads the extensions that start at `at` and end before `limit`.
Status ParseExtensions(std::span<const uint8_t> b, size_t at, size_t limit, Header& h) {
  for (;;) {
    if (at + 8 > limit) return Bad("header extensions run past the header cluster");
    uint32_t type = Be32(&b[at]);
    uint32_t len = Be32(&b[at + 4]);
    at += 8;
    if (type == kExtEnd) return OkStatus();
    uint64_t padded = (uint64_t{len} + 7) & ~uint64_t{7};
    if (padded > limit - at) {
      return Bad("header extension 0x" + std::to_string(type) + " of " + std::to_string(len) +
                 " bytes runs past the header cluster");
    }
    if (type == kExtBackingFormat) {
      h.backing_format.assign(reinterpret_cast<const char*>(&b[at]), len);
    } else {
      h.extensions.push_back({type, std::vector<uint8_t>(b.begin() + at, b.begin() + at + len)});
    }
    at += padded;
  }
}

Status CheckTables(const Header& h, uint64_t file_size) {
  const uint64_t cs = h.cluster_size();
  if (h.l1_size < h.l1_entries_needed()) {
    return Bad("l1_size " + std::to_string(h.l1_size) + " is too small for " +
               std::to_string(h.size) + " bytes");
  }
  if (uint64_t{h.l1_size} * 8 > kMaxL1Bytes) {
    return Bad("l1_size " + std::to_string(h.l1_size) + " is above the 32 MiB limit");
  }
  if (h.l1_size > 0 && (!Aligned(h.l1_table_offset, cs) || h.l1_table_offset == 0)) {
    return Bad("l1_table_offset is not a cluster boundary");
  }
  if (!Aligned(h.refcount_table_offset, cs) || h.refcount_table_offset == 0) {
    return Bad("refcount_table_offset is not a cluster boundary");
  }
  if (h.refcount_table_clusters == 0 ||
      uint64_t{h.refcount_table_clusters} * cs > kMaxRefcountTableBytes) {
    return Bad("refcount_table_clusters " + std::to_string(h.refcount_table_clusters) +
               " is out of range");
  }
  if (h.nb_snapshots > 0 && !Aligned(h.snapshots_offset, cs)) {
    return Bad("snapshots_offset is not a cluster boundary");
  }
  // Tables may lie past the end of a file only in a torn image; reading them
  // is then a short read the caller reports. Offsets above 2^56 cannot be.
  for (uint64_t off : {h.l1_table_offset, h.refcount_table_offset, h.snapshots_offset}) {
    if (off >= (1ull << 56)) return Bad("a table offset is above 2^56");
  }
  (void)file_size;
  return OkStatus();
}

}  // namespace

uint64_t Header::l1_entries_needed() const {
  const uint64_t per_l2 = cluster_size() * l2_entries();
  return (size + per_l2 - 1) / per_l2;
}

StatusOr<Header> ParseHeader(std::span<const uint8_t> b, uint64_t file_size) {
  if (b.size() < kV2HeaderLength) return Bad("shorter than 72 bytes");
  if (Be32(&b[0]) != kMagic) return Bad("no QFI\\xfb magic");
  Header h;
  h.version = Be32(&b[4]);
  if (h.version != 2 && h.version != 3) {
    return UnsupportedError("qcow2 version " + std::to_string(h.version) +
                            " (this build reads versions 2 and 3)");
  }
  h.backing_file_offset = Be64(&b[8]);
  h.backing_file_size = Be32(&b[16]);
  h.cluster_bits = Be32(&b[20]);
  h.size = Be64(&b[24]);
  h.crypt_method = Be32(&b[32]);
  h.l1_size = Be32(&b[36]);
  h.l1_table_offset = Be64(&b[40]);
  h.refcount_table_offset = Be64(&b[48]);
  h.refcount_table_clusters = Be32(&b[56]);
  h.nb_snapshots = Be32(&b[60]);
  h.snapshots_offset = Be64(&b[64]);
  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits) {
    return Bad("cluster_bits " + std::to_string(h.cluster_bits) + " (9 to 21 are valid)");
  }
  if (h.size > (1ull << 62)) return Bad("size " + std::to_string(h.size) + " is above 2^62");
  if (h.version == 2) {
    h.refcount_order = 4;
    h.header_length = kV2HeaderLength;
  } else {
    if (b.size() < kV3HeaderLength) return Bad("a version 3 header shorter than 104 bytes");
    h.incompatible_features = Be64(&b[72]);
    h.compatible_features = Be64(&b[80]);
    h.autoclear_features = Be64(&b[88]);
    h.refcount_order = Be32(&b[96]);
    h.header_length = Be32(&b[100]);
    if (h.refcount_order > 6) {
      return Bad("refcount_order " + std::to_string(h.refcount_order) + " (0 to 6 are valid)");
    }
    if (h.header_length < kV3HeaderLength || h.header_length % 8 != 0 ||
        h.header_length > h.cluster_size() || h.header_length > b.size()) {
      return Bad("header_length " + std::to_string(h.header_length));
    }
    if (h.header_length > kV3HeaderLength) h.compression_type = b[104];
    if (h.compression_type != kCompressionZlib &&
        !(h.incompatible_features & kIncompatCompressionType)) {
      return Bad("compression_type " + std::to_string(h.compression_type) +
                 " without the compression type feature bit");
    }
  }
  const size_t limit = std::min<uint64_t>(b.size(), h.cluster_size());
  if (h.backing_file_offset != 0) {
    if (h.backing_file_size == 0 || h.backing_file_size > kMaxBackingNameBytes ||
        h.backing_file_offset >= limit || h.backing_file_size > limit - h.backing_file_offset) {
      return Bad("the backing file name lies outside the header cluster");
    }
    h.backing_file.assign(reinterpret_cast<const char*>(&b[h.backing_file_offset]),
                          h.backing_file_size);
  }
  // Extensions end at the backing file name when there is one.
  const size_t ext_limit = h.backing_file_offset != 0 ? h.backing_file_offset : limit;
  if (h.header_length > ext_limit) return Bad("the backing file name overlaps the header");
  VSS_RETURN_IF_ERROR(ParseExtensions(b, h.header_length, ext_limit, h));
  VSS_RETURN_IF_ERROR(CheckTables(h, file_size));
  return h;
}

std::optional<std::string> SupportProblem(const Header& h, bool writable) {
  if (h.crypt_method != 0) return "encryption (crypt_method " + std::to_string(h.crypt_method) + ")";
  for (const HeaderExtension& e : h.extensions) {
    if (e.type == kExtEncryption) return std::string("encryption (LUKS header extension)");
  }
  if (h.incompatible_features & kIncompatExternalData) return std::string("an external data file");
  if (uint64_t unknown = h.incompatible_features & ~kIncompatKnown) {
    char hex[32];
    std::snprintf(hex, sizeof(hex), "0x%llx", static_cast<unsigned long long>(unknown));
    return std::string("unknown incompatible feature bits ") + hex;
  }
  if (h.compression_type != kCompressionZlib && h.compression_type != kCompressionZstd) {
    return "compression type " + std::to_string(h.compression_type);
  }
  if (writable && (h.incompatible_features & kIncompatCorrupt)) {
    return std::string("the image is marked corrupt (open it read-only, or repair it)");
  }
  return std::nullopt;
}

StatusOr<std::vector<uint8_t>> SerializeHeader(const Header& h) {
  std::vector<uint8_t> out(h.cluster_size(), 0);
  const uint32_t header_length = h.version == 2 ? kV2HeaderLength : h.header_length;
  size_t at = header_length;
  auto put_ext = [&](uint32_t type, std::span<const uint8_t> data) -> bool {
    uint64_t padded = (data.size() + 7) & ~size_t{7};
    if (at + 8 + padded > out.size()) return false;
    PutBe32(&out[at], type);
    PutBe32(&out[at + 4], static_cast<uint32_t>(data.size()));
    if (!data.empty()) std::memcpy(&out[at + 8], data.data(), data.size());
    at += 8 + padded;
    return true;
  };
  bool fits = true;
  if (!h.backing_format.empty()) {
    fits &= put_ext(kExtBackingFormat,
                    {reinterpret_cast<const uint8_t*>(h.backing_format.data()),
                     h.backing_format.size()});
  }
  for (const HeaderExtension& e : h.extensions) {
    if (e.type != kExtBackingFormat && e.type != kExtEnd) fits &= put_ext(e.type, e.data);
  }
  fits &= put_ext(kExtEnd, {});
  uint64_t backing_offset = 0;
  if (!h.backing_file.empty()) {
    if (h.backing_file.size() > kMaxBackingNameBytes || at + h.backing_file.size() > out.size()) {
      fits = false;
    } else {
      backing_offset = at;
      std::memcpy(&out[at], h.backing_file.data(), h.backing_file.size());
    }
  }
  if (!fits) return InvalidArgumentError("qcow2: the header does not fit in one cluster");
  PutBe32(&out[0], kMagic);
  PutBe32(&out[4], h.version);
  PutBe64(&out[8], backing_offset);
  PutBe32(&out[16], static_cast<uint32_t>(h.backing_file.size()));
  PutBe32(&out[20], h.cluster_bits);
  PutBe64(&out[24], h.size);
  PutBe32(&out[32], h.crypt_method);
  PutBe32(&out[36], h.l1_size);
  PutBe64(&out[40], h.l1_table_offset);
  PutBe64(&out[48], h.refcount_table_offset);
  PutBe32(&out[56], h.refcount_table_clusters);
  PutBe32(&out[60], h.nb_snapshots);
  PutBe64(&out[64], h.snapshots_offset);
  if (h.version >= 3) {
    PutBe64(&out[72], h.incompatible_features);
    PutBe64(&out[80], h.compatible_features);
    PutBe64(&out[88], h.autoclear_features);
    PutBe32(&out[96], h.refcount_order);
    PutBe32(&out[100], header_length);
    if (header_length > kV3HeaderLength) out[104] = h.compression_type;
  }
  return out;
}

CompressedRef DecodeCompressed(uint64_t e, uint32_t cluster_bits) {
  const uint32_t x = 62 - (cluster_bits - 8);
  const uint64_t offset_mask = (1ull << x) - 1;
  const uint64_t sectors_mask = (1ull << (62 - x)) - 1;
  CompressedRef r;
  r.host_offset = e & offset_mask;
  const uint64_t extra_sectors = (e >> x) & sectors_mask;
  // The data spans to the end of the sector holding host_offset, plus the
  // additional sectors.
  r.max_bytes = (extra_sectors + 1) * 512 - (r.host_offset & 511);
  return r;
}

uint64_t EncodeCompressed(uint64_t host_offset, uint64_t bytes, uint32_t cluster_bits) {
  const uint32_t x = 62 - (cluster_bits - 8);
  const uint64_t last_sector = (host_offset + bytes - 1) / 512;
  const uint64_t extra_sectors = last_sector - host_offset / 512;
  return kL2Compressed | (extra_sectors << x) | host_offset;
}

uint64_t GetRefcount(std::span<const uint8_t> block, uint64_t i, uint32_t order) {
  switch (order) {
    case 0: return (block[i / 8] >> (i % 8)) & 0x1;
    case 1: return (block[i / 4] >> (2 * (i % 4))) & 0x3;
    case 2: return (block[i / 2] >> (4 * (i % 2))) & 0xf;
    case 3: return block[i];
    case 4: return Be16(&block[2 * i]);
    case 5: return Be32(&block[4 * i]);
    default: return Be64(&block[8 * i]);
  }
}

void SetRefcount(std::span<uint8_t> block, uint64_t i, uint32_t order, uint64_t v) {
  auto set_bits = [&](uint64_t byte, unsigned shift, unsigned mask) {
    block[byte] = static_cast<uint8_t>((block[byte] & ~(mask << shift)) | ((v & mask) << shift));
  };
  switch (order) {
    case 0: set_bits(i / 8, i % 8, 0x1); break;
    case 1: set_bits(i / 4, 2 * (i % 4), 0x3); break;
    case 2: set_bits(i / 2, 4 * (i % 2), 0xf); break;
    case 3: block[i] = static_cast<uint8_t>(v); break;
    case 4: PutBe16(&block[2 * i], static_cast<uint16_t>(v)); break;
    case 5: PutBe32(&block[4 * i], static_cast<uint32_t>(v)); break;
    default: PutBe64(&block[8 * i], v); break;
  }
}

}  // namespace vss::qcow2
