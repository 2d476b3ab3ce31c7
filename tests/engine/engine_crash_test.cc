// SIGKILL crash test of the engine. Each round fork()s a child that opens
// the Store on a real temporary directory with a real RawImage, writes
// deterministic data (derived from the seed and a step number), creates
// shadows at steps chosen by the seed (mostly persistent, sometimes
// non-persistent), deletes some, and reports through a pipe:
//   "R"                       store and volume open
//   "C <step> <p|n>"          about to create a shadow before step's write
//   "S <id> <step> <p|n>"     the shadow was created
//   "D <id>" / "d <id>"       about to delete / deleted a shadow
//   "E <message>"             an unexpected error (the test fails)
// The parent kills the child with SIGKILL after a random delay, reopens the
// store and checks that every persistent shadow in the catalog equals the
// reference content at its step (the live image read at the round's start
// plus the round's writes before that step, replayed), that no non-persistent
// shadow survived, and that Verify() finds nothing wrong. Rounds continue on
// the same store, so shadows accumulate and recovery runs again and again.
//
// A second run puts the catalog behind metadata::FsVfs over the real file
// system (StoreOptions::catalog_fs): its in-process WAL index and locks die
// with the child, so every reopen rebuilds the WAL index from the WAL
// through the VFS. (Losing unsynced writes is the power-loss test's part:
// a SIGKILL loses nothing the kernel accepted.)
//
// Seed: VSS_SEED (random by default), printed. Rounds: VSS_CRASH_ROUNDS
// (default 24).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
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

namespace vss::engine {
namespace {

using test_util::DescribeDiff;
using test_util::ReadAll;
using test_util::TempDir;

constexpr uint32_t kChunk = 16384;
constexpr uint64_t kSize = 128 * kChunk + 5 * 1024;  // ~2 MiB, partial tail
constexpr uint64_t kStepsPerRound = uint64_t{1} << 20;

// What the child does at a step: maybe create a shadow (before the write),
// maybe delete one, then one write.
struct StepPlan {
  bool create = false;
  bool persistent = true;
  std::string properties;  // the provider's record, opaque to the engine
  bool delete_one = false;
  uint64_t delete_pick = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  int data_kind = 0;  // 0 random, 1 zeroes via WriteZeroes, 2 fill byte
};

StepPlan PlanStep(uint64_t seed, uint64_t step) {
  std::mt19937_64 rng(seed ^ (step * 0xD1B54A32D192ED03ULL) ^ 0xC0FFEE);
  StepPlan p;
  p.create = rng() % 6 == 0;
  if (p.create) {
    p.persistent = rng() % 5 != 0;
    if (p.persistent) {
      p.properties = "kind=" + std::to_string(rng() % 3);
    } else {
      p.properties = rng() % 2 ? "kind=backup\nrelease=manual" : "kind=backup";
    }
  }
  p.delete_one = rng() % 5 == 0;
  p.delete_pick = rng();
  p.offset = rng() % kSize;
  if (rng() % 4 == 0) p.offset = p.offset / kChunk * kChunk;
  p.length = 1 + rng() % std::min<uint64_t>(kSize - p.offset, 3 * kChunk);
  p.data_kind = rng() % 10 == 0 ? 1 : (rng() % 10 == 0 ? 2 : 0);
  return p;
}

std::vector<uint8_t> StepData(uint64_t seed, uint64_t step, const StepPlan& p) {
  std::vector<uint8_t> data(p.length, 0);
  if (p.data_kind == 0) test_util::FillRandom(seed, step, data);
  if (p.data_kind == 2) std::fill(data.begin(), data.end(), uint8_t(step | 1));
  return data;
}

void ApplyStep(uint64_t seed, uint64_t step, std::vector<uint8_t>& image) {
  StepPlan p = PlanStep(seed, step);
  std::vector<uint8_t> data = StepData(seed, step, p);
  std::copy(data.begin(), data.end(), image.begin() + p.offset);
}

// ---- the child ------------------------------------------------------------

void Say(int fd, const std::string& line) {
  std::string l = line + "\n";
  // Lines are far shorter than PIPE_BUF, so each write is atomic.
  ssize_t n = write(fd, l.data(), l.size());
  (void)n;
}

[[noreturn]] void ChildFail(int fd, const std::string& what, const Status& st) {
  Say(fd, "E " + what + ": " + st.ToString());
  _exit(3);
}

// catalog_fs: StoreOptions::catalog_fs (null: SQLite's own VFS).
[[noreturn]] void ChildMain(const std::string& dir, FileSystem* catalog_fs,
                            const Guid& vol_id, uint64_t seed, uint64_t start,
                            int fd) {
  StoreOptions o;
  o.dir = dir;
  o.catalog_fs = catalog_fs;
  o.segment_bytes = 256 * 1024;
  o.index_flush_rows = 1 + seed % 32;
  auto store = Store::Open(std::move(o));
  if (!store.ok()) ChildFail(fd, "Store::Open", store.status());
  auto vol = (*store)->OpenVolume(vol_id);
  if (!vol.ok()) ChildFail(fd, "OpenVolume", vol.status());
  Say(fd, "R");
  for (uint64_t step = start; step < start + kStepsPerRound; ++step) {
    StepPlan p = PlanStep(seed, step);
    if (p.create) {
      const char* kind = p.persistent ? "p" : "n";
      Say(fd, "C " + std::to_string(step) + " " + kind);
      CreateSetRequest req;
      req.volumes = {vol_id};
      req.persistent = p.persistent;
      req.properties = p.properties;
      auto set = (*store)->CreateShadowSet(req);
      if (!set.ok()) ChildFail(fd, "CreateShadowSet", set.status());
      Say(fd, "S " + set->shadows[0].shadow_id.ToString() + " " +
                  std::to_string(step) + " " + kind);
    }
    if (p.delete_one) {
      auto rows = (*store)->ListShadowsOfVolume(vol_id);
      if (!rows.ok()) ChildFail(fd, "ListShadowsOfVolume", rows.status());
      if (rows->size() >= 5) {
        const Guid id = (*rows)[p.delete_pick % rows->size()].id;
        Say(fd, "D " + id.ToString());
        Status st = (*store)->DeleteShadow(id);
        if (!st.ok()) ChildFail(fd, "DeleteShadow " + id.ToString(), st);
        Say(fd, "d " + id.ToString());
      }
    }
    Status st;
    if (p.data_kind == 1) {
      st = (*vol)->WriteZeroes(p.offset, p.length);
    } else {
      std::vector<uint8_t> data = StepData(seed, step, p);
      st = (*vol)->Write(p.offset, data);
    }
    if (!st.ok()) ChildFail(fd, "write at step " + std::to_string(step), st);
  }
  Say(fd, "E ran out of steps");
  _exit(4);
}

// True if `live` equals `base` with steps start..k-1 applied, plus a part
// of step k's write (bytes of its range either old or new), for some k.
bool LiveIsReplayPrefix(uint64_t seed, const std::vector<uint8_t>& base,
                        uint64_t start, const std::vector<uint8_t>& live) {
  std::vector<uint8_t> img = base;
  uint64_t mismatches = 0;
  for (uint64_t i = 0; i < kSize; ++i) mismatches += img[i] != live[i];
  for (uint64_t step = start; step < start + 200000; ++step) {
    if (mismatches == 0) return true;
    StepPlan p = PlanStep(seed, step);
    std::vector<uint8_t> data = StepData(seed, step, p);
    // Partial write of this step?
    uint64_t in_range = 0;
    bool partial_ok = true;
    for (uint64_t i = 0; i < p.length; ++i) {
      const uint64_t b = p.offset + i;
      if (img[b] != live[b]) {
        ++in_range;
        if (live[b] != data[i]) partial_ok = false;
      }
    }
    if (partial_ok && in_range == mismatches) return true;
    for (uint64_t i = 0; i < p.length; ++i) {
      const uint64_t b = p.offset + i;
      mismatches -= img[b] != live[b];
      img[b] = data[i];
      mismatches += img[b] != live[b];
    }
  }
  return false;
}

// ---- the parent -----------------------------------------------------------

struct ShadowExpect {
  uint64_t step = 0;
  int round = 0;
  std::vector<uint8_t> bytes;
};

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = test_util::TestSeed();
    rounds_ = int(test_util::EnvU64("VSS_CRASH_ROUNDS", 24));
    std::cout << "engine crash test: VSS_SEED=" << seed_
              << " VSS_CRASH_ROUNDS=" << rounds_ << std::endl;
  }

  StatusOr<std::unique_ptr<Store>> OpenStore() {
    StoreOptions o;
    o.dir = dir_.path() + "/store";
    o.catalog_fs = catalog_fs_;
    return Store::Open(std::move(o));
  }

  void RunRounds();

  FileSystem* catalog_fs_ = nullptr;  // StoreOptions::catalog_fs
  uint64_t seed_ = 0;
  int rounds_ = 0;
  TempDir dir_;
};

std::vector<std::string> ReadLines(int fd) {
  std::string all;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    all.append(buf, size_t(n));
  }
  std::vector<std::string> lines;
  std::istringstream is(all);
  for (std::string l; std::getline(is, l);) lines.push_back(l);
  return lines;
}

void CrashTest::RunRounds() {
  SCOPED_TRACE("VSS_SEED=" + std::to_string(seed_));
  std::mt19937_64 rng(seed_);
  const std::string image_path = dir_.path() + "/crash.img";
  Guid vol_id;
  {
    VSS_ASSERT_OK_AND_ASSIGN(auto store, OpenStore());
    VSS_ASSERT_OK_AND_ASSIGN(auto row,
                             store->CreateVolume({.path = image_path,
                                                  .size = kSize,
                                                  .name = "crash",
                                                  .chunk_size = kChunk,
                                                  .create = true}));
    vol_id = row.id;
  }
  std::vector<uint8_t> base(kSize, 0);    // live content at round start
  std::map<Guid, ShadowExpect> expected;  // every persistent shadow reported
  std::set<Guid> non_persistent;          // every non-persistent one reported
  int total_shadows_checked = 0, total_in_flight = 0;

  for (int round = 0; round < rounds_; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const uint64_t start = uint64_t(round + 1) * kStepsPerRound;
    const int delay_us = 2000 + int(rng() % 198000);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    std::cout.flush();
    pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork: " << strerror(errno);
    if (pid == 0) {
      close(fds[0]);
      ChildMain(dir_.path() + "/store", catalog_fs_, vol_id, seed_, start,
                fds[1]);
    }
    close(fds[1]);
    struct timespec ts = {delay_us / 1000000, (delay_us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    std::vector<std::string> lines = ReadLines(fds[0]);
    close(fds[0]);
    bool ready = false;
    std::optional<std::pair<uint64_t, bool>> in_flight;  // step, persistent
    std::vector<std::pair<Guid, uint64_t>> new_persistent;
    int creates = 0, deletes = 0;
    for (const auto& l : lines) {
      ASSERT_FALSE(l.rfind("E ", 0) == 0) << "child: " << l.substr(2);
      std::istringstream is(l);
      std::string tag;
      is >> tag;
      if (tag == "R") {
        ready = true;
      } else if (tag == "C") {
        uint64_t step;
        std::string kind;
        is >> step >> kind;
        in_flight = {step, kind == "p"};
      } else if (tag == "S") {
        std::string id_text, kind;
        uint64_t step;
        is >> id_text >> step >> kind;
        auto id = Guid::Parse(id_text);
        ASSERT_TRUE(id.has_value()) << l;
        if (kind == "p") {
          new_persistent.push_back({*id, step});
        } else {
          non_persistent.insert(*id);
        }
        in_flight.reset();
        ++creates;
      } else if (tag == "d") {
        ++deletes;
      }
    }
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "child ended on its own (status " << wstatus << ")";

    // Recovery.
    VSS_ASSERT_OK_AND_ASSIGN(auto store, OpenStore());
    VSS_ASSERT_OK_AND_ASSIGN(Volume * vol, store->OpenVolume(vol_id));
    VSS_ASSERT_OK_AND_ASSIGN(auto rows,
                             store->ListShadowsOfVolume(vol_id));

    // Reference contents for this round's shadows: replay from `base`.
    std::vector<uint8_t> img = base;
    uint64_t replayed = start;
    auto ContentAt = [&](uint64_t step) {
      EXPECT_GE(step, replayed) << "steps out of order";
      for (; replayed < step; ++replayed) ApplyStep(seed_, replayed, img);
      return img;
    };
    for (const auto& [id, step] : new_persistent) {
      expected[id] = {step, round, ContentAt(step)};
    }
    for (const auto& r : rows) {
      if (expected.count(r.id)) continue;
      ASSERT_FALSE(non_persistent.count(r.id))
          << "non-persistent shadow " << r.id.ToString()
          << " survived the crash";
      ASSERT_TRUE(in_flight.has_value())
          << "catalog has shadow " << r.id.ToString() << " (epoch " << r.epoch
          << ") that the child never reported, and no create was in flight";
      ASSERT_TRUE(in_flight->second)
          << "non-persistent shadow " << r.id.ToString()
          << " committed just before the kill survived the crash";
      EXPECT_TRUE(r.persistent);
      expected[r.id] = {in_flight->first, round, ContentAt(in_flight->first)};
      ++total_in_flight;
      in_flight.reset();
    }
    std::cout << "  round " << round << ": killed after " << delay_us / 1000
              << " ms, child " << (ready ? "ready" : "not ready") << ", "
              << creates << " creates, " << deletes << " deletes, "
              << rows.size() << " shadows to check" << std::endl;

    for (const auto& r : rows) {
      const ShadowExpect& e = expected[r.id];
      SCOPED_TRACE("shadow " + r.id.ToString() + " from round " +
                   std::to_string(e.round) + " step " + std::to_string(e.step));
      VSS_ASSERT_OK_AND_ASSIGN(auto dev, vol->OpenShadow(r.id));
      VSS_ASSERT_OK_AND_ASSIGN(auto bytes, ReadAll(*dev));
      std::string d = DescribeDiff(e.bytes, bytes, 0, kChunk);
      ASSERT_EQ(d, "") << "persistent shadow changed by a SIGKILL";
      VSS_ASSERT_OK_AND_ASSIGN(VerifyReport rep, vol->Verify(r.id));
      ASSERT_TRUE(rep.errors.empty()) << "Verify: " << rep.errors[0];
      ++total_shadows_checked;
    }
    // Shadows the catalog lost must have been deleted by the child.
    for (auto it = expected.begin(); it != expected.end();) {
      bool there = std::any_of(
          rows.begin(), rows.end(),
          [&](const ShadowInfo& r) { return r.id == it->first; });
      if (there) {
        ++it;
        continue;
      }
      bool deleted = false;
      for (const auto& l : lines) {
        if (l == "D " + it->first.ToString()) deleted = true;
      }
      ASSERT_TRUE(deleted) << "persistent shadow " << it->first.ToString()
                           << " (round " << it->second.round << " step "
                           << it->second.step << ") vanished without a delete";
      it = expected.erase(it);
    }
    // The live volume is the next round's base. SIGKILL loses nothing the
    // kernel accepted, so it must be this round's replay up to some step,
    // plus possibly part of the next step's write.
    VSS_ASSERT_OK_AND_ASSIGN(auto live, ReadAll(*vol));
    ASSERT_TRUE(LiveIsReplayPrefix(seed_, base, start, live))
        << "live volume after the kill is not the replay of the child's "
        << "writes up to any step";
    base = std::move(live);
    store.reset();
  }
  std::cout << "checked " << total_shadows_checked << " shadow reads, "
            << total_in_flight << " shadows committed just before a kill"
            << std::endl;
}

TEST_F(CrashTest, SigKill_PersistentShadowsExactAfterEveryKill) {
  RunRounds();
}

TEST_F(CrashTest, SigKill_CatalogThroughFsVfs_PersistentShadowsExact) {
  catalog_fs_ = FileSystem::Default();
  RunRounds();
}

}  // namespace
}  // namespace vss::engine
