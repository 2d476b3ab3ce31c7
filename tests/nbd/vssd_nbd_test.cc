// vssd's NBD server, end to end: the test starts the real vssd binary on a
// temporary store and talks to it with the small client in nbd_client.h
// (every command, structured replies, block status, read-only shadows,
// malformed clients), then with real clients (qemu-io, qemu-img, nbdinfo,
// nbdcopy) where they are installed.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <grp.h>
#include <map>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "nbd_client.h"
#include "vss/engine/store.h"
#include "vss/testing/temp_dir.h"
#include "vss/engine/volume.h"

namespace vss::nbdtest {
namespace {

constexpr uint64_t kSize = 8 << 20;
constexpr uint32_t kEPerm = 1, kEInval = 22, kENoSpc = 28;
constexpr uint16_t kRead = 0, kWrite = 1, kDisc = 2, kFlush = 3, kTrim = 4,
                   kWriteZeroes = 6, kBlockStatus = 7;

std::vector<uint8_t> Bytes(size_t n, uint8_t v) {
  return std::vector<uint8_t>(n, v);
}

bool HaveTool(const std::string& tool) {
  return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0;
}

// Runs a shell command; returns its exit status and stdout+stderr.
std::pair<int, std::string> Shell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// The vssd under test: the build's, or $VSSD_UNDER_TEST (to run these tests
// against another build, e.g. to see one fail before a fix).
const char* VssdPath() {
  const char* v = std::getenv("VSSD_UNDER_TEST");
  return v && *v ? v : VSSD_PATH;
}

// Reads what the server sends until it closes the connection; true when it
// did (within `limit_ms`, a cap for a broken server, not a synchronisation).
// `received` gets the number of bytes read before the end.
bool DrainUntilClosed(Client& c, int limit_ms = 60000, size_t* received = nullptr) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms);
  size_t total = 0;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{c.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    uint8_t buf[4096];
    ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (received) *received = total;
      return n == 0 || errno == ECONNRESET;
    }
    total += static_cast<size_t>(n);
  }
}

std::string OptionMessage(const OptionReply& r) {
  return std::string(r.data.begin(), r.data.end());
}

void WriteFile(const std::string& path, const std::vector<uint8_t>& data) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data.data()), data.size());
}

class VssdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    store_dir_ = dir_ + "/store";
    socket_ = dir_ + "/nbd.sock";
    shadow_ = Bytes(kSize, 0);
    std::fill_n(shadow_.begin(), 256 << 10, 0x11);
    std::fill_n(shadow_.begin() + (1 << 20), 64 << 10, 0x22);
    live_ = shadow_;
    std::fill_n(live_.begin(), 64 << 10, 0x33);
    {
      auto store = engine::Store::Open({.dir = store_dir_});
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      auto row = (*store)->CreateVolume(
          {.path = dir_ + "/disk.img", .size = kSize, .name = "disk"});
      ASSERT_TRUE(row.ok()) << row.status().ToString();
      volume_id_ = row->id;
      auto vol = (*store)->OpenVolume(row->id);
      ASSERT_TRUE(vol.ok());
      ASSERT_TRUE(
          (*vol)->Write(0, std::span(shadow_).subspan(0, 256 << 10)).ok());
      ASSERT_TRUE(
          (*vol)
              ->Write(1 << 20, std::span(shadow_).subspan(1 << 20, 64 << 10))
              .ok());
      auto set = (*store)->CreateShadowSet({.volumes = {row->id}});
      ASSERT_TRUE(set.ok()) << set.status().ToString();
      shadow_id_ = set->shadows[0].shadow_id.ToString();
      ASSERT_TRUE((*vol)->Write(0, std::span(live_).subspan(0, 64 << 10)).ok());
    }
    pid_ = StartVssd({"--store", store_dir_, "--nbd", "unix:" + socket_});
    ASSERT_GT(pid_, 0);
    ASSERT_TRUE(WaitForSocket()) << "vssd did not start listening";
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
          << "vssd did not exit 0 on SIGTERM (status " << st << ")";
    }
  }

  static pid_t StartVssd(const std::vector<std::string>& args) {
    pid_t pid = ::fork();
    if (pid == 0) {
      std::vector<char*> argv{const_cast<char*>(VssdPath())};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(VssdPath(), argv.data());
      ::_exit(127);
    }
    return pid;
  }

  // Stops the fixture's vssd (one vssd per store).
  void StopVssd() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }

  // Restarts vssd on the fixture's Unix socket with `extra` arguments.
  void RestartWith(const std::vector<std::string>& extra) {
    StopVssd();
    std::vector<std::string> args{"--store", store_dir_, "--nbd", "unix:" + socket_};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = StartVssd(args);
    ASSERT_GT(pid_, 0);
    ASSERT_TRUE(WaitForSocket()) << "vssd did not start listening";
  }

  // Starts vssd on a free loopback TCP port with `extra` arguments (the
  // fixture's vssd is stopped first); returns the port, 0 when none was
  // found. The vssd is the fixture's from then on.
  uint16_t StartTcp(const std::vector<std::string>& extra) {
    StopVssd();
    for (int attempt = 0; attempt < 5; ++attempt) {
      uint16_t port = 20000 + (::getpid() * 7 + attempt * 1009) % 30000;
      std::vector<std::string> args{"--store", store_dir_, "--nbd",
                                    "tcp:" + std::to_string(port)};
      args.insert(args.end(), extra.begin(), extra.end());
      pid_t pid = StartVssd(args);
      for (int i = 0; i < 3000; ++i) {
        Client c;
        if (c.ConnectTcp(port)) {
          pid_ = pid;
          return port;
        }
        int st;
        if (::waitpid(pid, &st, WNOHANG) == pid) break;  // port taken: retry
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    return 0;
  }

  bool WaitForSocket() {
    for (int i = 0; i < 500; ++i) {
      Client c;
      if (c.Connect(socket_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  std::string Uri(const std::string& name) const {
    return "nbd+unix:///" + name + "?socket=" + socket_;
  }

  // Reads [offset, offset+length) over a fresh connection (structured).
  std::vector<uint8_t> ReadExport(const std::string& name, uint64_t offset,
                                  uint32_t length) {
    Client c;
    EXPECT_TRUE(c.Connect(socket_));
    EXPECT_TRUE(c.Open(name, true).has_value());
    EXPECT_TRUE(c.Request(0, kRead, 77, offset, length));
    return ReadChunks(c, offset, length, nullptr);
  }

  // Collects the data and hole chunks answering a read of [offset,
  // offset+length) and returns the bytes; checks that the chunks cover the
  // range exactly once and that only the last one is marked done. Counts
  // the hole chunks in `holes`. Empty after an error chunk.
  static std::vector<uint8_t> ReadChunks(Client& c, uint64_t offset, uint32_t length,
                                         int* holes) {
    std::vector<uint8_t> out(length, 0xEE);
    std::vector<bool> seen(length, false);
    if (holes) *holes = 0;
    for (;;) {
      auto r = c.ReadReply();
      EXPECT_TRUE(r && r->structured);
      if (!r || !r->structured || r->error != 0) return {};
      EXPECT_TRUE(r->type == 1 || r->type == 2) << "chunk type " << r->type;
      EXPECT_GE(r->data.size(), r->type == 2 ? 12u : 8u);
      if (r->data.size() < 8) return {};
      uint64_t at = Get64(r->data.data());
      uint64_t n = r->type == 2 ? Get32(r->data.data() + 8) : r->data.size() - 8;
      EXPECT_TRUE(at >= offset && at + n <= offset + length) << "chunk outside the read";
      if (at < offset || at + n > offset + length) return {};
      for (uint64_t i = 0; i < n; ++i) {
        EXPECT_FALSE(seen[at - offset + i]) << "byte " << at + i << " sent twice";
        seen[at - offset + i] = true;
        out[at - offset + i] = r->type == 2 ? 0 : r->data[8 + i];
      }
      if (r->type == 2 && holes) ++*holes;
      if (r->flags & 1) break;
    }
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](bool b) { return b; }))
        << "the chunks do not cover the read";
    return out;
  }

  ::vss::testing::TempDir tmp_;
  std::string dir_, store_dir_, socket_, shadow_id_;
  Guid volume_id_;
  std::vector<uint8_t> shadow_, live_;  // expected contents
  pid_t pid_ = -1;
};

TEST_F(VssdTest, List_ShowsLiveVolumesAndShadows) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  auto hs = c.Greet();
  ASSERT_TRUE(hs);
  EXPECT_EQ(*hs, 3) << "fixed newstyle and no zeroes";
  ASSERT_TRUE(c.SendOption(3, {}));
  std::vector<std::string> names;
  auto replies = c.ReadOptionReplies(2);
  ASSERT_FALSE(replies.empty());
  EXPECT_EQ(replies.back().type, 1u);
  for (const auto& r : replies) {
    if (r.type != 2) continue;
    uint32_t len = Get32(r.data.data());
    names.emplace_back(r.data.begin() + 4, r.data.begin() + 4 + len);
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"live/disk", "shadow/" + shadow_id_}));
}

TEST_F(VssdTest, Options_UnknownIsUnsupportedInfoUnknownExportAndAbort) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Greet());
  ASSERT_TRUE(c.SendOption(4242, Bytes(10, 1)));
  auto r = c.ReadOptionReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 0x80000001u);
  std::vector<uint8_t> d;
  Put32(d, 9);
  PutStr(d, "live/nope");
  Put16(d, 0);
  ASSERT_TRUE(c.SendOption(6, d));
  r = c.ReadOptionReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 0x80000006u);
  // Malformed INFO (name length past the data).
  d.clear();
  Put32(d, 100);
  ASSERT_TRUE(c.SendOption(6, d));
  r = c.ReadOptionReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 0x80000003u);
  // INFO on a shadow reports the size and read-only.
  d.clear();
  std::string name = "shadow/" + shadow_id_;
  Put32(d, name.size());
  PutStr(d, name);
  Put16(d, 1);
  Put16(d, 3);  // block size
  ASSERT_TRUE(c.SendOption(6, d));
  auto infos = c.ReadOptionReplies(3);
  ASSERT_GE(infos.size(), 3u);
  EXPECT_EQ(Get64(infos[0].data.data() + 2), kSize);
  EXPECT_TRUE(Get16(infos[0].data.data() + 10) & 2) << "read-only flag";
  EXPECT_EQ(Get16(infos[1].data.data()), 3);
  EXPECT_EQ(infos.back().type, 1u);
  ASSERT_TRUE(c.SendOption(2, {}));
  r = c.ReadOptionReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 1u);
  EXPECT_TRUE(c.ClosedByServer());
}

TEST_F(VssdTest, ExportNameOption_EntersTransmission) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Greet(1));  // no NO_ZEROES: 124 zero bytes follow
  ASSERT_TRUE(c.SendOption(
      1, std::vector<uint8_t>{'l', 'i', 'v', 'e', '/', 'd', 'i', 's', 'k'}));
  uint8_t b[10 + 124];
  ASSERT_TRUE(c.Recv(b, sizeof b));
  EXPECT_EQ(Get64(b), kSize);
  ASSERT_TRUE(c.Request(0, kRead, 1, 0, 4096));
  auto r = c.ReadReply(4096);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, 0u);
  EXPECT_EQ(r->data, Bytes(4096, 0x33));
  // An unknown export after EXPORT_NAME can only be answered by closing.
  Client d;
  ASSERT_TRUE(d.Connect(socket_));
  ASSERT_TRUE(d.Greet());
  ASSERT_TRUE(d.SendOption(1, std::vector<uint8_t>{'x'}));
  EXPECT_TRUE(d.ClosedByServer());
}

TEST_F(VssdTest, SimpleReplies_EveryCommandOnLiveExport) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  auto e = c.Open("live/disk", false);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->size, kSize);
  EXPECT_EQ(e->flags & 0x16f, 0x16d) << "flush, fua, trim, zeroes, multi-conn";

  ASSERT_TRUE(c.Request(0, kRead, 1, 0, 128 << 10));
  auto r = c.ReadReply(128 << 10);
  ASSERT_TRUE(r && r->error == 0);
  EXPECT_EQ(r->handle, 1u);
  EXPECT_TRUE(std::equal(r->data.begin(), r->data.end(), live_.begin()));

  ASSERT_TRUE(
      c.Request(1, kWrite, 2, 3 << 20, 5000, Bytes(5000, 0x44)));  // FUA
  r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, 0u);
  ASSERT_TRUE(c.Request(0, kWriteZeroes, 3, (3 << 20) + 1000, 1000));
  ASSERT_TRUE(c.Request(0, kTrim, 4, 16 << 10, 16 << 10));
  ASSERT_TRUE(c.Request(0, kFlush, 5, 0, 0));
  for (int i = 0; i < 3; ++i) {
    r = c.ReadReply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error, 0u) << "handle " << r->handle;
  }
  std::fill_n(live_.begin() + (3 << 20), 5000, 0x44);
  std::fill_n(live_.begin() + (3 << 20) + 1000, 1000, 0);
  std::fill_n(live_.begin() + (16 << 10), 16 << 10, 0);

  ASSERT_TRUE(c.Request(0, kRead, 6, 0, 4 << 20));
  r = c.ReadReply(4 << 20);
  ASSERT_TRUE(r && r->error == 0);
  EXPECT_TRUE(std::equal(r->data.begin(), r->data.end(), live_.begin()));
  // BLOCK_STATUS without structured replies is invalid.
  ASSERT_TRUE(c.Request(0, kBlockStatus, 7, 0, 4096));
  r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, kEInval);
  ASSERT_TRUE(c.Request(0, kDisc, 8, 0, 0));
  EXPECT_TRUE(c.ClosedByServer());
  // The shadow kept its point in time.
  EXPECT_EQ(ReadExport("shadow/" + shadow_id_, 0, 4 << 20),
            std::vector<uint8_t>(shadow_.begin(), shadow_.begin() + (4 << 20)));
}

TEST_F(VssdTest, StructuredReplies_ReadAndBlockStatusContexts) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  std::string changed = "vss:changed:" + shadow_id_;
  auto e = c.Open("live/disk", true,
                  {"base:allocation", changed, "vss:changed:nope"});
  ASSERT_TRUE(e);
  ASSERT_EQ(e->contexts.size(), 2u);
  EXPECT_EQ(e->contexts[0].second, "base:allocation");
  EXPECT_EQ(e->contexts[1].second, changed);

  ASSERT_TRUE(c.Request(4, kRead, 1, (1 << 20) - 10, 20));  // DF
  auto r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 1);
  EXPECT_EQ(r->flags, 1) << "done";
  ASSERT_EQ(r->data.size(), 28u);
  EXPECT_EQ(Get64(r->data.data()), (1u << 20) - 10);
  EXPECT_EQ(r->data[8], 0);
  EXPECT_EQ(r->data[27], 0x22);

  ASSERT_TRUE(c.Request(0, kBlockStatus, 2, 0, 2 << 20));
  std::map<uint32_t, std::vector<std::pair<uint32_t, uint32_t>>> by_ctx;
  for (;;) {
    r = c.ReadReply();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->type, 5) << "block status chunk";
    std::vector<std::pair<uint32_t, uint32_t>> d;
    for (size_t i = 4; i + 8 <= r->data.size(); i += 8) {
      d.push_back({Get32(&r->data[i]), Get32(&r->data[i + 4])});
    }
    by_ctx[Get32(r->data.data())] = d;
    if (r->flags & 1) break;
  }
  // base:allocation: data at [0,256K) and [1M,1M+64K), holes elsewhere.
  uint64_t pos = 0;
  EXPECT_EQ(by_ctx[e->contexts[0].first].size(), 4u);
  for (auto [len, flags] : by_ctx[e->contexts[0].first]) {
    bool data = (pos < (256 << 10)) ||
                (pos >= (1 << 20) && pos < (1 << 20) + (64 << 10));
    EXPECT_EQ(flags, data ? 0u : 3u) << "at " << pos;
    pos += len;
  }
  EXPECT_EQ(pos, 2u << 20);
  // vss:changed: only the first 64 KiB changed since the shadow.
  auto ch = by_ctx[e->contexts[1].first];
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[0], std::make_pair(uint32_t{64 << 10}, 1u));
  EXPECT_EQ(ch[1], std::make_pair(uint32_t{(2 << 20) - (64 << 10)}, 0u));

  // REQ_ONE: one descriptor per context.
  ASSERT_TRUE(c.Request(8, kBlockStatus, 3, 0, 2 << 20));
  for (int i = 0; i < 2; ++i) {
    r = c.ReadReply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->data.size(), 12u);
  }
  // Errors arrive as error chunks: a read past the end.
  ASSERT_TRUE(c.Request(0, kRead, 4, kSize - 10, 20));
  r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 0x8001);
  EXPECT_EQ(r->error, kEInval);
  EXPECT_EQ(r->handle, 4u);
}

TEST_F(VssdTest, ShadowRead_SendsHolesAsHoleChunksUnlessDf) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Open("shadow/" + shadow_id_, true).has_value());
  // [0, 2M): data at [0,256K) (preserved and unchanged) and [1M,1M+64K),
  // holes between and after.
  ASSERT_TRUE(c.Request(0, kRead, 1, 0, 2 << 20));
  int holes = 0;
  std::vector<uint8_t> got = ReadChunks(c, 0, 2 << 20, &holes);
  EXPECT_EQ(holes, 2);
  EXPECT_TRUE(got == std::vector<uint8_t>(shadow_.begin(), shadow_.begin() + (2 << 20)));
  // DF: one data chunk.
  ASSERT_TRUE(c.Request(4, kRead, 2, 0, 2 << 20));
  auto r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 1);
  EXPECT_EQ(r->flags, 1);
  ASSERT_EQ(r->data.size(), 8u + (2 << 20));
  EXPECT_TRUE(std::equal(r->data.begin() + 8, r->data.end(), shadow_.begin()));
  // A read inside a hole: one hole chunk.
  ASSERT_TRUE(c.Request(0, kRead, 3, 1 << 19, 1 << 18));
  got = ReadChunks(c, 1 << 19, 1 << 18, &holes);
  EXPECT_EQ(holes, 1);
  EXPECT_TRUE(got == std::vector<uint8_t>(1 << 18, 0));
  // The live export sends data only.
  Client l;
  ASSERT_TRUE(l.Connect(socket_));
  ASSERT_TRUE(l.Open("live/disk", true).has_value());
  ASSERT_TRUE(l.Request(0, kRead, 4, 0, 2 << 20));
  got = ReadChunks(l, 0, 2 << 20, &holes);
  EXPECT_EQ(holes, 0);
  EXPECT_TRUE(got == std::vector<uint8_t>(live_.begin(), live_.begin() + (2 << 20)));
}

TEST_F(VssdTest, ShadowExport_RefusesWritesWithEpermAndStaysUnchanged) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  std::string name = "shadow/" + shadow_id_;
  auto e = c.Open(name, false);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->flags & 2) << "read-only";
  ASSERT_TRUE(c.Request(0, kWrite, 1, 0, 65536, Bytes(65536, 0xee)));
  ASSERT_TRUE(c.Request(0, kTrim, 2, 0, 65536));
  ASSERT_TRUE(c.Request(0, kWriteZeroes, 3, 0, 65536));
  ASSERT_TRUE(c.Request(1, kWrite, 4, 100, 10, Bytes(10, 0xee)));
  for (int i = 0; i < 4; ++i) {
    auto r = c.ReadReply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error, kEPerm) << "handle " << r->handle;
  }
  // The write payloads were consumed: the stream is still in step.
  ASSERT_TRUE(c.Request(0, kFlush, 5, 0, 0));
  auto r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->handle, 5u);
  EXPECT_EQ(r->error, 0u);
  ASSERT_TRUE(c.Request(0, kRead, 6, 0, 2 << 20));
  r = c.ReadReply(2 << 20);
  ASSERT_TRUE(r && r->error == 0);
  EXPECT_TRUE(std::equal(r->data.begin(), r->data.end(), shadow_.begin()));
  EXPECT_EQ(ReadExport("live/disk", 0, 128 << 10),
            std::vector<uint8_t>(live_.begin(), live_.begin() + (128 << 10)));
}

TEST_F(VssdTest, ManyRequestsInFlightAndSeveralConnections) {
  Client a, b;
  ASSERT_TRUE(a.Connect(socket_));
  ASSERT_TRUE(b.Connect(socket_));
  auto ea = a.Open("live/disk", true);
  auto eb = b.Open("live/disk", true);
  ASSERT_TRUE(ea && eb);
  EXPECT_TRUE(ea->flags & 0x100) << "multi-conn";
  constexpr int kN = 64;
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(a.Request(0, kWrite, 1000 + i, (4 << 20) + i * 4096, 4096,
                          Bytes(4096, static_cast<uint8_t>(i))));
  }
  std::set<uint64_t> seen;
  for (int i = 0; i < kN; ++i) {
    auto r = a.ReadReply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error, 0u);
    seen.insert(r->handle);
  }
  EXPECT_EQ(seen.size(), size_t{kN});
  ASSERT_TRUE(b.Request(0, kFlush, 1, 0, 0));
  auto r = b.ReadReply();
  ASSERT_TRUE(r && r->error == 0);
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(b.Request(0, kRead, i, (4 << 20) + i * 4096, 4096));
  }
  for (int i = 0; i < kN; ++i) {
    r = b.ReadReply();
    ASSERT_TRUE(r && r->type == 1);
    EXPECT_EQ(r->data[8], static_cast<uint8_t>(r->handle)) << r->handle;
  }
}

TEST_F(VssdTest, MalformedClients_AreRefusedAndServerKeepsServing) {
  {  // Out of range and oversize requests, an unknown command and flag.
    Client c;
    ASSERT_TRUE(c.Connect(socket_));
    ASSERT_TRUE(c.Open("live/disk", false));
    ASSERT_TRUE(c.Request(0, kRead, 1, kSize, 1));
    ASSERT_TRUE(c.Request(0, kRead, 2, ~uint64_t{0} - 2, 100));
    ASSERT_TRUE(c.Request(0, kWrite, 3, kSize - 2, 4, Bytes(4, 0x99)));
    ASSERT_TRUE(c.Request(0, kRead, 4, 0, (32 << 20) + 1));
    ASSERT_TRUE(c.Request(0, 99, 5, 0, 0));
    ASSERT_TRUE(c.Request(0x80, kRead, 6, 0, 1));
    ASSERT_TRUE(c.Request(0, kTrim, 7, kSize, 1));
    std::map<uint64_t, uint32_t> errors;
    for (int i = 0; i < 7; ++i) {
      auto r = c.ReadReply();
      ASSERT_TRUE(r);
      errors[r->handle] = r->error;
    }
    EXPECT_EQ(errors, (std::map<uint64_t, uint32_t>{{1, kEInval},
                                                    {2, kEInval},
                                                    {3, kENoSpc},
                                                    {4, kEInval},
                                                    {5, kEInval},
                                                    {6, kEInval},
                                                    {7, kEInval}}));
    // An oversize write: EINVAL and the server hangs up without its payload.
    ASSERT_TRUE(c.Request(0, kWrite, 8, 0, 0x80000000u));
    auto r = c.ReadReply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error, kEInval);
    EXPECT_TRUE(c.ClosedByServer());
  }
  {  // Bad request magic: the server closes.
    Client c;
    ASSERT_TRUE(c.Connect(socket_));
    ASSERT_TRUE(c.Open("live/disk", false));
    std::vector<uint8_t> junk(28, 0xab);
    ASSERT_TRUE(c.Send(junk));
    EXPECT_TRUE(c.ClosedByServer());
  }
  {  // Bad option magic and unknown client flags: closed.
    Client c;
    ASSERT_TRUE(c.Connect(socket_));
    ASSERT_TRUE(c.Greet());
    ASSERT_TRUE(c.Send(Bytes(16, 0x55)));
    EXPECT_TRUE(c.ClosedByServer());
    Client d;
    ASSERT_TRUE(d.Connect(socket_));
    ASSERT_TRUE(d.Greet(0x80));
    EXPECT_TRUE(d.ClosedByServer());
  }
  {  // Abrupt disconnect in the middle of a write's payload.
    Client c;
    ASSERT_TRUE(c.Connect(socket_));
    ASSERT_TRUE(c.Open("live/disk", false));
    ASSERT_TRUE(c.Request(0, kWrite, 1, 0, 65536, Bytes(1000, 0x77)));
    c.Close();
  }
  {  // ... and in the middle of a request header, and of the handshake.
    Client c;
    ASSERT_TRUE(c.Connect(socket_));
    ASSERT_TRUE(c.Open("live/disk", false));
    ASSERT_TRUE(c.Send(Bytes(10, 0x25)));
    c.Close();
    Client d;
    ASSERT_TRUE(d.Connect(socket_));
    ASSERT_TRUE(d.Greet());
    ASSERT_TRUE(d.Send(Bytes(5, 0x49)));
    d.Close();
  }
  // Another client is served and nothing changed.
  EXPECT_EQ(ReadExport("live/disk", 0, 2 << 20),
            std::vector<uint8_t>(live_.begin(), live_.begin() + (2 << 20)));
  EXPECT_EQ(ReadExport("shadow/" + shadow_id_, 0, 2 << 20),
            std::vector<uint8_t>(shadow_.begin(), shadow_.begin() + (2 << 20)));
}

TEST_F(VssdTest, ListMetaContext_OffersAllocationAndChangedSinceEachShadow) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Greet());
  auto list = [&](const std::string& name, std::vector<std::string> queries) {
    std::vector<uint8_t> d;
    Put32(d, name.size());
    PutStr(d, name);
    Put32(d, queries.size());
    for (const auto& q : queries) {
      Put32(d, q.size());
      PutStr(d, q);
    }
    EXPECT_TRUE(c.SendOption(9, d));
    std::vector<std::string> names;
    for (const auto& r : c.ReadOptionReplies(4)) {
      if (r.type == 4)
        names.emplace_back(r.data.begin() + 4, r.data.end());
      else
        EXPECT_EQ(r.type, 1u);
    }
    return names;
  };
  EXPECT_EQ(list("live/disk", {}),
            (std::vector<std::string>{"base:allocation",
                                      "vss:changed:" + shadow_id_}));
  EXPECT_EQ(list("live/disk", {"base:"}),
            (std::vector<std::string>{"base:allocation"}));
  EXPECT_EQ(list("shadow/" + shadow_id_, {}),
            (std::vector<std::string>{"base:allocation"}));
  EXPECT_EQ(list("live/disk", {"other:thing"}), (std::vector<std::string>{}));
  // SET before structured replies is refused.
  std::vector<uint8_t> d;
  Put32(d, 9);
  PutStr(d, "live/disk");
  Put32(d, 0);
  ASSERT_TRUE(c.SendOption(10, d));
  auto r = c.ReadOptionReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 0x80000003u);
}

TEST_F(VssdTest, Sigterm_AnswersConnectedClientFlushesAndExitsZero) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Open("live/disk", true));
  ASSERT_TRUE(c.Request(0, kWrite, 1, 5 << 20, 65536, Bytes(65536, 0x7e)));
  auto r = c.ReadReply();
  ASSERT_TRUE(r && r->error == 0);
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_TRUE(c.ClosedByServer());
  int st = 0;
  ASSERT_EQ(::waitpid(pid_, &st, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  EXPECT_FALSE(std::filesystem::exists(socket_)) << "socket file removed";
  auto store = engine::Store::Open({.dir = store_dir_});
  ASSERT_TRUE(store.ok());
  auto vol = (*store)->OpenVolume(volume_id_);
  ASSERT_TRUE(vol.ok()) << "vssd released the volume: "
                        << vol.status().ToString();
  std::vector<uint8_t> back(65536);
  ASSERT_TRUE((*vol)->Read(5 << 20, back).ok());
  EXPECT_EQ(back, Bytes(65536, 0x7e));
}

TEST_F(VssdTest, Revert_RefusedWhileALiveClientIsOpenUnlessForced) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Open("live/disk", false).has_value());
  const std::string revert = std::string(VSSCTL_PATH) + " --store " + store_dir_ +
                             " shadow revert " + shadow_id_;
  auto [rc, out] = Shell(revert);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("VSS_E_VOLUME_IN_USE"), std::string::npos) << out;
  EXPECT_NE(out.find("volume disk is in use by 1 NBD client"), std::string::npos) << out;
  // Nothing changed: the client still reads the live data, the shadow stays.
  ASSERT_TRUE(c.Request(0, kRead, 1, 0, 4096));
  auto r = c.ReadReply(4096);
  ASSERT_TRUE(r && r->error == 0);
  EXPECT_EQ(r->data, Bytes(4096, 0x33));
  EXPECT_EQ(ReadExport("shadow/" + shadow_id_, 0, 4096), Bytes(4096, 0x11));

  std::tie(rc, out) = Shell(revert + " --force");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(c.ClosedByServer()) << "the forced revert disconnects the live client";
  // The volume holds the shadow's bytes, and the shadow is gone.
  EXPECT_EQ(ReadExport("live/disk", 0, 4096), Bytes(4096, 0x11));
  Client s;
  ASSERT_TRUE(s.Connect(socket_));
  EXPECT_FALSE(s.Open("shadow/" + shadow_id_, true).has_value());
}

TEST_F(VssdTest, Tcp_InsecureServesPlainTextOnLoopback) {
  // One vssd per store: stop the fixture's (Unix socket) one first.
  ::kill(pid_, SIGTERM);
  int fixture_status = 0;
  ::waitpid(pid_, &fixture_status, 0);
  pid_ = -1;
  for (int attempt = 0; attempt < 5; ++attempt) {
    uint16_t port = 20000 + (::getpid() * 7 + attempt * 1009) % 30000;
    pid_t pid = StartVssd({"--store", store_dir_, "--nbd",
                           "tcp:" + std::to_string(port), "--nbd-insecure"});
    bool up = false;
    for (int i = 0; i < 250 && !up; ++i) {
      Client c;
      up = c.ConnectTcp(port);
      if (!up) {
        int st;
        if (::waitpid(pid, &st, WNOHANG) == pid) break;  // port taken: retry
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    if (!up) continue;
    Client c;
    ASSERT_TRUE(c.ConnectTcp(port));
    ASSERT_TRUE(c.Open("shadow/" + shadow_id_, false));
    ASSERT_TRUE(c.Request(0, kRead, 1, 0, 4096));
    auto r = c.ReadReply(4096);
    ASSERT_TRUE(r && r->error == 0);
    EXPECT_EQ(r->data, Bytes(4096, 0x11));
    c.Close();
    ::kill(pid, SIGTERM);
    int st = 0;
    ::waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return;
  }
  GTEST_SKIP() << "no free TCP port found";
}

// Chunk 0 was preserved for the fixture's shadow when the live volume was
// written after it: its record is the first of the first segment. Flips a
// payload byte (offset 72) so that its checksum fails.
void DamageFirstRecord(const std::string& store_dir) {
  std::string segment;
  for (const auto& e : std::filesystem::recursive_directory_iterator(store_dir)) {
    if (e.path().filename() == "seg-000001.vsd") segment = e.path();
  }
  ASSERT_FALSE(segment.empty());
  std::fstream f(segment, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(72);
  char b = 0;
  f.read(&b, 1);
  b ^= 0x5a;
  f.seekp(72);
  f.write(&b, 1);
}

TEST_F(VssdTest, DamagedDiffArea_ShadowReadsGetEioAndServerKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(DamageFirstRecord(store_dir_));
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Open("shadow/" + shadow_id_, true));
  ASSERT_TRUE(c.Request(0, kRead, 1, 0, 4096));
  auto r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 0x8001);
  EXPECT_EQ(r->error, 5u) << "EIO";
  // Undamaged chunks still read, on this connection and on others.
  ASSERT_TRUE(c.Request(0, kRead, 2, 1 << 20, 4096));
  r = c.ReadReply();
  ASSERT_TRUE(r && r->type == 1);
  EXPECT_EQ(r->data[8], 0x22);
  EXPECT_EQ(ReadExport("live/disk", 0, 4096), Bytes(4096, 0x33));
}

TEST_F(VssdTest, DamagedDiffArea_ReadWithHolesIsOneErrorChunkAndNothingElse) {
  ASSERT_NO_FATAL_FAILURE(DamageFirstRecord(store_dir_));
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Open("shadow/" + shadow_id_, true));
  // [0, 2M) has holes, so it would go out as data and hole chunks: the
  // damaged chunk makes it one error reply, with no chunk before it.
  ASSERT_TRUE(c.Request(0, kRead, 1, 0, 2 << 20));
  auto r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, 0x8001);
  EXPECT_EQ(r->error, 5u) << "EIO";
  EXPECT_EQ(r->flags, 1) << "done";
  // The connection goes on: a read of the holes and undamaged data.
  ASSERT_TRUE(c.Request(0, kRead, 2, 1 << 19, 1 << 20));
  int holes = 0;
  std::vector<uint8_t> got = ReadChunks(c, 1 << 19, 1 << 20, &holes);
  EXPECT_GE(holes, 1);
  EXPECT_TRUE(got == std::vector<uint8_t>(shadow_.begin() + (1 << 19),
                                          shadow_.begin() + (3 << 19)));
}

TEST(VssdStartTest, BadArgumentsAndMissingStore_OneLineAndExit1) {
  auto [rc, out] =
      Shell(std::string(VSSD_PATH) + " --store /nonexistent/vss-store");
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find("/nonexistent/vss-store"), std::string::npos) << out;
  std::tie(rc, out) = Shell(std::string(VSSD_PATH) + " --nbd bogus:1");
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

// ---- access control ---------------------------------------------------------

TEST_F(VssdTest, UnixSocket_IsMode0660WhateverTheUmask) {
  mode_t old = ::umask(0);
  RestartWith({});
  ::umask(old);
  struct stat st;
  ASSERT_EQ(::lstat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  // No private directory of the bind is left beside it.
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename().string().rfind(".vssd-socket-", 0),
              std::string::npos)
        << e.path();
  }
}

// Runs `body` in a child process as uid 65534 with group 0 (so that the
// 0660 root:root socket admits it, as it admits the store owner's group);
// returns the child's exit status (0: every check in it passed).
int AsOtherUser(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(0, 0, 0) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(99);
    }
    ::_exit(body());
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 98;
}

TEST_F(VssdTest, UnixSocket_OtherUserMayListButNotOpenOrWrite) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root, to run a client as another user";
  }
  ASSERT_EQ(::chmod(dir_.c_str(), 0710), 0);  // the group may reach the socket
  // Our client as uid 65534: LIST works, INFO and GO are refused by policy
  // with a message, EXPORT_NAME is closed.
  int rc = AsOtherUser([&] {
    Client c;
    if (!c.Connect(socket_) || !c.Greet()) return 1;
    if (!c.SendOption(3, {})) return 2;
    auto list = c.ReadOptionReplies(2);
    if (list.size() != 3 || list.back().type != 1) return 3;
    for (uint32_t option : {6u, 7u}) {
      std::vector<uint8_t> d;
      Put32(d, 9);
      PutStr(d, "live/disk");
      Put16(d, 0);
      if (!c.SendOption(option, d)) return 4;
      auto r = c.ReadOptionReply();
      if (!r || r->type != 0x80000002u) return 5;  // NBD_REP_ERR_POLICY
      if (OptionMessage(*r).find("permission denied") == std::string::npos) return 6;
    }
    Client d;
    if (!d.Connect(socket_) || !d.Greet()) return 7;
    if (!d.SendOption(1, std::vector<uint8_t>{'l', 'i', 'v', 'e', '/', 'd', 'i',
                                               's', 'k'})) {
      return 8;
    }
    size_t got = 1;
    if (!DrainUntilClosed(d, 60000, &got) || got != 0) return 9;
    return 0;
  });
  EXPECT_EQ(rc, 0) << "check " << rc << " failed in the other user's client";
  if (HaveTool("qemu-io") && HaveTool("setpriv")) {
    // A real client as that user cannot write.
    auto [qrc, out] = Shell("setpriv --reuid=65534 --regid=0 --clear-groups "
                            "qemu-io -f raw -c 'write -P 0x66 0 4k' '" +
                            Uri("live/disk") + "'");
    EXPECT_NE(qrc, 0) << out;
  }
  // Nothing changed, and root still opens it.
  EXPECT_EQ(ReadExport("live/disk", 0, 4096), Bytes(4096, 0x33));
}

TEST_F(VssdTest, Tcp_WithoutTlsOrInsecureFlag_RefusedAtStartInOneLine) {
  StopVssd();
  // (Under `timeout`: a vssd that served would not return.)
  auto [rc, out] = Shell("timeout 60 " + std::string(VssdPath()) + " --store " +
                         store_dir_ + " --nbd tcp:127.0.0.1:0");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find("--tls-psk"), std::string::npos) << out;
  // A certificate directory without its files: refused, naming the file.
  std::filesystem::create_directory(dir_ + "/x509");
  std::tie(rc, out) = Shell("timeout 60 " + std::string(VssdPath()) + " --store " +
                            store_dir_ + " --nbd tcp:127.0.0.1:0 --tls-x509 " + dir_ +
                            "/x509");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find("server-cert.pem"), std::string::npos) << out;
}

TEST_F(VssdTest, ErrorReplies_DoNotRevealHostPaths) {
  // The image is gone: opening the live export fails.
  std::filesystem::rename(dir_ + "/disk.img", dir_ + "/moved.img");
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Greet());
  std::vector<uint8_t> d;
  Put32(d, 9);
  PutStr(d, "live/disk");
  Put16(d, 0);
  ASSERT_TRUE(c.SendOption(7, d));
  auto r = c.ReadOptionReply();
  ASSERT_TRUE(r);
  EXPECT_GE(r->type, 0x80000000u);
  std::string message = OptionMessage(*r);
  EXPECT_FALSE(message.empty());
  EXPECT_EQ(message.find(dir_), std::string::npos) << message;
  EXPECT_EQ(message.find("disk.img"), std::string::npos) << message;
}

// ---- TLS ----------------------------------------------------------------------

// Image options for qemu of the export `name` on 127.0.0.1:`port` through
// the TLS object tls0.
std::string QemuTlsImage(uint16_t port, const std::string& name) {
  return "driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port=" +
         std::to_string(port) + ",file.export=" + name + ",file.tls-creds=tls0";
}

TEST_F(VssdTest, Tls_PskClientsReadAndWritePlainTextAndWrongKeyRefused) {
  for (const char* tool : {"psktool", "nbdinfo", "qemu-io"}) {
    if (!HaveTool(tool)) {
      GTEST_SKIP() << tool << " not installed (Debian: gnutls-bin, libnbd-bin, qemu-utils)";
    }
  }
  const std::string keys = dir_ + "/psk", wrong = dir_ + "/wrong";
  std::filesystem::create_directories(keys);
  std::filesystem::create_directories(wrong);
  // qemu's tls-creds-psk reads DIR/keys.psk, user "qemu" by default.
  ASSERT_EQ(Shell("psktool -u qemu -p " + keys + "/keys.psk").first, 0);
  ASSERT_EQ(Shell("psktool -u qemu -p " + wrong + "/keys.psk").first, 0);
  uint16_t port = StartTcp({"--tls-psk", keys + "/keys.psk"});
  if (port == 0) GTEST_SKIP() << "no free TCP port found";

  {  // Plain text: every option but STARTTLS is refused, EXPORT_NAME closes.
    Client c;
    ASSERT_TRUE(c.ConnectTcp(port));
    ASSERT_TRUE(c.Greet());
    ASSERT_TRUE(c.SendOption(3, {}));
    auto r = c.ReadOptionReply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->type, 0x80000005u) << "NBD_REP_ERR_TLS_REQD";
    ASSERT_TRUE(c.SendOption(1, std::vector<uint8_t>{'l', 'i', 'v', 'e', '/',
                                                      'd', 'i', 's', 'k'}));
    size_t got = 1;
    EXPECT_TRUE(DrainUntilClosed(c, 60000, &got));
    EXPECT_EQ(got, 0u);
  }
  const std::string base = "nbd://127.0.0.1:" + std::to_string(port) + "/";
  const std::string tls = "nbds://qemu@127.0.0.1:" + std::to_string(port) + "/";
  auto [rc, out] = Shell("nbdinfo '" + base + "live/disk'");
  EXPECT_NE(rc, 0) << "plain text served: " << out;

  std::tie(rc, out) = Shell("nbdinfo --list '" + tls + "?tls-psk-file=" + keys +
                            "/keys.psk'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("live/disk"), std::string::npos) << out;
  EXPECT_NE(out.find("shadow/" + shadow_id_), std::string::npos) << out;

  const std::string object =
      "qemu-io --object tls-creds-psk,id=tls0,endpoint=client,dir=";
  std::tie(rc, out) = Shell(object + keys + " --image-opts '" +
                            QemuTlsImage(port, "live/disk") +
                            "' -c 'write -P 0x5c 1M 64k' -c flush");
  EXPECT_EQ(rc, 0) << out;
  std::tie(rc, out) = Shell(object + keys + " --image-opts '" +
                            QemuTlsImage(port, "live/disk") +
                            "' -c 'read -P 0x5c 1M 64k' -c 'read -P 0x33 0 64k'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("verification failed"), std::string::npos) << out;
  std::tie(rc, out) = Shell(object + keys + " -r --image-opts '" +
                            QemuTlsImage(port, "shadow/" + shadow_id_) +
                            "' -c 'read -P 0x11 0 64k'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("verification failed"), std::string::npos) << out;

  // The wrong key: no TLS session, nothing served, nothing written.
  std::tie(rc, out) = Shell(object + wrong + " --image-opts '" +
                            QemuTlsImage(port, "live/disk") +
                            "' -c 'write -P 0x77 0 4k'");
  EXPECT_NE(rc, 0) << out;
  std::tie(rc, out) = Shell("nbdinfo '" + tls + "live/disk?tls-psk-file=" + wrong +
                            "/keys.psk'");
  EXPECT_NE(rc, 0) << out;
  StopVssd();
  auto store = engine::Store::Open({.dir = store_dir_});
  ASSERT_TRUE(store.ok());
  auto vol = (*store)->OpenVolume(volume_id_);
  ASSERT_TRUE(vol.ok());
  std::vector<uint8_t> back(64 << 10);
  ASSERT_TRUE((*vol)->Read(0, back).ok());
  EXPECT_EQ(back, Bytes(64 << 10, 0x33));
  ASSERT_TRUE((*vol)->Read(1 << 20, back).ok());
  EXPECT_EQ(back, Bytes(64 << 10, 0x5c));
}

TEST_F(VssdTest, Tls_X509ClientCertificateRequiredAndServed) {
  for (const char* tool : {"certtool", "nbdinfo", "qemu-io"}) {
    if (!HaveTool(tool)) {
      GTEST_SKIP() << tool << " not installed (Debian: gnutls-bin, libnbd-bin, qemu-utils)";
    }
  }
  const std::string pki = dir_ + "/pki";
  std::filesystem::create_directories(pki + "/server");
  std::filesystem::create_directories(pki + "/client");
  std::filesystem::create_directories(pki + "/nocert");
  auto [rc, out] = Shell(
      "set -e; cd " + pki + "\n"
      "gen() { certtool --generate-privkey --key-type=ecdsa --outfile $1 2>/dev/null; }\n"
      "gen ca-key.pem\n"
      "printf 'cn = vss test CA\\nca\\ncert_signing_key\\nexpiration_days = 2\\n' > ca.info\n"
      "certtool --generate-self-signed --load-privkey ca-key.pem --template ca.info "
      "--outfile ca-cert.pem 2>/dev/null\n"
      "gen server/server-key.pem\n"
      "printf 'cn = localhost\\ndns_name = localhost\\nip_address = 127.0.0.1\\n"
      "tls_www_server\\nsigning_key\\nencryption_key\\nexpiration_days = 2\\n' > server.info\n"
      "certtool --generate-certificate --load-privkey server/server-key.pem "
      "--load-ca-certificate ca-cert.pem --load-ca-privkey ca-key.pem "
      "--template server.info --outfile server/server-cert.pem 2>/dev/null\n"
      "gen client/client-key.pem\n"
      "printf 'cn = vss test client\\ntls_www_client\\nsigning_key\\n"
      "encryption_key\\nexpiration_days = 2\\n' > client.info\n"
      "certtool --generate-certificate --load-privkey client/client-key.pem "
      "--load-ca-certificate ca-cert.pem --load-ca-privkey ca-key.pem "
      "--template client.info --outfile client/client-cert.pem 2>/dev/null\n"
      "cp ca-cert.pem server/; cp ca-cert.pem client/; cp ca-cert.pem nocert/\n");
  ASSERT_EQ(rc, 0) << out;
  uint16_t port = StartTcp({"--tls-x509", pki + "/server"});
  if (port == 0) GTEST_SKIP() << "no free TCP port found";
  const std::string tls = "nbds://127.0.0.1:" + std::to_string(port) + "/";
  std::tie(rc, out) = Shell("nbdinfo '" + tls + "live/disk?tls-certificates=" +
                            pki + "/client'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("8388608"), std::string::npos) << out;
  const std::string object =
      "qemu-io --object tls-creds-x509,id=tls0,endpoint=client,dir=";
  std::tie(rc, out) = Shell(object + pki + "/client --image-opts '" +
                            QemuTlsImage(port, "live/disk") +
                            "' -c 'write -P 0x4d 2M 64k' -c 'read -P 0x4d 2M 64k'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("verification failed"), std::string::npos) << out;
  // Without a client certificate the handshake fails: nothing is served.
  std::tie(rc, out) = Shell("nbdinfo '" + tls + "live/disk?tls-certificates=" +
                            pki + "/nocert'");
  EXPECT_NE(rc, 0) << out;
  std::tie(rc, out) = Shell(object + pki + "/nocert --image-opts '" +
                            QemuTlsImage(port, "live/disk") +
                            "' -c 'write -P 0x77 0 4k'");
  EXPECT_NE(rc, 0) << out;
}

// ---- limits -------------------------------------------------------------------

TEST_F(VssdTest, HandshakeTimeout_SilentClientsAreClosedAndServerStillAnswers) {
  RestartWith({"--nbd-handshake-timeout-ms", "300"});
  constexpr int kSilent = 40;
  std::vector<std::unique_ptr<Client>> silent;
  for (int i = 0; i < kSilent; ++i) {
    silent.push_back(std::make_unique<Client>());
    ASSERT_TRUE(silent.back()->Connect(socket_));
  }
  // One that starts the handshake and stops in the middle of an option.
  Client half;
  ASSERT_TRUE(half.Connect(socket_));
  ASSERT_TRUE(half.Greet());
  ASSERT_TRUE(half.Send(Bytes(7, 0x49)));
  // One cap for them all (for a server that never closes them).
  auto cap = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto left_ms = [&] {
    return std::max<int>(1, static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(
            cap - std::chrono::steady_clock::now()).count()));
  };
  for (auto& c : silent) {
    ASSERT_TRUE(DrainUntilClosed(*c, left_ms())) << "a silent client stayed";
  }
  EXPECT_TRUE(DrainUntilClosed(half, left_ms()));
  EXPECT_EQ(ReadExport("live/disk", 0, 4096), Bytes(4096, 0x33));
}

TEST_F(VssdTest, IdleTimeout_ClosesAClientThatSendsNothing) {
  RestartWith({"--nbd-idle-timeout-ms", "300"});
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Open("live/disk", false));
  ASSERT_TRUE(c.Request(0, kRead, 1, 0, 4096));
  auto r = c.ReadReply(4096);
  ASSERT_TRUE(r && r->error == 0);
  EXPECT_TRUE(DrainUntilClosed(c));
  EXPECT_EQ(ReadExport("live/disk", 0, 4096), Bytes(4096, 0x33));
}

TEST_F(VssdTest, ConnectionLimit_OneMoreIsClosedBeforeTheGreeting) {
  RestartWith({"--nbd-max-connections", "3"});
  std::vector<std::unique_ptr<Client>> clients;
  // WaitForSocket's probe holds a slot until vssd has seen it close, so a
  // client may be turned away while it goes; once three are greeted, vssd
  // holds exactly those three.
  for (int i = 0; i < 3; ++i) {
    bool greeted = false;
    for (int attempt = 0; attempt < 500 && !greeted; ++attempt) {
      auto c = std::make_unique<Client>();
      ASSERT_TRUE(c->Connect(socket_));
      if (c->Greet()) {
        clients.push_back(std::move(c));
        greeted = true;
      }
    }
    ASSERT_TRUE(greeted) << "client " << i;  // accepted
  }
  Client over;
  ASSERT_TRUE(over.Connect(socket_));  // the kernel's backlog takes it
  size_t got = 1;
  EXPECT_TRUE(DrainUntilClosed(over, 60000, &got));
  EXPECT_EQ(got, 0u) << "no greeting over the limit";
  // When one leaves, a new client is served (once the server has seen it go).
  clients[0]->Close();
  bool served = false;
  for (int i = 0; i < 3000 && !served; ++i) {
    Client c;
    served = c.Connect(socket_) && c.Greet().has_value();
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(served);
}

// The number of threads of process `pid`, or -1.
int ThreadsOf(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

TEST_F(VssdTest, ThreadLimit_ClientsWithoutAThreadAreRefusedAndVssdLives) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root, to run vssd as a user of its own with a thread limit";
  }
  StopVssd();
  // A uid of its own: RLIMIT_NPROC counts every thread of the real uid.
  const uid_t uid = 61000 + static_cast<uid_t>(::getpid() % 4000);
  ASSERT_EQ(::lchown(dir_.c_str(), uid, uid), 0);
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_)) {
    ASSERT_EQ(::lchown(e.path().c_str(), uid, uid), 0) << e.path();
  }
  pid_ = ::fork();
  if (pid_ == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      ::_exit(126);
    }
    ::execl(VssdPath(), VssdPath(), "--store", store_dir_.c_str(), "--nbd",
            ("unix:" + socket_).c_str(), "--no-fsfreeze", nullptr);
    ::_exit(127);
  }
  ASSERT_TRUE(WaitForSocket());
  Client first;
  ASSERT_TRUE(first.Connect(socket_));
  ASSERT_TRUE(first.Open("live/disk", false));
  ASSERT_TRUE(first.Request(0, kRead, 1, 0, 4096));
  auto r = first.ReadReply(4096);
  ASSERT_TRUE(r && r->error == 0);
  // From now on vssd may make one more thread: enough for the next
  // client's connection, none for its workers, none for a third client.
  const int threads = ThreadsOf(pid_);
  ASSERT_GT(threads, 0);
  // Set by a process of vssd's uid (root may lack CAP_SYS_RESOURCE in a
  // container): the soft limit only, so that it can be raised again.
  auto set_soft_limit = [&](rlim_t soft) {
    pid_t helper = ::fork();
    if (helper == 0) {
      rlimit l{};
      if (::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) ::_exit(2);
      if (::prlimit(pid_, RLIMIT_NPROC, nullptr, &l) != 0) ::_exit(1);
      l.rlim_cur = std::min(soft, l.rlim_max);
      ::_exit(::prlimit(pid_, RLIMIT_NPROC, &l, nullptr) == 0 ? 0 : 3);
    }
    int st = 0;
    ::waitpid(helper, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  ASSERT_EQ(set_soft_limit(static_cast<rlim_t>(threads + 1)), 0);
  // Clients served (a thread that ended meanwhile leaves room for one, and
  // a connection serves with the workers it could get) stay connected, so
  // that they keep their threads: some of the next ones must be refused.
  std::vector<std::unique_ptr<Client>> kept;
  int refused = 0;
  for (int i = 0; i < 6; ++i) {
    auto c = std::make_unique<Client>();
    ASSERT_TRUE(c->Connect(socket_));
    bool served = c->Open("live/disk", false).has_value() &&
                  c->Request(0, kRead, 2, 0, 4096) && c->ReadReply(4096).has_value();
    if (served) {
      kept.push_back(std::move(c));
    } else {
      ++refused;
    }
  }
  EXPECT_GE(refused, 3) << "clients served past the thread limit";
  int st = 0;
  EXPECT_EQ(::waitpid(pid_, &st, WNOHANG), 0) << "vssd died (status " << st << ")";
  // The first client is still served.
  ASSERT_TRUE(first.Request(0, kRead, 3, 0, 4096));
  r = first.ReadReply(4096);
  ASSERT_TRUE(r && r->error == 0);
  EXPECT_EQ(r->data, Bytes(4096, 0x33));
  // With threads again, new clients are served.
  ASSERT_EQ(set_soft_limit(RLIM_INFINITY), 0);
  first.Close();
  EXPECT_EQ(ReadExport("live/disk", 0, 4096), Bytes(4096, 0x33));
}

// ---- real clients -----------------------------------------------------------

TEST_F(VssdTest, Interop_NbdinfoListsAndMapsAllocationAndChanges) {
  if (!HaveTool("nbdinfo"))
    GTEST_SKIP() << "nbdinfo not installed (Debian package libnbd-bin)";
  auto [rc, out] = Shell("nbdinfo --list '" + Uri("") + "'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("live/disk"), std::string::npos) << out;
  EXPECT_NE(out.find("shadow/" + shadow_id_), std::string::npos) << out;
  std::tie(rc, out) = Shell("nbdinfo --map '" + Uri("live/disk") + "'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("0      262144    0  data"), std::string::npos) << out;
  EXPECT_NE(out.find("hole,zero"), std::string::npos) << out;
  std::tie(rc, out) = Shell("nbdinfo --map=vss:changed:" + shadow_id_ + " '" +
                            Uri("live/disk") + "'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("0       65536    1"), std::string::npos) << out;
  std::tie(rc, out) =
      Shell("nbdinfo --map '" + Uri("shadow/" + shadow_id_) + "'");
  EXPECT_EQ(rc, 0) << out;
}

TEST_F(VssdTest, Interop_QemuWritesAcrossShadowAndShadowComparesEqual) {
  if (!HaveTool("qemu-io") || !HaveTool("qemu-img")) {
    GTEST_SKIP()
        << "qemu-io/qemu-img not installed (Debian package qemu-utils)";
  }
  auto [rc, out] = Shell(
      "qemu-io -f raw -c 'write -P 0x5a 2M 1M' -c 'write -z 0 64k' -c flush '" +
      Uri("live/disk") + "'");
  ASSERT_EQ(rc, 0) << out;
  std::fill_n(live_.begin() + (2 << 20), 1 << 20, 0x5a);
  std::fill_n(live_.begin(), 64 << 10, 0);
  // Take a second shadow through the engine once vssd has let go of the
  // volume (it closes it when its last client leaves).
  Guid second;
  for (int tries = 0;; ++tries) {
    auto store = engine::Store::Open({.dir = store_dir_});
    ASSERT_TRUE(store.ok());
    auto set = (*store)->CreateShadowSet({.volumes = {volume_id_}});
    if (set.ok()) {
      second = set->shadows[0].shadow_id;
      break;
    }
    ASSERT_EQ(set.status().code(), StatusCode::kBusy)
        << set.status().ToString();
    ASSERT_LT(tries, 250);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<uint8_t> at_second = live_;
  std::tie(rc, out) = Shell(
      "qemu-io -f raw -c 'write -P 0x6b 2560k 64k' -c 'discard 1M 64k' '" +
      Uri("live/disk") + "'");
  ASSERT_EQ(rc, 0) << out;
  std::fill_n(live_.begin() + (2560 << 10), 64 << 10, 0x6b);
  std::fill_n(live_.begin() + (1 << 20), 64 << 10, 0);

  WriteFile(dir_ + "/second.img", at_second);
  WriteFile(dir_ + "/first.img", shadow_);
  WriteFile(dir_ + "/live.img", live_);
  std::tie(rc, out) =
      Shell("qemu-img compare -f raw -F raw '" +
            Uri("shadow/" + second.ToString()) + "' " + dir_ + "/second.img");
  EXPECT_EQ(rc, 0) << out;
  std::tie(rc, out) =
      Shell("qemu-img compare -f raw -F raw '" + Uri("shadow/" + shadow_id_) +
            "' " + dir_ + "/first.img");
  EXPECT_EQ(rc, 0) << out;
  std::tie(rc, out) = Shell("qemu-img compare -f raw -F raw '" +
                            Uri("live/disk") + "' " + dir_ + "/live.img");
  EXPECT_EQ(rc, 0) << out;
  if (HaveTool("nbdinfo")) {
    // Between the two shadows: [0,64K) zeroed and [2M,3M) written.
    std::tie(rc, out) = Shell("nbdinfo --map=vss:changed:" + shadow_id_ + " '" +
                              Uri("shadow/" + second.ToString()) + "'");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("2097152     1048576    1"), std::string::npos) << out;
  }
  if (HaveTool("nbdcopy")) {
    std::tie(rc, out) =
        Shell("nbdcopy '" + Uri("shadow/" + second.ToString()) + "' " + dir_ +
              "/copy.img && cmp " + dir_ + "/copy.img " + dir_ + "/second.img");
    EXPECT_EQ(rc, 0) << out;
  }
}

}  // namespace
}  // namespace vss::nbdtest
