// Fuzz target: what a guest agent sends back to the QGA client
// (vss/api/guest_agent_writer.h). A guest controls its agent, so every
// byte of a reply is outside input. The input is the agent's whole stream
// (any bytes, 0xFF resets included) on one end of a socket pair; the
// client, on the other, syncs and runs the freeze, status and thaw
// commands. Each either works or returns a Status; none may crash or wait
// past its timeout once the stream has ended.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>

#include "vss/api/guest_agent_writer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  // The agent's side: its bytes, then the end of its stream; what the
  // client sends is read and dropped so that the client never blocks.
  std::thread agent([fd = sv[1], bytes, size] {
    for (size_t done = 0; done < size;) {
      ssize_t n = ::send(fd, bytes + done, size - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
    char sink[4096];
    while (::read(fd, sink, sizeof sink) > 0) {
    }
    ::close(fd);
  });
  {
    vss::QgaClient client(sv[0], "fuzz.sock", std::chrono::milliseconds(200));
    (void)client.Sync();
    (void)client.FsFreezeFreeze();
    (void)client.FsFreezeStatus();
    (void)client.FsFreezeThaw();
    (void)client.Ping();
  }  // closes sv[0]: the agent thread's read ends
  agent.join();
  return 0;
}
