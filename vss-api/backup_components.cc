#include "vss/api/backup_components.h"

#include <algorithm>

namespace vss {
namespace {

VssStatus BadState(const std::string& what) { return VssError(VSS_E_BAD_STATE, what); }

bool PathUnder(const std::string& path, const std::string& root) {
  if (root.empty()) return false;
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                          path[root.size()] == '/');
}

// Every path a writer's metadata names.
std::vector<std::string> MetadataPaths(const WriterMetadataDocument& d) {
  std::vector<std::string> out;
  for (const auto& f : d.include_files) out.push_back(f.path);
  for (const auto& c : d.components) {
    for (const auto* list : {&c.files, &c.databases, &c.log_files}) {
      for (const auto& f : *list) out.push_back(f.path);
    }
  }
  return out;
}

}  // namespace

LocalBackupComponents::LocalBackupComponents(Coordinator& coordinator)
    : coordinator_(coordinator), provider_(coordinator.provider()) {}

LocalBackupComponents::~LocalBackupComponents() {
  std::shared_ptr<Async> op;
  {
    std::lock_guard<std::mutex> l(mu_);
    op = op_;
  }
  if (op) op->Wait();
  const bool auto_release = (context_ & (VSS_VOLSNAP_ATTR_PERSISTENT |
                                         VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE)) == 0;
  if (auto_release) {
    for (const SnapshotProp& p : created_) {
      provider_.DeleteSnapshot(p.snapshot_id).IgnoreError();  // may be gone already
    }
  }
  if (!set_writers_.empty() && phase_ != Phase::kSetStarted) {
    WriterEvent ev;
    {
      std::lock_guard<std::mutex> l(session_.mu);
      ev = BaseEvent(WriterEventKind::kBackupShutdown);
    }
    coordinator_.Dispatch(session_, set_writers_, ev).IgnoreError();
  }
}

bool LocalBackupComponents::IsBackupPhase() const {
  return phase_ == Phase::kBackup || phase_ == Phase::kSetStarted ||
         phase_ == Phase::kSnapshotDone || phase_ == Phase::kSnapshotFailed ||
         phase_ == Phase::kBackupComplete || phase_ == Phase::kAborted;
}

VssStatus LocalBackupComponents::Busy() const {
  if (op_running_) return BadState("an asynchronous operation of this requester is running");
  return VssStatus::Ok();
}

WriterEvent LocalBackupComponents::BaseEvent(WriterEventKind kind) {
  WriterEvent ev;
  ev.kind = kind;
  ev.session_id = session_.id;
  ev.snapshot_set_id = set_id_;
  ev.context = context_;
  ev.backup_type = session_.bcd.backup_type;
  ev.restore_type = session_.bcd.restore_type;
  ev.components_selected = session_.bcd.select_components;
  ev.bootable_system_state = session_.bcd.bootable_system_state;
  ev.partial_file_support = session_.bcd.partial_file_support;
  for (const SetVolume& v : volumes_) ev.volumes.push_back({v.volume.name, v.volume.id, v.volume.path, ""});
  for (auto& e : ev.volumes) {
    for (const SnapshotProp& p : created_) {
      if (p.original_volume_name == e.name) e.snapshot_device = p.snapshot_device_object;
    }
  }
  return ev;
}

void LocalBackupComponents::EnsureParticipants() {
  if (!session_.writers.empty()) return;
  for (const auto& ep : coordinator_.Writers()) {
    Participant p;
    p.endpoint = ep;
    const WriterIdentity& id = ep->registration().identity;
    p.status.instance_id = id.instance_id;
    p.status.writer_id = id.writer_id;
    p.status.name = id.name;
    p.status.instance_name = id.instance_name;
    session_.writers.push_back(std::move(p));
  }
}

std::vector<size_t> LocalBackupComponents::SnapshotWriters() {
  std::vector<size_t> out;
  for (size_t i = 0; i < session_.writers.size(); ++i) {
    const Participant& p = session_.writers[i];
    if (p.status.state == VSS_WS_FAILED_AT_IDENTIFY || p.unresponsive) continue;
    bool touches = true;
    if (p.metadata.has_value()) {
      std::vector<std::string> paths = MetadataPaths(*p.metadata);
      if (!paths.empty()) {
        touches = false;
        for (const auto& path : paths) {
          for (const SetVolume& v : volumes_) {
            if (PathUnder(path, v.volume.name) || PathUnder(path, v.volume.id.ToString()) ||
                PathUnder(path, v.volume.path)) {
              touches = true;
            }
          }
        }
      }
    }
    if (touches) out.push_back(i);
  }
  return out;
}

std::vector<size_t> LocalBackupComponents::BackupWriters() {
  std::vector<size_t> out;
  for (size_t i = 0; i < session_.writers.size(); ++i) {
    const Participant& p = session_.writers[i];
    if (p.status.state == VSS_WS_FAILED_AT_IDENTIFY || p.unresponsive) continue;
    if (session_.bcd.select_components) {
      WriterComponents* wc = session_.bcd.FindWriter(p.status.writer_id);
      if (wc == nullptr || wc->GetComponentCount() == 0) continue;
    }
    out.push_back(i);
  }
  return out;
}

std::vector<size_t> LocalBackupComponents::RestoreWriters() {
  std::vector<size_t> out;
  for (size_t i = 0; i < session_.writers.size(); ++i) {
    const Participant& p = session_.writers[i];
    if (p.unresponsive) continue;
    WriterComponents* wc = session_.bcd.FindWriter(p.status.writer_id);
    if (wc == nullptr) continue;
    bool selected = std::any_of(wc->components().begin(), wc->components().end(),
                                [](const Component& c) { return c.IsSelectedForRestore(); });
    if (selected) out.push_back(i);
  }
  return out;
}

Component* LocalBackupComponents::FindComponent(const ComponentKey& key) {
  WriterComponents* wc = session_.bcd.FindWriter(key.writer_id);
  if (wc == nullptr) return nullptr;
  Component* c = wc->Find(key.logical_path, key.component_name);
  if (c != nullptr && key.type != VSS_CT_UNDEFINED && c->GetComponentType() != key.type) return nullptr;
  return c;
}

std::shared_ptr<Async> LocalBackupComponents::Run(std::function<VssStatus(const CancelToken&)> op) {
  op_running_ = true;
  op_ = Async::Start([this, op = std::move(op)](const CancelToken& cancel) {
    VssStatus s = op(cancel);
    std::lock_guard<std::mutex> l(mu_);
    op_running_ = false;
    return s;
  });
  return op_;
}

// --- Set-up ---

VssStatus LocalBackupComponents::InitializeForBackup(const std::string& bcd_json) {
  std::lock_guard<std::mutex> l(mu_);
  if (phase_ != Phase::kNew) return BadState("InitializeForBackup: the requester is already initialized");
  BackupComponentsDocument doc;
  if (!bcd_json.empty()) {
    VssStatusOr<BackupComponentsDocument> d = BackupComponentsFromJson(bcd_json);
    if (!d.ok()) return d.status();
    doc = std::move(d).value();
  }
  std::lock_guard<std::mutex> s(session_.mu);
  session_.bcd = std::move(doc);
  context_ = session_.bcd.context;
  phase_ = Phase::kBackup;
  return VssStatus::Ok();
}

VssStatus LocalBackupComponents::InitializeForRestore(const std::string& bcd_json) {
  std::lock_guard<std::mutex> l(mu_);
  if (phase_ != Phase::kNew) return BadState("InitializeForRestore: the requester is already initialized");
  VssStatusOr<BackupComponentsDocument> d = BackupComponentsFromJson(bcd_json);
  if (!d.ok()) return d.status();
  std::lock_guard<std::mutex> s(session_.mu);
  session_.bcd = std::move(d).value();
  context_ = session_.bcd.context;
  set_id_ = session_.bcd.snapshot_set_id;
  phase_ = Phase::kRestore;
  return VssStatus::Ok();
}

VssStatus LocalBackupComponents::SetContext(int32_t context) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kBackup) return BadState("SetContext must come after InitializeForBackup and before StartSnapshotSet");
  if (context != VSS_CTX_ALL) VSS_RETURN_IF_VSS_ERROR(provider_.CheckContext(context));
  context_ = context;
  std::lock_guard<std::mutex> s(session_.mu);
  session_.bcd.context = context;
  return VssStatus::Ok();
}

VssStatus LocalBackupComponents::SetBackupState(bool select_components, bool bootable_system_state,
                                           VSS_BACKUP_TYPE backup_type, bool partial_file_support) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if ((phase_ != Phase::kBackup && phase_ != Phase::kSetStarted) || prepared_) {
    return BadState("SetBackupState must come before PrepareForBackup");
  }
  if (backup_type < VSS_BT_FULL || backup_type > VSS_BT_OTHER) {
    return VssError(E_INVALIDARG, "unknown backup type " + std::to_string(backup_type));
  }
  std::lock_guard<std::mutex> s(session_.mu);
  session_.bcd.select_components = select_components;
  session_.bcd.bootable_system_state = bootable_system_state;
  session_.bcd.backup_type = backup_type;
  session_.bcd.partial_file_support = partial_file_support;
  return VssStatus::Ok();
}

VssStatus LocalBackupComponents::SetRestoreState(VSS_RESTORE_TYPE restore_type) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kRestore) return BadState("SetRestoreState must come after InitializeForRestore and before PreRestore");
  std::lock_guard<std::mutex> s(session_.mu);
  session_.bcd.restore_type = restore_type;
  return VssStatus::Ok();
}

// --- Writers ---

VssStatusOr<std::shared_ptr<Async>> LocalBackupComponents::GatherWriterMetadata() {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (!(phase_ == Phase::kBackup || (phase_ == Phase::kSetStarted && !prepared_) ||
        phase_ == Phase::kRestore)) {
    return BadState("GatherWriterMetadata must come after Initialize and before PrepareForBackup/PreRestore");
  }
  std::vector<size_t> all;
  WriterEvent ev;
  {
    std::lock_guard<std::mutex> s(session_.mu);
    session_.writers.clear();
    EnsureParticipants();
    for (size_t i = 0; i < session_.writers.size(); ++i) all.push_back(i);
    ev = BaseEvent(WriterEventKind::kIdentify);
  }
  gathered_ = true;
  return Run([this, all, ev](const CancelToken&) {
    // An Identify failure leaves the writer out; it is not the call's failure.
    coordinator_.Dispatch(session_, all, ev).IgnoreError();
    return VssStatus::Ok();
  });
}

size_t LocalBackupComponents::GetWriterMetadataCount() const {
  std::lock_guard<std::mutex> l(session_.mu);
  size_t n = 0;
  for (const auto& p : session_.writers) n += p.metadata.has_value() ? 1 : 0;
  return n;
}

VssStatusOr<ExamineWriterMetadata> LocalBackupComponents::GetWriterMetadata(size_t i) const {
  std::lock_guard<std::mutex> l(session_.mu);
  size_t n = 0;
  for (const auto& p : session_.writers) {
    if (!p.metadata.has_value()) continue;
    if (n++ == i) return ExamineWriterMetadata(*p.metadata);
  }
  return VssError(E_INVALIDARG, "writer metadata index " + std::to_string(i) + " out of range");
}

VssStatusOr<std::shared_ptr<Async>> LocalBackupComponents::GatherWriterStatus() {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ == Phase::kNew) return BadState("GatherWriterStatus before Initialize");
  std::lock_guard<std::mutex> s(session_.mu);
  EnsureParticipants();
  return Async::Finished(VssStatus::Ok());
}

size_t LocalBackupComponents::GetWriterStatusCount() const {
  std::lock_guard<std::mutex> l(session_.mu);
  return session_.writers.size();
}

VssStatusOr<WriterStatus> LocalBackupComponents::GetWriterStatus(size_t i) const {
  std::lock_guard<std::mutex> l(session_.mu);
  if (i >= session_.writers.size()) {
    return VssError(E_INVALIDARG, "writer status index " + std::to_string(i) + " out of range");
  }
  return session_.writers[i].status;
}

// --- Components ---

VssStatus LocalBackupComponents::AddComponent(const ComponentKey& key) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (!(phase_ == Phase::kBackup || phase_ == Phase::kSetStarted) || prepared_) {
    return BadState("AddComponent must come after InitializeForBackup and before PrepareForBackup");
  }
  std::lock_guard<std::mutex> s(session_.mu);
  if (FindComponent(key) != nullptr) {
    return VssError(VSS_E_OBJECT_ALREADY_EXISTS, "component " + key.logical_path + "\\" +
                                                     key.component_name + " already added");
  }
  Guid instance_id;
  for (const auto& p : session_.writers) {
    if (p.status.writer_id != key.writer_id || !p.metadata.has_value()) continue;
    instance_id = p.status.instance_id;
    bool known = std::any_of(p.metadata->components.begin(), p.metadata->components.end(),
                             [&](const ComponentInfo& c) {
                               return c.logical_path == key.logical_path &&
                                      c.component_name == key.component_name &&
                                      c.type == key.type;
                             });
    if (!known) {
      return VssError(VSS_E_OBJECT_NOT_FOUND, "writer '" + p.status.name + "' has no component " +
                                                  key.logical_path + "\\" + key.component_name);
    }
  }
  WriterComponents* wc = session_.bcd.FindWriter(key.writer_id);
  if (wc == nullptr) {
    session_.bcd.writers.emplace_back(instance_id, key.writer_id);
    wc = &session_.bcd.writers.back();
  }
  wc->components().emplace_back(key.logical_path, key.component_name, key.type);
  return VssStatus::Ok();
}

namespace {
VssStatus NoComponent(const ComponentKey& key) {
  return VssError(VSS_E_OBJECT_NOT_FOUND, "no component " + key.logical_path + "\\" +
                                              key.component_name + " of writer " +
                                              key.writer_id.ToString() + " in the document");
}
}  // namespace

VssStatus LocalBackupComponents::SetBackupSucceeded(const ComponentKey& key, bool succeeded) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kSnapshotDone) return BadState("SetBackupSucceeded must come after DoSnapshotSet and before BackupComplete");
  std::lock_guard<std::mutex> s(session_.mu);
  Component* c = FindComponent(key);
  if (c == nullptr) return NoComponent(key);
  c->SetBackupSucceeded(succeeded);
  return VssStatus::Ok();
}

VssStatus LocalBackupComponents::SetBackupOptions(const ComponentKey& key, const std::string& options) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (!(phase_ == Phase::kBackup || phase_ == Phase::kSetStarted) || prepared_) {
    return BadState("SetBackupOptions must come before PrepareForBackup");
  }
  std::lock_guard<std::mutex> s(session_.mu);
  Component* c = FindComponent(key);
  if (c == nullptr) return NoComponent(key);
  c->SetBackupOptions(options);
  return VssStatus::Ok();
}

VssStatus LocalBackupComponents::SetPreviousBackupStamp(const ComponentKey& key, const std::string& stamp) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (!(phase_ == Phase::kBackup || phase_ == Phase::kSetStarted) || prepared_) {
    return BadState("SetPreviousBackupStamp must come before PrepareForBackup");
  }
  std::lock_guard<std::mutex> s(session_.mu);
  Component* c = FindComponent(key);
  if (c == nullptr) return NoComponent(key);
  c->SetPreviousBackupStamp(stamp);
  return VssStatus::Ok();
}

size_t LocalBackupComponents::GetWriterComponentsCount() const {
  std::lock_guard<std::mutex> l(session_.mu);
  return session_.bcd.writers.size();
}

VssStatusOr<WriterComponents> LocalBackupComponents::GetWriterComponents(size_t i) const {
  std::lock_guard<std::mutex> l(session_.mu);
  if (i >= session_.bcd.writers.size()) {
    return VssError(E_INVALIDARG, "writer components index " + std::to_string(i) + " out of range");
  }
  return session_.bcd.writers[i];
}

VssStatusOr<std::string> LocalBackupComponents::SaveAsJson() const {
  std::lock_guard<std::mutex> l(mu_);
  if (phase_ == Phase::kNew) return BadState("SaveAsJson before Initialize");
  std::lock_guard<std::mutex> s(session_.mu);
  return BackupComponentsToJson(session_.bcd);
}

// --- Shadow copy set ---

VssStatusOr<Guid> LocalBackupComponents::StartSnapshotSet() {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ == Phase::kSetStarted) {
    return VssError(VSS_E_SNAPSHOT_SET_IN_PROGRESS, "a shadow copy set is already started: " + set_id_.ToString());
  }
  if (phase_ != Phase::kBackup) return BadState("StartSnapshotSet must come after InitializeForBackup, once");
  VSS_RETURN_IF_VSS_ERROR(provider_.CheckContext(context_));
  set_id_ = Guid::Generate();
  phase_ = Phase::kSetStarted;
  return set_id_;
}

VssStatusOr<Guid> LocalBackupComponents::AddToSnapshotSet(const std::string& volume, const Guid& provider_id) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kSetStarted) return BadState("AddToSnapshotSet must come after StartSnapshotSet and before DoSnapshotSet");
  if (!provider_id.IsNull() && provider_id != provider_.GetProviderProperties().provider_id) {
    return VssError(VSS_E_PROVIDER_NOT_REGISTERED, "no provider " + provider_id.ToString());
  }
  VssStatusOr<ResolvedVolume> v = provider_.ResolveVolume(volume);
  if (!v.ok()) return v.status();
  for (const SetVolume& s : volumes_) {
    if (s.volume.id == v->id) {
      return VssError(VSS_E_OBJECT_ALREADY_EXISTS, "volume " + v->name + " is already in the set");
    }
  }
  if (volumes_.size() >= kMaxVolumesPerSet) {
    return VssError(VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED,
                    "a shadow copy set holds at most " + std::to_string(kMaxVolumesPerSet) + " volumes");
  }
  Guid id = Guid::Generate();
  volumes_.push_back({*v, id});
  return id;
}

VssStatusOr<std::shared_ptr<Async>> LocalBackupComponents::PrepareForBackup() {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kSetStarted || prepared_) {
    return BadState("PrepareForBackup must come after StartSnapshotSet, once, before DoSnapshotSet");
  }
  prepared_ = true;
  if (context_ & VSS_VOLSNAP_ATTR_NO_WRITERS) return Async::Finished(VssStatus::Ok());
  std::vector<size_t> which;
  WriterEvent ev;
  {
    std::lock_guard<std::mutex> s(session_.mu);
    EnsureParticipants();
    which = BackupWriters();
    ev = BaseEvent(WriterEventKind::kPrepareBackup);
  }
  return Run([this, which, ev](const CancelToken&) {
    return coordinator_.Dispatch(session_, which, ev);
  });
}

VssStatusOr<std::shared_ptr<Async>> LocalBackupComponents::DoSnapshotSet() {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  const bool with_writers = (context_ & VSS_VOLSNAP_ATTR_NO_WRITERS) == 0;
  if (phase_ != Phase::kSetStarted) return BadState("DoSnapshotSet must come after StartSnapshotSet, once");
  if (volumes_.empty()) return BadState("DoSnapshotSet: no volume was added to the set");
  if (with_writers && !prepared_) return BadState("DoSnapshotSet must come after PrepareForBackup");
  auto job = std::make_shared<SnapshotSetJob>();
  job->set_id = set_id_;
  job->context = context_;
  job->volumes = volumes_;
  {
    std::lock_guard<std::mutex> s(session_.mu);
    EnsureParticipants();
    if (with_writers) job->writers = SnapshotWriters();
  }
  set_writers_ = job->writers;
  return Run([this, job](const CancelToken& cancel) {
    VssStatus s = coordinator_.CreateSnapshotSet(session_, *job, cancel);
    std::lock_guard<std::mutex> lock(mu_);
    if (s.code() == S_OK) {
      created_ = job->created;
      phase_ = Phase::kSnapshotDone;
    } else if (s.code() == VSS_E_SNAPSHOT_SET_IN_PROGRESS) {
      // Nothing was started: the requester may call DoSnapshotSet again.
      set_writers_.clear();
    } else {
      phase_ = Phase::kSnapshotFailed;
    }
    return s;
  });
}

VssStatusOr<std::shared_ptr<Async>> LocalBackupComponents::BackupComplete() {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kSnapshotDone) return BadState("BackupComplete must come after a successful DoSnapshotSet, once");
  phase_ = Phase::kBackupComplete;
  if (context_ & VSS_VOLSNAP_ATTR_NO_WRITERS) return Async::Finished(VssStatus::Ok());
  std::vector<size_t> which;
  WriterEvent ev;
  {
    std::lock_guard<std::mutex> s(session_.mu);
    which = BackupWriters();
    ev = BaseEvent(WriterEventKind::kBackupComplete);
  }
  return Run([this, which, ev](const CancelToken&) {
    return coordinator_.Dispatch(session_, which, ev);
  });
}

VssStatus LocalBackupComponents::AbortBackup() {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (!IsBackupPhase() || phase_ == Phase::kBackupComplete) {
    return BadState("AbortBackup: no backup in progress");
  }
  // A set that failed in DoSnapshotSet was aborted then, writers included.
  if (phase_ != Phase::kSnapshotFailed && phase_ != Phase::kAborted &&
      (context_ & VSS_VOLSNAP_ATTR_NO_WRITERS) == 0) {
    std::vector<size_t> which;
    WriterEvent ev;
    {
      std::lock_guard<std::mutex> s(session_.mu);
      which = set_writers_.empty() ? BackupWriters() : set_writers_;
      ev = BaseEvent(WriterEventKind::kAbort);
    }
    coordinator_.AbortWriters(session_, which, ev);
  }
  phase_ = Phase::kAborted;
  return VssStatus::Ok();
}

// --- Shadows ---

VssStatusOr<SnapshotProp> LocalBackupComponents::GetSnapshotProperties(const Guid& snapshot_id) {
  return provider_.GetSnapshotProperties(snapshot_id);
}

VssStatusOr<std::vector<SnapshotProp>> LocalBackupComponents::Query() {
  int32_t ctx;
  {
    std::lock_guard<std::mutex> l(mu_);
    ctx = context_;
  }
  return provider_.Query(ctx);
}

VssStatusOr<BackupComponents::DeleteResult> LocalBackupComponents::DeleteSnapshots(
    const Guid& source_id, VSS_OBJECT_TYPE type, bool force) {
  std::vector<Guid> ids;
  if (type == VSS_OBJECT_SNAPSHOT) {
    ids.push_back(source_id);
  } else if (type == VSS_OBJECT_SNAPSHOT_SET) {
    VssStatusOr<std::vector<Guid>> set = provider_.SnapshotsOfSet(source_id);
    if (!set.ok()) return set.status();
    ids = *set;
  } else {
    return VssError(E_INVALIDARG, "DeleteSnapshots takes VSS_OBJECT_SNAPSHOT or VSS_OBJECT_SNAPSHOT_SET");
  }
  DeleteResult r;
  for (const Guid& id : ids) {
    VssStatus s = provider_.DeleteSnapshot(id);
    if (!s.ok()) {
      r.non_deleted = id;
      if (ids.size() == 1) return s;
      return VssError(s.code(), "deleted " + std::to_string(r.deleted) + " shadows; " + s.message());
    }
    ++r.deleted;
  }
  return r;
}

VssStatus LocalBackupComponents::RevertToSnapshot(const Guid& snapshot_id, bool force_dismount) {
  {
    std::lock_guard<std::mutex> l(mu_);
    VSS_RETURN_IF_VSS_ERROR(Busy());
  }
  return provider_.RevertToSnapshot(snapshot_id, force_dismount);
}

// --- Restore ---

VssStatus LocalBackupComponents::SetSelectedForRestore(const ComponentKey& key, bool selected) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kRestore) return BadState("SetSelectedForRestore must come after InitializeForRestore and before PreRestore");
  std::lock_guard<std::mutex> s(session_.mu);
  Component* c = FindComponent(key);
  if (c == nullptr) return NoComponent(key);
  c->SetSelectedForRestore(selected);
  return VssStatus::Ok();
}

VssStatusOr<std::shared_ptr<Async>> LocalBackupComponents::PreRestore() {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kRestore) return BadState("PreRestore must come after InitializeForRestore, once");
  phase_ = Phase::kPreRestored;
  std::vector<size_t> which;
  WriterEvent ev;
  {
    std::lock_guard<std::mutex> s(session_.mu);
    EnsureParticipants();
    which = RestoreWriters();
    ev = BaseEvent(WriterEventKind::kPreRestore);
  }
  return Run([this, which, ev](const CancelToken&) {
    return coordinator_.Dispatch(session_, which, ev);
  });
}

VssStatus LocalBackupComponents::SetFileRestoreStatus(const ComponentKey& key,
                                                 VSS_FILE_RESTORE_STATUS status) {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kPreRestored) return BadState("SetFileRestoreStatus must come after PreRestore and before PostRestore");
  std::lock_guard<std::mutex> s(session_.mu);
  Component* c = FindComponent(key);
  if (c == nullptr) return NoComponent(key);
  if (!c->IsSelectedForRestore()) {
    return BadState("component " + key.logical_path + "\\" + key.component_name + " is not selected for restore");
  }
  c->SetFileRestoreStatus(status);
  return VssStatus::Ok();
}

VssStatusOr<std::shared_ptr<Async>> LocalBackupComponents::PostRestore() {
  std::lock_guard<std::mutex> l(mu_);
  VSS_RETURN_IF_VSS_ERROR(Busy());
  if (phase_ != Phase::kPreRestored) return BadState("PostRestore must come after PreRestore, once");
  phase_ = Phase::kPostRestored;
  std::vector<size_t> which;
  WriterEvent ev;
  {
    std::lock_guard<std::mutex> s(session_.mu);
    which = RestoreWriters();
    ev = BaseEvent(WriterEventKind::kPostRestore);
  }
  return Run([this, which, ev](const CancelToken&) {
    return coordinator_.Dispatch(session_, which, ev);
  });
}

}  // namespace vss
