// Coordinator: the "service" of VSS. It keeps the registry of subscribed
// writers, sends them events in VSS order with the writer state table,
// enforces the timeouts (event answers, the freeze-to-thaw window, the hold
// of writes during commit) and allows one shadow copy set in creation at a
// time. It drives a Provider to make the shadows; it knows nothing of the
// engine.
//
// Writers are reached only through WriterEndpoint, so a remote writer (a
// socket proxy in vssd) is one more endpoint. Requesters (BackupComponents)
// hold a Session each: the writers taking part in their backup or restore,
// with each one's VSS_WRITER_STATE and failure, and the BCD.
//
// Timeouts: an event not answered within options().event_timeout_ms marks
// the writer VSS_E_WRITER_NOT_RESPONDING (state FAILED_AT_<event>); such a
// writer is not waited for again in that session. A writer whose Freeze is
// not answered, or whose window has run out before the commit, within
// min(its freeze timeout, options().freeze_timeout_ms) after its Freeze was
// sent fails with VSS_E_WRITERERROR_TIMEOUT and the set is aborted. If more
// than options().hold_writes_timeout_ms passed between the start of the
// provider's commit (which holds and flushes the writes) and the moment the
// commit is due (the provider's on_hold call), the set fails with
// VSS_E_HOLD_WRITES_TIMEOUT and nothing is committed.
//
// Lifetime: the Provider outlives the Coordinator, and writers unsubscribe
// (and requesters are destroyed) before it is destroyed.
//
// Thread safety: all methods may be called from any thread. A Session is
// used by one operation at a time (BackupComponents ensures it); its mutex
// guards its fields against readers on other threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vss/api/async.h"
#include "vss/api/components.h"
#include "vss/api/hresult.h"
#include "vss/api/provider.h"
#include "vss/api/types.h"
#include "vss/api/writer_event.h"
#include "vss/api/writer_metadata.h"

namespace vss {

struct CoordinatorOptions {
  // Identify, PrepareForBackup, PrepareForSnapshot, Thaw, ... answers.
  uint32_t event_timeout_ms = 180000;
  // Cap on every writer's freeze-to-thaw window (each writer also has its
  // own from Writer::Initialize).
  uint32_t freeze_timeout_ms = 60000;
  // Longest hold of writes while the set is committed.
  uint32_t hold_writes_timeout_ms = 10000;
  // Test hook: called while writes are held, before the hold time is checked.
  std::function<void()> on_hold_for_test;
};

// VSS's GetWriterStatus row.
struct WriterStatus {
  Guid instance_id;
  Guid writer_id;
  std::string name;
  std::string instance_name;
  VSS_WRITER_STATE state = VSS_WS_STABLE;
  HResult failure = S_OK;
  HResult application_hr = S_OK;
  std::string message;
  std::string last_event;  // the last event sent ("Freeze", ...), "" if none
};

// A writer taking part in one session.
struct Participant {
  std::shared_ptr<WriterEndpoint> endpoint;
  WriterStatus status;
  std::optional<WriterMetadataDocument> metadata;  // from Identify
  bool unresponsive = false;       // an answer timed out: never wait again
  bool in_snapshot = false;        // got PrepareForSnapshot of the set
  bool post_snapshot_done = false; // no Abort after its OnPostSnapshot
  std::chrono::steady_clock::time_point freeze_deadline{};
};

struct Session {
  Guid id = Guid::Generate();
  mutable std::mutex mu;  // guards the fields below
  BackupComponentsDocument bcd;
  std::vector<Participant> writers;
};

// A volume of a set being created.
struct SetVolume {
  ResolvedVolume volume;
  Guid snapshot_id;  // the id AddToSnapshotSet gave
};

struct SnapshotSetJob {
  Guid set_id;
  int32_t context = VSS_CTX_BACKUP;
  std::vector<SetVolume> volumes;
  // Indexes into Session::writers of the writers taking part.
  std::vector<size_t> writers;
  // Filled on success: the shadows the provider made.
  std::vector<SnapshotProp> created;
};

class Coordinator final : public WriterRegistry {
 public:
  explicit Coordinator(Provider& provider, CoordinatorOptions options = {});
  ~Coordinator() override;
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  Provider& provider() { return provider_; }
  const CoordinatorOptions& options() const { return options_; }

  // Registry. Subscribe: VSS_E_WRITER_ALREADY_SUBSCRIBED if an endpoint with
  // the same instance id is there. Unsubscribe: VSS_E_OBJECT_NOT_FOUND if not.
  VssStatus Subscribe(std::shared_ptr<WriterEndpoint> endpoint) override;
  VssStatus Unsubscribe(const Guid& instance_id) override;
  std::vector<std::shared_ptr<WriterEndpoint>> Writers() const;
  // Every subscribed writer with its status after the last event it got in
  // any session (STABLE with no event before the first).
  std::vector<WriterStatus> ListWriters() const;

  // Sends `event` (its components filled per writer from the session's BCD)
  // to session writers `which` at once, waits for the answers, updates their
  // states and copies what they wrote into their components back into the
  // BCD. Returns the first fatal failure (the writer's code, or
  // VSS_E_WRITER_NOT_RESPONDING), OK if all succeeded.
  VssStatus Dispatch(Session& session, const std::vector<size_t>& which,
                     WriterEvent event);

  // The DoSnapshotSet sequence: PrepareForSnapshot, Freeze by level,
  // provider pre-commit, commit under held writes, post-commit, Thaw in
  // reverse level order, PostSnapshot. On a veto, failure, timeout or
  // cancellation before the commit: provider abort, OnAbort to every writer
  // of the set, no shadow left; returns the cause (VSS_S_ASYNC_CANCELLED
  // when cancelled). VSS_E_SNAPSHOT_SET_IN_PROGRESS while another set is in
  // creation. Writers are skipped for NO_WRITERS contexts.
  VssStatus CreateSnapshotSet(Session& session, SnapshotSetJob& job,
                              const CancelToken& cancel);

  // Sends Abort to the session's writers in the set that have not had
  // PostSnapshot (bounded by the event timeout).
  void AbortWriters(Session& session, const std::vector<size_t>& which,
                    const WriterEvent& base);

 private:
  VssStatus FreezeLevel(Session& session, const std::vector<size_t>& which,
                        const WriterEvent& base, VSS_APPLICATION_LEVEL level);
  VssStatus AbortSet(Session& session, SnapshotSetJob& job, const WriterEvent& base,
                     VssStatus cause);
  // Sends one event and waits; see Dispatch. `freeze` applies the
  // freeze-to-thaw window.
  // After the commit: thaws the writers level by level (system first),
  // then sends PostSnapshot with each volume's shadow device.
  void ThawAndPostSnapshot(Session& session, const std::vector<size_t>& writers,
                           const WriterEvent& base, const SnapshotSetJob& job);
  VssStatus DispatchImpl(Session& s, const std::vector<size_t>& which, const WriterEvent& base,
                         bool freeze);

  Provider& provider_;
  CoordinatorOptions options_;
  mutable std::mutex mu_;  // guards writers_, set_in_progress_, last_status_
  std::vector<std::shared_ptr<WriterEndpoint>> writers_;
  bool set_in_progress_ = false;
  std::map<Guid, WriterStatus> last_status_;  // by instance id
};

}  // namespace vss
