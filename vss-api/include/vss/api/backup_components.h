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
  // `coordinator` must outlive the object.
  explicit BackupComponents(Coordinator& coordinator);
  ~BackupComponents();
  BackupComponents(const BackupComponents&) = delete;
  BackupComponents& operator=(const BackupComponents&) = delete;

  // --- Set-up ---
  // First call of a backup; a saved BCD resumes it (errors of
  // BackupComponentsFromJson). VSS_E_BAD_STATE if already initialized.
  VssStatus InitializeForBackup(const std::string& bcd_json = "");
  // First call of a restore, from the BCD saved by the backup.
  VssStatus InitializeForRestore(const std::string& bcd_json);
  // Before StartSnapshotSet. A VSS_CTX_* value, optionally with
  // NO_AUTORECOVERY / DIFFERENTIAL bits; VSS_CTX_ALL only for Query.
  // VSS_E_UNSUPPORTED_CONTEXT for others.
  VssStatus SetContext(int32_t context);
  VssStatus SetBackupState(bool select_components, bool bootable_system_state,
                           VSS_BACKUP_TYPE backup_type, bool partial_file_support = false);
  VssStatus SetRestoreState(VSS_RESTORE_TYPE restore_type);
  Guid GetSessionId() const { return session_.id; }

  // --- Writers ---
  // Sends Identify to every subscribed writer; the answers are read with
  // GetWriterMetadata. A writer that fails or does not answer is left out
  // and reported by GetWriterStatus.
  VssStatusOr<std::shared_ptr<Async>> GatherWriterMetadata();
  size_t GetWriterMetadataCount() const;
  // E_INVALIDARG if i is out of range.
  VssStatusOr<ExamineWriterMetadata> GetWriterMetadata(size_t i) const;
  // Refreshes nothing (states are kept live); an Async for VSS symmetry.
  VssStatusOr<std::shared_ptr<Async>> GatherWriterStatus();
  size_t GetWriterStatusCount() const;
  VssStatusOr<WriterStatus> GetWriterStatus(size_t i) const;

  // --- Components (the BCD) ---
  // Before PrepareForBackup. VSS_E_OBJECT_ALREADY_EXISTS if added twice;
  // VSS_E_OBJECT_NOT_FOUND if the writer's gathered metadata lacks it.
  VssStatus AddComponent(const ComponentKey& key);
  // After DoSnapshotSet.
  VssStatus SetBackupSucceeded(const ComponentKey& key, bool succeeded);
  VssStatus SetBackupOptions(const ComponentKey& key, const std::string& options);
  VssStatus SetPreviousBackupStamp(const ComponentKey& key, const std::string& stamp);
  size_t GetWriterComponentsCount() const;
  VssStatusOr<WriterComponents> GetWriterComponents(size_t i) const;
  // The BCD as JSON (see components.h). VSS_E_BAD_STATE before Initialize.
  VssStatusOr<std::string> SaveAsJson() const;

  // --- Shadow copy set ---
  // VSS_E_SNAPSHOT_SET_IN_PROGRESS if this object already has a set started.
  VssStatusOr<Guid> StartSnapshotSet();
  // Adds a volume to the started set. VSS_E_OBJECT_ALREADY_EXISTS (already
  // in the set), VSS_E_OBJECT_NOT_FOUND (unknown volume),
  // VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED (64), VSS_E_PROVIDER_NOT_REGISTERED
  // (a provider id that is not ours).
  VssStatusOr<Guid> AddToSnapshotSet(const std::string& volume, const Guid& provider_id = Guid());
  // Sends PrepareForBackup; after StartSnapshotSet, once.
  VssStatusOr<std::shared_ptr<Async>> PrepareForBackup();
  // Creates the set (see Coordinator::CreateSnapshotSet); its failure code
  // is the Async's status. After VSS_E_SNAPSHOT_SET_IN_PROGRESS (another
  // requester's set is being created) nothing changed and it may be called
  // again; after any other failure the set is aborted (AbortBackup next).
  VssStatusOr<std::shared_ptr<Async>> DoSnapshotSet();
  // Sends BackupComplete; after a successful DoSnapshotSet.
  VssStatusOr<std::shared_ptr<Async>> BackupComplete();
  // Sends Abort to the writers of the set that have not had PostSnapshot.
  VssStatus AbortBackup();

  // --- Shadows (any time after Initialize) ---
  VssStatusOr<SnapshotProp> GetSnapshotProperties(const Guid& snapshot_id);
  // Shadows of the current context (VSS_CTX_ALL: all).
  VssStatusOr<std::vector<SnapshotProp>> Query();
  struct DeleteResult {
    int32_t deleted = 0;
    Guid non_deleted;  // the first shadow that could not be deleted
  };
  // VSS_OBJECT_SNAPSHOT or VSS_OBJECT_SNAPSHOT_SET; E_INVALIDARG otherwise.
  VssStatusOr<DeleteResult> DeleteSnapshots(const Guid& source_id, VSS_OBJECT_TYPE type,
                                            bool force);
  // Persistent shadows only (VSS_E_UNSUPPORTED_CONTEXT otherwise).
  VssStatus RevertToSnapshot(const Guid& snapshot_id, bool force_dismount);

  // --- Restore ---
  VssStatus SetSelectedForRestore(const ComponentKey& key, bool selected);
  VssStatusOr<std::shared_ptr<Async>> PreRestore();
  // After PreRestore.
  VssStatus SetFileRestoreStatus(const ComponentKey& key, VSS_FILE_RESTORE_STATUS status);
  VssStatusOr<std::shared_ptr<Async>> PostRestore();

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
