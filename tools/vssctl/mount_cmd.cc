// vssctl mount | unmount | attach: shadows as read-only image files and
// live volumes as a read-write file, over FUSE (see mount_server.h for the
// layout and for when vssd is used).
//
// The foreground process forks the FUSE server (fuse::StartInBackground),
// waits until it serves or failed, and reports either. With --filesystem it
// then probes each candidate image with blkid and mounts what it recognises
// read-only on the image's directory; any failure there takes the whole
// mount down again, so a failed command leaves nothing mounted.

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "common.h"
#include "fuse/background.h"
#include "fuse/host_mounts.h"
#include "mount_server.h"

namespace vss::tools {
namespace {

struct MountOptions {
  std::string shadow;
  std::string dir;
  std::string set;
  std::string volume;
  bool filesystem = false;
};

struct AttachOptions {
  std::string volume;
  std::string file;
};

void PrintWarnings(const Json& report) {
  for (const Json& w : report["warnings"]) {
    std::fprintf(stderr, "vssctl: warning: %s\n", w.get<std::string>().c_str());
  }
}

// Mounts the filesystems found in the candidate images of a mount; adds
// "filesystem" and either "mounted_on", "loop_device" and, for a file with
// a replay file, "log_replayed", or "not_mounted" (why) to their entries.
Status MountFilesystems(const std::string& dir, Json& files) {
  for (Json& f : files) {
    if (!f.contains("mount_dir")) continue;
    std::string image = dir + "/" + f["name"].get<std::string>();
    VSS_ASSIGN_OR_RETURN(std::string type, fuse::ProbeFilesystem(image));
    f["filesystem"] = type;
    if (type.empty()) {
      f["not_mounted"] = "no filesystem recognised";
      continue;
    }
    if (std::string why = fuse::WhyNotMountable(type); !why.empty()) {
      f["not_mounted"] = why;
      continue;
    }
    fuse::FilesystemMount m{image, type,
                            dir + "/" + f["mount_dir"].get<std::string>()};
    if (f.contains("replay_file")) {
      m.replay_file = dir + "/" + f["replay_file"].get<std::string>();
    }
    VSS_ASSIGN_OR_RETURN(fuse::MountedFilesystem mounted,
                         fuse::MountReadOnly(m));
    f["mounted_on"] = m.mount_point;
    f["loop_device"] = mounted.loop_device;
    if (f.contains("replay_file")) f["log_replayed"] = mounted.log_replayed;
  }
  return OkStatus();
}

void PrintMount(const Json& r) {
  const Json& files = r["files"];
  std::printf("Mounted on %s (%s): %zu image files, read-only\n",
              r["mountpoint"].get<std::string>().c_str(),
              r["via"].get<std::string>().c_str(), files.size());
  for (const Json& f : files) {
    std::string what =
        f["partition"] == 0
            ? "shadow copy {" + f["shadow_id"].get<std::string>() + "}"
            : "partition " + std::to_string(f["partition"].get<int>()) + " (" +
                  f["type"].get<std::string>() + ")";
    std::printf("   %-40s %12s  %s\n", f["name"].get<std::string>().c_str(),
                FormatBytes(f["size"].get<uint64_t>()).c_str(), what.c_str());
    if (f.contains("mounted_on")) {
      std::printf("      %s mounted read-only on %s (%s)%s\n",
                  f["filesystem"].get<std::string>().c_str(),
                  f["mounted_on"].get<std::string>().c_str(),
                  f["loop_device"].get<std::string>().c_str(),
                  !f.contains("log_replayed") ? ""
                  : f["log_replayed"].get<bool>()
                      ? ", log replayed into memory"
                      : ", log not replayed (norecovery)");
    } else if (f.contains("not_mounted")) {
      std::printf("      %s not mounted: %s\n",
                  f["filesystem"].get<std::string>().c_str(),
                  f["not_mounted"].get<std::string>().c_str());
    }
  }
}

Status RunMount(Cli& cli, const MountOptions& o) {
  MountRequest req{cli.resolved_store_dir(),  o.shadow,    o.set, o.volume,
                   fuse::AbsolutePath(o.dir), o.filesystem};
  VSS_ASSIGN_OR_RETURN(fuse::Started started,
                       fuse::StartInBackground([&](const fuse::ReadyFn& ready) {
                         return ServeMount(req, ready);
                       }));
  Json report = Json::parse(started.report);
  PrintWarnings(report);
  if (o.filesystem) {
    Status s = MountFilesystems(req.dir, report["files"]);
    if (!s.ok()) {
      fuse::UnmountTree(req.dir).status().IgnoreError();  // the error is `s`
      return s;
    }
  }
  report.erase("warnings");
  if (cli.json) {
    PrintJson(report);
  } else {
    PrintMount(report);
  }
  return OkStatus();
}

Status RunAttach(Cli& cli, const AttachOptions& o) {
  AttachRequest req{cli.resolved_store_dir(), o.volume,
                    fuse::AbsolutePath(o.file)};
  VSS_ASSIGN_OR_RETURN(fuse::Started started,
                       fuse::StartInBackground([&](const fuse::ReadyFn& ready) {
                         return ServeAttach(req, ready);
                       }));
  Json r = Json::parse(started.report);
  if (cli.json) {
    PrintJson(r);
    return OkStatus();
  }
  std::printf("Attached volume '%s' (%s) read-write on %s (%s)\n",
              r["volume"].get<std::string>().c_str(),
              FormatBytes(r["size"].get<uint64_t>()).c_str(),
              r["file"].get<std::string>().c_str(),
              r["via"].get<std::string>().c_str());
  return OkStatus();
}

// Clears the exposures recorded at `target` (the server clears them as it
// exits; this covers a server that died).
Status ClearExposures(Cli& cli, const std::string& target) {
  struct stat st;
  if (::stat((cli.resolved_store_dir() + "/catalog.db").c_str(), &st) != 0) {
    return OkStatus();  // no store: nothing recorded
  }
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(auto shadows, store->ListShadows());
  for (const auto& s : shadows) {
    if (s.exposed_path == target) {
      VSS_RETURN_IF_ERROR(store->SetShadowExposure(s.id, "", ""));
    }
  }
  return OkStatus();
}

Status RunUnmount(Cli& cli, const std::string& path) {
  std::string target = fuse::AbsolutePath(path);
  VSS_ASSIGN_OR_RETURN(pid_t pid, fuse::UnmountTree(target));
  VSS_RETURN_IF_ERROR(ClearExposures(cli, target));
  if (cli.json) {
    PrintJson(Json{{"unmounted", target}, {"server_pid", pid}});
  } else {
    std::printf("Unmounted %s\n", target.c_str());
  }
  return OkStatus();
}

void AddMount(CLI::App& app, Cli& cli) {
  auto o = std::make_shared<MountOptions>();
  CLI::App* c = app.add_subcommand(
      "mount",
      "Expose shadow copies as read-only image files in a directory (FUSE)");
  c->add_option("SHADOW", o->shadow,
                "Shadow copy id or unique prefix (not with --set/--volume)");
  c->add_option("DIR", o->dir, "Existing directory to mount on");
  c->add_option("--set", o->set, "Every shadow of this set")->type_name("SET");
  c->add_option("--volume", o->volume, "Every shadow of this volume")
      ->type_name("VOLUME");
  c->add_flag("--filesystem", o->filesystem,
              "Also mount the filesystem in each image (or partition) "
              "read-only, nosuid, nodev and noexec beneath DIR (an XFS log "
              "is replayed into memory, never into the shadow)");
  c->footer(
      "Examples:\n  vssctl mount 1a2b /mnt/then --filesystem\n"
      "  vssctl mount --volume disk /mnt/history\n"
      "  vssctl unmount /mnt/then\n"
      "Files: <volume>@<YYYYMMDDTHHMMSSZ>.img per shadow (UTC creation "
      "time), -pN.img per partition.");
  c->callback([&cli, o] {
    int groups = !o->set.empty() + !o->volume.empty();
    if (groups > 1) UsageError("mount: give only one of --set, --volume");
    if (groups == 1) {
      // The one positional given is the directory.
      if (!o->dir.empty()) {
        UsageError("mount: SHADOW and --set/--volume exclude each other");
      }
      o->dir = o->shadow;
      o->shadow.clear();
    }
    if (o->dir.empty()) {
      UsageError(
          "mount: give SHADOW DIR, or --set SET DIR, or --volume "
          "VOLUME DIR");
    }
    cli.run = [&cli, o] { return RunMount(cli, *o); };
  });
}

void AddAttachUnmount(CLI::App& app, Cli& cli) {
  auto a = std::make_shared<AttachOptions>();
  CLI::App* attach = app.add_subcommand(
      "attach",
      "Present a live volume as a read-write file (FUSE, copy-on-write)");
  attach->add_option("VOLUME", a->volume, "Volume name or id")->required();
  attach
      ->add_option("FILE", a->file,
                   "File to mount on (created if missing, removed again "
                   "on unmount)")
      ->required();
  attach->footer(
      "Example:\n  vssctl attach disk /tmp/disk.raw\n"
      "  losetup -f --show /tmp/disk.raw; mount /dev/loopN /mnt/disk\n"
      "  vssctl unmount /tmp/disk.raw");
  attach->callback(
      [&cli, a] { cli.run = [&cli, a] { return RunAttach(cli, *a); }; });

  auto path = std::make_shared<std::string>();
  CLI::App* unmount = app.add_subcommand(
      "unmount",
      "Undo a mount or attach: filesystems beneath, loop devices, FUSE");
  unmount->add_option("DIR", *path, "Mount directory or attached file")
      ->required();
  unmount->footer("Example:\n  vssctl unmount /mnt/then");
  unmount->callback([&cli, path] {
    cli.run = [&cli, path] { return RunUnmount(cli, *path); };
  });
}

}  // namespace

void AddMountCommands(CLI::App& app, Cli& cli) {
  AddMount(app, cli);
  AddAttachUnmount(app, cli);
}

}  // namespace vss::tools
