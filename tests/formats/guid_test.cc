#include "vss/base/guid.h"

#include <gtest/gtest.h>

#include <cctype>
#include <set>

namespace vss {
namespace {

TEST(GuidTest, Generate_SetsVersion4AndVariantAndIsUnique) {
  std::set<Guid> seen;
  for (int i = 0; i < 100; ++i) {
    Guid g = Guid::Generate();
    EXPECT_EQ(g.bytes[6] >> 4, 4);
    EXPECT_EQ(g.bytes[8] >> 6, 2);
    EXPECT_FALSE(g.IsNull());
    EXPECT_TRUE(seen.insert(g).second);
  }
}

TEST(GuidTest, ToString_IsLowerCase8_4_4_4_12AndParsesBack) {
  Guid g = Guid::Generate();
  std::string s = g.ToString();
  ASSERT_EQ(s.size(), 36u);
  EXPECT_EQ(s[8], '-');
  EXPECT_EQ(s[23], '-');
  for (char c : s) {
    EXPECT_TRUE(c == '-' || (std::isxdigit(c) && !std::isupper(c))) << s;
  }
  EXPECT_EQ(Guid::Parse(s), g);
}

TEST(GuidTest, Parse_AcceptsBracesAndUpperCase) {
  auto g = Guid::Parse("{01234567-89AB-cdef-0123-456789ABCDEF}");
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->ToString(), "01234567-89ab-cdef-0123-456789abcdef");
  EXPECT_EQ(g->bytes[0], 0x01);
  EXPECT_EQ(g->bytes[15], 0xef);
}

TEST(GuidTest, Parse_RejectsMalformedText) {
  for (const char* bad : {
           "",
           "01234567-89ab-cdef-0123-456789abcde",
           "01234567-89ab-cdef-0123-456789abcdef0",
           "0123456789ab-cdef-0123-456789abcdef-",
           "01234567-89ab-cdef-0123-456789abcdeg",
           "{01234567-89ab-cdef-0123-456789abcdef",
           "01234567-89ab-cdef-0123-456789abcdef}",
           "(01234567-89ab-cdef-0123-456789abcdef)",
           " 1234567-89ab-cdef-0123-456789abcdef",
           "01234567_89ab-cdef-0123-456789abcdef",
           "+1234567-89ab-cdef-0123-456789abcdef",
       }) {
    EXPECT_FALSE(Guid::Parse(bad).has_value()) << bad;
  }
}

TEST(GuidTest, DefaultIsNull) {
  EXPECT_TRUE(Guid().IsNull());
  EXPECT_EQ(Guid().ToString(), "00000000-0000-0000-0000-000000000000");
}

}  // namespace
}  // namespace vss
