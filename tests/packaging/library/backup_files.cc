// file: backup_files.cc
// Backup and restore with the requester library (vss/api/backup.h): the
// VSS sequence, a sparse image per volume with checksums, and a restore
// that checks every image first. In-process (no vssd serving STORE).
//
//   backup_files backup STORE DIR VOLUME...
//   backup_files restore STORE DIR
#include <vss/api/backup.h>
#include <vss/vss.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

int Fail(const std::string& what, const vss::Status& s) {
  std::fprintf(stderr, "backup_files: %s: %s\n", what.c_str(),
               s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (!(command == "backup" && argc >= 5) &&
      !(command == "restore" && argc == 4)) {
    std::fprintf(
        stderr,
        "usage: backup_files backup STORE DIR VOLUME... | restore STORE DIR\n");
    return 2;
  }
  vss::ServiceOptions options;
  options.store_dir = argv[2];
  options.mode = vss::ServiceOptions::Mode::kInProcess;
  vss::VssStatusOr<std::unique_ptr<vss::Service>> service =
      vss::Service::Connect(options);
  if (!service.ok())
    return Fail("connect", vss::StatusFromVss(service.status()));

  if (command == "backup") {
    vss::BackupRequest req;
    req.dir = argv[3];
    req.volumes.assign(argv + 4, argv + argc);
    req.on_aborted = [](const vss::AbortReport& r) {
      for (const vss::WriterStatus& w : r.writers) {
        std::fprintf(stderr, "writer %s: %s\n", w.name.c_str(),
                     vss::WriterStateName(w.state).c_str());
      }
    };
    vss::StatusOr<vss::BackupResult> r = vss::Backup(**service, req);
    if (!r.ok()) return Fail("backup", r.status());
    for (const vss::BackedUpVolume& v : r->volumes) {
      std::printf("backed up %s to %s/%s (%llu bytes, xxh3-128 %s)\n",
                  v.volume.c_str(), req.dir.c_str(), v.image.c_str(),
                  static_cast<unsigned long long>(v.size), v.xxh3_128.c_str());
    }
    return r->backup_complete.ok() ? 0
                                   : Fail("BackupComplete", r->backup_complete);
  }
  vss::StatusOr<vss::RestoreResult> r =
      vss::Restore(**service, {.dir = argv[3]});
  if (!r.ok()) return Fail("restore", r.status());
  for (const vss::RestoredVolume& v : r->restored) {
    std::printf("restored %s from %s\n", v.volume.c_str(), v.image.c_str());
  }
  return r->status().ok() ? 0 : Fail("restore", r->status());
}
