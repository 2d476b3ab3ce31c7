// vssd: the vss daemon of one store. It runs the VSS coordinator with the
// software provider (requesters and writers in other processes reach it on
// the control socket, vss-api/PROTOCOL.md) and serves the NBD exports of
// the store's volumes and shadows (exports.h).
//
//   vssd [--store DIR] [--socket PATH] [--nbd unix:PATH | tcp:[HOST:]PORT]...
//        [--event-timeout-ms N] [--freeze-timeout-ms N] [--hold-timeout-ms N]
//        [--no-fsfreeze] [NBD options]
//
// The store is --store, else $VSS_STORE, else $XDG_DATA_HOME/vss, else
// ~/.local/share/vss (as vssctl finds it); it must exist. The control socket
// is --socket, else $VSS_SOCKET, else STORE/vssd.sock (mode 0660; root and
// the store's owner may change things, others may only list). Without --nbd
// it serves NBD on unix:STORE/nbd.sock. The timeouts are the coordinator's
// (coordinator.h): writer answers (default 180000), the freeze-to-thaw
// window (60000), the hold of writes during commit (10000).
//
// vssd acts for the store's owner (the owner of its directory) with that
// user's rights only (store_access.h): run by another user, typically root,
// it becomes the owner (his groups, gid and uid) before it opens anything
// of the store, and says so in one line; if it cannot, it refuses. A store
// directory or catalog that others may write, or a directory above the
// store that lets another user replace it, is refused. The control socket
// and the NBD socket files are then the owner's.
//
// The built-in fsfreeze writer (vss/api/fsfreeze_writer.h) is subscribed
// unless --no-fsfreeze: filesystems mounted on this host from a volume of a
// set (through a loop device) are frozen at the set's Freeze and thawed at
// Thaw or Abort, or when the freeze window runs out. So that a vssd killed
// while they are frozen does not leave them frozen, vssd runs a copy of
// itself as the writer's thaw guard (vss/api/thaw_guard.h):
//
//   vssd --thaw-guard FD
//
// is that helper (FD: its end of the socket to vssd), not meant to be run
// by hand. It thaws what vssd froze if vssd dies, and exits with vssd.
//
// NBD options (server.h has who may do what over NBD, and the defaults):
//   --nbd-insecure          serve TCP in plain text, to everyone
//   --tls-psk FILE          TLS with pre-shared keys (psktool's format)
//   --tls-x509 DIR          TLS with certificates (qemu's x509 directory)
//   --nbd-handshake-timeout-ms N, --nbd-idle-timeout-ms N (0: none),
//   --nbd-max-connections N, --nbd-memory-limit SIZE
//
// At start, non-persistent shadows left by a previous run are removed (with
// a shadow-removed-at-recovery event); persistent ones are kept.
// SIGTERM or SIGINT: stop accepting, answer the requests already read,
// release the requesters' auto-release shadows, flush and close the
// volumes, exit 0. Errors at start: one line on stderr, exit 1.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "control.h"
#include "exports.h"
#include "server.h"
#include "store_access.h"
#include "vss/api/coordinator.h"
#include "vss/api/fsfreeze_writer.h"
#include "vss/api/provider.h"
#include "vss/api/service.h"
#include "vss/api/service_host.h"
#include "vss/api/thaw_guard.h"
#include "vss/engine/store.h"

namespace {

int g_stop_pipe[2] = {-1, -1};

void OnSignal(int) {
  int saved = errno;
  char c = 1;
  [[maybe_unused]] ssize_t n = ::write(g_stop_pipe[1], &c, 1);
  errno = saved;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "vssd: %s\n", message.c_str());
  return 1;
}

constexpr const char* kUsage =
    "usage: vssd [--store DIR] [--socket PATH] [--nbd unix:PATH | "
    "tcp:[HOST:]PORT]... [--event-timeout-ms N] [--freeze-timeout-ms N] "
    "[--hold-timeout-ms N] [--no-fsfreeze] [--nbd-insecure] [--tls-psk FILE] "
    "[--tls-x509 DIR] [--nbd-handshake-timeout-ms N] [--nbd-idle-timeout-ms N] "
    "[--nbd-max-connections N] [--nbd-memory-limit SIZE]\n";

// Parses a positive millisecond count.
bool ParseMs(const std::string& v, uint32_t* out) {
  if (v.empty() || v.size() > 9 ||
      v.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *out = static_cast<uint32_t>(std::stoul(v));
  return *out > 0;
}

// Opens each volume with non-persistent shadows once: opening removes the
// shadows a previous owner left (engine recovery records the event).
void DropStaleShadows(vss::engine::Store& store) {
  auto shadows = store.ListShadows();
  if (!shadows.ok()) return;
  std::vector<vss::Guid> volumes;
  for (const auto& s : *shadows) {
    if (!s.persistent &&
        std::find(volumes.begin(), volumes.end(), s.volume_id) == volumes.end()) {
      volumes.push_back(s.volume_id);
    }
  }
  for (const vss::Guid& id : volumes) {
    vss::Status s = store.OpenVolume(id).status();
    if (s.ok()) s = store.CloseVolume(id);
    if (!s.ok()) {
      std::fprintf(stderr, "vssd: volume %s: %s\n", id.ToString().c_str(),
                   s.ToString().c_str());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--thaw-guard") == 0) {
    // The fsfreeze writer's helper (see the top of the file), run by vssd
    // itself through /proc/self/exe; nothing else of vssd runs here.
    char* end = nullptr;
    long fd = std::strtol(argv[2], &end, 10);
    if (end == argv[2] || *end != '\0' || fd < 0 || fd > 1 << 20) {
      return Fail("--thaw-guard needs a descriptor number");
    }
    return vss::RunThawGuard(static_cast<int>(fd));
  }
  std::string store_dir;
  std::string socket_path;
  std::vector<std::string> addresses;
  vss::CoordinatorOptions coordinator_options;
  bool fsfreeze = true;
  vss::vssd::NbdOptions nbd_options;
  for (int i = 1; i < argc; ++i) {
    // The NBD server's own options (server.h).
    std::string nbd_error;
    if (int used = vss::vssd::ParseNbdArgument(argc, argv, i, &nbd_options, &nbd_error);
        used != 0) {
      if (used < 0) return Fail(nbd_error);
      i += used - 1;
      continue;
    }
    std::string arg = argv[i];
    auto value = [&](const std::string& opt, std::string* out) {
      if (arg == opt) {
        if (i + 1 >= argc) return false;
        *out = argv[++i];
        return true;
      }
      *out = arg.substr(opt.size() + 1);
      return true;
    };
    std::string v;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--no-fsfreeze") {
      fsfreeze = false;
    } else if (arg == "--store" || arg.rfind("--store=", 0) == 0) {
      if (!value("--store", &v) || v.empty())
        return Fail("--store needs a directory");
      store_dir = v;
    } else if (arg == "--nbd" || arg.rfind("--nbd=", 0) == 0) {
      if (!value("--nbd", &v))
        return Fail("--nbd needs unix:PATH or tcp:[HOST:]PORT");
      if (v.rfind("unix:", 0) != 0 && v.rfind("tcp:", 0) != 0) {
        return Fail("--nbd " + v + ": expected unix:PATH or tcp:[HOST:]PORT");
      }
      addresses.push_back(v);
    } else if (arg == "--socket" || arg.rfind("--socket=", 0) == 0) {
      if (!value("--socket", &v) || v.empty())
        return Fail("--socket needs a path");
      socket_path = v;
    } else if (arg.rfind("--event-timeout-ms", 0) == 0 ||
               arg.rfind("--freeze-timeout-ms", 0) == 0 ||
               arg.rfind("--hold-timeout-ms", 0) == 0) {
      std::string opt = arg.substr(0, arg.find('='));
      uint32_t* field = opt == "--event-timeout-ms"
                            ? &coordinator_options.event_timeout_ms
                        : opt == "--freeze-timeout-ms"
                            ? &coordinator_options.freeze_timeout_ms
                        : opt == "--hold-timeout-ms"
                            ? &coordinator_options.hold_writes_timeout_ms
                            : nullptr;
      if (field == nullptr) return Fail("unknown argument '" + arg + "'");
      if (!value(opt, &v) || !ParseMs(v, field)) {
        return Fail(opt + " needs a positive number of milliseconds");
      }
    } else {
      return Fail("unknown argument '" + arg + "' (" +
                  std::string(kUsage).substr(7, std::strlen(kUsage) - 8) + ")");
    }
  }
  if (store_dir.empty()) store_dir = vss::engine::DefaultStoreDir();
  std::error_code ec;
  auto abs = std::filesystem::absolute(store_dir, ec);
  if (!ec) store_dir = abs.lexically_normal().string();
  if (store_dir.size() > 1 && store_dir.back() == '/') store_dir.pop_back();

  // Whom this daemon acts for (store_access.h): the store's owner, checked
  // and become before any file of the store is opened, and before any
  // thread starts.
  auto dir = vss::vssd::CheckStoreDirectory(store_dir);
  if (!dir.ok()) {
    if (dir.status().code() == vss::StatusCode::kNotFound) {
      return Fail("store " + store_dir +
                  " does not exist (create it with vssctl, or pass --store)");
    }
    return Fail(dir.status().ToString());
  }
  store_dir = dir->path;
  const uid_t owner = dir->owner;
  if (::geteuid() != owner) {
    std::string who;
    if (vss::Status s = vss::vssd::BecomeUser(owner, &who); !s.ok()) {
      return Fail("store " + store_dir + " belongs to uid " + std::to_string(owner) +
                  ", and vssd acts for a store's owner only: " + s.ToString() +
                  " (run vssd as that user)");
    }
    std::fprintf(stderr, "vssd: store %s belongs to %s: vssd runs as uid %u, with that user's "
                 "rights only%s\n", store_dir.c_str(), who.c_str(),
                 static_cast<unsigned>(owner),
                 fsfreeze ? " (the fsfreeze writer freezes a filesystem only if that user "
                            "may: FIFREEZE needs CAP_SYS_ADMIN)" : "");
  }
  if (vss::Status s = vss::vssd::CheckStoreFile(store_dir + "/catalog.db", owner); !s.ok()) {
    if (s.code() == vss::StatusCode::kNotFound) {
      return Fail("store " + store_dir +
                  " does not exist (create it with vssctl, or pass --store)");
    }
    return Fail(s.ToString());
  }
  if (addresses.empty()) addresses.push_back("unix:" + store_dir + "/nbd.sock");
  if (socket_path.empty()) socket_path = vss::DefaultSocketPath(store_dir);

  // First, so that a second vssd on the store stops here; while the process
  // has one thread (Listen sets the umask around its bind).
  vss::vssd::ControlServer control(owner);
  if (vss::Status s = control.Listen(socket_path); !s.ok()) {
    return Fail("control socket: " + s.ToString());
  }

  vss::engine::StoreOptions options;
  options.dir = store_dir;
  auto store = vss::engine::Store::Open(options);
  if (!store.ok()) {
    return Fail("store " + store_dir + ": " + store.status().ToString());
  }

  if (::pipe2(g_stop_pipe, O_CLOEXEC) != 0) return Fail(std::strerror(errno));
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  int rc = 0;
  {
    vss::vssd::ExportRegistry registry(store->get());
    vss::SoftwareProvider provider(**store);
    provider.SetVolumeUsers(&registry);
    vss::Coordinator coordinator(provider, coordinator_options);
    // After the coordinator, so it unsubscribes (and thaws) before it goes.
    // Its watchdog uses the daemon's freeze window; its thaw guard is this
    // very program (the same build, even if the file was replaced since).
    vss::FsFreezeWriter fsfreeze_writer(
        coordinator_options.freeze_timeout_ms,
        fsfreeze ? std::vector<std::string>{"/proc/self/exe", "--thaw-guard"}
                 : std::vector<std::string>{});
    if (fsfreeze) {
      vss::VssStatus s = fsfreeze_writer.Initialize();
      if (s.ok()) s = fsfreeze_writer.Subscribe(coordinator);
      if (!s.ok()) return Fail("fsfreeze writer: " + s.ToString());
    }
    {
      // Destroyed before the coordinator: closing the requesters'
      // connections releases their auto-release shadows.
      vss::ServiceHost host(coordinator, store_dir, [](const std::string& line) {
        std::fprintf(stderr, "vssd: %s\n", line.c_str());
      });
      // The control socket hands connections to `host` until this goes.
      struct StopControl {
        vss::vssd::ControlServer& control;
        ~StopControl() { control.Stop(); }
      } stop_control{control};
      nbd_options.owner = owner;
      auto nbd_server = vss::vssd::Server::Create(&registry, nbd_options);
      if (!nbd_server.ok()) return Fail(nbd_server.status().ToString());
      vss::vssd::Server& server = **nbd_server;
      DropStaleShadows(**store);
      for (const auto& a : addresses) {
        vss::Status s = server.Listen(a);
        if (!s.ok()) return Fail(s.ToString());
      }
      control.Start(&host);
      std::fprintf(stderr, "vssd: %s: control socket %s\n", store_dir.c_str(),
                   socket_path.c_str());
      for (const auto& a : addresses) {
        std::fprintf(stderr, "vssd: serving %s on %s\n", store_dir.c_str(),
                     a.c_str());
      }
      server.Run(g_stop_pipe[0]);
      control.Stop();
    }
    registry.CloseAll();
  }
  store->reset();  // flushes what is still open
  return rc;
}
