// Model-based randomized test of the engine: random writes, write-zeroes,
// discards, shadow creates, deletes (oldest, middle, newest), reverts,
// store reopens and episodes of a tiny diff-area limit are applied both to a
// Volume and to a plain model that keeps the live bytes and a full copy of
// every shadow. After every step the live volume and every shadow are read
// in full and compared with the model; the shadows in the catalog must be
// exactly the model's (except that, while the diff area is tiny, the engine
// may delete the oldest shadows, which must then be named in events).
//
// Seed: VSS_SEED (default random), printed at start and in every failure.
// Ops: VSS_MODEL_OPS (default 20000, a quarter under sanitizers) split over
// several runs with different chunk sizes, volume sizes (never a multiple of
// the chunk size), diff-area file systems and index/segment settings.
// VSS_MODEL_VERBOSE=1 prints every operation.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine_test_util.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/base/mem_file_system.h"
#include "vss/formats/memory_device.h"

namespace vss::engine {
namespace {

using test_util::DescribeDiff;
using test_util::GatedOpener;
using test_util::ReadAll;
using test_util::TempDir;

struct RunConfig {
  uint64_t seed = 0;
  int run = 0;
  uint32_t chunk_size = 4096;
  uint64_t size = 0;
  int ops = 0;
  bool mem_fs = true;
  size_t index_flush_rows = 8192;
  uint64_t segment_bytes = uint64_t{1} << 30;
  size_t max_shadows = 6;

  std::string ToString() const {
    std::ostringstream os;
    os << "seed=" << seed << " run=" << run << " chunk_size=" << chunk_size
       << " size=" << size << " ops=" << ops
       << " diff_fs=" << (mem_fs ? "MemFileSystem" : "real")
       << " index_flush_rows=" << index_flush_rows
       << " segment_bytes=" << segment_bytes;
    return os.str();
  }
};

struct ModelShadow {
  Guid id;
  uint64_t epoch = 0;
  bool persistent = true;
  std::vector<uint8_t> bytes;
  std::unique_ptr<BlockDevice> dev;  // opened lazily; reset on reopen
};

class ModelRun {
 public:
  explicit ModelRun(const RunConfig& cfg)
      : cfg_(cfg), rng_(cfg.seed), dir_({.prefer_shm = true}) {}

  void Run() {
    SCOPED_TRACE(cfg_.ToString());
    verbose_ = test_util::EnvU64("VSS_MODEL_VERBOSE", 0) != 0;
    image_ = std::make_unique<MemoryDevice>(cfg_.size, "model.img");
    if (cfg_.mem_fs) memfs_ = std::make_unique<MemFileSystem>();
    live_.assign(cfg_.size, 0);
    ASSERT_NO_FATAL_FAILURE(OpenStore());
    VSS_ASSERT_OK_AND_ASSIGN(
        VolumeInfo row,
        store_->CreateVolume({.path = dir_.path() + "/model.img",
                              .size = cfg_.size,
                              .name = "model",
                              .chunk_size = cfg_.chunk_size,
                              .create = true}));
    vol_id_ = row.id;
    ASSERT_EQ(row.size, cfg_.size);
    ASSERT_EQ(row.chunk_size, cfg_.chunk_size);
    VSS_ASSERT_OK_AND_ASSIGN(vol_, store_->OpenVolume(vol_id_));
    ASSERT_EQ(vol_->size(), cfg_.size);
    ASSERT_NO_FATAL_FAILURE(SeenEvents());

    for (step_ = 0; step_ < cfg_.ops; ++step_) {
      SCOPED_TRACE("step " + std::to_string(step_));
      auto t0 = std::chrono::steady_clock::now();
      RandomOp();
      auto t1 = std::chrono::steady_clock::now();
      if (!::testing::Test::HasFailure()) SyncShadowsWithCatalog();
      if (!::testing::Test::HasFailure()) CheckAll();
      auto t2 = std::chrono::steady_clock::now();
      if (!history_.empty()) {
        std::string kind =
            history_.back().substr(history_.back().find(": ") + 2);
        kind = kind.substr(0, kind.find(' '));
        op_time_[kind] += std::chrono::duration<double>(t1 - t0).count();
        op_count_[kind]++;
      }
      op_time_["(checks)"] += std::chrono::duration<double>(t2 - t1).count();
      if (::testing::Test::HasFailure()) {
        PrintHistory();
        return;
      }
    }
    // A final reopen must keep everything (persistent shadows only).
    Log("final reopen");
    ASSERT_NO_FATAL_FAILURE(Reopen());
    ASSERT_NO_FATAL_FAILURE(SyncShadowsWithCatalog());
    ASSERT_NO_FATAL_FAILURE(CheckAll());
    if (::testing::Test::HasFailure()) PrintHistory();
    std::cout << "    done: " << op_count_["CreateShadowSet"] << " creates, "
              << op_count_["DeleteShadow"] << " deletes, "
              << op_count_["RevertToShadow"] << " reverts, "
              << op_count_["Reopen"] << " reopens, " << auto_deleted_
              << " shadows deleted for a full diff area" << std::endl;
    if (test_util::EnvU64("VSS_MODEL_TIMES", 0)) {
      for (const auto& [k, t] : op_time_) {
        std::cout << "    " << k << ": " << op_count_[k] << " ops, " << t
                  << " s\n";
      }
    }
  }

 private:
  // ---- plumbing -----------------------------------------------------------

  void Log(std::string op) {
    if (verbose_)
      std::cout << "[run " << cfg_.run << " step " << step_ << "] " << op
                << "\n";
    history_.push_back("step " + std::to_string(step_) + ": " + std::move(op));
    if (history_.size() > 40) history_.pop_front();
  }
  void PrintHistory() {
    std::cout << "FAILED " << cfg_.ToString() << " at step " << step_
              << "; reproduce with VSS_SEED=" << top_seed_ << "; last ops:\n";
    for (const auto& h : history_) std::cout << "  " << h << "\n";
    std::cout.flush();
  }

  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool Chance(int percent) { return Rand(100) < uint64_t(percent); }

  void OpenStore() {
    StoreOptions o;
    o.dir = dir_.path() + "/store";
    o.fs = memfs_.get();
    o.open_image = GatedOpener(image_.get(), nullptr);
    o.index_flush_rows = cfg_.index_flush_rows;
    o.segment_bytes = cfg_.segment_bytes;
    VSS_ASSERT_OK_AND_ASSIGN(store_, Store::Open(std::move(o)));
  }

  uint64_t NumChunks() const {
    return (cfg_.size + cfg_.chunk_size - 1) / cfg_.chunk_size;
  }

  // Picks a range of one of several shapes; always inside the volume and
  // non-empty.
  std::pair<uint64_t, uint64_t> PickRange(std::string* shape) {
    const uint64_t size = cfg_.size, cs = cfg_.chunk_size;
    uint64_t off = 0, len = 1;
    switch (Rand(7)) {
      case 0:  // unaligned, small to a few chunks
        *shape = "unaligned";
        off = Rand(size);
        len = 1 + Rand(std::min<uint64_t>(3 * cs, size - off));
        break;
      case 1: {  // whole chunks
        *shape = "chunk-aligned";
        uint64_t c = Rand(NumChunks());
        off = c * cs;
        len = std::min<uint64_t>((1 + Rand(3)) * cs, size - off);
        break;
      }
      case 2: {  // across a chunk boundary
        *shape = "spanning";
        uint64_t b = (1 + Rand(NumChunks() - 1)) * cs;
        off = b - 1 - Rand(std::min<uint64_t>(cs, b));
        len = std::min<uint64_t>((b - off) + 1 + Rand(cs), size - off);
        break;
      }
      case 3:  // touching the partial last chunk
        *shape = "tail";
        off = size - 1 - Rand(std::min<uint64_t>(size, 2 * cs));
        len = size - off;
        break;
      case 4:  // 512-byte sectors
        *shape = "sectors";
        off = Rand(size / 512) * 512;
        len = std::min<uint64_t>(512 * (1 + Rand(16)), size - off);
        break;
      case 5:  // tiny
        *shape = "tiny";
        off = Rand(size);
        len = 1 + Rand(std::min<uint64_t>(16, size - off));
        break;
      default:  // large
        *shape = "large";
        off = Rand(size / 2);
        len = 1 + Rand(size - off);
        break;
    }
    return {off, std::max<uint64_t>(len, 1)};
  }

  void FillData(std::span<uint8_t> out, std::string* kind) {
    switch (Rand(6)) {
      case 0:
        *kind = "zeros";
        std::fill(out.begin(), out.end(), 0);
        break;
      case 1: {
        *kind = "fill";
        std::fill(out.begin(), out.end(), uint8_t(1 + Rand(255)));
        break;
      }
      case 2: {
        *kind = "text";
        static constexpr char kText[] = "the quick brown fox jumps over ";
        for (size_t i = 0; i < out.size(); ++i)
          out[i] = kText[i % (sizeof(kText) - 1)];
        break;
      }
      default:
        *kind = "random";
        test_util::FillRandom(rng_(), 0, out);
        break;
    }
  }

  BlockDevice* ShadowDevice(ModelShadow& s) {
    if (s.dev == nullptr) {
      auto dev = vol_->OpenShadow(s.id);
      EXPECT_TRUE(dev.ok()) << "OpenShadow " << s.id.ToString() << ": "
                            << dev.status().ToString();
      if (!dev.ok()) return nullptr;
      s.dev = std::move(dev).value();
      EXPECT_EQ(s.dev->size(), cfg_.size);
      EXPECT_TRUE(s.dev->read_only()) << "shadow device is not read-only";
    }
    return s.dev.get();
  }

  // A device of a removed shadow must fail reads with kNotFound.
  void ExpectGone(ModelShadow& s, const std::string& why) {
    if (s.dev == nullptr) {
      auto dev = vol_->OpenShadow(s.id);
      EXPECT_FALSE(dev.ok()) << "OpenShadow of " << why << " shadow "
                             << s.id.ToString() << " succeeded";
      if (!dev.ok()) {
        EXPECT_EQ(dev.status().code(), StatusCode::kNotFound)
            << dev.status().ToString();
      }
      return;
    }
    std::vector<uint8_t> buf(std::min<uint64_t>(cfg_.size, 4096));
    Status st = s.dev->Read(0, buf);
    EXPECT_EQ(st.code(), StatusCode::kNotFound)
        << "read of " << why << " shadow " << s.id.ToString()
        << " through a device opened before: " << st.ToString();
  }

  void SeenEvents() {
    VSS_ASSERT_OK_AND_ASSIGN(auto events,
                             store_->ListEvents(vol_id_));
    events_seen_ = events.size();
  }

  // Events recorded since the last call.
  std::vector<EventInfo> NewEvents() {
    auto events = store_->ListEvents(vol_id_);
    EXPECT_TRUE(events.ok()) << events.status().ToString();
    if (!events.ok()) return {};
    std::vector<EventInfo> out;
    for (size_t i = events_seen_; i < events->size(); ++i)
      out.push_back((*events)[i]);
    events_seen_ = events->size();
    return out;
  }

  static bool EventNames(const std::vector<EventInfo>& events,
                         const Guid& shadow) {
    for (const auto& e : events) {
      if (e.shadow_id && *e.shadow_id == shadow) return true;
      if (e.message.find(shadow.ToString()) != std::string::npos) return true;
    }
    return false;
  }

  static std::string EventsToString(
      const std::vector<EventInfo>& events) {
    std::string s;
    for (const auto& e : events) s += "[" + e.kind + ": " + e.message + "] ";
    return s.empty() ? "(none)" : s;
  }

  // ---- operations ---------------------------------------------------------

  void RandomOp() {
    const int r = int(Rand(1000));
    if (tiny_left_ > 0 && --tiny_left_ == 0) {
      ASSERT_NO_FATAL_FAILURE(EndTiny());
      return;
    }
    if (r < 380) return DoWrite();
    if (r < 450) return DoZeroOrDiscard(/*discard=*/false);
    if (r < 520) return DoZeroOrDiscard(/*discard=*/true);
    if (r < 550) return DoFlush();
    if (r < 660) return DoCreate();
    if (r < 750) return DoDelete();
    if (r < 780) return DoRevert();
    if (r < 800) return DoReopen();
    if (r < 815) return BeginTiny();
    if (r < 850) return CheckChangedExtents();
    if (r < 870) return DoVerify();
    if (r < 890) return CheckExtents();
    if (r < 895) return DeleteUnknown();
    return PartialReads();
  }

  void DoWrite() {
    std::string shape, kind;
    auto [off, len] = PickRange(&shape);
    std::vector<uint8_t> data(len);
    FillData(data, &kind);
    Log("Write " + shape + " " + kind + " off=" + std::to_string(off) +
        " len=" + std::to_string(len));
    Status st = vol_->Write(off, data);
    ASSERT_TRUE(st.ok()) << "Write(" << off << ", " << len
                         << "): " << st.ToString();
    std::copy(data.begin(), data.end(), live_.begin() + off);
  }

  void DoZeroOrDiscard(bool discard) {
    std::string shape;
    auto [off, len] = PickRange(&shape);
    Log(std::string(discard ? "Discard " : "WriteZeroes ") + shape +
        " off=" + std::to_string(off) + " len=" + std::to_string(len));
    Status st = discard ? vol_->Discard(off, len) : vol_->WriteZeroes(off, len);
    ASSERT_TRUE(st.ok()) << (discard ? "Discard(" : "WriteZeroes(") << off
                         << ", " << len << "): " << st.ToString();
    std::fill(live_.begin() + off, live_.begin() + off + len, 0);
  }

  void DoFlush() {
    Log("Flush");
    VSS_ASSERT_OK(vol_->Flush());
  }

  void DoCreate() {
    if (shadows_.size() >= cfg_.max_shadows) return DoDelete();
    CreateSetRequest req;
    req.volumes = {vol_id_};
    bool persistent = !Chance(12);
    std::string what;
    req.persistent = persistent;
    // The provider's record is opaque to the engine: any text comes back.
    if (persistent) {
      req.properties = "kind=" + std::to_string(Rand(3));
    } else {
      req.properties = Chance(50) ? "kind=backup\nrelease=manual" : "";
    }
    Log("CreateShadowSet properties='" + req.properties + "'" +
        (persistent ? " (persistent)" : " (non-persistent)"));
    VSS_ASSERT_OK_AND_ASSIGN(CreatedSet set, store_->CreateShadowSet(req));
    ASSERT_EQ(set.shadows.size(), 1u);
    ASSERT_EQ(set.shadows[0].volume_id, vol_id_);
    StatusOr<ShadowInfo> row = store_->FindShadow(set.shadows[0].shadow_id);
    ASSERT_TRUE(row.ok()) << "created shadow missing: " << row.status().ToString();
    EXPECT_EQ(row->persistent, persistent);
    EXPECT_EQ(row->properties, req.properties);
    EXPECT_EQ(row->set_id, set.set_id);
    if (!shadows_.empty()) {
      EXPECT_GT(row->epoch, shadows_.back().epoch) << "epochs must increase";
    }
    ModelShadow s;
    s.id = row->id;
    s.epoch = row->epoch;
    s.persistent = row->persistent;
    s.bytes = live_;
    history_.back() +=
        " -> " + s.id.ToString() + " epoch " + std::to_string(s.epoch);
    shadows_.push_back(std::move(s));
  }

  void DoDelete() {
    if (shadows_.empty()) return DoCreate();
    size_t i = 0;
    std::string which;
    switch (Rand(3)) {
      case 0:
        which = "oldest";
        i = 0;
        break;
      case 1:
        which = "middle";
        i = shadows_.size() >= 3 ? 1 + Rand(shadows_.size() - 2)
                                 : Rand(shadows_.size());
        break;
      default:
        which = "newest";
        i = shadows_.size() - 1;
        break;
    }
    Log("DeleteShadow " + which + " #" + std::to_string(i) + " of " +
        std::to_string(shadows_.size()) + " " + shadows_[i].id.ToString());
    VSS_ASSERT_OK(store_->DeleteShadow(shadows_[i].id));
    ModelShadow gone = std::move(shadows_[i]);
    shadows_.erase(shadows_.begin() + i);
    ExpectGone(gone, "deleted");
    EXPECT_EQ(store_->FindShadow(gone.id).status().code(), StatusCode::kNotFound)
        << "deleted shadow still in the catalog";
  }

  void DeleteUnknown() {
    Guid g = Guid::Generate();
    Log("DeleteShadow unknown " + g.ToString());
    Status st = store_->DeleteShadow(g);
    EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.ToString();
  }

  void DoRevert() {
    if (shadows_.empty()) return DoCreate();
    size_t k = Rand(shadows_.size());
    Log("RevertToShadow #" + std::to_string(k) + " of " +
        std::to_string(shadows_.size()) + " " + shadows_[k].id.ToString());
    VSS_ASSERT_OK(store_->RevertToShadow(shadows_[k].id));
    live_ = shadows_[k].bytes;
    std::vector<ModelShadow> removed;
    for (size_t j = k; j < shadows_.size(); ++j)
      removed.push_back(std::move(shadows_[j]));
    shadows_.resize(k);
    for (auto& s : removed) ExpectGone(s, "reverted-over");
  }

  void DoReopen() {
    Log("Reopen store");
    ASSERT_NO_FATAL_FAILURE(Reopen());
  }

  void Reopen() {
    for (auto& s : shadows_) s.dev.reset();
    vol_ = nullptr;
    store_.reset();
    ASSERT_NO_FATAL_FAILURE(OpenStore());
    VSS_ASSERT_OK_AND_ASSIGN(vol_, store_->OpenVolume(vol_id_));
    // Non-persistent shadows do not survive their owner.
    std::vector<Guid> dropped;
    for (size_t i = 0; i < shadows_.size();) {
      if (!shadows_[i].persistent) {
        dropped.push_back(shadows_[i].id);
        shadows_.erase(shadows_.begin() + i);
      } else {
        ++i;
      }
    }
    auto events = NewEvents();
    if (!dropped.empty()) {
      EXPECT_FALSE(events.empty())
          << dropped.size() << " non-persistent shadow(s) removed on reopen "
          << "without an event";
    }
    if (tiny_left_ > 0) {
      VSS_ASSERT_OK_AND_ASSIGN(auto da, store_->DiffAreaOf(vol_id_));
      EXPECT_EQ(da.max_bytes, tiny_max_) << "diff-area max lost on reopen";
    }
  }

  void BeginTiny() {
    if (tiny_left_ > 0) return DoWrite();
    VolumeStats st = vol_->Stats();
    tiny_max_ = int64_t(st.diff_used_bytes) +
                int64_t(Rand(4)) * (cfg_.chunk_size + 4096) +
                int64_t(Rand(4096));
    tiny_left_ = 10 + int(Rand(40));
    Log("ResizeDiffArea tiny max=" + std::to_string(tiny_max_) + " (used " +
        std::to_string(st.diff_used_bytes) + ") for " +
        std::to_string(tiny_left_) + " steps");
    VSS_ASSERT_OK(store_->ResizeDiffArea(vol_id_, tiny_max_));
  }

  void EndTiny() {
    Log("ResizeDiffArea unbounded");
    VSS_ASSERT_OK(store_->ResizeDiffArea(vol_id_, kUnbounded));
    // Shadows deleted by this step are still allowed (checked next).
    tiny_grace_ = true;
  }

  // Makes the model's shadows match the catalog: outside a tiny-diff-area
  // episode they must be equal; inside one, the engine may have deleted the
  // oldest shadows (a prefix), each named by a new event.
  void SyncShadowsWithCatalog() {
    VSS_ASSERT_OK_AND_ASSIGN(auto rows,
                             store_->ListShadowsOfVolume(vol_id_));
    std::set<Guid> in_catalog;
    for (const auto& r : rows) {
      in_catalog.insert(r.id);
      bool known =
          std::any_of(shadows_.begin(), shadows_.end(),
                      [&](const ModelShadow& s) { return s.id == r.id; });
      ASSERT_TRUE(known) << "catalog has shadow " << r.id.ToString()
                         << " (epoch " << r.epoch
                         << ") the model does not know";
    }
    std::vector<size_t> missing;
    for (size_t i = 0; i < shadows_.size(); ++i) {
      if (!in_catalog.count(shadows_[i].id)) missing.push_back(i);
    }
    const bool may_drop = tiny_left_ > 0 || tiny_grace_;
    tiny_grace_ = false;
    if (missing.empty()) {
      if (!may_drop) NewEvents();  // keep the event cursor current
      return;
    }
    std::string ids;
    for (size_t i : missing) ids += " " + shadows_[i].id.ToString();
    ASSERT_TRUE(may_drop) << "shadows vanished from the catalog:" << ids;
    for (size_t j = 0; j < missing.size(); ++j) {
      ASSERT_EQ(missing[j], j) << "diff area full: the engine deleted a shadow "
                               << "that is not among the oldest:" << ids;
    }
    auto events = NewEvents();
    for (size_t i : missing) {
      EXPECT_TRUE(EventNames(events, shadows_[i].id))
          << "shadow " << shadows_[i].id.ToString()
          << " deleted for a full diff area without an event naming it; "
          << "new events: " << EventsToString(events);
    }
    history_.back() += " (diff area full: engine deleted" + ids + ")";
    if (verbose_)
      std::cout << "  diff area full: engine deleted" << ids << "\n";
    auto_deleted_ += missing.size();
    std::vector<ModelShadow> removed;
    for (size_t j = 0; j < missing.size(); ++j)
      removed.push_back(std::move(shadows_[j]));
    shadows_.erase(shadows_.begin(), shadows_.begin() + missing.size());
    for (auto& s : removed) ExpectGone(s, "auto-deleted");
  }

  void CheckChangedExtents() {
    if (shadows_.empty()) return PartialReads();
    size_t i = Rand(shadows_.size());
    std::optional<size_t> j;
    if (Chance(50) && i + 1 < shadows_.size())
      j = i + 1 + Rand(shadows_.size() - i - 1);
    Log("ChangedExtents from #" + std::to_string(i) + " to " +
        (j ? "#" + std::to_string(*j) : std::string("live")));
    std::optional<Guid> to;
    if (j) to = shadows_[*j].id;
    VSS_ASSERT_OK_AND_ASSIGN(auto extents,
                             vol_->ChangedExtents(shadows_[i].id, to));
    const auto& a = shadows_[i].bytes;
    const auto& b = j ? shadows_[*j].bytes : live_;
    uint64_t prev_end = 0;
    bool first = true;
    for (const auto& e : extents) {
      ASSERT_GT(e.length, 0u) << "empty changed extent at " << e.offset;
      ASSERT_LE(e.offset + e.length, cfg_.size) << "extent past the end";
      if (!first) {
        ASSERT_GT(e.offset, prev_end) << "extents not sorted and merged";
      }
      first = false;
      prev_end = e.offset + e.length;
    }
    // Every byte that differs must be inside an extent.
    size_t k = 0;
    for (uint64_t off = 0; off < cfg_.size; ++off) {
      if (a[off] == b[off]) continue;
      while (k < extents.size() && extents[k].offset + extents[k].length <= off)
        ++k;
      ASSERT_TRUE(k < extents.size() && extents[k].offset <= off)
          << "byte " << off << " (chunk " << off / cfg_.chunk_size
          << ") differs but is not in any changed extent (" << extents.size()
          << " extents)";
    }
    if (j) {
      // Newer-to-older is an error.
      auto bad = vol_->ChangedExtents(shadows_[*j].id, shadows_[i].id);
      EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument)
          << "ChangedExtents(newer, older): " << bad.status().ToString();
    }
  }

  void DoVerify() {
    if (shadows_.empty()) return PartialReads();
    size_t i = Rand(shadows_.size());
    Log("Verify #" + std::to_string(i) + " " + shadows_[i].id.ToString());
    VSS_ASSERT_OK_AND_ASSIGN(VerifyReport rep, vol_->Verify(shadows_[i].id));
    EXPECT_TRUE(rep.errors.empty())
        << "Verify found errors, first: " << rep.errors[0];
  }

  // Extents of [offset, offset+length) (the whole device by default) must
  // tile the range, be merged, and put only zero bytes in holes.
  void CheckExtentsOf(BlockDevice& dev, const std::vector<uint8_t>& model,
                      const std::string& what, uint64_t offset = 0,
                      uint64_t length = UINT64_MAX) {
    if (length == UINT64_MAX) length = cfg_.size - offset;
    VSS_ASSERT_OK_AND_ASSIGN(auto extents, dev.Extents(offset, length));
    uint64_t pos = offset;
    for (size_t i = 0; i < extents.size(); ++i) {
      const Extent& e = extents[i];
      ASSERT_EQ(e.offset, pos) << what << ": extents do not cover the range";
      ASSERT_GT(e.length, 0u) << what << ": empty extent";
      if (i > 0) {
        EXPECT_NE(e.allocated, extents[i - 1].allocated)
            << what << ": adjacent extents of equal kind not merged at "
            << e.offset;
      }
      if (!e.allocated) {
        for (uint64_t b = e.offset; b < e.offset + e.length; ++b) {
          ASSERT_EQ(model[b], 0)
              << what << ": byte " << b << " (chunk " << b / cfg_.chunk_size
              << ") is in a hole but holds data";
        }
      }
      pos += e.length;
    }
    ASSERT_EQ(pos, offset + length) << what << ": extents do not cover the range";
  }

  void CheckExtents() {
    Log("Extents");
    ASSERT_NO_FATAL_FAILURE(CheckExtentsOf(*vol_, live_, "live volume"));
    if (!shadows_.empty()) {
      ModelShadow& s = shadows_[Rand(shadows_.size())];
      BlockDevice* dev = ShadowDevice(s);
      ASSERT_NE(dev, nullptr);
      ASSERT_NO_FATAL_FAILURE(
          CheckExtentsOf(*dev, s.bytes, "shadow " + s.id.ToString()));
      // A few chunks only: the index is probed chunk by chunk instead of
      // walked whole.
      uint64_t off = Rand(cfg_.size);
      uint64_t len = 1 + Rand(std::min<uint64_t>(cfg_.size - off, 3 * cfg_.chunk_size));
      ASSERT_NO_FATAL_FAILURE(CheckExtentsOf(
          *dev, s.bytes, "shadow " + s.id.ToString() + " range " + std::to_string(off), off,
          len));
    }
  }

  void PartialReads() {
    Log("partial reads");
    for (int n = 0; n < 4; ++n) {
      std::string shape;
      auto [off, len] = PickRange(&shape);
      BlockDevice* dev = vol_;
      const std::vector<uint8_t>* model = &live_;
      std::string what = "live volume";
      if (!shadows_.empty() && Chance(75)) {
        ModelShadow& s = shadows_[Rand(shadows_.size())];
        dev = ShadowDevice(s);
        ASSERT_NE(dev, nullptr);
        model = &s.bytes;
        what = "shadow " + s.id.ToString();
      }
      std::vector<uint8_t> buf(len);
      Status st = dev->Read(off, buf);
      ASSERT_TRUE(st.ok()) << what << " Read(" << off << ", " << len
                           << "): " << st.ToString();
      std::string d =
          DescribeDiff({model->data() + off, len}, buf, off, cfg_.chunk_size);
      ASSERT_EQ(d, "") << what << " Read(" << off << ", " << len << ") ["
                       << shape << "]";
    }
    // Reads past the end fail; writes to a shadow fail.
    std::vector<uint8_t> two(2);
    EXPECT_EQ(vol_->Read(cfg_.size - 1, two).code(), StatusCode::kOutOfRange);
    if (!shadows_.empty()) {
      BlockDevice* dev = ShadowDevice(shadows_.back());
      ASSERT_NE(dev, nullptr);
      EXPECT_FALSE(dev->Write(0, std::span<const uint8_t>(two.data(), 1)).ok())
          << "a shadow accepted a write";
    }
  }

  // ---- the comparison after every step -----------------------------------

  void CheckAll() {
    VSS_ASSERT_OK_AND_ASSIGN(auto live, ReadAll(*vol_));
    std::string d = DescribeDiff(live_, live, 0, cfg_.chunk_size);
    ASSERT_EQ(d, "") << "live volume differs from the model";
    for (size_t i = 0; i < shadows_.size(); ++i) {
      ModelShadow& s = shadows_[i];
      BlockDevice* dev = ShadowDevice(s);
      ASSERT_NE(dev, nullptr);
      std::vector<uint8_t> buf(cfg_.size);
      Status st = dev->Read(0, buf);
      ASSERT_TRUE(st.ok()) << "reading shadow #" << i << " " << s.id.ToString()
                           << ": " << st.ToString();
      d = DescribeDiff(s.bytes, buf, 0, cfg_.chunk_size);
      ASSERT_EQ(d, "") << "shadow #" << i << " of " << shadows_.size() << " "
                       << s.id.ToString() << " (epoch " << s.epoch
                       << (s.persistent ? ", persistent" : ", non-persistent")
                       << ") differs from the model";
    }
  }

 public:
  uint64_t top_seed_ = 0;

 private:
  RunConfig cfg_;
  std::mt19937_64 rng_;
  TempDir dir_;
  bool verbose_ = false;
  std::unique_ptr<MemoryDevice> image_;
  std::unique_ptr<MemFileSystem> memfs_;
  std::unique_ptr<Store> store_;
  Volume* vol_ = nullptr;
  Guid vol_id_;
  std::vector<uint8_t> live_;
  std::vector<ModelShadow> shadows_;  // oldest first
  int tiny_left_ = 0;
  int64_t tiny_max_ = 0;
  bool tiny_grace_ = false;
  size_t events_seen_ = 0;
  int step_ = 0;
  std::deque<std::string> history_;
  std::map<std::string, double> op_time_;
  std::map<std::string, int> op_count_;
  size_t auto_deleted_ = 0;
};

std::vector<RunConfig> MakeRuns(uint64_t seed, uint64_t total_ops) {
  std::mt19937_64 rng(seed);
  const int runs =
      total_ops >= 8000 ? 8 : std::max<int>(1, int(total_ops / 1000));
  static constexpr uint32_t kChunks[] = {4096, 8192,  16384, 4096,
                                         8192, 16384, 4096,  16384};
  std::vector<RunConfig> out;
  for (int r = 0; r < runs; ++r) {
    RunConfig c;
    c.seed = rng();
    c.run = r;
    c.chunk_size = kChunks[r % 8];
    // 96 KiB .. 512 KiB (bounded by the full comparison after every step;
    // VSS_MODEL_VOLUME_KIB sets it),
    // plus a partial last chunk of 512-byte multiples, or an odd size.
    const uint64_t target = test_util::EnvU64("VSS_MODEL_VOLUME_KIB", 0) * 1024;
    uint64_t chunks = target
                          ? target / c.chunk_size
                          : (96 * 1024 + rng() % (416 * 1024)) / c.chunk_size;
    chunks = std::max<uint64_t>(chunks, 3);
    uint64_t partial = (1 + rng() % (c.chunk_size / 512 - 1)) * 512;
    c.size = chunks * c.chunk_size + partial;
    c.ops = int(total_ops / runs + (uint64_t(r) < total_ops % runs ? 1 : 0));
    c.mem_fs = r % 2 == 0;
    static constexpr size_t kRows[] = {1, 7, 64, 8192};
    c.index_flush_rows = kRows[rng() % 4];
    static constexpr uint64_t kSeg[] = {64 * 1024, 256 * 1024,
                                        uint64_t{1} << 30};
    // MemFileSystem copies a whole file on every Sync(): keep its segments
    // small so the run stays fast.
    c.segment_bytes = kSeg[rng() % (c.mem_fs ? 2 : 3)];
    out.push_back(c);
  }
  return out;
}

TEST(EngineModelTest, Model_LiveAndEveryShadowMatchAfterEveryRandomStep) {
  const uint64_t seed = test_util::TestSeed();
  const uint64_t total =
      test_util::EnvU64("VSS_MODEL_OPS", test_util::kSanitized ? 5000 : 20000);
  std::cout << "engine model test: VSS_SEED=" << seed
            << " VSS_MODEL_OPS=" << total << std::endl;
  SCOPED_TRACE("VSS_SEED=" + std::to_string(seed));
  for (const RunConfig& cfg : MakeRuns(seed, total)) {
    std::cout << "  run " << cfg.ToString() << std::endl;
    ModelRun run(cfg);
    run.top_seed_ = seed;
    run.Run();
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace vss::engine
