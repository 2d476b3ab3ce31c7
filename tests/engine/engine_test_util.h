// Helpers shared by the engine's randomized, power-loss, crash and damage
// tests: seeds from the environment, in-memory image openers, a device that
// can be "unplugged" to simulate a power cut; temporary directories and
// status assertions come from the shared test library (tests/lib).
// Test-only; not part of any library.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "vss/formats/block_device.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/base/status.h"
#include "vss/testing/status_matchers.h"
#include "vss/testing/temp_dir.h"

namespace vss::engine::test_util {

using ::vss::testing::TempDir;
using ::vss::testing::TempDirOptions;

inline uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 0);
}

// The seed from VSS_SEED, or a random one. Printed by the caller.
inline uint64_t TestSeed() {
  const char* v = std::getenv("VSS_SEED");
  if (v != nullptr && *v != '\0') return std::strtoull(v, nullptr, 0);
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

inline constexpr bool kSanitized =
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

// A device that forwards until Cut(): then every call fails with kIoError and
// does nothing, as if the disk had lost power. Calls may also be counted
// down: after `n` more calls it cuts itself (a cut inside an operation).
class GateDevice final : public ForwardingDevice {
 public:
  explicit GateDevice(BlockDevice* target) : ForwardingDevice(target) {}
  // `*slot` points at this device while it lives; the destructor clears it,
  // so a test holding the slot never calls a gate that an engine freed (for
  // instance when OpenVolume fails after opening the image).
  GateDevice(BlockDevice* target, GateDevice** slot)
      : ForwardingDevice(target), slot_(slot) {
    if (slot_ != nullptr) *slot_ = this;
  }
  ~GateDevice() override {
    if (slot_ != nullptr && *slot_ == this) *slot_ = nullptr;
  }

  void Cut() { cut_.store(true); }
  // Cuts after `n` more forwarded calls (n == 0 cuts now).
  void CutAfter(int64_t n) { countdown_.store(n); }
  bool is_cut() const { return cut_.load(); }

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override {
    VSS_RETURN_IF_ERROR(Pass());
    return ForwardingDevice::DoRead(offset, buf);
  }
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override {
    VSS_RETURN_IF_ERROR(Pass());
    return ForwardingDevice::DoWrite(offset, buf);
  }
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override {
    VSS_RETURN_IF_ERROR(Pass());
    return ForwardingDevice::DoWriteZeroes(offset, length);
  }
  Status DoDiscard(uint64_t offset, uint64_t length) override {
    VSS_RETURN_IF_ERROR(Pass());
    return ForwardingDevice::DoDiscard(offset, length);
  }
  Status DoFlush() override {
    VSS_RETURN_IF_ERROR(Pass());
    return ForwardingDevice::DoFlush();
  }
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override {
    VSS_RETURN_IF_ERROR(Pass());
    return ForwardingDevice::DoExtents(offset, length);
  }

 private:
  Status Pass() {
    if (countdown_.load() >= 0 && countdown_.fetch_sub(1) <= 0) cut_ = true;
    if (cut_.load()) return IoError("simulated power cut (test gate)");
    return OkStatus();
  }
  GateDevice** slot_ = nullptr;
  std::atomic<bool> cut_{false};
  std::atomic<int64_t> countdown_{-1};
};

// An ImageOpener that serves every path from `*target` through a
// GateDevice, stored in `*gate` so the test can cut it. The test owns the
// target (a MemoryDevice or PowerLossDevice) and keeps it across reopens.
inline ImageOpener GatedOpener(BlockDevice* target, GateDevice** gate) {
  return
      [target, gate](const std::string& path, bool create,
                     uint64_t size) -> StatusOr<std::unique_ptr<BlockDevice>> {
        if (create && size != target->size()) {
          return InvalidArgumentError("test opener: size mismatch for " + path);
        }
        auto dev = std::make_unique<GateDevice>(target, gate);
        return std::unique_ptr<BlockDevice>(std::move(dev));
      };
}

// Sets StoreOptions::flush_on_close = false when this build has the field.
template <typename O>
constexpr bool SetNoFlushOnClose(O& o) {
  if constexpr (requires { o.flush_on_close = false; }) {
    o.flush_on_close = false;
    return true;
  } else {
    return false;
  }
}

inline StatusOr<std::vector<uint8_t>> ReadAll(BlockDevice& dev) {
  std::vector<uint8_t> buf(dev.size());
  Status s = dev.Read(0, buf);
  if (!s.ok()) return s;
  return buf;
}

// "" when equal, else where the first difference is (in bytes and chunks).
inline std::string DescribeDiff(std::span<const uint8_t> expected,
                                std::span<const uint8_t> actual, uint64_t base,
                                uint32_t chunk_size) {
  if (expected.size() != actual.size()) {
    return "size " + std::to_string(actual.size()) + " != expected " +
           std::to_string(expected.size());
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    if (expected[i] != actual[i]) {
      size_t n = 0;
      for (size_t j = i; j < expected.size(); ++j)
        n += expected[j] != actual[j];
      std::ostringstream os;
      os << "first differing byte at " << base + i << " (chunk "
         << (base + i) / chunk_size << "): expected 0x" << std::hex
         << int{expected[i]} << " got 0x" << int{actual[i]} << std::dec << "; "
         << n << " differing bytes from there";
      return os.str();
    }
  }
  return "";
}

// Deterministic bytes for (seed, key).
inline void FillRandom(uint64_t seed, uint64_t key, std::span<uint8_t> out) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + key);
  size_t i = 0;
  while (i < out.size()) {
    uint64_t v = rng();
    for (int b = 0; b < 8 && i < out.size(); ++b, ++i)
      out[i] = uint8_t(v >> (8 * b));
  }
}

}  // namespace vss::engine::test_util
