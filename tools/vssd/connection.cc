#include "connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "vss/formats/nbd_protocol.h"

namespace vss::vssd {
namespace {

// Workers per connection: enough for a client's usual queue depth (8 to 16)
// to be in flight at once, so that writes under a shadow share diff-area
// syncs and reads overlap their decompression.
constexpr int kWorkers = 12;
constexpr size_t kMaxQueued = 16;          // requests read but not started
constexpr size_t kMaxDescriptors = 65536;  // per block status chunk
// The smallest hole a shadow read reply sends as a hole chunk.
constexpr uint64_t kMinHoleChunk = 4096;

// The NBD error for a failed engine call. `write` selects ENOSPC for ranges
// past the end, as the protocol asks for writes.
uint32_t ErrorOf(const Status& s, bool write) {
  switch (s.code()) {
    case StatusCode::kOk:
      return 0;
    case StatusCode::kInvalidArgument:
      return nbd::kEInval;
    case StatusCode::kOutOfRange:
      return write ? nbd::kENoSpc : nbd::kEInval;
    case StatusCode::kNoSpace:
      return nbd::kENoSpc;
    case StatusCode::kFailedPrecondition:
      return nbd::kEPerm;
    default:
      return nbd::kEIo;
  }
}

uint16_t AllowedFlags(uint16_t type, bool structured) {
  switch (type) {
    case nbd::kCmdRead:
      return structured ? nbd::kCmdFlagDf : 0;
    case nbd::kCmdWrite:
    case nbd::kCmdTrim:
      return nbd::kCmdFlagFua;
    case nbd::kCmdWriteZeroes:
      return nbd::kCmdFlagFua | nbd::kCmdFlagNoHole;
    case nbd::kCmdBlockStatus:
      return nbd::kCmdFlagReqOne;
    default:
      return 0;
  }
}

bool Modifies(uint16_t type) {
  return type == nbd::kCmdWrite || type == nbd::kCmdTrim ||
         type == nbd::kCmdWriteZeroes;
}

// What a client is told about a failed request: the error's name only (the
// engine's message, which may name host files, goes to the log).
const char* ErrorText(uint32_t error) {
  switch (error) {
    case nbd::kEPerm:
      return "operation not permitted";
    case nbd::kEInval:
      return "invalid request";
    case nbd::kENoSpc:
      return "no space left";
    default:
      return "I/O error (the vssd log has the details)";
  }
}

}  // namespace

Connection::Connection(int fd, ExportRegistry* registry, PayloadMemory* memory,
                       ConnectionPolicy policy)
    : fd_(fd),
      registry_(registry),
      memory_(memory),
      policy_(std::move(policy)),
      privileged_(policy_.privileged) {}

Connection::~Connection() { ::close(fd_); }

void Connection::Stop() {
  stopping_ = true;
  memory_->Wake();  // a reader waiting for payload memory gives up
  ::shutdown(fd_, SHUT_RD);
}

uint32_t Connection::MaxBlock() const {
  return static_cast<uint32_t>(std::min<uint64_t>(nbd::kMaxPayload, memory_->limit()));
}

void Connection::Run() {
  handshake_deadline_ = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(policy_.handshake_timeout_ms);
  if (Handshake()) Transmission();
  export_.reset();  // releases the volume (closed when nobody else uses it)
  if (tls_) tls_->Close();
  // The client sees the end now, after the volume was released; the socket
  // itself is closed when the server reaps this connection.
  ::shutdown(fd_, SHUT_RDWR);
  finished_ = true;
}

// ---- socket I/O ------------------------------------------------------------

int Connection::ReadWaitMs() const {
  if (!transmission_) {
    if (policy_.handshake_timeout_ms == 0) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        handshake_deadline_ - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  }
  return policy_.idle_timeout_ms == 0 ? -1 : static_cast<int>(policy_.idle_timeout_ms);
}

ssize_t Connection::Recv(void* buf, size_t n) {
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    int ready = ::poll(&p, 1, ReadWaitMs());
    if (ready < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (ready == 0) {
      // Not idle while a request of the client is still being answered.
      if (transmission_ && in_flight_.load() > 0) continue;
      errno = ETIMEDOUT;
      return -1;
    }
    ssize_t got = ::recv(fd_, buf, n, 0);
    if (got < 0 && errno == EINTR) continue;
    return got;
  }
}

ssize_t Connection::Send(const iovec* iov, int count) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(count);
  for (;;) {
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    return n;
  }
}

bool Connection::ReadAll(void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    ssize_t got = tls_ ? tls_->Recv(p, n) : Recv(p, n);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

bool Connection::Discard(uint64_t n) {
  uint8_t buf[16384];
  while (n > 0) {
    size_t piece = static_cast<size_t>(std::min<uint64_t>(n, sizeof buf));
    if (!ReadAll(buf, piece)) return false;
    n -= piece;
  }
  return true;
}

bool Connection::WriteAll(std::span<const uint8_t> head,
                          std::span<const uint8_t> data) {
  if (tls_) return tls_->Send(head, data);
  while (!head.empty() || !data.empty()) {
    iovec iov[2];
    int count = 0;
    if (!head.empty()) iov[count++] = {const_cast<uint8_t*>(head.data()), head.size()};
    if (!data.empty()) iov[count++] = {const_cast<uint8_t*>(data.data()), data.size()};
    ssize_t n = Send(iov, count);
    if (n <= 0) return false;
    size_t sent = static_cast<size_t>(n);
    size_t from_head = std::min(sent, head.size());
    head = head.subspan(from_head);
    data = data.subspan(sent - from_head);
  }
  return true;
}

// ---- handshake -------------------------------------------------------------

bool Connection::SendOptionReply(uint32_t option, uint32_t type,
                                 const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b;
  nbd::Put64(b, nbd::kOptReplyMagic);
  nbd::Put32(b, option);
  nbd::Put32(b, type);
  nbd::Put32(b, static_cast<uint32_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  return WriteAll(b);
}

bool Connection::SendOptionError(uint32_t option, uint32_t type,
                                 const std::string& message) {
  std::vector<uint8_t> b;
  nbd::PutBytes(b, std::string_view(message).substr(0, nbd::kMaxString));
  return SendOptionReply(option, type, b);
}

uint16_t Connection::TransmissionFlags() const {
  uint16_t flags =
      nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagCanMultiConn;
  if (structured_) flags |= nbd::kFlagSendDf;
  if (export_ && export_->info().read_only) {
    flags |= nbd::kFlagReadOnly;
  } else {
    flags |= nbd::kFlagSendFua | nbd::kFlagSendTrim | nbd::kFlagSendWriteZeroes;
  }
  return flags;
}

bool Connection::Handshake() {
  std::vector<uint8_t> hello;
  nbd::Put64(hello, nbd::kNbdMagic);
  nbd::Put64(hello, nbd::kIHaveOpt);
  nbd::Put16(hello, nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes);
  if (!WriteAll(hello)) return false;
  uint8_t client[4];
  if (!ReadAll(client, 4)) return false;
  uint32_t client_flags = nbd::Get32(client);
  if (client_flags & ~nbd::kClientFlagsKnown) return false;  // MUST close
  no_zeroes_ = client_flags & nbd::kFlagNoZeroes;

  for (;;) {
    uint8_t head[16];
    if (!ReadAll(head, sizeof head)) return false;
    if (nbd::Get64(head) != nbd::kIHaveOpt) return false;
    uint32_t option = nbd::Get32(head + 8);
    uint32_t length = nbd::Get32(head + 12);
    if (length > nbd::kMaxOptionLength) return false;  // not a real client
    std::vector<uint8_t> data(length);
    if (!ReadAll(data.data(), length)) return false;

    if (policy_.tls_required && !tls_ && option != nbd::kOptStartTls &&
        option != nbd::kOptAbort) {
      if (option == nbd::kOptExportName) return false;  // cannot be refused
      if (!SendOptionError(option, nbd::kRepErrTlsReqd,
                           "TLS is required: negotiate NBD_OPT_STARTTLS first")) {
        return false;
      }
      continue;
    }
    switch (option) {
      case nbd::kOptExportName:
        return HandleExportName(data);
      case nbd::kOptAbort:
        SendOptionReply(option, nbd::kRepAck);
        return false;
      case nbd::kOptStartTls:
        if (!HandleStartTls(length)) return false;
        break;
      case nbd::kOptList:
        if (!HandleList(length)) return false;
        break;
      case nbd::kOptInfo:
      case nbd::kOptGo: {
        bool go = false;
        if (!HandleInfoOrGo(option, data, &go)) return false;
        if (go) return true;
        break;
      }
      case nbd::kOptStructuredReply:
        if (!HandleStructuredReply(length)) return false;
        break;
      case nbd::kOptListMetaContext:
      case nbd::kOptSetMetaContext:
        if (!HandleMetaContext(option, data)) return false;
        break;
      default:
        if (!SendOptionError(option, nbd::kRepErrUnsup,
                             "option " + std::to_string(option) +
                                 " is not supported by vssd")) {
          return false;
        }
    }
  }
}

bool Connection::HandleList(uint32_t length) {
  const uint32_t option = nbd::kOptList;
  if (length != 0) {
    return SendOptionError(option, nbd::kRepErrInvalid,
                           "NBD_OPT_LIST takes no data");
  }
  auto exports = registry_->List();
  if (!exports.ok()) {
    std::fprintf(stderr, "vssd: NBD client %s: listing exports: %s\n",
                 policy_.peer.c_str(), exports.status().ToString().c_str());
    return SendOptionError(option, nbd::kRepErrInvalid,
                           "the exports cannot be listed (the vssd log "
                           "has the details)");
  }
  for (const ExportInfo& e : *exports) {
    std::vector<uint8_t> b;
    nbd::Put32(b, static_cast<uint32_t>(e.name.size()));
    nbd::PutBytes(b, e.name);
    nbd::PutBytes(b, e.description);
    if (!SendOptionReply(option, nbd::kRepServer, b)) return false;
  }
  return SendOptionReply(option, nbd::kRepAck);
}

bool Connection::HandleStructuredReply(uint32_t length) {
  const uint32_t option = nbd::kOptStructuredReply;
  if (length != 0) {
    return SendOptionError(option, nbd::kRepErrInvalid,
                           "NBD_OPT_STRUCTURED_REPLY takes no data");
  }
  structured_ = true;
  return SendOptionReply(option, nbd::kRepAck);
}

bool Connection::HandleStartTls(uint32_t length) {
  const uint32_t option = nbd::kOptStartTls;
  if (length != 0) {
    return SendOptionError(option, nbd::kRepErrInvalid,
                           "NBD_OPT_STARTTLS takes no data");
  }
  if (tls_) {
    return SendOptionError(option, nbd::kRepErrInvalid, "TLS is already on");
  }
  if (policy_.tls == nullptr) {
    return SendOptionError(option, nbd::kRepErrUnsup,
                           "TLS is not configured on this server");
  }
  if (!SendOptionReply(option, nbd::kRepAck)) return false;
  auto session = TlsSession::Handshake(*policy_.tls, this);
  if (!session.ok()) {
    std::fprintf(stderr, "vssd: NBD client %s: %s\n", policy_.peer.c_str(),
                 session.status().ToString().c_str());
    return false;
  }
  tls_ = std::move(session).value();
  if (tls_->authenticated()) privileged_ = true;
  // Whatever was negotiated in plain text is forgotten (the protocol's rule).
  structured_ = false;
  contexts_.clear();
  context_export_.clear();
  return true;
}

std::pair<uint32_t, std::string> Connection::OptionError(const std::string& name,
                                                         const Status& s,
                                                         bool open) {
  std::fprintf(stderr, "vssd: NBD client %s: export %s: %s\n", policy_.peer.c_str(),
               name.c_str(), s.ToString().c_str());
  std::string shown = name.substr(0, 256);
  switch (s.code()) {
    case StatusCode::kNotFound:
      return {nbd::kRepErrUnknown, "no export " + shown};
    case StatusCode::kInvalidArgument:
      return {nbd::kRepErrInvalid, "export name " + shown + " is ambiguous or invalid"};
    case StatusCode::kBusy:
      return {nbd::kRepErrPolicy,
              "export " + shown + " is busy (used by another process, or being reverted)"};
    default:
      return {open ? nbd::kRepErrPolicy : nbd::kRepErrInvalid,
              "export " + shown + " cannot be opened (the vssd log has the details)"};
  }
}

bool Connection::HandleExportName(const std::vector<uint8_t>& data) {
  if (data.size() > nbd::kMaxString) return false;
  std::string name(data.begin(), data.end());
  if (!privileged_) {
    std::fprintf(stderr, "vssd: NBD client %s: may not open export %s\n",
                 policy_.peer.c_str(), name.c_str());
    return false;  // no way to report an error: close
  }
  auto info = registry_->Lookup(name);
  if (!info.ok()) return false;  // no way to report an error: close
  auto opened = registry_->Open(*info, [this] { Stop(); });
  if (!opened.ok()) {
    OptionError(name, opened.status(), true);  // logs it
    return false;
  }
  export_ = std::move(opened).value();
  transmission_ = true;
  if (name != context_export_) contexts_.clear();
  std::vector<uint8_t> b;
  nbd::Put64(b, export_->device().size());
  nbd::Put16(b, TransmissionFlags());
  if (!no_zeroes_) b.resize(b.size() + 124, 0);
  return WriteAll(b);
}

bool Connection::HandleInfoOrGo(uint32_t option,
                                const std::vector<uint8_t>& data, bool* go) {
  nbd::Cursor c(data);
  uint32_t name_len = 0;
  std::string name;
  uint16_t count = 0;
  std::vector<uint16_t> requests;
  bool ok =
      c.Get32(&name_len) && c.GetString(name_len, &name) && c.Get16(&count);
  for (uint16_t i = 0; ok && i < count; ++i) {
    uint16_t r = 0;
    ok = c.Get16(&r);
    requests.push_back(r);
  }
  if (!ok || !c.AtEnd()) {
    return SendOptionError(option, nbd::kRepErrInvalid,
                           "malformed NBD_OPT_INFO/GO request");
  }
  if (!privileged_) {
    return SendOptionError(
        option, nbd::kRepErrPolicy,
        policy_.tls_required || policy_.tls
            ? "permission denied: this client may list the exports but not "
              "open them (authenticate with TLS, or connect as root or the "
              "store's owner)"
            : "permission denied: only root and the store's owner may open "
              "exports here; other users may list them");
  }
  auto info = registry_->Lookup(name);
  if (!info.ok()) {
    auto [err, message] = OptionError(name, info.status(), false);
    return SendOptionError(option, err, message);
  }
  if (option == nbd::kOptGo) {
    auto opened = registry_->Open(*info, [this] { Stop(); });
    if (!opened.ok()) {
      auto [err, message] = OptionError(name, opened.status(), true);
      return SendOptionError(option, err, message);
    }
    export_ = std::move(opened).value();
  }
  if (!SendInfoReplies(option, *info, requests)) return false;
  if (!SendOptionReply(option, nbd::kRepAck)) return false;
  if (option == nbd::kOptGo) {
    // Contexts selected for another export do not apply to this one.
    if (name != context_export_) contexts_.clear();
    transmission_ = true;
    *go = true;
  }
  return true;
}

bool Connection::SendInfoReplies(uint32_t option, const ExportInfo& info,
                                 const std::vector<uint16_t>& requests) {
  // NBD_INFO_EXPORT always, the others when asked.
  std::vector<uint8_t> b;
  nbd::Put16(b, nbd::kInfoExport);
  nbd::Put64(b, info.size);
  bool was_open = export_ != nullptr;
  if (!was_open) {
    // INFO: flags as GO would give them (read-only shadows).
    uint16_t flags =
        nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagCanMultiConn;
    if (structured_) flags |= nbd::kFlagSendDf;
    flags |= info.read_only ? nbd::kFlagReadOnly
                             : (nbd::kFlagSendFua | nbd::kFlagSendTrim |
                                nbd::kFlagSendWriteZeroes);
    nbd::Put16(b, flags);
  } else {
    nbd::Put16(b, TransmissionFlags());
  }
  if (!SendOptionReply(option, nbd::kRepInfo, b)) return false;
  for (uint16_t r : requests) {
    b.clear();
    nbd::Put16(b, r);
    if (r == nbd::kInfoName) {
      nbd::PutBytes(b, info.name);
    } else if (r == nbd::kInfoDescription) {
      nbd::PutBytes(b, info.description);
    } else if (r == nbd::kInfoBlockSize) {
      nbd::Put32(b, 1);                 // minimum: byte granular
      nbd::Put32(b, 4096);              // preferred
      nbd::Put32(b, MaxBlock());        // maximum
    } else {
      continue;  // unknown information requests are ignored
    }
    if (!SendOptionReply(option, nbd::kRepInfo, b)) return false;
  }
  return true;
}

bool Connection::HandleMetaContext(uint32_t option,
                                   const std::vector<uint8_t>& data) {
  const bool set = option == nbd::kOptSetMetaContext;
  if (set && !structured_) {
    return SendOptionError(option, nbd::kRepErrInvalid,
                           "meta contexts need structured replies");
  }
  nbd::Cursor c(data);
  uint32_t name_len = 0, count = 0;
  std::string name;
  std::vector<std::string> queries;
  bool ok =
      c.Get32(&name_len) && c.GetString(name_len, &name) && c.Get32(&count);
  for (uint32_t i = 0; ok && i < count; ++i) {
    uint32_t len = 0;
    std::string q;
    ok = c.Get32(&len) && c.GetString(len, &q);
    queries.push_back(std::move(q));
  }
  if (!ok || !c.AtEnd()) {
    return SendOptionError(option, nbd::kRepErrInvalid,
                           "malformed meta context request");
  }
  auto info = registry_->Lookup(name);
  if (!info.ok()) {
    auto [err, message] = OptionError(name, info.status(), false);
    return SendOptionError(option, err, message);
  }
  if (!set && queries.empty()) queries = {"base:", "vss:"};
  std::vector<MetaContext> selected;
  for (const std::string& q : queries) {
    auto matches = registry_->MatchContexts(*info, q);
    if (!matches.ok()) {
      auto [err, message] = OptionError(name, matches.status(), false);
      return SendOptionError(option, err, message);
    }
    for (MetaContext& m : *matches) {
      bool dup = false;
      for (const MetaContext& s : selected) dup = dup || s.name == m.name;
      if (dup) continue;
      m.id = static_cast<uint32_t>(selected.size() + 1);
      selected.push_back(std::move(m));
    }
  }
  for (const MetaContext& m : selected) {
    std::vector<uint8_t> b;
    nbd::Put32(b, set ? m.id : 0);
    nbd::PutBytes(b, m.name);
    if (!SendOptionReply(option, nbd::kRepMetaContext, b)) return false;
  }
  if (set) {
    contexts_ = std::move(selected);
    context_export_ = name;
  }
  return SendOptionReply(option, nbd::kRepAck);
}

// ---- transmission ----------------------------------------------------------

uint32_t Connection::Check(const Request& r) const {
  const uint64_t size = export_->device().size();
  switch (r.type) {
    case nbd::kCmdRead:
    case nbd::kCmdWrite:
    case nbd::kCmdFlush:
    case nbd::kCmdTrim:
    case nbd::kCmdWriteZeroes:
    case nbd::kCmdBlockStatus:
      break;
    default:
      return nbd::kEInval;
  }
  if (r.flags & ~AllowedFlags(r.type, structured_)) return nbd::kEInval;
  if (Modifies(r.type) && export_->info().read_only) return nbd::kEPerm;
  if (r.type == nbd::kCmdFlush) return 0;
  if (r.type == nbd::kCmdRead && r.length > MaxBlock()) return nbd::kEInval;
  if (r.offset > size || r.length > size - r.offset) {
    return (r.type == nbd::kCmdWrite || r.type == nbd::kCmdWriteZeroes)
               ? nbd::kENoSpc
               : nbd::kEInval;
  }
  if (r.type == nbd::kCmdBlockStatus &&
      (!structured_ || contexts_.empty() || r.length == 0)) {
    return nbd::kEInval;
  }
  return 0;
}

void Connection::Transmission() {
  for (int i = 0; i < kWorkers; ++i) {
    try {
      workers_.emplace_back([this] { Worker(); });
    } catch (const std::system_error& e) {
      break;  // out of threads: serve with fewer workers
    }
  }
  if (workers_.empty()) {
    std::fprintf(stderr, "vssd: NBD client %s: no thread to serve it: closed\n",
                 policy_.peer.c_str());
    return;
  }
  for (;;) {
    uint8_t head[28];
    if (!ReadAll(head, sizeof head)) break;             // EOF, error or Stop()
    if (nbd::Get32(head) != nbd::kRequestMagic) break;  // out of sync: close
    Request r;
    r.flags = nbd::Get16(head + 4);
    r.type = nbd::Get16(head + 6);
    r.handle = nbd::Get64(head + 8);
    r.offset = nbd::Get64(head + 16);
    r.length = nbd::Get32(head + 24);
    if (r.type == nbd::kCmdDisc) break;
    if (r.type == nbd::kCmdWrite && r.length > MaxBlock()) {
      // Larger than the maximum block size we advertised: too large to
      // read into memory, and skipping it would keep the connection busy
      // for up to 4 GiB: refuse it and hang up.
      SendError(r, nbd::kEInval, "write larger than the maximum block size");
      break;
    }
    const uint32_t err = Check(r);
    if (r.type == nbd::kCmdWrite && err != 0) {
      if (!Discard(r.length)) break;  // refused: its payload is skipped
    } else if (r.type == nbd::kCmdWrite && r.length > 0) {
      // Room for the payload first, then the payload.
      r.payload = memory_->Take(r.length, stopping_);
      if (!r.payload.bytes) break;  // Stop()
      if (!ReadAll(r.payload.data(), r.length)) {
        memory_->Give(std::move(r.payload));
        break;
      }
    }
    if (err != 0) {
      SendError(r, err, err == nbd::kEPerm ? "export is read-only" : ErrorText(err));
      continue;
    }
    if (r.type == nbd::kCmdRead && r.length > 0) {
      // The reply's room, before the request is queued: workers never wait.
      r.payload = memory_->Take(r.length, stopping_);
      if (!r.payload.bytes) break;  // Stop()
    }
    ++in_flight_;
    std::unique_lock l(queue_mu_);
    room_cv_.wait(l, [&] { return queue_.size() < kMaxQueued; });
    queue_.push_back(std::move(r));
    l.unlock();
    work_cv_.notify_one();  // one request: one worker
  }
  {
    std::lock_guard l(queue_mu_);
    closing_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void Connection::Worker() {
  for (;;) {
    Request r;
    {
      std::unique_lock l(queue_mu_);
      work_cv_.wait(l, [&] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing and drained
      r = std::move(queue_.front());
      queue_.pop_front();
    }
    room_cv_.notify_one();  // room for the reader (the only one waiting)
    Execute(r);
    memory_->Give(std::move(r.payload));
    --in_flight_;
  }
}

void Connection::Execute(Request& r) {
  BlockDevice& dev = export_->device();
  const bool fua = r.flags & nbd::kCmdFlagFua;
  Status s;
  switch (r.type) {
    case nbd::kCmdRead: {
      if (structured_ && !(r.flags & nbd::kCmdFlagDf) &&
          export_->info().read_only && r.length >= 2 * kMinHoleChunk &&
          ReadWithHoles(r)) {
        return;
      }
      // The reply goes out of the buffer taken for it by the reader.
      std::span<uint8_t> buf(r.payload.data(), r.length);
      s = dev.Read(r.offset, buf);
      if (!s.ok()) break;
      if (!structured_) {
        SendSimple(r.handle, 0, buf);
      } else if (r.length == 0) {
        SendChunk(r.handle, nbd::kReplyFlagDone, nbd::kReplyTypeNone, {});
      } else {
        std::vector<uint8_t> head;
        nbd::Put64(head, r.offset);
        SendChunk(r.handle, nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData,
                  head, buf);
      }
      return;
    }
    case nbd::kCmdWrite:
      s = dev.Write(r.offset, std::span<const uint8_t>(r.payload.data(), r.length));
      break;
    case nbd::kCmdTrim:
      s = dev.Discard(r.offset, r.length);
      break;
    case nbd::kCmdWriteZeroes:
      s = dev.WriteZeroes(r.offset, r.length);
      break;
    case nbd::kCmdFlush:
      // The engine's flush covers every write to the volume from every
      // connection that completed before it (multi-conn consistency).
      if (!export_->info().read_only) s = export_->volume().Flush();
      break;
    case nbd::kCmdBlockStatus:
      DoBlockStatus(r);
      return;
  }
  // FUA: the data of this command is durable before the reply.
  if (s.ok() && fua) s = export_->volume().Flush();
  if (!s.ok()) {
    uint32_t error = ErrorOf(s, Modifies(r.type));
    LogFailure(r, s);
    SendError(r, error, ErrorText(error));
    return;
  }
  SendSimple(r.handle, 0);
}

// A read of a shadow as data and hole chunks: the holes (unallocated in the
// image and not preserved, or preserved as zero records) are not read and
// cross the socket as 12 bytes each. False, with nothing sent, when the range
// has no hole worth a chunk (or its extents are unknown): the caller then
// sends one data chunk.
bool Connection::ReadWithHoles(Request& r) {
  BlockDevice& dev = export_->device();
  auto extents = dev.Extents(r.offset, r.length);
  if (!extents.ok()) return false;
  // Pieces of the range; holes shorter than kMinHoleChunk stay data.
  struct Piece {
    uint64_t offset, length;
    bool hole;
  };
  std::vector<Piece> pieces;
  for (const Extent& e : *extents) {
    uint64_t from = std::max<uint64_t>(e.offset, r.offset);
    uint64_t to = std::min<uint64_t>(e.offset + e.length, r.offset + r.length);
    if (from >= to) continue;
    bool hole = !e.allocated && to - from >= kMinHoleChunk;
    if (!pieces.empty() && pieces.back().hole == hole &&
        pieces.back().offset + pieces.back().length == from) {
      pieces.back().length += to - from;
    } else {
      pieces.push_back({from, to - from, hole});
    }
  }
  uint64_t covered = 0;
  bool any_hole = false;
  for (const Piece& p : pieces) {
    covered += p.length;
    any_hole |= p.hole;
  }
  if (!any_hole || covered != r.length) return false;
  // Read every data piece before anything is sent, so that a failure is
  // one error reply.
  for (const Piece& p : pieces) {
    if (p.hole) continue;
    Status s = dev.Read(p.offset, std::span(r.payload.data() + (p.offset - r.offset),
                                            p.length));
    if (!s.ok()) {
      uint32_t error = ErrorOf(s, false);
      LogFailure(r, s);
      SendError(r, error, ErrorText(error));
      return true;
    }
  }
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    uint16_t flags = i + 1 == pieces.size() ? nbd::kReplyFlagDone : 0;
    std::vector<uint8_t> head;
    nbd::Put64(head, p.offset);
    if (p.hole) {
      nbd::Put32(head, static_cast<uint32_t>(p.length));
      SendChunk(r.handle, flags, nbd::kReplyTypeOffsetHole, head);
    } else {
      SendChunk(r.handle, flags, nbd::kReplyTypeOffsetData, head,
                std::span(r.payload.data() + (p.offset - r.offset), p.length));
    }
  }
  return true;
}

void Connection::DoBlockStatus(const Request& r) {
  const size_t max = (r.flags & nbd::kCmdFlagReqOne) ? 1 : kMaxDescriptors;
  std::vector<std::vector<uint8_t>> chunks;
  for (const MetaContext& ctx : contexts_) {
    auto descs = export_->BlockStatus(ctx, r.offset, r.length, max);
    if (!descs.ok()) {
      uint32_t error = ErrorOf(descs.status(), false);
      LogFailure(r, descs.status());
      SendError(r, error, ErrorText(error));
      return;
    }
    std::vector<uint8_t> b;
    nbd::Put32(b, ctx.id);
    for (const StatusDescriptor& d : *descs) {
      nbd::Put32(b, d.length);
      nbd::Put32(b, d.flags);
    }
    chunks.push_back(std::move(b));
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    uint16_t flags = i + 1 == chunks.size() ? nbd::kReplyFlagDone : 0;
    SendChunk(r.handle, flags, nbd::kReplyTypeBlockStatus, chunks[i]);
  }
}

void Connection::LogFailure(const Request& r, const Status& s) {
  std::fprintf(stderr, "vssd: NBD client %s: %s: command %u at %llu+%u: %s\n",
               policy_.peer.c_str(), export_->info().name.c_str(), r.type,
               static_cast<unsigned long long>(r.offset), r.length,
               s.ToString().c_str());
}

void Connection::SendError(const Request& r, uint32_t error,
                           const std::string& message) {
  if (!structured_) {
    SendSimple(r.handle, error);
    return;
  }
  std::string m = message.substr(0, nbd::kMaxString);
  std::vector<uint8_t> b;
  nbd::Put32(b, error);
  nbd::Put16(b, static_cast<uint16_t>(m.size()));
  nbd::PutBytes(b, m);
  SendChunk(r.handle, nbd::kReplyFlagDone, nbd::kReplyTypeError, b);
}

void Connection::SendSimple(uint64_t handle, uint32_t error,
                            std::span<const uint8_t> data) {
  std::vector<uint8_t> b;
  nbd::Put32(b, nbd::kSimpleReplyMagic);
  nbd::Put32(b, error);
  nbd::Put64(b, handle);
  std::lock_guard l(write_mu_);
  if (write_failed_) return;
  if (!WriteAll(b, data)) {
    write_failed_ = true;
    ::shutdown(fd_, SHUT_RDWR);  // the client is gone: stop the reader too
  }
}

void Connection::SendChunk(uint64_t handle, uint16_t flags, uint16_t type,
                           const std::vector<uint8_t>& head,
                           std::span<const uint8_t> data) {
  std::vector<uint8_t> b;
  nbd::Put32(b, nbd::kStructuredReplyMagic);
  nbd::Put16(b, flags);
  nbd::Put16(b, type);
  nbd::Put64(b, handle);
  nbd::Put32(b, static_cast<uint32_t>(head.size() + data.size()));
  b.insert(b.end(), head.begin(), head.end());
  std::lock_guard l(write_mu_);
  if (write_failed_) return;
  if (!WriteAll(b, data)) {
    write_failed_ = true;
    ::shutdown(fd_, SHUT_RDWR);
  }
}

}  // namespace vss::vssd
