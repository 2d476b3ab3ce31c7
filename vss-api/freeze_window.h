// FreezeWindow: what the freezers (FsFreezer, GuestFreezer) share so that
// nothing stays frozen: a watchdog thread that runs the owner's expiry
// handler when the freeze window passes without Disarm, and the thaw guard
// (ThawGuard), started on demand and replaced once broken.
//
// Locking: the owner's mutex guards this object's state too. Every method
// but the constructor, Start and Stop requires it held, and the watchdog
// thread holds it while it runs the handler.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vss/api/daemon/thaw_guard.h"
#include "vss/api/hresult.h"

namespace vss::internal {

class FreezeWindow {
 public:
  // `window`: how long after Arm the handler runs; `guard_command`: the
  // guard's program (empty: no guard); `mu`: the owner's mutex;
  // `expire`: the owner's handler, run with `mu` held once the window
  // passed (fired() is true by then).
  FreezeWindow(std::chrono::milliseconds window,
               std::vector<std::string> guard_command, std::mutex* mu,
               std::function<void()> expire);
  // REQUIRES: Stop() was called if Start() was.
  ~FreezeWindow();
  FreezeWindow(const FreezeWindow&) = delete;
  FreezeWindow& operator=(const FreezeWindow&) = delete;

  // Starts the watchdog thread: once the owner can take the handler call.
  void Start();
  // Ends the watchdog thread, then the guard (whose helper exits, thawing
  // what is still listed). REQUIRES: the owner's mutex is not held.
  void Stop();

  // The window starts now: fired() becomes false.
  void Arm();
  // No handler call until the next Arm.
  void Disarm();
  // True if the handler ran since the last Arm.
  bool fired() const { return fired_; }

  // OK without a guard command or with a running guard; else starts one.
  // VSS_E_WRITERERROR_NONRETRYABLE naming the reason if it cannot (and
  // "guard failed: REASON" goes to `events`).
  VssStatus StartGuard(std::vector<std::string>* events);
  // The running guard; null without one.
  ThawGuard* guard() const { return guard_.get(); }

 private:
  void Watchdog();

  const std::chrono::milliseconds window_;
  const std::vector<std::string> guard_command_;
  std::mutex* const mu_;
  const std::function<void()> expire_;
  std::unique_ptr<ThawGuard> guard_;  // null until started, or once broken
  std::condition_variable cv_;
  bool armed_ = false;
  std::chrono::steady_clock::time_point deadline_{};
  bool fired_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace vss::internal
