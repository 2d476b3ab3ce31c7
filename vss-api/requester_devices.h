// Internal pieces shared by the requester's calls (requester.cc, backup.cc,
// restore.cc): the devices a backup reads and a restore writes, a context's
// name, and the abort of a set after a failure of the caller's own work.
#pragma once

#include <memory>
#include <string>

#include "vss/api/backup.h"

namespace vss {

// A read-only view of shadow `id`: through the engine in-process, else
// vssd's export "shadow/<id>" through `open_export` (kUnsupported when it
// is empty). Errors name the shadow.
StatusOr<std::unique_ptr<BlockDevice>> OpenShadowView(
    Service& service, const Guid& id, const ExportOpener& open_export);

// A live volume to write, every write through copy-on-write.
struct LiveVolume {
  std::string name;
  BlockDevice* device = nullptr;       // the engine's volume, or `owned`
  std::unique_ptr<BlockDevice> owned;  // a connection to vssd's export
};
// The volume `name` (or id): through the engine in-process, else vssd's
// export "live/<name>" through `open_export`.
StatusOr<LiveVolume> OpenLiveVolume(Service& service, const std::string& name,
                                    const ExportOpener& open_export);

// The name of a context of ContextNames(), or its number.
std::string ContextNameOf(int32_t context);

// AbortBackup after `cause` broke the caller's work on a created set; the
// writers' report goes to `on_aborted`. Returns the error (naming `what`).
Status AbortAfterSet(BackupComponents& bc, const AbortCallback& on_aborted,
                     const std::string& what, const Status& cause);

}  // namespace vss
