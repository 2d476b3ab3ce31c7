// Connection: one NBD client of vssd, from the handshake to the end of
// transmission.
//
// The thread that calls Run() does the handshake and then reads requests;
// each request is checked once, centrally, in the reader (magic, command,
// flags, length, range, read-only) and only then handed to a small pool of
// workers of this connection, so many requests are in flight and the
// handlers trust their inputs. Replies are written whole under a mutex.
// A request refused before it reaches a worker still has its write payload
// read and discarded, except a payload larger than nbd::kMaxPayload: that
// gets EINVAL and the connection is closed instead of reading it.
//
// Reads of a shadow export with structured replies (and without DF) send
// the shadow's holes as NBD_REPLY_TYPE_OFFSET_HOLE chunks.
//
// Thread safety: Run() is called once, from one thread; Stop() may be
// called from any thread while Run() runs and makes it return after the
// requests already read are answered.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "exports.h"

namespace vss::vssd {

class Connection {
 public:
  // Takes ownership of the connected socket `fd`.
  Connection(int fd, ExportRegistry* registry);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Serves the client until it disconnects, breaks the protocol, or Stop().
  void Run();
  // Stops reading new requests (the socket's read side is shut down).
  void Stop();
  bool finished() const { return finished_.load(); }

 private:
  // A request's data (write payload, read result): not zero-filled, and
  // recycled through the connection's pool so that a 1 MiB request does not
  // cost a fresh allocation and its page faults.
  struct Buffer {
    std::unique_ptr<uint8_t[]> bytes;
    size_t capacity = 0;
  };
  struct Request {
    uint16_t flags = 0;
    uint16_t type = 0;
    uint64_t handle = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
    Buffer payload;  // WRITE data, `length` bytes
  };

  // Handshake; true when transmission should begin with export_ set.
  bool Handshake();
  bool HandleInfoOrGo(uint32_t option, const std::vector<uint8_t>& data,
                      bool* go);
  bool HandleMetaContext(uint32_t option, const std::vector<uint8_t>& data);
  bool HandleExportName(const std::vector<uint8_t>& data);
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

  Buffer TakeBuffer(size_t n);
  void ReturnBuffer(Buffer b);

  void SendSimple(uint64_t handle, uint32_t error,
                  std::span<const uint8_t> data = {});
  void SendChunk(uint64_t handle, uint16_t flags, uint16_t type,
                 const std::vector<uint8_t>& head,
                 std::span<const uint8_t> data = {});
  // The error reply for a request: an error chunk when structured replies
  // are on, else a simple reply.
  void SendError(const Request& r, uint32_t error, const std::string& message);
  // Sends `head` then `data` (one sendmsg when it takes them whole).
  bool WriteAll(std::span<const uint8_t> head, std::span<const uint8_t> data = {});
  bool ReadAll(void* buf, size_t n);
  bool Discard(uint64_t n);

  const int fd_;
  ExportRegistry* const registry_;
  std::atomic<bool> finished_{false};

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

  std::mutex pool_mu_;
  std::vector<Buffer> pool_;  // guarded by pool_mu_
};

}  // namespace vss::vssd
