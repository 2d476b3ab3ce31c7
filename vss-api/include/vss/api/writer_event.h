// Writer events as data, and WriterEndpoint: how the coordinator reaches a
// writer.
//
// The coordinator never calls a Writer directly. It sends a WriterEvent to
// a WriterEndpoint and waits (with a timeout) for the WriterEventResult.
// The in-process endpoint (made by Writer::Subscribe) runs the handlers on
// the writer's own event thread; a socket proxy for writers in other
// processes implements the same interface later, so the coordinator does
// not change. Events and results are plain values so they can be
// serialised for that protocol.
//
// Thread safety: WriterEndpoint::Send may be called from any thread; an
// endpoint delivers its events one at a time, in the order sent.
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vss/api/components.h"
#include "vss/api/hresult.h"
#include "vss/api/types.h"
#include "vss/api/writer_metadata.h"
#include "vss/base/guid.h"

namespace vss {

enum class WriterEventKind {
  kIdentify,
  kPrepareBackup,
  kPrepareSnapshot,
  kFreeze,
  kThaw,
  kPostSnapshot,
  kAbort,
  kBackupComplete,
  kBackupShutdown,
  kPreRestore,
  kPostRestore,
};

// "Identify", "PrepareForBackup", ..., as VSS names the events.
const char* WriterEventName(WriterEventKind kind);

// A volume of the shadow copy set as a writer sees it.
struct EventVolume {
  std::string name;             // the store's volume name
  Guid id;
  std::string path;             // the image file
  std::string snapshot_device;  // empty until the shadow exists
};

struct WriterEvent {
  WriterEventKind kind = WriterEventKind::kIdentify;
  Guid session_id;
  Guid snapshot_set_id;
  int32_t context = VSS_CTX_BACKUP;
  VSS_BACKUP_TYPE backup_type = VSS_BT_FULL;
  VSS_RESTORE_TYPE restore_type = VSS_RTYPE_UNDEFINED;
  bool components_selected = false;
  bool bootable_system_state = false;
  bool partial_file_support = false;
  VSS_APPLICATION_LEVEL level = VSS_APP_UNKNOWN;  // the level being frozen/thawed
  std::vector<EventVolume> volumes;
  WriterComponents components;  // this writer's part of the BCD
};

struct WriterEventResult {
  bool success = true;         // false: the writer vetoes / failed fatally
  HResult failure = S_OK;      // SetWriterFailure's code, S_OK if none
  HResult application_hr = S_OK;
  std::string message;
  std::optional<WriterMetadataDocument> metadata;  // Identify's answer
  WriterComponents components;  // the components as the writer left them
};

// What a writer told the coordinator when it subscribed.
struct WriterRegistration {
  WriterIdentity identity;
  VSS_APPLICATION_LEVEL level = VSS_APP_FRONT_END;
  uint32_t freeze_timeout_ms = 60000;
  int32_t event_flags = VSS_SM_BACKUP_EVENTS_FLAG | VSS_SM_RESTORE_EVENTS_FLAG;
};

class WriterEndpoint {
 public:
  virtual ~WriterEndpoint() = default;
  virtual const WriterRegistration& registration() const = 0;
  // Queues `event` for the writer and returns at once; the future gets the
  // writer's answer. A writer that is gone answers success=false,
  // failure=VSS_E_WRITER_INFRASTRUCTURE. Never throws.
  virtual std::shared_future<WriterEventResult> Send(WriterEvent event) = 0;
};

// Where a writer subscribes: the Coordinator in this process, or vssd
// through a Service connection (service.h), which forwards the events.
class WriterRegistry {
 public:
  virtual ~WriterRegistry() = default;
  // VSS_E_WRITER_ALREADY_SUBSCRIBED if an endpoint with the same instance id
  // is there.
  virtual VssStatus Subscribe(std::shared_ptr<WriterEndpoint> endpoint) = 0;
  // VSS_E_OBJECT_NOT_FOUND if not subscribed.
  virtual VssStatus Unsubscribe(const Guid& instance_id) = 0;
};

}  // namespace vss
