// vssctl events: what the engine did on its own (shadows deleted because a
// diff area was full, non-persistent shadows removed by recovery, ...).

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>

#include "common.h"

namespace vss::tools {
namespace {

Status RunEvents(Cli& cli, const std::string& volume_text) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  std::optional<Guid> filter;
  if (!volume_text.empty()) {
    VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v,
                         store->ResolveVolume(volume_text));
    filter = v.id;
  }
  VSS_ASSIGN_OR_RETURN(auto events, store->ListEvents(filter));
  VSS_ASSIGN_OR_RETURN(auto volumes, store->ListVolumes());
  std::map<Guid, std::string> names;
  for (const auto& v : volumes) names[v.id] = v.name;
  auto name_of = [&](const std::optional<Guid>& id) -> std::string {
    if (!id) return "";
    auto it = names.find(*id);
    return it == names.end() ? id->ToString() : it->second;
  };
  if (cli.json) {
    Json out = Json::array();
    for (const auto& e : events) {
      out.push_back(
          {{"id", e.id},
           {"time", engine::TimestampToIso8601(e.time)},
           {"volume_id", e.volume_id ? Json(e.volume_id->ToString()) : Json()},
           {"volume", e.volume_id ? Json(name_of(e.volume_id)) : Json()},
           {"shadow_id", e.shadow_id ? Json(e.shadow_id->ToString()) : Json()},
           {"kind", e.kind},
           {"message", e.message}});
    }
    PrintJson(out);
    return OkStatus();
  }
  if (events.empty()) {
    std::printf("No events.\n");
    return OkStatus();
  }
  for (const auto& e : events) {
    std::string vol = name_of(e.volume_id);
    std::printf("%s  %-32s %-16s %s\n",
                engine::TimestampToIso8601(e.time).c_str(), e.kind.c_str(),
                vol.empty() ? "-" : vol.c_str(), e.message.c_str());
  }
  return OkStatus();
}

}  // namespace

void AddEventsCommand(CLI::App& app, Cli& cli) {
  auto volume = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand(
      "events",
      "Show what the engine did by itself (e.g. shadows deleted when full)");
  c->add_option("--volume", *volume, "Only events of this volume")
      ->type_name("VOLUME");
  c->footer("Example:\n  vssctl events --volume disk");
  c->callback([&cli, volume] {
    cli.run = [&cli, volume] { return RunEvents(cli, *volume); };
  });
}

}  // namespace vss::tools
