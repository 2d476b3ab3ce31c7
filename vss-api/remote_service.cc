// The client side of the vssd protocol: a Service whose requesters and
// writers live in vssd's coordinator.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <utility>

#include "ipc.h"
#include "remote.h"
#include "rpc_methods.h"
#include "wire.h"

namespace vss::internal {
namespace {


VssStatus Status(const VssStatusOr<Json>& r) { return rpc::StatusReply::Read(r); }

class RemoteService;

// A requester whose LocalBackupComponents runs in vssd.
class RemoteBackupComponents final : public BackupComponents {
 public:
  RemoteBackupComponents(std::shared_ptr<Channel> channel, int64_t handle, Guid session)
      : channel_(std::move(channel)), handle_(handle), session_(session) {}
  ~RemoteBackupComponents() override {
    // vssd waits for a running operation, releases auto-release shadows
    // and sends BackupShutdown when it destroys its side.
    Call("DestroyBackupComponents").status().IgnoreError();
  }

  VssStatus InitializeForBackup(const std::string& bcd_json) override {
    return Invoke<rpc::InitializeForBackup>(bcd_json);
  }
  VssStatus InitializeForRestore(const std::string& bcd_json) override {
    return Invoke<rpc::InitializeForRestore>(bcd_json);
  }
  VssStatus SetContext(int32_t context) override { return Invoke<rpc::SetContext>(context); }
  VssStatus SetBackupState(bool select_components, bool bootable_system_state,
                           VSS_BACKUP_TYPE backup_type, bool partial_file_support) override {
    return Invoke<rpc::SetBackupState>(select_components, bootable_system_state, backup_type,
                                       partial_file_support);
  }
  VssStatus SetRestoreState(VSS_RESTORE_TYPE restore_type) override {
    return Invoke<rpc::SetRestoreState>(restore_type);
  }
  Guid GetSessionId() const override { return session_; }

  VssStatusOr<std::shared_ptr<Async>> GatherWriterMetadata() override {
    return StartAsync<rpc::GatherWriterMetadata>();
  }
  size_t GetWriterMetadataCount() const override {
    return Invoke<rpc::GetWriterMetadataCount>();
  }
  VssStatusOr<ExamineWriterMetadata> GetWriterMetadata(size_t i) const override {
    return Invoke<rpc::GetWriterMetadata>(i);
  }
  VssStatusOr<std::shared_ptr<Async>> GatherWriterStatus() override {
    return StartAsync<rpc::GatherWriterStatus>();
  }
  size_t GetWriterStatusCount() const override { return Invoke<rpc::GetWriterStatusCount>(); }
  VssStatusOr<WriterStatus> GetWriterStatus(size_t i) const override {
    return Invoke<rpc::GetWriterStatus>(i);
  }

  VssStatus AddComponent(const ComponentKey& key) override {
    return Invoke<rpc::AddComponent>(key);
  }
  VssStatus SetBackupSucceeded(const ComponentKey& key, bool succeeded) override {
    return Invoke<rpc::SetBackupSucceeded>(key, succeeded);
  }
  VssStatus SetBackupOptions(const ComponentKey& key, const std::string& options) override {
    return Invoke<rpc::SetBackupOptions>(key, options);
  }
  VssStatus SetPreviousBackupStamp(const ComponentKey& key, const std::string& stamp) override {
    return Invoke<rpc::SetPreviousBackupStamp>(key, stamp);
  }
  size_t GetWriterComponentsCount() const override {
    return Invoke<rpc::GetWriterComponentsCount>();
  }
  VssStatusOr<WriterComponents> GetWriterComponents(size_t i) const override {
    return Invoke<rpc::GetWriterComponents>(i);
  }
  VssStatusOr<std::string> SaveAsJson() const override { return Invoke<rpc::SaveAsJson>(); }

  VssStatusOr<Guid> StartSnapshotSet() override { return Invoke<rpc::StartSnapshotSet>(); }
  VssStatusOr<Guid> AddToSnapshotSet(const std::string& volume, const Guid& provider_id) override {
    return Invoke<rpc::AddToSnapshotSet>(volume, provider_id);
  }
  VssStatusOr<std::shared_ptr<Async>> PrepareForBackup() override {
    return StartAsync<rpc::PrepareForBackup>();
  }
  VssStatusOr<std::shared_ptr<Async>> DoSnapshotSet() override {
    return StartAsync<rpc::DoSnapshotSet>();
  }
  VssStatusOr<std::shared_ptr<Async>> BackupComplete() override {
    return StartAsync<rpc::BackupComplete>();
  }
  VssStatus AbortBackup() override { return Invoke<rpc::AbortBackup>(); }

  VssStatusOr<SnapshotProp> GetSnapshotProperties(const Guid& snapshot_id) override {
    return Invoke<rpc::GetSnapshotProperties>(snapshot_id);
  }
  VssStatusOr<std::vector<SnapshotProp>> Query() override { return Invoke<rpc::Query>(); }
  VssStatusOr<DeleteResult> DeleteSnapshots(const Guid& source_id, VSS_OBJECT_TYPE type,
                                            bool force) override {
    return Invoke<rpc::DeleteSnapshots>(source_id, type, force);
  }
  VssStatus RevertToSnapshot(const Guid& snapshot_id, bool force_dismount) override {
    return Invoke<rpc::RevertToSnapshot>(snapshot_id, force_dismount);
  }

  VssStatus SetSelectedForRestore(const ComponentKey& key, bool selected) override {
    return Invoke<rpc::SetSelectedForRestore>(key, selected);
  }
  VssStatusOr<std::shared_ptr<Async>> PreRestore() override {
    return StartAsync<rpc::PreRestore>();
  }
  VssStatus SetFileRestoreStatus(const ComponentKey& key,
                                 VSS_FILE_RESTORE_STATUS status) override {
    return Invoke<rpc::SetFileRestoreStatus>(key, status);
  }
  VssStatusOr<std::shared_ptr<Async>> PostRestore() override {
    return StartAsync<rpc::PostRestore>();
  }

 private:
  VssStatusOr<Json> Call(const std::string& method, Json args = Json::object()) const {
    args["handle"] = handle_;
    return channel_->Call(method, std::move(args));
  }
  // A method of the table (rpc_methods.h): its arguments encoded, its
  // reply read, by the same definitions the host serves it with.
  template <typename M, typename... A>
  auto Invoke(const A&... args) const
      -> decltype(M::Reply::Read(std::declval<VssStatusOr<Json>>())) {
    return M::Reply::Read(Call(M::kName, M::Encode(args...)));
  }
  // vssd starts the operation and answers at once (or with the call-time
  // error); the Async here waits for vssd's "Wait" and forwards Cancel.
  template <typename M>
  VssStatusOr<std::shared_ptr<Async>> StartAsync() {
    VssStatus s = Status(Call(M::kName));
    if (!s.ok()) return s;
    std::shared_ptr<Channel> channel = channel_;
    int64_t handle = handle_;
    return Async::Start([channel, handle](const CancelToken& cancel) -> VssStatus {
      auto done = std::make_shared<std::promise<VssStatusOr<Json>>>();
      std::future<VssStatusOr<Json>> f = done->get_future();
      channel->CallAsync("Wait", Json{{"handle", handle}}, [done](const VssStatus& st, Json r) {
        if (st.ok()) {
          done->set_value(std::move(r));
        } else {
          done->set_value(st);
        }
      });
      bool cancel_sent = false;
      while (f.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
        if (cancel.cancelled() && !cancel_sent) {
          cancel_sent = true;
          channel->CallAsync("Cancel", Json{{"handle", handle}}, [](const VssStatus&, Json) {});
        }
      }
      VssStatusOr<Json> r = f.get();
      if (!r.ok()) return r.status();
      VssStatus result = StatusFromJson(*r);
      // Success codes (VSS_S_ASYNC_FINISHED, ..._CANCELLED) pass through.
      return VssStatus(result.code(), r->value("message", std::string()));
    });
  }

  std::shared_ptr<Channel> channel_;
  int64_t handle_;
  Guid session_;
};

class RemoteService final : public Service {
 public:
  RemoteService(std::string store_dir, std::string socket)
      : Service(std::move(store_dir)), socket_(std::move(socket)) {}
  ~RemoteService() override {
    channel_->Close();
    channel_.reset();  // joins its threads before the endpoints go
  }

  VssStatus Open(int fd) {
    channel_ = std::make_shared<Channel>(
        fd,
        [this](const std::string& m, Json a, Channel::Reply r) {
          OnCall(m, std::move(a), std::move(r));
        },
        nullptr);
    channel_->Start();
    VssStatusOr<Json> hello = channel_->Call("Hello", Json{{"version", kProtocolVersion}});
    if (!hello.ok()) return hello.status();
    if (hello->value("version", 0) != kProtocolVersion) {
      return VssError(E_UNEXPECTED, "vssd on " + socket_ + " speaks protocol version " +
                                        std::to_string(hello->value("version", 0)) +
                                        ", this library " + std::to_string(kProtocolVersion));
    }
    privileged_ = hello->value("privileged", false);
    return VssStatus::Ok();
  }

  bool remote() const override { return true; }
  std::string Describe() const override { return "vssd on " + socket_; }

  VssStatusOr<std::unique_ptr<BackupComponents>> CreateBackupComponents() override {
    VssStatusOr<Json> r = channel_->Call("CreateBackupComponents", Json::object());
    if (!r.ok()) return r.status();
    try {
      return std::unique_ptr<BackupComponents>(new RemoteBackupComponents(
          channel_, IntFromJson<int64_t>(r->at("handle")), GuidFromJson(r->at("session_id"))));
    } catch (const std::exception& e) {
      return VssError(E_UNEXPECTED, std::string("vssd answered wrongly: ") + e.what());
    }
  }
  VssStatusOr<std::vector<WriterStatus>> ListWriters() override {
    return rpc::ValueReply<rpc::ListOf<rpc::WriterStatusCodec>>::Read(
        channel_->Call("ListWriters", Json::object()));
  }
  VssStatusOr<std::vector<ProviderProp>> ListProviders() override {
    return rpc::ValueReply<rpc::ListOf<rpc::ProviderPropCodec>>::Read(
        channel_->Call("ListProviders", Json::object()));
  }

  VssStatus Subscribe(std::shared_ptr<WriterEndpoint> endpoint) override {
    const Guid id = endpoint->registration().identity.instance_id;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (writers_.count(id) != 0) {
        return VssError(VSS_E_WRITER_ALREADY_SUBSCRIBED,
                        "writer instance " + id.ToString() + " is already subscribed");
      }
      writers_[id] = endpoint;  // before vssd can send it an event
    }
    VssStatus s = Status(
        channel_->Call("Subscribe", Json{{"registration", ToJson(endpoint->registration())}}));
    if (!s.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      writers_.erase(id);
    }
    return s;
  }
  VssStatus Unsubscribe(const Guid& instance_id) override {
    VssStatus s = Status(channel_->Call("Unsubscribe", Json{{"instance_id", instance_id.ToString()}}));
    std::lock_guard<std::mutex> l(mu_);
    writers_.erase(instance_id);
    return s;
  }
  engine::Store* store() override { return nullptr; }

 private:
  // vssd's calls: events for this process's writers.
  void OnCall(const std::string& method, Json args, Channel::Reply reply) {
    if (method != "WriterEvent") {
      reply(VssError(E_INVALIDARG, "unknown method " + method), nullptr);
      return;
    }
    Guid id = GuidFromJson(args.at("instance_id"));
    WriterEvent event = EventFromJson(args.at("event"));
    std::shared_ptr<WriterEndpoint> ep;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = writers_.find(id);
      if (it != writers_.end()) ep = it->second;
    }
    if (!ep) {
      reply(VssError(VSS_E_OBJECT_NOT_FOUND, "no writer instance " + id.ToString()), nullptr);
      return;
    }
    // Queued here, on the reader thread, so events keep their order; the
    // answer is awaited off it.
    std::shared_future<WriterEventResult> answer = ep->Send(std::move(event));
    channel_->Spawn([answer, reply] { reply(VssStatus::Ok(), ToJson(answer.get())); });
  }

  std::string socket_;
  bool privileged_ = false;
  std::mutex mu_;  // guards writers_
  std::map<Guid, std::shared_ptr<WriterEndpoint>> writers_;
  std::shared_ptr<Channel> channel_;  // last: its threads use the fields above
};

}  // namespace

VssStatusOr<std::unique_ptr<Service>> ConnectToDaemon(const std::string& store_dir,
                                                      const std::string& socket_path) {
  int fd = ConnectUnix(socket_path);
  if (fd < 0) {
    int e = errno;
    if (e == EACCES || e == EPERM) {
      return VssError(E_ACCESSDENIED, "vssd socket " + socket_path + ": " + std::strerror(e));
    }
    return VssError(E_UNEXPECTED, "no vssd answers on " + socket_path + ": " + std::strerror(e));
  }
  auto service = std::make_unique<RemoteService>(store_dir, socket_path);
  VssStatus s = service->Open(fd);
  if (!s.ok()) {
    // A socket that accepted but did not answer is not a daemon to fall
    // back from: report it as such.
    if (s.code() == E_UNEXPECTED) {
      return VssError(VSS_E_UNEXPECTED, "vssd on " + socket_path + " did not answer: " +
                                            s.message());
    }
    return s;
  }
  return std::unique_ptr<Service>(std::move(service));
}

}  // namespace vss::internal
