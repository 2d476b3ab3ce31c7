#include "opened_path.h"

#include <unistd.h>

namespace vss {

Status CheckOpenedByRealPath(int fd, const std::string& path) {
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  char buf[4096];
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return OkStatus();
  std::string opened(buf, static_cast<size_t>(n));
  if (opened == path) return OkStatus();
  return FailedPreconditionError(path + " leads through a symbolic link to " +
                                 opened +
                                 "; vss opens images only by their real path");
}

}  // namespace vss
