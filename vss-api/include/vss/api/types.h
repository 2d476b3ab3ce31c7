// The VSS enumerations (with VSS's names and values) and the property
// structures of the VSS model: SnapshotProp (every VSS_SNAPSHOT_PROP field),
// ProviderProp (VSS_PROVIDER_PROP), DiffAreaProp (VSS_DIFF_AREA_PROP).
// Plain values; any thread. Strings are UTF-8; a "volume" is a volume name
// (or id) of the store; a snapshot device is the path or URI to read the
// shadow through.
#pragma once

#include <cstdint>
#include <string>

#include "vss/base/guid.h"

namespace vss {

// NOLINTBEGIN(readability-identifier-naming): VSS names are kept.
enum VSS_OBJECT_TYPE : int32_t {
  VSS_OBJECT_UNKNOWN = 0,
  VSS_OBJECT_NONE = 1,
  VSS_OBJECT_SNAPSHOT_SET = 2,
  VSS_OBJECT_SNAPSHOT = 3,
  VSS_OBJECT_PROVIDER = 4,
};

enum VSS_SNAPSHOT_STATE : int32_t {
  VSS_SS_UNKNOWN = 0,
  VSS_SS_PREPARING = 1,
  VSS_SS_PROCESSING_PREPARE = 2,
  VSS_SS_PREPARED = 3,
  VSS_SS_PROCESSING_PRECOMMIT = 4,
  VSS_SS_PRECOMMITTED = 5,
  VSS_SS_PROCESSING_COMMIT = 6,
  VSS_SS_COMMITTED = 7,
  VSS_SS_PROCESSING_POSTCOMMIT = 8,
  VSS_SS_PROCESSING_PREFINALCOMMIT = 9,
  VSS_SS_PREFINALCOMMITTED = 10,
  VSS_SS_PROCESSING_POSTFINALCOMMIT = 11,
  VSS_SS_CREATED = 12,
  VSS_SS_ABORTED = 13,
  VSS_SS_DELETED = 14,
  VSS_SS_POSTCOMMITTED = 15,
};

// Bit mask values (plain ints so that masks of different kinds combine).
using VSS_VOLUME_SNAPSHOT_ATTRIBUTES = int32_t;
inline constexpr int32_t VSS_VOLSNAP_ATTR_PERSISTENT = 0x1;
inline constexpr int32_t VSS_VOLSNAP_ATTR_NO_AUTORECOVERY = 0x2;
inline constexpr int32_t VSS_VOLSNAP_ATTR_CLIENT_ACCESSIBLE = 0x4;
inline constexpr int32_t VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE = 0x8;
inline constexpr int32_t VSS_VOLSNAP_ATTR_NO_WRITERS = 0x10;
inline constexpr int32_t VSS_VOLSNAP_ATTR_TRANSPORTABLE = 0x20;
inline constexpr int32_t VSS_VOLSNAP_ATTR_NOT_SURFACED = 0x40;
inline constexpr int32_t VSS_VOLSNAP_ATTR_NOT_TRANSACTED = 0x80;
inline constexpr int32_t VSS_VOLSNAP_ATTR_HARDWARE_ASSISTED = 0x10000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_DIFFERENTIAL = 0x20000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_PLEX = 0x40000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_IMPORTED = 0x80000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY = 0x100000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_EXPOSED_REMOTELY = 0x200000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_AUTORECOVER = 0x400000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_ROLLBACK_RECOVERY = 0x800000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_DELAYED_POSTSNAPSHOT = 0x1000000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_TXF_RECOVERY = 0x2000000;
inline constexpr int32_t VSS_VOLSNAP_ATTR_FILE_SHARE = 0x4000000;

// Bit mask values (plain ints so that masks of different kinds combine).
using VSS_SNAPSHOT_CONTEXT = int32_t;
inline constexpr int32_t VSS_CTX_BACKUP = 0x0;
inline constexpr int32_t VSS_CTX_FILE_SHARE_BACKUP = 0x10;
inline constexpr int32_t VSS_CTX_NAS_ROLLBACK = 0x19;
inline constexpr int32_t VSS_CTX_APP_ROLLBACK = 0x9;
inline constexpr int32_t VSS_CTX_CLIENT_ACCESSIBLE = 0x1d;
inline constexpr int32_t VSS_CTX_CLIENT_ACCESSIBLE_WRITERS = 0xd;
inline constexpr int32_t VSS_CTX_ALL = static_cast<int32_t>(0xffffffff);

enum VSS_BACKUP_TYPE : int32_t {
  VSS_BT_UNDEFINED = 0,
  VSS_BT_FULL = 1,
  VSS_BT_INCREMENTAL = 2,
  VSS_BT_DIFFERENTIAL = 3,
  VSS_BT_LOG = 4,
  VSS_BT_COPY = 5,
  VSS_BT_OTHER = 6,
};

enum VSS_RESTORE_TYPE : int32_t {
  VSS_RTYPE_UNDEFINED = 0,
  VSS_RTYPE_BY_COPY = 1,
  VSS_RTYPE_IMPORT = 2,
  VSS_RTYPE_OTHER = 3,
};

enum VSS_ROLLFORWARD_TYPE : int32_t {
  VSS_RF_UNDEFINED = 0,
  VSS_RF_NONE = 1,
  VSS_RF_ALL = 2,
  VSS_RF_PARTIAL = 3,
};

enum VSS_PROVIDER_TYPE : int32_t {
  VSS_PROV_UNKNOWN = 0,
  VSS_PROV_SYSTEM = 1,
  VSS_PROV_SOFTWARE = 2,
  VSS_PROV_HARDWARE = 3,
  VSS_PROV_FILESHARE = 4,
};

enum VSS_WRITER_STATE : int32_t {
  VSS_WS_UNKNOWN = 0,
  VSS_WS_STABLE = 1,
  VSS_WS_WAITING_FOR_FREEZE = 2,
  VSS_WS_WAITING_FOR_THAW = 3,
  VSS_WS_WAITING_FOR_POST_SNAPSHOT = 4,
  VSS_WS_WAITING_FOR_BACKUP_COMPLETE = 5,
  VSS_WS_FAILED_AT_IDENTIFY = 6,
  VSS_WS_FAILED_AT_PREPARE_BACKUP = 7,
  VSS_WS_FAILED_AT_PREPARE_SNAPSHOT = 8,
  VSS_WS_FAILED_AT_FREEZE = 9,
  VSS_WS_FAILED_AT_THAW = 10,
  VSS_WS_FAILED_AT_POST_SNAPSHOT = 11,
  VSS_WS_FAILED_AT_BACKUP_COMPLETE = 12,
  VSS_WS_FAILED_AT_PRE_RESTORE = 13,
  VSS_WS_FAILED_AT_POST_RESTORE = 14,
  VSS_WS_FAILED_AT_BACKUPSHUTDOWN = 15,
  VSS_WS_COUNT = 16,
};

enum VSS_APPLICATION_LEVEL : int32_t {
  VSS_APP_UNKNOWN = 0,
  VSS_APP_SYSTEM = 1,
  VSS_APP_BACK_END = 2,
  VSS_APP_FRONT_END = 3,
  VSS_APP_SYSTEM_RM = 4,
  VSS_APP_AUTO = -1,
};

enum VSS_USAGE_TYPE : int32_t {
  VSS_UT_UNDEFINED = 0,
  VSS_UT_BOOTABLESYSTEMSTATE = 1,
  VSS_UT_SYSTEMSERVICE = 2,
  VSS_UT_USERDATA = 3,
  VSS_UT_OTHER = 4,
};

enum VSS_SOURCE_TYPE : int32_t {
  VSS_ST_UNDEFINED = 0,
  VSS_ST_TRANSACTEDDB = 1,
  VSS_ST_NONTRANSACTEDDB = 2,
  VSS_ST_OTHER = 3,
};

enum VSS_COMPONENT_TYPE : int32_t {
  VSS_CT_UNDEFINED = 0,
  VSS_CT_DATABASE = 1,
  VSS_CT_FILEGROUP = 2,
};

// Bit mask values (plain ints so that masks of different kinds combine).
using VSS_COMPONENT_FLAGS = int32_t;
inline constexpr int32_t VSS_CF_BACKUP_RECOVERY = 0x1;
inline constexpr int32_t VSS_CF_APP_ROLLBACK_RECOVERY = 0x2;
inline constexpr int32_t VSS_CF_NOT_SYSTEM_STATE = 0x4;

enum VSS_RESTOREMETHOD_ENUM : int32_t {
  VSS_RME_UNDEFINED = 0,
  VSS_RME_RESTORE_IF_NOT_THERE = 1,
  VSS_RME_RESTORE_IF_CAN_REPLACE = 2,
  VSS_RME_STOP_RESTORE_START = 3,
  VSS_RME_RESTORE_TO_ALTERNATE_LOCATION = 4,
  VSS_RME_RESTORE_AT_REBOOT = 5,
  VSS_RME_RESTORE_AT_REBOOT_IF_CANNOT_REPLACE = 6,
  VSS_RME_CUSTOM = 7,
  VSS_RME_RESTORE_STOP_START = 8,
};

enum VSS_WRITERRESTORE_ENUM : int32_t {
  VSS_WRE_UNDEFINED = 0,
  VSS_WRE_NEVER = 1,
  VSS_WRE_IF_REPLACE_FAILS = 2,
  VSS_WRE_ALWAYS = 3,
};

enum VSS_ALTERNATE_WRITER_STATE : int32_t {
  VSS_AWS_UNDEFINED = 0,
  VSS_AWS_NO_ALTERNATE_WRITER = 1,
  VSS_AWS_ALTERNATE_WRITER_EXISTS = 2,
  VSS_AWS_THIS_IS_ALTERNATE_WRITER = 3,
};

// Bit mask values (plain ints so that masks of different kinds combine).
using VSS_SUBSCRIBE_MASK = int32_t;
inline constexpr int32_t VSS_SM_POST_SNAPSHOT_FLAG = 0x1;
inline constexpr int32_t VSS_SM_BACKUP_EVENTS_FLAG = 0x2;
inline constexpr int32_t VSS_SM_RESTORE_EVENTS_FLAG = 0x4;
inline constexpr int32_t VSS_SM_IO_THROTTLING_FLAG = 0x8;
inline constexpr int32_t VSS_SM_ALL_FLAGS = static_cast<int32_t>(0xffffffff);

enum VSS_RESTORE_TARGET : int32_t {
  VSS_RT_UNDEFINED = 0,
  VSS_RT_ORIGINAL = 1,
  VSS_RT_ALTERNATE = 2,
  VSS_RT_DIRECTED = 3,
  VSS_RT_ORIGINAL_LOCATION = 4,
};

enum VSS_FILE_RESTORE_STATUS : int32_t {
  VSS_RS_UNDEFINED = 0,
  VSS_RS_NONE = 1,
  VSS_RS_ALL = 2,
  VSS_RS_FAILED = 3,
};

// Bit mask values (plain ints so that masks of different kinds combine).
using VSS_FILE_SPEC_BACKUP_TYPE = int32_t;
inline constexpr int32_t VSS_FSBT_FULL_BACKUP_REQUIRED = 0x1;
inline constexpr int32_t VSS_FSBT_DIFFERENTIAL_BACKUP_REQUIRED = 0x2;
inline constexpr int32_t VSS_FSBT_INCREMENTAL_BACKUP_REQUIRED = 0x4;
inline constexpr int32_t VSS_FSBT_LOG_BACKUP_REQUIRED = 0x8;
inline constexpr int32_t VSS_FSBT_FULL_SNAPSHOT_REQUIRED = 0x100;
inline constexpr int32_t VSS_FSBT_DIFFERENTIAL_SNAPSHOT_REQUIRED = 0x200;
inline constexpr int32_t VSS_FSBT_INCREMENTAL_SNAPSHOT_REQUIRED = 0x400;
inline constexpr int32_t VSS_FSBT_LOG_SNAPSHOT_REQUIRED = 0x800;
inline constexpr int32_t VSS_FSBT_CREATED_DURING_BACKUP = 0x10000;
inline constexpr int32_t VSS_FSBT_ALL_BACKUP_REQUIRED = 0xf;
inline constexpr int32_t VSS_FSBT_ALL_SNAPSHOT_REQUIRED = 0xf00;

// Bit mask values (plain ints so that masks of different kinds combine).
using VSS_BACKUP_SCHEMA = int32_t;
inline constexpr int32_t VSS_BS_UNDEFINED = 0;
inline constexpr int32_t VSS_BS_DIFFERENTIAL = 0x1;
inline constexpr int32_t VSS_BS_INCREMENTAL = 0x2;
inline constexpr int32_t VSS_BS_EXCLUSIVE_INCREMENTAL_DIFFERENTIAL = 0x4;
inline constexpr int32_t VSS_BS_LOG = 0x8;
inline constexpr int32_t VSS_BS_COPY = 0x10;
inline constexpr int32_t VSS_BS_TIMESTAMPED = 0x20;
inline constexpr int32_t VSS_BS_LAST_MODIFY = 0x40;
inline constexpr int32_t VSS_BS_LSN = 0x80;
inline constexpr int32_t VSS_BS_WRITER_SUPPORTS_NEW_TARGET = 0x100;
inline constexpr int32_t VSS_BS_WRITER_SUPPORTS_RESTORE_WITH_MOVE = 0x200;
inline constexpr int32_t VSS_BS_INDEPENDENT_SYSTEM_STATE = 0x400;
inline constexpr int32_t VSS_BS_ROLLFORWARD_RESTORE = 0x1000;
inline constexpr int32_t VSS_BS_RESTORE_RENAME = 0x2000;
inline constexpr int32_t VSS_BS_AUTHORITATIVE_RESTORE = 0x4000;
inline constexpr int32_t VSS_BS_WRITER_SUPPORTS_PARALLEL_RESTORES = 0x8000;

enum VSS_SNAPSHOT_PROPERTY_ID : int32_t {
  VSS_SPROPID_UNKNOWN = 0,
  VSS_SPROPID_SNAPSHOT_ID = 1,
  VSS_SPROPID_SNAPSHOT_SET_ID = 2,
  VSS_SPROPID_SNAPSHOTS_COUNT = 3,
  VSS_SPROPID_SNAPSHOT_DEVICE = 4,
  VSS_SPROPID_ORIGINAL_VOLUME = 5,
  VSS_SPROPID_ORIGINATING_MACHINE = 6,
  VSS_SPROPID_SERVICE_MACHINE = 7,
  VSS_SPROPID_EXPOSED_NAME = 8,
  VSS_SPROPID_EXPOSED_PATH = 9,
  VSS_SPROPID_PROVIDER_ID = 10,
  VSS_SPROPID_SNAPSHOT_ATTRIBUTES = 11,
  VSS_SPROPID_CREATION_TIMESTAMP = 12,
  VSS_SPROPID_STATUS = 13,
};

// Bit mask values (plain ints so that masks of different kinds combine).
using VSS_PROVIDER_CAPABILITIES = int32_t;
inline constexpr int32_t VSS_PRV_CAPABILITY_LEGACY = 0x1;
inline constexpr int32_t VSS_PRV_CAPABILITY_COMPLIANT = 0x2;
inline constexpr int32_t VSS_PRV_CAPABILITY_LUN_REPOINT = 0x4;
inline constexpr int32_t VSS_PRV_CAPABILITY_LUN_RESYNC = 0x8;
inline constexpr int32_t VSS_PRV_CAPABILITY_OFFLINE_CREATION = 0x10;
inline constexpr int32_t VSS_PRV_CAPABILITY_MULTIPLE_IMPORT = 0x20;
inline constexpr int32_t VSS_PRV_CAPABILITY_RECYCLING = 0x40;
inline constexpr int32_t VSS_PRV_CAPABILITY_PLEX = 0x80;
inline constexpr int32_t VSS_PRV_CAPABILITY_DIFFERENTIAL = 0x100;
inline constexpr int32_t VSS_PRV_CAPABILITY_CLUSTERED = 0x200;

enum VSS_MGMT_OBJECT_TYPE : int32_t {
  VSS_MGMT_OBJECT_UNKNOWN = 0,
  VSS_MGMT_OBJECT_VOLUME = 1,
  VSS_MGMT_OBJECT_DIFF_VOLUME = 2,
  VSS_MGMT_OBJECT_DIFF_AREA = 3,
};

// IsVolumeSnapshotted capability bits.
inline constexpr int32_t VSS_SC_DISABLE_DEFRAG = 0x1;
inline constexpr int32_t VSS_SC_DISABLE_CONTENTINDEX = 0x2;
// Diff-area maximum sizes.
inline constexpr int64_t VSS_ASSOC_NO_MAX_SPACE = -1;
inline constexpr int64_t VSS_ASSOC_REMOVE = 0;
// NOLINTEND(readability-identifier-naming)

// Infinite timeout for Async::Wait and event waits.
inline constexpr uint32_t kInfinite = 0xffffffff;
// At most this many volumes in one shadow copy set.
inline constexpr size_t kMaxVolumesPerSet = 64;

// VSS_SNAPSHOT_PROP, field for field.
struct SnapshotProp {
  Guid snapshot_id;                   // m_SnapshotId
  Guid snapshot_set_id;               // m_SnapshotSetId
  int32_t snapshots_count = 0;        // m_lSnapshotsCount
  std::string snapshot_device_object; // m_pwszSnapshotDeviceObject
  std::string original_volume_name;   // m_pwszOriginalVolumeName
  std::string originating_machine;    // m_pwszOriginatingMachine
  std::string service_machine;        // m_pwszServiceMachine
  std::string exposed_name;           // m_pwszExposedName
  std::string exposed_path;           // m_pwszExposedPath
  Guid provider_id;                   // m_ProviderId
  int32_t snapshot_attributes = 0;    // m_lSnapshotAttributes
  int64_t creation_timestamp = 0;     // m_tsCreationTimestamp (100 ns, 1601)
  VSS_SNAPSHOT_STATE status = VSS_SS_UNKNOWN;  // m_eStatus
};

// VSS_PROVIDER_PROP.
struct ProviderProp {
  Guid provider_id;
  std::string provider_name;
  VSS_PROVIDER_TYPE provider_type = VSS_PROV_UNKNOWN;
  std::string provider_version;
  Guid provider_version_id;
  Guid class_id;
};

// VSS_DIFF_AREA_PROP.
struct DiffAreaProp {
  std::string volume_name;
  std::string diff_area_volume_name;  // the diff area's directory
  int64_t maximum_diff_space = VSS_ASSOC_NO_MAX_SPACE;
  int64_t allocated_diff_space = 0;
  int64_t used_diff_space = 0;
};

// The context part of a SetContext value must be one of these bits' sums.
inline constexpr int32_t kContextBitsMask =
    VSS_VOLSNAP_ATTR_PERSISTENT | VSS_VOLSNAP_ATTR_CLIENT_ACCESSIBLE |
    VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE | VSS_VOLSNAP_ATTR_NO_WRITERS;

}  // namespace vss
