#include "nbd_device.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "vssd/nbd_protocol.h"  // the wire constants vssd itself uses

namespace vss::fuse {
namespace {

constexpr uint64_t kPiece = 8u << 20;            // largest read or write sent
constexpr uint64_t kZeroPiece = 1u << 30;        // largest write-zeroes sent
constexpr uint32_t kMaxOptionReply = 64u << 10;  // longer: not a sane server

// The Status for an NBD error number from the server.
Status ErrorOf(uint32_t error, const std::string& what) {
  std::string text = what + ": " + std::strerror(static_cast<int>(error));
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

// Handshake up to transmission: returns the export's size and flags.
struct Opened {
  uint64_t size = 0;
  uint16_t flags = 0;
};
StatusOr<Opened> Handshake(int fd, const std::string& name,
                           const std::string& what) {
  auto lost = [&] { return IoError(what + ": NBD handshake failed"); };
  uint8_t hello[18];
  if (!RecvAll(fd, hello, sizeof hello)) return lost();
  if (nbd::Get64(hello) != nbd::kNbdMagic ||
      nbd::Get64(hello + 8) != nbd::kIHaveOpt ||
      !(nbd::Get16(hello + 16) & nbd::kFlagFixedNewstyle)) {
    return IoError(what + ": not a fixed newstyle NBD server");
  }
  uint32_t client_flags =
      nbd::kFlagFixedNewstyle | (nbd::Get16(hello + 16) & nbd::kFlagNoZeroes);
  std::vector<uint8_t> msg;
  nbd::Put32(msg, client_flags);
  nbd::Put64(msg, nbd::kIHaveOpt);
  nbd::Put32(msg, nbd::kOptGo);
  nbd::Put32(msg, static_cast<uint32_t>(4 + name.size() + 2));
  nbd::Put32(msg, static_cast<uint32_t>(name.size()));
  nbd::PutBytes(msg, name);
  nbd::Put16(msg, 0);  // no information requests
  if (!SendAll(fd, msg)) return lost();

  std::optional<Opened> info;
  for (;;) {
    uint8_t head[20];
    if (!RecvAll(fd, head, sizeof head)) return lost();
    uint32_t type = nbd::Get32(head + 12);
    uint32_t length = nbd::Get32(head + 16);
    if (nbd::Get64(head) != nbd::kOptReplyMagic ||
        nbd::Get32(head + 8) != nbd::kOptGo || length > kMaxOptionReply) {
      return IoError(what + ": bad NBD option reply");
    }
    std::vector<uint8_t> data(length);
    if (!RecvAll(fd, data.data(), length)) return lost();
    if (type == nbd::kRepAck) break;
    if (type & 0x80000000u) {
      std::string message(data.begin(), data.end());
      if (type == nbd::kRepErrUnknown) {
        return NotFoundError(what + ": no such export (" + message + ")");
      }
      return IoError(what + ": refused: " + message);
    }
    if (type == nbd::kRepInfo && length >= 12 &&
        nbd::Get16(data.data()) == nbd::kInfoExport) {
      info = Opened{nbd::Get64(data.data() + 2), nbd::Get16(data.data() + 10)};
    }
  }
  if (!info || info->size == 0) {
    return IoError(what + ": the server sent no export size");
  }
  return *info;
}

}  // namespace

StatusOr<std::unique_ptr<NbdDevice>> NbdDevice::Connect(
    const std::string& socket_path, const std::string& export_name) {
  std::string what = "NBD export " + export_name + " on " + socket_path;
  VSS_ASSIGN_OR_RETURN(int fd, ConnectUnix(socket_path));
  StatusOr<Opened> opened = Handshake(fd, export_name, what);
  if (!opened.ok()) {
    ::close(fd);
    return opened.status();
  }
  return std::unique_ptr<NbdDevice>(
      new NbdDevice(export_name, fd, opened->size, opened->flags));
}

bool NbdDevice::ServerListening(const std::string& socket_path) {
  StatusOr<int> fd = ConnectUnix(socket_path);
  if (!fd.ok()) return false;
  ::close(*fd);
  return true;
}

NbdDevice::NbdDevice(std::string name, int fd, uint64_t size, uint16_t flags)
    : BlockDevice(std::move(name), size, flags & nbd::kFlagReadOnly),
      fd_(fd),
      flags_(flags) {}

NbdDevice::~NbdDevice() {
  std::lock_guard lock(mu_);
  if (!broken_) {
    std::vector<uint8_t> b;
    nbd::Put32(b, nbd::kRequestMagic);
    nbd::Put16(b, 0);
    nbd::Put16(b, nbd::kCmdDisc);
    nbd::Put64(b, next_handle_);
    nbd::Put64(b, 0);
    nbd::Put32(b, 0);
    SendAll(fd_, b);
  }
  ::close(fd_);
}

Status NbdDevice::Broken(const std::string& what) {
  broken_ = true;
  ::shutdown(fd_, SHUT_RDWR);
  return IoError(name() + ": " + what);
}

Status NbdDevice::Exchange(uint16_t type, uint64_t offset, uint32_t length,
                           std::span<const uint8_t> out,
                           std::span<uint8_t> in) {
  if (broken_)
    return IoError(name() + ": the connection to the server was lost");
  uint64_t handle = next_handle_++;
  std::vector<uint8_t> b;
  b.reserve(28 + out.size());
  nbd::Put32(b, nbd::kRequestMagic);
  nbd::Put16(b, 0);
  nbd::Put16(b, type);
  nbd::Put64(b, handle);
  nbd::Put64(b, offset);
  nbd::Put32(b, length);
  b.insert(b.end(), out.begin(), out.end());
  if (!SendAll(fd_, b)) return Broken("the connection to the server was lost");
  uint8_t reply[16];
  if (!RecvAll(fd_, reply, sizeof reply)) {
    return Broken("the connection to the server was lost");
  }
  if (nbd::Get32(reply) != nbd::kSimpleReplyMagic ||
      nbd::Get64(reply + 8) != handle) {
    return Broken("bad reply from the server");
  }
  uint32_t error = nbd::Get32(reply + 4);
  if (error != 0) {
    return ErrorOf(error, name() + " at offset " + std::to_string(offset));
  }
  if (!in.empty() && !RecvAll(fd_, in.data(), in.size())) {
    return Broken("the connection to the server was lost");
  }
  return OkStatus();
}

Status NbdDevice::DoRead(uint64_t offset, std::span<uint8_t> buf) {
  std::lock_guard lock(mu_);
  for (uint64_t done = 0; done < buf.size();) {
    size_t n =
        static_cast<size_t>(std::min<uint64_t>(buf.size() - done, kPiece));
    VSS_RETURN_IF_ERROR(Exchange(nbd::kCmdRead, offset + done,
                                 static_cast<uint32_t>(n), {},
                                 buf.subspan(done, n)));
    done += n;
  }
  return OkStatus();
}

Status NbdDevice::DoWrite(uint64_t offset, std::span<const uint8_t> buf) {
  std::lock_guard lock(mu_);
  for (uint64_t done = 0; done < buf.size();) {
    size_t n =
        static_cast<size_t>(std::min<uint64_t>(buf.size() - done, kPiece));
    VSS_RETURN_IF_ERROR(Exchange(nbd::kCmdWrite, offset + done,
                                 static_cast<uint32_t>(n), buf.subspan(done, n),
                                 {}));
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
    VSS_RETURN_IF_ERROR(Exchange(nbd::kCmdWriteZeroes, offset + done,
                                 static_cast<uint32_t>(n), {}, {}));
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
  return Exchange(nbd::kCmdFlush, 0, 0, {}, {});
}

StatusOr<std::vector<Extent>> NbdDevice::DoExtents(uint64_t offset,
                                                   uint64_t length) {
  return std::vector<Extent>{{offset, length, true}};
}

}  // namespace vss::fuse
