// vss_bench: the engine's speed, latency and space figures, each speed figure
// measured against a plain raw file in the same run. It asserts nothing.
//
//   vss_bench --dir DIR [--size-mib N] [--chunk-size SIZE] [--reps N]
//             [--only NAME[,NAME...]]
//
// Output: one JSON object per line on stdout, {"name", "value", "unit", and
// where the figure is compared with the raw file "raw_value" and
// "ratio_to_raw" = ours / raw throughput (so 1.0 is "as fast as raw", higher
// is better), plus extra fields}. Progress goes to stderr. DIR is scratch
// space (files are created and removed in it); it must be on the file system
// being measured. Everything is removed at the end.
//
// How the comparison is made fair:
//   - "raw" is the same I/O pattern with pwrite(2)/pread(2) on a plain file
//     opened with open(2) and made sparse with ftruncate(2) — no vss code.
//     "ours" is engine::Volume (a RawImage of the same size underneath)
//     through engine::Store, with its catalog and diff area in DIR.
//   - Both files are first pre-filled with the same data (1 MiB writes),
//     made durable (fdatasync / Volume::Flush), then read once, so both start
//     allocated and with a warm page cache. "First writes" therefore preserve
//     real data on our side while the raw side overwrites the same bytes.
//   - The timed phase runs the same offsets, lengths and bytes on both sides
//     and, for writes, ends with one durability point whose time counts: one
//     fdatasync of the raw file; Volume::Flush() for ours (image fdatasync
//     plus the engine's own diff-area sync and catalog commit).
//   - Data is "mixed": per 4 KiB, random bytes alternating with runs of one
//     byte (about half of it compresses away), never all zeros.
//   - Raw and ours alternate within each repetition. Every repetition of a
//     first-write test starts from freshly created and pre-filled files on
//     both sides (a new store, volume and shadow for ours). Rewrite and read
//     tests set each side up once and then alternate timed passes. The value
//     is the median over the repetitions (at least 5 for rewrite and reads;
//     the samples are printed too), and ratio_to_raw = median(ours) /
//     median(raw).
//   - Extra fields of write tests: sync_s / raw_sync_s (median seconds of
//     the final durability point, inside the timed figure) and cpu_s /
//     raw_cpu_s (median CPU seconds, user + system, of the timed phase), to
//     tell CPU cost from I/O wait.
//   - The machine's other load is not controlled: run it on an idle machine
//     for figures worth comparing; the CPU-bound figures (cpu_s, reads)
//     scale with how much of a core the benchmark gets.
//
// The figures:
//   seq_write_first            1 MiB sequential writes over the whole volume,
//                              every chunk not yet preserved since the shadow;
//                              one non-persistent shadow (as VSS's backup
//                              context: the engine may skip diff-area
//                              syncs). MiB/s.
//   seq_write_first_persistent the same with one persistent shadow
//                              (as client-accessible: each write's preserved
//                              records are fdatasync'ed before its overwrite
//                              reaches the image; the engine's write-behind
//                              shares one sync among the pending writes).
//                              MiB/s.
//   rand4k_write_first         4 KiB writes at random 4 KiB-aligned places,
//                              one in each chunk, chunks in random order (so
//                              each write preserves one chunk), non-persistent
//                              shadow. IOPS (MiB/s as an extra field).
//   rand4k_write_first_persistent  the same, persistent shadow (records
//                              synced before the overwrites, as rule 1
//                              requires, by write-behind syncs shared among
//                              pending writes; the raw side still syncs once
//                              at the end), 1024 writes. IOPS.
//   rewrite                    1 MiB sequential writes over chunks already
//                              preserved in the newest epoch (no copy-on-write
//                              work left; non-persistent shadow). MiB/s.
//   shadow_read_unchanged      1 MiB sequential reads of a shadow of a volume
//                              that did not change since (all from the image),
//                              vs reads of the raw file. MiB/s, warm cache.
//   shadow_read_preserved      1 MiB sequential reads of a shadow whose every
//                              chunk was overwritten since (all from diff-area
//                              records: read, checksum, decompress), vs reads
//                              of the raw file. MiB/s, warm cache.
//   shadow_create_ms_1GiB / _1TiB  CreateShadowSet of one persistent shadow of
//                              a sparse volume of that size holding 32 MiB of
//                              data spread over it; between creations a few
//                              chunks are written and the volume flushed
//                              (untimed), so the figure is the engine's own
//                              cost. Median of 9 creations, ms.
//   delete_shadow_ms           DeleteShadow of the persistent shadow at the end
//                              of each seq_write_first_persistent repetition
//                              (every chunk of the volume preserved, index
//                              flushed; extra: preserved_chunks). The only
//                              shadow, so its records are all freed (holes
//                              punched). Median over reps, ms.
//   index_bytes_per_preserved_chunk  Stats().index_memory_bytes /
//                              preserved_chunks, from the same volume before
//                              the deletion.
//   diff_bytes_per_preserved_byte_compressible  a volume filled with
//                              pseudo-English text, shadowed, overwritten:
//                              Stats().diff_used_bytes / bytes preserved
//                              (record headers and 4 KiB alignment included).
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vss/engine/store.h"
#include "vss/engine/volume.h"

namespace {

using vss::Guid;
using vss::Status;
using vss::StatusOr;
using vss::engine::Store;
using vss::engine::Volume;
using Json = nlohmann::ordered_json;

constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB, kGiB = 1024 * kMiB;
constexpr uint64_t kIo = kMiB;          // sequential I/O size
constexpr uint64_t kSmallIo = 4 * kKiB;  // random I/O size

struct Options {
  std::string dir;
  uint64_t size = 512 * kMiB;
  uint32_t chunk_size = vss::engine::kDefaultChunkSize;
  int reps = 3;
  std::set<std::string> only;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "vss_bench: %s\n", what.c_str());
  std::exit(1);
}
void Check(const Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}
template <typename T>
T Check(StatusOr<T> s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.status().ToString());
  return std::move(s).value();
}
void Progress(const std::string& msg) { std::fprintf(stderr, "# %s\n", msg.c_str()); }

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
// CPU seconds (user + system) this process used so far.
double CpuNow() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
double Round(double v, int digits) {
  double p = 1;
  for (int i = 0; i < digits; ++i) p *= 10;
  return static_cast<double>(static_cast<long long>(v * p + (v < 0 ? -0.5 : 0.5))) / p;
}
Json Rounded(const std::vector<double>& v, int digits) {
  Json a = Json::array();
  for (double x : v) a.push_back(Round(x, digits));
  return a;
}
void Emit(const Json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------
// Data. A pool of deterministic bytes per seed; the bytes written at volume
// offset o in a pass with seed s are pool(s)[o % kPoolBytes ...]. Chunks are
// compressed one by one, so the repetition every 16 MiB does not help zstd.

constexpr uint64_t kPoolBytes = 16 * kMiB;

struct Rng {
  uint64_t s;
  uint64_t Next() {  // splitmix64
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }
};

// Random bytes alternating with runs of one byte, segments of 8..71 bytes:
// about half of every 4 KiB compresses away, like typical VM disk content.
void FillMixed(uint8_t* p, size_t n, uint64_t seed) {
  Rng r{seed};
  size_t i = 0;
  bool random = true;
  while (i < n) {
    size_t len = std::min<size_t>(n - i, 8 + r.Below(64));
    if (random) {
      for (size_t k = 0; k < len; ++k) p[i + k] = static_cast<uint8_t>(r.Next() >> 24);
    } else {
      std::memset(p + i, static_cast<int>(r.Next() & 0xff) | 1, len);
    }
    i += len;
    random = !random;
  }
}

// Pseudo-English: words drawn with a Zipf-like skew from a small vocabulary,
// sentences with capitals and punctuation, lines and paragraphs.
void FillText(uint8_t* p, size_t n, uint64_t seed) {
  static const char* const kWords[] = {
      "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "was",
      "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from",
      "at", "which", "but", "have", "an", "had", "they", "you", "were", "their",
      "one", "all", "we", "can", "her", "has", "there", "been", "if", "more",
      "when", "will", "would", "who", "so", "no", "volume", "shadow", "copy",
      "disk", "image", "backup", "writer", "service", "system", "process",
      "between", "under", "through", "against", "during", "without", "before",
      "people", "number", "government", "company", "information", "development",
      "question", "important", "different", "following", "national", "possible",
      "something", "country", "problem", "however", "children", "business",
      "together", "already", "general", "history", "example", "interest",
      "remember", "language", "community", "experience", "understand", "market",
      "morning", "evening", "window", "garden", "river", "mountain", "station"};
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  Rng r{seed};
  size_t i = 0, line = 0, words_in_sentence = 0;
  bool capital = true;
  while (i < n) {
    // Zipf-ish: the minimum of two uniform draws, squared-ish skew.
    size_t a = r.Below(kCount), b = r.Below(kCount);
    std::string w = kWords[std::min(a, b)];
    if (r.Below(40) == 0) w = std::to_string(r.Below(10000));
    if (capital) w[0] = static_cast<char>(std::toupper(w[0]));
    capital = false;
    ++words_in_sentence;
    if (words_in_sentence > 6 && r.Below(8) == 0) {
      w += r.Below(5) == 0 ? "?" : ".";
      capital = true;
      words_in_sentence = 0;
    } else if (r.Below(12) == 0) {
      w += ",";
    }
    if (line + w.size() + 1 > 72) {
      w = "\n" + w;
      line = 0;
      if (capital && r.Below(6) == 0) w = "\n" + w;
    } else if (line > 0) {
      w = " " + w;
    }
    line += w.size();
    size_t k = std::min(w.size(), n - i);
    std::memcpy(p + i, w.data(), k);
    i += k;
  }
}

class Pool {
 public:
  Pool(uint64_t seed, bool text) : bytes_(kPoolBytes + kMiB) {
    if (text) FillText(bytes_.data(), bytes_.size(), seed);
    else FillMixed(bytes_.data(), bytes_.size(), seed);
  }
  std::span<const uint8_t> At(uint64_t offset, uint64_t len) const {
    return {bytes_.data() + offset % kPoolBytes, len};
  }

 private:
  std::vector<uint8_t> bytes_;
};

const Pool& MixedPool(uint64_t seed) {
  static std::vector<std::unique_ptr<Pool>> pools(8);
  if (!pools.at(seed)) pools[seed] = std::make_unique<Pool>(seed * 7919 + 1, false);
  return *pools[seed];
}

// ---------------------------------------------------------------------------
// I/O patterns.

struct Op {
  uint64_t offset;
  uint64_t length;
};

std::vector<Op> SeqOps(uint64_t size, uint64_t io) {
  std::vector<Op> ops;
  for (uint64_t o = 0; o < size; o += io) ops.push_back({o, std::min(io, size - o)});
  return ops;
}

// One 4 KiB write in each of `count` distinct chunks, in random order, at a
// random 4 KiB-aligned place inside the chunk.
std::vector<Op> Rand4kOps(uint64_t size, uint32_t chunk_size, uint64_t count, uint64_t seed) {
  uint64_t chunks = (size + chunk_size - 1) / chunk_size;
  std::vector<uint64_t> order(chunks);
  for (uint64_t i = 0; i < chunks; ++i) order[i] = i;
  Rng r{seed};
  for (uint64_t i = chunks; i > 1; --i) std::swap(order[i - 1], order[r.Below(i)]);
  std::vector<Op> ops;
  for (uint64_t i = 0; i < std::min(count, chunks); ++i) {
    uint64_t start = order[i] * chunk_size;
    uint64_t blocks = std::max<uint64_t>(1, std::min<uint64_t>(chunk_size, size - start) / kSmallIo);
    uint64_t off = start + r.Below(blocks) * kSmallIo;
    ops.push_back({off, std::min(kSmallIo, size - off)});
  }
  return ops;
}

// ---------------------------------------------------------------------------
// The two sides. Each is a "device" with write, read and a durability point.

class Side {
 public:
  virtual ~Side() = default;
  virtual void Write(uint64_t off, std::span<const uint8_t> data) = 0;
  virtual void Read(uint64_t off, std::span<uint8_t> buf) = 0;
  virtual void Sync() = 0;
};

// Plain file: open(2), ftruncate(2), pwrite(2), pread(2), fdatasync(2).
class RawSide final : public Side {
 public:
  RawSide(std::string path, uint64_t size) : path_(std::move(path)) {
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) Die("open " + path_ + ": " + std::strerror(errno));
    if (ftruncate(fd_, static_cast<off_t>(size)) != 0) Die("ftruncate: " + std::string(std::strerror(errno)));
  }
  ~RawSide() override {
    close(fd_);
    unlink(path_.c_str());
  }
  void Write(uint64_t off, std::span<const uint8_t> d) override {
    for (size_t done = 0; done < d.size();) {
      ssize_t n = pwrite(fd_, d.data() + done, d.size() - done, static_cast<off_t>(off + done));
      if (n <= 0) Die("pwrite: " + std::string(std::strerror(errno)));
      done += static_cast<size_t>(n);
    }
  }
  void Read(uint64_t off, std::span<uint8_t> b) override {
    for (size_t done = 0; done < b.size();) {
      ssize_t n = pread(fd_, b.data() + done, b.size() - done, static_cast<off_t>(off + done));
      if (n <= 0) Die("pread: " + std::string(std::strerror(errno)));
      done += static_cast<size_t>(n);
    }
  }
  void Sync() override {
    if (fdatasync(fd_) != 0) Die("fdatasync: " + std::string(std::strerror(errno)));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// A store with one volume in its own directory (removed on destruction).
class EngineSide final : public Side {
 public:
  EngineSide(std::string dir, uint64_t size, uint32_t chunk_size) : dir_(std::move(dir)) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    vss::engine::StoreOptions so;
    so.dir = dir_ + "/store";
    store_ = Check(Store::Open(std::move(so)), "open store");
    vss::engine::CreateVolumeRequest req;
    req.path = dir_ + "/volume.img";
    req.size = size;
    req.chunk_size = chunk_size;
    auto row = Check(store_->CreateVolume(req), "create volume");
    volume_id_ = row.id;
    volume_ = Check(store_->OpenVolume(row.id), "open volume");
  }
  ~EngineSide() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Write(uint64_t off, std::span<const uint8_t> d) override {
    Check(volume_->Write(off, d), "volume write");
  }
  void Read(uint64_t off, std::span<uint8_t> b) override {
    Check(volume_->Read(off, b), "volume read");
  }
  void Sync() override { Check(volume_->Flush(), "volume flush"); }

  Guid CreateShadow(bool persistent) {
    vss::engine::CreateSetRequest req;
    req.volumes = {volume_id_};
    req.persistent = persistent;
    auto set = Check(store_->CreateShadowSet(req), "create shadow");
    return set.shadows.at(0).shadow_id;
  }
  void DeleteShadow(const Guid& id) { Check(store_->DeleteShadow(id), "delete shadow"); }
  std::unique_ptr<vss::BlockDevice> OpenShadow(const Guid& id) {
    return Check(volume_->OpenShadow(id), "open shadow");
  }
  vss::engine::VolumeStats Stats() { return volume_->Stats(); }
  Volume* volume() { return volume_; }

 private:
  std::string dir_;
  std::unique_ptr<Store> store_;
  Guid volume_id_;
  Volume* volume_ = nullptr;
};

// Reads of a shadow device, for the read tests.
class ShadowSide final : public Side {
 public:
  explicit ShadowSide(std::unique_ptr<vss::BlockDevice> dev) : dev_(std::move(dev)) {}
  void Write(uint64_t, std::span<const uint8_t>) override { Die("shadow is read-only"); }
  void Read(uint64_t off, std::span<uint8_t> b) override {
    Check(dev_->Read(off, b), "shadow read");
  }
  void Sync() override {}

 private:
  std::unique_ptr<vss::BlockDevice> dev_;
};

void WritePass(Side& s, const std::vector<Op>& ops, const Pool& pool) {
  for (const Op& op : ops) s.Write(op.offset, pool.At(op.offset, op.length));
}
// The timed part of a write test: the pass, then one durability point.
// Returns the total seconds; adds the seconds of the durability point to
// *sync_s and the CPU seconds of the process (user + system) to
// *cpu_s.
double TimedWrite(Side& s, const std::vector<Op>& ops, const Pool& pool,
                  std::vector<double>* sync_s, std::vector<double>* cpu_s) {
  double c = CpuNow();
  double t = Now();
  WritePass(s, ops, pool);
  double w = Now();
  s.Sync();
  double e = Now();
  sync_s->push_back(e - w);
  cpu_s->push_back(CpuNow() - c);
  return e - t;
}
void ReadPass(Side& s, uint64_t size) {
  static std::vector<uint8_t> buf(kIo);
  for (const Op& op : SeqOps(size, kIo)) s.Read(op.offset, std::span(buf.data(), op.length));
}
// Pre-fill with pool seed 1, make it durable, read it once (warm cache).
void Prefill(Side& s, uint64_t size, const Pool& pool) {
  WritePass(s, SeqOps(size, kIo), pool);
  s.Sync();
  ReadPass(s, size);
}

// ---------------------------------------------------------------------------
// The benchmark.

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}

  bool Want(const std::string& name) const { return o_.only.empty() || o_.only.count(name); }

  void Run() {
    Progress("vss_bench: dir " + o_.dir + ", volume " + std::to_string(o_.size / kMiB) +
             " MiB, chunk " + std::to_string(o_.chunk_size / kKiB) + " KiB, " +
             std::to_string(o_.reps) + " repetitions");
    if (Want("seq_write_first")) WriteFirst("seq_write_first", false, SeqOps(o_.size, kIo));
    if (Want("seq_write_first_persistent") || Want("delete_shadow_ms") ||
        Want("index_bytes_per_preserved_chunk"))
      WriteFirst("seq_write_first_persistent", true, SeqOps(o_.size, kIo));
    if (Want("rand4k_write_first"))
      WriteFirst("rand4k_write_first", false, Rand4kOps(o_.size, o_.chunk_size, 16384, 42));
    if (Want("rand4k_write_first_persistent"))
      WriteFirst("rand4k_write_first_persistent", true,
                 Rand4kOps(o_.size, o_.chunk_size, 1024, 43));
    if (Want("rewrite")) Rewrite();
    if (Want("shadow_read_unchanged")) ShadowRead("shadow_read_unchanged", false);
    if (Want("shadow_read_preserved")) ShadowRead("shadow_read_preserved", true);
    if (Want("shadow_create_ms_1GiB")) ShadowCreate("shadow_create_ms_1GiB", kGiB);
    if (Want("shadow_create_ms_1TiB")) ShadowCreate("shadow_create_ms_1TiB", 1024 * kGiB);
    if (Want("diff_bytes_per_preserved_byte_compressible")) Compressible();
  }

 private:
  std::string RawPath() const { return o_.dir + "/raw.img"; }
  std::string EngineDir() const { return o_.dir + "/engine"; }

  static uint64_t Bytes(const std::vector<Op>& ops) {
    uint64_t n = 0;
    for (const Op& op : ops) n += op.length;
    return n;
  }

  // Prints a speed figure: ours vs raw seconds per repetition for `bytes`
  // bytes in `ops` operations.
  void EmitSpeed(const std::string& name, const std::vector<double>& ours_s,
                 const std::vector<double>& raw_s, uint64_t bytes, uint64_t ops, bool iops,
                 Json extra = Json::object()) {
    auto rate = [&](double s) { return iops ? ops / s : bytes / double(kMiB) / s; };
    std::vector<double> ours, raw;
    for (double s : ours_s) ours.push_back(rate(s));
    for (double s : raw_s) raw.push_back(rate(s));
    double m = Median(ours), r = Median(raw);
    Json j;
    j["name"] = name;
    j["value"] = Round(m, 1);
    j["unit"] = iops ? "IOPS" : "MiB/s";
    j["raw_value"] = Round(r, 1);
    j["ratio_to_raw"] = Round(m / r, 3);
    j["samples"] = Rounded(ours, 1);
    j["raw_samples"] = Rounded(raw, 1);
    j["ops"] = ops;
    j["bytes"] = bytes;
    for (auto& [k, v] : extra.items()) j[k] = v;
    Emit(j);
  }

  // First writes after a shadow: both sides pre-filled with pool 1; ours
  // takes a shadow; then the timed pass writes pool 2 and syncs once.
  void WriteFirst(const std::string& name, bool persistent, const std::vector<Op>& ops) {
    bool print = Want(name);
    std::vector<double> ours, raw, ours_sync, raw_sync, ours_cpu, raw_cpu, delete_ms;
    vss::engine::VolumeStats stats;
    for (int rep = 0; rep < o_.reps; ++rep) {
      Progress(name + ": repetition " + std::to_string(rep + 1));
      {
        RawSide r(RawPath(), o_.size);
        Prefill(r, o_.size, MixedPool(1));
        raw.push_back(TimedWrite(r, ops, MixedPool(2), &raw_sync, &raw_cpu));
      }
      {
        EngineSide e(EngineDir(), o_.size, o_.chunk_size);
        Prefill(e, o_.size, MixedPool(1));
        Guid shadow = e.CreateShadow(persistent);
        ours.push_back(TimedWrite(e, ops, MixedPool(2), &ours_sync, &ours_cpu));
        stats = e.Stats();
        if (persistent && name == "seq_write_first_persistent") {
          double d = Now();
          e.DeleteShadow(shadow);
          delete_ms.push_back((Now() - d) * 1000);
        }
      }
    }
    uint64_t bytes = Bytes(ops);
    double preserved_bytes = double(stats.preserved_chunks) * o_.chunk_size;
    if (print) {
      Json extra;
      if (name.starts_with("rand4k")) extra["mib_per_s"] = Round(Median([&] {
        std::vector<double> v;
        for (double s : ours) v.push_back(bytes / double(kMiB) / s);
        return v;
      }()), 2);
      extra["persistent_shadow"] = persistent;
      extra["sync_s"] = Round(Median(ours_sync), 3);
      extra["raw_sync_s"] = Round(Median(raw_sync), 3);
      extra["cpu_s"] = Round(Median(ours_cpu), 3);
      extra["raw_cpu_s"] = Round(Median(raw_cpu), 3);
      extra["preserved_chunks"] = stats.preserved_chunks;
      extra["diff_bytes_per_preserved_byte"] =
          Round(double(stats.diff_used_bytes) / preserved_bytes, 3);
      EmitSpeed(name, ours, raw, bytes, ops.size(), name.starts_with("rand4k"), extra);
    }
    if (!delete_ms.empty() && Want("delete_shadow_ms")) {
      Json j;
      j["name"] = "delete_shadow_ms";
      j["value"] = Round(Median(delete_ms), 2);
      j["unit"] = "ms";
      j["preserved_chunks"] = stats.preserved_chunks;
      j["samples"] = Rounded(delete_ms, 2);
      j["persistent_shadow"] = true;
      Emit(j);
    }
    if (name == "seq_write_first_persistent" && Want("index_bytes_per_preserved_chunk")) {
      Json j;
      j["name"] = "index_bytes_per_preserved_chunk";
      j["value"] = Round(double(stats.index_memory_bytes) / double(stats.preserved_chunks), 1);
      j["unit"] = "bytes";
      j["preserved_chunks"] = stats.preserved_chunks;
      j["index_memory_bytes"] = stats.index_memory_bytes;
      Emit(j);
    }
  }

  // Writes over chunks already preserved in the newest epoch: both sides are
  // pre-filled with pool 1 and overwritten once with pool 2 (untimed,
  // synced; ours under a non-persistent shadow, so every chunk is then
  // preserved). The timed passes then alternate raw / ours, writing pool 3
  // and pool 4 in turn, each pass ending with its sync.
  void Rewrite() {
    Progress("rewrite: setting up");
    std::vector<Op> ops = SeqOps(o_.size, kIo);
    RawSide r(RawPath(), o_.size);
    Prefill(r, o_.size, MixedPool(1));
    WritePass(r, ops, MixedPool(2));
    r.Sync();
    EngineSide e(EngineDir(), o_.size, o_.chunk_size);
    Prefill(e, o_.size, MixedPool(1));
    e.CreateShadow(false);
    WritePass(e, ops, MixedPool(2));
    e.Sync();
    std::vector<double> ours, raw, ours_sync, raw_sync, ours_cpu, raw_cpu;
    for (int rep = 0; rep < std::max(o_.reps, 5); ++rep) {
      const Pool& pool = MixedPool(3 + rep % 2);
      raw.push_back(TimedWrite(r, ops, pool, &raw_sync, &raw_cpu));
      ours.push_back(TimedWrite(e, ops, pool, &ours_sync, &ours_cpu));
    }
    Json extra;
    extra["sync_s"] = Round(Median(ours_sync), 3);
    extra["raw_sync_s"] = Round(Median(raw_sync), 3);
    extra["cpu_s"] = Round(Median(ours_cpu), 3);
    extra["raw_cpu_s"] = Round(Median(raw_cpu), 3);
    extra["preserved_chunks"] = e.Stats().preserved_chunks;
    EmitSpeed("rewrite", ours, raw, Bytes(ops), ops.size(), false, extra);
  }

  // Shadow reads, warm cache. Unchanged: the shadow of a pre-filled volume.
  // Preserved: the volume is overwritten after the shadow (untimed, synced).
  // Each side is set up once; the timed passes alternate raw/ours.
  void ShadowRead(const std::string& name, bool preserved) {
    Progress(name + ": setting up");
    RawSide r(RawPath(), o_.size);
    Prefill(r, o_.size, MixedPool(1));
    EngineSide e(EngineDir(), o_.size, o_.chunk_size);
    Prefill(e, o_.size, MixedPool(1));
    Guid shadow = e.CreateShadow(false);
    if (preserved) {
      WritePass(e, SeqOps(o_.size, kIo), MixedPool(2));
      e.Sync();
    }
    ShadowSide s(e.OpenShadow(shadow));
    ReadPass(s, o_.size);  // warm the diff area / image pages
    std::vector<double> ours, raw;
    for (int rep = 0; rep < std::max(o_.reps, 5); ++rep) {
      double t = Now();
      ReadPass(r, o_.size);
      raw.push_back(Now() - t);
      t = Now();
      ReadPass(s, o_.size);
      ours.push_back(Now() - t);
    }
    auto st = e.Stats();
    Json extra;
    extra["preserved_chunks"] = st.preserved_chunks;
    EmitSpeed(name, ours, raw, o_.size, (o_.size + kIo - 1) / kIo, false, extra);
  }

  // Shadow creation on a sparse volume of `size` bytes with 32 MiB of data.
  void ShadowCreate(const std::string& name, uint64_t size) {
    Progress(name + ": setting up");
    EngineSide e(EngineDir(), size, o_.chunk_size);
    const Pool& pool = MixedPool(1);
    for (uint64_t i = 0; i < 32; ++i) {
      uint64_t off = (size / 32 * i) / kIo * kIo;
      e.Write(off, pool.At(off, kIo));
    }
    e.Sync();
    constexpr int kCreations = 9;
    std::vector<double> ms;
    Rng rng{7};
    for (int i = 0; i < kCreations; ++i) {
      for (int k = 0; k < 4; ++k) {  // a little change since the last shadow
        uint64_t off = rng.Below(size / o_.chunk_size) * o_.chunk_size;
        e.Write(off, pool.At(off, o_.chunk_size));
      }
      e.Sync();
      double t = Now();
      e.CreateShadow(true);
      ms.push_back((Now() - t) * 1000);
    }
    Json j;
    j["name"] = name;
    j["value"] = Round(Median(ms), 2);
    j["unit"] = "ms";
    j["volume_bytes"] = size;
    j["samples"] = Rounded(ms, 2);
    j["persistent_shadow"] = true;
    Emit(j);
  }

  // Text-like data preserved: diff-area bytes per byte preserved.
  void Compressible() {
    Progress("diff_bytes_per_preserved_byte_compressible: running");
    Pool text(99, true);
    EngineSide e(EngineDir(), o_.size, o_.chunk_size);
    std::vector<Op> ops = SeqOps(o_.size, kIo);
    WritePass(e, ops, text);
    e.Sync();
    e.CreateShadow(false);
    WritePass(e, ops, MixedPool(2));
    e.Sync();
    auto st = e.Stats();
    double preserved = double(st.preserved_chunks) * o_.chunk_size;
    Json j;
    j["name"] = "diff_bytes_per_preserved_byte_compressible";
    j["value"] = Round(st.diff_used_bytes / preserved, 3);
    j["unit"] = "ratio";
    j["preserved_bytes"] = static_cast<uint64_t>(preserved);
    j["diff_used_bytes"] = st.diff_used_bytes;
    j["diff_allocated_bytes"] = st.diff_allocated_bytes;
    j["preserved_chunks"] = st.preserved_chunks;
    Emit(j);
  }

  Options o_;
};

uint64_t ParseSize(const std::string& text) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str()) Die("bad size: " + text);
  std::string suffix = end;
  if (suffix == "" || suffix == "B") return v;
  if (suffix == "K" || suffix == "KiB") return v * kKiB;
  if (suffix == "M" || suffix == "MiB") return v * kMiB;
  if (suffix == "G" || suffix == "GiB") return v * kGiB;
  Die("bad size suffix: " + text);
}

const char kUsage[] =
    "usage: vss_bench --dir DIR [--size-mib N] [--chunk-size SIZE] [--reps N]\n"
    "                 [--only NAME[,NAME...]]\n"
    "Prints one JSON object per line. NAMEs: seq_write_first,\n"
    "seq_write_first_persistent, rand4k_write_first, rand4k_write_first_persistent,\n"
    "rewrite, shadow_read_unchanged, shadow_read_preserved, shadow_create_ms_1GiB,\n"
    "shadow_create_ms_1TiB, delete_shadow_ms, index_bytes_per_preserved_chunk,\n"
    "diff_bytes_per_preserved_byte_compressible\n";

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fputs(kUsage, stderr);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--dir") o.dir = value();
    else if (a == "--size-mib") o.size = std::stoull(value()) * kMiB;
    else if (a == "--chunk-size") o.chunk_size = static_cast<uint32_t>(ParseSize(value()));
    else if (a == "--reps") o.reps = std::max(1, std::stoi(value()));
    else if (a == "--only") {
      std::stringstream ss(value());
      for (std::string n; std::getline(ss, n, ',');) o.only.insert(n);
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "vss_bench: unknown argument %s\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  static const std::set<std::string> kNames = {
      "seq_write_first", "seq_write_first_persistent", "rand4k_write_first",
      "rand4k_write_first_persistent", "rewrite", "shadow_read_unchanged",
      "shadow_read_preserved", "shadow_create_ms_1GiB", "shadow_create_ms_1TiB",
      "delete_shadow_ms", "index_bytes_per_preserved_chunk",
      "diff_bytes_per_preserved_byte_compressible"};
  for (const std::string& n : o.only) {
    if (!kNames.count(n)) {
      std::fprintf(stderr, "vss_bench: unknown figure %s\n%s", n.c_str(), kUsage);
      return 2;
    }
  }
  if (o.dir.empty() || o.size == 0) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::filesystem::create_directories(o.dir);
  o.dir = std::filesystem::absolute(o.dir).string();
  Bench(o).Run();
  return 0;
}
