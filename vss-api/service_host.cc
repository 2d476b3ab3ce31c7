#include "vss/api/daemon/service_host.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "ipc.h"
#include "rpc_methods.h"
#include "vss/api/backup_components.h"
#include "wire.h"

namespace vss {
namespace {

using internal::Channel;
using internal::IntFromJson;
using internal::Json;
namespace rpc = internal::rpc;

// A writer in the peer's process, as the coordinator sees it: each event is
// a "WriterEvent" call on the connection.
class SocketWriterEndpoint final : public WriterEndpoint {
 public:
  SocketWriterEndpoint(WriterRegistration reg, std::weak_ptr<Channel> channel)
      : reg_(std::move(reg)), channel_(std::move(channel)) {}

  const WriterRegistration& registration() const override { return reg_; }

  std::shared_future<WriterEventResult> Send(WriterEvent event) override {
    auto p = std::make_shared<std::promise<WriterEventResult>>();
    std::shared_future<WriterEventResult> f = p->get_future().share();
    Json args{{"instance_id", reg_.identity.instance_id.ToString()},
              {"event", internal::ToJson(event)}};
    // Sessions keep their writers' endpoints after the connection is gone
    // (an Abort or BackupShutdown may still be sent): then it answers gone.
    std::shared_ptr<Channel> channel = channel_.lock();
    if (!channel) {
      WriterEventResult r;
      r.success = false;
      r.failure = VSS_E_WRITER_INFRASTRUCTURE;
      r.message = "the writer's process is gone";
      p->set_value(std::move(r));
      return f;
    }
    channel->CallAsync("WriterEvent", std::move(args), [p](const VssStatus& s, Json result) {
      WriterEventResult r;
      if (s.ok()) {
        try {
          r = internal::EventResultFromJson(result);
          p->set_value(std::move(r));
          return;
        } catch (const std::exception& e) {
          r.message = std::string("the writer answered wrongly: ") + e.what();
        }
      } else {
        r.message = "the writer's process is gone: " + s.message();
      }
      r.success = false;
      r.failure = VSS_E_WRITER_INFRASTRUCTURE;
      p->set_value(std::move(r));
    });
    return f;
  }

 private:
  WriterRegistration reg_;
  std::weak_ptr<Channel> channel_;
};

VssStatus AccessDenied(const std::string& peer, const std::string& method) {
  return VssError(E_ACCESSDENIED, peer + " may not call " + method +
                                      " (only root and the store's owner may change it)");
}

Json StatusJson(const VssStatus& s) { return Json{{"hr", s.code()}, {"message", s.message()}}; }

// A requester object of the peer, and its running asynchronous operation.
struct Requester {
  LocalBackupComponents bc;
  std::mutex mu;
  std::shared_ptr<Async> op;  // the last asynchronous operation started
  explicit Requester(Coordinator& c) : bc(c) {}
};

// The requester methods, made from the one table of rpc_methods.h.
const std::map<std::string, rpc::SyncServe>& SyncCalls() {
  static const std::map<std::string, rpc::SyncServe> calls =
      rpc::MakeDispatch(rpc::SyncMethods{});
  return calls;
}

const std::map<std::string, rpc::AsyncStart>& AsyncCalls() {
  static const std::map<std::string, rpc::AsyncStart> calls =
      rpc::MakeAsyncDispatch(rpc::AsyncMethods{});
  return calls;
}

}  // namespace

// One peer.
class HostConnection {
 public:
  HostConnection(Coordinator& coordinator, const std::string& store_dir, int fd, bool privileged,
                 std::string peer, std::function<void(const std::string& reason)> on_closed)
      : coordinator_(coordinator),
        store_dir_(store_dir),
        privileged_(privileged),
        peer_(std::move(peer)),
        on_closed_(std::move(on_closed)),
        channel_(std::make_shared<Channel>(
            fd,
            [this](const std::string& m, Json a, Channel::Reply r) {
              OnCall(m, std::move(a), std::move(r));
            },
            [this](const std::string& reason) { OnClose(reason); })) {}
  // Waits for the connection's threads, which use this object.
  ~HostConnection() { channel_->Shutdown(); }

  // Before Start: runs once after the connection closed.
  // `reason`: why this side closed it (empty when the peer did).
  void SetOnClosed(std::function<void(const std::string& reason)> f) {
    on_closed_ = std::move(f);
  }
  const std::string& peer() const { return peer_; }
  void Start() { channel_->Start(); }
  void Close() { channel_->Close(); }
  bool closed() const { return closed_.load(); }

 private:
  void OnCall(const std::string& method, Json args, Channel::Reply reply) {
    if (method == "Hello") {
      reply(VssStatus::Ok(), Json{{"version", internal::kProtocolVersion},
                                  {"store", store_dir_},
                                  {"privileged", privileged_},
                                  {"pid", static_cast<int64_t>(::getpid())}});
      return;
    }
    if (method == "ListWriters") {
      reply(VssStatus::Ok(),
            rpc::ListOf<rpc::WriterStatusCodec>::Encode(coordinator_.ListWriters()));
      return;
    }
    if (method == "ListProviders") {
      reply(VssStatus::Ok(),
            Json::array({internal::ToJson(coordinator_.provider().GetProviderProperties())}));
      return;
    }
    if (!privileged_) {
      reply(AccessDenied(peer_, method), nullptr);
      return;
    }
    // The rest may block (a requester's call can wait for writers, which
    // may answer on this very connection): each runs on a thread of its
    // own. A peer's calls on one requester object do not overlap.
    channel_->Spawn([this, method, args = std::move(args), reply = std::move(reply)] {
      VssStatusOr<Json> r = VssError(E_INVALIDARG, "unknown method " + method);
      try {
        r = Handle(method, args);
      } catch (const std::exception& e) {
        r = VssError(E_INVALIDARG, "bad arguments to " + method + ": " + e.what());
      }
      if (r.ok()) {
        reply(VssStatus::Ok(), std::move(*r));
      } else {
        reply(r.status(), nullptr);
      }
    });
  }

  VssStatusOr<Json> Handle(const std::string& method, const Json& args) {
    if (method == "Subscribe") {
      WriterRegistration reg = internal::RegistrationFromJson(args.at("registration"));
      auto ep = std::make_shared<SocketWriterEndpoint>(reg, channel_);
      std::lock_guard<std::mutex> l(mu_);
      if (closed_) return VssError(E_UNEXPECTED, "connection closing");
      VssStatus s = coordinator_.Subscribe(ep);
      if (!s.ok()) return s;
      writers_.push_back(reg.identity.instance_id);
      return Json();
    }
    if (method == "Unsubscribe") {
      Guid id = internal::GuidFromJson(args.at("instance_id"));
      std::lock_guard<std::mutex> l(mu_);
      auto it = std::find(writers_.begin(), writers_.end(), id);
      if (it == writers_.end()) {
        return VssError(VSS_E_OBJECT_NOT_FOUND, "no writer instance " + id.ToString() +
                                                    " subscribed on this connection");
      }
      writers_.erase(it);
      return rpc::StatusReply::Reply(coordinator_.Unsubscribe(id));
    }
    if (method == "CreateBackupComponents") {
      auto r = std::make_shared<Requester>(coordinator_);
      std::lock_guard<std::mutex> l(mu_);
      if (closed_) return VssError(E_UNEXPECTED, "connection closing");
      int64_t h = next_handle_++;
      requesters_[h] = r;
      return Json{{"handle", h}, {"session_id", r->bc.GetSessionId().ToString()}};
    }
    int64_t h = IntFromJson<int64_t>(args.at("handle"));
    std::shared_ptr<Requester> r;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = requesters_.find(h);
      if (it == requesters_.end()) {
        return VssError(E_INVALIDARG, "no requester " + std::to_string(h) + " on this connection");
      }
      r = it->second;
      if (method == "DestroyBackupComponents") requesters_.erase(it);
    }
    if (method == "DestroyBackupComponents") return Json();  // the last holder destroys it
    if (auto it = SyncCalls().find(method); it != SyncCalls().end()) {
      return it->second(r->bc, args);
    }
    if (auto it = AsyncCalls().find(method); it != AsyncCalls().end()) {
      VssStatusOr<std::shared_ptr<Async>> a = it->second(r->bc);
      if (!a.ok()) return a.status();
      std::lock_guard<std::mutex> l(r->mu);
      r->op = *a;
      return Json();
    }
    if (method == "Wait" || method == "Cancel") {
      std::shared_ptr<Async> op;
      {
        std::lock_guard<std::mutex> l(r->mu);
        op = r->op;
      }
      if (!op) return VssError(VSS_E_BAD_STATE, "no asynchronous operation was started");
      if (method == "Cancel") return Json(op->Cancel());
      op->Wait();
      return StatusJson(op->Result());
    }
    return VssError(E_INVALIDARG, "unknown method " + method);
  }

  // On the reader thread, once, after the peer is gone: its writers leave
  // the coordinator and its requesters are destroyed (each when its last
  // call ends), which releases their auto-release shadows.
  void OnClose(const std::string& reason) {
    std::vector<Guid> writers;
    std::map<int64_t, std::shared_ptr<Requester>> requesters;
    {
      std::lock_guard<std::mutex> l(mu_);
      closed_.store(true);
      writers.swap(writers_);
      requesters.swap(requesters_);
    }
    for (const Guid& id : writers) coordinator_.Unsubscribe(id).IgnoreError();
    requesters.clear();
    on_closed_(reason);
  }

  Coordinator& coordinator_;
  const std::string& store_dir_;
  const bool privileged_;
  const std::string peer_;
  std::function<void(const std::string& reason)> on_closed_;
  std::mutex mu_;  // guards the fields below
  std::atomic<bool> closed_{false};
  std::vector<Guid> writers_;
  std::map<int64_t, std::shared_ptr<Requester>> requesters_;
  int64_t next_handle_ = 1;
  // Last: its threads use the fields above. Shared with the writer
  // endpoints, which may outlive the connection.
  std::shared_ptr<Channel> channel_;
};

struct ServiceHost::Impl {
  Coordinator& coordinator;
  std::string store_dir;
  std::function<void(const std::string&)> log;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::list<std::unique_ptr<HostConnection>> live;
  std::list<std::unique_ptr<HostConnection>> dead;  // closed, to be destroyed
  bool stopping = false;
  std::thread reaper;

  Impl(Coordinator& c, std::string dir, std::function<void(const std::string&)> log_fn)
      : coordinator(c), store_dir(std::move(dir)), log(std::move(log_fn)) {
    reaper = std::thread([this] { Reap(); });
  }

  // Destroys closed connections off the reader threads (a connection's
  // destructor joins its own threads).
  void Reap() {
    std::unique_lock<std::mutex> l(mu);
    for (;;) {
      cv.wait(l, [&] { return !dead.empty() || (stopping && live.empty()); });
      std::list<std::unique_ptr<HostConnection>> batch;
      batch.swap(dead);
      l.unlock();
      batch.clear();
      l.lock();
      if (stopping && dead.empty() && live.empty()) return;
    }
  }

  void Closed(HostConnection* c, const std::string& reason) {
    if (!reason.empty() && log) {
      log("control connection of " + c->peer() + " closed: it sent " + reason);
    }
    std::lock_guard<std::mutex> l(mu);
    for (auto it = live.begin(); it != live.end(); ++it) {
      if (it->get() == c) {
        dead.splice(dead.end(), live, it);
        break;
      }
    }
    cv.notify_all();
  }
};

ServiceHost::ServiceHost(Coordinator& coordinator, std::string store_dir,
                         std::function<void(const std::string& line)> log)
    : impl_(std::make_unique<Impl>(coordinator, std::move(store_dir), std::move(log))) {}

ServiceHost::~ServiceHost() {
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->stopping = true;
    for (auto& c : impl_->live) c->Close();
    impl_->cv.notify_all();
  }
  impl_->reaper.join();
}

void ServiceHost::Serve(int fd, bool privileged, const std::string& peer) {
  Impl* impl = impl_.get();
  std::lock_guard<std::mutex> l(impl->mu);
  if (impl->stopping) {
    ::close(fd);
    return;
  }
  auto c = std::make_unique<HostConnection>(impl->coordinator, impl->store_dir, fd, privileged,
                                            peer, nullptr);
  HostConnection* raw = c.get();
  impl->live.push_back(std::move(c));
  raw->SetOnClosed([impl, raw](const std::string& reason) { impl->Closed(raw, reason); });
  raw->Start();
}

size_t ServiceHost::connections() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->live.size();
}

}  // namespace vss
