// vssd: the vss daemon of one store. It runs the VSS coordinator with the
// software provider (requesters and writers in other processes reach it on
// the control socket, vss-api/PROTOCOL.md) and serves the NBD exports of
// the store's volumes and shadows (exports.h).
//
//   vssd [--store DIR] [--socket PATH] [--nbd unix:PATH | tcp:[HOST:]PORT]...
//        [--event-timeout-ms N] [--freeze-timeout-ms N] [--hold-timeout-ms N]
//        [--no-fsfreeze] [--no-guest-agent] [NBD options]
//
// Options are parsed with CLI11 (`vssd --help`); a bad option or value is
// one line on stderr and exit 1.
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
// itself as the writer's thaw guard (vss/api/daemon/thaw_guard.h):
//
//   vssd --thaw-guard FD
//
// is that helper (FD: its end of the socket to vssd), not meant to be run
// by hand. It thaws what vssd froze if vssd dies, and exits with vssd.
//
// The built-in guest agent writer (vss/api/guest_agent_writer.h) is
// subscribed unless --no-guest-agent: the guest of a volume of a set that
// names a QEMU guest agent socket (`vssctl volume set VOLUME --guest-agent
// SOCKET`, read from the store at each set's PrepareForSnapshot) is frozen
// through its agent at Freeze and thawed at Thaw or Abort, or when the
// freeze window runs out; vssd logs each freeze and thaw on stderr
// ("vssd: guest agent: ..."). It starts its own thaw guard (the same
// `vssd --thaw-guard`) at the first freeze of a guest.
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
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control.h"
#include "exports.h"
#include "server.h"
#include "store_access.h"
#include "vss/api/coordinator.h"
#include "vss/api/fsfreeze_writer.h"
#include "vss/api/guest_agent_writer.h"
#include "vss/api/provider.h"
#include "vss/api/service.h"
#include "vss/api/daemon/service_host.h"
#include "vss/api/daemon/thaw_guard.h"
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

// Parses a positive millisecond count.
bool ParseMs(const std::string& v, uint32_t* out) {
  if (v.empty() || v.size() > 9 ||
      v.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *out = static_cast<uint32_t>(std::stoul(v));
  return *out > 0;
}

// What the command line asks for.
struct Options {
  std::string store_dir;
  std::string socket_path;
  std::vector<std::string> addresses;  // --nbd
  vss::CoordinatorOptions coordinator;
  bool fsfreeze = true;
  bool guest_agent = true;
  vss::vssd::NbdOptions nbd;
};

// The options given as text, checked after parsing so that each bad value
// gets its own one-line message.
struct RawOptions {
  std::string store_dir;
  std::string socket_path;
  std::vector<std::string> addresses;
  std::map<std::string, std::string> ms;   // the coordinator's timeouts
  std::map<std::string, std::string> nbd;  // server.h's options with a value
  bool nbd_insecure = false;
  bool no_fsfreeze = false;
  bool no_guest_agent = false;
};

// The NBD server's options with a value (server.h), with their help.
struct NbdValued {
  const char* name;
  const char* type;
  const char* help;
};
constexpr NbdValued kNbdValued[] = {
    {"--tls-psk", "FILE", "TLS with pre-shared keys (psktool's format)"},
    {"--tls-x509", "DIR", "TLS with certificates (qemu's x509 directory)"},
    {"--nbd-handshake-timeout-ms", "N", "From accept to transmission (default 10000)"},
    {"--nbd-idle-timeout-ms", "N", "Idle timeout (default 0: none)"},
    {"--nbd-max-connections", "N", "Connections at once (default 128)"},
    {"--nbd-memory-limit", "SIZE", "Request payload bytes, all clients (default 256M)"}};

void AddOptions(CLI::App& app, RawOptions& raw) {
  app.add_option("--store", raw.store_dir,
                 "Store directory (default $VSS_STORE, else $XDG_DATA_HOME/vss)")
      ->type_name("DIR");
  app.add_option("--socket", raw.socket_path,
                 "Control socket (default $VSS_SOCKET, else STORE/vssd.sock)")
      ->type_name("PATH");
  app.add_option("--nbd", raw.addresses, "NBD listener (default unix:STORE/nbd.sock)")
      ->type_name("unix:PATH|tcp:[HOST:]PORT")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  const std::pair<const char*, const char*> kMs[] = {
      {"--event-timeout-ms", "Writer answer timeout (default 180000)"},
      {"--freeze-timeout-ms", "Freeze-to-thaw window (default 60000)"},
      {"--hold-timeout-ms", "Hold of writes during commit (default 10000)"}};
  for (const auto& [name, help] : kMs) {
    app.add_option(name, raw.ms[name], help)->type_name("N");
  }
  app.add_flag("--no-fsfreeze", raw.no_fsfreeze, "Do not subscribe the fsfreeze writer");
  app.add_flag("--no-guest-agent", raw.no_guest_agent,
               "Do not subscribe the guest agent writer");
  app.add_flag("--nbd-insecure", raw.nbd_insecure, "Serve TCP in plain text, to everyone");
  for (const NbdValued& o : kNbdValued) {
    app.add_option(o.name, raw.nbd[o.name], o.help)->type_name(o.type);
  }
}

// Checks the values of `raw` into `out`; false with `error` set (one line)
// on a bad one.
bool CheckOptions(const CLI::App& app, const RawOptions& raw, Options& out,
                  std::string& error) {
  if (app.count("--store") > 0 && raw.store_dir.empty()) {
    error = "--store needs a directory";
    return false;
  }
  if (app.count("--socket") > 0 && raw.socket_path.empty()) {
    error = "--socket needs a path";
    return false;
  }
  for (const std::string& v : raw.addresses) {
    if (v.rfind("unix:", 0) != 0 && v.rfind("tcp:", 0) != 0) {
      error = "--nbd " + v + ": expected unix:PATH or tcp:[HOST:]PORT";
      return false;
    }
  }
  uint32_t* const ms_fields[] = {&out.coordinator.event_timeout_ms,
                                 &out.coordinator.freeze_timeout_ms,
                                 &out.coordinator.hold_writes_timeout_ms};
  const char* const ms_names[] = {"--event-timeout-ms", "--freeze-timeout-ms",
                                  "--hold-timeout-ms"};
  for (size_t i = 0; i < std::size(ms_names); ++i) {
    if (app.count(ms_names[i]) > 0 && !ParseMs(raw.ms.at(ms_names[i]), ms_fields[i])) {
      error = std::string(ms_names[i]) + " needs a positive number of milliseconds";
      return false;
    }
  }
  out.nbd.insecure = raw.nbd_insecure;
  for (const NbdValued& o : kNbdValued) {
    if (app.count(o.name) == 0) continue;
    // server.h's parser checks the value and gives its message.
    std::string arg = std::string(o.name) + "=" + raw.nbd.at(o.name);
    char* argv[] = {arg.data()};
    if (vss::vssd::ParseNbdArgument(1, argv, 0, &out.nbd, &error) < 0) return false;
  }
  out.store_dir = raw.store_dir;
  out.socket_path = raw.socket_path;
  out.addresses = raw.addresses;
  out.fsfreeze = !raw.no_fsfreeze;
  out.guest_agent = !raw.no_guest_agent;
  return true;
}

// Parses the command line: nullopt to go on, else the exit status (0 after
// --help; 1 after a one-line error).
std::optional<int> ParseCommandLine(int argc, char** argv, Options& out) {
  CLI::App app{"vssd: the vss daemon of one store (VSS coordinator, NBD exports).", "vssd"};
  app.footer(
      "Requesters and writers of other processes reach the coordinator on the control\n"
      "socket (vss-api/PROTOCOL.md); the store's volumes and shadows are NBD exports.\n"
      "SIGTERM or SIGINT stops it cleanly.");
  RawOptions raw;
  AddOptions(app, raw);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return Fail(std::string(e.what()) + " (see vssd --help)");
  }
  std::string error;
  if (!CheckOptions(app, raw, out, error)) return Fail(error);
  return std::nullopt;
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

// The store directory, absolute and normalized, checked, and its owner
// become (store_access.h): before any file of the store is opened, and
// before any thread starts. nullopt to go on, else the exit status.
std::optional<int> BecomeStoreOwner(Options& o, uid_t* owner_out) {
  if (o.store_dir.empty()) o.store_dir = vss::engine::DefaultStoreDir();
  std::error_code ec;
  auto abs = std::filesystem::absolute(o.store_dir, ec);
  if (!ec) o.store_dir = abs.lexically_normal().string();
  if (o.store_dir.size() > 1 && o.store_dir.back() == '/') o.store_dir.pop_back();
  const std::string missing =
      "store " + o.store_dir + " does not exist (create it with vssctl, or pass --store)";
  auto dir = vss::vssd::CheckStoreDirectory(o.store_dir);
  if (!dir.ok()) {
    if (dir.status().code() == vss::StatusCode::kNotFound) return Fail(missing);
    return Fail(dir.status().ToString());
  }
  o.store_dir = dir->path;
  const uid_t owner = dir->owner;
  if (::geteuid() != owner) {
    std::string who;
    if (vss::Status s = vss::vssd::BecomeUser(owner, &who); !s.ok()) {
      return Fail("store " + o.store_dir + " belongs to uid " + std::to_string(owner) +
                  ", and vssd acts for a store's owner only: " + s.ToString() +
                  " (run vssd as that user)");
    }
    std::fprintf(stderr, "vssd: store %s belongs to %s: vssd runs as uid %u, with that user's "
                 "rights only%s\n", o.store_dir.c_str(), who.c_str(),
                 static_cast<unsigned>(owner),
                 o.fsfreeze ? " (the fsfreeze writer freezes a filesystem only if that user "
                              "may: FIFREEZE needs CAP_SYS_ADMIN)" : "");
  }
  if (vss::Status s = vss::vssd::CheckStoreFile(o.store_dir + "/catalog.db", owner); !s.ok()) {
    if (s.code() == vss::StatusCode::kNotFound) return Fail(missing);
    return Fail(s.ToString());
  }
  *owner_out = owner;
  return std::nullopt;
}

// Runs `before` once `stop_fd` is readable (the signal's pipe), then makes
// fd() readable, for a loop that must stop only after `before` ran. The
// destructor ends the relay if no stop came.
class StopRelay {
 public:
  StopRelay(int stop_fd, std::function<void()> before)
      : stop_fd_(stop_fd), before_(std::move(before)) {
    if (::pipe2(out_, O_CLOEXEC) == 0 && ::pipe2(quit_, O_CLOEXEC) == 0) {
      thread_ = std::thread([this] { Relay(); });
    }
  }
  ~StopRelay() {
    char c = 1;
    if (thread_.joinable() && ::write(quit_[1], &c, 1) == 1) thread_.join();
    for (int fd : {out_[0], out_[1], quit_[0], quit_[1]}) {
      if (fd >= 0) ::close(fd);
    }
  }
  StopRelay(const StopRelay&) = delete;
  StopRelay& operator=(const StopRelay&) = delete;

  // What the loop waits on: the relay's pipe, or the stop pipe itself if
  // the relay could not start (a pipe failed; `before` does not run).
  int fd() const { return thread_.joinable() ? out_[0] : stop_fd_; }

 private:
  void Relay() {
    pollfd p[2] = {{stop_fd_, POLLIN, 0}, {quit_[0], POLLIN, 0}};
    while (::poll(p, 2, -1) < 0 && errno == EINTR) {
    }
    if ((p[0].revents & POLLIN) != 0) before_();
    char c = 1;
    [[maybe_unused]] ssize_t n = ::write(out_[1], &c, 1);
  }

  const int stop_fd_;
  const std::function<void()> before_;
  int out_[2] = {-1, -1};
  int quit_[2] = {-1, -1};
  std::thread thread_;
};

// The guest agent writer's options: vssd's freeze window, the agent socket
// of each volume as the store says now, this program as the thaw guard,
// and stderr as the log.
vss::GuestAgentWriterOptions GuestAgentOptions(const Options& o, vss::engine::Store& store) {
  vss::GuestAgentWriterOptions g;
  g.freeze_timeout_ms = o.coordinator.freeze_timeout_ms;
  g.socket_of = [&store](const vss::EventVolume& v) {
    vss::StatusOr<vss::engine::VolumeInfo> info = store.FindVolume(v.id);
    return info.ok() ? info->guest_agent : std::string();
  };
  g.guard_command = {"/proc/self/exe", "--thaw-guard"};
  g.log = [](const std::string& line) { std::fprintf(stderr, "vssd: %s\n", line.c_str()); };
  return g;
}

// Serves the store until SIGTERM or SIGINT: the coordinator, the fsfreeze
// writer, the service host on `control` and the NBD server. The exit
// status.
int Serve(Options& o, uid_t owner, vss::vssd::ControlServer& control,
          vss::engine::Store& store) {
  vss::vssd::ExportRegistry registry(&store);
  vss::SoftwareProvider provider(store);
  provider.SetVolumeUsers(&registry);
  vss::Coordinator coordinator(provider, o.coordinator);
  // After the coordinator, so it unsubscribes (and thaws) before it goes.
  // Its watchdog uses the daemon's freeze window; its thaw guard is this
  // very program (the same build, even if the file was replaced since).
  vss::FsFreezeWriter fsfreeze_writer(
      o.coordinator.freeze_timeout_ms,
      o.fsfreeze ? std::vector<std::string>{"/proc/self/exe", "--thaw-guard"}
                 : std::vector<std::string>{});
  if (o.fsfreeze) {
    vss::VssStatus s = fsfreeze_writer.Initialize();
    if (s.ok()) s = fsfreeze_writer.Subscribe(coordinator);
    if (!s.ok()) return Fail("fsfreeze writer: " + s.ToString());
  }
  vss::GuestAgentWriter guest_agent_writer(GuestAgentOptions(o, store));
  if (o.guest_agent) {
    vss::VssStatus s = guest_agent_writer.Initialize();
    if (s.ok()) s = guest_agent_writer.Subscribe(coordinator);
    if (!s.ok()) return Fail("guest agent writer: " + s.ToString());
  }
  {
    // Destroyed before the coordinator: closing the requesters'
    // connections releases their auto-release shadows.
    vss::ServiceHost host(coordinator, o.store_dir, [](const std::string& line) {
      std::fprintf(stderr, "vssd: %s\n", line.c_str());
    });
    // The control socket hands connections to `host` until this goes.
    struct StopControl {
      vss::vssd::ControlServer& control;
      ~StopControl() { control.Stop(); }
    } stop_control{control};
    o.nbd.owner = owner;
    auto nbd_server = vss::vssd::Server::Create(&registry, o.nbd);
    if (!nbd_server.ok()) return Fail(nbd_server.status().ToString());
    vss::vssd::Server& server = **nbd_server;
    DropStaleShadows(store);
    for (const auto& a : o.addresses) {
      vss::Status s = server.Listen(a);
      if (!s.ok()) return Fail(s.ToString());
    }
    control.Start(&host);
    std::fprintf(stderr, "vssd: %s: control socket %s\n", o.store_dir.c_str(),
                 o.socket_path.c_str());
    for (const auto& a : o.addresses) {
      std::fprintf(stderr, "vssd: serving %s on %s\n", o.store_dir.c_str(), a.c_str());
    }
    // The NBD server stops only once the guests are thawed: a guest whose
    // disk this vssd serves cannot thaw without it.
    StopRelay relay(g_stop_pipe[0], [&guest_agent_writer] { guest_agent_writer.Stop(); });
    server.Run(relay.fd());
    control.Stop();
  }
  registry.CloseAll();
  return 0;
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
  Options o;
  if (std::optional<int> rc = ParseCommandLine(argc, argv, o)) return *rc;
  uid_t owner = 0;
  if (std::optional<int> rc = BecomeStoreOwner(o, &owner)) return *rc;
  if (o.addresses.empty()) o.addresses.push_back("unix:" + o.store_dir + "/nbd.sock");
  if (o.socket_path.empty()) o.socket_path = vss::DefaultSocketPath(o.store_dir);

  // First, so that a second vssd on the store stops here; while the process
  // has one thread (Listen sets the umask around its bind).
  vss::vssd::ControlServer control(owner);
  if (vss::Status s = control.Listen(o.socket_path); !s.ok()) {
    return Fail("control socket: " + s.ToString());
  }
  vss::engine::StoreOptions options;
  options.dir = o.store_dir;
  auto store = vss::engine::Store::Open(options);
  if (!store.ok()) {
    return Fail("store " + o.store_dir + ": " + store.status().ToString());
  }

  if (::pipe2(g_stop_pipe, O_CLOEXEC) != 0) return Fail(std::strerror(errno));
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  int rc = Serve(o, owner, control, **store);
  store->reset();  // flushes what is still open
  return rc;
}
