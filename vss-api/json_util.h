// Private helpers for the JSON documents of vss-api (WMD, BCD). Readers
// throw nlohmann::json exceptions or ShapeError on a document of the wrong
// shape; the public loaders catch them at the boundary and return
// VSS_E_CORRUPT_XML_DOCUMENT (not JSON) or VSS_E_INVALID_XML_DOCUMENT.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "vss/api/hresult.h"
#include "vss/base/guid.h"

namespace vss::internal {

using Json = nlohmann::json;

struct ShapeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline Json GuidToJson(const Guid& g) { return g.ToString(); }

inline Guid GuidFromJson(const Json& j) {
  std::optional<Guid> g = Guid::Parse(j.get<std::string>());
  if (!g) throw ShapeError("not a GUID: " + j.get<std::string>());
  return *g;
}

// An integer member of outside JSON, of type T. Json::get<T>() converts a
// fraction or an out-of-range number with a bare cast (undefined for
// 1e300 -> int); this refuses anything that is not an integer T can hold.
template <typename T>
T IntFromJson(const Json& j) {
  static_assert(std::is_integral_v<T>);
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v <= static_cast<uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(v);
  } else if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if constexpr (std::is_signed_v<T>) {
      if (v >= std::numeric_limits<T>::min() && v <= std::numeric_limits<T>::max()) {
        return static_cast<T>(v);
      }
    } else if (v >= 0 && static_cast<uint64_t>(v) <= std::numeric_limits<T>::max()) {
      return static_cast<T>(v);
    }
  }
  throw ShapeError("not an integer in range: " + j.dump());
}

template <typename E>
E EnumFromJson(const Json& j) {
  return static_cast<E>(IntFromJson<int32_t>(j));
}

// Parses `text` and runs `read` on it, mapping failures to VSS codes.
// `what` names the document in messages ("writer metadata").
inline VssStatus ParseDocument(const std::string& text, const std::string& what,
                               int version,
                               const std::function<void(const Json&)>& read) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    return VssError(VSS_E_CORRUPT_XML_DOCUMENT, what + " is not valid JSON: " + e.what());
  }
  try {
    if (!j.is_object()) throw ShapeError("not a JSON object");
    int v = IntFromJson<int>(j.at("version"));
    if (v != version) {
      throw ShapeError("version " + std::to_string(v) + " (this build reads " +
                       std::to_string(version) + ")");
    }
    read(j);
  } catch (const std::exception& e) {
    return VssError(VSS_E_INVALID_XML_DOCUMENT, what + " has the wrong shape: " + e.what());
  }
  return VssStatus::Ok();
}

}  // namespace vss::internal
