// Helpers shared by the formats tests: a test seed that can be replayed,
// and the shared test library (TempDir, status assertions and matchers,
// byte patterns).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <random>

#include "vss/testing/pattern.h"
#include "vss/testing/status_matchers.h"
#include "vss/testing/temp_dir.h"

namespace vss::testing {

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
