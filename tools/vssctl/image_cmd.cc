// vssctl image info|check: any image file a driver of the registry reads,
// whether or not it is a volume of the store (no store is opened).

#include <CLI/CLI.hpp>
#include <cstdio>

#include "common.h"
#include "vss/formats/registry.h"

namespace vss::tools {
namespace {

struct ImageOptions {
  std::string path;
  std::string format;  // empty: probed from the file
  bool repair = false;
};

// The driver for `o.path`: the one named by --format, else the prober's.
StatusOr<const ImageDriver*> DriverFor(const ImageOptions& o) {
  const DriverRegistry& registry = DriverRegistry::Default();
  if (!o.format.empty()) return registry.Find(o.format);
  return registry.ProbeFile(o.path);
}

Json InfoToJson(const std::string& path, const ImageInfo& info) {
  Json j{{"filename", path},
         {"format", info.format},
         {"virtual-size", info.virtual_size},
         {"actual-size", info.allocated_bytes}};
  if (info.cluster_size != 0) j["cluster-size"] = info.cluster_size;
  if (!info.backing_file.empty()) j["backing-filename"] = info.backing_file;
  Json specific = Json::object();
  for (const auto& [key, value] : info.specific) specific[key] = value;
  j["format-specific"] = specific;
  return j;
}

Status RunInfo(Cli& cli, const ImageOptions& o) {
  VSS_ASSIGN_OR_RETURN(const ImageDriver* driver, DriverFor(o));
  VSS_ASSIGN_OR_RETURN(ImageInfo info, driver->Info(o.path));
  if (cli.json) {
    PrintJson(InfoToJson(o.path, info));
    return OkStatus();
  }
  std::printf("image: %s\n", o.path.c_str());
  std::printf("file format: %s\n", info.format.c_str());
  std::printf("virtual size: %s (%llu bytes)\n", FormatBytes(info.virtual_size).c_str(),
              static_cast<unsigned long long>(info.virtual_size));
  std::printf("disk size: %s\n", FormatBytes(info.allocated_bytes).c_str());
  if (info.cluster_size != 0) {
    std::printf("cluster_size: %llu\n", static_cast<unsigned long long>(info.cluster_size));
  }
  if (!info.backing_file.empty()) std::printf("backing file: %s\n", info.backing_file.c_str());
  if (!info.specific.empty()) {
    std::printf("Format specific information:\n");
    for (const auto& [key, value] : info.specific) {
      std::printf("    %s: %s\n", key.c_str(), value.c_str());
    }
  }
  return OkStatus();
}

// qemu-img check's exit codes: 0 clean, 2 corruptions, 3 leaks only.
int CheckExitCode(const ImageCheckResult& r) {
  if (!r.errors.empty()) return 2;
  return r.leaks != 0 ? 3 : 0;
}

void PrintCheck(const ImageOptions& o, const ImageCheckResult& r) {
  for (const std::string& e : r.errors) std::printf("ERROR %s\n", e.c_str());
  if (r.leaks != 0) {
    std::printf("%llu leaked clusters (%s) were found on the image.\n",
                static_cast<unsigned long long>(r.leaks), FormatBytes(r.leaked_bytes).c_str());
    std::printf("This means waste of disk space, but no harm to data.\n");
  }
  if (!r.errors.empty()) {
    std::printf("\n%zu errors were found on the image.\n", r.errors.size());
    std::printf("Data may be corrupted, or further writes to the image may corrupt it.\n");
  }
  if (r.clean()) std::printf("No errors were found on the image.\n");
  std::printf("%llu units checked in %s.\n", static_cast<unsigned long long>(r.checked_units),
              o.path.c_str());
}

Status RunCheck(Cli& cli, const ImageOptions& o) {
  VSS_ASSIGN_OR_RETURN(const ImageDriver* driver, DriverFor(o));
  VSS_ASSIGN_OR_RETURN(ImageCheckResult r,
                       o.repair ? driver->Repair(o.path) : driver->Check(o.path));
  cli.exit_code = CheckExitCode(r);
  if (cli.json) {
    PrintJson(Json{{"filename", o.path},
                   {"format", std::string(driver->name())},
                   {"repaired", o.repair},
                   {"corruptions", r.errors.size()},
                   {"errors", r.errors},
                   {"leaks", r.leaks},
                   {"leaked-bytes", r.leaked_bytes},
                   {"checked-units", r.checked_units}});
    return OkStatus();
  }
  if (o.repair) std::printf("Repaired %s.\n", o.path.c_str());
  PrintCheck(o, r);
  return OkStatus();
}

CLI::App* AddImageVerb(CLI::App& noun, const std::string& verb, const std::string& help,
                       const std::shared_ptr<ImageOptions>& o) {
  CLI::App* c = noun.add_subcommand(verb, help);
  c->add_option("FILE", o->path, "Image file")->required();
  c->add_option("--format", o->format, "Read the file as this format (default: from its header)")
      ->type_name("FORMAT");
  return c;
}

}  // namespace

void AddImageCommands(CLI::App& app, Cli& cli) {
  CLI::App* noun = app.add_subcommand("image", "Image files, volumes of the store or not");
  noun->require_subcommand(1);

  auto io = std::make_shared<ImageOptions>();
  CLI::App* info = AddImageVerb(*noun, "info", "Describe an image file (like qemu-img info)", io);
  info->footer("Examples:\n  vssctl image info web.qcow2\n  vssctl image info web.qcow2 --json");
  info->callback([&cli, io] { cli.run = [&cli, io] { return RunInfo(cli, *io); }; });

  auto co = std::make_shared<ImageOptions>();
  CLI::App* check = AddImageVerb(
      *noun, "check", "Check an image file's metadata (like qemu-img check)", co);
  check->add_flag("--repair", co->repair,
                  "Rewrite reference counts to fix leaks and count errors (the image "
                  "must not be in use)");
  check->footer(
      "Reads the image only, unless --repair. Exit status: 0 no errors, 2 errors\n"
      "(corruption) found, 3 only leaks found, 1 the check could not run.\n"
      "Examples:\n  vssctl image check web.qcow2\n  vssctl image check web.qcow2 --repair");
  check->callback([&cli, co] { cli.run = [&cli, co] { return RunCheck(cli, *co); }; });
}

}  // namespace vss::tools
