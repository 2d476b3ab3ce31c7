// vssd: the vss daemon. For now it serves the NBD exports of one store
// (see exports.h for the names); the VSS coordinator joins it later.
//
//   vssd [--store DIR] [--nbd unix:PATH | tcp:[HOST:]PORT]...
//
// The store is --store, else $VSS_STORE, else $XDG_DATA_HOME/vss, else
// ~/.local/share/vss (as vssctl finds it); it must exist. Without --nbd it
// listens on unix:STORE/nbd.sock. SIGTERM or SIGINT: stop accepting, answer
// the requests already read, flush and close the volumes, exit 0. Errors at
// start: one line on stderr, exit 1.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "exports.h"
#include "server.h"
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
    "usage: vssd [--store DIR] [--nbd unix:PATH | tcp:[HOST:]PORT]...\n";

}  // namespace

int main(int argc, char** argv) {
  std::string store_dir;
  std::vector<std::string> addresses;
  for (int i = 1; i < argc; ++i) {
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

  struct stat st;
  if (::stat((store_dir + "/catalog.db").c_str(), &st) != 0) {
    return Fail("store " + store_dir +
                " does not exist (create it with vssctl, or pass --store)");
  }
  if (addresses.empty()) addresses.push_back("unix:" + store_dir + "/nbd.sock");

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
    {
      vss::vssd::Server server(&registry);
      for (const auto& a : addresses) {
        vss::Status s = server.Listen(a);
        if (!s.ok()) return Fail(s.ToString());
      }
      for (const auto& a : addresses) {
        std::fprintf(stderr, "vssd: serving %s on %s\n", store_dir.c_str(),
                     a.c_str());
      }
      server.Run(g_stop_pipe[0]);
    }
    registry.CloseAll();
  }
  store->reset();  // flushes what is still open
  return rc;
}
