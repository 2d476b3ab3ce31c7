// Pattern(): deterministic test bytes that differ at every position and
// between seeds and are never zero, so that a byte read from the wrong
// place, or a hole where data belongs, shows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vss::testing {

// `n` pattern bytes for `seed`.
inline std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<uint8_t>((i * 131 + seed * 7919 + (i >> 8)) % 251 + 1);
  }
  return out;
}

}  // namespace vss::testing
