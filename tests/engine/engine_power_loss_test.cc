// Power-loss test of the engine: the volume's image is a PowerLossDevice
// over a MemoryDevice; the diff area and the SQLite catalog (catalog.db and
// its WAL, through metadata::FsVfs) live in one MemFileSystem, so a cut
// drops, keeps or tears the catalog's unsynced writes like the segments'.
// Random operations run under persistent shadows;
// then power is cut, either between operations or in the middle of one (the
// image and the file system stop accepting I/O after a random number of
// calls), every unsynced write is dropped, kept or torn (kRandom) or all
// dropped (kDropAll), the dying Store is destroyed and a new one opened on
// the same bytes. Then:
//   - every persistent shadow in the model must be in the catalog and read
//     back exactly (unless its delete was in flight at the cut);
//   - a shadow in the catalog the model does not know must be the one whose
//     creation was in flight, with the live contents at that instant;
//   - each byte of the live volume must hold its value at the last
//     successful flush (or shadow create / revert) or a value written since;
//   - an interrupted revert is either not started or finished.
// Then the model takes the live bytes from the device and work goes on.
//
// The qcow2 variant puts the volume's image in a qcow2::Image over a file of
// a second MemFileSystem: a cut drops, keeps or tears the driver's unsynced
// data and metadata writes, and the image is opened afresh from what is left
// (with the same checks: rule 1 must hold on top of the driver's own crash
// safety, and the qcow2 file must open after every cut).
//
// Seed: VSS_SEED (random by default), printed. Cycles: VSS_POWER_CYCLES.

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <iostream>
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
#include "vss/formats/power_loss_device.h"
#include "qcow2_image.h"

namespace vss::engine {
namespace {

using test_util::DescribeDiff;
using test_util::GateDevice;
using test_util::GatedOpener;
using test_util::ReadAll;
using test_util::TempDir;

struct Shadow {
  Guid id;
  uint64_t epoch = 0;
  std::vector<uint8_t> bytes;
};

// A write since the last durable point: its bytes may or may not be on the
// image after a power loss, possibly torn.
struct PendingWrite {
  uint64_t offset;
  std::vector<uint8_t> data;
};

class PowerLossRun {
 public:
  // cluster_bits: 0 for a raw image, else the volume is a qcow2 image with
  // clusters of 1 << cluster_bits bytes.
  PowerLossRun(uint64_t top_seed, uint64_t seed, int run, uint32_t chunk_size,
               uint64_t size, int cycles, uint32_t cluster_bits = 0)
      : cluster_bits_(cluster_bits),
        top_seed_(top_seed),
        seed_(seed),
        run_(run),
        chunk_size_(chunk_size),
        size_(size),
        cycles_(cycles),
        rng_(seed),
        dir_({.prefer_shm = true}),
        base_(size, "pl.img"),
        image_(&base_) {}

  void Run() {
    SCOPED_TRACE(Describe());
    verbose_ = test_util::EnvU64("VSS_MODEL_VERBOSE", 0) != 0;
    live_.assign(size_, 0);
    durable_ = live_;
    if (cluster_bits_ != 0) ASSERT_NO_FATAL_FAILURE(CreateQcow2());
    ASSERT_NO_FATAL_FAILURE(OpenStore());
    VSS_ASSERT_OK_AND_ASSIGN(
        VolumeInfo row,
        store_->CreateVolume({.path = dir_.path() + "/pl.img",
                              .size = size_,
                              .name = "pl",
                              .chunk_size = chunk_size_,
                              .create = true}));
    vol_id_ = row.id;
    VSS_ASSERT_OK_AND_ASSIGN(vol_, store_->OpenVolume(vol_id_));
    // Make the initial state durable: a power loss before the first flush
    // may otherwise lose the volume's creation in the diff-area fs, which is
    // fine, but it makes the first cycle uninteresting.
    VSS_ASSERT_OK(vol_->Flush());

    for (cycle_ = 0; cycle_ < cycles_; ++cycle_) {
      SCOPED_TRACE("cycle " + std::to_string(cycle_));
      RunCycle();
      if (::testing::Test::HasFailure()) {
        PrintHistory();
        return;
      }
    }
  }

 private:
  std::string Describe() const {
    std::ostringstream os;
    os << "VSS_SEED=" << top_seed_ << " run=" << run_ << " run_seed=" << seed_
       << " chunk_size=" << chunk_size_ << " size=" << size_;
    if (cluster_bits_ != 0) os << " qcow2 cluster_bits=" << cluster_bits_;
    return os.str();
  }
  void Log(std::string s) {
    if (verbose_)
      std::cout << "[run " << run_ << " cycle " << cycle_ << "] " << s << "\n";
    history_.push_back("cycle " + std::to_string(cycle_) + ": " + std::move(s));
    if (history_.size() > 60) history_.pop_front();
  }
  void PrintHistory() {
    std::cout << "FAILED " << Describe() << " at cycle " << cycle_
              << "; last ops:\n";
    for (const auto& h : history_) std::cout << "  " << h << "\n";
    std::cout.flush();
  }
  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool Chance(int percent) { return Rand(100) < uint64_t(percent); }

  StoreOptions Options() {
    StoreOptions o;
    o.dir = dir_.path() + "/store";
    o.fs = &fs_;
    o.catalog_fs = &fs_;
    o.open_image = cluster_bits_ == 0 ? GatedOpener(&image_, &gate_) : Qcow2Opener();
    o.index_flush_rows = index_flush_rows_;
    o.segment_bytes = 128 * 1024;
    has_flush_on_close_ = test_util::SetNoFlushOnClose(o);
    return o;
  }

  // ---- the qcow2 image ----------------------------------------------------

  void CreateQcow2() {
    VSS_ASSERT_OK_AND_ASSIGN(auto file, qfs_.Open(kQcow2Path, /*create=*/true));
    qcow2::CreateOptions c;
    c.size = size_;
    c.cluster_bits = cluster_bits_;
    VSS_ASSERT_OK_AND_ASSIGN(qimage_, qcow2::CreateImage(std::move(file), kQcow2Path, c, {}));
    VSS_ASSERT_OK(qfs_.SyncDir("/"));
    Log("qcow2 image, clusters of " + std::to_string(1u << cluster_bits_) + " bytes");
  }

  // The store's opener: a gate over the qcow2 image, opened again from the
  // file after a power loss.
  ImageOpener Qcow2Opener() {
    return [this](const std::string& path, bool create,
                  uint64_t size) -> StatusOr<std::unique_ptr<BlockDevice>> {
      if (create && size != size_) return InvalidArgumentError("size mismatch for " + path);
      if (qimage_ == nullptr) {
        VSS_ASSIGN_OR_RETURN(auto file, qfs_.Open(kQcow2Path, /*create=*/false));
        VSS_ASSIGN_OR_RETURN(qimage_, qcow2::Image::Open(std::move(file), kQcow2Path, {}));
      }
      return std::unique_ptr<BlockDevice>(std::make_unique<GateDevice>(qimage_.get(), &gate_));
    };
  }

  // A power cut of the volume's image: the raw device's unsynced writes,
  // or the qcow2 file's (the dying driver writes nothing more: its file
  // fails every call until the power is back).
  void ImagePowerLoss(PowerLossMode mode, uint64_t seed) {
    if (cluster_bits_ == 0) {
      image_.PowerLoss(mode, seed);
      return;
    }
    FileFaultRule dead;
    dead.nth = 1;
    dead.persistent = true;
    dead.error = IoError("simulated power cut (qcow2 file)");
    qfs_.SetFaultRule(dead);
    qimage_.reset();
    qfs_.PowerLoss(mode, seed);
    qfs_.ClearFaultRule();
  }

  void OpenStore() {
    VSS_ASSERT_OK_AND_ASSIGN(store_, Store::Open(Options()));
    // The catalog is in the power-loss file system, not on the disk.
    const std::string catalog = dir_.path() + "/store/catalog.db";
    ASSERT_TRUE(fs_.Exists(catalog));
    ASSERT_FALSE(std::filesystem::exists(catalog));
  }

  // ---- one cycle: operations, a cut, recovery, checks ----------------------

  void RunCycle() {
    index_flush_rows_ = Chance(50) ? 1 + Rand(16) : 8192;
    const bool mid_op = Chance(50);
    const int ops = 3 + int(Rand(40));
    const PowerLossMode mode =
        Chance(50) ? PowerLossMode::kRandom : PowerLossMode::kDropAll;
    for (int i = 0; i < ops; ++i) {
      if (mid_op && i == ops / 2 && !armed_) Arm();
      if (!RandomOp()) break;  // failed: the power is already out
      if (::testing::Test::HasFailure()) return;
    }
    ASSERT_NO_FATAL_FAILURE(CutAndReopen(mode));
    ASSERT_NO_FATAL_FAILURE(CheckAfterReopen());
  }

  // Arms a cut inside a later operation: the image and the file system fail
  // every call after a random number of them.
  void Arm() {
    armed_ = true;
    // Either side may go first: the image, the diff-area files, or both soon.
    int64_t dev_calls = int64_t(Rand(30));
    uint64_t fs_calls = 1 + Rand(40);
    switch (Rand(3)) {
      case 0:
        fs_calls += 1000;
        break;  // the image dies first
      case 1:
        dev_calls += 1000;
        break;  // the diff area dies first
      default:
        break;
    }
    Log("arm cut: image after " + std::to_string(dev_calls) +
        " calls, fs at call " + std::to_string(fs_calls));
    gate_->CutAfter(dev_calls);
    FileFaultRule rule;
    rule.ops = static_cast<uint32_t>(FileOp::kAny);
    rule.nth = fs_calls;
    rule.persistent = true;
    rule.error = IoError("simulated power cut (test fs)");
    fs_.SetFaultRule(rule);
  }

  // Runs one random operation. Returns false if it failed, which is allowed
  // only once a cut is armed; the model then records what is uncertain.
  bool RandomOp() {
    const int r = int(Rand(100));
    if (r < 55) return WriteOp();
    if (r < 62) return FlushOp();
    if (r < 77) return CreateOp();
    if (r < 90) return DeleteOp();
    if (r < 94) return RevertOp();
    return CheckShadowsNow();
  }

  bool Failed(const Status& st, const std::string& what) {
    if (st.ok()) return false;
    if (!armed_) {
      ADD_FAILURE() << what
                    << " failed with no power cut armed: " << st.ToString();
    } else {
      Log("  -> failed under the cut: " + st.ToString());
    }
    return true;
  }

  bool WriteOp() {
    uint64_t off = Rand(size_);
    uint64_t len = 1 + Rand(std::min<uint64_t>(size_ - off, 3 * chunk_size_));
    if (Chance(20)) {  // whole chunks
      off = Rand(size_ / chunk_size_) * chunk_size_;
      len = std::min<uint64_t>(chunk_size_ * (1 + Rand(2)), size_ - off);
    } else if (Chance(10)) {  // the partial last chunk
      off = size_ - 1 - Rand(std::min<uint64_t>(size_, chunk_size_ + 100));
      len = size_ - off;
    }
    std::vector<uint8_t> data(len, 0);
    const int kind = int(Rand(10));
    if (kind < 7)
      test_util::FillRandom(rng_(), 0, data);
    else if (kind < 8)
      std::fill(data.begin(), data.end(), uint8_t(1 + Rand(255)));
    Status st;
    std::string what;
    if (kind == 8) {
      what = "WriteZeroes";
      st = vol_->WriteZeroes(off, len);
    } else if (kind == 9) {
      what = "Discard";
      st = vol_->Discard(off, len);
    } else {
      what = "Write";
      st = vol_->Write(off, data);
    }
    what += "(" + std::to_string(off) + ", " + std::to_string(len) + ")";
    Log(what);
    // Even a failed write may have reached the image in part.
    pending_.push_back({off, data});
    if (Failed(st, what)) return false;
    std::copy(data.begin(), data.end(), live_.begin() + off);
    return true;
  }

  bool FlushOp() {
    Log("Flush");
    Status st = vol_->Flush();
    if (Failed(st, "Flush")) return false;
    MarkDurable();
    return true;
  }

  void MarkDurable() {
    durable_ = live_;
    pending_.clear();
  }

  bool CreateOp() {
    if (shadows_.size() >= 6) return DeleteOp();
    CreateSetRequest req;
    req.volumes = {vol_id_};
    req.persistent = true;
    req.properties = "kind=" + std::to_string(Rand(3));
    Log("CreateShadowSet properties '" + req.properties + "'");
    auto set = store_->CreateShadowSet(req);
    if (Failed(set.status(), "CreateShadowSet")) {
      in_flight_create_ = live_;
      return false;
    }
    EXPECT_EQ(set->shadows.size(), 1u);
    StatusOr<ShadowInfo> row = store_->FindShadow(set->shadows[0].shadow_id);
    EXPECT_TRUE(row.ok()) << "new shadow not in the catalog: " << row.status().ToString();
    if (!row.ok()) return true;
    EXPECT_TRUE(row->persistent) << "a persistent request must make a persistent shadow";
    EXPECT_EQ(row->properties, req.properties);
    shadows_.push_back({row->id, row->epoch, live_});
    history_.back() += " -> " + row->id.ToString();
    // The create held and flushed the volume's writes.
    MarkDurable();
    return true;
  }

  bool DeleteOp() {
    if (shadows_.empty()) return CreateOp();
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
    Log("DeleteShadow " + which + " " + shadows_[i].id.ToString());
    Status st = store_->DeleteShadow(shadows_[i].id);
    if (Failed(st, "DeleteShadow")) {
      maybe_deleted_.insert(shadows_[i].id);
      return false;
    }
    shadows_.erase(shadows_.begin() + i);
    return true;
  }

  bool RevertOp() {
    if (shadows_.empty()) return CreateOp();
    size_t k = Rand(shadows_.size());
    Log("RevertToShadow #" + std::to_string(k) + " " +
        shadows_[k].id.ToString());
    Status st = store_->RevertToShadow(shadows_[k].id);
    if (Failed(st, "RevertToShadow")) {
      in_flight_revert_ = k;
      return false;
    }
    live_ = shadows_[k].bytes;
    shadows_.resize(k);
    // A revert that returned is done: it must survive a power loss.
    MarkDurable();
    pending_.clear();
    return true;
  }

  bool CheckShadowsNow() {
    Log("read shadows");
    if (armed_) return true;  // reads may fail once a cut is armed
    EXPECT_NO_FATAL_FAILURE(CompareShadows("before the cut"));
    return true;
  }

  void CutAndReopen(PowerLossMode mode) {
    const uint64_t pl_seed = rng_();
    Log(std::string("power loss ") +
        (mode == PowerLossMode::kRandom ? "kRandom" : "kDropAll") + " seed " +
        std::to_string(pl_seed) + (armed_ ? " (mid-operation)" : ""));
    // Nothing reaches the media after this instant.
    gate_->Cut();
    FileFaultRule rule;
    rule.ops = static_cast<uint32_t>(FileOp::kAny);
    rule.nth = 1;
    rule.persistent = true;
    rule.error = IoError("simulated power cut (test fs)");
    fs_.SetFaultRule(rule);
    ImagePowerLoss(mode, pl_seed);
    fs_.PowerLoss(mode, pl_seed ^ 0x5555);
    vol_ = nullptr;
    store_.reset();
    fs_.ClearFaultRule();
    gate_ = nullptr;  // died with the store
    armed_ = false;
    if (Chance(30)) CutDuringRecovery(mode);
    ASSERT_NO_FATAL_FAILURE(OpenStore());
    VSS_ASSERT_OK_AND_ASSIGN(vol_, store_->OpenVolume(vol_id_));
  }

  // The power goes out again while the store reopens and recovers, after a
  // random number of file-system calls counted from Store::Open (mostly the
  // catalog's WAL recovery) or from OpenVolume (the engine's recovery); the
  // image dies with it. The next open must finish or undo whatever this one
  // had started.
  void CutDuringRecovery(PowerLossMode mode) {
    const bool in_store_open = Chance(50);
    const uint64_t nth = 1 + Rand(in_store_open ? 300 : 30);
    const uint64_t pl_seed = rng_();
    FileFaultRule rule;
    rule.ops = static_cast<uint32_t>(FileOp::kAny);
    rule.nth = nth;
    rule.persistent = true;
    rule.error = IoError("simulated power cut during recovery (test fs)");
    if (in_store_open) fs_.SetFaultRule(rule);
    std::string how = "not reached";
    StatusOr<std::unique_ptr<Store>> store = Store::Open(Options());
    if (!store.ok()) {
      how = "Store::Open: " + store.status().ToString();
    } else {
      if (!in_store_open) fs_.SetFaultRule(rule);
      if (Status st = (*store)->OpenVolume(vol_id_).status(); !st.ok()) {
        how = "OpenVolume: " + st.ToString();
      }
    }
    Log(std::string("power loss again during recovery, at fs call ") +
        std::to_string(nth) +
        (in_store_open ? " of Store::Open" : " of OpenVolume") + " (" + how +
        "), seed " + std::to_string(pl_seed));
    rule.nth = 1;
    fs_.SetFaultRule(rule);
    if (gate_ != nullptr) gate_->Cut();
    ImagePowerLoss(mode, pl_seed);
    fs_.PowerLoss(mode, pl_seed ^ 0x5555);
    if (store.ok()) store->reset();
    fs_.ClearFaultRule();
    gate_ = nullptr;
  }

  void CheckAfterReopen() {
    VSS_ASSERT_OK_AND_ASSIGN(auto rows,
                             store_->ListShadowsOfVolume(vol_id_));
    std::set<Guid> in_catalog;
    for (const auto& r : rows) in_catalog.insert(r.id);

    // An interrupted revert: not started (shadow k there) or finished.
    std::optional<std::vector<uint8_t>> reverted_to;
    if (in_flight_revert_) {
      size_t k = *in_flight_revert_;
      if (!in_catalog.count(shadows_[k].id)) {
        Log("  interrupted revert was finished by recovery");
        for (size_t j = k; j < shadows_.size(); ++j) {
          EXPECT_FALSE(in_catalog.count(shadows_[j].id))
              << "revert to #" << k << " finished but newer shadow #" << j
              << " is still there";
        }
        reverted_to = shadows_[k].bytes;
        shadows_.resize(k);
      } else {
        Log("  interrupted revert had not started");
      }
    }
    // Shadows whose delete was in flight may be gone.
    for (size_t i = 0; i < shadows_.size();) {
      if (!in_catalog.count(shadows_[i].id) &&
          maybe_deleted_.count(shadows_[i].id)) {
        Log("  in-flight delete of " + shadows_[i].id.ToString() +
            " completed");
        shadows_.erase(shadows_.begin() + i);
      } else {
        ++i;
      }
    }
    for (const auto& s : shadows_) {
      EXPECT_TRUE(in_catalog.count(s.id))
          << "persistent shadow " << s.id.ToString() << " (epoch " << s.epoch
          << ") lost by the power loss";
    }
    if (::testing::Test::HasFailure()) return;
    for (const auto& r : rows) {
      bool known = std::any_of(shadows_.begin(), shadows_.end(),
                               [&](const Shadow& s) { return s.id == r.id; });
      if (known) continue;
      ASSERT_TRUE(in_flight_create_.has_value())
          << "catalog has unknown shadow " << r.id.ToString()
          << " after reopen";
      EXPECT_TRUE(r.persistent);
      Log("  in-flight create committed: " + r.id.ToString());
      // It was committed after the volume was held and flushed: its content
      // is the live content at that instant.
      shadows_.push_back({r.id, r.epoch, *in_flight_create_});
      in_flight_create_.reset();
    }
    std::sort(
        shadows_.begin(), shadows_.end(),
        [](const Shadow& a, const Shadow& b) { return a.epoch < b.epoch; });
    ASSERT_NO_FATAL_FAILURE(CompareShadows("after power loss and reopen"));

    // The live volume: the last durable state plus any subset of later
    // writes (torn at any point).
    VSS_ASSERT_OK_AND_ASSIGN(auto live, ReadAll(*vol_));
    if (reverted_to) {
      std::string d = DescribeDiff(*reverted_to, live, 0, chunk_size_);
      EXPECT_EQ(d, "") << "live volume after a revert finished by recovery";
    } else {
      ASSERT_NO_FATAL_FAILURE(CheckLiveAllowed(live));
    }
    // Verify every shadow's records.
    for (const auto& s : shadows_) {
      VSS_ASSERT_OK_AND_ASSIGN(VerifyReport rep, vol_->Verify(s.id));
      EXPECT_TRUE(rep.errors.empty())
          << "Verify " << s.id.ToString() << ": " << rep.errors[0];
    }
    // Continue from what the device holds.
    live_ = live;
    VSS_ASSERT_OK(vol_->Flush());
    MarkDurable();
    in_flight_create_.reset();
    in_flight_revert_.reset();
    maybe_deleted_.clear();
  }

  void CheckLiveAllowed(const std::vector<uint8_t>& live) {
    for (uint64_t b = 0; b < size_; ++b) {
      if (live[b] == durable_[b]) continue;
      bool ok = false;
      for (const auto& w : pending_) {
        if (b >= w.offset && b < w.offset + w.data.size() &&
            w.data[b - w.offset] == live[b]) {
          ok = true;
          break;
        }
      }
      ASSERT_TRUE(ok) << "live byte " << b << " (chunk " << b / chunk_size_
                      << ") is 0x" << std::hex << int{live[b]}
                      << ", but it was 0x" << int{durable_[b]} << std::dec
                      << " at the last durable point and no later write put "
                      << "that value there (" << pending_.size()
                      << " writes since)";
    }
  }

  void CompareShadows(const std::string& when) {
    for (size_t i = 0; i < shadows_.size(); ++i) {
      const Shadow& s = shadows_[i];
      VSS_ASSERT_OK_AND_ASSIGN(auto dev, vol_->OpenShadow(s.id));
      VSS_ASSERT_OK_AND_ASSIGN(auto bytes, ReadAll(*dev));
      std::string d = DescribeDiff(s.bytes, bytes, 0, chunk_size_);
      ASSERT_EQ(d, "") << "persistent shadow #" << i << " " << s.id.ToString()
                       << " (epoch " << s.epoch << ") " << when;
    }
  }

  static constexpr const char* kQcow2Path = "/pl.qcow2";
  uint32_t cluster_bits_;
  uint64_t top_seed_, seed_;
  int run_;
  uint32_t chunk_size_;
  uint64_t size_;
  int cycles_;
  std::mt19937_64 rng_;
  TempDir dir_;
  bool verbose_ = false;
  MemoryDevice base_;
  PowerLossDevice image_;
  MemFileSystem qfs_;  // the qcow2 image's file
  std::unique_ptr<qcow2::Image> qimage_;
  MemFileSystem fs_;
  GateDevice* gate_ = nullptr;
  std::unique_ptr<Store> store_;
  Volume* vol_ = nullptr;
  Guid vol_id_;
  size_t index_flush_rows_ = 8192;

 public:
  bool has_flush_on_close_ = false;

 private:
  bool armed_ = false;
  int cycle_ = 0;
  std::vector<uint8_t> live_, durable_;
  std::vector<PendingWrite> pending_;
  std::vector<Shadow> shadows_;  // by epoch
  std::optional<std::vector<uint8_t>> in_flight_create_;
  std::optional<size_t> in_flight_revert_;
  std::set<Guid> maybe_deleted_;
  std::deque<std::string> history_;
};

TEST(EnginePowerLossTest, PowerLoss_PersistentShadowsExactAfterRandomCuts) {
  const uint64_t seed = test_util::TestSeed();
  const int cycles = int(
      test_util::EnvU64("VSS_POWER_CYCLES", test_util::kSanitized ? 60 : 200));
  std::cout << "engine power-loss test: VSS_SEED=" << seed
            << " VSS_POWER_CYCLES=" << cycles << std::endl;
  SCOPED_TRACE("VSS_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Cfg {
    uint32_t chunk;
    uint64_t size;
  };
  const Cfg cfgs[] = {{4096, 97 * 4096 + 1536}, {16384, 41 * 16384 + 8704}};
  for (int r = 0; r < 2; ++r) {
    PowerLossRun run(seed, rng(), r, cfgs[r].chunk, cfgs[r].size,
                     (cycles + 1) / 2);
    run.Run();
    if (r == 0 && !run.has_flush_on_close_) {
      std::cout
          << "note: StoreOptions has no flush_on_close; the test cuts the "
             "image and the fs before destroying the Store instead"
          << std::endl;
    }
    if (::testing::Test::HasFailure()) return;
  }
}

// The same on a qcow2 volume: 512-byte clusters (many L2 tables and
// refcount blocks, refcount table growth) and 4 KiB ones, sizes that are not
// a multiple of the cluster.
TEST(EnginePowerLossTest, PowerLoss_Qcow2VolumeShadowsExactAfterRandomCuts) {
  const uint64_t seed = test_util::TestSeed();
  const int cycles = int(
      test_util::EnvU64("VSS_POWER_CYCLES", test_util::kSanitized ? 40 : 120));
  std::cout << "engine power-loss test (qcow2): VSS_SEED=" << seed
            << " VSS_POWER_CYCLES=" << cycles << std::endl;
  SCOPED_TRACE("VSS_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed ^ 0x9c0f2);
  struct Cfg {
    uint32_t chunk;
    uint64_t size;
    uint32_t cluster_bits;
  };
  const Cfg cfgs[] = {{4096, 97 * 4096 + 1536, 9}, {16384, 41 * 16384 + 8704, 12}};
  for (int r = 0; r < 2; ++r) {
    PowerLossRun run(seed, rng(), r, cfgs[r].chunk, cfgs[r].size, (cycles + 1) / 2,
                     cfgs[r].cluster_bits);
    run.Run();
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace vss::engine
