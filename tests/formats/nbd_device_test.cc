// NbdDevice against a scripted NBD server on a Unix socket: what it
// negotiates, extents from NBD_CMD_BLOCK_STATUS, reads answered with data
// and hole chunks, server errors, the fallback when the server refuses
// structured replies or base:allocation, and every kind of malformed reply
// breaking the connection with kIoError.
#include "vss/formats/nbd_device.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "vss/formats/nbd_protocol.h"
#include "vss/formats/registry.h"

namespace vss {
void PrintTo(const Extent& e, std::ostream* os) {
  *os << "{" << e.offset << ", " << e.length << ", "
      << (e.allocated ? "data" : "hole") << "}";
}
}  // namespace vss

namespace vss {
namespace {

constexpr uint64_t kSize = 1 << 20;
constexpr uint32_t kContextId = 7;
// The export's data; everything else is a hole.
struct Range {
  uint64_t offset, length;
};
const Range kData[] = {{64 << 10, 64 << 10}, {512 << 10, 4 << 10}};

struct Request {
  uint16_t flags, type;
  uint64_t handle, offset;
  uint32_t length;
};

std::vector<uint8_t> Chunk(uint16_t flags, uint16_t type, uint64_t handle,
                           const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> b;
  nbd::Put32(b, nbd::kStructuredReplyMagic);
  nbd::Put16(b, flags);
  nbd::Put16(b, type);
  nbd::Put64(b, handle);
  nbd::Put32(b, static_cast<uint32_t>(payload.size()));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}
std::vector<uint8_t> Simple(uint32_t error, uint64_t handle) {
  std::vector<uint8_t> b;
  nbd::Put32(b, nbd::kSimpleReplyMagic);
  nbd::Put32(b, error);
  nbd::Put64(b, handle);
  return b;
}
std::vector<uint8_t> DataChunk(uint16_t flags, uint64_t handle, uint64_t offset,
                               size_t n, uint8_t byte) {
  std::vector<uint8_t> p;
  nbd::Put64(p, offset);
  p.resize(8 + n, byte);
  return Chunk(flags, nbd::kReplyTypeOffsetData, handle, p);
}
std::vector<uint8_t> HoleChunk(uint16_t flags, uint64_t handle, uint64_t offset,
                               uint32_t n) {
  std::vector<uint8_t> p;
  nbd::Put64(p, offset);
  nbd::Put32(p, n);
  return Chunk(flags, nbd::kReplyTypeOffsetHole, handle, p);
}
std::vector<uint8_t> ErrorChunk(uint16_t type, uint64_t handle, uint32_t error,
                                const std::string& message,
                                const std::vector<uint8_t>& trailer = {}) {
  std::vector<uint8_t> p;
  nbd::Put32(p, error);
  nbd::Put16(p, static_cast<uint16_t>(message.size()));
  nbd::PutBytes(p, message);
  p.insert(p.end(), trailer.begin(), trailer.end());
  return Chunk(nbd::kReplyFlagDone, type, handle, p);
}
std::vector<uint8_t> operator+(std::vector<uint8_t> a,
                               const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Byte `i` of the export.
uint8_t ByteAt(uint64_t i) {
  for (const Range& r : kData) {
    if (i >= r.offset && i < r.offset + r.length) return 0x40 + i % 61;
  }
  return 0;
}
std::vector<uint8_t> Contents(uint64_t offset, uint64_t n) {
  std::vector<uint8_t> out(n);
  for (uint64_t i = 0; i < n; ++i) out[i] = ByteAt(offset + i);
  return out;
}
// The export as extents: [start, end) and whether it is data.
std::vector<Extent> AllExtents() {
  std::vector<Extent> out;
  uint64_t pos = 0;
  for (const Range& r : kData) {
    out.push_back({pos, r.offset - pos, false});
    out.push_back({r.offset, r.length, true});
    pos = r.offset + r.length;
  }
  out.push_back({pos, kSize - pos, false});
  return out;
}

struct ServerOptions {
  bool structured = true;   // grants NBD_OPT_STRUCTURED_REPLY
  bool allocation = true;   // offers base:allocation
  bool read_holes = false;  // reads: OFFSET_DATA and OFFSET_HOLE chunks
  size_t max_descriptors = 1000;
  // When it returns bytes, they are sent instead of the normal reply.
  std::function<std::vector<uint8_t>(const Request&)> reply;
};

// One connection served from a thread, as ServerOptions say.
class FakeServer {
 public:
  explicit FakeServer(ServerOptions o) : o_(std::move(o)) {
    char tmpl[] = "/tmp/vss-nbd-device-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/nbd.sock";
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    EXPECT_EQ(
        ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 1), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeServer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
    if (fd_ >= 0) ::close(fd_);
    std::filesystem::remove_all(dir_);
  }
  const std::string& path() const { return path_; }
  // Options the client sent, in order.
  const std::vector<uint32_t>& options() const { return options_; }

 private:
  bool Recv(void* p, size_t n) {
    return n == 0 || ::recv(fd_, p, n, MSG_WAITALL) == static_cast<ssize_t>(n);
  }
  bool Send(const std::vector<uint8_t>& b) {
    return ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(b.size());
  }
  bool OptionReply(uint32_t option, uint32_t type,
                   const std::vector<uint8_t>& data = {}) {
    std::vector<uint8_t> b;
    nbd::Put64(b, nbd::kOptReplyMagic);
    nbd::Put32(b, option);
    nbd::Put32(b, type);
    nbd::Put32(b, static_cast<uint32_t>(data.size()));
    return Send(b + data);
  }

  void Serve() {
    fd_ = ::accept(listen_fd_, nullptr, nullptr);
    if (fd_ < 0) return;
    std::vector<uint8_t> hello;
    nbd::Put64(hello, nbd::kNbdMagic);
    nbd::Put64(hello, nbd::kIHaveOpt);
    nbd::Put16(hello, nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes);
    uint8_t flags[4];
    if (!Send(hello) || !Recv(flags, 4) || !Options()) return;
    Transmission();
  }

  bool Options() {
    for (;;) {
      uint8_t head[16];
      if (!Recv(head, 16)) return false;
      uint32_t option = nbd::Get32(head + 8);
      std::vector<uint8_t> data(nbd::Get32(head + 12));
      if (!Recv(data.data(), data.size())) return false;
      options_.push_back(option);
      if (option == nbd::kOptStructuredReply) {
        structured_ = o_.structured;
        OptionReply(option, o_.structured ? nbd::kRepAck : nbd::kRepErrUnsup);
      } else if (option == nbd::kOptSetMetaContext) {
        if (o_.allocation) {
          std::vector<uint8_t> b;
          nbd::Put32(b, kContextId);
          nbd::PutBytes(b, "base:allocation");
          OptionReply(option, nbd::kRepMetaContext, b);
        }
        OptionReply(option, nbd::kRepAck);
      } else if (option == nbd::kOptGo) {
        std::vector<uint8_t> b;
        nbd::Put16(b, nbd::kInfoExport);
        nbd::Put64(b, kSize);
        nbd::Put16(
            b, nbd::kFlagHasFlags | nbd::kFlagReadOnly | nbd::kFlagSendFlush);
        OptionReply(option, nbd::kRepInfo, b);
        return OptionReply(option, nbd::kRepAck);
      } else {
        OptionReply(option, nbd::kRepErrUnsup);
      }
    }
  }

  void Transmission() {
    for (;;) {
      uint8_t head[28];
      if (!Recv(head, 28)) return;
      Request r{nbd::Get16(head + 4), nbd::Get16(head + 6),
                nbd::Get64(head + 8), nbd::Get64(head + 16),
                nbd::Get32(head + 24)};
      if (r.type == nbd::kCmdDisc) return;
      std::vector<uint8_t> reply;
      if (o_.reply) reply = o_.reply(r);
      if (reply.empty()) reply = NormalReply(r);
      if (!Send(reply)) return;
    }
  }

  std::vector<uint8_t> NormalReply(const Request& r) {
    if (r.type == nbd::kCmdRead && !structured_) {
      return Simple(0, r.handle) + Contents(r.offset, r.length);
    }
    if (r.type == nbd::kCmdRead && !o_.read_holes) {
      std::vector<uint8_t> p;
      nbd::Put64(p, r.offset);
      return Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, r.handle,
                   p + Contents(r.offset, r.length));
    }
    if (r.type == nbd::kCmdRead) {  // one chunk per extent, then NONE
      std::vector<uint8_t> out;
      const uint64_t end = r.offset + r.length;
      for (const Extent& e : AllExtents()) {
        uint64_t from = std::max(e.offset, r.offset);
        uint64_t to = std::min(e.offset + e.length, end);
        if (from >= to) continue;
        std::vector<uint8_t> p;
        nbd::Put64(p, from);
        out = out + (e.allocated ? Chunk(0, nbd::kReplyTypeOffsetData, r.handle,
                                         p + Contents(from, to - from))
                                 : HoleChunk(0, r.handle, from, to - from));
      }
      return out +
             Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeNone, r.handle, {});
    }
    if (r.type == nbd::kCmdBlockStatus) {
      // Whole extents: the last one may end past the request.
      std::vector<uint8_t> p;
      nbd::Put32(p, kContextId);
      size_t n = 0;
      for (const Extent& e : AllExtents()) {
        if (e.offset + e.length <= r.offset ||
            e.offset >= r.offset + r.length || n == o_.max_descriptors) {
          continue;
        }
        uint64_t from = std::max(e.offset, r.offset);
        nbd::Put32(p, static_cast<uint32_t>(e.offset + e.length - from));
        nbd::Put32(p, e.allocated ? 0 : nbd::kStateHole | nbd::kStateZero);
        ++n;
      }
      return Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeBlockStatus, r.handle,
                   p);
    }
    return Simple(0, r.handle);  // flush
  }

  const ServerOptions o_;
  std::string dir_, path_;
  int listen_fd_ = -1;
  std::atomic<int> fd_ = -1;
  bool structured_ = false;
  std::vector<uint32_t> options_;
  std::thread thread_;
};

std::unique_ptr<NbdDevice> Connect(const FakeServer& server) {
  auto dev = NbdDevice::Connect(server.path(), "shadow/x");
  EXPECT_TRUE(dev.ok()) << dev.status().ToString();
  return dev.ok() ? std::move(dev).value() : nullptr;
}

TEST(NbdDevice, Handshake_AsksStructuredRepliesThenBaseAllocationBeforeGo) {
  FakeServer server({});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(dev->size(), kSize);
  EXPECT_TRUE(dev->read_only());
  EXPECT_EQ(server.options(),
            (std::vector<uint32_t>{nbd::kOptStructuredReply,
                                   nbd::kOptSetMetaContext, nbd::kOptGo}));
}

TEST(NbdDevice, NbdDriver_OpensTheExportOfAUriThroughTheRegistry) {
  FakeServer server({});
  auto driver = DriverRegistry::Default().Find("nbd");
  ASSERT_TRUE(driver.ok()) << driver.status().ToString();
  auto dev =
      (*driver)->Open({.path = "nbd+unix:///shadow/x?socket=" + server.path(),
                       .writable = false});
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  EXPECT_EQ((*dev)->size(), kSize);
  EXPECT_TRUE((*dev)->read_only());
  auto all = (*dev)->Extents(0, kSize);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(*all, AllExtents());
  std::vector<uint8_t> buf(4096);
  ASSERT_TRUE((*dev)->Read(64 << 10, buf).ok());
  EXPECT_EQ(buf, Contents(64 << 10, 4096));
}

TEST(NbdDevice, NbdDriver_NoServerIsAnError) {
  auto driver = DriverRegistry::Default().Find("nbd");
  ASSERT_TRUE(driver.ok());
  auto dev = (*driver)->Open({.path = "/nonexistent/vss-test/nbd.sock"});
  EXPECT_FALSE(dev.ok());
}

TEST(NbdDevice, Extents_ReportsTheServersHoles) {
  FakeServer server({});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  auto all = dev->Extents(0, kSize);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(*all, AllExtents());
  // A range inside: the server's last descriptor runs past it, and is cut.
  auto part = dev->Extents(100 << 10, 420 << 10);
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_EQ(*part, (std::vector<Extent>{{100 << 10, 28 << 10, true},
                                        {128 << 10, 384 << 10, false},
                                        {512 << 10, 4 << 10, true},
                                        {516 << 10, 4 << 10, false}}));
}

TEST(NbdDevice, Extents_AsksAgainWhereAShortAnswerStopped) {
  FakeServer server({.max_descriptors = 1});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  auto all = dev->Extents(0, kSize);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(*all, AllExtents());
}

TEST(NbdDevice, Extents_AllAllocatedWhenStructuredRepliesAreRefused) {
  FakeServer server({.structured = false});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(server.options(),
            (std::vector<uint32_t>{nbd::kOptStructuredReply, nbd::kOptGo}));
  auto all = dev->Extents(0, kSize);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, (std::vector<Extent>{{0, kSize, true}}));
  std::vector<uint8_t> buf(200 << 10);  // simple replies still read
  ASSERT_TRUE(dev->Read(0, buf).ok());
  EXPECT_EQ(buf, Contents(0, buf.size()));
}

TEST(NbdDevice, Extents_AllAllocatedWithoutBaseAllocation) {
  FakeServer server({.allocation = false});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  auto all = dev->Extents(4096, 8192);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, (std::vector<Extent>{{4096, 8192, true}}));
}

TEST(NbdDevice, Read_DataChunkOverTheWholeRange) {
  FakeServer server({});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> buf(kSize);
  ASSERT_TRUE(dev->Read(0, buf).ok());
  EXPECT_EQ(buf, Contents(0, kSize));
}

TEST(NbdDevice, Read_FillsHoleChunksWithZeroes) {
  FakeServer server({.read_holes = true});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> buf(kSize, 0xff);
  ASSERT_TRUE(dev->Read(0, buf).ok());
  EXPECT_EQ(buf, Contents(0, kSize));
  std::vector<uint8_t> part(100 << 10, 0xff);
  ASSERT_TRUE(dev->Read(100 << 10, part).ok());
  EXPECT_EQ(part, Contents(100 << 10, part.size()));
}

TEST(NbdDevice, Read_ChunksInAnyOrderAreAssembled) {
  FakeServer server({.reply = [](const Request& r) {
    uint32_t half = r.length / 2;
    return DataChunk(0, r.handle, r.offset + half, r.length - half, 0x22) +
           HoleChunk(nbd::kReplyFlagDone, r.handle, r.offset, half);
  }});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> buf(4096, 0xff), want(4096, 0);
  std::fill(want.begin() + 2048, want.end(), 0x22);
  ASSERT_TRUE(dev->Read(0, buf).ok());
  EXPECT_EQ(buf, want);
}

TEST(NbdDevice, Read_ServerErrorIsReportedAndTheConnectionStaysUsable) {
  int calls = 0;
  FakeServer server({.reply = [&calls](const Request& r) {
    if (calls++ > 0) return std::vector<uint8_t>();
    return ErrorChunk(nbd::kReplyTypeError, r.handle, nbd::kEInval,
                      "no such range");
  }});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> buf(4096);
  Status s = dev->Read(0, buf);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("no such range"), std::string::npos);
  EXPECT_TRUE(dev->Read(64 << 10, buf).ok());
  EXPECT_EQ(buf, Contents(64 << 10, 4096));
}

TEST(NbdDevice, Read_ErrorOffsetChunkAfterDataIsReported) {
  int calls = 0;
  FakeServer server({.reply = [&calls](const Request& r) {
    if (calls++ > 0) return std::vector<uint8_t>();
    std::vector<uint8_t> at;
    nbd::Put64(at, r.offset + 100);
    return DataChunk(0, r.handle, r.offset, 100, 1) +
           ErrorChunk(0x8002, r.handle, nbd::kEPerm, "bad sector", at);
  }});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(dev->Read(0, buf).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(dev->Read(0, buf).ok());
}

TEST(NbdDevice, Read_UnknownErrorChunkTypeIsAServerError) {
  int calls = 0;
  FakeServer server({.reply = [&calls](const Request& r) {
    if (calls++ > 0) return std::vector<uint8_t>();
    return ErrorChunk(0x8005, r.handle, nbd::kENoSpc, "later", {1, 2, 3});
  }});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(dev->Read(0, buf).code(), StatusCode::kNoSpace);
  EXPECT_TRUE(dev->Read(0, buf).ok());
}

TEST(NbdDevice, Read_ShutdownErrorEndsTheConnection) {
  FakeServer server({.reply = [](const Request& r) {
    return ErrorChunk(nbd::kReplyTypeError, r.handle, nbd::kEShutdown, "");
  }});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(dev->Read(0, buf).code(), StatusCode::kIoError);
  Status again = dev->Read(0, buf);
  EXPECT_EQ(again.code(), StatusCode::kIoError);
  EXPECT_NE(again.message().find("connection"), std::string::npos);
}

TEST(NbdDevice, Flush_SimpleReplyIsAcceptedWithStructuredReplies) {
  FakeServer server({});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  EXPECT_TRUE(dev->Flush().ok());
}

// A malformed reply to the first request: kIoError, and the connection is
// not used again.
struct Malformed {
  const char* name;
  uint16_t command;  // the request it answers
  std::function<std::vector<uint8_t>(const Request&)> reply;
  bool structured = true;
};

class NbdDeviceMalformed : public ::testing::TestWithParam<Malformed> {};

TEST_P(NbdDeviceMalformed, IsIoErrorAndBreaksTheConnection) {
  const Malformed& m = GetParam();
  int calls = 0;
  FakeServer server(
      {.structured = m.structured, .reply = [&](const Request& r) {
         return calls++ == 0 ? m.reply(r) : std::vector<uint8_t>();
       }});
  auto dev = Connect(server);
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> buf(4096);
  Status s = m.command == nbd::kCmdRead ? dev->Read(0, buf)
                                        : dev->Extents(0, kSize).status();
  EXPECT_EQ(s.code(), StatusCode::kIoError) << s.ToString();
  Status again = dev->Read(64 << 10, buf);
  EXPECT_EQ(again.code(), StatusCode::kIoError) << again.ToString();
  EXPECT_NE(again.message().find("connection"), std::string::npos)
      << again.ToString();
}

const uint16_t kDone = nbd::kReplyFlagDone;
INSTANTIATE_TEST_SUITE_P(
    Replies, NbdDeviceMalformed,
    ::testing::Values(
        Malformed{"BadMagic", nbd::kCmdRead,
                  [](const Request& r) {
                    auto b = Simple(0, r.handle);
                    b[0] ^= 1;
                    return b;
                  }},
        Malformed{"WrongHandle", nbd::kCmdRead,
                  [](const Request& r) {
                    return DataChunk(kDone, r.handle + 1, 0, 4096, 1);
                  }},
        Malformed{"SimpleReplyToReadAfterStructured", nbd::kCmdRead,
                  [](const Request& r) {
                    return Simple(0, r.handle) + std::vector<uint8_t>(4096);
                  }},
        Malformed{"StructuredChunkNotNegotiated", nbd::kCmdRead,
                  [](const Request& r) {
                    return DataChunk(kDone, r.handle, 0, 4096, 1);
                  },
                  false},
        Malformed{"DataPastTheRequest", nbd::kCmdRead,
                  [](const Request& r) {
                    return DataChunk(kDone, r.handle, 1, 4096, 1);
                  }},
        Malformed{"DataLongerThanTheRequest", nbd::kCmdRead,
                  [](const Request& r) {
                    return DataChunk(kDone, r.handle, 0, 8192, 1);
                  }},
        Malformed{"OverlappingChunks", nbd::kCmdRead,
                  [](const Request& r) {
                    return DataChunk(0, r.handle, 0, 2048, 1) +
                           HoleChunk(0, r.handle, 2000, 2096) +
                           Chunk(kDone, nbd::kReplyTypeNone, r.handle, {});
                  }},
        Malformed{"DoneBeforeTheReadIsCovered", nbd::kCmdRead,
                  [](const Request& r) {
                    return DataChunk(kDone, r.handle, 0, 2048, 1);
                  }},
        Malformed{"EmptyHole", nbd::kCmdRead,
                  [](const Request& r) {
                    return HoleChunk(0, r.handle, 0, 0) +
                           HoleChunk(kDone, r.handle, 0, 4096);
                  }},
        Malformed{"HoleChunkOfWrongLength", nbd::kCmdRead,
                  [](const Request& r) {
                    std::vector<uint8_t> p;
                    nbd::Put64(p, 0);
                    nbd::Put64(p, 4096);
                    return Chunk(kDone, nbd::kReplyTypeOffsetHole, r.handle, p);
                  }},
        Malformed{"NoneWithoutDone", nbd::kCmdRead,
                  [](const Request& r) {
                    return Chunk(0, nbd::kReplyTypeNone, r.handle, {});
                  }},
        Malformed{"BlockStatusToARead", nbd::kCmdRead,
                  [](const Request& r) {
                    std::vector<uint8_t> p;
                    nbd::Put32(p, kContextId);
                    nbd::Put32(p, 4096);
                    nbd::Put32(p, 0);
                    return Chunk(kDone, nbd::kReplyTypeBlockStatus, r.handle,
                                 p);
                  }},
        Malformed{
            "UnknownChunkType", nbd::kCmdRead,
            [](const Request& r) { return Chunk(kDone, 42, r.handle, {}); }},
        Malformed{"ErrorMessageLongerThanItsChunk", nbd::kCmdRead,
                  [](const Request& r) {
                    auto b = ErrorChunk(nbd::kReplyTypeError, r.handle,
                                        nbd::kEIo, "short");
                    b[20 + 5] = 200;  // message length
                    return b;
                  }},
        Malformed{"ErrorZero", nbd::kCmdRead,
                  [](const Request& r) {
                    return ErrorChunk(nbd::kReplyTypeError, r.handle, 0, "");
                  }},
        Malformed{"ErrorOffsetOutsideTheRequest", nbd::kCmdRead,
                  [](const Request& r) {
                    std::vector<uint8_t> at;
                    nbd::Put64(at, r.offset + r.length);
                    return ErrorChunk(0x8002, r.handle, nbd::kEIo, "", at);
                  }},
        Malformed{"BlockStatusForAnotherContext", nbd::kCmdBlockStatus,
                  [](const Request& r) {
                    std::vector<uint8_t> p;
                    nbd::Put32(p, kContextId + 1);
                    nbd::Put32(p, kSize);
                    nbd::Put32(p, 0);
                    return Chunk(kDone, nbd::kReplyTypeBlockStatus, r.handle,
                                 p);
                  }},
        Malformed{"BlockStatusEmptyDescriptor", nbd::kCmdBlockStatus,
                  [](const Request& r) {
                    std::vector<uint8_t> p;
                    nbd::Put32(p, kContextId);
                    nbd::Put32(p, 0);
                    nbd::Put32(p, 0);
                    return Chunk(kDone, nbd::kReplyTypeBlockStatus, r.handle,
                                 p);
                  }},
        Malformed{"BlockStatusPastTheRequest", nbd::kCmdBlockStatus,
                  [](const Request& r) {
                    std::vector<uint8_t> p;
                    nbd::Put32(p, kContextId);
                    for (int i = 0; i < 2; ++i) {
                      nbd::Put32(p, kSize);
                      nbd::Put32(p, i);
                    }
                    return Chunk(kDone, nbd::kReplyTypeBlockStatus, r.handle,
                                 p);
                  }},
        Malformed{"BlockStatusWithoutStatusChunk", nbd::kCmdBlockStatus,
                  [](const Request& r) {
                    return Chunk(kDone, nbd::kReplyTypeNone, r.handle, {});
                  }},
        Malformed{"TwoBlockStatusChunks", nbd::kCmdBlockStatus,
                  [](const Request& r) {
                    std::vector<uint8_t> p;
                    nbd::Put32(p, kContextId);
                    nbd::Put32(p, 4096);
                    nbd::Put32(p, 0);
                    return Chunk(0, nbd::kReplyTypeBlockStatus, r.handle, p) +
                           Chunk(kDone, nbd::kReplyTypeBlockStatus, r.handle,
                                 p);
                  }}),
    [](const ::testing::TestParamInfo<Malformed>& info) {
      return std::string(info.param.name);
    });

}  // namespace
}  // namespace vss
