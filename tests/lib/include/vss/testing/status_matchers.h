// Assertions and gMock matchers for Status and StatusOr<T>.
//
//   VSS_ASSERT_OK(expr);    VSS_EXPECT_OK(expr);   // expr: Status or StatusOr
//   VSS_ASSERT_OK_AND_ASSIGN(auto dev, RawImage::Open(path));
//   EXPECT_THAT(dev->Read(kEnd, buf), StatusIs(StatusCode::kOutOfRange));
//   EXPECT_THAT(Open(bad), StatusIs(StatusCode::kCorruption,
//                                   HasSubstr("checksum")));
//   EXPECT_THAT(store->ResolveVolume("a"), IsOk());
//
// A failure prints the expression and the status's code and message.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <utility>

#include "vss/base/status.h"

namespace vss::testing {
namespace matchers_internal {

inline const Status& GetStatus(const Status& s) { return s; }
template <typename T>
Status GetStatus(const StatusOr<T>& s) {
  return s.status();
}

// "<code name>: <message>", or "ok".
inline std::string Describe(const Status& s) {
  if (s.ok()) return "ok";
  return std::string(StatusCodeName(s.code())) + ": " + s.message();
}

class IsOkImpl {
 public:
  template <typename T>
  bool MatchAndExplain(const T& value,
                       ::testing::MatchResultListener* listener) const {
    const Status s = GetStatus(value);
    if (!s.ok()) *listener << "which is " << Describe(s);
    return s.ok();
  }
  void DescribeTo(std::ostream* os) const { *os << "is OK"; }
  void DescribeNegationTo(std::ostream* os) const { *os << "is not OK"; }
};

class StatusIsImpl {
 public:
  StatusIsImpl(StatusCode code, ::testing::Matcher<const std::string&> message)
      : code_(code), message_(std::move(message)) {}

  template <typename T>
  bool MatchAndExplain(const T& value,
                       ::testing::MatchResultListener* listener) const {
    const Status s = GetStatus(value);
    *listener << "which is " << Describe(s);
    if (s.code() != code_) return false;
    ::testing::StringMatchResultListener inner;
    if (message_.MatchAndExplain(s.message(), &inner)) return true;
    if (!inner.str().empty()) *listener << ", whose message " << inner.str();
    return false;
  }
  void DescribeTo(std::ostream* os) const {
    *os << "has code " << StatusCodeName(code_) << " and a message that ";
    message_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "has not both code " << StatusCodeName(code_)
        << " and a message that ";
    message_.DescribeTo(os);
  }

 private:
  StatusCode code_;
  ::testing::Matcher<const std::string&> message_;
};

}  // namespace matchers_internal

// Matches an OK Status, or a StatusOr holding a value.
inline ::testing::PolymorphicMatcher<matchers_internal::IsOkImpl> IsOk() {
  return ::testing::MakePolymorphicMatcher(matchers_internal::IsOkImpl());
}

// Matches a Status (or a StatusOr's status) with code `code` and, when
// given, a message matched by `message` (e.g. HasSubstr("chunk 3")).
template <typename MessageMatcher>
::testing::PolymorphicMatcher<matchers_internal::StatusIsImpl> StatusIs(
    StatusCode code, MessageMatcher&& message) {
  return ::testing::MakePolymorphicMatcher(matchers_internal::StatusIsImpl(
      code, ::testing::MatcherCast<const std::string&>(
                std::forward<MessageMatcher>(message))));
}
inline ::testing::PolymorphicMatcher<matchers_internal::StatusIsImpl> StatusIs(
    StatusCode code) {
  return StatusIs(code, ::testing::_);
}

}  // namespace vss::testing

// A fatal failure unless `expr` (a Status or StatusOr) is OK.
#define VSS_ASSERT_OK(expr)                                         \
  do {                                                              \
    const ::vss::Status vss_s_ =                                    \
        ::vss::testing::matchers_internal::GetStatus(expr);         \
    ASSERT_TRUE(vss_s_.ok()) << #expr << ": " << vss_s_.ToString(); \
  } while (0)

// A non-fatal failure unless `expr` (a Status or StatusOr) is OK.
#define VSS_EXPECT_OK(expr)                                         \
  do {                                                              \
    const ::vss::Status vss_s_ =                                    \
        ::vss::testing::matchers_internal::GetStatus(expr);         \
    EXPECT_TRUE(vss_s_.ok()) << #expr << ": " << vss_s_.ToString(); \
  } while (0)

// `lhs = value of expr` (a StatusOr), or a fatal test failure. `lhs` may
// declare a variable (`auto x`); usable only in functions returning void.
#define VSS_ASSERT_OK_AND_ASSIGN(lhs, expr)                                 \
  VSS_ASSERT_OK_AND_ASSIGN_IMPL_(VSS_STATUS_CONCAT_(vss_t_, __LINE__), lhs, \
                                 expr)
#define VSS_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr)               \
  auto tmp = (expr);                                                 \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status().ToString(); \
  lhs = std::move(tmp).value()
