// Provider: what makes and keeps shadows (IVssSoftwareSnapshotProvider and
// friends), and SoftwareProvider, the one over engine::Store.
//
// The coordinator drives a set through BeginPrepareSnapshot (per volume),
// EndPrepareSnapshots, PreCommitSnapshots, CommitSnapshots (on_hold runs
// while writes to every volume are held; a non-OK return aborts the commit),
// PostCommitSnapshots, or AbortSnapshots at any point before the commit.
// A second provider implements this interface; the coordinator does not
// change.
//
// Ids: the set and shadow ids a requester got from StartSnapshotSet and
// AddToSnapshotSet are the ids the committed shadows carry.
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vss/api/hresult.h"
#include "vss/api/types.h"
#include "vss/base/guid.h"
#include "vss/engine/types.h"

namespace vss {

namespace engine {
class Store;
}  // namespace engine

struct ResolvedVolume {
  std::string name;
  Guid id;
  std::string path;
};

class Provider {
 public:
  virtual ~Provider() = default;

  virtual ProviderProp GetProviderProperties() const = 0;
  // The volume behind a name, id or unique id prefix:
  // VSS_E_OBJECT_NOT_FOUND if unknown.
  virtual VssStatusOr<ResolvedVolume> ResolveVolume(const std::string& volume) = 0;
  // OK, or VSS_E_UNSUPPORTED_CONTEXT.
  virtual VssStatus CheckContext(int32_t context) const = 0;

  virtual VssStatus BeginPrepareSnapshot(const Guid& set_id, const Guid& snapshot_id,
                                         int32_t context, const ResolvedVolume& volume) = 0;
  virtual VssStatus EndPrepareSnapshots(const Guid& set_id) = 0;
  virtual VssStatus PreCommitSnapshots(const Guid& set_id) = 0;
  virtual VssStatus CommitSnapshots(const Guid& set_id,
                                    const std::function<VssStatus()>& on_hold) = 0;
  // Returns the properties of the committed shadows, in preparation order.
  virtual VssStatusOr<std::vector<SnapshotProp>> PostCommitSnapshots(const Guid& set_id) = 0;
  // Forgets a set not committed. OK if unknown.
  virtual VssStatus AbortSnapshots(const Guid& set_id) = 0;

  // Shadows whose context equals `context` (VSS_CTX_ALL: every one).
  virtual VssStatusOr<std::vector<SnapshotProp>> Query(int32_t context) = 0;
  // VSS_E_OBJECT_NOT_FOUND for an unknown id.
  virtual VssStatusOr<SnapshotProp> GetSnapshotProperties(const Guid& snapshot_id) = 0;
  virtual VssStatus DeleteSnapshot(const Guid& snapshot_id) = 0;
  // Shadow ids of a set; VSS_E_OBJECT_NOT_FOUND.
  virtual VssStatusOr<std::vector<Guid>> SnapshotsOfSet(const Guid& set_id) = 0;
  // Reverts the shadow's volume to it. VSS_E_VOLUME_IN_USE when another
  // user has the volume open (vssd: an NBD client of its live export),
  // unless `force_dismount`, which disconnects those users first (as the
  // VSS service dismounts the volume).
  virtual VssStatus RevertToSnapshot(const Guid& snapshot_id, bool force_dismount) = 0;
};

// How the software provider borrows the volumes it works on. vssd counts
// users (its NBD clients and the provider) and closes a volume no one uses,
// which releases its image lock for other processes. Without one, volumes
// the provider opens stay open until the store is closed.
class VolumeUsers {
 public:
  virtual ~VolumeUsers() = default;
  // Opens the volume if needed and counts one more user.
  virtual Status Acquire(const Guid& volume_id) = 0;
  virtual void Release(const Guid& volume_id) = 0;

  // Keeps every other user off the volume (a revert): kBusy, changing
  // nothing, while one has it open for I/O, unless `force_dismount`, which
  // disconnects them and waits until they are gone (kBusy if they are not
  // within a few seconds). Until EndExclusive, new users are refused.
  // The default has no other users to keep off.
  virtual Status BeginExclusive(const Guid& volume_id, bool force_dismount) {
    (void)volume_id;
    (void)force_dismount;
    return OkStatus();
  }
  virtual void EndExclusive(const Guid& volume_id) { (void)volume_id; }
};

class SoftwareProvider final : public Provider {
 public:
  // `store` must outlive the provider.
  explicit SoftwareProvider(engine::Store& store);
  ~SoftwareProvider() override;

  engine::Store& store() { return store_; }
  // Before any other call; `users` must outlive the provider.
  void SetVolumeUsers(VolumeUsers* users) { users_ = users; }

  ProviderProp GetProviderProperties() const override;
  VssStatusOr<ResolvedVolume> ResolveVolume(const std::string& volume) override;
  VssStatus CheckContext(int32_t context) const override;
  VssStatus BeginPrepareSnapshot(const Guid& set_id, const Guid& snapshot_id,
                                 int32_t context, const ResolvedVolume& volume) override;
  VssStatus EndPrepareSnapshots(const Guid& set_id) override;
  VssStatus PreCommitSnapshots(const Guid& set_id) override;
  VssStatus CommitSnapshots(const Guid& set_id,
                            const std::function<VssStatus()>& on_hold) override;
  VssStatusOr<std::vector<SnapshotProp>> PostCommitSnapshots(const Guid& set_id) override;
  VssStatus AbortSnapshots(const Guid& set_id) override;
  VssStatusOr<std::vector<SnapshotProp>> Query(int32_t context) override;
  VssStatusOr<SnapshotProp> GetSnapshotProperties(const Guid& snapshot_id) override;
  VssStatus DeleteSnapshot(const Guid& snapshot_id) override;
  VssStatusOr<std::vector<Guid>> SnapshotsOfSet(const Guid& set_id) override;
  VssStatus RevertToSnapshot(const Guid& snapshot_id, bool force_dismount) override;

 private:
  struct PendingSet {
    int32_t context = 0;
    std::vector<std::pair<Guid, ResolvedVolume>> shadows;  // shadow id, volume
    bool committed = false;
  };

  // The shadow `snapshot_id`: VSS_E_OBJECT_NOT_FOUND if unknown.
  VssStatusOr<engine::ShadowInfo> FindShadow(const Guid& snapshot_id);
  // Acquires `volumes` from users_ (if any) for the life of the result.
  class Borrow;
  VssStatusOr<std::unique_ptr<Borrow>> BorrowVolumes(const std::vector<Guid>& volumes);
  VssStatusOr<std::unique_ptr<Borrow>> BorrowVolumeOf(const Guid& snapshot_id);

  engine::Store& store_;
  VolumeUsers* users_ = nullptr;
  mutable std::mutex mu_;
  std::map<Guid, PendingSet> sets_;
};

}  // namespace vss
