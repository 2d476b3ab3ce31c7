// vssd's NBD server in process (the vssd_nbd library): what needs the
// server's own counters. The payload memory cap holds under many large
// requests from several clients at once, and a request larger than the cap
// is refused as the protocol says.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "nbd_client.h"
#include "server.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/testing/nbd_server.h"
#include "vss/testing/temp_dir.h"

namespace vss::nbdtest {
namespace {

constexpr uint64_t kSize = 32 << 20;
constexpr uint64_t kCap = 2 << 20;
constexpr uint16_t kRead = 0, kWrite = 1;

class NbdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    auto store = engine::Store::Open({.dir = dir_ + "/store"});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    auto row = store_->CreateVolume(
        {.path = dir_ + "/disk.img", .size = kSize, .name = "disk"});
    ASSERT_TRUE(row.ok()) << row.status().ToString();
    vssd::NbdOptions options;
    options.memory_limit = kCap;
    socket_ = dir_ + "/nbd.sock";
    auto nbd = testing::InProcessNbdServer::Start(store_.get(), socket_,
                                                  options);
    ASSERT_TRUE(nbd.ok()) << nbd.status().ToString();
    nbd_ = std::move(nbd).value();
    server_ = &nbd_->server();
  }

  void TearDown() override {
    nbd_.reset();
    store_.reset();
  }

  ::vss::testing::TempDir tmp_;
  std::string dir_, socket_;
  std::unique_ptr<engine::Store> store_;
  std::unique_ptr<testing::InProcessNbdServer> nbd_;
  vssd::Server* server_ = nullptr;  // nbd_'s
};

TEST_F(NbdServerTest, PayloadMemory_StaysUnderItsCapWithManyLargeRequests) {
  constexpr int kClients = 4, kRequests = 8;
  constexpr uint32_t kLen = 1 << 20;  // two fit in the cap at once
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      Client c;
      if (!c.Connect(socket_) || !c.Open("live/disk", false)) {
        failures[t] = "cannot open";
        return;
      }
      // Every write sent before any reply is read: the server has up to
      // kRequests MiB of payload from this client alone in front of it.
      for (int i = 0; i < kRequests; ++i) {
        uint64_t offset = (uint64_t(t) * kRequests + i) * kLen;
        std::vector<uint8_t> data(kLen, static_cast<uint8_t>(t * 16 + i + 1));
        if (!c.Request(0, kWrite, i, offset, kLen, data)) failures[t] = "send";
      }
      for (int i = 0; i < kRequests; ++i) {
        auto r = c.ReadReply();
        if (!r || r->error != 0) failures[t] = "write reply";
      }
      for (int i = 0; i < kRequests; ++i) {
        c.Request(0, kRead, i, (uint64_t(t) * kRequests + i) * kLen, kLen);
      }
      for (int i = 0; i < kRequests; ++i) {
        auto r = c.ReadReply(kLen);
        if (!r || r->error != 0 || r->data.size() != kLen ||
            r->data[0] != static_cast<uint8_t>(t * 16 + r->handle + 1) ||
            r->data[kLen - 1] != r->data[0]) {
          failures[t] = "read back: handle " + (r ? std::to_string(r->handle) : "-") +
                        " error " + (r ? std::to_string(r->error) : "-") + " byte " +
                        (r && !r->data.empty() ? std::to_string(r->data[0]) : "-");
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kClients; ++t) EXPECT_EQ(failures[t], "") << "client " << t;
  EXPECT_GT(server_->memory().peak(), 0u);
  EXPECT_LE(server_->memory().peak(), kCap);
}

TEST_F(NbdServerTest, PayloadMemory_RequestLargerThanTheCapIsRefused) {
  Client c;
  ASSERT_TRUE(c.Connect(socket_));
  ASSERT_TRUE(c.Greet());
  // The advertised maximum block size is the cap.
  std::vector<uint8_t> d;
  Put32(d, 9);
  PutStr(d, "live/disk");
  Put16(d, 1);
  Put16(d, 3);  // NBD_INFO_BLOCK_SIZE
  ASSERT_TRUE(c.SendOption(7, d));
  uint32_t max_block = 0;
  for (const auto& r : c.ReadOptionReplies(3)) {
    if (r.type == 3 && Get16(r.data.data()) == 3) max_block = Get32(r.data.data() + 10);
  }
  EXPECT_EQ(max_block, kCap);
  // A read over it: EINVAL, the connection goes on.
  ASSERT_TRUE(c.Request(0, kRead, 1, 0, kCap + 1));
  auto r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, 22u);
  // A write over it: EINVAL and the server hangs up without reading it.
  ASSERT_TRUE(c.Request(0, kWrite, 2, 0, kCap + 1));
  r = c.ReadReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, 22u);
  EXPECT_TRUE(c.ClosedByServer());
  EXPECT_LE(server_->memory().peak(), kCap);
}

}  // namespace
}  // namespace vss::nbdtest
