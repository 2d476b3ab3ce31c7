// hold_requester: a requester process for the daemon tests. It creates one
// shadow copy set of VOLUME through vssd (the whole backup sequence up to
// DoSnapshotSet), prints each shadow id on a line, then waits until its
// standard input closes (or it is killed), so that a test can kill it while
// it holds the set.
//
//   hold_requester STORE VOLUME [CONTEXT]     CONTEXT: a number, default 0
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "vss/vss.h"

namespace {

int Fail(const std::string& what, const vss::VssStatus& s) {
  std::fprintf(stderr, "hold_requester: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: hold_requester STORE VOLUME [CONTEXT]\n");
    return 2;
  }
  vss::ServiceOptions options;
  options.store_dir = argv[1];
  options.mode = vss::ServiceOptions::Mode::kDaemon;
  auto service = vss::Service::Connect(options);
  if (!service.ok()) return Fail("connect", service.status());
  auto made = (*service)->CreateBackupComponents();
  if (!made.ok()) return Fail("CreateBackupComponents", made.status());
  vss::BackupComponents& bc = **made;
  int32_t context = argc == 4 ? static_cast<int32_t>(std::strtol(argv[3], nullptr, 0)) : 0;
  vss::VssStatus s = bc.InitializeForBackup();
  if (s.ok()) s = bc.SetContext(context);
  if (s.ok()) s = bc.SetBackupState(false, false, vss::VSS_BT_FULL);
  if (!s.ok()) return Fail("set-up", s);
  auto wait = [](const vss::VssStatusOr<std::shared_ptr<vss::Async>>& a) {
    if (!a.ok()) return a.status();
    (*a)->Wait();
    return (*a)->Result();
  };
  if (s = wait(bc.GatherWriterMetadata()); !s.ok()) return Fail("GatherWriterMetadata", s);
  if (auto set = bc.StartSnapshotSet(); !set.ok()) return Fail("StartSnapshotSet", set.status());
  auto shadow = bc.AddToSnapshotSet(argv[2]);
  if (!shadow.ok()) return Fail("AddToSnapshotSet", shadow.status());
  if (s = wait(bc.PrepareForBackup()); !s.ok()) return Fail("PrepareForBackup", s);
  if (s = wait(bc.DoSnapshotSet()); !s.ok()) return Fail("DoSnapshotSet", s);
  std::printf("%s\n", shadow->ToString().c_str());
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}
