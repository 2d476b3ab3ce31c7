// PayloadMemory: the memory that NBD request payloads use (write data read
// from clients, read data waiting to be sent), shared by every connection of
// one server and capped.
//
// A connection's reader takes a buffer *before* it reads a write's payload
// or queues a read, so that the bytes held for requests never exceed the
// cap however many clients send however large requests: a reader whose
// request does not fit waits (first come, first served) until others give
// theirs back. Buffers given back are kept for reuse (a 1 MiB request then
// costs no allocation and no page faults); kept buffers count against the
// cap too and are freed when a new request needs their room.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

namespace vss::vssd {

class PayloadMemory {
 public:
  // A buffer of `capacity` bytes (not zero-filled), charged to the cap
  // until it is given back.
  struct Buffer {
    std::unique_ptr<uint8_t[]> bytes;
    size_t capacity = 0;
    uint8_t* data() const { return bytes.get(); }
  };

  // `limit`: the most bytes held at once, in use and kept for reuse.
  explicit PayloadMemory(uint64_t limit) : limit_(limit) {}

  uint64_t limit() const { return limit_; }

  // Waits until `n` bytes fit under the limit, then returns a buffer of at
  // least `n` bytes. Returns an empty Buffer (no bytes) when `cancel` is or
  // becomes true (see Wake()) before that.
  // REQUIRES: n <= limit().
  Buffer Take(size_t n, const std::atomic<bool>& cancel);
  // Gives a buffer back (an empty one is ignored).
  void Give(Buffer b);
  // Wakes every waiting Take() so that it looks at its `cancel` again.
  void Wake();

  // Bytes held now and at most so far (in use plus kept for reuse).
  uint64_t held() const;
  uint64_t peak() const;

 private:
  void TrimLocked();  // frees kept buffers until held <= limit

  const uint64_t limit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t in_use_ = 0;  // guarded by mu_: capacities of buffers taken
  uint64_t kept_ = 0;    // guarded by mu_: capacities of buffers kept
  uint64_t peak_ = 0;    // guarded by mu_
  std::vector<Buffer> pool_;       // guarded by mu_
  std::list<const void*> queue_;  // guarded by mu_: waiting Take()s, in order
};

}  // namespace vss::vssd
