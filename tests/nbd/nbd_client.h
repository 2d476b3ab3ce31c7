// A tiny NBD client for the vssd tests: raw protocol messages over a Unix
// socket, blocking, one connection per object. It checks nothing itself;
// the tests assert on what it returns. Not thread-safe.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace vss::nbdtest {

inline void Put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(v >> 8);
  b.push_back(v & 0xff);
}
inline void Put32(std::vector<uint8_t>& b, uint32_t v) {
  Put16(b, v >> 16);
  Put16(b, v & 0xffff);
}
inline void Put64(std::vector<uint8_t>& b, uint64_t v) {
  Put32(b, v >> 32);
  Put32(b, v & 0xffffffff);
}
inline void PutStr(std::vector<uint8_t>& b, const std::string& s) {
  b.insert(b.end(), s.begin(), s.end());
}
inline uint16_t Get16(const uint8_t* p) { return (p[0] << 8) | p[1]; }
inline uint32_t Get32(const uint8_t* p) {
  return (uint32_t{Get16(p)} << 16) | Get16(p + 2);
}
inline uint64_t Get64(const uint8_t* p) {
  return (uint64_t{Get32(p)} << 32) | Get32(p + 4);
}

constexpr uint64_t kNbdMagic = 0x4e42444d41474943;
constexpr uint64_t kIHaveOpt = 0x49484156454F5054;
constexpr uint64_t kOptReplyMagic = 0x3e889045565a9;
constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleMagic = 0x67446698;
constexpr uint32_t kStructuredMagic = 0x668e33ef;

struct OptionReply {
  uint32_t option = 0;
  uint32_t type = 0;
  std::vector<uint8_t> data;
};

// One reply message: simple (structured == false) or one structured chunk.
struct Reply {
  bool structured = false;
  uint16_t flags = 0;  // chunk flags
  uint16_t type = 0;   // chunk type
  uint32_t error = 0;  // simple reply error, or error chunk's error
  uint64_t handle = 0;
  std::vector<uint8_t> data;  // chunk payload, or simple READ data
};

class Client {
 public:
  ~Client() { Close(); }
  bool Connect(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  bool ConnectTcp(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

  bool Send(const std::vector<uint8_t>& b) {
    size_t done = 0;
    while (done < b.size()) {
      ssize_t n = ::send(fd_, b.data() + done, b.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += n;
    }
    return true;
  }
  bool Recv(void* buf, size_t n) {
    auto* p = static_cast<uint8_t*>(buf);
    while (n > 0) {
      ssize_t got = ::recv(fd_, p, n, 0);
      if (got <= 0) return false;
      p += got;
      n -= got;
    }
    return true;
  }
  // True when the server closed the connection (reads EOF).
  bool ClosedByServer() {
    uint8_t b;
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return ::recv(fd_, &b, 1, 0) == 0;
  }

  // Greeting and client flags. Returns the server's handshake flags.
  std::optional<uint16_t> Greet(uint32_t client_flags = 3) {
    uint8_t b[18];
    if (!Recv(b, 18) || Get64(b) != kNbdMagic || Get64(b + 8) != kIHaveOpt) {
      return std::nullopt;
    }
    std::vector<uint8_t> f;
    Put32(f, client_flags);
    if (!Send(f)) return std::nullopt;
    return Get16(b + 16);
  }
  bool SendOption(uint32_t option, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> b;
    Put64(b, kIHaveOpt);
    Put32(b, option);
    Put32(b, data.size());
    b.insert(b.end(), data.begin(), data.end());
    return Send(b);
  }
  std::optional<OptionReply> ReadOptionReply() {
    uint8_t h[20];
    if (!Recv(h, 20) || Get64(h) != kOptReplyMagic) return std::nullopt;
    OptionReply r{Get32(h + 8), Get32(h + 12), {}};
    r.data.resize(Get32(h + 16));
    if (!Recv(r.data.data(), r.data.size())) return std::nullopt;
    return r;
  }
  // Option replies up to and including the first that is not of type
  // `more` (e.g. kRepServer for LIST, kRepInfo for GO).
  std::vector<OptionReply> ReadOptionReplies(uint32_t more) {
    std::vector<OptionReply> out;
    for (;;) {
      auto r = ReadOptionReply();
      if (!r) return out;
      out.push_back(*r);
      if (r->type != more) return out;
    }
  }

  // Structured replies, meta contexts (with SET), then GO. Returns the size
  // and transmission flags, or nullopt when GO failed.
  struct Export {
    uint64_t size = 0;
    uint16_t flags = 0;
    std::vector<std::pair<uint32_t, std::string>> contexts;
  };
  std::optional<Export> Open(const std::string& name, bool structured,
                             const std::vector<std::string>& contexts = {}) {
    if (!Greet()) return std::nullopt;
    Export e;
    if (structured) {
      if (!SendOption(8, {})) return std::nullopt;
      auto r = ReadOptionReply();
      if (!r || r->type != 1) return std::nullopt;
    }
    if (!contexts.empty()) {
      std::vector<uint8_t> d;
      Put32(d, name.size());
      PutStr(d, name);
      Put32(d, contexts.size());
      for (const auto& c : contexts) {
        Put32(d, c.size());
        PutStr(d, c);
      }
      if (!SendOption(10, d)) return std::nullopt;
      for (const auto& r : ReadOptionReplies(4)) {
        if (r.type == 4) {
          e.contexts.push_back({Get32(r.data.data()),
                                std::string(r.data.begin() + 4, r.data.end())});
        } else if (r.type != 1) {
          return std::nullopt;
        }
      }
    }
    std::vector<uint8_t> d;
    Put32(d, name.size());
    PutStr(d, name);
    Put16(d, 0);
    if (!SendOption(7, d)) return std::nullopt;
    for (const auto& r : ReadOptionReplies(3)) {
      if (r.type == 3 && Get16(r.data.data()) == 0) {
        e.size = Get64(r.data.data() + 2);
        e.flags = Get16(r.data.data() + 10);
      } else if (r.type != 1) {
        return std::nullopt;
      }
    }
    return e;
  }

  bool Request(uint16_t flags, uint16_t type, uint64_t handle, uint64_t offset,
               uint32_t length, const std::vector<uint8_t>& payload = {}) {
    std::vector<uint8_t> b;
    Put32(b, kRequestMagic);
    Put16(b, flags);
    Put16(b, type);
    Put64(b, handle);
    Put64(b, offset);
    Put32(b, length);
    b.insert(b.end(), payload.begin(), payload.end());
    return Send(b);
  }
  // Reads one reply message. For a simple reply with no error to a READ,
  // pass the read's length as `simple_read_length`.
  std::optional<Reply> ReadReply(uint32_t simple_read_length = 0) {
    uint8_t m[4];
    if (!Recv(m, 4)) return std::nullopt;
    Reply r;
    if (Get32(m) == kSimpleMagic) {
      uint8_t h[12];
      if (!Recv(h, 12)) return std::nullopt;
      r.error = Get32(h);
      r.handle = Get64(h + 4);
      if (r.error == 0 && simple_read_length > 0) {
        r.data.resize(simple_read_length);
        if (!Recv(r.data.data(), r.data.size())) return std::nullopt;
      }
      return r;
    }
    if (Get32(m) != kStructuredMagic) return std::nullopt;
    uint8_t h[16];
    if (!Recv(h, 16)) return std::nullopt;
    r.structured = true;
    r.flags = Get16(h);
    r.type = Get16(h + 2);
    r.handle = Get64(h + 4);
    r.data.resize(Get32(h + 12));
    if (!Recv(r.data.data(), r.data.size())) return std::nullopt;
    if (r.type == 0x8001 && r.data.size() >= 4) r.error = Get32(r.data.data());
    return r;
  }

 private:
  int fd_ = -1;
};

}  // namespace vss::nbdtest
