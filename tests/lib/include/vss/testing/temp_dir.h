// TempDir: a fresh private directory for one test, removed with everything
// in it when the TempDir is destroyed. When the running test has failed the
// directory is kept instead and its path printed, so that what the test left
// (a store, an image) can be inspected.
//
// It is made under $TMPDIR (else /tmp), or on tmpfs (/dev/shm) when the
// options ask for it and the machine has one. A directory that cannot be
// made is a test failure (ADD_FAILURE), and path() is then empty.
//
// Thread safety: path() and File() may be called from any thread; one
// thread creates and destroys the object.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <system_error>

namespace vss::testing {

struct TempDirOptions {
  // Put the directory on tmpfs (/dev/shm) when there, for speed.
  bool prefer_shm = false;
};

class TempDir {
 public:
  explicit TempDir(TempDirOptions options = {}) {
    std::string base = "/tmp";
    if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') {
      base = t;
    }
    if (options.prefer_shm && std::filesystem::is_directory("/dev/shm")) {
      base = "/dev/shm";
    }
    std::string templ = base + "/vss-test-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp in " << base << " failed";
      return;
    }
    path_ = templ;
  }
  // Removes the directory, or keeps it (printing its path) when the
  // current test has failed.
  ~TempDir() {
    if (path_.empty()) return;
    if (::testing::Test::HasFailure()) {
      std::cout << "kept test directory " << path_ << std::endl;
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The directory's absolute path.
  const std::string& path() const { return path_; }
  // The path of `name` inside the directory (nothing is created).
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace vss::testing
