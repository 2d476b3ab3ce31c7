// Guid: a 128-bit identifier for volumes, shadows, sets and providers, as in
// VSS. Text form is the usual 8-4-4-4-12 lower-case hex; Parse() also takes
// upper case and surrounding braces. Values are plain data, any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vss {

struct Guid {
  std::array<uint8_t, 16> bytes{};

  // A random (version 4) GUID from the kernel's random source.
  static Guid Generate();
  // Parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", optionally in braces.
  static std::optional<Guid> Parse(std::string_view text);

  bool IsNull() const;
  std::string ToString() const;  // without braces, lower case

  friend bool operator==(const Guid&, const Guid&) = default;
  friend auto operator<=>(const Guid&, const Guid&) = default;
};

}  // namespace vss
