#include "vss/formats/qcow2_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "qcow2_layout.h"
#include "vss/formats/image_probe.h"

namespace vss::qcow2 {
namespace {

constexpr uint64_t kSector = 512;
// The header, its extensions and the backing name lie in the first cluster.
constexpr size_t kMaxClusterSizeForHeader = size_t{1} << kMaxClusterBits;
// QEMU inflates compressed clusters with a 4 KiB window (raw deflate,
// window bits 12); a larger window could make a stream it cannot read.
constexpr int kDeflateWindowBits = -12;

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }
uint64_t DivUp(uint64_t v, uint64_t by) { return (v + by - 1) / by; }

bool AllZero(std::span<const uint8_t> data) {
  return std::all_of(data.begin(), data.end(),
                     [](uint8_t b) { return b == 0; });
}

// Raw deflate of `in` into `out`; the compressed size, or 0 when it does
// not fit in `out` (the cluster is then stored uncompressed).
size_t Deflate(std::span<const uint8_t> in, std::span<uint8_t> out) {
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kDeflateWindowBits, 9,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    return 0;
  }
  z.next_in = const_cast<Bytef*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  size_t n = rc == Z_STREAM_END ? z.total_out : 0;
  deflateEnd(&z);
  return n;
}

// A zstd frame of `in` in `out`; 0 when it does not fit.
size_t ZstdCompress(std::span<const uint8_t> in, std::span<uint8_t> out) {
  size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(),
                           ZSTD_CLEVEL_DEFAULT);
  return ZSTD_isError(n) ? 0 : n;
}

Status CheckOptions(const WriterOptions& o) {
  if (o.size == 0)
    return InvalidArgumentError(o.path + ": a qcow2 image of 0 bytes");
  if (o.cluster_bits < kMinClusterBits || o.cluster_bits > kMaxClusterBits) {
    return InvalidArgumentError(o.path + ": cluster size 2^" +
                                std::to_string(o.cluster_bits) +
                                " (512 B to 2 MiB are valid)");
  }
  if (!o.backing_file.empty() && o.backing_format != "qcow2" &&
      o.backing_format != "raw") {
    return InvalidArgumentError(o.path + ": backing format '" +
                                o.backing_format + "' (qcow2 or raw)");
  }
  Header h;
  h.cluster_bits = o.cluster_bits;
  h.size = o.size;
  if (h.l1_entries_needed() * 8 > kMaxL1Bytes) {
    return InvalidArgumentError(
        o.path + ": " + std::to_string(o.size) +
        " bytes need an L1 table above 32 MiB; use larger clusters");
  }
  return OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<Writer>> Writer::Create(const WriterOptions& options) {
  VSS_RETURN_IF_ERROR(CheckOptions(options));
  if (options.fs->Exists(options.path)) {
    return AlreadyExistsError(options.path +
                              " already exists; not overwriting it");
  }
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<File> file,
                       options.fs->Open(options.path, true));
  return std::unique_ptr<Writer>(new Writer(options, std::move(file)));
}

Writer::Writer(WriterOptions options, std::unique_ptr<File> file)
    : options_(std::move(options)), file_(std::move(file)) {
  // Cluster 0 is the header's, written last by Finish().
  host_end_ = cluster_size();
  refs_.push_back(1);
  packed_.resize(cluster_size());
}

Writer::~Writer() {
  if (finished_) return;
  file_.reset();
  options_.fs->Remove(options_.path).IgnoreError();
}

Status Writer::CheckNext(uint64_t offset, uint64_t length) {
  const uint64_t cs = cluster_size();
  if (finished_)
    return FailedPreconditionError(path() + ": the image is already finished");
  if (offset % cs != 0 || offset < next_offset_ || offset > size() ||
      length > size() - offset ||
      (length % cs != 0 && offset + length != size())) {
    return InvalidArgumentError(path() + ": clusters at " +
                                std::to_string(offset) + "+" +
                                std::to_string(length) +
                                " are unaligned, out of order or past the end");
  }
  next_offset_ = offset + length;
  return OkStatus();
}

Status Writer::Write(uint64_t offset, std::span<const uint8_t> data) {
  VSS_RETURN_IF_ERROR(CheckNext(offset, data.size()));
  const uint64_t cs = cluster_size();
  for (uint64_t at = 0; at < data.size(); at += cs) {
    std::span<const uint8_t> cluster =
        data.subspan(at, std::min<uint64_t>(cs, data.size() - at));
    const uint64_t guest_cluster = (offset + at) / cs;
    if (AllZero(cluster)) {
      if (has_backing()) {
        SetL2(guest_cluster, kL2Zero);
        ++stats_.zero_units;
      }
      continue;
    }
    stats_.data_bytes += cluster.size();
    if (cluster.size() < cs) {  // the image's short last cluster
      padded_.assign(cs, 0);
      std::copy(cluster.begin(), cluster.end(), padded_.begin());
      cluster = padded_;
    }
    VSS_RETURN_IF_ERROR(StoreCluster(guest_cluster, cluster));
  }
  return OkStatus();
}

Status Writer::WriteZeroes(uint64_t offset, uint64_t length) {
  VSS_RETURN_IF_ERROR(CheckNext(offset, length));
  if (!has_backing()) return OkStatus();  // unallocated clusters read as zeroes
  const uint64_t cs = cluster_size();
  for (uint64_t c = offset / cs; c < DivUp(offset + length, cs); ++c) {
    SetL2(c, kL2Zero);
    ++stats_.zero_units;
  }
  return OkStatus();
}

Status Writer::StoreCluster(uint64_t guest_cluster,
                            std::span<const uint8_t> data) {
  const uint64_t cs = cluster_size();
  ++stats_.data_units;
  size_t packed = 0;
  // Stored compressed only when that shrinks it (a compressed cluster
  // must be smaller than a cluster).
  std::span<uint8_t> out(packed_.data(), cs - 1);
  if (options_.compression == Compression::kZlib) packed = Deflate(data, out);
  if (options_.compression == Compression::kZstd)
    packed = ZstdCompress(data, out);
  if (packed == 0) return StoreRaw(guest_cluster, data);
  return StoreCompressed(guest_cluster,
                         std::span<const uint8_t>(packed_.data(), packed));
}

Status Writer::StoreRaw(uint64_t guest_cluster, std::span<const uint8_t> data) {
  const uint64_t cs = cluster_size();
  const uint64_t at = RoundUp(host_end_, cs);
  VSS_RETURN_IF_ERROR(file_->WriteAt(at, data).WithContext(path()));
  host_end_ = at + cs;
  AddRef(at / cs);
  SetL2(guest_cluster, at | kCopied);
  return OkStatus();
}

Status Writer::StoreCompressed(uint64_t guest_cluster,
                               std::span<const uint8_t> packed) {
  const uint64_t cs = cluster_size();
  // Each compressed cluster starts on a sector: at most cluster/512 + 1
  // of them touch one host cluster, well inside a 16-bit refcount.
  const uint64_t at = RoundUp(host_end_, kSector);
  VSS_RETURN_IF_ERROR(file_->WriteAt(at, packed).WithContext(path()));
  host_end_ = at + packed.size();
  for (uint64_t c = at / cs; c <= (host_end_ - 1) / cs; ++c) AddRef(c);
  SetL2(guest_cluster,
        EncodeCompressed(at, packed.size(), options_.cluster_bits));
  ++stats_.compressed_units;
  return OkStatus();
}

void Writer::SetL2(uint64_t guest_cluster, uint64_t entry) {
  const uint64_t per_table = cluster_size() / 8;
  std::vector<uint64_t>& table = l2_[guest_cluster / per_table];
  if (table.empty()) table.assign(per_table, 0);
  table[guest_cluster % per_table] = entry;
}

void Writer::AddRef(uint64_t host_cluster) {
  if (refs_.size() <= host_cluster) refs_.resize(host_cluster + 1, 0);
  ++refs_[host_cluster];
}

// Lays out and writes the L2 tables, the L1 table, the refcount blocks
// and the refcount table after the data, and sets the header's fields.
Status Writer::WriteTables() {
  const uint64_t cs = cluster_size();
  Header h;
  h.cluster_bits = options_.cluster_bits;
  h.size = size();
  h.l1_size = static_cast<uint32_t>(h.l1_entries_needed());
  uint64_t next = DivUp(host_end_, cs);  // the first free host cluster
  refs_.resize(next, 0);
  std::vector<uint8_t> l1(RoundUp(uint64_t{h.l1_size} * 8, cs), 0);
  std::vector<uint8_t> table(cs);
  for (const auto& [index, entries] : l2_) {
    for (uint64_t i = 0; i < entries.size(); ++i)
      PutBe64(&table[8 * i], entries[i]);
    VSS_RETURN_IF_ERROR(file_->WriteAt(next * cs, table).WithContext(path()));
    PutBe64(&l1[8 * index], next * cs | kCopied);
    refs_.push_back(1);
    ++next;
  }
  h.l1_table_offset = next * cs;
  VSS_RETURN_IF_ERROR(file_->WriteAt(next * cs, l1).WithContext(path()));
  next += l1.size() / cs;
  refs_.resize(next, 1);
  // The refcount blocks and table cover themselves: grow them until the
  // count of clusters they describe stops changing.
  const uint64_t per_block = h.refcount_block_entries();
  uint64_t blocks = 0, table_clusters = 0;
  for (;;) {
    uint64_t total = next + blocks + table_clusters;
    uint64_t b = DivUp(total, per_block);
    uint64_t t = DivUp(b * 8, cs);
    if (b == blocks && t == table_clusters) break;
    blocks = b;
    table_clusters = t;
  }
  if (table_clusters * cs > kMaxRefcountTableBytes) {
    return InvalidArgumentError(path() +
                                ": the refcount table would pass 8 MiB");
  }
  refs_.resize(next + blocks + table_clusters, 1);
  std::vector<uint8_t> reftable(table_clusters * cs, 0);
  for (uint64_t b = 0; b < blocks; ++b) {
    std::fill(table.begin(), table.end(), 0);
    for (uint64_t i = 0; i < per_block && b * per_block + i < refs_.size();
         ++i) {
      SetRefcount(table, i, h.refcount_order, refs_[b * per_block + i]);
    }
    VSS_RETURN_IF_ERROR(
        file_->WriteAt((next + b) * cs, table).WithContext(path()));
    PutBe64(&reftable[8 * b], (next + b) * cs);
  }
  h.refcount_table_offset = (next + blocks) * cs;
  h.refcount_table_clusters = static_cast<uint32_t>(table_clusters);
  VSS_RETURN_IF_ERROR(
      file_->WriteAt(h.refcount_table_offset, reftable).WithContext(path()));
  stats_.file_bytes = h.refcount_table_offset + reftable.size();

  h.backing_file = options_.backing_file;
  h.backing_format = has_backing() ? options_.backing_format : "";
  if (options_.compression == Compression::kZstd) {
    h.compression_type = kCompressionZstd;
    h.incompatible_features |= kIncompatCompressionType;
  }
  VSS_ASSIGN_OR_RETURN(std::vector<uint8_t> header, SerializeHeader(h));
  header_ = std::move(header);
  return OkStatus();
}

Status Writer::Finish() {
  if (finished_)
    return FailedPreconditionError(path() + ": the image is already finished");
  VSS_RETURN_IF_ERROR(WriteTables());
  // Orders the data and every table before the header that points at
  // them: until the header is written the file is not an image at all.
  VSS_RETURN_IF_ERROR(file_->Sync().WithContext("syncing " + path()));
  VSS_RETURN_IF_ERROR(file_->WriteAt(0, header_).WithContext(path()));
  // Makes the header durable before the export is reported done.
  VSS_RETURN_IF_ERROR(file_->Sync().WithContext("syncing " + path()));
  std::string dir = std::filesystem::path(path()).parent_path().string();
  // Makes the file's name durable.
  VSS_RETURN_IF_ERROR(options_.fs->SyncDir(dir.empty() ? "." : dir)
                          .WithContext("syncing the directory of " + path()));
  finished_ = true;
  return OkStatus();
}

StatusOr<BackingImage> InspectBackingFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    return NotFoundError("backing file " + path + " does not exist");
  if (fd < 0) return ErrnoError(errno, "backing file " + path);
  struct stat st;
  std::vector<uint8_t> head(kMaxClusterSizeForHeader);
  ssize_t n =
      ::fstat(fd, &st) == 0 ? ::pread(fd, head.data(), head.size(), 0) : -1;
  int err = errno;
  ::close(fd);
  if (n < 0) return ErrnoError(err, "backing file " + path);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return InvalidArgumentError("backing file " + path +
                                " is not a regular file");
  }
  head.resize(static_cast<size_t>(n));
  const ImageFormat format = ProbeImageFormat(head, {});
  if (format == ImageFormat::kRaw)
    return BackingImage{"raw", static_cast<uint64_t>(st.st_size)};
  if (format != ImageFormat::kQcow2) {
    return InvalidArgumentError("backing file " + path + " is a " +
                                std::string(ImageFormatName(format)) +
                                " image, not a qcow2 or raw image");
  }
  StatusOr<Header> h = ParseHeader(head, static_cast<uint64_t>(st.st_size));
  if (!h.ok())
    return InvalidArgumentError("backing file " + path + ": " +
                                h.status().message());
  if (std::optional<std::string> problem =
          SupportProblem(*h, /*writable=*/false)) {
    return InvalidArgumentError("backing file " + path + " uses " + *problem);
  }
  return BackingImage{"qcow2", h->size};
}

}  // namespace vss::qcow2
