// DriverRegistry and the raw driver: lookup by name, the errors for formats
// without a driver and for unknown names, probing files (raw picked for a
// plain file, other image formats refused with the probe's one-line
// message), and what the raw driver opens, creates, checks and describes.
// The nbd driver's URI parsing is here; its open against a server is in
// nbd_device_test.cc.
#include "vss/formats/registry.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "vss/formats/nbd_driver.h"
#include "vss/formats/raw_driver.h"

namespace vss {
namespace {

using testing::Pattern;
using testing::TempDir;

constexpr uint64_t kSize = 1 << 20;

const DriverRegistry& Registry() { return DriverRegistry::Default(); }

// Writes `bytes` at the start of a new file of kSize bytes.
void MakeFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  std::filesystem::resize_file(path, kSize);
}

TEST(DriverRegistry, Default_ListsItsDriversByName) {
  std::vector<std::string> names;
  for (const ImageDriver* d : Registry().List()) {
    names.emplace_back(d->name());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"nbd", "qcow2", "raw"}));
}

TEST(DriverRegistry, Find_ReturnsTheDriverOfThatName) {
  auto raw = Registry().Find("raw");
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  EXPECT_EQ((*raw)->name(), "raw");
  auto nbd = Registry().Find("nbd");
  ASSERT_TRUE(nbd.ok()) << nbd.status().ToString();
  EXPECT_EQ((*nbd)->name(), "nbd");
}

TEST(DriverRegistry, Find_KnownFormatWithoutDriverIsUnsupportedNamingIt) {
  for (std::string_view name : {"vhdx", "vhd", "vmdk", "vdi"}) {
    auto d = Registry().Find(name);
    ASSERT_FALSE(d.ok()) << name;
    EXPECT_EQ(d.status().code(), StatusCode::kUnsupported) << name;
    EXPECT_EQ(d.status().message(), "vss has no " + std::string(name) +
                                        " driver yet; formats: nbd, qcow2, raw");
  }
}

TEST(DriverRegistry, Find_UnknownNameIsInvalidArgument) {
  auto d = Registry().Find("floppy");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(d.status().message(),
            "unknown image format 'floppy'; formats: nbd, qcow2, raw");
  // Names are lower case, as drivers report them.
  EXPECT_EQ(Registry().Find("RAW").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(DriverRegistry, Register_SecondDriverOfOneNameIsAlreadyExists) {
  DriverRegistry r;
  VSS_ASSERT_OK(r.Register(std::make_unique<RawDriver>()));
  EXPECT_EQ(r.Register(std::make_unique<RawDriver>()).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(r.List().size(), 1u);
}

TEST(DriverRegistry, ProbeFile_PlainFileIsRaw) {
  TempDir dir;
  std::string path = dir.File("disk.img");
  MakeFile(path, "just some bytes");
  auto d = Registry().ProbeFile(path);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ((*d)->name(), "raw");
}

TEST(DriverRegistry, ProbeFile_RefusesImageFormatsWithTheProbesMessage) {
  TempDir dir;
  struct Case {
    const char* file;
    std::string_view head;
    const char* format;
  } cases[] = {
      {"dc.vhdx", "vhdxfile", "VHDX"},
      {"app.vmdk", "KDMV", "VMDK"},
  };
  for (const Case& c : cases) {
    std::string path = dir.File(c.file);
    MakeFile(path, c.head);
    auto d = Registry().ProbeFile(path);
    ASSERT_FALSE(d.ok()) << c.file;
    EXPECT_EQ(d.status().code(), StatusCode::kUnsupported);
    EXPECT_EQ(d.status().message(),
              path + " is a " + c.format + " image; vss reads only raw " +
                  "volumes until a " + c.format + " driver lands");
  }
}

TEST(DriverRegistry, ProbeFile_MissingFileIsNotFound) {
  TempDir dir;
  EXPECT_EQ(Registry().ProbeFile(dir.File("none.img")).status().code(),
            StatusCode::kNotFound);
}

TEST(DriverRegistry, Probe_WithoutRawDriverRefusesPlainBytes) {
  DriverRegistry empty;
  auto d = empty.Probe({}, {}, "/x.img");
  EXPECT_EQ(d.status().code(), StatusCode::kUnsupported);
}

TEST(RawDriver, CreateThenOpenReadsWhatWasWritten) {
  TempDir dir;
  std::string path = dir.File("new.img");
  RawDriver raw;
  auto created = raw.Create({.path = path, .size = kSize});
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ((*created)->size(), kSize);
  std::vector<uint8_t> data = Pattern(4096, 3);
  VSS_ASSERT_OK((*created)->Write(8192, data));
  VSS_ASSERT_OK((*created)->Flush());
  created->reset();

  auto opened = raw.Open({.path = path, .writable = false});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_TRUE((*opened)->read_only());
  std::vector<uint8_t> back(data.size());
  VSS_ASSERT_OK((*opened)->Read(8192, back));
  EXPECT_EQ(back, data);
  EXPECT_EQ(
      std::filesystem::status(path).permissions() & std::filesystem::perms::all,
      std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST(RawDriver, CreateOverExistingFileIsAlreadyExistsAndKeepsIt) {
  TempDir dir;
  std::string path = dir.File("old.img");
  MakeFile(path, "keep me");
  EXPECT_EQ(RawDriver().Create({.path = path, .size = kSize}).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(std::filesystem::file_size(path), kSize);
}

TEST(RawDriver, UnknownOptionIsInvalidArgumentNamingIt) {
  TempDir dir;
  std::string path = dir.File("d.img");
  auto d = RawDriver().Create(
      {.path = path, .size = kSize, .options = {{"cluster_size", "64K"}}});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(d.status().message(),
            "the raw driver has no option 'cluster_size'");
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(RawDriver, OpenRefusesAnotherImageFormat) {
  TempDir dir;
  std::string path = dir.File("web.qcow2");
  MakeFile(path, std::string_view("QFI\xfb\0\0\0\x03", 8));
  auto d = RawDriver().Open({.path = path});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(RawDriver().Info(path).status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(RawDriver().Check(path).status().code(), StatusCode::kUnsupported);
}

TEST(RawDriver, OpenWithRealPathRefusesADirectoryLink) {
  TempDir dir;
  std::filesystem::create_directory(dir.File("real"));
  std::string real = dir.File("real/d.img");
  MakeFile(real, "data");
  std::filesystem::create_directory_symlink(dir.File("real"), dir.File("link"));
  std::string via_link = dir.File("link/d.img");
  EXPECT_TRUE(RawDriver().Open({.path = via_link}).ok());
  auto d = RawDriver().Open({.path = via_link, .require_real_path = true});
  EXPECT_EQ(d.status().code(), StatusCode::kFailedPrecondition);
  auto ok = RawDriver().Open({.path = real, .require_real_path = true});
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
}

TEST(RawDriver, InfoReportsSizeAndAllocatedBytes) {
  TempDir dir;
  std::string path = dir.File("d.img");
  auto dev = RawDriver().Create({.path = path, .size = kSize});
  ASSERT_TRUE(dev.ok());
  VSS_ASSERT_OK((*dev)->Write(0, Pattern(64 << 10, 1)));
  VSS_ASSERT_OK((*dev)->Flush());
  auto info = RawDriver().Info(path);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->format, "raw");
  EXPECT_EQ(info->virtual_size, kSize);
  // The written 64 KiB take space; a sparse file takes little more.
  EXPECT_GE(info->allocated_bytes, uint64_t{64} << 10);
  EXPECT_LT(info->allocated_bytes, kSize);
  EXPECT_EQ(info->backing_file, "");
}

TEST(RawDriver, CheckIsCleanAndCountsAllocatedExtents) {
  TempDir dir;
  std::string path = dir.File("d.img");
  auto dev = RawDriver().Create({.path = path, .size = kSize});
  ASSERT_TRUE(dev.ok());
  VSS_ASSERT_OK((*dev)->Write(0, Pattern(4096, 1)));
  VSS_ASSERT_OK((*dev)->Write(kSize / 2, Pattern(4096, 2)));
  VSS_ASSERT_OK((*dev)->Flush());
  auto check = RawDriver().Check(path);
  ASSERT_TRUE(check.ok()) << check.status().ToString();
  EXPECT_TRUE(check->clean());
  // Two separate data ranges, unless the file system cannot report holes.
  auto extents = (*dev)->Extents(0, kSize);
  ASSERT_TRUE(extents.ok());
  uint64_t data = 0;
  for (const Extent& e : *extents) data += e.allocated ? 1 : 0;
  EXPECT_EQ(check->checked_units, data);
  EXPECT_GE(data, 1u);
}

TEST(NbdDriver, ParseTarget_UriGivesSocketAndExport) {
  auto t = NbdDriver::ParseTarget(
      {.path = "nbd+unix:///live/disk?socket=/run/vss/nbd.sock"});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->socket, "/run/vss/nbd.sock");
  EXPECT_EQ(t->export_name, "live/disk");
}

TEST(NbdDriver, ParseTarget_SocketPathWithExportOption) {
  auto t = NbdDriver::ParseTarget(
      {.path = "/s/nbd.sock", .options = {{"export", "shadow/1a2b"}}});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->socket, "/s/nbd.sock");
  EXPECT_EQ(t->export_name, "shadow/1a2b");
  auto plain = NbdDriver::ParseTarget({.path = "/s/nbd.sock"});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->export_name, "");
}

TEST(NbdDriver, ParseTarget_RefusesWhatItCannotReach) {
  for (const char* path :
       {"nbd://host:10809/disk", "nbd+unix://host/disk?socket=/s",
        "nbd+unix:///disk", "nbd+unix:///disk?tls=on"}) {
    EXPECT_EQ(NbdDriver::ParseTarget({.path = path}).status().code(),
              StatusCode::kInvalidArgument)
        << path;
  }
  EXPECT_EQ(NbdDriver::ParseTarget({.path = "/s", .options = {{"exprt", "x"}}})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(NbdDriver::ParseTarget({.path = "nbd+unix:///d?socket=/s",
                                    .options = {{"export", "x"}}})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST(NbdDriver, CannotCreateCheckOrDescribe) {
  NbdDriver nbd;
  EXPECT_EQ(nbd.Create({.path = "/s", .size = kSize}).status().code(),
            StatusCode::kUnsupported);
  EXPECT_EQ(nbd.Check("/s").status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(nbd.Info("/s").status().code(), StatusCode::kUnsupported);
  EXPECT_FALSE(nbd.Probe({}, {}));
}

}  // namespace
}  // namespace vss
