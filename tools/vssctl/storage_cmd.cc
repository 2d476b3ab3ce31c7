// vssctl storage add|resize|list: where a volume's diff area lives and how
// large it may grow (vssadmin's shadow storage associations).

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "common.h"

namespace vss::tools {
namespace {

struct StorageOptions {
  std::string volume;
  std::string dir;
  std::string max_size = "UNBOUNDED";
};

void PrintAssociation(const engine::DiffAreaInfo& d,
                      const engine::VolumeInfo& v) {
  std::printf("Shadow Copy Storage association\n");
  std::printf("   For volume: %s (%s)\n", v.name.c_str(), v.path.c_str());
  std::printf("   Shadow Copy Storage directory: %s\n", d.dir.c_str());
  std::printf("   Used Shadow Copy Storage space: %s\n",
              FormatBytes(d.used_bytes).c_str());
  std::printf("   Maximum Shadow Copy Storage space: %s\n\n",
              FormatMaxSize(d.max_bytes).c_str());
}

// Prints the diff area of `v` as it is now.
Status PrintResult(Cli& cli, engine::Store& store,
                   const engine::VolumeInfo& v) {
  VSS_ASSIGN_OR_RETURN(engine::DiffAreaInfo d, store.DiffAreaOf(v.id));
  if (cli.json) {
    PrintJson(DiffAreaToJson(d, v));
  } else {
    PrintAssociation(d, v);
  }
  return OkStatus();
}

Status RunAdd(Cli& cli, const StorageOptions& o) {
  VSS_ASSIGN_OR_RETURN(int64_t max, ParseMaxSize(o.max_size, "--max-size"));
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(o.volume));
  std::error_code ec;
  std::string dir =
      std::filesystem::absolute(o.dir, ec).lexically_normal().string();
  if (ec) dir = o.dir;
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  VSS_RETURN_IF_ERROR(store->AddDiffArea(v.id, dir, max));
  return PrintResult(cli, *store, v);
}

Status RunResize(Cli& cli, const StorageOptions& o) {
  VSS_ASSIGN_OR_RETURN(int64_t max, ParseMaxSize(o.max_size, "--max-size"));
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(o.volume));
  VSS_RETURN_IF_ERROR(store->ResizeDiffArea(v.id, max));
  return PrintResult(cli, *store, v);
}

Status RunList(Cli& cli) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(auto volumes, store->ListVolumes());
  Json out = Json::array();
  for (const auto& v : volumes) {
    VSS_ASSIGN_OR_RETURN(engine::DiffAreaInfo d, store->DiffAreaOf(v.id));
    if (cli.json) {
      out.push_back(DiffAreaToJson(d, v));
    } else {
      PrintAssociation(d, v);
    }
  }
  if (cli.json) PrintJson(out);
  if (!cli.json && volumes.empty()) std::printf("No volumes in the store.\n");
  return OkStatus();
}

}  // namespace

void AddStorageCommands(CLI::App& app, Cli& cli) {
  CLI::App* noun = app.add_subcommand(
      "storage", "Diff areas: where preserved chunks of a volume are kept");
  noun->require_subcommand(1);
  noun->footer(
      "Examples:\n  vssctl storage add --for disk --on /srv/diff --max-size "
      "20G\n"
      "  vssctl storage list\n"
      "Run `vssctl storage VERB --help` for each verb.");

  auto add = std::make_shared<StorageOptions>();
  CLI::App* c =
      noun->add_subcommand("add", "Put a volume's diff area in a directory");
  c->add_option("--for", add->volume, "Volume name or id")
      ->type_name("VOLUME")
      ->required();
  c->add_option("--on", add->dir,
                "Directory for the segment files; the volume's go in a "
                "private directory of its own, DIR/<volume-id>, so several "
                "volumes may use one DIR")
      ->type_name("DIR")
      ->required();
  c->add_option("--max-size", add->max_size,
                "Limit (default UNBOUNDED); when full, "
                "the oldest shadows are deleted")
      ->type_name("SIZE|UNBOUNDED");
  c->footer(
      "Example:\n  vssctl storage add --for disk --on /srv/diff --max-size "
      "20G");
  c->callback(
      [&cli, add] { cli.run = [&cli, add] { return RunAdd(cli, *add); }; });

  auto rs = std::make_shared<StorageOptions>();
  CLI::App* r =
      noun->add_subcommand("resize", "Change the maximum size of a diff area");
  r->add_option("--for", rs->volume, "Volume name or id")
      ->type_name("VOLUME")
      ->required();
  r->add_option("--max-size", rs->max_size, "New limit")
      ->type_name("SIZE|UNBOUNDED")
      ->required();
  r->footer(
      "Example:\n  vssctl storage resize --for disk --max-size UNBOUNDED");
  r->callback(
      [&cli, rs] { cli.run = [&cli, rs] { return RunResize(cli, *rs); }; });

  CLI::App* l =
      noun->add_subcommand("list", "List the diff areas of every volume");
  l->footer("Example:\n  vssctl storage list --json");
  l->callback([&cli] { cli.run = [&cli] { return RunList(cli); }; });
}

}  // namespace vss::tools
