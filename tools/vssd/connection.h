// Connection: one NBD client of vssd, from the handshake to the end of
// transmission.
//
// The thread that calls Run() does the handshake and then reads requests;
// each request is checked once, centrally, in the reader (magic, command,
// flags, length, range, read-only) and only then handed to a small pool of
// workers of this connection, so many requests are in flight and the
// handlers trust their inputs. Replies are written whole under a mutex.
// A request refused before it reaches a worker still has its write payload
// read and discarded, except a payload larger than the maximum block size:
// that gets EINVAL and the connection is closed instead of reading it.
//
// Access (ConnectionPolicy, set by the server from the listener and the
// peer): an unprivileged client may list exports but every INFO and GO is
// refused with NBD_REP_ERR_POLICY, and EXPORT_NAME closes. When TLS is
// required, every option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD
// until the client has done STARTTLS (EXPORT_NAME closes). A client that
// authenticates in TLS (tls.h) becomes privileged. Replies to the client
// never carry the server's own error text (which names host paths): it goes
// to the log (stderr), the client gets a short generic message.
//
// Limits: the whole handshake must end within handshake_timeout_ms; in
// transmission, a client that sends nothing for idle_timeout_ms while none
// of its requests is in flight is disconnected. The payload of a request
// (write data, read result) is taken from the server's PayloadMemory before
// the write data is read, so payload memory never exceeds its cap.
//
// Reads of a shadow export with structured replies (and without DF) send
// the shadow's holes as NBD_REPLY_TYPE_OFFSET_HOLE chunks.
//
// Thread safety: Run() is called once, from one thread; Stop() may be
// called from any thread while Run() runs and makes it return after the
// requests already read are answered.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "exports.h"
#include "payload_memory.h"
#include "tls.h"

namespace vss::vssd {

// What one connection may do and how long it may take.
struct ConnectionPolicy {
  bool privileged = false;    // may open exports (else: list them only)
  bool tls_required = false;  // nothing but STARTTLS and ABORT before TLS
  // STARTTLS is offered when set; an authenticated TLS client is privileged.
  const TlsCredentials* tls = nullptr;
  uint32_t handshake_timeout_ms = 0;  // 0: no limit
  uint32_t idle_timeout_ms = 0;       // 0: no limit
  std::string peer;  // who the client is, for the log
};

class Connection : private TlsTransport {
 public:
  // Takes ownership of the connected socket `fd`. `registry` and `memory`
  // outlive the connection, and so does `policy.tls`.
  Connection(int fd, ExportRegistry* registry, PayloadMemory* memory,
             ConnectionPolicy policy);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Serves the client until it disconnects, breaks the protocol, or Stop().
  void Run();
  // Stops reading new requests (the socket's read side is shut down).
  void Stop();
  bool finished() const { return finished_.load(); }

 private:
  using Buffer = PayloadMemory::Buffer;
  struct Request {
    uint16_t flags = 0;
    uint16_t type = 0;
    uint64_t handle = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
    Buffer payload;  // WRITE data or READ result, `length` bytes
  };

  // Handshake; true when transmission should begin with export_ set.
  bool Handshake();
  bool HandleInfoOrGo(uint32_t option, const std::vector<uint8_t>& data,
                      bool* go);
  bool HandleMetaContext(uint32_t option, const std::vector<uint8_t>& data);
  bool HandleExportName(const std::vector<uint8_t>& data);
  // STARTTLS: false when the connection must end (a failed handshake).
  // NBD_OPT_LIST: one reply per export, then an ack. False: close.
  // The NBD_REP_INFO replies of NBD_OPT_INFO/GO: the export's size and
  // flags, then each information item asked for. False: close.
  bool SendInfoReplies(uint32_t option, const ExportInfo& info,
                       const std::vector<uint16_t>& requests);
  bool HandleList(uint32_t length);
  // NBD_OPT_STRUCTURED_REPLY: structured replies from now on.
  bool HandleStructuredReply(uint32_t length);
  bool HandleStartTls(uint32_t length);
  // The option reply error and the message the client may see for a failed
  // lookup or open of export `name`; logs the full status.
  std::pair<uint32_t, std::string> OptionError(const std::string& name,
                                               const Status& s, bool open);
  bool SendOptionReply(uint32_t option, uint32_t type,
                       const std::vector<uint8_t>& data = {});
  bool SendOptionError(uint32_t option, uint32_t type,
                       const std::string& message);
  uint16_t TransmissionFlags() const;

  void Transmission();
  // Checks a request; 0 when it may be executed, else the error to reply.
  uint32_t Check(const Request& r) const;
  void Worker();
  void Execute(Request& r);
  void DoBlockStatus(const Request& r);
  bool ReadWithHoles(Request& r);

  // The largest read or write accepted (and advertised).
  uint32_t MaxBlock() const;

  void SendSimple(uint64_t handle, uint32_t error,
                  std::span<const uint8_t> data = {});
  void SendChunk(uint64_t handle, uint16_t flags, uint16_t type,
                 const std::vector<uint8_t>& head,
                 std::span<const uint8_t> data = {});
  // The error reply for a request: an error chunk when structured replies
  // are on, else a simple reply.
  void SendError(const Request& r, uint32_t error, const std::string& message);
  // Logs a failed request with the engine's message (never sent to the
  // client: it may name host files).
  void LogFailure(const Request& r, const Status& s);
  // Sends `head` then `data` (one sendmsg when it takes them whole), through
  // TLS once it is on.
  bool WriteAll(std::span<const uint8_t> head, std::span<const uint8_t> data = {});
  bool ReadAll(void* buf, size_t n);
  bool Discard(uint64_t n);

  // TlsTransport: the socket itself. Recv waits for data within the read
  // limits (handshake deadline, idle timeout) and fails with ETIMEDOUT
  // past them.
  ssize_t Recv(void* buf, size_t n) override;
  ssize_t Send(const iovec* iov, int count) override;
  // How long Recv may wait now, in ms (-1: no limit).
  int ReadWaitMs() const;

  const int fd_;
  ExportRegistry* const registry_;
  PayloadMemory* const memory_;
  ConnectionPolicy policy_;
  bool privileged_;  // policy_.privileged, or authenticated in TLS
  std::unique_ptr<TlsSession> tls_;
  std::atomic<bool> finished_{false};
  std::atomic<bool> stopping_{false};
  std::chrono::steady_clock::time_point handshake_deadline_;
  bool transmission_ = false;     // reader thread only
  std::atomic<int> in_flight_{0};  // requests queued or being executed

  // Negotiated state (set during the handshake, constant afterwards).
  bool no_zeroes_ = false;
  bool structured_ = false;
  std::string context_export_;  // the export SET_META_CONTEXT was for
  std::vector<MetaContext> contexts_;
  std::unique_ptr<OpenExport> export_;

  std::mutex write_mu_;        // one reply at a time on the socket
  bool write_failed_ = false;  // guarded by write_mu_

  std::mutex queue_mu_;
  std::condition_variable work_cv_;  // workers: a request is queued
  std::condition_variable room_cv_;  // the reader: the queue has room
  std::deque<Request> queue_;  // guarded by queue_mu_
  bool closing_ = false;       // guarded by queue_mu_: no more requests
  std::vector<std::thread> workers_;
};

}  // namespace vss::vssd
