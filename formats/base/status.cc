#include "vss/base/status.h"

#include <cstring>

namespace vss {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kAlreadyExists: return "already exists";
    case StatusCode::kFailedPrecondition: return "failed precondition";
    case StatusCode::kBusy: return "busy";
    case StatusCode::kIoError: return "io error";
    case StatusCode::kCorruption: return "corruption";
    case StatusCode::kNoSpace: return "no space";
    case StatusCode::kOutOfRange: return "out of range";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  if (message_.empty()) return std::string(StatusCodeName(code_));
  return message_;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_);
}

Status ErrnoError(int err, std::string_view what) {
  std::string msg = std::string(what) + ": " + std::strerror(err);
  switch (err) {
    case ENOENT: return NotFoundError(std::move(msg));
    case ENOSPC:
    case EDQUOT: return NoSpaceError(std::move(msg));
    case EEXIST: return AlreadyExistsError(std::move(msg));
    case EAGAIN:
    case EBUSY: return BusyError(std::move(msg));
    case EINVAL: return InvalidArgumentError(std::move(msg));
    default: return IoError(std::move(msg));
  }
}

}  // namespace vss
