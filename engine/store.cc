#include "vss/engine/store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "diff_area.h"
#include "store_internal.h"
#include "volume_state.h"
#include "vss/engine/volume.h"
#include "vss/formats/registry.h"

namespace vss::engine {
namespace {

constexpr size_t kMaxVolumesPerSet = 64;     // the most volumes one set may span
constexpr size_t kMaxShadowsPerVolume = 512; // the system provider's limit

std::string AbsolutePath(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

std::string ParentOf(const std::string& path) {
  return std::filesystem::path(path).parent_path().string();
}

std::string BaseName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// The canonical path of an image given by a user: realpath of the file when
// it exists, else of its directory plus its name, else the lexically
// normal absolute path (the opener then says what is wrong). A user may
// name an image through a symbolic link; the store records where it leads.
std::string CanonicalImagePath(const std::string& path) {
  FileSystem* fs = FileSystem::Default();
  if (StatusOr<std::string> real = fs->RealPath(path); real.ok()) return *real;
  std::string abs = AbsolutePath(path);
  if (StatusOr<std::string> dir = fs->RealPath(ParentOf(abs)); dir.ok()) {
    return (*dir == "/" ? "" : *dir) + "/" + BaseName(abs);
  }
  return abs;
}

// Opens (or creates) the image of a volume: through the test hook when one
// is set, else with the registry's driver for `format`. An existing image
// is opened only by its real path, and only by its format's driver (rule
// 11: a qcow2 file read as raw would be destroyed by the first write); a
// new image's name is durable before the catalog can refer to it.
StatusOr<std::unique_ptr<BlockDevice>> OpenImage(const StoreOptions& o,
                                                 const std::string& path,
                                                 const std::string& format,
                                                 bool create, uint64_t size,
                                                 const DriverOptions& options = {}) {
  if (o.open_image) return o.open_image(path, create, size);
  VSS_ASSIGN_OR_RETURN(const ImageDriver* driver, DriverRegistry::Default().Find(format));
  if (create) return driver->Create({.path = path, .size = size, .options = options});
  return driver->Open({.path = path, .writable = true, .require_real_path = true});
}

// The format of a volume being registered: the one asked for, raw for a new
// image (or one the test hook opens), else what the file's header shows.
StatusOr<std::string> VolumeFormat(const StoreOptions& o, const CreateVolumeRequest& req,
                                   const std::string& path) {
  if (!req.format.empty()) return req.format;
  if (req.create || o.open_image) return std::string("raw");
  VSS_ASSIGN_OR_RETURN(const ImageDriver* driver, DriverRegistry::Default().ProbeFile(path));
  return std::string(driver->name());
}

// Why a store whose catalog.db is missing may not start afresh: it still
// holds diff areas (or a catalog log), which a new catalog would orphan.
Status CheckCatalogMissingSafely(const StoreOptions& o, const std::string& catalog) {
  struct stat st;
  if (lstat(catalog.c_str(), &st) == 0 || errno != ENOENT) return OkStatus();
  if (lstat((catalog + "-wal").c_str(), &st) == 0) {
    return CorruptionError("catalog " + catalog + " is missing but its log " + catalog +
                           "-wal is there; restore the catalog, or move the store "
                           "away to start a new one");
  }
  std::string diff = o.dir + "/diff";
  if (o.fs->Exists(diff)) {
    StatusOr<std::vector<std::string>> names = o.fs->List(diff);
    if (!names.ok() || !names->empty()) {
      return CorruptionError("catalog " + catalog + " is missing but the store holds diff areas (" +
                             diff + "); restore the catalog, or move the store away to "
                             "start a new one");
    }
  }
  return OkStatus();
}

// Lower-case id text without braces, for matching.
std::string IdKey(std::string text) {
  if (text.size() >= 2 && text.front() == '{' && text.back() == '}')
    text = text.substr(1, text.size() - 2);
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Finds the one item whose id starts with `text`.
template <typename Row>
StatusOr<Row> ResolveById(const std::vector<Row>& rows, const std::string& text,
                          const std::string& what) {
  std::string key = IdKey(text);
  if (key.empty()) return InvalidArgumentError("empty " + what + " id");
  std::vector<const Row*> hits;
  for (const Row& r : rows) {
    std::string id = r.id.ToString();
    if (id == key) return r;
    if (id.compare(0, key.size(), key) == 0) hits.push_back(&r);
  }
  if (hits.empty()) return NotFoundError("no " + what + " matches '" + text + "'");
  if (hits.size() > 1)
    return InvalidArgumentError(what + " id prefix '" + text + "' is ambiguous (" +
                                std::to_string(hits.size()) + " match)");
  return *hits.front();
}

bool ValidChunkSize(uint32_t cs) {
  return cs >= 4096 && cs <= kMaxChunkSize && (cs & (cs - 1)) == 0;
}

// Reads a list of catalog rows as engine values.
template <typename Info, typename Row>
StatusOr<std::vector<Info>> ToInfos(StatusOr<std::vector<Row>> rows,
                                    Info (*convert)(const Row&)) {
  if (!rows.ok()) return rows.status();
  std::vector<Info> out;
  out.reserve(rows->size());
  for (const Row& r : *rows) out.push_back(convert(r));
  return out;
}

// Reads a catalog row that must exist as an engine value: kNotFound naming
// `what` and `id` when it does not.
template <typename Info, typename Row>
StatusOr<Info> ToFoundInfo(StatusOr<std::optional<Row>> row, Info (*convert)(const Row&),
                           const std::string& what, const Guid& id) {
  if (!row.ok()) return row.status();
  if (!row->has_value()) return NotFoundError(what + " " + id.ToString() + " does not exist");
  return convert(**row);
}

}  // namespace

metadata::Catalog& CatalogOf(Store& store) { return *store.catalog_; }

VolumeInfo ToVolumeInfo(const metadata::VolumeRow& r) {
  return {r.id, r.name, r.path, r.size, r.chunk_size, r.created, r.format, r.guest_agent};
}

DiffAreaInfo ToDiffAreaInfo(const metadata::DiffAreaRow& r) {
  return {r.volume_id, r.dir, r.max_bytes, r.used_bytes};
}

SetInfo ToSetInfo(const metadata::ShadowSetRow& r) {
  return {r.id, r.created, r.shadow_count};
}

ShadowInfo ToShadowInfo(const metadata::ShadowRow& r) {
  ShadowInfo s;
  s.id = r.id;
  s.set_id = r.set_id;
  s.volume_id = r.volume_id;
  s.volume_name = r.original_volume;
  s.epoch = r.epoch;
  s.count_in_set = r.count_in_set;
  s.created = r.created;
  s.persistent = r.persistent;
  s.owner_pid = r.owner_pid;
  s.exposed_name = r.exposed_name;
  s.exposed_path = r.exposed_path;
  s.properties = r.properties;
  return s;
}

EventInfo ToEventInfo(const metadata::EventRow& r) {
  return {r.id, r.time, r.volume_id, r.shadow_id, r.kind, r.message};
}

std::string DefaultStoreDir() {
  if (const char* env = std::getenv("VSS_STORE"); env && *env) return env;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg)
    return std::string(xdg) + "/vss";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/share/vss";
}

Store::Store(StoreOptions options, std::unique_ptr<metadata::Catalog> catalog)
    : options_(std::move(options)), catalog_(std::move(catalog)) {}

Store::~Store() {
  std::lock_guard l(mu_);
  for (auto& v : volumes_) v->state().Close().IgnoreError();
  volumes_.clear();
}

StatusOr<std::unique_ptr<Store>> Store::Open(StoreOptions options) {
  if (options.dir.empty()) return InvalidArgumentError("no store directory given");
  options.dir = AbsolutePath(options.dir);
  if (!options.fs) options.fs = FileSystem::Default();
  // 0700 and durable in its parent (CreateDirs) before the catalog is made.
  VSS_RETURN_IF_ERROR(FileSystem::Default()->CreateDirs(options.dir)
                          .WithContext("store " + options.dir));
  if (options.catalog_fs != nullptr)
    VSS_RETURN_IF_ERROR(options.catalog_fs->CreateDirs(options.dir)
                            .WithContext("store " + options.dir));
  const std::string catalog_path = options.dir + "/catalog.db";
  if (options.catalog_fs == nullptr)
    VSS_RETURN_IF_ERROR(CheckCatalogMissingSafely(options, catalog_path));
  VSS_ASSIGN_OR_RETURN(auto catalog,
                       metadata::Catalog::Open(catalog_path, options.catalog_fs));
  return std::unique_ptr<Store>(new Store(std::move(options), std::move(catalog)));
}

StatusOr<VolumeInfo> Store::CreateVolume(const CreateVolumeRequest& req) {
  if (!ValidChunkSize(req.chunk_size))
    return InvalidArgumentError("chunk size " + std::to_string(req.chunk_size) +
                                " is not a power of two from 4 KiB to 1 MiB");
  if (req.create && (!req.size || *req.size == 0))
    return InvalidArgumentError("a new volume needs a size greater than zero");
  metadata::VolumeRow row;
  row.id = Guid::Generate();
  row.path = CanonicalImagePath(req.path);
  row.name = req.name.empty() ? std::filesystem::path(row.path).filename().string() : req.name;
  row.chunk_size = req.chunk_size;
  row.created = metadata::NowVssTimestamp();
  VSS_ASSIGN_OR_RETURN(auto existing, catalog_->ListVolumes());
  for (const auto& v : existing) {
    if (v.name == row.name) return AlreadyExistsError("a volume named '" + row.name + "' exists");
    if (v.path == row.path)
      return AlreadyExistsError(row.path + " is already volume '" + v.name + "'");
  }
  VSS_ASSIGN_OR_RETURN(row.format, VolumeFormat(options_, req, row.path));
  if (!req.create && !req.create_options.empty()) {
    return InvalidArgumentError("image options are for a new image, not for " + row.path);
  }
  VSS_ASSIGN_OR_RETURN(auto image, OpenImage(options_, row.path, row.format, req.create,
                                             req.size.value_or(0), req.create_options));
  row.size = image->size();
  if (!req.create && req.size && *req.size != row.size)
    return InvalidArgumentError(row.path + " is " + std::to_string(row.size) +
                                " bytes, not " + std::to_string(*req.size));
  image.reset();
  Status s = catalog_->InsertVolume(row);
  if (!s.ok()) {
    if (req.create) std::filesystem::remove(row.path);
    return s;
  }
  return ToVolumeInfo(row);
}

Status Store::RemoveVolume(const Guid& id) {
  VSS_ASSIGN_OR_RETURN(auto row, catalog_->FindVolume(id));
  if (!row) return NotFoundError("volume " + id.ToString() + " does not exist");
  VSS_ASSIGN_OR_RETURN(DiffAreaInfo da, DiffAreaOf(id));
  VSS_RETURN_IF_ERROR(CloseVolume(id));
  // Another process writing the volume keeps it: its lock says so. A
  // missing image does not stop the volume from being forgotten.
  // An image that is gone, is a link or has become another format cannot be
  // in use through vss either, and does not stop the volume from being
  // forgotten.
  StatusOr<std::unique_ptr<BlockDevice>> image =
      OpenImage(options_, row->path, row->format, false, 0);
  if (!image.ok()) {
    StatusCode c = image.status().code();
    if (c != StatusCode::kNotFound && c != StatusCode::kFailedPrecondition &&
        c != StatusCode::kUnsupported)
      return image.status();
  }
  VSS_ASSIGN_OR_RETURN(bool shared, DiffAreaShared(id, da.dir));
  VSS_RETURN_IF_ERROR(catalog_->DeleteVolume(id));
  // The catalog no longer refers to the files: remove what is ours. A
  // directory another volume also uses (a store made before each volume had
  // its own) keeps its files: they may be that volume's. Not synced: a
  // removal lost in a crash leaves files no catalog row names.
  if (!shared && options_.fs->Exists(da.dir)) {
    StatusOr<std::vector<std::string>> names = options_.fs->List(da.dir);
    if (names.ok())
      for (const std::string& n : *names)
        if (n.rfind("seg-", 0) == 0) options_.fs->Remove(da.dir + "/" + n).IgnoreError();
    if (BaseName(da.dir) == id.ToString()) options_.fs->Remove(da.dir).IgnoreError();
  }
  return OkStatus();
}

StatusOr<bool> Store::DiffAreaShared(const Guid& volume_id, const std::string& dir) {
  VSS_ASSIGN_OR_RETURN(auto all, catalog_->ListDiffAreas());
  for (const metadata::DiffAreaRow& other : all)
    if (other.volume_id != volume_id && other.dir == dir) return true;
  return false;
}

StatusOr<VolumeInfo> Store::SetVolumeGuestAgent(const Guid& id, const std::string& socket) {
  if (!socket.empty() && socket[0] != '/') {
    return InvalidArgumentError("guest agent socket " + socket + ": not an absolute path");
  }
  if (socket.find_first_of(std::string("\n\0", 2)) != std::string::npos) {
    return InvalidArgumentError("guest agent socket: a path with a newline or NUL");
  }
  VSS_RETURN_IF_ERROR(catalog_->SetVolumeGuestAgent(id, socket));
  return FindVolume(id);
}

StatusOr<std::vector<VolumeInfo>> Store::ListVolumes() {
  return ToInfos(catalog_->ListVolumes(), &ToVolumeInfo);
}

StatusOr<VolumeInfo> Store::FindVolume(const Guid& id) {
  return ToFoundInfo(catalog_->FindVolume(id), &ToVolumeInfo, "volume", id);
}

StatusOr<std::vector<ShadowInfo>> Store::ListShadows() {
  return ToInfos(catalog_->ListShadows(), &ToShadowInfo);
}

StatusOr<std::vector<ShadowInfo>> Store::ListShadowsOfVolume(const Guid& volume_id) {
  return ToInfos(catalog_->ListShadowsOfVolume(volume_id), &ToShadowInfo);
}

StatusOr<std::vector<ShadowInfo>> Store::ListShadowsOfSet(const Guid& set_id) {
  VSS_ASSIGN_OR_RETURN(std::vector<ShadowInfo> all, ListShadows());
  std::erase_if(all, [&](const ShadowInfo& s) { return s.set_id != set_id; });
  return all;
}

StatusOr<ShadowInfo> Store::FindShadow(const Guid& id) {
  return ToFoundInfo(catalog_->FindShadow(id), &ToShadowInfo, "shadow", id);
}

StatusOr<std::vector<SetInfo>> Store::ListShadowSets() {
  return ToInfos(catalog_->ListShadowSets(), &ToSetInfo);
}

StatusOr<std::vector<EventInfo>> Store::ListEvents(std::optional<Guid> volume_id) {
  return ToInfos(catalog_->ListEvents(volume_id), &ToEventInfo);
}

StatusOr<VolumeInfo> Store::ResolveVolume(const std::string& text) {
  VSS_ASSIGN_OR_RETURN(auto rows, ListVolumes());
  for (const auto& r : rows)
    if (r.name == text) return r;
  return ResolveById(rows, text, "volume");
}

StatusOr<ShadowInfo> Store::ResolveShadow(const std::string& text) {
  VSS_ASSIGN_OR_RETURN(auto rows, ListShadows());
  return ResolveById(rows, text, "shadow");
}

StatusOr<SetInfo> Store::ResolveShadowSet(const std::string& text) {
  VSS_ASSIGN_OR_RETURN(auto rows, ListShadowSets());
  return ResolveById(rows, text, "shadow set");
}

StatusOr<Volume*> Store::OpenVolume(const Guid& id) {
  std::lock_guard l(mu_);
  return OpenVolumeLocked(id);
}

StatusOr<Volume*> Store::OpenVolumeLocked(const Guid& id) {
  for (auto& v : volumes_)
    if (v->id() == id) return v.get();
  VSS_ASSIGN_OR_RETURN(auto row, catalog_->FindVolume(id));
  if (!row) return NotFoundError("volume " + id.ToString() + " does not exist");
  VSS_ASSIGN_OR_RETURN(DiffAreaInfo da, DiffAreaOf(id));
  VSS_ASSIGN_OR_RETURN(bool shared, DiffAreaShared(id, da.dir));
  if (shared)
    return FailedPreconditionError(
        "volume " + row->name + " shares its diff-area directory " + da.dir +
        " with another volume (allowed by older versions of vss), so their "
        "records may overwrite each other; remove one of them with "
        "`vssctl volume remove --force` and add it again");
  VSS_ASSIGN_OR_RETURN(auto image, OpenImage(options_, row->path, row->format, false, 0));
  VSS_ASSIGN_OR_RETURN(auto state, VolumeState::Open(this, *row, std::move(image)));
  volumes_.push_back(std::unique_ptr<Volume>(new Volume(std::move(state))));
  return volumes_.back().get();
}

Status Store::CloseVolume(const Guid& id) {
  std::unique_ptr<Volume> v;
  {
    std::lock_guard l(mu_);
    auto it = std::find_if(volumes_.begin(), volumes_.end(),
                           [&](const auto& p) { return p->id() == id; });
    if (it == volumes_.end()) return OkStatus();
    v = std::move(*it);
    volumes_.erase(it);
  }
  return v->state().Close();
}

StatusOr<CreatedSet> Store::CreateShadowSet(const CreateSetRequest& req) {
  if (req.volumes.empty()) return InvalidArgumentError("a shadow set needs at least one volume");
  if (req.volumes.size() > kMaxVolumesPerSet)
    return InvalidArgumentError("a shadow set holds at most 64 volumes");
  if (!req.shadow_ids.empty() && req.shadow_ids.size() != req.volumes.size())
    return InvalidArgumentError("a shadow set needs one shadow id per volume");
  std::map<Guid, Guid> chosen_ids;  // volume -> shadow id
  for (size_t i = 0; i < req.shadow_ids.size(); ++i) chosen_ids[req.volumes[i]] = req.shadow_ids[i];
  std::vector<Guid> ids = req.volumes;
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end())
    return AlreadyExistsError("volume " + std::adjacent_find(ids.begin(), ids.end())->ToString() +
                              " is in the set twice");
  std::vector<VolumeState*> states;
  for (const Guid& id : ids) {
    VSS_ASSIGN_OR_RETURN(Volume* v, OpenVolume(id));
    VSS_ASSIGN_OR_RETURN(auto shadows, catalog_->ListShadowsOfVolume(id));
    if (shadows.size() >= kMaxShadowsPerVolume)
      return FailedPreconditionError("volume " + v->name() + " already has 512 shadows");
    states.push_back(&v->state());
  }
  // Hold writes to every volume of the set (in id order, so that two sets
  // never wait for each other), flush them, and commit all shadows in one
  // catalog transaction.
  for (VolumeState* s : states) s->HoldWrites();
  struct Release {
    std::vector<VolumeState*>& s;
    ~Release() {
      for (auto it = s.rbegin(); it != s.rend(); ++it) (*it)->ReleaseWrites();
    }
  } release{states};
  for (VolumeState* s : states) VSS_RETURN_IF_ERROR(s->FlushForCommit());
  if (req.on_hold) VSS_RETURN_IF_ERROR(req.on_hold());

  CreatedSet set{req.set_id.value_or(Guid::Generate()), metadata::NowVssTimestamp(), {}};
  std::vector<metadata::ShadowRow> rows;
  for (VolumeState* s : states) {
    metadata::ShadowRow r;
    auto chosen = chosen_ids.find(s->row().id);
    r.id = chosen != chosen_ids.end() ? chosen->second : Guid::Generate();
    r.set_id = set.set_id;
    r.volume_id = s->row().id;
    r.epoch = s->row().next_epoch;
    r.count_in_set = static_cast<uint32_t>(states.size());
    r.original_volume = s->row().name;
    r.created = set.created;
    r.persistent = req.persistent;
    r.owner_pid = getpid();
    r.properties = req.properties;
    rows.push_back(r);
    set.shadows.push_back({r.id, r.volume_id});
  }
  {
    VSS_ASSIGN_OR_RETURN(metadata::Transaction tx, catalog_->Begin());
    VSS_RETURN_IF_ERROR(catalog_->InsertShadowSet(
        {set.set_id, set.created, 0, static_cast<uint32_t>(rows.size())}));
    for (const metadata::ShadowRow& r : rows) {
      VSS_RETURN_IF_ERROR(catalog_->InsertShadow(r));
      VSS_RETURN_IF_ERROR(catalog_->SetVolumeNextEpoch(r.volume_id, r.epoch + 1));
    }
    VSS_RETURN_IF_ERROR(tx.Commit());
  }
  for (size_t i = 0; i < states.size(); ++i) states[i]->AddShadowLocked(rows[i]);
  return set;
}

Status Store::DeleteShadow(const Guid& shadow_id) {
  VSS_ASSIGN_OR_RETURN(auto row, catalog_->FindShadow(shadow_id));
  if (!row) return NotFoundError("shadow " + shadow_id.ToString() + " does not exist");
  VSS_ASSIGN_OR_RETURN(Volume* v, OpenVolume(row->volume_id));
  return v->state().DeleteShadow(shadow_id);
}

Status Store::RevertToShadow(const Guid& shadow_id) {
  VSS_ASSIGN_OR_RETURN(auto row, catalog_->FindShadow(shadow_id));
  if (!row) return NotFoundError("shadow " + shadow_id.ToString() + " does not exist");
  VSS_ASSIGN_OR_RETURN(Volume* v, OpenVolume(row->volume_id));
  return v->state().Revert(shadow_id);
}

Status Store::SetShadowExposure(const Guid& shadow_id, const std::string& name,
                                const std::string& path) {
  VSS_ASSIGN_OR_RETURN(metadata::Transaction tx, catalog_->Begin());
  VSS_ASSIGN_OR_RETURN(auto row, catalog_->FindShadow(shadow_id));
  if (!row) return NotFoundError("shadow " + shadow_id.ToString() + " does not exist");
  row->exposed_name = name;
  row->exposed_path = path;
  VSS_RETURN_IF_ERROR(catalog_->UpdateShadow(*row));
  return tx.Commit();
}

StatusOr<metadata::DiffAreaRow> DiffAreaRowOf(Store& store, const Guid& volume_id) {
  VSS_ASSIGN_OR_RETURN(auto row, CatalogOf(store).FindDiffArea(volume_id));
  if (row) return *row;
  return metadata::DiffAreaRow{volume_id,
                               store.options().dir + "/diff/" + volume_id.ToString(),
                               metadata::kUnbounded, 0};
}

StatusOr<DiffAreaInfo> Store::DiffAreaOf(const Guid& volume_id) {
  static_assert(kUnbounded == metadata::kUnbounded);
  VSS_ASSIGN_OR_RETURN(metadata::DiffAreaRow row, DiffAreaRowOf(*this, volume_id));
  return ToDiffAreaInfo(row);
}

Status Store::AddDiffArea(const Guid& volume_id, const std::string& dir,
                          int64_t max_bytes) {
  VSS_ASSIGN_OR_RETURN(auto vol, catalog_->FindVolume(volume_id));
  if (!vol) return NotFoundError("volume " + volume_id.ToString() + " does not exist");
  VSS_ASSIGN_OR_RETURN(DiffAreaInfo current, DiffAreaOf(volume_id));
  std::string default_dir = options_.dir + "/diff/" + volume_id.ToString();
  if (current.dir != default_dir)
    return AlreadyExistsError("volume " + vol->name + " already has its diff area on " +
                              current.dir + " (use storage resize)");
  VSS_ASSIGN_OR_RETURN(auto shadows, catalog_->ListShadowsOfVolume(volume_id));
  if (!shadows.empty())
    return FailedPreconditionError("volume " + vol->name +
                                   " has shadows; its diff area can move only when it has none");
  // The volume's segments live in a directory of their own under the one
  // the user names, so that any number of volumes may name the same one.
  std::string on = AbsolutePath(dir);
  VSS_RETURN_IF_ERROR(options_.fs->CreateDirs(on).WithContext("diff area " + on));
  VSS_ASSIGN_OR_RETURN(on, options_.fs->RealPath(on));
  std::string target = (on == "/" ? "" : on) + "/" + volume_id.ToString();
  VSS_RETURN_IF_ERROR(options_.fs->CreateDirs(target).WithContext("diff area " + target));
  VSS_RETURN_IF_ERROR(CloseVolume(volume_id));
  // No shadow: the old segments hold nothing live.
  VSS_ASSIGN_OR_RETURN(auto segs, catalog_->ListSegments(volume_id));
  for (const auto& s : segs) {
    VSS_RETURN_IF_ERROR(catalog_->DeleteSegment(volume_id, s.seq));
    options_.fs->Remove(current.dir + "/" + DiffArea::SegmentName(s.seq)).IgnoreError();
  }
  if (target != current.dir) options_.fs->Remove(current.dir).IgnoreError();  // if empty
  return catalog_->UpsertDiffArea({volume_id, target, max_bytes, 0});
}

Status Store::ResizeDiffArea(const Guid& volume_id, int64_t max_bytes) {
  VSS_ASSIGN_OR_RETURN(Volume* v, OpenVolume(volume_id));
  return v->state().SetMaxBytes(max_bytes);
}

Status Store::RecordEvent(std::optional<Guid> volume, std::optional<Guid> shadow,
                          std::string kind, std::string message) {
  metadata::EventRow e;
  e.time = metadata::NowVssTimestamp();
  e.volume_id = volume;
  e.shadow_id = shadow;
  e.kind = std::move(kind);
  e.message = std::move(message);
  return catalog_->InsertEvent(e);
}

}  // namespace vss::engine
