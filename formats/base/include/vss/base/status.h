// Status and StatusOr<T>: how every fallible call in vss reports failure.
//
// A Status is a code from a small fixed set plus a one-line message that
// names the thing that is wrong (which file, which volume, which chunk).
// Foreign error spaces (errno, SQLite, zstd) are translated into a Status
// once, at the edge where they arise. Statuses are cheap values; they are
// [[nodiscard]] so that an ignored error is a compile warning.
//
// Picking a code:
//   kInvalidArgument    the caller passed something wrong (size, offset, name)
//   kNotFound           an id, name or file that does not exist
//   kAlreadyExists      creating something that is already there
//   kFailedPrecondition the call is valid but not in the current state
//   kBusy               someone else holds a lock on the object
//   kIoError            the OS failed an I/O, or a read hit damaged data
//   kCorruption         data read from disk failed a check (magic, checksum)
//   kNoSpace            a file system or a configured limit is full
//   kOutOfRange         an offset or length past the end of a device
//   kUnsupported        a feature this build or format does not have
//   kInternal           a broken invariant; a bug
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace vss {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kBusy,
  kIoError,
  kCorruption,
  kNoSpace,
  kOutOfRange,
  kUnsupported,
  kInternal,
};

// Returns a stable lower-case name such as "io error".
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "ok", or the message (the message already names what is wrong).
  std::string ToString() const;

  // Returns a copy whose message is "context: message".
  Status WithContext(std::string_view context) const;

  // Explicitly drops a status whose failure does not matter here.
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
inline Status InvalidArgumentError(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExistsError(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status FailedPreconditionError(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status BusyError(std::string m) { return {StatusCode::kBusy, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status CorruptionError(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status NoSpaceError(std::string m) { return {StatusCode::kNoSpace, std::move(m)}; }
inline Status OutOfRangeError(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status UnsupportedError(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status InternalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Translates an errno value: ENOENT -> kNotFound, ENOSPC/EDQUOT -> kNoSpace,
// EEXIST -> kAlreadyExists, EAGAIN/EWOULDBLOCK/EBUSY -> kBusy,
// EINVAL -> kInvalidArgument, everything else -> kIoError. The message is
// "what: strerror(err)".
Status ErrnoError(int err, std::string_view what);

// A value or the error explaining why there is none. The error is a Status,
// or another status type of the same shape (a default-constructed one is OK;
// ok(), copyable), as vss-api's VssStatus which carries an HResult.
template <typename T, typename E = Status>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const E& s) : v_(s) {}  // NOLINT: implicit by design
  StatusOr(E&& s) : v_(std::move(s)) {}  // NOLINT
  StatusOr(const T& v) : v_(v) {}  // NOLINT
  StatusOr(T&& v) : v_(std::move(v)) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  E status() const { return ok() ? E() : std::get<E>(v_); }
  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<E, T> v_;
};

}  // namespace vss

#define VSS_STATUS_CONCAT_INNER_(a, b) a##b
#define VSS_STATUS_CONCAT_(a, b) VSS_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define VSS_RETURN_IF_ERROR(expr)             \
  do {                                        \
    ::vss::Status vss_status_ = (expr);       \
    if (!vss_status_.ok()) return vss_status_; \
  } while (0)

// `lhs = value of expr` (a StatusOr), or returns its Status.
#define VSS_ASSIGN_OR_RETURN(lhs, expr) \
  VSS_ASSIGN_OR_RETURN_IMPL_(VSS_STATUS_CONCAT_(vss_statusor_, __LINE__), lhs, expr)
#define VSS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
