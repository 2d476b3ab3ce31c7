// Private helper of the formats library's file drivers: whether an opened
// descriptor is the file its path names (rule 10 of DESIGN.md).
#pragma once

#include <string>

#include "vss/base/status.h"

namespace vss {

// An opened image must be the file its path names, not one reached through
// a symbolic link in a directory of the path (O_NOFOLLOW guards only the
// last component). The kernel's name for the descriptor `fd` says which
// file was opened: kFailedPrecondition naming both when it is not `path`.
// Where /proc is not mounted the check is skipped (OK).
Status CheckOpenedByRealPath(int fd, const std::string& path);

}  // namespace vss
