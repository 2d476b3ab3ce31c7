#include "vss/api/async.h"

#include <chrono>

namespace vss {

std::shared_ptr<Async> Async::Start(Operation op) {
  std::shared_ptr<Async> a(new Async());
  std::shared_ptr<State> st = a->state_;
  a->thread_ = std::thread([st, op = std::move(op)] {
    VssStatus s = op(st->cancel);
    if (s.code() == S_OK || s.code() == S_FALSE) {
      s = VssStatus(VSS_S_ASYNC_FINISHED, s.message());
    }
    std::lock_guard<std::mutex> l(st->mu);
    st->result = std::move(s);
    st->done = true;
    st->cv.notify_all();
  });
  return a;
}

std::shared_ptr<Async> Async::Finished(VssStatus s) {
  std::shared_ptr<Async> a(new Async());
  if (s.code() == S_OK || s.code() == S_FALSE) {
    s = VssStatus(VSS_S_ASYNC_FINISHED, s.message());
  }
  a->state_->result = std::move(s);
  a->state_->done = true;
  return a;
}

Async::~Async() {
  if (thread_.joinable()) thread_.join();
}

HResult Async::Wait(uint32_t timeout_ms) {
  std::unique_lock<std::mutex> l(state_->mu);
  if (timeout_ms == kInfinite) {
    state_->cv.wait(l, [&] { return state_->done; });
  } else {
    state_->cv.wait_for(l, std::chrono::milliseconds(timeout_ms),
                        [&] { return state_->done; });
  }
  return state_->result.code();
}

HResult Async::QueryStatus() const {
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->result.code();
}

VssStatus Async::Result() const {
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->result;
}

HResult Async::Cancel() {
  std::lock_guard<std::mutex> l(state_->mu);
  if (state_->done) return VSS_S_ASYNC_FINISHED;
  state_->cancel.flag_.store(true);
  return S_OK;
}

}  // namespace vss
