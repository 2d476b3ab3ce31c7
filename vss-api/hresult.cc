#include "vss/api/hresult.h"

#include <cstdio>

namespace vss {
namespace {

struct NamedCode {
  HResult code;
  const char* name;
};

#define VSS_NAMED(x) {x, #x}
constexpr NamedCode kNames[] = {
    VSS_NAMED(S_OK),
    VSS_NAMED(S_FALSE),
    VSS_NAMED(E_UNEXPECTED),
    VSS_NAMED(E_ACCESSDENIED),
    VSS_NAMED(E_OUTOFMEMORY),
    VSS_NAMED(E_INVALIDARG),
    VSS_NAMED(VSS_S_ASYNC_PENDING),
    VSS_NAMED(VSS_S_ASYNC_FINISHED),
    VSS_NAMED(VSS_S_ASYNC_CANCELLED),
    VSS_NAMED(VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED),
    VSS_NAMED(VSS_E_BAD_STATE),
    VSS_NAMED(VSS_E_UNEXPECTED),
    VSS_NAMED(VSS_E_PROVIDER_ALREADY_REGISTERED),
    VSS_NAMED(VSS_E_PROVIDER_NOT_REGISTERED),
    VSS_NAMED(VSS_E_PROVIDER_VETO),
    VSS_NAMED(VSS_E_PROVIDER_IN_USE),
    VSS_NAMED(VSS_E_OBJECT_NOT_FOUND),
    VSS_NAMED(VSS_E_VOLUME_NOT_SUPPORTED),
    VSS_NAMED(VSS_E_OBJECT_ALREADY_EXISTS),
    VSS_NAMED(VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER),
    VSS_NAMED(VSS_E_UNEXPECTED_PROVIDER_ERROR),
    VSS_NAMED(VSS_E_CORRUPT_XML_DOCUMENT),
    VSS_NAMED(VSS_E_INVALID_XML_DOCUMENT),
    VSS_NAMED(VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED),
    VSS_NAMED(VSS_E_FLUSH_WRITES_TIMEOUT),
    VSS_NAMED(VSS_E_HOLD_WRITES_TIMEOUT),
    VSS_NAMED(VSS_E_UNEXPECTED_WRITER_ERROR),
    VSS_NAMED(VSS_E_SNAPSHOT_SET_IN_PROGRESS),
    VSS_NAMED(VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED),
    VSS_NAMED(VSS_E_WRITER_INFRASTRUCTURE),
    VSS_NAMED(VSS_E_WRITER_NOT_RESPONDING),
    VSS_NAMED(VSS_E_WRITER_ALREADY_SUBSCRIBED),
    VSS_NAMED(VSS_E_UNSUPPORTED_CONTEXT),
    VSS_NAMED(VSS_E_VOLUME_IN_USE),
    VSS_NAMED(VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED),
    VSS_NAMED(VSS_E_INSUFFICIENT_STORAGE),
    VSS_NAMED(VSS_E_NO_SNAPSHOTS_IMPORTED),
    VSS_NAMED(VSS_E_SOME_SNAPSHOTS_NOT_IMPORTED),
    VSS_NAMED(VSS_E_REVERT_IN_PROGRESS),
    VSS_NAMED(VSS_E_REVERT_VOLUME_LOST),
    VSS_NAMED(VSS_E_REBOOT_REQUIRED),
    VSS_NAMED(VSS_E_TRANSACTION_FREEZE_TIMEOUT),
    VSS_NAMED(VSS_E_TRANSACTION_THAW_TIMEOUT),
    VSS_NAMED(VSS_E_UNSELECTED_VOLUME),
    VSS_NAMED(VSS_E_SNAPSHOT_NOT_IN_SET),
    VSS_NAMED(VSS_E_NESTED_VOLUME_LIMIT),
    VSS_NAMED(VSS_E_VOLUME_NOT_LOCAL),
    VSS_NAMED(VSS_E_NOT_SUPPORTED),
    VSS_NAMED(VSS_E_WRITERERROR_PARTIAL_FAILURE),
    VSS_NAMED(VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT),
    VSS_NAMED(VSS_E_WRITERERROR_OUTOFRESOURCES),
    VSS_NAMED(VSS_E_WRITERERROR_TIMEOUT),
    VSS_NAMED(VSS_E_WRITERERROR_RETRYABLE),
    VSS_NAMED(VSS_E_WRITERERROR_NONRETRYABLE),
    VSS_NAMED(VSS_E_WRITERERROR_RECOVERY_FAILED),
    VSS_NAMED(VSS_E_AUTORECOVERY_FAILED),
    VSS_NAMED(VSS_E_WRITER_STATUS_NOT_AVAILABLE),
};
#undef VSS_NAMED

}  // namespace

std::string HResultHex(HResult hr) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08X", static_cast<uint32_t>(hr));
  return buf;
}

std::string HResultName(HResult hr) {
  for (const NamedCode& n : kNames) {
    if (n.code == hr) return n.name;
  }
  return HResultHex(hr);
}

bool IsWriterErrorCode(HResult hr) {
  return hr == VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT ||
         hr == VSS_E_WRITERERROR_OUTOFRESOURCES ||
         hr == VSS_E_WRITERERROR_TIMEOUT || hr == VSS_E_WRITERERROR_RETRYABLE ||
         hr == VSS_E_WRITERERROR_NONRETRYABLE ||
         hr == VSS_E_WRITERERROR_RECOVERY_FAILED ||
         hr == VSS_E_WRITERERROR_PARTIAL_FAILURE;
}

VssStatus VssStatus::FromStatus(const Status& s) {
  HResult hr = VSS_E_UNEXPECTED_PROVIDER_ERROR;
  switch (s.code()) {
    case StatusCode::kOk: return VssStatus();
    case StatusCode::kNotFound: hr = VSS_E_OBJECT_NOT_FOUND; break;
    case StatusCode::kAlreadyExists: hr = VSS_E_OBJECT_ALREADY_EXISTS; break;
    case StatusCode::kNoSpace: hr = VSS_E_INSUFFICIENT_STORAGE; break;
    case StatusCode::kInvalidArgument: hr = E_INVALIDARG; break;
    case StatusCode::kFailedPrecondition: hr = VSS_E_BAD_STATE; break;
    case StatusCode::kBusy: hr = VSS_E_VOLUME_IN_USE; break;
    case StatusCode::kUnsupported: hr = VSS_E_NOT_SUPPORTED; break;
    default: break;
  }
  return VssStatus(hr, s.message());
}

Status VssStatus::ToStatus(std::string_view what) const {
  if (ok()) return OkStatus();
  StatusCode code = StatusCode::kInternal;
  if (code_ == VSS_E_OBJECT_NOT_FOUND) code = StatusCode::kNotFound;
  if (code_ == VSS_E_OBJECT_ALREADY_EXISTS) code = StatusCode::kAlreadyExists;
  if (code_ == E_INVALIDARG) code = StatusCode::kInvalidArgument;
  if (code_ == VSS_E_BAD_STATE) code = StatusCode::kFailedPrecondition;
  if (code_ == VSS_E_VOLUME_IN_USE) code = StatusCode::kBusy;
  if (code_ == VSS_E_INSUFFICIENT_STORAGE) code = StatusCode::kNoSpace;
  if (code_ == VSS_E_NOT_SUPPORTED || code_ == VSS_E_UNSUPPORTED_CONTEXT) {
    code = StatusCode::kUnsupported;
  }
  std::string message = ToString();
  return Status(code, what.empty() ? message : std::string(what) + ": " + message);
}

std::string VssStatus::ToString() const {
  std::string s = HResultName(code_);
  if (s.rfind("0x", 0) != 0) s += " (" + HResultHex(code_) + ")";
  if (!message_.empty()) s += ": " + message_;
  return s;
}

}  // namespace vss
