// libFuzzer target: vssd's NBD server, fed the client's side of one
// connection. The first byte of an input chooses the connection's policy
// (bit 0: privileged, bit 1: TLS required, bit 2: TLS offered with a PSK);
// the rest is the byte stream a client sends: the flags, the option
// haggling, then transmission requests with their payloads. It is written
// into a socketpair, and a real Connection (tools/vssd/connection.h) serves
// it against a real store in a temporary directory: one 1 MiB volume
// ("live/disk") with data and one shadow, so that LIST, INFO, GO, meta
// contexts and every command reach the engine. The replies are read and
// dropped; the server must neither crash nor hang.
//
// Seeds: testdata/fuzz/nbd_server/ (real clients' streams, each with its
// policy byte in front).
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "connection.h"
#include "exports.h"
#include "payload_memory.h"
#include "tls.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"

namespace {

using vss::vssd::Connection;
using vss::vssd::ConnectionPolicy;

struct World {
  std::string dir;
  std::unique_ptr<vss::engine::Store> store;
  std::unique_ptr<vss::vssd::ExportRegistry> registry;
  std::unique_ptr<vss::vssd::PayloadMemory> memory;
  std::unique_ptr<vss::vssd::TlsCredentials> tls;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "nbd_server_fuzz: setup: %s\n", what.c_str());
  std::abort();
}

World* Setup() {
  auto* w = new World;
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/nbd-fuzz-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) Die("mkdtemp");
  w->dir = templ;
  auto store = vss::engine::Store::Open({.dir = w->dir + "/store"});
  if (!store.ok()) Die(store.status().ToString());
  w->store = std::move(store).value();
  auto row = w->store->CreateVolume(
      {.path = w->dir + "/disk.img", .size = 1 << 20, .name = "disk"});
  if (!row.ok()) Die(row.status().ToString());
  {
    auto vol = w->store->OpenVolume(row->id);
    if (!vol.ok()) Die(vol.status().ToString());
    std::vector<uint8_t> data(64 << 10, 0x5a);
    if (!(*vol)->Write(0, data).ok()) Die("write");
    auto set = w->store->CreateShadowSet({.volumes = {row->id}});
    if (!set.ok()) Die(set.status().ToString());
    std::vector<uint8_t> more(4096, 0x6b);
    if (!(*vol)->Write(0, more).ok()) Die("write");
    if (!w->store->CloseVolume(row->id).ok()) Die("close");
  }
  w->registry = std::make_unique<vss::vssd::ExportRegistry>(w->store.get());
  w->memory = std::make_unique<vss::vssd::PayloadMemory>(64u << 20);
  std::string keys = w->dir + "/keys.psk";
  std::ofstream(keys) << "qemu:0123456789abcdef0123456789abcdef\n";
  auto tls = vss::vssd::TlsCredentials::Load({.psk_file = keys});
  if (!tls.ok()) Die(tls.status().ToString());
  w->tls = std::move(tls).value();
  return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = Setup();
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  ++data;
  --size;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  ConnectionPolicy policy;
  policy.privileged = mode & 1;
  policy.tls_required = mode & 2;
  policy.tls = (mode & 4) ? world->tls.get() : nullptr;
  policy.peer = "fuzz";
  // The client: one thread writes the input and half-closes, one drains
  // the replies, so that neither side can block the other.
  std::thread writer([&] {
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::send(sv[1], data + done, size - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::shutdown(sv[1], SHUT_WR);
  });
  std::thread reader([&] {
    char buf[65536];
    while (::recv(sv[1], buf, sizeof buf, 0) > 0) {
    }
  });
  {
    Connection connection(sv[0], world->registry.get(), world->memory.get(),
                          policy);
    connection.Run();
  }  // closes sv[0]: the reader sees the end
  writer.join();
  reader.join();
  ::close(sv[1]);
  return 0;
}
