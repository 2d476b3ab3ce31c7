#include "store_access.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace vss::vssd {
namespace {

std::string Octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// "group-writable", "world-writable", "group- and world-writable" or "".
std::string WritableByOthers(mode_t mode) {
  const bool group = (mode & S_IWGRP) != 0, world = (mode & S_IWOTH) != 0;
  if (group && world) return "group- and world-writable";
  if (group) return "group-writable";
  if (world) return "world-writable";
  return "";
}

}  // namespace

StatusOr<StoreDirectory> CheckStoreDirectory(const std::string& dir) {
  std::unique_ptr<char, decltype(&std::free)> real(
      ::realpath(dir.c_str(), nullptr), &std::free);
  if (!real) return ErrnoError(errno, "store " + dir);
  StoreDirectory out;
  out.path = real.get();
  struct stat st;
  if (::lstat(out.path.c_str(), &st) != 0)
    return ErrnoError(errno, "store " + out.path);
  if (!S_ISDIR(st.st_mode)) {
    return FailedPreconditionError("store " + out.path + ": not a directory");
  }
  if (std::string w = WritableByOthers(st.st_mode); !w.empty()) {
    return FailedPreconditionError(
        "store " + out.path + ": " + w + " (mode " + Octal(st.st_mode) +
        "), so others could rewrite its catalog; refused "
        "(chmod go-w " +
        out.path + ")");
  }
  out.owner = st.st_uid;
  // The directories above: whoever may rename an entry of one of them could
  // put another store in this one's place after these checks.
  std::string a = out.path;
  while (a != "/") {
    const size_t slash = a.rfind('/');
    a = slash == 0 ? "/" : a.substr(0, slash);
    if (::lstat(a.c_str(), &st) != 0)
      return ErrnoError(errno, "store " + out.path + ": " + a);
    if (!S_ISDIR(st.st_mode)) {
      return FailedPreconditionError("store " + out.path + ": " + a +
                                     " changed while it was checked");
    }
    if (st.st_uid != 0 && st.st_uid != out.owner) {
      return FailedPreconditionError("store " + out.path + ": the directory " +
                                     a + " above it belongs to uid " +
                                     std::to_string(st.st_uid) +
                                     ", who could replace the store; refused");
    }
    std::string w = WritableByOthers(st.st_mode);
    if (!w.empty() && (st.st_mode & S_ISVTX) == 0) {
      return FailedPreconditionError(
          "store " + out.path + ": the directory " + a + " above it is " + w +
          " (mode " + Octal(st.st_mode) +
          ") and not sticky, so others could replace the "
          "store; refused");
    }
  }
  return out;
}

Status CheckStoreFile(const std::string& path, uid_t owner) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return ErrnoError(errno, path);
  if (S_ISLNK(st.st_mode)) {
    return FailedPreconditionError(
        path + ": a symlink; a store's files are never followed");
  }
  if (!S_ISREG(st.st_mode))
    return FailedPreconditionError(path + ": not a regular file");
  if (st.st_uid != owner) {
    return FailedPreconditionError(path + ": belongs to uid " +
                                   std::to_string(st.st_uid) +
                                   ", not to the store's owner (uid " +
                                   std::to_string(owner) + "); refused");
  }
  if (std::string w = WritableByOthers(st.st_mode); !w.empty()) {
    return FailedPreconditionError(
        path + ": " + w + " (mode " + Octal(st.st_mode) +
        "), so others could rewrite it; refused (chmod go-w " + path + ")");
  }
  return OkStatus();
}

Status BecomeUser(uid_t uid, std::string* who) {
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<size_t>(size) : 16384);
  passwd pw{};
  passwd* found = nullptr;
  int err;
  while ((err = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)) ==
         ERANGE) {
    buf.resize(buf.size() * 2);
  }
  const std::string uid_text = "uid " + std::to_string(uid);
  if (found == nullptr) {
    return FailedPreconditionError(
        uid_text + " has no passwd entry" +
        (err != 0 ? std::string(" (") + std::strerror(err) + ")" : "") +
        ", so its groups are unknown");
  }
  const std::string name = pw.pw_name;
  const gid_t gid = pw.pw_gid;
  int count = 0;
  ::getgrouplist(name.c_str(), gid, nullptr,
                 &count);  // -1: `count` says how many
  std::vector<gid_t> groups(static_cast<size_t>(count > 0 ? count : 1));
  count = static_cast<int>(groups.size());
  if (::getgrouplist(name.c_str(), gid, groups.data(), &count) < 0) {
    return FailedPreconditionError("the groups of " + name + " (" + uid_text +
                                   ") changed while they were read");
  }
  groups.resize(static_cast<size_t>(count));
  // Groups first, then the gid, then the uid: once the uid is not root the
  // others can no longer be changed.
  if (::setgroups(groups.size(), groups.data()) != 0) {
    const int e = errno;
    if (e == EPERM) {
      return FailedPreconditionError("becoming " + name + " (" + uid_text +
                                     ") is not permitted to uid " +
                                     std::to_string(::geteuid()));
    }
    return ErrnoError(e, "setgroups for " + name);
  }
  if (::setresgid(gid, gid, gid) != 0)
    return ErrnoError(errno, "setresgid for " + name);
  if (::setresuid(uid, uid, uid) != 0)
    return ErrnoError(errno, "setresuid for " + name);
  uid_t r, e, s;
  gid_t rg, eg, sg;
  if (::getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid ||
      ::getresgid(&rg, &eg, &sg) != 0 || rg != gid || eg != gid || sg != gid) {
    return InternalError("becoming " + name +
                         ": the credentials did not change");
  }
  if (uid != 0 && ::setuid(0) == 0) {
    return InternalError("becoming " + name + ": root could be regained");
  }
  *who = name + " (" + uid_text + ")";
  return OkStatus();
}

}  // namespace vss::vssd
