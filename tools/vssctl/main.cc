// vssctl: the command line of vss. `vssctl NOUN VERB [options]`.
//
// Exit codes: 0 success, 1 the operation failed (one line on stderr),
// 2 the command line is wrong (one line on stderr; --help explains).

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "common.h"

namespace vss::tools {
namespace {

constexpr const char* kFooter = R"(Examples:
  vssctl volume create disk.img --size 10G --name disk
  vssctl volume write disk --offset 0 --input data.bin
  vssctl shadow create disk
  vssctl shadow list
  vssctl shadow read 1a2b --offset 0 --length 4K --output old.bin
  vssctl shadow diff 1a2b
  vssctl shadow export 1a2b disk-then.img
  vssctl shadow revert 1a2b
  vssctl storage add --for disk --on /srv/diff --max-size 20G
  vssctl events --volume disk
  vssctl image info web.qcow2

VOLUME is a volume name or id; SHADOW and SET are GUIDs ({...} optional)
or any unique prefix. Sizes are bytes or take K, M, G, T (binary) suffixes.
The store is --store, else $VSS_STORE, else $XDG_DATA_HOME/vss
(~/.local/share/vss). Run `vssctl NOUN VERB --help` for each command.)";

int Run(int argc, char** argv) {
  CLI::App app{"Volume shadow copies of disk image files.", "vssctl"};
  app.footer(kFooter);
  app.require_subcommand(1);
  app.fallthrough();  // --store/--json may follow the verb

  Cli cli;
  app.add_option("--store", cli.store_dir,
                 "Store directory (catalog.db and default diff areas)")
      ->type_name("DIR");
  app.add_flag("--json", cli.json, "Print JSON instead of text");
  AddVolumeCommands(app, cli);
  AddShadowCommands(app, cli);
  AddStorageCommands(app, cli);
  AddEventsCommand(app, cli);
  AddMountCommands(app, cli);
  AddVssCommands(app, cli);
  AddWriterCommands(app, cli);
  AddImageCommands(app, cli);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "vssctl: %s (see vssctl --help)\n", e.what());
    return 2;
  }
  if (!cli.run) {
    std::fprintf(stderr, "vssctl: no command given (see vssctl --help)\n");
    return 2;
  }
  Status s = cli.run();
  std::cout.flush();
  if (!s.ok()) {
    std::string message = s.ToString();
    std::replace(message.begin(), message.end(), '\n', ' ');
    std::fprintf(stderr, "vssctl: %s\n", message.c_str());
    return 1;
  }
  if (!std::cout) {
    std::fprintf(stderr, "vssctl: writing standard output failed\n");
    return 1;
  }
  return cli.exit_code;
}

}  // namespace
}  // namespace vss::tools

int main(int argc, char** argv) {
  try {
    return vss::tools::Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vssctl: internal error: %s\n", e.what());
    return 1;
  }
}
