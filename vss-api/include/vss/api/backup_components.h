// BackupComponents: the requester (IVssBackupComponents). One object runs
// one backup or one restore, in the VSS order:
//   backup:  InitializeForBackup, [SetContext], SetBackupState,
//            GatherWriterMetadata, [AddComponent...], StartSnapshotSet,
//            AddToSnapshotSet..., PrepareForBackup, DoSnapshotSet,
//            [GatherWriterStatus], SetBackupSucceeded..., BackupComplete,
//            SaveAsJson; or AbortBackup after a failure.
//   restore: InitializeForRestore(bcd), GatherWriterMetadata,
//            SetSelectedForRestore..., SetRestoreState, PreRestore,
//            SetFileRestoreStatus..., PostRestore.
// A call out of this order returns VSS_E_BAD_STATE and changes nothing; so
// does any call that changes state while an asynchronous operation of this
// object is running. Asynchronous operations return an Async; call-time
// errors are returned directly.
//
// Volumes are named by store volume name, id or unique id prefix. An
// unknown volume is VSS_E_OBJECT_NOT_FOUND (the store does not know it);
// VSS_E_VOLUME_NOT_SUPPORTED is kept for a volume no provider can take.
//
// Ids: StartSnapshotSet and AddToSnapshotSet give the set and shadow ids
// before the shadows exist; the committed shadows carry exactly those ids.
//
// Destruction waits for a running operation, deletes the shadows of the set
// if its context is auto-release (neither PERSISTENT nor NO_AUTO_RELEASE),
// then sends BackupShutdown(set id) to the writers of the set.
//
// Two implementations: LocalBackupComponents runs the coordinator's
// sequence in this process; the one CreateVssBackupComponents (service.h)
// returns when vssd serves the store forwards every call to the daemon,
// which runs a LocalBackupComponents for this requester and destroys it
// (with the auto-release above) when the requester's connection closes.
//
// Thread safety: calls on one object must not overlap (as in VSS); the
// Async objects may be waited on from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vss/api/async.h"
#include "vss/api/components.h"
#include "vss/api/coordinator.h"
#include "vss/api/hresult.h"
#include "vss/api/types.h"
#include "vss/api/writer_metadata.h"

namespace vss {

// Names one component of one writer, as every per-component call does.
struct ComponentKey {
  Guid writer_id;
  VSS_COMPONENT_TYPE type = VSS_CT_UNDEFINED;
  std::string logical_path;
  std::string component_name;
};

class BackupComponents {
 public:
  BackupComponents() = default;
  virtual ~BackupComponents() = default;
  BackupComponents(const BackupComponents&) = delete;
  BackupComponents& operator=(const BackupComponents&) = delete;

  // --- Set-up ---
  // First call of a backup; a saved BCD resumes it (errors of
  // BackupComponentsFromJson). VSS_E_BAD_STATE if already initialized.
  virtual VssStatus InitializeForBackup(const std::string& bcd_json = "") = 0;
  // First call of a restore, from the BCD saved by the backup.
  virtual VssStatus InitializeForRestore(const std::string& bcd_json) = 0;
  // Before StartSnapshotSet. A VSS_CTX_* value, optionally with
  // NO_AUTORECOVERY / DIFFERENTIAL bits; VSS_CTX_ALL only for Query.
  // VSS_E_UNSUPPORTED_CONTEXT for others.
  virtual VssStatus SetContext(int32_t context) = 0;
  virtual VssStatus SetBackupState(bool select_components, bool bootable_system_state,
                           VSS_BACKUP_TYPE backup_type, bool partial_file_support = false) = 0;
  virtual VssStatus SetRestoreState(VSS_RESTORE_TYPE restore_type) = 0;
  virtual Guid GetSessionId() const = 0;

  // --- Writers ---
  // Sends Identify to every subscribed writer; the answers are read with
  // GetWriterMetadata. A writer that fails or does not answer is left out
  // and reported by GetWriterStatus.
  virtual VssStatusOr<std::shared_ptr<Async>> GatherWriterMetadata() = 0;
  virtual size_t GetWriterMetadataCount() const = 0;
  // E_INVALIDARG if i is out of range.
  virtual VssStatusOr<ExamineWriterMetadata> GetWriterMetadata(size_t i) const = 0;
  // Refreshes nothing (states are kept live); an Async for VSS symmetry.
  virtual VssStatusOr<std::shared_ptr<Async>> GatherWriterStatus() = 0;
  virtual size_t GetWriterStatusCount() const = 0;
  virtual VssStatusOr<WriterStatus> GetWriterStatus(size_t i) const = 0;

  // --- Components (the BCD) ---
  // Before PrepareForBackup. VSS_E_OBJECT_ALREADY_EXISTS if added twice;
  // VSS_E_OBJECT_NOT_FOUND if the writer's gathered metadata lacks it.
  virtual VssStatus AddComponent(const ComponentKey& key) = 0;
  // After DoSnapshotSet.
  virtual VssStatus SetBackupSucceeded(const ComponentKey& key, bool succeeded) = 0;
  virtual VssStatus SetBackupOptions(const ComponentKey& key, const std::string& options) = 0;
  virtual VssStatus SetPreviousBackupStamp(const ComponentKey& key, const std::string& stamp) = 0;
  virtual size_t GetWriterComponentsCount() const = 0;
  virtual VssStatusOr<WriterComponents> GetWriterComponents(size_t i) const = 0;
  // The BCD as JSON (see components.h). VSS_E_BAD_STATE before Initialize.
  virtual VssStatusOr<std::string> SaveAsJson() const = 0;

  // --- Shadow copy set ---
  // VSS_E_SNAPSHOT_SET_IN_PROGRESS if this object already has a set started.
  virtual VssStatusOr<Guid> StartSnapshotSet() = 0;
  // Adds a volume to the started set. VSS_E_OBJECT_ALREADY_EXISTS (already
  // in the set), VSS_E_OBJECT_NOT_FOUND (unknown volume),
  // VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED (64), VSS_E_PROVIDER_NOT_REGISTERED
  // (a provider id that is not ours).
  virtual VssStatusOr<Guid> AddToSnapshotSet(const std::string& volume, const Guid& provider_id = Guid()) = 0;
  // Sends PrepareForBackup; after StartSnapshotSet, once.
  virtual VssStatusOr<std::shared_ptr<Async>> PrepareForBackup() = 0;
  // Creates the set (see Coordinator::CreateSnapshotSet); its failure code
  // is the Async's status. After VSS_E_SNAPSHOT_SET_IN_PROGRESS (another
  // requester's set is being created) nothing changed and it may be called
  // again; after any other failure the set is aborted (AbortBackup next).
  virtual VssStatusOr<std::shared_ptr<Async>> DoSnapshotSet() = 0;
  // Sends BackupComplete; after a successful DoSnapshotSet.
  virtual VssStatusOr<std::shared_ptr<Async>> BackupComplete() = 0;
  // Sends Abort to the writers of the set that have not had PostSnapshot.
  virtual VssStatus AbortBackup() = 0;

  // --- Shadows (any time after Initialize) ---
  virtual VssStatusOr<SnapshotProp> GetSnapshotProperties(const Guid& snapshot_id) = 0;
  // Shadows of the current context (VSS_CTX_ALL: all).
  virtual VssStatusOr<std::vector<SnapshotProp>> Query() = 0;
  struct DeleteResult {
    int32_t deleted = 0;
    Guid non_deleted;  // the first shadow that could not be deleted
  };
  // VSS_OBJECT_SNAPSHOT or VSS_OBJECT_SNAPSHOT_SET; E_INVALIDARG otherwise.
  virtual VssStatusOr<DeleteResult> DeleteSnapshots(const Guid& source_id, VSS_OBJECT_TYPE type,
                                            bool force) = 0;
  // Persistent shadows only (VSS_E_UNSUPPORTED_CONTEXT otherwise).
  virtual VssStatus RevertToSnapshot(const Guid& snapshot_id, bool force_dismount) = 0;

  // --- Restore ---
  virtual VssStatus SetSelectedForRestore(const ComponentKey& key, bool selected) = 0;
  virtual VssStatusOr<std::shared_ptr<Async>> PreRestore() = 0;
  // After PreRestore.
  virtual VssStatus SetFileRestoreStatus(const ComponentKey& key, VSS_FILE_RESTORE_STATUS status) = 0;
  virtual VssStatusOr<std::shared_ptr<Async>> PostRestore() = 0;
};

// The requester in this process, over a Coordinator (CreateVssBackupComponents
// in service.h picks it when no daemon serves the store).
class LocalBackupComponents final : public BackupComponents {
 public:
  // `coordinator` must outlive the object.
  explicit LocalBackupComponents(Coordinator& coordinator);
  ~LocalBackupComponents() override;
  VssStatus InitializeForBackup(const std::string& bcd_json = "") override;
  VssStatus InitializeForRestore(const std::string& bcd_json) override;
  VssStatus SetContext(int32_t context) override;
  VssStatus SetBackupState(bool select_components, bool bootable_system_state,
                           VSS_BACKUP_TYPE backup_type, bool partial_file_support = false) override;
  VssStatus SetRestoreState(VSS_RESTORE_TYPE restore_type) override;
  Guid GetSessionId() const override { return session_.id; }
  VssStatusOr<std::shared_ptr<Async>> GatherWriterMetadata() override;
  size_t GetWriterMetadataCount() const override;
  VssStatusOr<ExamineWriterMetadata> GetWriterMetadata(size_t i) const override;
  VssStatusOr<std::shared_ptr<Async>> GatherWriterStatus() override;
  size_t GetWriterStatusCount() const override;
  VssStatusOr<WriterStatus> GetWriterStatus(size_t i) const override;
  VssStatus AddComponent(const ComponentKey& key) override;
  VssStatus SetBackupSucceeded(const ComponentKey& key, bool succeeded) override;
  VssStatus SetBackupOptions(const ComponentKey& key, const std::string& options) override;
  VssStatus SetPreviousBackupStamp(const ComponentKey& key, const std::string& stamp) override;
  size_t GetWriterComponentsCount() const override;
  VssStatusOr<WriterComponents> GetWriterComponents(size_t i) const override;
  VssStatusOr<std::string> SaveAsJson() const override;
  VssStatusOr<Guid> StartSnapshotSet() override;
  VssStatusOr<Guid> AddToSnapshotSet(const std::string& volume, const Guid& provider_id = Guid()) override;
  VssStatusOr<std::shared_ptr<Async>> PrepareForBackup() override;
  VssStatusOr<std::shared_ptr<Async>> DoSnapshotSet() override;
  VssStatusOr<std::shared_ptr<Async>> BackupComplete() override;
  VssStatus AbortBackup() override;
  VssStatusOr<SnapshotProp> GetSnapshotProperties(const Guid& snapshot_id) override;
  VssStatusOr<std::vector<SnapshotProp>> Query() override;
  VssStatusOr<DeleteResult> DeleteSnapshots(const Guid& source_id, VSS_OBJECT_TYPE type,
                                            bool force) override;
  VssStatus RevertToSnapshot(const Guid& snapshot_id, bool force_dismount) override;
  VssStatus SetSelectedForRestore(const ComponentKey& key, bool selected) override;
  VssStatusOr<std::shared_ptr<Async>> PreRestore() override;
  VssStatus SetFileRestoreStatus(const ComponentKey& key, VSS_FILE_RESTORE_STATUS status) override;
  VssStatusOr<std::shared_ptr<Async>> PostRestore() override;

 private:
  enum class Phase {
    kNew,
    kBackup,         // initialized; no set yet
    kSetStarted,
    kSnapshotDone,
    kSnapshotFailed,
    kBackupComplete,
    kAborted,
    kRestore,
    kPreRestored,
    kPostRestored,
  };
  bool IsBackupPhase() const;
  VssStatus Busy() const;  // VSS_E_BAD_STATE if an operation runs
  // Builds the participant list from the subscribed writers (once).
  void EnsureParticipants();  // REQUIRES: session_.mu held
  // Participants that answered Identify and whose data is on the set's
  // volumes (all of them when their metadata names no files).
  std::vector<size_t> SnapshotWriters();  // REQUIRES: session_.mu held
  // Participants with components in the BCD (component mode), else all that
  // answered Identify.
  std::vector<size_t> BackupWriters();  // REQUIRES: session_.mu held
  std::vector<size_t> RestoreWriters();  // REQUIRES: session_.mu held
  Component* FindComponent(const ComponentKey& key);  // REQUIRES: session_.mu held
  // Runs `op` as this object's Async; `done` (under mu_) sets the phase.
  std::shared_ptr<Async> Run(std::function<VssStatus(const CancelToken&)> op);
  WriterEvent BaseEvent(WriterEventKind kind);  // REQUIRES: session_.mu held

  Coordinator& coordinator_;
  Provider& provider_;
  mutable std::mutex mu_;  // guards the fields below (lock before session_.mu)
  Phase phase_ = Phase::kNew;
  bool op_running_ = false;
  bool prepared_ = false;
  bool gathered_ = false;
  int32_t context_ = VSS_CTX_BACKUP;
  Guid set_id_;
  std::vector<SetVolume> volumes_;
  std::vector<size_t> set_writers_;     // writers of the set
  std::vector<SnapshotProp> created_;   // the shadows made
  std::shared_ptr<Async> op_;           // the last operation
  Session session_;
};

}  // namespace vss
