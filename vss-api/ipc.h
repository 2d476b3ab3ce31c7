// Private: the message layer of the vssd protocol (PROTOCOL.md). A Channel
// owns one connected Unix stream socket and carries calls both ways:
//
//   frame   = 4-byte big-endian length N (1..kMaxFrame), then N bytes of
//             UTF-8 JSON (one object)
//   call    = {"call": ID, "method": NAME, "args": {...}}
//   reply   = {"reply": ID, "hr": HRESULT, "message": TEXT, "result": ...}
//
// IDs are chosen by the caller, unique per direction. Every call gets
// exactly one reply; replies may come in any order.
//
// Threads: Start() runs a reader thread. Incoming calls are handed to the
// CallHandler on that thread, in arrival order; a handler that has to block
// answers later through its Reply (from any thread), typically from a
// thread made with Spawn(). Replies to our calls run their callbacks on the
// reader thread. When the peer goes away (or Close()), every call still
// waiting for a reply completes with E_UNEXPECTED, then on_close runs once
// on the reader thread, with the reason when this side dropped a peer that
// broke the protocol (a frame over kMaxFrame, a message that is not a call
// or a reply), empty when the connection simply ended.
//
// Lifetime: Shutdown() (and the destructor) close the socket, join the
// reader and every spawned thread; callbacks must not destroy their Channel.
// A closed channel may still be called: calls fail with E_UNEXPECTED.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "vss/api/hresult.h"

namespace vss::internal {

using Json = nlohmann::json;

// The longest frame either side sends or accepts. The largest legitimate
// messages are writer metadata and backup components documents, a few
// hundred bytes per component, so thousands of components fit; a parsed
// message takes up to about 40 times its size in memory, so this also
// bounds what one connection can make the other side allocate. A longer
// frame is refused from its header, before anything is allocated, and
// closes the connection; a call or reply that would be longer is not sent
// (the call fails, the reply becomes an error reply), see PROTOCOL.md.
inline constexpr uint32_t kMaxFrame = 1u << 20;
// The protocol version "Hello" carries.
inline constexpr int kProtocolVersion = 1;

class Channel {
 public:
  // Completes a call: the status and, when ok, the result.
  using Reply = std::function<void(const VssStatus& status, Json result)>;
  using CallHandler = std::function<void(const std::string& method, Json args, Reply reply)>;

  using CloseHandler = std::function<void(const std::string& reason)>;

  // Takes `fd` (a connected stream socket).
  Channel(int fd, CallHandler on_call, CloseHandler on_close);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  void Start();
  // Sends a call; `done` runs once with the reply (at once, on this thread,
  // if the channel is closed, or with E_INVALIDARG if the call would be
  // longer than kMaxFrame).
  void CallAsync(const std::string& method, Json args, Reply done);
  // Sends a call and waits for its reply.
  VssStatusOr<Json> Call(const std::string& method, Json args);
  // Shuts the socket down; the reader ends and fails what is pending.
  void Close();
  // Close(), then waits for the reader and every spawned thread; later
  // Spawn() calls are dropped. Not from one of this channel's threads.
  void Shutdown();
  bool closed() const { return core_->closed.load(); }
  // Runs `fn` on a thread that the destructor joins.
  void Spawn(std::function<void()> fn);

 private:
  struct Core {
    int fd = -1;
    std::mutex write_mu;  // one frame at a time
    std::atomic<bool> closed{false};
    // Writes one frame; false if the socket is gone.
    // REQUIRES: body.size() <= kMaxFrame.
    bool Send(const std::string& body);
  };
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void ReadLoop();
  void FailPending();

  std::shared_ptr<Core> core_;
  CallHandler on_call_;
  CloseHandler on_close_;
  std::mutex mu_;  // guards next_id_, pending_, workers_, shut_down_
  bool shut_down_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Reply> pending_;
  std::list<Worker> workers_;
  std::thread reader_;
};

// Status <-> the "hr"/"message" members of a reply.
VssStatus StatusFromJson(const Json& j);

// Connects to the Unix socket at `path`; -1 with errno set on failure.
int ConnectUnix(const std::string& path);

}  // namespace vss::internal
