#include "worker_pool.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace vss::engine {

struct WorkerPool::Job {
  const std::function<void(size_t)>* fn;
  size_t n;
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::mutex mu;
  std::condition_variable cv;
};

WorkerPool& WorkerPool::Get() {
  // Never destroyed: its threads may still be parked at exit.
  static WorkerPool* pool = new WorkerPool(
      std::min<size_t>(7, std::max(1u, std::thread::hardware_concurrency()) - 1));
  return *pool;
}

WorkerPool::WorkerPool(size_t threads) : threads_(threads) {
  for (size_t i = 0; i < threads_; ++i) std::thread([this] { Loop(); }).detach();
}

void WorkerPool::Work(Job& job) {
  size_t finished = 0;
  for (size_t i; (i = job.next.fetch_add(1)) < job.n;) {
    (*job.fn)(i);
    ++finished;
  }
  if (finished > 0 && job.done.fetch_add(finished) + finished == job.n) {
    std::lock_guard l(job.mu);
    job.cv.notify_all();
  }
}

void WorkerPool::Loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock l(mu_);
      cv_.wait(l, [&] { return !jobs_.empty(); });
      job = jobs_.front();
      if (job->next.load() >= job->n) {
        jobs_.pop_front();
        continue;
      }
    }
    Work(*job);
  }
}

void WorkerPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (n == 1 || threads_ == 0) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  {
    std::lock_guard l(mu_);
    jobs_.push_back(job);
  }
  cv_.notify_all();
  Work(*job);
  {
    std::unique_lock l(job->mu);
    job->cv.wait(l, [&] { return job->done.load() == n; });
  }
  std::lock_guard l(mu_);
  auto it = std::find(jobs_.begin(), jobs_.end(), job);
  if (it != jobs_.end()) jobs_.erase(it);
}

}  // namespace vss::engine
