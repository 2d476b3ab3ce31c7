// Fuzz target: the control protocol's frames and messages (vss-api/ipc.h,
// vss-api/wire.h, vss-api/PROTOCOL.md).
//
// The input is what a peer sends on a control connection: frames (4-byte
// big-endian length, JSON object) holding calls and replies. A real Channel
// reads them from one end of a socket pair, so that its framing, its JSON
// parsing and its call/reply dispatch are those vssd and its clients run:
//   - before the bytes arrive, this side has made the calls below (ids 1 to
//     7, in that order); a reply to one of them is read with the wire.h
//     reader the client uses for that method's result, as the client does
//     (a reader's exception is a wrongly shaped answer);
//   - a call is read with the reader vssd or a client uses for that
//     method's arguments, and answered; an exception is E_INVALIDARG, as
//     in every Channel handler.
// A value read successfully is written back with ToJson and must read back
// to the same JSON.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "ipc.h"
#include "wire.h"

namespace vss::internal {
namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

// Reads `j` with `read`, writes it back and reads that again: the two
// writings must be the same JSON.
template <typename F>
void RoundTrip(const Json& j, F read) {
  Json once = ToJson(read(j));
  Json twice = ToJson(read(once));
  Check(once == twice);
}

// The readers of a result, per call this side makes (remote_service.cc).
using ResultReader = std::function<void(const Json&)>;
const std::vector<std::pair<std::string, ResultReader>>& OurCalls() {
  static const auto* calls =
      new std::vector<std::pair<std::string, ResultReader>>{
          {"ListWriters",
           [](const Json& j) {
             for (const Json& w : j) RoundTrip(w, WriterStatusFromJson);
           }},
          {"ListProviders",
           [](const Json& j) {
             for (const Json& p : j) RoundTrip(p, ProviderPropFromJson);
           }},
          {"Query",
           [](const Json& j) {
             for (const Json& p : j) RoundTrip(p, SnapshotPropFromJson);
           }},
          {"GetWriterMetadata",
           [](const Json& j) { RoundTrip(j, WriterMetadataFromJsonValue); }},
          {"GetWriterComponents",
           [](const Json& j) { RoundTrip(j, WriterComponentsFromJson); }},
          {"WriterEvent",
           [](const Json& j) { RoundTrip(j, EventResultFromJson); }},
          {"CreateBackupComponents",
           [](const Json& j) {
             IntFromJson<int64_t>(j.at("handle"));
             GuidFromJson(j.at("session_id"));
           }},
      };
  return *calls;
}

// A call from the peer, read as vssd (service_host.cc) or a client
// (remote_service.cc) reads its arguments. Throws on a wrong shape.
Json Answer(const std::string& method, const Json& args) {
  if (method == "Hello") {
    IntFromJson<int>(args.at("version"));
  } else if (method == "Subscribe") {
    RoundTrip(args.at("registration"), RegistrationFromJson);
  } else if (method == "Unsubscribe") {
    GuidFromJson(args.at("instance_id"));
  } else if (method == "WriterEvent") {
    GuidFromJson(args.at("instance_id"));
    RoundTrip(args.at("event"), EventFromJson);
    return ToJson(WriterEventResult{});
  } else if (method == "AddComponent" || method == "SetBackupSucceeded" ||
             method == "SetSelectedForRestore") {
    RoundTrip(args.at("key"), ComponentKeyFromJson);
  } else if (method == "GetSnapshotProperties" ||
             method == "RevertToSnapshot") {
    GuidFromJson(args.at("snapshot_id"));
  } else if (method == "DeleteSnapshots") {
    GuidFromJson(args.at("source_id"));
  }
  return Json();
}

void OnCall(const std::string& method, Json args, Channel::Reply reply) {
  Json result = Answer(method, args);
  reply(VssStatus::Ok(), std::move(result));
}

}  // namespace
}  // namespace vss::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using namespace vss::internal;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  std::promise<void> closed;
  {
    Channel channel(sv[0], OnCall,
                    [&closed](const std::string&) { closed.set_value(); });
    for (const auto& [method, read] : OurCalls()) {
      channel.CallAsync(method, Json::object(),
                        [read = read](const vss::VssStatus& s, Json result) {
                          if (!s.ok()) return;
                          try {
                            read(result);
                          } catch (const std::exception&) {
                            // A wrongly shaped answer: E_UNEXPECTED.
                          }
                        });
    }
    // The peer reads nothing: what the channel sends from now on fails at
    // once (EPIPE) instead of filling the socket buffer.
    ::shutdown(sv[1], SHUT_RD);
    channel.Start();
    // The peer's bytes, then the end of its stream. The channel may drop
    // the connection before it read them all (a bad frame): then the rest
    // cannot be sent.
    for (size_t done = 0; done < size;) {
      ssize_t n = ::send(sv[1], bytes + done, size - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(sv[1]);
    closed.get_future().wait();
  }  // ~Channel joins its threads and closes sv[0]
  return 0;
}
