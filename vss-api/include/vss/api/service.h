// Service: how a requester, a writer or a tool reaches VSS for one store.
//
// Service::Connect finds vssd when it serves the store (its control socket
// answers) and talks to it; otherwise it opens the store in this process
// with a coordinator and the software provider of its own. The same
// requester and writer code runs either way:
//
//   auto service = vss::Service::Connect({.store_dir = "/srv/vss"});
//   auto bc = (*service)->CreateBackupComponents();   // a requester
//   my_writer.Subscribe(**service);                   // a writer
//
// In-process, the store's volumes are opened (and locked) by this process
// while a set is created, so another process holding a volume makes
// DoSnapshotSet fail; writers in other processes are only reached through
// vssd. Through vssd, the daemon runs a LocalBackupComponents for each
// requester object and releases its auto-release shadows when the
// requester's connection closes (the process exits or is killed).
//
// The protocol between a Service and vssd is vss-api/PROTOCOL.md.
//
// Lifetime: BackupComponents objects and writer subscriptions made through
// a Service must end before it is destroyed.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vss/api/backup_components.h"
#include "vss/api/coordinator.h"
#include "vss/api/hresult.h"
#include "vss/api/types.h"
#include "vss/api/writer_event.h"

namespace vss {

namespace engine {
class Store;
}

struct ServiceOptions {
  enum class Mode {
    kAuto,       // vssd if its socket answers, else in-process
    kInProcess,  // never the daemon
    kDaemon,     // only the daemon (for tools that need it running)
  };
  // Empty: $VSS_STORE, else $XDG_DATA_HOME/vss, else ~/.local/share/vss.
  std::string store_dir;
  // Empty: $VSS_SOCKET, else STORE/vssd.sock.
  std::string socket_path;
  Mode mode = Mode::kAuto;
  // In-process only (vssd has its own, from its command line).
  CoordinatorOptions coordinator;
};

// The control socket of the store `store_dir` (after the defaults above).
std::string DefaultSocketPath(const std::string& store_dir);

class Service : public WriterRegistry {
 public:
  // kAuto / kInProcess: in-process needs the store to exist
  // (VSS_E_OBJECT_NOT_FOUND naming it otherwise). kDaemon: E_UNEXPECTED
  // naming the socket when no vssd answers there. E_ACCESSDENIED when vssd
  // refuses this user.
  static VssStatusOr<std::unique_ptr<Service>> Connect(ServiceOptions options = {});
  ~Service() override = default;

  // True when calls go to vssd.
  virtual bool remote() const = 0;
  // "vssd on PATH" or "in-process on STORE", for messages.
  virtual std::string Describe() const = 0;
  const std::string& store_dir() const { return store_dir_; }

  // A new requester (CreateVssBackupComponents).
  virtual VssStatusOr<std::unique_ptr<BackupComponents>> CreateBackupComponents() = 0;
  // The subscribed writers with their state after the last event they got,
  // that event, and their last failure (vssadmin list writers).
  virtual VssStatusOr<std::vector<WriterStatus>> ListWriters() = 0;
  // The registered providers (vssadmin list providers).
  virtual VssStatusOr<std::vector<ProviderProp>> ListProviders() = 0;

  // WriterRegistry: Writer::Subscribe(service) lands here.
  VssStatus Subscribe(std::shared_ptr<WriterEndpoint> endpoint) override = 0;
  VssStatus Unsubscribe(const Guid& instance_id) override = 0;

  // The store when in-process, nullptr through vssd.
  virtual engine::Store* store() = 0;

 protected:
  explicit Service(std::string store_dir) : store_dir_(std::move(store_dir)) {}

 private:
  std::string store_dir_;
};

// CreateVssBackupComponents, as VSS names it.
inline VssStatusOr<std::unique_ptr<BackupComponents>> CreateVssBackupComponents(
    Service& service) {
  return service.CreateBackupComponents();
}

}  // namespace vss
