// Helpers of the qcow2 tests: running qemu-img / qemu-io, reading files,
// and a walk of an image's refcounts against its references.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "vss/base/status.h"

namespace vss::qcow2_test {

// Runs a shell command; returns its exit status and fills `out` with its
// standard output and error.
inline int Run(const std::string& command, std::string* out = nullptr) {
  std::string text;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  int rc = pclose(p);
  if (out) *out = text;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline bool HaveQemuImg() { return Run("qemu-img --version") == 0; }

#define VSS_REQUIRE_QEMU_IMG()                                 \
  if (!::vss::qcow2_test::HaveQemuImg()) {                     \
    GTEST_SKIP() << "qemu-img is not installed; test skipped"; \
  }

// Runs `command`, failing the test (with its output) if it exits non-zero.
inline void MustRun(const std::string& command) {
  std::string out;
  int rc = Run(command, &out);
  ASSERT_EQ(rc, 0) << command << "\n" << out;
}

inline std::vector<uint8_t> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void WriteWholeFile(const std::string& path,
                           const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// `qemu-img check` reports neither errors nor leaks.
inline void ExpectCleanCheck(const std::string& path) {
  std::string out;
  int rc = Run("qemu-img check " + path, &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("No errors were found"), std::string::npos) << out;
  EXPECT_EQ(out.find("leaked"), std::string::npos) << out;
}

}  // namespace vss::qcow2_test
