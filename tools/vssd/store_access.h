// Store access: whom vssd acts for, and becoming him.
//
// A store belongs to the owner of its directory, and vssd acts for that
// owner with no more rights than he has (DESIGN.md rule 10): the catalog
// names image files, diff-area directories and journaled work, and the
// owner can write any of it, so whatever vssd does with those paths must be
// what the owner could do himself. Hence, before anything of the store is
// opened:
//   - CheckStoreDirectory() refuses a store that someone other than root
//     and its owner could change: the directory must not be group- or
//     world-writable, and no directory above it may let another user
//     replace it (owned by root or the owner, writable by no one else
//     unless sticky, as /tmp is);
//   - when vssd runs as another user (typically root), BecomeUser() makes
//     the process the store's owner for good (his groups, gid and uid,
//     real, effective and saved), so every file is opened with his rights;
//   - CheckStoreFile() refuses a catalog that is a symlink, belongs to
//     someone else or is writable by others.
//
// Thread safety: plain functions. BecomeUser() must run while the process
// has a single thread (the credentials of other threads would not change).
#pragma once

#include <sys/types.h>

#include <string>

#include "vss/base/status.h"

namespace vss::vssd {

struct StoreDirectory {
  std::string path;  // `dir` with every symlink resolved; use this one
  uid_t owner = 0;
};

// Checks the store directory `dir` (see above). kNotFound if it does not
// exist, kFailedPrecondition naming the path at fault otherwise.
[[nodiscard]] StatusOr<StoreDirectory> CheckStoreDirectory(
    const std::string& dir);

// Checks the store file `path` before it is opened: a regular file, not a
// symlink, owned by `owner`, neither group- nor world-writable. kNotFound
// if it does not exist, kFailedPrecondition naming it otherwise.
[[nodiscard]] Status CheckStoreFile(const std::string& path, uid_t owner);

// Makes this process user `uid` for good: the supplementary groups of his
// passwd entry, his primary group, then the uid (real, effective and
// saved), and checks that root cannot be regained. On success `who` is
// "nobody (uid 65534)". kFailedPrecondition when this process may not
// change its user (it is not root) or `uid` has no passwd entry (its groups
// are unknown); the process is unchanged then unless a later step failed,
// in which case the caller must exit.
// REQUIRES: the process has one thread.
[[nodiscard]] Status BecomeUser(uid_t uid, std::string* who);

}  // namespace vss::vssd
