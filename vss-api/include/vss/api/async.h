// Async: an asynchronous VSS operation (IVssAsync). The operation runs on a
// thread of its own, started by Async::Start; the requester polls or waits.
//
// QueryStatus() gives VSS_S_ASYNC_PENDING while it runs, then
// VSS_S_ASYNC_FINISHED, VSS_S_ASYNC_CANCELLED, or the operation's failure
// code; Result() gives the same with the message. Cancel() asks the
// operation to stop at its next safe point (an operation past its point of
// no return, such as a committed shadow set, finishes instead).
//
// Thread safety: every method may be called from any thread. Destroying an
// Async waits for its operation to end.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "vss/api/hresult.h"
#include "vss/api/types.h"

namespace vss {

// What an operation sees of its Async: whether it was asked to stop.
class CancelToken {
 public:
  bool cancelled() const { return flag_.load(); }

 private:
  friend class Async;
  std::atomic<bool> flag_{false};
};

class Async {
 public:
  // The operation returns its result; a failure code becomes the async
  // status. Returning VSS_S_ASYNC_CANCELLED reports a cancellation.
  using Operation = std::function<VssStatus(const CancelToken&)>;

  // Starts `op` on a new thread.
  static std::shared_ptr<Async> Start(Operation op);
  // An already finished operation with result `s` (for calls that fail
  // before they start, and for operations with nothing to do).
  static std::shared_ptr<Async> Finished(VssStatus s);
  ~Async();
  Async(const Async&) = delete;
  Async& operator=(const Async&) = delete;

  // Waits up to `timeout_ms` (kInfinite: no limit) and returns
  // QueryStatus(): VSS_S_ASYNC_PENDING if the operation still runs.
  HResult Wait(uint32_t timeout_ms = kInfinite);
  // VSS_S_ASYNC_PENDING / VSS_S_ASYNC_FINISHED / VSS_S_ASYNC_CANCELLED or
  // the operation's failure code.
  HResult QueryStatus() const;
  // The final status with its message (code VSS_S_ASYNC_FINISHED on
  // success); VSS_S_ASYNC_PENDING while running.
  VssStatus Result() const;
  // Asks the operation to stop. Returns VSS_S_ASYNC_FINISHED if it had
  // already ended, S_OK otherwise (the final status tells what happened).
  HResult Cancel();

 private:
  Async() = default;
  struct State {
    mutable std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    VssStatus result{VSS_S_ASYNC_PENDING, ""};
    CancelToken cancel;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
  std::thread thread_;
};

}  // namespace vss
