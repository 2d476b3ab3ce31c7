#include "vss/api/writer.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "vss/api/writer_event.h"

namespace vss {

const char* WriterEventName(WriterEventKind kind) {
  switch (kind) {
    case WriterEventKind::kIdentify: return "Identify";
    case WriterEventKind::kPrepareBackup: return "PrepareForBackup";
    case WriterEventKind::kPrepareSnapshot: return "PrepareForSnapshot";
    case WriterEventKind::kFreeze: return "Freeze";
    case WriterEventKind::kThaw: return "Thaw";
    case WriterEventKind::kPostSnapshot: return "PostSnapshot";
    case WriterEventKind::kAbort: return "Abort";
    case WriterEventKind::kBackupComplete: return "BackupComplete";
    case WriterEventKind::kBackupShutdown: return "BackupShutdown";
    case WriterEventKind::kPreRestore: return "PreRestore";
    case WriterEventKind::kPostRestore: return "PostRestore";
  }
  return "?";
}

// The in-process endpoint: one event thread per writer, delivering queued
// events in order to the Writer's handlers.
class LocalWriterEndpoint final : public WriterEndpoint {
 public:
  LocalWriterEndpoint(Writer* writer, WriterRegistration reg)
      : writer_(writer), reg_(std::move(reg)), thread_([this] { Run(); }) {}
  ~LocalWriterEndpoint() override { Stop(); }

  const WriterRegistration& registration() const override { return reg_; }

  std::shared_future<WriterEventResult> Send(WriterEvent event) override {
    std::promise<WriterEventResult> p;
    std::shared_future<WriterEventResult> f = p.get_future().share();
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) {
      p.set_value(Gone());
    } else {
      queue_.push_back({std::move(event), std::move(p)});
      cv_.notify_all();
    }
    return f;
  }

  // Answers queued events as gone and waits for a running handler.
  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) {
        // Already stopped (or stopping on another thread).
      }
      stopping_ = true;
      for (auto& q : queue_) q.promise.set_value(Gone());
      queue_.clear();
      cv_.notify_all();
    }
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

 private:
  struct Queued {
    WriterEvent event;
    std::promise<WriterEventResult> promise;
  };
  static WriterEventResult Gone() {
    WriterEventResult r;
    r.success = false;
    r.failure = VSS_E_WRITER_INFRASTRUCTURE;
    r.message = "the writer unsubscribed";
    return r;
  }
  void Run() {
    for (;;) {
      Queued q;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        q = std::move(queue_.front());
        queue_.pop_front();
      }
      q.promise.set_value(writer_->Dispatch(q.event));
    }
  }

  Writer* writer_;
  WriterRegistration reg_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the fields above exist
};

Writer::Writer() = default;

Writer::~Writer() { Unsubscribe().IgnoreError(); }

VssStatus Writer::Initialize(const Guid& writer_class_id, const std::string& name,
                             VSS_USAGE_TYPE usage, VSS_SOURCE_TYPE source,
                             VSS_APPLICATION_LEVEL level, uint32_t freeze_timeout_ms,
                             const std::string& instance_name) {
  if (registry_ != nullptr) return VssError(VSS_E_BAD_STATE, "writer " + name + " is subscribed");
  if (writer_class_id.IsNull() || name.empty()) {
    return VssError(E_INVALIDARG, "a writer needs a class id and a name");
  }
  if (level != VSS_APP_SYSTEM && level != VSS_APP_BACK_END && level != VSS_APP_FRONT_END) {
    return VssError(E_INVALIDARG, "writer level must be SYSTEM, BACK_END or FRONT_END");
  }
  registration_.identity.instance_id = Guid::Generate();
  registration_.identity.writer_id = writer_class_id;
  registration_.identity.name = name;
  registration_.identity.instance_name = instance_name;
  registration_.identity.usage = usage;
  registration_.identity.source = source;
  registration_.level = level;
  registration_.freeze_timeout_ms = freeze_timeout_ms;
  initialized_ = true;
  return VssStatus::Ok();
}

VssStatus Writer::Subscribe(WriterRegistry& registry, int32_t event_flags) {
  if (!initialized_) return VssError(VSS_E_BAD_STATE, "Subscribe before Initialize");
  if (registry_ != nullptr) {
    return VssError(VSS_E_WRITER_ALREADY_SUBSCRIBED,
                    "writer " + registration_.identity.name + " is already subscribed");
  }
  registration_.event_flags = event_flags;
  auto ep = std::make_shared<LocalWriterEndpoint>(this, registration_);
  VssStatus s = registry.Subscribe(ep);
  if (!s.ok()) {
    ep->Stop();
    return s;
  }
  endpoint_ = std::move(ep);
  registry_ = &registry;
  return VssStatus::Ok();
}

VssStatus Writer::Unsubscribe() {
  if (registry_ == nullptr) return VssStatus::Ok();
  registry_->Unsubscribe(registration_.identity.instance_id).IgnoreError();
  endpoint_->Stop();
  endpoint_.reset();
  registry_ = nullptr;
  return VssStatus::Ok();
}

WriterEventResult Writer::Dispatch(const WriterEvent& event) {
  WriterEventResult result;
  result.components = event.components;
  current_ = &event;
  current_result_ = &result;
  bool ok = false;
  try {
    switch (event.kind) {
      case WriterEventKind::kIdentify: {
        CreateWriterMetadata md(registration_.identity);
        ok = OnIdentify(md);
        result.metadata = md.document();
        break;
      }
      case WriterEventKind::kPrepareBackup: ok = OnPrepareBackup(result.components); break;
      case WriterEventKind::kPrepareSnapshot: ok = OnPrepareSnapshot(); break;
      case WriterEventKind::kFreeze: ok = OnFreeze(); break;
      case WriterEventKind::kThaw: ok = OnThaw(); break;
      case WriterEventKind::kPostSnapshot: ok = OnPostSnapshot(result.components); break;
      case WriterEventKind::kAbort: ok = OnAbort(); break;
      case WriterEventKind::kBackupComplete: ok = OnBackupComplete(result.components); break;
      case WriterEventKind::kBackupShutdown: ok = OnBackupShutdown(event.snapshot_set_id); break;
      case WriterEventKind::kPreRestore: ok = OnPreRestore(result.components); break;
      case WriterEventKind::kPostRestore: ok = OnPostRestore(result.components); break;
    }
  } catch (const std::exception& e) {
    ok = false;
    result.failure = VSS_E_UNEXPECTED_WRITER_ERROR;
    result.message = std::string("handler threw: ") + e.what();
  } catch (...) {
    ok = false;
    result.failure = VSS_E_UNEXPECTED_WRITER_ERROR;
    result.message = "handler threw";
  }
  result.success = ok;
  current_ = nullptr;
  current_result_ = nullptr;
  return result;
}

Guid Writer::GetCurrentSnapshotSetId() const { return current_ ? current_->snapshot_set_id : Guid(); }

std::vector<std::string> Writer::GetCurrentVolumeArray() const {
  std::vector<std::string> v;
  if (current_ != nullptr) {
    for (const auto& e : current_->volumes) v.push_back(e.name);
  }
  return v;
}

size_t Writer::GetCurrentVolumeCount() const { return current_ ? current_->volumes.size() : 0; }

std::vector<EventVolume> Writer::GetCurrentVolumes() const {
  return current_ ? current_->volumes : std::vector<EventVolume>{};
}

VssStatusOr<std::string> Writer::GetSnapshotDeviceName(const std::string& original_volume) const {
  if (current_ != nullptr) {
    for (const auto& e : current_->volumes) {
      if (e.name == original_volume || e.id.ToString() == original_volume ||
          e.path == original_volume) {
        if (e.snapshot_device.empty()) break;
        return e.snapshot_device;
      }
    }
  }
  return VssError(VSS_E_OBJECT_NOT_FOUND, "no shadow of " + original_volume + " in the current set");
}

int32_t Writer::GetContext() const { return current_ ? current_->context : VSS_CTX_BACKUP; }
VSS_APPLICATION_LEVEL Writer::GetCurrentLevel() const {
  return current_ ? current_->level : VSS_APP_UNKNOWN;
}

bool Writer::IsPathAffected(const std::string& path) const {
  if (current_ == nullptr) return false;
  auto under = [&](const std::string& root) {
    if (root.empty()) return false;
    return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                            path[root.size()] == '/');
  };
  for (const auto& e : current_->volumes) {
    if (under(e.name) || under(e.id.ToString()) || under(e.path)) return true;
  }
  return false;
}

bool Writer::AreComponentsSelected() const { return current_ && current_->components_selected; }
bool Writer::IsBootableSystemStateBackedUp() const {
  return current_ && current_->bootable_system_state;
}
bool Writer::IsPartialFileSupportEnabled() const {
  return current_ && current_->partial_file_support;
}
VSS_BACKUP_TYPE Writer::GetBackupType() const {
  return current_ ? current_->backup_type : VSS_BT_UNDEFINED;
}
VSS_RESTORE_TYPE Writer::GetRestoreType() const {
  return current_ ? current_->restore_type : VSS_RTYPE_UNDEFINED;
}
Guid Writer::GetSessionId() const { return current_ ? current_->session_id : Guid(); }

VssStatus Writer::SetWriterFailure(HResult hr) { return SetWriterFailureEx(hr, S_OK, ""); }

VssStatus Writer::SetWriterFailureEx(HResult hr, HResult application_hr,
                                     const std::string& message) {
  if (current_ == nullptr || current_->kind == WriterEventKind::kIdentify) {
    return VssError(VSS_E_BAD_STATE, "SetWriterFailure outside a handler or in OnIdentify");
  }
  if (!IsWriterErrorCode(hr)) {
    return VssError(E_INVALIDARG, HResultName(hr) + " is not a VSS_E_WRITERERROR_* code");
  }
  current_result_->failure = hr;
  current_result_->application_hr = application_hr;
  current_result_->message = message;
  return VssStatus::Ok();
}

}  // namespace vss
