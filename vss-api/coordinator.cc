#include "vss/api/coordinator.h"

#include <algorithm>
#include <future>

namespace vss {
namespace {

using Clock = std::chrono::steady_clock;

struct EventStates {
  VSS_WRITER_STATE ok;      // VSS_WS_UNKNOWN: keep the state
  VSS_WRITER_STATE failed;
};

EventStates StatesFor(WriterEventKind k) {
  switch (k) {
    case WriterEventKind::kIdentify: return {VSS_WS_STABLE, VSS_WS_FAILED_AT_IDENTIFY};
    case WriterEventKind::kPrepareBackup: return {VSS_WS_STABLE, VSS_WS_FAILED_AT_PREPARE_BACKUP};
    case WriterEventKind::kPrepareSnapshot:
      return {VSS_WS_WAITING_FOR_FREEZE, VSS_WS_FAILED_AT_PREPARE_SNAPSHOT};
    case WriterEventKind::kFreeze: return {VSS_WS_WAITING_FOR_THAW, VSS_WS_FAILED_AT_FREEZE};
    case WriterEventKind::kThaw: return {VSS_WS_WAITING_FOR_POST_SNAPSHOT, VSS_WS_FAILED_AT_THAW};
    case WriterEventKind::kPostSnapshot:
      return {VSS_WS_WAITING_FOR_BACKUP_COMPLETE, VSS_WS_FAILED_AT_POST_SNAPSHOT};
    case WriterEventKind::kAbort: return {VSS_WS_STABLE, VSS_WS_UNKNOWN};
    case WriterEventKind::kBackupComplete: return {VSS_WS_STABLE, VSS_WS_FAILED_AT_BACKUP_COMPLETE};
    case WriterEventKind::kBackupShutdown: return {VSS_WS_UNKNOWN, VSS_WS_FAILED_AT_BACKUPSHUTDOWN};
    case WriterEventKind::kPreRestore: return {VSS_WS_STABLE, VSS_WS_FAILED_AT_PRE_RESTORE};
    case WriterEventKind::kPostRestore: return {VSS_WS_STABLE, VSS_WS_FAILED_AT_POST_RESTORE};
  }
  return {VSS_WS_UNKNOWN, VSS_WS_UNKNOWN};
}

bool IsFailedState(VSS_WRITER_STATE s) {
  return s >= VSS_WS_FAILED_AT_IDENTIFY && s <= VSS_WS_FAILED_AT_BACKUPSHUTDOWN;
}

// Events that are sent to a writer that stopped answering, without waiting.
bool FireAndForget(WriterEventKind k) {
  return k == WriterEventKind::kAbort || k == WriterEventKind::kBackupShutdown;
}

// Whether a writer subscribed with `flags` takes events of this kind:
// Identify always; restore events with VSS_SM_RESTORE_EVENTS_FLAG; the rest
// with VSS_SM_BACKUP_EVENTS_FLAG.
bool Wants(int32_t flags, WriterEventKind k) {
  if (k == WriterEventKind::kIdentify) return true;
  if (k == WriterEventKind::kPreRestore || k == WriterEventKind::kPostRestore) {
    return (flags & VSS_SM_RESTORE_EVENTS_FLAG) != 0;
  }
  return (flags & VSS_SM_BACKUP_EVENTS_FLAG) != 0;
}

// Copies what a writer may change in its components back into the BCD.
void MergeComponents(WriterComponents& into, const WriterComponents& from) {
  for (const Component& c : from.components()) {
    Component* t = into.Find(c.GetLogicalPath(), c.GetComponentName());
    if (t == nullptr) continue;
    t->SetBackupStamp(c.GetBackupStamp());
    t->SetBackupMetadata(c.GetBackupMetadata());
    t->SetRestoreMetadata(c.GetRestoreMetadata());
    t->SetRestoreTarget(c.GetRestoreTarget());
    t->SetFailure(c.GetFailure());
  }
}

uint32_t FreezeWindow(const Participant& p, const CoordinatorOptions& o) {
  return std::min(p.endpoint->registration().freeze_timeout_ms, o.freeze_timeout_ms);
}

}  // namespace

Coordinator::Coordinator(Provider& provider, CoordinatorOptions options)
    : provider_(provider), options_(std::move(options)) {}

Coordinator::~Coordinator() = default;

VssStatus Coordinator::Subscribe(std::shared_ptr<WriterEndpoint> endpoint) {
  std::lock_guard<std::mutex> l(mu_);
  const Guid& id = endpoint->registration().identity.instance_id;
  for (const auto& w : writers_) {
    if (w->registration().identity.instance_id == id) {
      return VssError(VSS_E_WRITER_ALREADY_SUBSCRIBED,
                      "writer instance " + id.ToString() + " is already subscribed");
    }
  }
  writers_.push_back(std::move(endpoint));
  return VssStatus::Ok();
}

VssStatus Coordinator::Unsubscribe(const Guid& instance_id) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = writers_.begin(); it != writers_.end(); ++it) {
    if ((*it)->registration().identity.instance_id == instance_id) {
      writers_.erase(it);
      last_status_.erase(instance_id);
      return VssStatus::Ok();
    }
  }
  return VssError(VSS_E_OBJECT_NOT_FOUND, "no writer instance " + instance_id.ToString());
}

std::vector<std::shared_ptr<WriterEndpoint>> Coordinator::Writers() const {
  std::lock_guard<std::mutex> l(mu_);
  return writers_;
}

namespace {

struct Pending {
  size_t index;
  std::shared_future<WriterEventResult> answer;
  Clock::time_point deadline;
  bool wait;
};

}  // namespace

namespace {

// Sends `base` to each writer of `which` that wants it, under the session
// lock; each gets its own components and a deadline (the freeze window's
// when `freeze`).
std::vector<Pending> SendEvents(Session& s, const std::vector<size_t>& which,
                                const WriterEvent& base, bool freeze,
                                const CoordinatorOptions& o) {
  std::vector<Pending> pending;
  std::lock_guard<std::mutex> l(s.mu);
  for (size_t i : which) {
    Participant& p = s.writers[i];
    bool forget = FireAndForget(base.kind);
    if (p.unresponsive && !forget) continue;
    if (!Wants(p.endpoint->registration().event_flags, base.kind)) continue;
    WriterEvent ev = base;
    const WriterRegistration& reg = p.endpoint->registration();
    if (WriterComponents* wc = s.bcd.FindWriter(reg.identity.writer_id)) {
      ev.components = *wc;
    } else {
      ev.components = WriterComponents(reg.identity.instance_id, reg.identity.writer_id);
    }
    uint32_t timeout = o.event_timeout_ms;
    Clock::time_point now = Clock::now();
    if (freeze) {
      timeout = std::min(timeout, FreezeWindow(p, o));
      p.freeze_deadline = now + std::chrono::milliseconds(FreezeWindow(p, o));
    }
    pending.push_back({i, p.endpoint->Send(std::move(ev)),
                       now + std::chrono::milliseconds(timeout), !p.unresponsive});
  }
  return pending;
}

// Waits for each answer until its deadline, without the session lock:
// answers come from other threads. An answer missing is a timeout.
std::vector<std::optional<WriterEventResult>> AwaitAnswers(std::vector<Pending>& pending) {
  std::vector<std::optional<WriterEventResult>> answers(pending.size());
  for (size_t k = 0; k < pending.size(); ++k) {
    if (!pending[k].wait) continue;
    if (pending[k].answer.wait_until(pending[k].deadline) == std::future_status::ready) {
      answers[k] = pending[k].answer.get();
    }
  }
  return answers;
}

// Records one writer's answer (or its silence) to `base` in its status and
// the session's document; the first failure of the event goes to
// `first_failure`. Called with the session lock held.
void RecordAnswer(Session& s, Participant& p, const std::optional<WriterEventResult>& answer,
                  const WriterEvent& base, bool freeze, const EventStates& st,
                  VssStatus& first_failure) {
  WriterStatus& ws = p.status;
  const std::string who = "writer '" + ws.name + "' at " + WriterEventName(base.kind);
  if (!answer.has_value()) {
    p.unresponsive = true;
    HResult code = freeze ? VSS_E_WRITERERROR_TIMEOUT : VSS_E_WRITER_NOT_RESPONDING;
    if (st.failed != VSS_WS_UNKNOWN) {
      ws.state = st.failed;
      ws.failure = code;
      ws.message = freeze ? "the freeze-to-thaw window ran out" : "the writer did not answer in time";
    }
    if (first_failure.ok()) first_failure = VssError(code, who + ": " + ws.message);
    return;
  }
  const WriterEventResult& r = *answer;
  if (base.kind == WriterEventKind::kIdentify && r.success && r.metadata.has_value()) {
    p.metadata = r.metadata;
  }
  if (WriterComponents* wc = s.bcd.FindWriter(ws.writer_id)) MergeComponents(*wc, r.components);
  if (base.kind == WriterEventKind::kAbort) {
    if (!IsFailedState(ws.state)) ws.state = VSS_WS_STABLE;
    return;
  }
  if (!r.success || Failed(r.failure)) {
    HResult code = Failed(r.failure) ? r.failure : VSS_E_WRITERERROR_NONRETRYABLE;
    if (st.failed != VSS_WS_UNKNOWN) ws.state = st.failed;
    ws.failure = code;
    ws.application_hr = r.application_hr;
    ws.message = r.message;
    if (!r.success && first_failure.ok()) {
      first_failure = VssError(code, who + (r.message.empty() ? "" : ": " + r.message));
    }
  } else if (st.ok != VSS_WS_UNKNOWN && !IsFailedState(ws.state)) {
    // A failure sticks for the rest of the session, as in VSS: a writer
    // that failed at Thaw still shows FAILED_AT_THAW after PostSnapshot.
    ws.state = st.ok;
  }
}

}  // namespace

// Shared by Dispatch and FreezeLevel: `window_ms` (if set) bounds the wait
// for each writer and its expiry is reported as `window_code`.
VssStatus Coordinator::DispatchImpl(Session& s, const std::vector<size_t>& which,
                                    const WriterEvent& base, bool freeze) {
  std::vector<Pending> pending = SendEvents(s, which, base, freeze, options_);
  std::vector<std::optional<WriterEventResult>> answers = AwaitAnswers(pending);
  const EventStates st = StatesFor(base.kind);
  VssStatus first_failure;
  std::vector<WriterStatus> touched;
  std::unique_lock<std::mutex> l(s.mu);
  for (size_t k = 0; k < pending.size(); ++k) {
    Participant& p = s.writers[pending[k].index];
    p.status.last_event = WriterEventName(base.kind);
    if (pending[k].wait) RecordAnswer(s, p, answers[k], base, freeze, st, first_failure);
    touched.push_back(p.status);  // the status as it ends up after this event
  }
  l.unlock();
  std::lock_guard<std::mutex> cl(mu_);
  for (WriterStatus& t : touched) last_status_[t.instance_id] = std::move(t);
  return first_failure;
}

std::vector<WriterStatus> Coordinator::ListWriters() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<WriterStatus> out;
  for (const auto& w : writers_) {
    const WriterIdentity& id = w->registration().identity;
    auto it = last_status_.find(id.instance_id);
    if (it != last_status_.end()) {
      out.push_back(it->second);
      continue;
    }
    WriterStatus ws;
    ws.instance_id = id.instance_id;
    ws.writer_id = id.writer_id;
    ws.name = id.name;
    ws.instance_name = id.instance_name;
    out.push_back(ws);
  }
  return out;
}

VssStatus Coordinator::Dispatch(Session& session, const std::vector<size_t>& which,
                                WriterEvent event) {
  return DispatchImpl(session, which, event, /*freeze=*/false);
}

VssStatus Coordinator::FreezeLevel(Session& session, const std::vector<size_t>& which,
                                   const WriterEvent& base, VSS_APPLICATION_LEVEL level) {
  std::vector<size_t> at_level;
  for (size_t i : which) {
    if (session.writers[i].endpoint->registration().level == level) at_level.push_back(i);
  }
  if (at_level.empty()) return VssStatus::Ok();
  WriterEvent ev = base;
  ev.kind = WriterEventKind::kFreeze;
  ev.level = level;
  return DispatchImpl(session, at_level, ev, /*freeze=*/true);
}

void Coordinator::AbortWriters(Session& session, const std::vector<size_t>& which,
                               const WriterEvent& base) {
  std::vector<size_t> to;
  {
    std::lock_guard<std::mutex> l(session.mu);
    for (size_t i : which) {
      if (!session.writers[i].post_snapshot_done) to.push_back(i);
    }
  }
  WriterEvent ev = base;
  ev.kind = WriterEventKind::kAbort;
  DispatchImpl(session, to, ev, /*freeze=*/false).IgnoreError();
}

VssStatus Coordinator::AbortSet(Session& session, SnapshotSetJob& job, const WriterEvent& base,
                                VssStatus cause) {
  provider_.AbortSnapshots(job.set_id).IgnoreError();
  std::vector<size_t> involved;
  {
    std::lock_guard<std::mutex> l(session.mu);
    for (size_t i : job.writers) {
      if (session.writers[i].in_snapshot) involved.push_back(i);
    }
  }
  AbortWriters(session, involved, base);
  return cause;
}

namespace {

// The fields every writer event of a set shares: the session's backup
// settings, the set and its volumes.
WriterEvent SetEventBase(Session& session, const SnapshotSetJob& job) {
  WriterEvent base;
  {
    std::lock_guard<std::mutex> l(session.mu);
    base.session_id = session.id;
    base.backup_type = session.bcd.backup_type;
    base.components_selected = session.bcd.select_components;
    base.bootable_system_state = session.bcd.bootable_system_state;
    base.partial_file_support = session.bcd.partial_file_support;
  }
  base.snapshot_set_id = job.set_id;
  base.context = job.context;
  for (const SetVolume& v : job.volumes) {
    base.volumes.push_back({v.volume.name, v.volume.id, v.volume.path, ""});
  }
  return base;
}

// Called while the provider holds writes, just before the commit: an error
// when writes were held too long or a frozen writer's window ran out (that
// writer is marked FAILED_AT_FREEZE).
VssStatus CheckHold(Session& session, const std::vector<size_t>& writers,
                    Clock::time_point hold_start, const CoordinatorOptions& o) {
  Clock::time_point now = Clock::now();
  if (now - hold_start > std::chrono::milliseconds(o.hold_writes_timeout_ms)) {
    return VssError(VSS_E_HOLD_WRITES_TIMEOUT, "writes were held longer than " +
                                                   std::to_string(o.hold_writes_timeout_ms) +
                                                   " ms");
  }
  std::lock_guard<std::mutex> l(session.mu);
  for (size_t i : writers) {
    Participant& p = session.writers[i];
    const bool frozen = p.freeze_deadline != Clock::time_point{};
    if (frozen && now > p.freeze_deadline) {
      p.status.state = VSS_WS_FAILED_AT_FREEZE;
      p.status.failure = VSS_E_WRITERERROR_TIMEOUT;
      p.status.message = "the freeze-to-thaw window ran out before the commit";
      return VssError(VSS_E_WRITERERROR_TIMEOUT,
                      "writer '" + p.status.name + "': " + p.status.message);
    }
  }
  return VssStatus::Ok();
}

}  // namespace

VssStatus Coordinator::CreateSnapshotSet(Session& session, SnapshotSetJob& job,
                                         const CancelToken& cancel) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (set_in_progress_) {
      return VssError(VSS_E_SNAPSHOT_SET_IN_PROGRESS, "another shadow copy set is being created");
    }
    set_in_progress_ = true;
  }
  struct Release {
    Coordinator* c;
    ~Release() {
      std::lock_guard<std::mutex> l(c->mu_);
      c->set_in_progress_ = false;
    }
  } release{this};

  const bool with_writers = (job.context & VSS_VOLSNAP_ATTR_NO_WRITERS) == 0;
  std::vector<size_t> writers = with_writers ? job.writers : std::vector<size_t>{};
  job.writers = writers;
  const WriterEvent base = SetEventBase(session, job);
  auto cancelled = [&] {
    return VssError(VSS_S_ASYNC_CANCELLED, "DoSnapshotSet was cancelled before the commit");
  };

  for (const SetVolume& v : job.volumes) {
    VssStatus s = provider_.BeginPrepareSnapshot(job.set_id, v.snapshot_id, job.context, v.volume);
    if (!s.ok()) return AbortSet(session, job, base, s);
  }
  {
    std::lock_guard<std::mutex> l(session.mu);
    for (size_t i : writers) session.writers[i].in_snapshot = true;
  }
  WriterEvent ev = base;
  ev.kind = WriterEventKind::kPrepareSnapshot;
  if (VssStatus s = Dispatch(session, writers, ev); !s.ok()) return AbortSet(session, job, base, s);
  if (VssStatus s = provider_.EndPrepareSnapshots(job.set_id); !s.ok()) {
    return AbortSet(session, job, base, s);
  }
  if (cancel.cancelled()) return AbortSet(session, job, base, cancelled());

  const VSS_APPLICATION_LEVEL kFreezeOrder[] = {VSS_APP_FRONT_END, VSS_APP_BACK_END, VSS_APP_SYSTEM};
  for (VSS_APPLICATION_LEVEL level : kFreezeOrder) {
    if (VssStatus s = FreezeLevel(session, writers, base, level); !s.ok()) {
      return AbortSet(session, job, base, s);
    }
  }
  if (cancel.cancelled()) return AbortSet(session, job, base, cancelled());
  if (VssStatus s = provider_.PreCommitSnapshots(job.set_id); !s.ok()) {
    return AbortSet(session, job, base, s);
  }

  const Clock::time_point hold_start = Clock::now();
  auto on_hold = [&]() -> VssStatus {
    if (options_.on_hold_for_test) options_.on_hold_for_test();
    return CheckHold(session, writers, hold_start, options_);
  };
  if (VssStatus s = provider_.CommitSnapshots(job.set_id, on_hold); !s.ok()) {
    return AbortSet(session, job, base, s);
  }
  // Committed: from here the set exists; writer failures are reported in
  // their states but do not undo it.
  // Even if the properties cannot be read back, the writers are thawed.
  VssStatusOr<std::vector<SnapshotProp>> props = provider_.PostCommitSnapshots(job.set_id);
  VssStatus result;
  if (props.ok()) {
    job.created = *props;
  } else {
    result = props.status();
  }

  ThawAndPostSnapshot(session, writers, base, job);
  return result;
}

void Coordinator::ThawAndPostSnapshot(Session& session, const std::vector<size_t>& writers,
                                      const WriterEvent& base, const SnapshotSetJob& job) {
  const VSS_APPLICATION_LEVEL kThawOrder[] = {VSS_APP_SYSTEM, VSS_APP_BACK_END, VSS_APP_FRONT_END};
  for (VSS_APPLICATION_LEVEL level : kThawOrder) {
    std::vector<size_t> at_level;
    for (size_t i : writers) {
      if (session.writers[i].endpoint->registration().level == level) at_level.push_back(i);
    }
    WriterEvent thaw = base;
    thaw.kind = WriterEventKind::kThaw;
    thaw.level = level;
    if (!at_level.empty()) Dispatch(session, at_level, thaw).IgnoreError();
  }
  WriterEvent post = base;
  post.kind = WriterEventKind::kPostSnapshot;
  for (size_t k = 0; k < post.volumes.size() && k < job.created.size(); ++k) {
    for (const SnapshotProp& p : job.created) {
      if (p.original_volume_name == post.volumes[k].name) {
        post.volumes[k].snapshot_device = p.snapshot_device_object;
      }
    }
  }
  {
    std::lock_guard<std::mutex> l(session.mu);
    for (size_t i : writers) session.writers[i].post_snapshot_done = true;
    if (!job.created.empty()) session.bcd.snapshot_set_id = job.created.front().snapshot_set_id;
  }
  Dispatch(session, writers, post).IgnoreError();
}

}  // namespace vss
