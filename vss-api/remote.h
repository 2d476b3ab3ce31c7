// Private: the client side of the vssd protocol (PROTOCOL.md).
#pragma once

#include <memory>
#include <string>

#include "vss/api/service.h"

namespace vss::internal {

// A Service that forwards to the vssd listening on `socket_path`.
// E_UNEXPECTED when nothing accepts there (the caller may fall back to
// in-process); E_ACCESSDENIED when the daemon refuses this user; other
// codes for a daemon that answers wrongly.
VssStatusOr<std::unique_ptr<Service>> ConnectToDaemon(const std::string& store_dir,
                                                      const std::string& socket_path);

}  // namespace vss::internal
