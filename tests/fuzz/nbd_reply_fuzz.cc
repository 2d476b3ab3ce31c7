// Fuzz target: the NBD client's reply parser (vss/formats/nbd_reply.h), fed
// the way NbdDevice::ReceiveMessage feeds it from the socket.
//
// Input: a 25-byte request (big-endian, as on the wire)
//   0  command: bits 0-2 pick READ, BLOCK_STATUS, WRITE, FLUSH, TRIM or
//      WRITE_ZEROES (modulo 6); bit 7 set: structured replies negotiated
//   1  offset (u64)   9  length (u32; a read's is taken modulo 1 MiB + 1)
//   13 handle (u64)   21 base:allocation context id (u32)
// then the server's byte stream: simple replies (magic, error, handle, and
// a read's data) and structured chunks (magic, flags, type, handle, length,
// payload), until the reply is done, a message is refused or the bytes end.
//
// A completed successful BLOCK_STATUS reply must describe the request from
// its offset on: extents contiguous, not empty, inside the request.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "vss/formats/nbd_protocol.h"
#include "vss/formats/nbd_reply.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

// The bytes of the stream not read yet.
class Stream {
 public:
  explicit Stream(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  // The next n bytes, or an empty span (and false) when fewer are left.
  bool Take(size_t n, std::span<const uint8_t>* out) {
    if (bytes_.size() < n) return false;
    *out = bytes_.first(n);
    bytes_ = bytes_.subspan(n);
    return true;
  }

 private:
  std::span<const uint8_t> bytes_;
};

constexpr uint16_t kCommands[] = {
    vss::nbd::kCmdRead,  vss::nbd::kCmdBlockStatus, vss::nbd::kCmdWrite,
    vss::nbd::kCmdFlush, vss::nbd::kCmdTrim,        vss::nbd::kCmdWriteZeroes};
constexpr size_t kRequestBytes = 25;
constexpr uint32_t kMaxRead = 1u << 20;

// One message, as NbdDevice::ReceiveMessage reads it; false when the
// connection would be dropped (refused message or end of the bytes).
bool ReceiveMessage(Stream& in, vss::NbdReply& reply,
                    std::span<uint8_t> read_into) {
  using namespace vss;
  std::span<const uint8_t> head;
  if (!in.Take(4, &head)) return false;
  const uint32_t magic = nbd::Get32(head.data());
  if (magic == nbd::kSimpleReplyMagic) {
    if (!in.Take(12, &head)) return false;
    if (!reply
             .OnSimpleReply(nbd::Get32(head.data()),
                            nbd::Get64(head.data() + 4))
             .ok()) {
      return false;
    }
    if (reply.simple_data_follows()) {
      std::span<const uint8_t> data;
      if (!in.Take(read_into.size(), &data)) return false;
      std::copy(data.begin(), data.end(), read_into.begin());
    }
    return true;
  }
  if (magic != nbd::kStructuredReplyMagic) return false;
  if (!in.Take(16, &head)) return false;
  const uint8_t* p = head.data();
  NbdChunkHeader h{nbd::Get16(p), nbd::Get16(p + 2), nbd::Get64(p + 4),
                   nbd::Get32(p + 12)};
  if (!reply.OnChunkHeader(h).ok()) return false;
  std::span<const uint8_t> payload;
  if (!in.Take(h.length, &payload)) return false;
  // A copy of its own, as NbdDevice reads into its scratch buffer: ASan
  // sees a read past the payload.
  std::vector<uint8_t> scratch(payload.begin(), payload.end());
  return reply.OnChunkPayload(h, scratch).ok();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using namespace vss;
  if (size < kRequestBytes) return 0;
  const uint8_t* p = bytes;
  NbdRequest request;
  request.type = kCommands[(p[0] & 7) % 6];
  const bool structured = p[0] & 0x80;
  request.offset = nbd::Get64(p + 1);
  request.length = nbd::Get32(p + 9);
  if (request.type == nbd::kCmdRead) request.length %= kMaxRead + 1;
  // NbdDevice asks only for ranges of its device.
  if (request.offset > UINT64_MAX - request.length) return 0;
  request.handle = nbd::Get64(p + 13);
  const uint32_t context_id = nbd::Get32(p + 21);

  std::vector<uint8_t> read_into(request.type == nbd::kCmdRead ? request.length
                                                               : 0);
  NbdReply reply(request, structured, read_into, context_id);
  Stream in({bytes + kRequestBytes, size - kRequestBytes});
  while (!reply.done()) {
    if (!ReceiveMessage(in, reply, read_into)) return 0;
  }
  if (reply.error() == 0 && request.type == nbd::kCmdBlockStatus) {
    const std::vector<Extent>& extents = reply.extents();
    Check(!extents.empty());
    uint64_t pos = request.offset;
    for (const Extent& e : extents) {
      Check(e.offset == pos && e.length > 0);
      Check(e.length <= request.offset + request.length - pos);
      pos += e.length;
    }
  }
  if (reply.error() != 0) Check(reply.extents().empty());
  return 0;
}
