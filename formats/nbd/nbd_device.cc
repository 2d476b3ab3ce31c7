#include "vss/formats/nbd_device.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "vss/formats/nbd_protocol.h"
#include "vss/formats/nbd_reply.h"

namespace vss {
namespace {

constexpr uint64_t kPiece = 8u << 20;            // largest read or write sent
constexpr uint64_t kZeroPiece = 1u << 30;        // largest write-zeroes sent
constexpr uint32_t kMaxOptionReply = 64u << 10;  // longer: not a sane server
// Largest range one NBD_CMD_BLOCK_STATUS asks about (a 32-bit length).
constexpr uint64_t kStatusPiece = 0xFFFFF000u;
constexpr std::string_view kAllocationContext = "base:allocation";

// The Status for an NBD error number from the server, with its message.
Status ErrorOf(uint32_t error, const std::string& message,
               const std::string& what) {
  std::string text = what + ": " + std::strerror(static_cast<int>(error));
  if (!message.empty()) text += " (" + message + ")";
  switch (error) {
    case nbd::kEPerm:
      return FailedPreconditionError(text);
    case nbd::kENoSpc:
      return NoSpaceError(text);
    case nbd::kEInval:
      return InvalidArgumentError(text);
    default:
      return IoError(text);
  }
}

bool SendAll(int fd, std::span<const uint8_t> data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data = data.subspan(static_cast<size_t>(n));
  }
  return true;
}

bool RecvAll(int fd, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    ssize_t got = ::recv(fd, p, n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

StatusOr<int> ConnectUnix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return InvalidArgumentError(path + ": socket path too long");
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Status s = ErrnoError(errno, "connecting to " + path);
    ::close(fd);
    return s;
  }
  return fd;
}

// What the handshake settled.
struct Opened {
  uint64_t size = 0;
  uint16_t flags = 0;
  bool structured = false;                     // structured replies on
  std::optional<uint32_t> allocation_context;  // id of base:allocation
};

// One option reply: its type and data.
struct OptionReply {
  uint32_t type = 0;
  std::vector<uint8_t> data;
};

// Sends option `option` with `data`.
bool SendOption(int fd, uint32_t option, std::span<const uint8_t> data) {
  std::vector<uint8_t> msg;
  nbd::Put64(msg, nbd::kIHaveOpt);
  nbd::Put32(msg, option);
  nbd::Put32(msg, static_cast<uint32_t>(data.size()));
  msg.insert(msg.end(), data.begin(), data.end());
  return SendAll(fd, msg);
}

// Reads the next reply to `option`; kIoError if it is not one.
StatusOr<OptionReply> ReadOptionReply(int fd, uint32_t option,
                                      const std::string& what) {
  uint8_t head[20];
  if (!RecvAll(fd, head, sizeof head)) {
    return IoError(what + ": NBD handshake failed");
  }
  OptionReply r;
  r.type = nbd::Get32(head + 12);
  uint32_t length = nbd::Get32(head + 16);
  if (nbd::Get64(head) != nbd::kOptReplyMagic ||
      nbd::Get32(head + 8) != option || length > kMaxOptionReply) {
    return IoError(what + ": bad NBD option reply");
  }
  r.data.resize(length);
  if (!RecvAll(fd, r.data.data(), length)) {
    return IoError(what + ": NBD handshake failed");
  }
  return r;
}

bool IsOptionError(uint32_t type) { return type & 0x80000000u; }

// NBD_OPT_STRUCTURED_REPLY: true if the server agrees, false if it refuses.
StatusOr<bool> NegotiateStructuredReplies(int fd, const std::string& what) {
  if (!SendOption(fd, nbd::kOptStructuredReply, {})) {
    return IoError(what + ": NBD handshake failed");
  }
  VSS_ASSIGN_OR_RETURN(OptionReply r,
                       ReadOptionReply(fd, nbd::kOptStructuredReply, what));
  if (r.type == nbd::kRepAck && r.data.empty()) return true;
  if (IsOptionError(r.type)) return false;
  return IoError(what + ": bad NBD option reply");
}

// NBD_OPT_SET_META_CONTEXT for base:allocation: the id the server gives it,
// or nullopt if the server does not offer it. REQUIRES: structured replies.
StatusOr<std::optional<uint32_t>> NegotiateAllocationContext(
    int fd, const std::string& name, const std::string& what) {
  std::vector<uint8_t> msg;
  nbd::Put32(msg, static_cast<uint32_t>(name.size()));
  nbd::PutBytes(msg, name);
  nbd::Put32(msg, 1);  // one query
  nbd::Put32(msg, static_cast<uint32_t>(kAllocationContext.size()));
  nbd::PutBytes(msg, kAllocationContext);
  if (!SendOption(fd, nbd::kOptSetMetaContext, msg)) {
    return IoError(what + ": NBD handshake failed");
  }
  std::optional<uint32_t> id;
  for (;;) {
    VSS_ASSIGN_OR_RETURN(OptionReply r,
                         ReadOptionReply(fd, nbd::kOptSetMetaContext, what));
    if (r.type == nbd::kRepAck && r.data.empty()) return id;
    if (IsOptionError(r.type)) return std::optional<uint32_t>();
    // Only the context asked for, once.
    if (r.type != nbd::kRepMetaContext || r.data.size() < 4 || id ||
        std::string_view(reinterpret_cast<const char*>(r.data.data()) + 4,
                         r.data.size() - 4) != kAllocationContext) {
      return IoError(what + ": bad NBD meta context reply");
    }
    id = nbd::Get32(r.data.data());
  }
}

// NBD_OPT_GO: the export's size and transmission flags.
StatusOr<Opened> Go(int fd, const std::string& name, const std::string& what) {
  std::vector<uint8_t> msg;
  nbd::Put32(msg, static_cast<uint32_t>(name.size()));
  nbd::PutBytes(msg, name);
  nbd::Put16(msg, 0);  // no information requests
  if (!SendOption(fd, nbd::kOptGo, msg)) {
    return IoError(what + ": NBD handshake failed");
  }
  std::optional<Opened> info;
  for (;;) {
    VSS_ASSIGN_OR_RETURN(OptionReply r, ReadOptionReply(fd, nbd::kOptGo, what));
    if (r.type == nbd::kRepAck) break;
    if (IsOptionError(r.type)) {
      std::string message(r.data.begin(), r.data.end());
      if (r.type == nbd::kRepErrUnknown) {
        return NotFoundError(what + ": no such export (" + message + ")");
      }
      return IoError(what + ": refused: " + message);
    }
    if (r.type == nbd::kRepInfo && r.data.size() >= 12 &&
        nbd::Get16(r.data.data()) == nbd::kInfoExport) {
      info =
          Opened{nbd::Get64(r.data.data() + 2), nbd::Get16(r.data.data() + 10)};
    }
  }
  if (!info || info->size == 0) {
    return IoError(what + ": the server sent no export size");
  }
  return *info;
}

// The handshake up to transmission: fixed newstyle, structured replies and
// base:allocation when the server has them, then NBD_OPT_GO.
StatusOr<Opened> Handshake(int fd, const std::string& name,
                           const std::string& what) {
  uint8_t hello[18];
  if (!RecvAll(fd, hello, sizeof hello)) {
    return IoError(what + ": NBD handshake failed");
  }
  if (nbd::Get64(hello) != nbd::kNbdMagic ||
      nbd::Get64(hello + 8) != nbd::kIHaveOpt ||
      !(nbd::Get16(hello + 16) & nbd::kFlagFixedNewstyle)) {
    return IoError(what + ": not a fixed newstyle NBD server");
  }
  uint32_t client_flags =
      nbd::kFlagFixedNewstyle | (nbd::Get16(hello + 16) & nbd::kFlagNoZeroes);
  std::vector<uint8_t> msg;
  nbd::Put32(msg, client_flags);
  if (!SendAll(fd, msg)) return IoError(what + ": NBD handshake failed");

  VSS_ASSIGN_OR_RETURN(bool structured, NegotiateStructuredReplies(fd, what));
  std::optional<uint32_t> context;
  if (structured) {
    VSS_ASSIGN_OR_RETURN(context, NegotiateAllocationContext(fd, name, what));
  }
  VSS_ASSIGN_OR_RETURN(Opened opened, Go(fd, name, what));
  opened.structured = structured;
  opened.allocation_context = context;
  return opened;
}

}  // namespace

StatusOr<std::unique_ptr<NbdDevice>> NbdDevice::Connect(
    const std::string& socket_path, const std::string& export_name,
    bool read_only) {
  std::string what = "NBD export " + export_name + " on " + socket_path;
  VSS_ASSIGN_OR_RETURN(int fd, ConnectUnix(socket_path));
  StatusOr<Opened> opened = Handshake(fd, export_name, what);
  if (!opened.ok()) {
    ::close(fd);
    return opened.status();
  }
  uint16_t flags = opened->flags;
  if (read_only) flags |= nbd::kFlagReadOnly;
  return std::unique_ptr<NbdDevice>(new NbdDevice(export_name, fd, opened->size,
                                                  flags, opened->structured,
                                                  opened->allocation_context));
}

bool NbdDevice::ServerListening(const std::string& socket_path) {
  StatusOr<int> fd = ConnectUnix(socket_path);
  if (!fd.ok()) return false;
  ::close(*fd);
  return true;
}

NbdDevice::NbdDevice(std::string name, int fd, uint64_t size, uint16_t flags,
                     bool structured,
                     std::optional<uint32_t> allocation_context)
    : BlockDevice(std::move(name), size, flags & nbd::kFlagReadOnly),
      fd_(fd),
      flags_(flags),
      structured_(structured),
      allocation_context_(allocation_context) {}

NbdDevice::~NbdDevice() {
  std::lock_guard lock(mu_);
  if (!broken_) SendDisconnect();
  ::close(fd_);
}

void NbdDevice::SendDisconnect() {
  std::vector<uint8_t> b;
  nbd::Put32(b, nbd::kRequestMagic);
  nbd::Put16(b, 0);
  nbd::Put16(b, nbd::kCmdDisc);
  nbd::Put64(b, next_handle_++);
  nbd::Put64(b, 0);
  nbd::Put32(b, 0);
  SendAll(fd_, b);
}

Status NbdDevice::Broken(const std::string& what) {
  broken_ = true;
  ::shutdown(fd_, SHUT_RDWR);
  return IoError(name() + ": " + what);
}

Status NbdDevice::Exchange(const Command& c) {
  if (broken_)
    return IoError(name() + ": the connection to the server was lost");
  const NbdRequest request{c.type, next_handle_++, c.offset, c.length};
  std::vector<uint8_t> b;
  b.reserve(28 + c.payload.size());
  nbd::Put32(b, nbd::kRequestMagic);
  nbd::Put16(b, 0);
  nbd::Put16(b, request.type);
  nbd::Put64(b, request.handle);
  nbd::Put64(b, request.offset);
  nbd::Put32(b, request.length);
  b.insert(b.end(), c.payload.begin(), c.payload.end());
  if (!SendAll(fd_, b)) return Broken("the connection to the server was lost");

  NbdReply reply(request, structured_, c.read_into,
                 allocation_context_.value_or(0));
  while (!reply.done()) {
    VSS_RETURN_IF_ERROR(ReceiveMessage(reply, c.read_into));
  }
  if (reply.error() != 0) {
    if (reply.error() == nbd::kEShutdown) {
      // The server is going away: the protocol asks for a soft disconnect.
      SendDisconnect();
      Broken("the server is shutting down").IgnoreError();
    }
    return ErrorOf(reply.error(), reply.error_message(),
                   name() + " at offset " + std::to_string(c.offset));
  }
  if (c.extents) *c.extents = reply.extents();
  return OkStatus();
}

Status NbdDevice::ReceiveMessage(NbdReply& reply,
                                 std::span<uint8_t> read_into) {
  const char* lost = "the connection to the server was lost";
  uint8_t head[20];
  if (!RecvAll(fd_, head, 4)) return Broken(lost);
  const uint32_t magic = nbd::Get32(head);
  if (magic == nbd::kSimpleReplyMagic) {
    if (!RecvAll(fd_, head + 4, 12)) return Broken(lost);
    Status s = reply.OnSimpleReply(nbd::Get32(head + 4), nbd::Get64(head + 8));
    if (!s.ok()) return Broken(s.message());
    if (reply.simple_data_follows() &&
        !RecvAll(fd_, read_into.data(), read_into.size())) {
      return Broken(lost);
    }
    return OkStatus();
  }
  if (magic != nbd::kStructuredReplyMagic) {
    return Broken("bad reply magic from the server");
  }
  if (!RecvAll(fd_, head + 4, 16)) return Broken(lost);
  NbdChunkHeader h{nbd::Get16(head + 4), nbd::Get16(head + 6),
                   nbd::Get64(head + 8), nbd::Get32(head + 16)};
  Status s = reply.OnChunkHeader(h);
  if (!s.ok()) return Broken(s.message());
  scratch_.resize(h.length);
  if (!RecvAll(fd_, scratch_.data(), h.length)) return Broken(lost);
  s = reply.OnChunkPayload(h, scratch_);
  if (!s.ok()) return Broken(s.message());
  return OkStatus();
}

Status NbdDevice::DoRead(uint64_t offset, std::span<uint8_t> buf) {
  std::lock_guard lock(mu_);
  for (uint64_t done = 0; done < buf.size();) {
    size_t n =
        static_cast<size_t>(std::min<uint64_t>(buf.size() - done, kPiece));
    Command c{nbd::kCmdRead, offset + done, static_cast<uint32_t>(n)};
    c.read_into = buf.subspan(done, n);
    VSS_RETURN_IF_ERROR(Exchange(c));
    done += n;
  }
  return OkStatus();
}

Status NbdDevice::DoWrite(uint64_t offset, std::span<const uint8_t> buf) {
  std::lock_guard lock(mu_);
  for (uint64_t done = 0; done < buf.size();) {
    size_t n =
        static_cast<size_t>(std::min<uint64_t>(buf.size() - done, kPiece));
    Command c{nbd::kCmdWrite, offset + done, static_cast<uint32_t>(n)};
    c.payload = buf.subspan(done, n);
    VSS_RETURN_IF_ERROR(Exchange(c));
    done += n;
  }
  return OkStatus();
}

Status NbdDevice::DoWriteZeroes(uint64_t offset, uint64_t length) {
  if (!(flags_ & nbd::kFlagSendWriteZeroes)) {
    std::vector<uint8_t> zeroes(static_cast<size_t>(std::min(length, kPiece)));
    for (uint64_t done = 0; done < length;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(length - done, kPiece));
      VSS_RETURN_IF_ERROR(Write(offset + done, {zeroes.data(), n}));
      done += n;
    }
    return OkStatus();
  }
  std::lock_guard lock(mu_);
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min(length - done, kZeroPiece);
    VSS_RETURN_IF_ERROR(Exchange(
        {nbd::kCmdWriteZeroes, offset + done, static_cast<uint32_t>(n)}));
    done += n;
  }
  return OkStatus();
}

Status NbdDevice::DoDiscard(uint64_t offset, uint64_t length) {
  return DoWriteZeroes(offset, length);
}

Status NbdDevice::DoFlush() {
  if (!(flags_ & nbd::kFlagSendFlush)) return OkStatus();
  std::lock_guard lock(mu_);
  return Exchange({nbd::kCmdFlush, 0, 0});
}

StatusOr<std::vector<Extent>> NbdDevice::DoExtents(uint64_t offset,
                                                   uint64_t length) {
  if (!allocation_context_) return std::vector<Extent>{{offset, length, true}};
  std::lock_guard lock(mu_);
  std::vector<Extent> out;
  const uint64_t end = offset + length;
  for (uint64_t pos = offset; pos < end;) {
    // The server may describe less than asked: ask again from where it
    // stopped (each reply covers at least one byte).
    std::vector<Extent> got;
    Command c{nbd::kCmdBlockStatus, pos,
              static_cast<uint32_t>(std::min(end - pos, kStatusPiece))};
    c.extents = &got;
    VSS_RETURN_IF_ERROR(Exchange(c));
    for (const Extent& e : got) {
      if (!out.empty() && out.back().allocated == e.allocated) {
        out.back().length += e.length;
      } else {
        out.push_back(e);
      }
      pos += e.length;
    }
  }
  return out;
}

}  // namespace vss
