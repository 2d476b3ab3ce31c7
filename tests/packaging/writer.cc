// file: writer.cc
// A small VSS writer: an application whose files are under DIR on VOLUME
// takes part in every backup of VOLUME, and holds its writes while the
// shadow is taken.
//
//   writer STORE VOLUME/DIR
//
// It subscribes through vssd when vssd serves STORE (then requesters in any
// process reach it), else in this process, and runs until SIGINT or SIGTERM.
#include <pthread.h>
#include <signal.h>

#include <iostream>
#include <memory>
#include <string>

#include <vss/vss.h>

namespace {

class SampleWriter final : public vss::Writer {
 public:
  explicit SampleWriter(std::string data_path) : data_path_(std::move(data_path)) {}
  // Unsubscribes before the handlers of this class go away.
  ~SampleWriter() override { Unsubscribe().IgnoreError(); }

  // One file-group component: every file under the data path.
  bool OnIdentify(vss::CreateWriterMetadata& metadata) override {
    return metadata.AddComponent(vss::VSS_CT_FILEGROUP, "sample", "data", "the sample's files")
               .ok() &&
           metadata.AddFilesToFileGroup("sample", "data", data_path_, "*", /*recursive=*/true).ok();
  }
  bool OnPrepareSnapshot() override { return Log("PrepareSnapshot"); }
  // An application stops changing its files here, until OnThaw or OnAbort.
  bool OnFreeze() override { return Log("Freeze: holding writes to " + data_path_); }
  bool OnThaw() override { return Log("Thaw: writes resume"); }
  bool OnAbort() override { return Log("Abort: writes resume"); }
  bool OnBackupComplete(vss::WriterComponents&) override { return Log("BackupComplete"); }
  bool OnPostRestore(vss::WriterComponents&) override { return Log("PostRestore"); }

 private:
  bool Log(const std::string& event) {
    std::cout << "writer: " << event << std::endl;
    return true;
  }

  std::string data_path_;
};

// The writer's class id: the same in every run, so requesters know it.
const vss::Guid kWriterClassId = *vss::Guid::Parse("6d1b3c1e-5a55-4f5e-9c3e-2a6f0b7e4d10");

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: writer STORE VOLUME/DIR\n";
    return 2;
  }
  // SIGINT and SIGTERM are taken by sigwait below: block them before any
  // thread starts so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  vss::ServiceOptions options;
  options.store_dir = argv[1];
  vss::VssStatusOr<std::unique_ptr<vss::Service>> service = vss::Service::Connect(options);
  if (!service.ok()) {
    std::cerr << "writer: connect to store " << options.store_dir << ": "
              << service.status().ToString() << "\n";
    return 1;
  }
  SampleWriter writer(argv[2]);
  vss::VssStatus s =
      writer.Initialize(kWriterClassId, "sample-writer", vss::VSS_UT_USERDATA, vss::VSS_ST_OTHER);
  if (s.ok()) s = writer.Subscribe(**service);
  if (!s.ok()) {
    std::cerr << "writer: subscribe: " << s.ToString() << "\n";
    return 1;
  }
  std::cout << "writer: subscribed, " << (*service)->Describe() << std::endl;
  if (!(*service)->remote()) {
    std::cout << "writer: no vssd serves the store: only requesters in this process reach "
                 "this writer"
              << std::endl;
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  s = writer.Unsubscribe();
  std::cout << "writer: stopped" << std::endl;
  return s.ok() ? 0 : 1;
}
