// NbdDriver: the "nbd" image driver, an export of an NBD server reached over
// a Unix socket (nbd_device.h), such as vssd's live and shadow exports.
//
// Its "path" is either an NBD URI of the Unix-socket form,
//   nbd+unix:///EXPORT?socket=SOCKET
// (EXPORT may contain '/', e.g. "live/disk"; no percent-decoding is done),
// or the path of the socket itself, with the export named by the option
// "export" (default: the empty name, the server's default export). The
// option "export" is refused together with a URI. A read-only open makes
// the device read-only whatever the server offers.
//
// There is no file: Probe() claims nothing, and Create(), Check() and Info()
// are kUnsupported.
//
// Thread safety: stateless; any number of threads.
#pragma once

#include <string>

#include "vss/formats/driver.h"

namespace vss {

class NbdDriver final : public ImageDriver {
 public:
  // Where an open goes: the server's socket and the export's name.
  struct Target {
    std::string socket;
    std::string export_name;
  };

  // The target of `request` as described above. kInvalidArgument for a URI
  // of another scheme, with a host, or without "socket=", and for unknown
  // options.
  [[nodiscard]] static StatusOr<Target> ParseTarget(
      const ImageOpenRequest& request);

  std::string_view name() const override { return "nbd"; }
  bool Probe(std::span<const uint8_t> head,
             std::span<const uint8_t> tail) const override {
    return false;
  }
  StatusOr<std::unique_ptr<BlockDevice>> Open(
      const ImageOpenRequest& request) const override;
};

}  // namespace vss
