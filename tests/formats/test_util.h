// Helpers shared by the formats tests: a temporary directory that cleans up
// after itself, byte patterns, and a test seed that can be replayed.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "vss/base/status.h"

namespace vss::testing {

#define VSS_ASSERT_OK(expr)                                 \
  do {                                                      \
    ::vss::Status s_ = (expr);                              \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.ToString(); \
  } while (0)
#define VSS_EXPECT_OK(expr)                                 \
  do {                                                      \
    ::vss::Status s_ = (expr);                              \
    EXPECT_TRUE(s_.ok()) << #expr << ": " << s_.ToString(); \
  } while (0)

// A fresh directory under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/vss-formats-test-XXXXXX";
    const char* made = mkdtemp(tmpl);
    if (made == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
    } else {
      path_ = made;
    }
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Bytes that differ at every position and between seeds, never all zero.
inline std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<uint8_t>((i * 131 + seed * 7919 + (i >> 8)) % 251 + 1);
  }
  return out;
}

// The seed for a random test: $VSS_TEST_SEED if set, else a fresh one.
// Printed so a failure can be replayed.
inline uint64_t TestSeed() {
  const char* env = std::getenv("VSS_TEST_SEED");
  uint64_t seed =
      env != nullptr ? std::strtoull(env, nullptr, 10) : std::random_device()();
  std::cout << "seed " << seed << " (replay with VSS_TEST_SEED=" << seed
            << ")\n";
  return seed;
}

}  // namespace vss::testing
