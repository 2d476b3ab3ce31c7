// Private: the requester methods of the vssd protocol (PROTOCOL.md), each
// defined once. A method is its name on the wire, the BackupComponents
// method it calls, the name and codec of each argument, and the codec of
// its result. From this one table both ends are made:
//   - the host (service_host.cc) dispatches a call by name with Serve():
//     decode the arguments, call the LocalBackupComponents, encode the
//     result (MakeDispatch builds its map);
//   - the client (remote_service.cc) proxies a call with Encode() and
//     Reply::Read(): the same names, the same codecs.
// Asynchronous methods (the host starts them and the client waits with
// "Wait") are listed by name and method only.
//
// Codecs are pure: Encode(value) -> Json, Decode(Json) -> value; Decode
// throws (nlohmann::json or ShapeError) on a value of the wrong shape. The
// host turns that into E_INVALIDARG, the client into E_UNEXPECTED.
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "vss/api/async.h"
#include "vss/api/backup_components.h"
#include "wire.h"

namespace vss::internal::rpc {

// A name usable as a template argument.
template <size_t N>
struct Name {
  constexpr Name(const char (&text)[N]) {
    std::copy_n(text, N, s);
  }  // NOLINT: implicit
  char s[N];
};

// --- Codecs of arguments and results ---

template <typename T>
struct Plain {  // bool, int32_t, size_t, std::string
  static Json Encode(const T& v) { return Json(v); }
  static T Decode(const Json& j) { return j.get<T>(); }
};
template <typename E>
struct Enum {  // VSS_* enums travel as numbers
  static Json Encode(E v) { return Json(static_cast<int32_t>(v)); }
  static E Decode(const Json& j) { return static_cast<E>(IntFromJson<int>(j)); }
};
struct GuidCodec {
  static Json Encode(const Guid& g) { return g.ToString(); }
  static Guid Decode(const Json& j) { return GuidFromJson(j); }
};
struct NullableGuid {  // "" for the null id
  static Json Encode(const Guid& g) { return g.IsNull() ? "" : g.ToString(); }
  static Guid Decode(const Json& j) {
    return j.get<std::string>().empty() ? Guid() : GuidFromJson(j);
  }
};
struct KeyCodec {
  static Json Encode(const ComponentKey& k) { return ToJson(k); }
  static ComponentKey Decode(const Json& j) { return ComponentKeyFromJson(j); }
};
struct WriterStatusCodec {
  static Json Encode(const WriterStatus& s) { return ToJson(s); }
  static WriterStatus Decode(const Json& j) { return WriterStatusFromJson(j); }
};
struct SnapshotPropCodec {
  static Json Encode(const SnapshotProp& p) { return ToJson(p); }
  static SnapshotProp Decode(const Json& j) { return SnapshotPropFromJson(j); }
};
struct ProviderPropCodec {
  static Json Encode(const ProviderProp& p) { return ToJson(p); }
  static ProviderProp Decode(const Json& j) { return ProviderPropFromJson(j); }
};
// A vector as a JSON array, each element through codec C.
template <typename C>
struct ListOf {
  using T = decltype(C::Decode(Json()));
  static Json Encode(const std::vector<T>& v) {
    Json out = Json::array();
    for (const T& e : v) out.push_back(C::Encode(e));
    return out;
  }
  static std::vector<T> Decode(const Json& j) {
    std::vector<T> out;
    for (const Json& e : j) out.push_back(C::Decode(e));
    return out;
  }
};
struct WriterComponentsCodec {
  static Json Encode(const WriterComponents& c) { return ToJson(c); }
  static WriterComponents Decode(const Json& j) {
    return WriterComponentsFromJson(j);
  }
};
struct MetadataCodec {
  static Json Encode(const ExamineWriterMetadata& m) {
    return ToJson(m.document());
  }
  static ExamineWriterMetadata Decode(const Json& j) {
    return ExamineWriterMetadata(WriterMetadataFromJsonValue(j));
  }
};
struct DeleteResultCodec {
  static Json Encode(const BackupComponents::DeleteResult& r) {
    return Json{{"deleted", r.deleted},
                {"non_deleted", NullableGuid::Encode(r.non_deleted)}};
  }
  static BackupComponents::DeleteResult Decode(const Json& j) {
    BackupComponents::DeleteResult r;
    r.deleted = IntFromJson<int32_t>(j.at("deleted"));
    r.non_deleted = NullableGuid::Decode(j.at("non_deleted"));
    return r;
  }
};

// --- Replies: how a result travels ---

// A VssStatus: null on success, the error otherwise.
struct StatusReply {
  static VssStatusOr<Json> Reply(const VssStatus& s) {
    if (!s.ok()) return s;
    return Json();
  }
  static VssStatus Read(const VssStatusOr<Json>& r) {
    return r.ok() ? VssStatus::Ok() : r.status();
  }
};
// A VssStatusOr<T> through codec C. A reply of the wrong shape is
// E_UNEXPECTED for the client.
template <typename C>
struct ValueReply {
  template <typename T>
  static VssStatusOr<Json> Reply(const VssStatusOr<T>& v) {
    if (!v.ok()) return v.status();
    return C::Encode(*v);
  }
  static auto Read(const VssStatusOr<Json>& r)
      -> VssStatusOr<decltype(C::Decode(Json()))> {
    if (!r.ok()) return r.status();
    try {
      return C::Decode(*r);
    } catch (const std::exception& e) {
      return VssError(E_UNEXPECTED,
                      std::string("vssd answered wrongly: ") + e.what());
    }
  }
};
// A count (the VSS Get*Count methods cannot fail): 0 when the call fails.
struct CountReply {
  static VssStatusOr<Json> Reply(size_t n) { return Json(n); }
  static size_t Read(const VssStatusOr<Json>& r) {
    return r.ok() && r->is_number_unsigned() ? IntFromJson<size_t>(*r) : 0;
  }
};

// --- Methods ---

// One argument: its name in the call's JSON object and its codec.
template <Name N, typename C>
struct Arg {
  static constexpr const char* name() { return N.s; }
  using Codec = C;
};

// A synchronous method: `kName` on the wire, calls `Fn` on the host with
// the arguments `Args` in order, its result travels as `R`.
template <Name N, auto Fn, typename R, typename... Args>
struct Method {
  static constexpr const char* kName = N.s;
  using Reply = R;
  // The client's arguments as the call's JSON object.
  template <typename... A>
  static Json Encode(const A&... a) {
    static_assert(sizeof...(A) == sizeof...(Args));
    Json j = Json::object();
    ((j[Args::name()] = Args::Codec::Encode(a)), ...);
    return j;
  }
  // The host's side: decodes the arguments, calls, encodes the result.
  static VssStatusOr<Json> Serve(BackupComponents& b, const Json& j) {
    return R::Reply((b.*Fn)(Args::Codec::Decode(j.at(Args::name()))...));
  }
};

// An asynchronous method: the host starts it and keeps the Async for
// "Wait" and "Cancel".
template <Name N, auto Fn>
struct AsyncMethod {
  static constexpr const char* kName = N.s;
  static VssStatusOr<std::shared_ptr<Async>> Start(BackupComponents& b) {
    return (b.*Fn)();
  }
};

using BC = BackupComponents;
using Key = Arg<"key", KeyCodec>;

using InitializeForBackup =
    Method<"InitializeForBackup", &BC::InitializeForBackup, StatusReply,
           Arg<"bcd", Plain<std::string>>>;
using InitializeForRestore =
    Method<"InitializeForRestore", &BC::InitializeForRestore, StatusReply,
           Arg<"bcd", Plain<std::string>>>;
using SetContext = Method<"SetContext", &BC::SetContext, StatusReply,
                          Arg<"context", Plain<int32_t>>>;
using SetBackupState =
    Method<"SetBackupState", &BC::SetBackupState, StatusReply,
           Arg<"select_components", Plain<bool>>,
           Arg<"bootable_system_state", Plain<bool>>,
           Arg<"backup_type", Enum<VSS_BACKUP_TYPE>>,
           Arg<"partial_file_support", Plain<bool>>>;
using SetRestoreState =
    Method<"SetRestoreState", &BC::SetRestoreState, StatusReply,
           Arg<"restore_type", Enum<VSS_RESTORE_TYPE>>>;
using GetWriterMetadataCount =
    Method<"GetWriterMetadataCount", &BC::GetWriterMetadataCount, CountReply>;
using GetWriterMetadata =
    Method<"GetWriterMetadata", &BC::GetWriterMetadata,
           ValueReply<MetadataCodec>, Arg<"index", Plain<size_t>>>;
using GetWriterStatusCount =
    Method<"GetWriterStatusCount", &BC::GetWriterStatusCount, CountReply>;
using GetWriterStatus =
    Method<"GetWriterStatus", &BC::GetWriterStatus,
           ValueReply<WriterStatusCodec>, Arg<"index", Plain<size_t>>>;
using AddComponent =
    Method<"AddComponent", &BC::AddComponent, StatusReply, Key>;
using SetBackupSucceeded =
    Method<"SetBackupSucceeded", &BC::SetBackupSucceeded, StatusReply, Key,
           Arg<"succeeded", Plain<bool>>>;
using SetBackupOptions =
    Method<"SetBackupOptions", &BC::SetBackupOptions, StatusReply, Key,
           Arg<"options", Plain<std::string>>>;
using SetPreviousBackupStamp =
    Method<"SetPreviousBackupStamp", &BC::SetPreviousBackupStamp, StatusReply,
           Key, Arg<"stamp", Plain<std::string>>>;
using GetWriterComponentsCount =
    Method<"GetWriterComponentsCount", &BC::GetWriterComponentsCount,
           CountReply>;
using GetWriterComponents =
    Method<"GetWriterComponents", &BC::GetWriterComponents,
           ValueReply<WriterComponentsCodec>, Arg<"index", Plain<size_t>>>;
using SaveAsJson =
    Method<"SaveAsJson", &BC::SaveAsJson, ValueReply<Plain<std::string>>>;
using StartSnapshotSet =
    Method<"StartSnapshotSet", &BC::StartSnapshotSet, ValueReply<GuidCodec>>;
using AddToSnapshotSet =
    Method<"AddToSnapshotSet", &BC::AddToSnapshotSet, ValueReply<GuidCodec>,
           Arg<"volume", Plain<std::string>>, Arg<"provider_id", NullableGuid>>;
using AbortBackup = Method<"AbortBackup", &BC::AbortBackup, StatusReply>;
using GetSnapshotProperties =
    Method<"GetSnapshotProperties", &BC::GetSnapshotProperties,
           ValueReply<SnapshotPropCodec>, Arg<"snapshot_id", GuidCodec>>;
using Query =
    Method<"Query", &BC::Query, ValueReply<ListOf<SnapshotPropCodec>>>;
using DeleteSnapshots =
    Method<"DeleteSnapshots", &BC::DeleteSnapshots,
           ValueReply<DeleteResultCodec>, Arg<"source_id", GuidCodec>,
           Arg<"type", Enum<VSS_OBJECT_TYPE>>, Arg<"force", Plain<bool>>>;
using RevertToSnapshot =
    Method<"RevertToSnapshot", &BC::RevertToSnapshot, StatusReply,
           Arg<"snapshot_id", GuidCodec>, Arg<"force_dismount", Plain<bool>>>;
using SetSelectedForRestore =
    Method<"SetSelectedForRestore", &BC::SetSelectedForRestore, StatusReply,
           Key, Arg<"selected", Plain<bool>>>;
using SetFileRestoreStatus =
    Method<"SetFileRestoreStatus", &BC::SetFileRestoreStatus, StatusReply, Key,
           Arg<"status", Enum<VSS_FILE_RESTORE_STATUS>>>;

using GatherWriterMetadata =
    AsyncMethod<"GatherWriterMetadata", &BC::GatherWriterMetadata>;
using GatherWriterStatus =
    AsyncMethod<"GatherWriterStatus", &BC::GatherWriterStatus>;
using PrepareForBackup = AsyncMethod<"PrepareForBackup", &BC::PrepareForBackup>;
using DoSnapshotSet = AsyncMethod<"DoSnapshotSet", &BC::DoSnapshotSet>;
using BackupComplete = AsyncMethod<"BackupComplete", &BC::BackupComplete>;
using PreRestore = AsyncMethod<"PreRestore", &BC::PreRestore>;
using PostRestore = AsyncMethod<"PostRestore", &BC::PostRestore>;

// The tables: every method the host serves.
template <typename... M>
struct List {};
using SyncMethods =
    List<InitializeForBackup, InitializeForRestore, SetContext, SetBackupState,
         SetRestoreState, GetWriterMetadataCount, GetWriterMetadata,
         GetWriterStatusCount, GetWriterStatus, AddComponent,
         SetBackupSucceeded, SetBackupOptions, SetPreviousBackupStamp,
         GetWriterComponentsCount, GetWriterComponents, SaveAsJson,
         StartSnapshotSet, AddToSnapshotSet, AbortBackup, GetSnapshotProperties,
         Query, DeleteSnapshots, RevertToSnapshot, SetSelectedForRestore,
         SetFileRestoreStatus>;
using AsyncMethods =
    List<GatherWriterMetadata, GatherWriterStatus, PrepareForBackup,
         DoSnapshotSet, BackupComplete, PreRestore, PostRestore>;

using SyncServe = VssStatusOr<Json> (*)(BackupComponents&, const Json&);
using AsyncStart = VssStatusOr<std::shared_ptr<Async>> (*)(BackupComponents&);

// The host's dispatch maps, by method name.
template <typename... M>
std::map<std::string, SyncServe> MakeDispatch(List<M...>) {
  return {{M::kName, &M::Serve}...};
}
template <typename... M>
std::map<std::string, AsyncStart> MakeAsyncDispatch(List<M...>) {
  return {{M::kName, &M::Start}...};
}

}  // namespace vss::internal::rpc
