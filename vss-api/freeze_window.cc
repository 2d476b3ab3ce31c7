#include "freeze_window.h"

#include <utility>

namespace vss::internal {

FreezeWindow::FreezeWindow(std::chrono::milliseconds window,
                           std::vector<std::string> guard_command,
                           std::mutex* mu, std::function<void()> expire)
    : window_(window),
      guard_command_(std::move(guard_command)),
      mu_(mu),
      expire_(std::move(expire)) {}

FreezeWindow::~FreezeWindow() {
  if (thread_.joinable()) Stop();
}

void FreezeWindow::Start() {
  thread_ = std::thread([this] { Watchdog(); });
}

void FreezeWindow::Stop() {
  {
    std::lock_guard<std::mutex> l(*mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  // Nothing is listed with the guard any more when the owner thawed first:
  // its helper then exits quietly.
  guard_.reset();
}

void FreezeWindow::Arm() {
  fired_ = false;
  armed_ = true;
  deadline_ = std::chrono::steady_clock::now() + window_;
  cv_.notify_all();
}

void FreezeWindow::Disarm() {
  armed_ = false;
  cv_.notify_all();
}

VssStatus FreezeWindow::StartGuard(std::vector<std::string>* events) {
  if (guard_command_.empty()) return VssStatus::Ok();
  if (guard_ != nullptr && !guard_->broken()) return VssStatus::Ok();
  // A broken guard's helper is gone or stuck; nothing of the owner's is
  // frozen under it (every failure thaws first), so it is replaced.
  guard_.reset();
  StatusOr<std::unique_ptr<ThawGuard>> g = ThawGuard::Start(guard_command_);
  if (!g.ok()) {
    events->push_back("guard failed: " + g.status().message());
    return VssError(
        VSS_E_WRITERERROR_NONRETRYABLE,
        "cannot freeze without the thaw guard: " + g.status().message());
  }
  guard_ = std::move(g).value();
  return VssStatus::Ok();
}

void FreezeWindow::Watchdog() {
  std::unique_lock<std::mutex> l(*mu_);
  while (!stop_) {
    if (!armed_) {
      cv_.wait(l);
    } else if (cv_.wait_until(l, deadline_) == std::cv_status::timeout &&
               armed_ && !stop_ &&
               std::chrono::steady_clock::now() >= deadline_) {
      // Neither Thaw nor Abort came within the window.
      fired_ = true;
      armed_ = false;
      expire_();
    }
  }
}

}  // namespace vss::internal
