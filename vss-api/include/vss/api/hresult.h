// HResult and VssStatus: the VSS error space of the vss-api layer.
//
// An HResult is VSS's 32-bit result code (negative = failure), with the
// names and values of vsserror.h (VSS_E_BAD_STATE = 0x80042301, ...). Only
// vss-api speaks HResults; the engine's Status codes are translated once, at
// this boundary, by VssStatus::FromStatus:
//   kNotFound          -> VSS_E_OBJECT_NOT_FOUND
//   kAlreadyExists     -> VSS_E_OBJECT_ALREADY_EXISTS
//   kNoSpace           -> VSS_E_INSUFFICIENT_STORAGE
//   kInvalidArgument   -> E_INVALIDARG
//   kFailedPrecondition-> VSS_E_BAD_STATE
//   kBusy              -> VSS_E_VOLUME_IN_USE
//   kUnsupported       -> VSS_E_NOT_SUPPORTED
//   everything else    -> VSS_E_UNEXPECTED_PROVIDER_ERROR
// and back, for programs that report a VssStatus as a Status, by
// VssStatus::ToStatus: the codes above to their StatusCode (and
// VSS_E_UNSUPPORTED_CONTEXT to kUnsupported), any other failure to
// kInternal; the message is "VSS_E_... (0x...): message".
// A VssStatus is an HResult plus a one-line message; values, any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "vss/base/status.h"

namespace vss {

using HResult = int32_t;

constexpr HResult MakeHResult(uint32_t v) { return static_cast<HResult>(v); }
constexpr bool Succeeded(HResult hr) { return hr >= 0; }
constexpr bool Failed(HResult hr) { return hr < 0; }

// VSS names are kept as they are so that a VSS developer finds them.
// NOLINTBEGIN(readability-identifier-naming)
inline constexpr HResult S_OK = 0;
inline constexpr HResult S_FALSE = 1;
inline constexpr HResult E_UNEXPECTED = MakeHResult(0x8000FFFF);
inline constexpr HResult E_ACCESSDENIED = MakeHResult(0x80070005);
inline constexpr HResult E_OUTOFMEMORY = MakeHResult(0x8007000E);
inline constexpr HResult E_INVALIDARG = MakeHResult(0x80070057);

inline constexpr HResult VSS_S_ASYNC_PENDING = MakeHResult(0x00042309);
inline constexpr HResult VSS_S_ASYNC_FINISHED = MakeHResult(0x0004230A);
inline constexpr HResult VSS_S_ASYNC_CANCELLED = MakeHResult(0x0004230B);
inline constexpr HResult VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED = MakeHResult(0x00042321);

inline constexpr HResult VSS_E_BAD_STATE = MakeHResult(0x80042301);
inline constexpr HResult VSS_E_UNEXPECTED = MakeHResult(0x80042302);
inline constexpr HResult VSS_E_PROVIDER_ALREADY_REGISTERED = MakeHResult(0x80042303);
inline constexpr HResult VSS_E_PROVIDER_NOT_REGISTERED = MakeHResult(0x80042304);
inline constexpr HResult VSS_E_PROVIDER_VETO = MakeHResult(0x80042306);
inline constexpr HResult VSS_E_PROVIDER_IN_USE = MakeHResult(0x80042307);
inline constexpr HResult VSS_E_OBJECT_NOT_FOUND = MakeHResult(0x80042308);
inline constexpr HResult VSS_E_VOLUME_NOT_SUPPORTED = MakeHResult(0x8004230C);
inline constexpr HResult VSS_E_OBJECT_ALREADY_EXISTS = MakeHResult(0x8004230D);
inline constexpr HResult VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER = MakeHResult(0x8004230E);
inline constexpr HResult VSS_E_UNEXPECTED_PROVIDER_ERROR = MakeHResult(0x8004230F);
inline constexpr HResult VSS_E_CORRUPT_XML_DOCUMENT = MakeHResult(0x80042310);
inline constexpr HResult VSS_E_INVALID_XML_DOCUMENT = MakeHResult(0x80042311);
inline constexpr HResult VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED = MakeHResult(0x80042312);
inline constexpr HResult VSS_E_FLUSH_WRITES_TIMEOUT = MakeHResult(0x80042313);
inline constexpr HResult VSS_E_HOLD_WRITES_TIMEOUT = MakeHResult(0x80042314);
inline constexpr HResult VSS_E_UNEXPECTED_WRITER_ERROR = MakeHResult(0x80042315);
inline constexpr HResult VSS_E_SNAPSHOT_SET_IN_PROGRESS = MakeHResult(0x80042316);
inline constexpr HResult VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED = MakeHResult(0x80042317);
inline constexpr HResult VSS_E_WRITER_INFRASTRUCTURE = MakeHResult(0x80042318);
inline constexpr HResult VSS_E_WRITER_NOT_RESPONDING = MakeHResult(0x80042319);
inline constexpr HResult VSS_E_WRITER_ALREADY_SUBSCRIBED = MakeHResult(0x8004231A);
inline constexpr HResult VSS_E_UNSUPPORTED_CONTEXT = MakeHResult(0x8004231B);
inline constexpr HResult VSS_E_VOLUME_IN_USE = MakeHResult(0x8004231D);
inline constexpr HResult VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED = MakeHResult(0x8004231E);
inline constexpr HResult VSS_E_INSUFFICIENT_STORAGE = MakeHResult(0x8004231F);
inline constexpr HResult VSS_E_NO_SNAPSHOTS_IMPORTED = MakeHResult(0x80042320);
inline constexpr HResult VSS_E_SOME_SNAPSHOTS_NOT_IMPORTED = MakeHResult(0x80042321);
inline constexpr HResult VSS_E_REVERT_IN_PROGRESS = MakeHResult(0x80042325);
inline constexpr HResult VSS_E_REVERT_VOLUME_LOST = MakeHResult(0x80042326);
inline constexpr HResult VSS_E_REBOOT_REQUIRED = MakeHResult(0x80042327);
inline constexpr HResult VSS_E_TRANSACTION_FREEZE_TIMEOUT = MakeHResult(0x80042328);
inline constexpr HResult VSS_E_TRANSACTION_THAW_TIMEOUT = MakeHResult(0x80042329);
inline constexpr HResult VSS_E_UNSELECTED_VOLUME = MakeHResult(0x8004232A);
inline constexpr HResult VSS_E_SNAPSHOT_NOT_IN_SET = MakeHResult(0x8004232B);
inline constexpr HResult VSS_E_NESTED_VOLUME_LIMIT = MakeHResult(0x8004232C);
inline constexpr HResult VSS_E_VOLUME_NOT_LOCAL = MakeHResult(0x8004232D);
inline constexpr HResult VSS_E_NOT_SUPPORTED = MakeHResult(0x8004232F);
inline constexpr HResult VSS_E_WRITERERROR_PARTIAL_FAILURE = MakeHResult(0x80042336);
inline constexpr HResult VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT = MakeHResult(0x800423F0);
inline constexpr HResult VSS_E_WRITERERROR_OUTOFRESOURCES = MakeHResult(0x800423F1);
inline constexpr HResult VSS_E_WRITERERROR_TIMEOUT = MakeHResult(0x800423F2);
inline constexpr HResult VSS_E_WRITERERROR_RETRYABLE = MakeHResult(0x800423F3);
inline constexpr HResult VSS_E_WRITERERROR_NONRETRYABLE = MakeHResult(0x800423F4);
inline constexpr HResult VSS_E_WRITERERROR_RECOVERY_FAILED = MakeHResult(0x800423F5);
inline constexpr HResult VSS_E_AUTORECOVERY_FAILED = MakeHResult(0x800423FB);
inline constexpr HResult VSS_E_WRITER_STATUS_NOT_AVAILABLE = MakeHResult(0x80042409);
// NOLINTEND(readability-identifier-naming)

// "VSS_E_BAD_STATE" for a known code, "0x80042399" (hex) otherwise.
std::string HResultName(HResult hr);
// "0x80042301".
std::string HResultHex(HResult hr);
// True for the codes a writer may pass to SetWriterFailure.
bool IsWriterErrorCode(HResult hr);

// An HResult and a message. ok() for every success code (S_OK, VSS_S_*).
class [[nodiscard]] VssStatus {
 public:
  VssStatus() = default;
  VssStatus(HResult code, std::string message)
      : code_(code), message_(std::move(message)) {}
  static VssStatus Ok() { return VssStatus(); }
  // Translates an engine Status (see the table at the top of this file);
  // OK stays OK. The message is kept.
  static VssStatus FromStatus(const Status& s);
  // The Status a program reports for this one (see the top of this file);
  // OK stays OK. `what`, when given, prefixes the message ("what: ...").
  Status ToStatus(std::string_view what = {}) const;

  bool ok() const { return Succeeded(code_); }
  HResult code() const { return code_; }
  const std::string& message() const { return message_; }
  // "VSS_E_BAD_STATE (0x80042301): message", or "S_OK".
  std::string ToString() const;
  void IgnoreError() const {}

 private:
  HResult code_ = S_OK;
  std::string message_;
};

inline VssStatus VssError(HResult code, std::string message) {
  return VssStatus(code, std::move(message));
}

// A value or the VssStatus explaining why there is none: the one StatusOr
// template with VssStatus as its error.
template <typename T>
using VssStatusOr = StatusOr<T, VssStatus>;

}  // namespace vss

#define VSS_RETURN_IF_VSS_ERROR(expr)            \
  do {                                           \
    ::vss::VssStatus vss_vstatus_ = (expr);      \
    if (!vss_vstatus_.ok()) return vss_vstatus_; \
  } while (0)
