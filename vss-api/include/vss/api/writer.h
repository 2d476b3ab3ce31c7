// Writer: the base class of an application that holds data on volumes
// (CVssWriter). Derive from it, override the handlers, Initialize, then
// Subscribe to a WriterRegistry (a Coordinator, or a Service reaching vssd);
// the coordinator sends events in VSS order, the same way in both cases.
//
// Handlers run on the writer's own event thread (one per subscribed
// writer), one at a time. They return true for success; false is a fatal
// failure (from OnPrepareSnapshot or OnFreeze: a veto that aborts the set)
// after SetWriterFailure; a non-fatal problem sets the failure and returns
// true. Handlers must not throw (an escaping exception counts as a failure).
// The helpers (GetCurrentSnapshotSetId, IsPathAffected, SetWriterFailure,
// ...) may only be called from inside a handler.
//
// Lifetime: call Unsubscribe() in the derived class's destructor (or
// earlier) so that no handler runs on a half-destroyed object; ~Writer
// unsubscribes as a last resort. Unsubscribe waits for a running handler.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vss/api/components.h"
#include "vss/api/hresult.h"
#include "vss/api/types.h"
#include "vss/api/writer_event.h"
#include "vss/api/writer_metadata.h"
#include "vss/base/guid.h"

namespace vss {

class LocalWriterEndpoint;

class Writer {
 public:
  Writer();
  virtual ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Sets the writer's identity; a new instance id is made. E_INVALIDARG for
  // an empty name or null class id; VSS_E_BAD_STATE once subscribed.
  VssStatus Initialize(const Guid& writer_class_id, const std::string& name,
                       VSS_USAGE_TYPE usage, VSS_SOURCE_TYPE source,
                       VSS_APPLICATION_LEVEL level = VSS_APP_FRONT_END,
                       uint32_t freeze_timeout_ms = 60000,
                       const std::string& instance_name = "");
  // Starts receiving events from `registry`: a Coordinator in this process,
  // or a Service (vssd or in-process, see service.h). VSS_E_BAD_STATE before
  // Initialize; VSS_E_WRITER_ALREADY_SUBSCRIBED when subscribed. The
  // registry must outlive the subscription.
  VssStatus Subscribe(WriterRegistry& registry,
                      int32_t event_flags = VSS_SM_BACKUP_EVENTS_FLAG |
                                            VSS_SM_RESTORE_EVENTS_FLAG);
  // Stops receiving events; waits for a running handler. OK if not
  // subscribed.
  VssStatus Unsubscribe();

  const WriterRegistration& registration() const { return registration_; }

  // --- Event handlers ---
  virtual bool OnIdentify(CreateWriterMetadata& /*metadata*/) { return true; }
  virtual bool OnPrepareBackup(WriterComponents& /*components*/) { return true; }
  virtual bool OnPrepareSnapshot() = 0;
  virtual bool OnFreeze() = 0;
  virtual bool OnThaw() = 0;
  virtual bool OnPostSnapshot(WriterComponents& /*components*/) { return true; }
  virtual bool OnAbort() = 0;
  virtual bool OnBackupComplete(WriterComponents& /*components*/) { return true; }
  virtual bool OnBackupShutdown(const Guid& /*snapshot_set_id*/) { return true; }
  virtual bool OnPreRestore(WriterComponents& /*components*/) { return true; }
  virtual bool OnPostRestore(WriterComponents& /*components*/) { return true; }

 protected:
  // --- Helpers, only from inside a handler ---
  Guid GetCurrentSnapshotSetId() const;
  // The original volumes of the set (store volume names).
  std::vector<std::string> GetCurrentVolumeArray() const;
  size_t GetCurrentVolumeCount() const;
  // The volumes of the set with their ids and image files.
  std::vector<EventVolume> GetCurrentVolumes() const;
  // The shadow's device for an original volume (name, id or image path);
  // VSS_E_OBJECT_NOT_FOUND if the volume is not in the set or has no shadow
  // yet (before PostSnapshot).
  VssStatusOr<std::string> GetSnapshotDeviceName(const std::string& original_volume) const;
  int32_t GetContext() const;
  VSS_APPLICATION_LEVEL GetCurrentLevel() const;
  // True if `path` is a volume of the set (its name, id or image path) or
  // lies under one ("name/...").
  bool IsPathAffected(const std::string& path) const;
  bool AreComponentsSelected() const;
  bool IsBootableSystemStateBackedUp() const;
  bool IsPartialFileSupportEnabled() const;
  VSS_BACKUP_TYPE GetBackupType() const;
  VSS_RESTORE_TYPE GetRestoreType() const;
  Guid GetSessionId() const;
  // Records the writer's failure for this event. Only the
  // VSS_E_WRITERERROR_* codes are allowed (E_INVALIDARG otherwise);
  // VSS_E_BAD_STATE outside a handler or from OnIdentify.
  VssStatus SetWriterFailure(HResult hr);
  VssStatus SetWriterFailureEx(HResult hr, HResult application_hr,
                               const std::string& message);

 private:
  friend class LocalWriterEndpoint;
  // Runs the handler for `event` (on the event thread).
  WriterEventResult Dispatch(const WriterEvent& event);

  WriterRegistration registration_;
  bool initialized_ = false;
  WriterRegistry* registry_ = nullptr;
  std::shared_ptr<LocalWriterEndpoint> endpoint_;
  // Set only on the event thread while a handler runs.
  const WriterEvent* current_ = nullptr;
  WriterEventResult* current_result_ = nullptr;
};

}  // namespace vss
