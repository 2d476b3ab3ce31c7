// The NBD wire protocol as vssd speaks it: fixed newstyle handshake,
// simple and structured replies, meta contexts. Values are those of the
// protocol specification (NetworkBlockDevice/nbd doc/proto.md); every
// integer on the wire is big-endian. This header holds constants and the
// byte-order helpers only; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vss::nbd {

inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943;  // "NBDMAGIC"
inline constexpr uint64_t kIHaveOpt = 0x49484156454F5054;  // "IHAVEOPT"
inline constexpr uint64_t kOptReplyMagic = 0x3e889045565a9;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;

// Handshake flags (server) and client flags.
inline constexpr uint16_t kFlagFixedNewstyle = 1;
inline constexpr uint16_t kFlagNoZeroes = 2;
inline constexpr uint32_t kClientFlagsKnown =
    kFlagFixedNewstyle | kFlagNoZeroes;

// Options.
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;

// Option replies.
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
inline constexpr uint32_t kRepErrUnsup = 0x80000001;
inline constexpr uint32_t kRepErrPolicy = 0x80000002;
inline constexpr uint32_t kRepErrInvalid = 0x80000003;
inline constexpr uint32_t kRepErrTlsReqd = 0x80000005;
inline constexpr uint32_t kRepErrUnknown = 0x80000006;
inline constexpr uint32_t kRepErrShutdown = 0x80000007;

// NBD_INFO_* types.
inline constexpr uint16_t kInfoExport = 0;
inline constexpr uint16_t kInfoName = 1;
inline constexpr uint16_t kInfoDescription = 2;
inline constexpr uint16_t kInfoBlockSize = 3;

// Transmission flags.
inline constexpr uint16_t kFlagHasFlags = 0x1;
inline constexpr uint16_t kFlagReadOnly = 0x2;
inline constexpr uint16_t kFlagSendFlush = 0x4;
inline constexpr uint16_t kFlagSendFua = 0x8;
inline constexpr uint16_t kFlagSendTrim = 0x20;
inline constexpr uint16_t kFlagSendWriteZeroes = 0x40;
inline constexpr uint16_t kFlagSendDf = 0x80;
inline constexpr uint16_t kFlagCanMultiConn = 0x100;

// Commands and command flags.
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;
inline constexpr uint16_t kCmdFlagFua = 1;
inline constexpr uint16_t kCmdFlagNoHole = 2;
inline constexpr uint16_t kCmdFlagDf = 4;
inline constexpr uint16_t kCmdFlagReqOne = 8;

// Structured reply chunk types and flags.
inline constexpr uint16_t kReplyFlagDone = 1;
inline constexpr uint16_t kReplyTypeNone = 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeOffsetHole = 2;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeError = 0x8001;
inline constexpr uint16_t kReplyTypeErrorOffset =
    0x8002;  // vssd never sends it
inline constexpr uint16_t kReplyTypeErrorBit =
    0x8000;  // set in every error type

// Errors on the wire (the protocol's numbering, equal to Linux errno).
inline constexpr uint32_t kEPerm = 1;
inline constexpr uint32_t kEIo = 5;
inline constexpr uint32_t kENoMem = 12;
inline constexpr uint32_t kEInval = 22;
inline constexpr uint32_t kENoSpc = 28;
inline constexpr uint32_t kEOverflow = 75;
inline constexpr uint32_t kEShutdown = 108;

// base:allocation flags.
inline constexpr uint32_t kStateHole = 1;
inline constexpr uint32_t kStateZero = 2;
// vss:changed:<shadow> flags.
inline constexpr uint32_t kStateChanged = 1;

// Limits vssd enforces. Reads and writes larger than kMaxPayload (or than
// the server's payload memory cap, if smaller) are refused with EINVAL (the
// smaller is advertised as the maximum block size); option payloads larger
// than kMaxOptionLength end the handshake.
inline constexpr uint32_t kMaxPayload = 32u << 20;
inline constexpr uint32_t kMaxOptionLength = 64u << 10;
inline constexpr uint32_t kMaxString = 4096;

// Big-endian appenders for building messages.
inline void Put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
inline void Put32(std::vector<uint8_t>& b, uint32_t v) {
  Put16(b, static_cast<uint16_t>(v >> 16));
  Put16(b, static_cast<uint16_t>(v));
}
inline void Put64(std::vector<uint8_t>& b, uint64_t v) {
  Put32(b, static_cast<uint32_t>(v >> 32));
  Put32(b, static_cast<uint32_t>(v));
}
inline void PutBytes(std::vector<uint8_t>& b, std::string_view s) {
  b.insert(b.end(), s.begin(), s.end());
}

// Big-endian readers over a byte array; Get* REQUIRE p to hold enough bytes.
inline uint16_t Get16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
inline uint32_t Get32(const uint8_t* p) {
  return (uint32_t{Get16(p)} << 16) | Get16(p + 2);
}
inline uint64_t Get64(const uint8_t* p) {
  return (uint64_t{Get32(p)} << 32) | Get32(p + 4);
}

// A bounds-checked cursor over an option's payload.
class Cursor {
 public:
  explicit Cursor(const std::vector<uint8_t>& b) : b_(b) {}
  bool Get16(uint16_t* v) { return Take(2) && (*v = nbd::Get16(at_), true); }
  bool Get32(uint32_t* v) { return Take(4) && (*v = nbd::Get32(at_), true); }
  bool GetString(uint32_t len, std::string* s) {
    if (len > kMaxString || !Take(len)) return false;
    s->assign(reinterpret_cast<const char*>(at_), len);
    return true;
  }
  bool AtEnd() const { return pos_ == b_.size(); }

 private:
  bool Take(size_t n) {
    if (b_.size() - pos_ < n) return false;
    at_ = b_.data() + pos_;
    pos_ += n;
    return true;
  }
  const std::vector<uint8_t>& b_;
  size_t pos_ = 0;
  const uint8_t* at_ = nullptr;
};

}  // namespace vss::nbd
