// WorkerPool: a few threads that help a caller run independent pieces of
// work in parallel (compressing or decompressing the chunks of one volume
// write or read). The caller always works too, so a call finishes even if
// the pool's threads are busy elsewhere or absent (after fork()).
// Thread safe; the pool lives for the whole process.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace vss::engine {

class WorkerPool {
 public:
  // The process-wide pool: one thread fewer than the machine has cores
  // (at most 7), none on a single-core machine.
  static WorkerPool& Get();

  // Runs fn(i) for every i in [0, n) and returns when all have returned.
  // fn must not throw.
  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);

 private:
  struct Job;
  explicit WorkerPool(size_t threads);
  void Loop();
  static void Work(Job& job);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> jobs_;
  size_t threads_;
};

}  // namespace vss::engine
