// ProbeImageFormat over byte arrays, and CheckRawImage over a device.

#include "vss/formats/image_probe.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "test_util.h"
#include "vss/formats/memory_device.h"

namespace vss {
namespace {

// A head of `size` zero bytes with `magic` written at `offset`.
std::vector<uint8_t> Head(std::string_view magic, size_t offset = 0,
                          size_t size = kProbeHeadBytes) {
  std::vector<uint8_t> b(size, 0);
  std::memcpy(b.data() + offset, magic.data(), magic.size());
  return b;
}

ImageFormat Probe(const std::vector<uint8_t>& head,
                  const std::vector<uint8_t>& tail = {}) {
  return ProbeImageFormat(head, tail);
}

TEST(ImageProbeTest, Qcow2Magic_IsQcow2) {
  auto h = Head(std::string_view("QFI\xfb\0\0\0\x03", 8));
  EXPECT_EQ(Probe(h), ImageFormat::kQcow2);
  h[7] = 2;
  EXPECT_EQ(Probe(h), ImageFormat::kQcow2);
}

TEST(ImageProbeTest, QcowVersion1_IsQcow) {
  EXPECT_EQ(Probe(Head(std::string_view("QFI\xfb\0\0\0\x01", 8))),
            ImageFormat::kQcow);
}

TEST(ImageProbeTest, ShortQcowMagic_StillNotRaw) {
  EXPECT_EQ(Probe(Head(std::string_view("QFI\xfb", 4), 0, 4)),
            ImageFormat::kQcow2);
}

TEST(ImageProbeTest, QedMagic_IsQed) {
  EXPECT_EQ(Probe(Head(std::string_view("QED\0", 4))), ImageFormat::kQed);
}

TEST(ImageProbeTest, VhdxSignature_IsVhdx) {
  EXPECT_EQ(Probe(Head("vhdxfile")), ImageFormat::kVhdx);
}

TEST(ImageProbeTest, VhdFooterCopyAtStart_IsVhd) {
  EXPECT_EQ(Probe(Head("conectix")), ImageFormat::kVhd);
}

TEST(ImageProbeTest, VhdFooterAtEnd_IsVhd) {
  std::vector<uint8_t> tail = Head("conectix", 0, kProbeTailBytes);
  EXPECT_EQ(Probe(Head(""), tail), ImageFormat::kVhd);
}

TEST(ImageProbeTest, CookieNotAtTheFooterStart_IsRaw) {
  std::vector<uint8_t> tail = Head("conectix", 8, kProbeTailBytes);
  EXPECT_EQ(Probe(Head(""), tail), ImageFormat::kRaw);
  // A tail shorter than a footer is no footer.
  EXPECT_EQ(Probe(Head(""), Head("conectix", 0, 100)), ImageFormat::kRaw);
}

TEST(ImageProbeTest, VmdkSparseAndDescriptor_AreVmdk) {
  EXPECT_EQ(Probe(Head("KDMV")), ImageFormat::kVmdk);
  EXPECT_EQ(Probe(Head("COWD")), ImageFormat::kVmdk);
  EXPECT_EQ(Probe(Head("# Disk DescriptorFile\nversion=1\n")),
            ImageFormat::kVmdk);
}

TEST(ImageProbeTest, VdiSignatureAt0x40_IsVdi) {
  // 0xbeda107f, little-endian, at 0x40.
  EXPECT_EQ(Probe(Head(std::string_view("\x7f\x10\xda\xbe", 4), 0x40)),
            ImageFormat::kVdi);
}

TEST(ImageProbeTest, VdiPreHeaderText_IsVdi) {
  EXPECT_EQ(Probe(Head("<<< Oracle VM VirtualBox Disk Image >>>\n")),
            ImageFormat::kVdi);
  EXPECT_EQ(Probe(Head("<<< just a shell here-string")), ImageFormat::kRaw);
}

TEST(ImageProbeTest, ZeroesMbrAndText_AreRaw) {
  EXPECT_EQ(Probe(Head("")), ImageFormat::kRaw);
  auto mbr = Head("");
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  EXPECT_EQ(Probe(mbr, Head("", 0, kProbeTailBytes)), ImageFormat::kRaw);
  EXPECT_EQ(Probe(Head("# Disk Descriptor")), ImageFormat::kRaw);
  EXPECT_EQ(Probe(Head("QFI")), ImageFormat::kRaw);
}

TEST(ImageProbeTest, EmptyAndTinyInputs_AreRaw) {
  EXPECT_EQ(Probe({}, {}), ImageFormat::kRaw);
  EXPECT_EQ(Probe({'Q'}, {'c'}), ImageFormat::kRaw);
  // The VDI signature cut short.
  EXPECT_EQ(Probe(Head(std::string_view("\x7f\x10\xda", 3), 0x40, 0x43)),
            ImageFormat::kRaw);
}

TEST(ImageProbeTest, Names) {
  EXPECT_EQ(ImageFormatName(ImageFormat::kQcow2), "qcow2");
  EXPECT_EQ(ImageFormatName(ImageFormat::kVhdx), "VHDX");
  EXPECT_EQ(ImageFormatName(ImageFormat::kRaw), "raw");
}

TEST(ImageProbeTest, CheckRawImage_RefusesQcow2NamingFileAndFormat) {
  MemoryDevice dev(1 << 20);
  VSS_ASSERT_OK(CheckRawImage(dev, "/srv/web.qcow2"));
  auto h = Head(std::string_view("QFI\xfb\0\0\0\x03", 8), 0, 8);
  VSS_ASSERT_OK(dev.Write(0, h));
  Status s = CheckRawImage(dev, "/srv/web.qcow2");
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_EQ(s.message(),
            "/srv/web.qcow2 is a qcow2 image; vss reads only raw volumes "
            "until a qcow2 driver lands");
}

TEST(ImageProbeTest, CheckRawImage_FindsVhdFooterAtTheEnd) {
  MemoryDevice dev(3 * 512 + 100);
  auto footer = Head("conectix", 0, 8);
  VSS_ASSERT_OK(dev.Write(dev.size() - 512, footer));
  EXPECT_EQ(*ProbeDevice(dev), ImageFormat::kVhd);
  EXPECT_EQ(CheckRawImage(dev, "d.vhd").code(), StatusCode::kUnsupported);
}

TEST(ImageProbeTest, ProbeDevice_SmallDevice) {
  MemoryDevice dev(100);
  EXPECT_EQ(*ProbeDevice(dev), ImageFormat::kRaw);
  VSS_ASSERT_OK(dev.Write(0, Head("KDMV", 0, 4)));
  EXPECT_EQ(*ProbeDevice(dev), ImageFormat::kVmdk);
}

}  // namespace
}  // namespace vss
