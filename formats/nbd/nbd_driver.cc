#include "vss/formats/nbd_driver.h"

#include "vss/formats/nbd_device.h"

namespace vss {
namespace {

constexpr std::string_view kUriScheme = "nbd+unix://";
constexpr std::string_view kSocketKey = "socket=";

// Splits "nbd+unix:///EXPORT?socket=SOCKET". REQUIRES: uri starts with
// kUriScheme.
StatusOr<NbdDriver::Target> ParseUri(const std::string& uri) {
  std::string_view rest(uri);
  rest.remove_prefix(kUriScheme.size());
  if (rest.empty() || rest.front() != '/') {
    return InvalidArgumentError("NBD URI " + uri +
                                " names a host; only nbd+unix:///EXPORT"
                                "?socket=SOCKET is supported");
  }
  rest.remove_prefix(1);
  size_t query = rest.find('?');
  NbdDriver::Target target;
  target.export_name = std::string(rest.substr(0, query));
  std::string_view params =
      query == std::string_view::npos ? "" : rest.substr(query + 1);
  while (!params.empty()) {
    size_t amp = params.find('&');
    std::string_view param = params.substr(0, amp);
    if (param.substr(0, kSocketKey.size()) == kSocketKey) {
      target.socket = std::string(param.substr(kSocketKey.size()));
    }
    params = amp == std::string_view::npos ? "" : params.substr(amp + 1);
  }
  if (target.socket.empty()) {
    return InvalidArgumentError("NBD URI " + uri + " has no socket=SOCKET");
  }
  return target;
}

}  // namespace

StatusOr<NbdDriver::Target> NbdDriver::ParseTarget(
    const ImageOpenRequest& request) {
  const std::string& path = request.path;
  if (path.rfind(kUriScheme, 0) == 0) {
    if (!request.options.empty()) {
      return InvalidArgumentError(
          "the nbd driver takes no option with a URI (" + path + ")");
    }
    return ParseUri(path);
  }
  if (path.find("://") != std::string::npos) {
    return InvalidArgumentError(path +
                                ": the nbd driver reaches servers only over "
                                "Unix sockets (nbd+unix:///EXPORT?socket=...)");
  }
  Target target{.socket = path};
  for (const auto& [key, value] : request.options) {
    if (key != "export") {
      return InvalidArgumentError("the nbd driver has no option '" + key + "'");
    }
    target.export_name = value;
  }
  return target;
}

StatusOr<std::unique_ptr<BlockDevice>> NbdDriver::Open(
    const ImageOpenRequest& request) const {
  VSS_ASSIGN_OR_RETURN(Target target, ParseTarget(request));
  VSS_ASSIGN_OR_RETURN(
      auto dev,
      NbdDevice::Connect(target.socket, target.export_name, !request.writable));
  return std::unique_ptr<BlockDevice>(std::move(dev));
}

}  // namespace vss
