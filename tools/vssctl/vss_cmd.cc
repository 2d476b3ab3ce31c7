// vssctl writers list | providers list | backup | restore, and the
// requester behind `shadow create --context`: the VSS side of vssctl.
//
// Every command here goes through vss::Service: vssd when its control
// socket answers for the store, else a coordinator and the software
// provider in this process (where no writer of another process can take
// part). The requester calls follow VSS's order (VSS-REFERENCE.md, "Order
// of a backup" and "Order of a restore").
//
// Reading shadows and writing volumes: in-process, the Service's own store
// has the volumes open (the provider opened them to commit the set), so
// shadows are read and volumes written through the engine. Through vssd the
// daemon holds the volumes (their images are locked), so this process
// reads shadow/<id> and writes live/<volume> through vssd's NBD exports on
// STORE/nbd.sock; both go through the same engine in vssd.

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common.h"
#include "vss/formats/nbd_device.h"
#include "vss/api/service.h"
#include "vss/api/backup.h"

namespace vss::tools {
namespace {

std::string ProviderTypeName(VSS_PROVIDER_TYPE t) {
  switch (t) {
    case VSS_PROV_SYSTEM: return "System";
    case VSS_PROV_SOFTWARE: return "Software";
    case VSS_PROV_HARDWARE: return "Hardware";
    case VSS_PROV_FILESHARE: return "FileShare";
    case VSS_PROV_UNKNOWN: break;
  }
  return "Unknown";
}


template <typename T>
StatusOr<T> FromVssOr(VssStatusOr<T> v, const std::string& what) {
  if (!v.ok()) return FromVss(v.status(), what);
  return std::move(v).value();
}

// Waits for an asynchronous VSS operation; OK when it finished, else its
StatusOr<std::unique_ptr<Service>> Connect(Cli& cli) {
  ServiceOptions options;
  options.store_dir = cli.resolved_store_dir();
  return FromVssOr(Service::Connect(options), "");
}

std::string ServiceKind(const Service& s) { return s.remote() ? "vssd" : "in-process"; }

std::string Iso8601Now() {
  return engine::TimestampToIso8601(engine::NowTimestamp());
}


int32_t ContextValue(const std::string& name) {
  StatusOr<int32_t> v = ContextFromName(name);
  return v.ok() ? *v : VSS_CTX_BACKUP;  // CLI11 checked the name
}

// --- Writer statuses ---

Json WriterStatusesToJson(const std::vector<WriterStatus>& ws) {
  return Json::parse(WriterStatusesJson(ws));
}

std::string ErrorText(const WriterStatus& w) {
  if (w.failure == S_OK) return "no error";
  std::string s = HResultName(w.failure);
  if (!w.message.empty()) s += " (" + w.message + ")";
  return s;
}

// One line per writer under a heading, for the text output of a sequence.
void PrintWriterLines(const std::vector<WriterStatus>& ws) {
  if (ws.empty()) {
    std::printf("Writers: none took part\n");
    return;
  }
  std::printf("Writers:\n");
  for (const auto& w : ws) {
    std::printf("   '%s': %s, last event %s, %s\n", w.name.c_str(),
                WriterStateName(w.state).c_str(),
                w.last_event.empty() ? "none" : w.last_event.c_str(),
                ErrorText(w).c_str());
  }
}


// The report of a sequence that failed after StartSnapshotSet: what each
// writer says, on stdout (the error itself is returned).
AbortCallback PrintAborted(Cli& cli) {
  return [&cli](const AbortReport& r) {
    if (cli.json) {
      PrintJson(Json{{"ok", false}, {"error", r.error.message()},
                     {"writers", WriterStatusesToJson(r.writers)}});
    } else {
      std::printf("%s failed; no shadow copy was kept.\n", r.what.c_str());
      PrintWriterLines(r.writers);
    }
  };
}

// Progress of the library's long work on stderr (a Progress line per
// piece of work, shown when stderr is a terminal).
ProgressCallback ShowProgress() {
  auto current = std::make_shared<std::unique_ptr<Progress>>();
  auto shown = std::make_shared<uint64_t>(0);
  return [current, shown](const ProgressEvent& e) {
    if (e.finished) {
      current->reset();
      return;
    }
    if (e.done == 0) {
      *current = std::make_unique<Progress>(e.what, e.total);
      *shown = 0;
      return;
    }
    if (*current) (*current)->Add(e.done - *shown);
    *shown = e.done;
  };
}

// --- Devices through vssd ---

std::string NbdSocket(const Service& service) { return service.store_dir() + "/nbd.sock"; }

// vssd's NBD exports of the service's store (shadow/<id>, live/<volume>).
ExportOpener NbdExports(const Service& service) {
  return [&service](const std::string& export_name) -> StatusOr<std::unique_ptr<BlockDevice>> {
    StatusOr<std::unique_ptr<NbdDevice>> dev =
        NbdDevice::Connect(NbdSocket(service), export_name);
    if (!dev.ok()) {
      return dev.status().WithContext("reading " + export_name +
                                      " through vssd's NBD socket " + NbdSocket(service));
    }
    return std::unique_ptr<BlockDevice>(std::move(dev).value());
  };
}

Json ShadowPropToJson(const SnapshotProp& p) {
  return Json{{"shadow_id", p.snapshot_id.ToString()},
              {"volume", p.original_volume_name},
              {"device_object", p.snapshot_device_object},
              {"attributes", p.snapshot_attributes},
              {"attribute_names", AttributeNames(p.snapshot_attributes)},
              {"persistent", (p.snapshot_attributes & VSS_VOLSNAP_ATTR_PERSISTENT) != 0}};
}

// --- writers list, providers list ---

Status RunWritersList(Cli& cli) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  VSS_ASSIGN_OR_RETURN(std::vector<WriterStatus> writers,
                       FromVssOr(service->ListWriters(), "listing writers"));
  if (cli.json) {
    PrintJson(WriterStatusesToJson(writers));
    return OkStatus();
  }
  if (writers.empty()) {
    if (service->remote()) {
      std::printf("No writers are subscribed to %s.\n", service->Describe().c_str());
    } else {
      std::printf(
          "No writers: no vssd serves %s, so vssctl runs in-process and writers of other "
          "processes cannot subscribe. Start vssd to see the writers subscribed to it.\n",
          service->store_dir().c_str());
    }
    return OkStatus();
  }
  for (const WriterStatus& w : writers) {
    std::printf("Writer name: '%s'\n", w.name.c_str());
    std::printf("   Writer Id: %s\n", Braced(w.writer_id).c_str());
    std::printf("   Writer Instance Id: %s\n", Braced(w.instance_id).c_str());
    if (!w.instance_name.empty()) {
      std::printf("   Writer Instance Name: %s\n", w.instance_name.c_str());
    }
    std::printf("   State: [%d] %s\n", static_cast<int>(w.state),
                WriterStateName(w.state).c_str());
    std::printf("   Last event: %s\n", w.last_event.empty() ? "none" : w.last_event.c_str());
    std::printf("   Last error: %s\n", w.failure == S_OK ? "No error" : ErrorText(w).c_str());
    std::printf("\n");
  }
  return OkStatus();
}

Status RunProvidersList(Cli& cli) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  VSS_ASSIGN_OR_RETURN(std::vector<ProviderProp> providers,
                       FromVssOr(service->ListProviders(), "listing providers"));
  if (cli.json) {
    Json out = Json::array();
    for (const ProviderProp& p : providers) {
      out.push_back({{"provider_id", p.provider_id.ToString()},
                     {"name", p.provider_name},
                     {"type", static_cast<int>(p.provider_type)},
                     {"type_name", ProviderTypeName(p.provider_type)},
                     {"version", p.provider_version},
                     {"version_id", p.provider_version_id.ToString()},
                     {"class_id", p.class_id.ToString()}});
    }
    PrintJson(out);
    return OkStatus();
  }
  for (const ProviderProp& p : providers) {
    std::printf("Provider name: '%s'\n", p.provider_name.c_str());
    std::printf("   Provider type: %s\n", ProviderTypeName(p.provider_type).c_str());
    std::printf("   Provider Id: %s\n", Braced(p.provider_id).c_str());
    std::printf("   Version: %s\n", p.provider_version.c_str());
    std::printf("\n");
  }
  return OkStatus();
}

// --- backup ---

// The test-only fault point of `vssctl backup`: when the environment
// variable VSSCTL_TEST_KILL_AT equals `point`, the process sends itself
// SIGKILL. Tests use it to stop a backup at a chosen instant
// ("backup-release": after the backup is durable, before the shadows are
// released). Never set outside tests.
void TestKillPoint(const char* point) {
  const char* at = std::getenv("VSSCTL_TEST_KILL_AT");
  if (at != nullptr && std::strcmp(at, point) == 0) ::raise(SIGKILL);
}


struct BackupOptions {
  std::vector<std::string> volumes;
  std::string to;
  std::string type = "full";
  std::string context = "backup";
  std::string base;
  bool keep_shadows = false;
  std::string format = "raw";
  std::string subformat;             // the image writer's subformat
  std::vector<std::string> options;  // KEY=VALUE image writer options
};

void PrintBackup(Cli& cli, const Service& service, const BackupResult& r) {
  if (cli.json) {
    Json manifest = Json::parse(r.manifest);
    manifest["dir"] = r.dir;
    PrintJson(manifest);
    return;
  }
  std::printf("Backed up shadow copy set %s (%s, context %s, %s) to %s\n",
              Braced(r.set_id).c_str(), BackupTypeName(r.backup_type).c_str(),
              r.context_name.c_str(), service.Describe().c_str(), r.dir.c_str());
  for (const BackedUpVolume& v : r.volumes) {
    std::printf("   Volume '%s': shadow copy {%s}, %s image %s, %s of data\n", v.volume.c_str(),
                v.shadow_id.ToString().c_str(), FormatBytes(v.size).c_str(), v.image.c_str(),
                FormatBytes(v.data_bytes).c_str());
  }
  std::printf("   %zu components backed up%s\n", r.components.size(),
              r.base_dir.empty() ? ""
                                 : (", " + std::to_string(r.previous_stamps) +
                                    " with the previous backup's stamps")
                                       .c_str());
  PrintWriterLines(r.writers);
  if (!r.backup_complete.ok()) {
    std::printf("BackupComplete: %s\n", r.backup_complete.message().c_str());
  }
  std::printf("Shadow copies %s\n", r.shadows_kept ? "kept" : "deleted");
}

Status RunBackup(Cli& cli, const BackupOptions& o) {
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  BackupRequest req;
  req.volumes = o.volumes;
  req.dir = o.to;
  VSS_ASSIGN_OR_RETURN(req.backup_type, BackupTypeFromName(o.type));
  req.context = ContextValue(o.context);
  req.context_name = o.context;
  req.base_dir = o.base;
  req.keep_shadows = o.keep_shadows;
  req.format = o.format;
  VSS_ASSIGN_OR_RETURN(req.image_options, ParseKeyValues(o.options, "-o"));
  if (!o.subformat.empty()) req.image_options["subformat"] = o.subformat;
  if (o.format == "raw" && !req.image_options.empty()) {
    return InvalidArgumentError(
        "--subformat and -o need an image --format (qcow2, vhdx, vhd, vmdk)");
  }
  if (o.keep_shadows) {
    VSS_ASSIGN_OR_RETURN(req.context,
                         KeptContext(*service, req.context, o.context, "vssctl",
                                     "use a persistent --context (app-rollback, "
                                     "client-accessible-writers, ...) with --keep-shadows"));
  }
  req.progress = ShowProgress();
  req.on_aborted = PrintAborted(cli);
  req.open_export = NbdExports(*service);
  req.before_release = [] { TestKillPoint("backup-release"); };
  VSS_ASSIGN_OR_RETURN(BackupResult r, Backup(*service, req));
  PrintBackup(cli, *service, r);
  // A writer that failed BackupComplete does not undo the backup, but the
  // run says so with its exit status.
  return r.backup_complete.WithContext("BackupComplete (the backup in " + o.to +
                                       " is complete)");
}

// --- restore ---

struct RestoreOptions {
  std::string dir;
  std::string volume;
};

const char* FileRestoreStatusName(VSS_FILE_RESTORE_STATUS s) {
  return s == VSS_RS_ALL ? "VSS_RS_ALL" : s == VSS_RS_NONE ? "VSS_RS_NONE" : "VSS_RS_FAILED";
}

void PrintRestore(Cli& cli, const std::string& dir, const RestoreResult& r) {
  if (cli.json) {
    Json restored = Json::array();
    for (const RestoredVolume& v : r.restored) {
      restored.push_back({{"volume", v.volume},
                          {"image", v.image},
                          {"size", v.size},
                          {"data_bytes", v.data_bytes}});
    }
    PrintJson(Json{{"ok", r.status().ok()},
                   {"dir", dir},
                   {"set_id", r.set_id.ToString()},
                   {"restored", restored},
                   {"components", r.components.size()},
                   {"writers", WriterStatusesToJson(r.writers)}});
    return;
  }
  for (const RestoredVolume& v : r.restored) {
    std::printf("Restored volume '%s' from %s (%s of data)\n", v.volume.c_str(),
                v.image.c_str(), FormatBytes(v.data_bytes).c_str());
  }
  std::printf("   %zu components, file restore status %s\n", r.components.size(),
              FileRestoreStatusName(r.file_status));
  PrintWriterLines(r.writers);
}

Status RunRestore(Cli& cli, const RestoreOptions& o) {
  RestoreRequest req;
  req.dir = o.dir;
  req.volume = o.volume;
  req.progress = ShowProgress();
  // Every image is checked before the store is even opened.
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<VerifiedBackup> backup, VerifiedBackup::Open(req));
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  req.open_export = NbdExports(*service);
  VSS_ASSIGN_OR_RETURN(RestoreResult r, Restore(*service, *backup, req));
  PrintRestore(cli, o.dir, r);
  return r.status();
}

// --- Registration ---

void AddListNouns(CLI::App& app, Cli& cli) {
  CLI::App* writers = app.add_subcommand("writers", "VSS writers (like vssadmin list writers)");
  writers->require_subcommand(1);
  CLI::App* wl = writers->add_subcommand(
      "list", "Subscribed writers: state, last event and last error");
  wl->footer(
      "Examples:\n  vssctl writers list\n  vssctl writers list --json\n"
      "Writers of other processes subscribe to vssd; without vssd there are none.");
  wl->callback([&cli] { cli.run = [&cli] { return RunWritersList(cli); }; });

  CLI::App* providers =
      app.add_subcommand("providers", "Shadow copy providers (like vssadmin list providers)");
  providers->require_subcommand(1);
  CLI::App* pl = providers->add_subcommand("list", "Registered providers");
  pl->footer("Example:\n  vssctl providers list --json");
  pl->callback([&cli] { cli.run = [&cli] { return RunProvidersList(cli); }; });
}

void AddBackupRestore(CLI::App& app, Cli& cli) {
  std::vector<std::string> types = BackupTypeNames();

  auto bo = std::make_shared<BackupOptions>();
  CLI::App* backup = app.add_subcommand(
      "backup", "Back up volumes: the VSS requester sequence, a sparse image per shadow");
  backup->add_option("VOLUME", bo->volumes, "Volume names or ids")->required();
  backup->add_option("--to", bo->to, "Backup directory (created; an existing one must be empty)")
      ->type_name("DIR")
      ->required();
  backup->add_option("--type", bo->type, "full (default), copy, incremental, differential, log")
      ->check(CLI::IsMember(types));
  backup->add_option("--context", bo->context, "Shadow copy context (default backup)")
      ->check(CLI::IsMember(VssContextNames()));
  backup->add_option("--base", bo->base,
                     "Previous backup: its components' backup stamps are handed to the "
                     "writers (incremental, differential)")
      ->type_name("DIR");
  backup
      ->add_option("--format", bo->format,
                   "raw (default): DIR/VOLUME.img; qcow2, vhdx, vhd, vmdk: "
                   "DIR/VOLUME.FORMAT, with --base an incremental on top of "
                   "the base's image (the base needs --keep-shadows)")
      ->check(CLI::IsMember({"raw", "qcow2", "vhdx", "vhd", "vmdk"}));
  backup->add_option("--subformat", bo->subformat,
                     "The images' subformat (as for shadow export)")
      ->type_name("SUBFORMAT");
  backup->add_option("-o,--option", bo->options,
                     "An image writer option (repeatable; as for shadow "
                     "export)")
      ->type_name("KEY=VALUE");
  backup->add_flag("--keep-shadows", bo->keep_shadows,
                   "Keep the shadow copies after the backup (default: delete them)");
  backup->footer(
      "Writes DIR/VOLUME.img per volume, DIR/backup.json (the backup "
      "components\n"
      "document) and, last, DIR/manifest.json (volumes, shadow ids, sizes, "
      "XXH3-128\n"
      "checksums of the images, writer states), all synced to the medium "
      "before the\n"
      "shadow copies are deleted; files 0600, a created DIR 0700.\n"
      "With --format qcow2 (vhdx, vhd, vmdk), DIR/VOLUME.qcow2 (...) instead;\n"
      "with --base (made with --keep-shadows, same format) it holds only what\n"
      "changed since the base, on top of the base's image (a qcow2 overlay, a\n"
      "VHDX or VHD differencing disk, a VMDK child): restore DIR reads the\n"
      "whole chain.\n"
      "Examples:\n  vssctl backup disk --to /srv/backup/monday\n"
      "  vssctl backup disk --to /srv/bk/mon --format qcow2 --context "
      "app-rollback --keep-shadows\n"
      "  vssctl backup disk --to /srv/bk/tue --format qcow2 --context "
      "app-rollback --keep-shadows \\\n"
      "      --type incremental --base /srv/bk/mon\n"
      "  vssctl backup dc01 --to /srv/bk/dc01-mon --format vhdx\n"
      "  vssctl backup disk data --to /srv/backup/tuesday --type incremental "
      "--base /srv/backup/monday");
  backup->callback([&cli, bo] {
    if (!bo->base.empty() && bo->type != "incremental" && bo->type != "differential") {
      UsageError("backup: --base goes with --type incremental or differential");
    }
    cli.run = [&cli, bo] { return RunBackup(cli, *bo); };
  });

  auto ro = std::make_shared<RestoreOptions>();
  CLI::App* restore = app.add_subcommand(
      "restore", "Restore volumes from a backup made by vssctl backup");
  restore->add_option("DIR", ro->dir, "Backup directory")->required();
  restore->add_option("--volume", ro->volume, "Only this volume of the backup")
      ->type_name("VOLUME");
  restore->footer(
      "Every image is checked first (a file of the backup directory, of the size in\n"
      "manifest.json, with its XXH3-128 checksum); any mismatch refuses the restore\n"
      "before a volume is touched. Backups without checksums (made by vssctl before\n"
      "manifest version 2) are refused.\n"
      "Each volume must exist with the size it had; it is written through\n"
      "copy-on-write, so its existing shadow copies keep their contents.\n"
      "Examples:\n  vssctl restore /srv/backup/monday\n"
      "  vssctl restore /srv/backup/monday --volume disk");
  restore->callback([&cli, ro] { cli.run = [&cli, ro] { return RunRestore(cli, *ro); }; });
}


}  // namespace

// --- Shared with the other commands (common.h) ---

StatusOr<bool> RevertThroughVssd(Cli& cli, const Guid& shadow, bool force_dismount) {
  ServiceOptions options;
  options.store_dir = cli.resolved_store_dir();
  options.mode = ServiceOptions::Mode::kDaemon;
  VssStatusOr<std::unique_ptr<Service>> service = Service::Connect(options);
  if (!service.ok() && service.status().code() == E_UNEXPECTED) return false;  // no vssd
  if (!service.ok()) return FromVss(service.status(), "");
  VssStatusOr<std::unique_ptr<BackupComponents>> bc = CreateVssBackupComponents(**service);
  if (!bc.ok()) return FromVss(bc.status(), "");
  VSS_RETURN_IF_ERROR(FromVss((*bc)->RevertToSnapshot(shadow, force_dismount),
                              "RevertToSnapshot"));
  return true;
}

std::vector<std::string> VssContextNames() { return ContextNames(); }

Status FromVss(const VssStatus& s, const std::string& what) { return StatusFromVss(s, what); }

Status CreateShadowSetWithRequester(Cli& cli, const RequesterCreateOptions& o) {
  int32_t context = ContextValue(o.context);
  if (o.no_writers) context |= VSS_VOLSNAP_ATTR_NO_WRITERS;
  if (o.no_auto_release) context |= VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE;
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Connect(cli));
  // vssctl exits right after: the shadows must not be auto-released.
  VSS_ASSIGN_OR_RETURN(context,
                       KeptContext(*service, context, o.context, "vssctl",
                                   "give --no-auto-release, run vssd, or use a persistent "
                                   "context (app-rollback, nas-rollback, client-accessible, "
                                   "client-accessible-writers)"));
  VSS_ASSIGN_OR_RETURN(std::unique_ptr<BackupComponents> bc,
                       FromVssOr(service->CreateBackupComponents(), "CreateVssBackupComponents"));
  ShadowSetRequest req;
  req.volumes = o.volumes;
  req.context = context;
  // Not a backup: writers must not record it as one (no log truncation).
  req.backup_type = VSS_BT_COPY;
  req.on_aborted = PrintAborted(cli);
  VSS_ASSIGN_OR_RETURN(ShadowSetResult set, CreateShadowSet(*bc, req));
  VssStatus complete = WaitForAsync(bc->BackupComplete());
  std::vector<WriterStatus> writers = GatherWriterStatuses(*bc);

  const bool persistent = (context & VSS_VOLSNAP_ATTR_PERSISTENT) != 0;
  std::string note;
  if (!persistent && !service->remote()) {
    note = "non-persistent shadow copies do not outlive their owner: without vssd they are "
           "removed when a process next opens the volume";
  } else if (!persistent) {
    note = "non-persistent shadow copies held by vssd until deleted or vssd stops";
  }
  std::string created =
      set.shadows.empty() ? Iso8601Now()
                          : engine::TimestampToIso8601(set.shadows.front().creation_timestamp);
  if (cli.json) {
    Json shadows = Json::array();
    for (const SnapshotProp& p : set.shadows) shadows.push_back(ShadowPropToJson(p));
    Json out{{"set_id", set.set_id.ToString()},
             {"created", created},
             {"context", o.context},
             {"context_value", context},
             {"attribute_names", AttributeNames(context)},
             {"service", ServiceKind(*service)},
             {"shadows", shadows},
             {"writers", WriterStatusesToJson(writers)}};
    if (!note.empty()) out["note"] = note;
    PrintJson(out);
  } else {
    std::printf("Created shadow copy set %s at %s (%s, %s)\n", Braced(set.set_id).c_str(),
                created.c_str(), o.context.c_str(), service->Describe().c_str());
    for (const SnapshotProp& p : set.shadows) {
      std::printf("   Shadow Copy ID: %s  Volume: %s\n", Braced(p.snapshot_id).c_str(),
                  p.original_volume_name.c_str());
    }
    std::string attributes;
    for (const auto& a : AttributeNames(context)) attributes += " " + a;
    std::printf("   Attributes:%s\n", attributes.empty() ? " none" : attributes.c_str());
    if (!note.empty()) std::printf("   Note: %s\n", note.c_str());
    if ((context & VSS_VOLSNAP_ATTR_NO_WRITERS) == 0) PrintWriterLines(writers);
  }
  if (!complete.ok()) return FromVss(complete, "BackupComplete (the shadow copies were created)");
  return OkStatus();
}

void AddVssCommands(CLI::App& app, Cli& cli) {
  AddListNouns(app, cli);
  AddBackupRestore(app, cli);
}

}  // namespace vss::tools

