// qga_probe: asks a QEMU guest agent something, for the guest agent tests.
//
//   qga_probe SOCKET wait-ping SECONDS   until the agent answers guest-ping
//                                        (exit 0) or SECONDS pass (exit 1)
//   qga_probe SOCKET status              prints guest-fsfreeze-status
//
// Each try connects anew, syncs (guest-sync-delimited) and asks, with a
// bound on every answer. Errors: one line on stderr, exit 1.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "vss/api/guest_agent_writer.h"

namespace {

using std::chrono::milliseconds;

// Connects, syncs and pings once.
vss::Status PingOnce(const std::string& socket, milliseconds timeout) {
  VSS_ASSIGN_OR_RETURN(auto agent, vss::QgaClient::Connect(socket, timeout));
  VSS_RETURN_IF_ERROR(agent->Sync());
  return agent->Ping();
}

int WaitPing(const std::string& socket, int seconds) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  vss::Status last = vss::OkStatus();
  while (std::chrono::steady_clock::now() < deadline) {
    last = PingOnce(socket, milliseconds(2000));
    if (last.ok()) return 0;
    // Nothing listens yet (QEMU starting): try again shortly. A sync that
    // timed out has waited its 2 s already.
    std::this_thread::sleep_for(milliseconds(100));
  }
  std::fprintf(stderr, "qga_probe: %s: no answer within %d s: %s\n",
               socket.c_str(), seconds, last.ToString().c_str());
  return 1;
}

// The guest's freeze state, "frozen" or "thawed".
vss::StatusOr<std::string> FreezeState(const std::string& socket) {
  VSS_ASSIGN_OR_RETURN(auto agent,
                       vss::QgaClient::Connect(socket, milliseconds(10000)));
  VSS_RETURN_IF_ERROR(agent->Sync());
  return agent->FsFreezeStatus();
}

int PrintState(const std::string& socket) {
  vss::StatusOr<std::string> state = FreezeState(socket);
  if (!state.ok()) {
    std::fprintf(stderr, "qga_probe: %s\n", state.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", state->c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string verb = argc >= 3 ? argv[2] : "";
  if (argc == 4 && verb == "wait-ping")
    return WaitPing(argv[1], std::atoi(argv[3]));
  if (argc == 3 && verb == "status") return PrintState(argv[1]);
  std::fprintf(
      stderr,
      "usage: qga_probe SOCKET wait-ping SECONDS | qga_probe SOCKET status\n");
  return 2;
}
