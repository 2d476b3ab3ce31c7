// Images the qcow2 driver refuses: each with one line naming the file and
// the reason, and no byte of any file changed.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "qcow2_test_util.h"
#include "vss/formats/registry.h"
#include "vss/testing/status_matchers.h"
#include "vss/testing/temp_dir.h"

namespace vss {
namespace {

using qcow2_test::MustRun;
using qcow2_test::ReadWholeFile;
using qcow2_test::WriteWholeFile;
using testing::TempDir;

const ImageDriver& Qcow2() { return **DriverRegistry::Default().Find("qcow2"); }

// Opens `path` (writable or not), expects `code` with a message containing
// `path` and `why`, and the file unchanged.
void ExpectRefused(const std::string& path, bool writable, StatusCode code,
                   const std::string& why) {
  const std::vector<uint8_t> before = ReadWholeFile(path);
  auto dev = Qcow2().Open({.path = path, .writable = writable});
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.status().code(), code) << dev.status().ToString();
  const std::string message = dev.status().ToString();
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find(why), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_TRUE(ReadWholeFile(path) == before);
}

// Sets bits of the 64-bit header field at `offset`.
void SetHeaderBits(const std::string& path, size_t offset, uint64_t bits) {
  std::vector<uint8_t> bytes = ReadWholeFile(path);
  for (int i = 0; i < 8; ++i)
    bytes[offset + i] |= static_cast<uint8_t>(bits >> (56 - 8 * i));
  WriteWholeFile(path, bytes);
}

class Qcow2RefusalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!qcow2_test::HaveQemuImg()) GTEST_SKIP() << "qemu-img is not installed";
    MustRun("qemu-img create -q -f qcow2 " + image_ + " 1M");
  }
  TempDir dir_;
  std::string image_ = dir_.File("disk.qcow2");
};

TEST_F(Qcow2RefusalTest, EncryptedImageIsRefused) {
  const std::string luks = dir_.File("luks.qcow2");
  MustRun(
      "qemu-img create -q -f qcow2 --object secret,id=sec0,data=pw "
      "-o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 " +
      luks + " 1M");
  ExpectRefused(luks, false, StatusCode::kUnsupported, "encryption");
  ExpectRefused(luks, true, StatusCode::kUnsupported, "encryption");
}

TEST_F(Qcow2RefusalTest, UnknownIncompatibleBitIsRefused) {
  SetHeaderBits(image_, 72, 1ull << 40);
  ExpectRefused(image_, false, StatusCode::kUnsupported,
                "incompatible feature");
}

TEST_F(Qcow2RefusalTest, CorruptImageOpensReadOnlyOnly) {
  SetHeaderBits(image_, 72, 1ull << 1);
  ExpectRefused(image_, true, StatusCode::kUnsupported, "corrupt");
  auto dev = Qcow2().Open({.path = image_, .writable = false});
  EXPECT_THAT(dev, testing::IsOk());
}

TEST_F(Qcow2RefusalTest, DirtyImageOpensReadOnlyOnly) {
  SetHeaderBits(image_, 72, 1ull << 0);
  ExpectRefused(image_, true, StatusCode::kUnsupported, "dirty");
  auto dev = Qcow2().Open({.path = image_, .writable = false});
  EXPECT_THAT(dev, testing::IsOk());
}

TEST_F(Qcow2RefusalTest, BackingLoopIsRefusedNamingTheChain) {
  MustRun("cd " + dir_.path() +
          " && qemu-img create -q -f qcow2 a.qcow2 1M"
          " && qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2"
          " && qemu-img rebase -u -f qcow2 -b b.qcow2 -F qcow2 a.qcow2");
  ExpectRefused(dir_.File("a.qcow2"), true, StatusCode::kCorruption, "loop");
  const std::vector<uint8_t> b = ReadWholeFile(dir_.File("b.qcow2"));
  ExpectRefused(dir_.File("b.qcow2"), false, StatusCode::kCorruption, "loop");
}

TEST_F(Qcow2RefusalTest, MissingBackingFileIsRefusedNamingIt) {
  MustRun(
      "cd " + dir_.path() +
      " && qemu-img create -q -f qcow2 -u -b gone.raw -F raw child.qcow2 1M");
  ExpectRefused(dir_.File("child.qcow2"), true, StatusCode::kNotFound,
                "gone.raw");
  // Described all the same, naming the missing file.
  auto info = Qcow2().Info(dir_.File("child.qcow2"));
  ASSERT_THAT(info, testing::IsOk());
  EXPECT_EQ(info->backing_file, "gone.raw");
}

TEST_F(Qcow2RefusalTest, UnknownOptionIsRefused) {
  auto dev = Qcow2().Open({.path = image_, .options = {{"cache_sise", "1"}}});
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dev.status().ToString().find("cache_sise"), std::string::npos);
  auto made = Qcow2().Create({.path = dir_.File("x.qcow2"),
                              .size = 1 << 20,
                              .options = {{"cluster_size", "3000"}}});
  EXPECT_FALSE(made.ok());
  EXPECT_FALSE(std::ifstream(dir_.File("x.qcow2")).good());
}

TEST_F(Qcow2RefusalTest, ReadOnlyOpenWritesNoByte) {
  const std::vector<uint8_t> before = ReadWholeFile(image_);
  {
    auto dev = Qcow2().Open({.path = image_, .writable = false});
    ASSERT_THAT(dev, testing::IsOk());
    std::vector<uint8_t> buf(4096);
    EXPECT_THAT((*dev)->Read(0, buf), testing::IsOk());
    EXPECT_THAT((*dev)->Flush(), testing::IsOk());
    EXPECT_THAT((*dev)->Write(0, buf),
                testing::StatusIs(StatusCode::kFailedPrecondition));
  }
  EXPECT_TRUE(ReadWholeFile(image_) == before);
}

TEST_F(Qcow2RefusalTest, RegistryProbesQcow2Files) {
  auto driver = DriverRegistry::Default().ProbeFile(image_);
  ASSERT_THAT(driver, testing::IsOk());
  EXPECT_EQ((*driver)->name(), "qcow2");
}

}  // namespace
}  // namespace vss
