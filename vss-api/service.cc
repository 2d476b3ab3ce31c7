#include "vss/api/service.h"

#include <cstdlib>
#include <filesystem>

#include "remote.h"
#include "vss/api/provider.h"
#include "vss/engine/store.h"

namespace vss {
namespace {

// The store, the software provider and a coordinator, all in this process.
class InProcessService final : public Service {
 public:
  InProcessService(std::string dir, std::unique_ptr<engine::Store> store,
                   const CoordinatorOptions& options)
      : Service(std::move(dir)),
        store_(std::move(store)),
        provider_(*store_),
        coordinator_(provider_, options) {}

  bool remote() const override { return false; }
  std::string Describe() const override { return "in-process on " + store_dir(); }

  VssStatusOr<std::unique_ptr<BackupComponents>> CreateBackupComponents() override {
    return std::unique_ptr<BackupComponents>(new LocalBackupComponents(coordinator_));
  }
  VssStatusOr<std::vector<WriterStatus>> ListWriters() override {
    return coordinator_.ListWriters();
  }
  VssStatusOr<std::vector<ProviderProp>> ListProviders() override {
    return std::vector<ProviderProp>{provider_.GetProviderProperties()};
  }
  VssStatus Subscribe(std::shared_ptr<WriterEndpoint> endpoint) override {
    return coordinator_.Subscribe(std::move(endpoint));
  }
  VssStatus Unsubscribe(const Guid& instance_id) override {
    return coordinator_.Unsubscribe(instance_id);
  }
  engine::Store* store() override { return store_.get(); }

 private:
  std::unique_ptr<engine::Store> store_;
  SoftwareProvider provider_;
  Coordinator coordinator_;
};

std::string Normalize(const std::string& dir) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(dir, ec);
  std::string out = ec ? dir : abs.lexically_normal().string();
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace

std::string DefaultSocketPath(const std::string& store_dir) {
  const char* env = std::getenv("VSS_SOCKET");
  if (env != nullptr && *env != '\0') return env;
  return store_dir + "/vssd.sock";
}

VssStatusOr<std::unique_ptr<Service>> Service::Connect(ServiceOptions options) {
  std::string dir = Normalize(options.store_dir.empty() ? engine::DefaultStoreDir()
                                                        : options.store_dir);
  std::string socket =
      options.socket_path.empty() ? DefaultSocketPath(dir) : options.socket_path;
  if (options.mode != ServiceOptions::Mode::kInProcess) {
    VssStatusOr<std::unique_ptr<Service>> remote = internal::ConnectToDaemon(dir, socket);
    // Only "nothing listens there" falls back to in-process: a daemon that
    // answers and refuses is an answer.
    if (remote.ok() || remote.status().code() != E_UNEXPECTED ||
        options.mode == ServiceOptions::Mode::kDaemon) {
      return remote;
    }
  }
  std::error_code ec;
  if (!std::filesystem::exists(dir + "/catalog.db", ec)) {
    return VssError(VSS_E_OBJECT_NOT_FOUND, "store " + dir + " does not exist");
  }
  engine::StoreOptions so;
  so.dir = dir;
  auto store = engine::Store::Open(so);
  if (!store.ok()) return VssStatus::FromStatus(store.status());
  return std::unique_ptr<Service>(
      new InProcessService(dir, std::move(*store), options.coordinator));
}

}  // namespace vss
