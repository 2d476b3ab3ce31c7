// vssctl shadow create|list|show|read|export|diff|delete|revert|verify

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "common.h"
#include "vss/api/shadow_properties.h"
#include "vss/api/types.h"
#include "vss/engine/volume.h"
#include "vss/formats/image_writer.h"
#include "vss/formats/raw_image.h"
#include "vss/formats/registry.h"

namespace vss::tools {
namespace {


// Without --context: persistent client-accessible shadows straight from the
// engine, as vssadmin makes them. With it: the VSS requester sequence.
struct CreateOptions {
  std::vector<std::string> volumes;
  std::string context;
  bool no_writers = false;
  bool no_auto_release = false;
};

struct ListOptions {
  std::string volume;
  std::string set;
};

struct ReadOptions {
  std::string shadow;
  std::string offset;
  std::string length;
  std::string output;
};

struct TwoIds {
  std::string first;
  std::string second;
};

struct DeleteOptions {
  std::string shadow;
  std::string set;
  std::string volume;
  bool oldest = false;
  bool all = false;
};

// The store's volumes by id, for names and paths in output.
StatusOr<std::map<Guid, engine::VolumeInfo>> VolumesById(
    engine::Store& store) {
  VSS_ASSIGN_OR_RETURN(auto rows, store.ListVolumes());
  std::map<Guid, engine::VolumeInfo> out;
  for (auto& v : rows) out.emplace(v.id, std::move(v));
  return out;
}

std::string VolumeNameOf(const std::map<Guid, engine::VolumeInfo>& volumes,
                         const engine::ShadowInfo& s) {
  auto it = volumes.find(s.volume_id);
  if (it == volumes.end()) return s.volume_name;
  return it->second.name + " (" + it->second.path + ")";
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out.empty() ? "none" : out;
}

// One shadow's sub-block of PrintShadowBlocks.
Status PrintShadowBlock(const engine::ShadowInfo& s,
                        const std::map<Guid, engine::VolumeInfo>& volumes) {
  VSS_ASSIGN_OR_RETURN(SnapshotProp p, SnapshotPropOf(s));
  VSS_ASSIGN_OR_RETURN(int32_t context, ContextOf(s));
  std::printf("      Shadow Copy ID: %s\n", Braced(s.id).c_str());
  std::printf("         Original Volume: %s\n",
              VolumeNameOf(volumes, s).c_str());
  std::printf("         Shadow Copy Volume: %s\n",
              p.snapshot_device_object.c_str());
  std::printf("         Creation time: %s\n",
              engine::TimestampToIso8601(s.created).c_str());
  std::printf("         Originating Machine: %s\n",
              p.originating_machine.c_str());
  std::printf("         Service Machine: %s\n", p.service_machine.c_str());
  std::printf("         Provider: 'vss software provider' %s\n",
              Braced(p.provider_id).c_str());
  std::printf("         Type: %s\n", ContextTypeName(context).c_str());
  std::printf("         Attributes: %s\n",
              Join(AttributeNames(p.snapshot_attributes)).c_str());
  std::printf("         State: %s, epoch %llu, %s\n",
              StateName(p.status).c_str(),
              static_cast<unsigned long long>(s.epoch),
              s.persistent ? "persistent" : "non-persistent");
  if (!s.exposed_path.empty()) {  // vssctl mount
    std::printf("         Exposed: %s/%s\n", s.exposed_path.c_str(),
                s.exposed_name.c_str());
  }
  std::printf("\n");
  return OkStatus();
}

// One vssadmin-style block per set, one sub-block per shadow.
Status PrintShadowBlocks(std::vector<engine::ShadowInfo> shadows,
                         const std::map<Guid, engine::VolumeInfo>& volumes) {
  std::stable_sort(
      shadows.begin(), shadows.end(), [](const auto& a, const auto& b) {
        return std::tie(a.created, a.set_id) < std::tie(b.created, b.set_id);
      });
  std::optional<Guid> current_set;
  for (const auto& s : shadows) {
    if (current_set != s.set_id) {
      current_set = s.set_id;
      std::printf("Contents of shadow copy set ID: %s\n",
                  Braced(s.set_id).c_str());
      std::printf("   Contained %u shadow copies at creation time: %s\n",
                  s.count_in_set,
                  engine::TimestampToIso8601(s.created).c_str());
    }
    VSS_RETURN_IF_ERROR(PrintShadowBlock(s, volumes));
  }
  return OkStatus();
}

Status RunCreate(Cli& cli, const CreateOptions& o) {
  if (!o.context.empty()) {
    return CreateShadowSetWithRequester(
        cli, {o.volumes, o.context, o.no_writers, o.no_auto_release});
  }
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  engine::CreateSetRequest req;
  DescribeSoftwareShadows(VSS_CTX_CLIENT_ACCESSIBLE, &req);
  std::map<Guid, std::string> names;
  for (const auto& text : o.volumes) {
    VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(text));
    if (names.count(v.id)) {
      return InvalidArgumentError("volume '" + v.name + "' is given twice");
    }
    names[v.id] = v.name;
    req.volumes.push_back(v.id);
  }
  VSS_ASSIGN_OR_RETURN(engine::CreatedSet set, store->CreateShadowSet(req));
  std::string created = engine::TimestampToIso8601(set.created);
  if (cli.json) {
    Json shadows = Json::array();
    for (const auto& s : set.shadows) {
      shadows.push_back({{"shadow_id", s.shadow_id.ToString()},
                         {"volume", names[s.volume_id]},
                         {"volume_id", s.volume_id.ToString()}});
    }
    PrintJson(Json{{"set_id", set.set_id.ToString()},
                   {"created", created},
                   {"context", ContextName(VSS_CTX_CLIENT_ACCESSIBLE)},
                   {"shadows", shadows}});
    return OkStatus();
  }
  std::printf("Created shadow copy set %s at %s (%s)\n",
              Braced(set.set_id).c_str(), created.c_str(),
              ContextName(VSS_CTX_CLIENT_ACCESSIBLE).c_str());
  for (const auto& s : set.shadows) {
    std::printf("   Shadow Copy ID: %s  Volume: %s\n",
                Braced(s.shadow_id).c_str(), names[s.volume_id].c_str());
  }
  return OkStatus();
}

Status RunList(Cli& cli, const ListOptions& o) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  std::optional<Guid> volume, set;
  if (!o.volume.empty()) {
    VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(o.volume));
    volume = v.id;
  }
  if (!o.set.empty()) {
    VSS_ASSIGN_OR_RETURN(engine::SetInfo s,
                         store->ResolveShadowSet(o.set));
    set = s.id;
  }
  VSS_ASSIGN_OR_RETURN(auto all, store->ListShadows());
  std::vector<engine::ShadowInfo> shadows;
  for (auto& s : all) {
    if ((!volume || s.volume_id == *volume) && (!set || s.set_id == *set)) {
      shadows.push_back(std::move(s));
    }
  }
  if (cli.json) {
    Json out = Json::array();
    for (const auto& s : shadows) {
      VSS_ASSIGN_OR_RETURN(Json j, ShadowToJson(s));
      out.push_back(std::move(j));
    }
    PrintJson(out);
    return OkStatus();
  }
  if (shadows.empty()) {
    std::printf("No shadow copies found.\n");
    return OkStatus();
  }
  VSS_ASSIGN_OR_RETURN(auto volumes, VolumesById(*store));
  return PrintShadowBlocks(std::move(shadows), volumes);
}

Status RunShow(Cli& cli, const std::string& text) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::ShadowInfo s, store->ResolveShadow(text));
  if (cli.json) {
    VSS_ASSIGN_OR_RETURN(Json j, ShadowToJson(s));
    PrintJson(j);
    return OkStatus();
  }
  VSS_ASSIGN_OR_RETURN(auto volumes, VolumesById(*store));
  return PrintShadowBlocks({s}, volumes);
}

// The shadow `text` names, its open volume and a read-only view of it.
struct OpenedShadow {
  engine::ShadowInfo row;
  engine::Volume* volume = nullptr;
  std::unique_ptr<BlockDevice> view;
};

StatusOr<OpenedShadow> OpenShadow(Cli& cli, const std::string& text) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  OpenedShadow out;
  VSS_ASSIGN_OR_RETURN(out.row, store->ResolveShadow(text));
  VSS_ASSIGN_OR_RETURN(out.volume, store->OpenVolume(out.row.volume_id));
  VSS_ASSIGN_OR_RETURN(out.view, out.volume->OpenShadow(out.row.id));
  return out;
}

Status RunRead(Cli& cli, const ReadOptions& o) {
  VSS_ASSIGN_OR_RETURN(uint64_t offset, ParseSize(o.offset, "--offset"));
  VSS_ASSIGN_OR_RETURN(uint64_t length, ParseSize(o.length, "--length"));
  VSS_ASSIGN_OR_RETURN(OpenedShadow sh, OpenShadow(cli, o.shadow));
  return ReadToOutput(*sh.view, offset, length, o.output);
}

struct ExportOptions {
  std::string shadow;
  std::string output;
  std::string format;  // "raw" or a writer format; empty: from the name
  std::string subformat;  // the writer's "subformat" option
  std::vector<std::string> options;  // KEY=VALUE, the writer's options
  bool compress = false;
  std::string compression;  // empty: the format's default codec
  std::string since;    // older shadow of an incremental export
  std::string backing;  // the older shadow's export, as stored in OUTPUT
  bool no_verify = false;
};

// --format, or the output's extension: ".qcow2", ".vhdx", ".vhd" and
// ".vmdk" name their formats, anything else is raw.
std::string ExportFormat(const ExportOptions& o) {
  if (!o.format.empty()) return o.format;
  std::string ext = std::filesystem::path(o.output).extension().string();
  if (!ext.empty() && IsWriterFormat(ext.substr(1))) return ext.substr(1);
  return "raw";
}

// The writer's options: -o KEY=VALUE, --subformat and --compress.
StatusOr<DriverOptions> WriterOptions(const ExportOptions& o,
                                      const std::string& format) {
  VSS_ASSIGN_OR_RETURN(DriverOptions options,
                       ParseKeyValues(o.options, "-o"));
  if (!o.subformat.empty()) options["subformat"] = o.subformat;
  if (o.compress) {
    // qcow2 compresses with zlib unless told; VMDK's only codec is
    // deflate (a streamOptimized image).
    options["compress"] = !o.compression.empty() ? o.compression
                          : format == "vmdk"     ? "deflate"
                                                 : "zlib";
  } else if (!o.compression.empty()) {
    return InvalidArgumentError("--compression needs --compress");
  }
  return options;
}

// What an export wrote.
struct ExportResult {
  uint64_t data_bytes = 0;  // guest bytes stored
  uint64_t file_bytes = 0;  // the new file's size (qcow2)
  uint64_t compressed_units = 0;
  uint64_t zero_units = 0;
  uint64_t unit_size = 0;
  uint64_t verified_bytes = 0;  // compared through the format's driver
};

StatusOr<ExportResult> ExportRaw(OpenedShadow& sh, const std::string& output) {
  VSS_ASSIGN_OR_RETURN(auto image, RawImage::Create(output, sh.view->size()));
  StatusOr<uint64_t> written = CopySparse(*sh.view, *image, "exporting");
  image.reset();
  if (!written.ok()) {
    ::unlink(output.c_str());
    return written.status();
  }
  return ExportResult{.data_bytes = *written};
}

// The extents an incremental export stores: those changed from `since` to
// the shadow, each split into what the shadow holds and its holes (which
// then need no read).
StatusOr<std::vector<Extent>> IncrementalExtents(Cli& cli, OpenedShadow& sh,
                                                 const std::string& since) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::ShadowInfo older, store->ResolveShadow(since));
  if (older.volume_id != sh.row.volume_id) {
    return InvalidArgumentError("--since " + Braced(older.id) +
                                " is a shadow copy of another volume");
  }
  if (older.epoch >= sh.row.epoch) {
    return InvalidArgumentError("--since " + Braced(older.id) +
                                " is not older than " + Braced(sh.row.id));
  }
  VSS_ASSIGN_OR_RETURN(auto changed,
                       sh.volume->ChangedExtents(older.id, sh.row.id));
  std::vector<Extent> ranges;
  for (const engine::ChangedExtent& c : changed)
    ranges.push_back({c.offset, c.length, true});
  return ExtentsWithin(*sh.view, ranges);
}

// The ranges where `a` or `b` holds data (elsewhere both read as zeroes).
StatusOr<std::vector<Extent>> AllocatedInEither(BlockDevice& a,
                                                BlockDevice& b) {
  std::vector<Extent> all;
  for (BlockDevice* dev : {&a, &b}) {
    VSS_ASSIGN_OR_RETURN(auto extents, dev->Extents(0, dev->size()));
    for (const Extent& e : extents) {
      if (e.allocated) all.push_back(e);
    }
  }
  std::sort(all.begin(), all.end(), [](const Extent& x, const Extent& y) {
    return x.offset < y.offset;
  });
  std::vector<Extent> out;
  for (const Extent& e : all) {
    if (!out.empty() && e.offset <= out.back().offset + out.back().length) {
      out.back().length =
          std::max(out.back().offset + out.back().length, e.offset + e.length) -
          out.back().offset;
    } else {
      out.push_back(e);
    }
  }
  return out;
}

// Reads the new image at `path` through the registry's driver of `format`
// (with its backing chain) and compares it with the shadow: `*what`, or
// when it is null wherever either holds data.
StatusOr<uint64_t> VerifyExport(BlockDevice& shadow, const std::string& format,
                                const std::string& path,
                                const std::vector<Extent>* what) {
  VSS_ASSIGN_OR_RETURN(const ImageDriver* driver,
                       DriverRegistry::Default().Find(format));
  VSS_ASSIGN_OR_RETURN(auto image,
                       driver->Open({.path = path, .writable = false}));
  if (image->size() != shadow.size()) {
    return CorruptionError(path + " reads as " + std::to_string(image->size()) +
                           " bytes, not " + std::to_string(shadow.size()));
  }
  std::vector<Extent> ranges;
  if (what != nullptr) {
    ranges = *what;
  } else {
    VSS_ASSIGN_OR_RETURN(ranges, AllocatedInEither(shadow, *image));
  }
  return CompareDevices(shadow, *image, ranges, "verifying");
}

StatusOr<ExportResult> ExportImage(Cli& cli, OpenedShadow& sh,
                                   const std::string& format,
                                   const ExportOptions& o) {
  const uint64_t size = sh.view->size();
  VSS_ASSIGN_OR_RETURN(const ImageDriver* driver,
                       DriverRegistry::Default().Find(format));
  ImageWriterRequest req{.path = o.output, .size = size};
  VSS_ASSIGN_OR_RETURN(req.options, WriterOptions(o, format));
  std::vector<Extent> extents;
  if (!o.since.empty()) {
    req.backing_file = o.backing;
    VSS_ASSIGN_OR_RETURN(extents, IncrementalExtents(cli, sh, o.since));
  } else {
    VSS_ASSIGN_OR_RETURN(extents, sh.view->Extents(0, size));
  }
  uint64_t total = 0;
  for (const Extent& e : extents) total += e.length;
  VSS_ASSIGN_OR_RETURN(auto writer, driver->CreateWriter(req));
  {
    Progress progress("exporting", total);
    VSS_RETURN_IF_ERROR(CopyUnits(*sh.view, extents, *writer,
                                  [&](uint64_t n) { progress.Add(n); }));
  }
  VSS_RETURN_IF_ERROR(writer->Finish());
  const ImageWriterStats& st = writer->stats();
  ExportResult r{.data_bytes = st.data_bytes,
                 .file_bytes = st.file_bytes,
                 .compressed_units = st.compressed_units,
                 .zero_units = st.zero_units,
                 .unit_size = writer->unit_size()};
  writer.reset();
  if (!o.no_verify) {
    // A full export is compared wherever it or the shadow holds data; an
    // incremental one where it differs from its backing file (the rest is
    // the backing file's, checked when that was exported).
    StatusOr<uint64_t> verified = VerifyExport(
        *sh.view, format, o.output, o.since.empty() ? nullptr : &extents);
    if (!verified.ok()) {
      ::unlink(o.output.c_str());
      return verified.status().WithContext(
          "verifying " + o.output + " (removed; --no-verify skips the check)");
    }
    r.verified_bytes = *verified;
  }
  return r;
}

void PrintExport(Cli& cli, const OpenedShadow& sh, const ExportOptions& o,
                 const std::string& format, const ExportResult& r) {
  uint64_t size = sh.view->size();
  if (cli.json) {
    Json j{{"shadow_id", sh.row.id.ToString()},
           {"output", o.output},
           {"format", format},
           {"size", size},
           {"data_bytes", r.data_bytes},
           {"verified", r.verified_bytes > 0}};
    if (format != "raw") {
      j["file_bytes"] = r.file_bytes;
      j["unit_size"] = r.unit_size;
      j["compressed_units"] = r.compressed_units;
      j["zero_units"] = r.zero_units;
      j["verified_bytes"] = r.verified_bytes;
    }
    if (!o.since.empty()) {
      j["since"] = o.since;
      j["backing"] = o.backing;
    }
    PrintJson(j);
    return;
  }
  std::printf("Exported shadow copy %s of volume '%s' to %s\n",
              Braced(sh.row.id).c_str(), sh.volume->name().c_str(),
              o.output.c_str());
  if (format == "raw") {
    std::printf("   %s sparse raw image, %s of data written\n",
                FormatBytes(size).c_str(), FormatBytes(r.data_bytes).c_str());
    return;
  }
  std::printf("   %s %s image%s%s, %s of data in a %s file\n",
              FormatBytes(size).c_str(), format.c_str(),
              o.since.empty() ? "" : (", backing file " + o.backing).c_str(),
              r.compressed_units > 0 ? ", compressed" : "",
              FormatBytes(r.data_bytes).c_str(),
              FormatBytes(r.file_bytes).c_str());
  if (o.no_verify) {
    std::printf("   not verified (--no-verify)\n");
  } else {
    std::printf(
        "   verified: %s read back through the %s driver equal the shadow "
        "copy\n",
        FormatBytes(r.verified_bytes).c_str(), format.c_str());
  }
}

Status RunExport(Cli& cli, const ExportOptions& o) {
  struct stat st;
  if (::lstat(o.output.c_str(), &st) == 0) {
    return AlreadyExistsError(o.output + " already exists; not overwriting it");
  }
  const std::string format = ExportFormat(o);
  VSS_ASSIGN_OR_RETURN(OpenedShadow sh, OpenShadow(cli, o.shadow));
  StatusOr<ExportResult> r =
      format == "raw" ? ExportRaw(sh, o.output) : ExportImage(cli, sh, format, o);
  if (!r.ok()) return r.status().WithContext("exporting to " + o.output);
  PrintExport(cli, sh, o, format, *r);
  return OkStatus();
}

Status RunDiff(Cli& cli, const TwoIds& o) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::ShadowInfo from, store->ResolveShadow(o.first));
  std::optional<engine::ShadowInfo> to;
  if (!o.second.empty()) {
    VSS_ASSIGN_OR_RETURN(to, store->ResolveShadow(o.second));
    if (to->volume_id != from.volume_id) {
      return InvalidArgumentError("shadow copies " + Braced(from.id) + " and " +
                                  Braced(to->id) + " are of different volumes");
    }
  }
  VSS_ASSIGN_OR_RETURN(engine::Volume * vol, store->OpenVolume(from.volume_id));
  std::optional<Guid> to_id;
  if (to) to_id = to->id;
  VSS_ASSIGN_OR_RETURN(auto extents, vol->ChangedExtents(from.id, to_id));
  uint64_t changed = 0;
  for (const auto& e : extents) changed += e.length;
  if (cli.json) {
    Json list = Json::array();
    for (const auto& e : extents)
      list.push_back({{"offset", e.offset}, {"length", e.length}});
    PrintJson(Json{{"volume", vol->name()},
                   {"from", from.id.ToString()},
                   {"to", to ? to->id.ToString() : "live"},
                   {"extents", list},
                   {"changed_bytes", changed}});
    return OkStatus();
  }
  std::printf(
      "Changes of volume '%s' from shadow copy %s to %s:\n",
      vol->name().c_str(), Braced(from.id).c_str(),
      to ? ("shadow copy " + Braced(to->id)).c_str() : "the live volume");
  std::printf("   %-16s %s\n", "OFFSET", "LENGTH");
  for (const auto& e : extents) {
    std::printf("   %-16llu %llu\n", static_cast<unsigned long long>(e.offset),
                static_cast<unsigned long long>(e.length));
  }
  std::printf("%zu extents, %s changed\n", extents.size(),
              FormatBytes(changed).c_str());
  return OkStatus();
}

// The shadows a delete names, oldest first.
StatusOr<std::vector<engine::ShadowInfo>> DeleteTargets(
    engine::Store& store, const DeleteOptions& o) {
  if (!o.shadow.empty()) {
    VSS_ASSIGN_OR_RETURN(engine::ShadowInfo s, store.ResolveShadow(o.shadow));
    return std::vector<engine::ShadowInfo>{s};
  }
  std::vector<engine::ShadowInfo> out;
  if (!o.set.empty()) {
    VSS_ASSIGN_OR_RETURN(engine::SetInfo set,
                         store.ResolveShadowSet(o.set));
    return store.ListShadowsOfSet(set.id);
  }
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store.ResolveVolume(o.volume));
  VSS_ASSIGN_OR_RETURN(out, store.ListShadowsOfVolume(v.id));
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.epoch < b.epoch; });
  if (o.oldest) {
    if (out.empty()) {
      return NotFoundError("volume '" + v.name + "' has no shadow copies");
    }
    out.resize(1);
  }
  return out;
}

Status RunDelete(Cli& cli, const DeleteOptions& o) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(auto targets, DeleteTargets(*store, o));
  Json deleted = Json::array();
  for (const auto& s : targets) {
    VSS_RETURN_IF_ERROR(store->DeleteShadow(s.id));
    deleted.push_back(
        {{"shadow_id", s.id.ToString()}, {"volume", s.volume_name}});
    if (!cli.json) {
      std::printf("Deleted shadow copy %s of volume '%s'\n",
                  Braced(s.id).c_str(), s.volume_name.c_str());
    }
  }
  if (cli.json) {
    PrintJson(Json{{"deleted", deleted}});
  } else if (targets.empty()) {
    std::printf("No shadow copies to delete.\n");
  }
  return OkStatus();
}

Status RunRevert(Cli& cli, const std::string& text, bool force) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::ShadowInfo s, store->ResolveShadow(text));
  VSS_ASSIGN_OR_RETURN(auto before,
                       store->ListShadowsOfVolume(s.volume_id));
  // When vssd serves the store it may have the volume open for NBD
  // clients (a VM): it reverts, refusing while they use the volume unless
  // --force disconnects them.
  VSS_ASSIGN_OR_RETURN(bool through_vssd, RevertThroughVssd(cli, s.id, force));
  if (!through_vssd) VSS_RETURN_IF_ERROR(store->RevertToShadow(s.id));
  Json removed = Json::array();
  for (const auto& b : before) {
    if (b.epoch >= s.epoch) removed.push_back(b.id.ToString());
  }
  if (cli.json) {
    PrintJson(Json{{"volume", s.volume_name},
                   {"volume_id", s.volume_id.ToString()},
                   {"shadow_id", s.id.ToString()},
                   {"removed", removed}});
    return OkStatus();
  }
  std::printf("Reverted volume '%s' to shadow copy %s (created %s)\n",
              s.volume_name.c_str(), Braced(s.id).c_str(),
              engine::TimestampToIso8601(s.created).c_str());
  std::printf("   %zu shadow copies removed (it and newer ones)\n",
              removed.size());
  return OkStatus();
}

Status RunVerify(Cli& cli, const std::string& text) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::ShadowInfo s, store->ResolveShadow(text));
  VSS_ASSIGN_OR_RETURN(engine::Volume * vol, store->OpenVolume(s.volume_id));
  VSS_ASSIGN_OR_RETURN(engine::VerifyReport r, vol->Verify(s.id));
  if (cli.json) {
    PrintJson(Json{{"shadow_id", s.id.ToString()},
                   {"ok", r.errors.empty()},
                   {"records_checked", r.records_checked},
                   {"bytes_checked", r.bytes_checked},
                   {"errors", r.errors}});
  } else {
    std::printf("Shadow copy %s of volume '%s': %llu records checked (%s)\n",
                Braced(s.id).c_str(), s.volume_name.c_str(),
                static_cast<unsigned long long>(r.records_checked),
                FormatBytes(r.bytes_checked).c_str());
    for (const auto& e : r.errors) std::printf("   error: %s\n", e.c_str());
    if (r.errors.empty()) std::printf("   no errors\n");
  }
  if (r.errors.empty()) return OkStatus();
  return CorruptionError(
      "shadow copy " + Braced(s.id) + " failed verification: " +
      std::to_string(r.errors.size()) + " errors, first: " + r.errors.front());
}

void AddCreateList(CLI::App& noun, Cli& cli) {
  auto co = std::make_shared<CreateOptions>();
  CLI::App* create = noun.add_subcommand(
      "create",
      "Take a shadow copy set: one shadow per volume, at one instant");
  create->add_option("VOLUME", co->volumes, "Volume names or ids")->required();
  create
      ->add_option("--context", co->context,
                   "Run the VSS requester sequence (writers take part) in this "
                   "context: backup, file-share-backup, app-rollback, "
                   "nas-rollback, client-accessible, client-accessible-writers")
      ->check(CLI::IsMember(VssContextNames()));
  create->add_flag("--no-writers", co->no_writers,
                   "With --context: add VSS_VOLSNAP_ATTR_NO_WRITERS");
  create->add_flag("--no-auto-release", co->no_auto_release,
                   "With --context: add VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE");
  create->footer(
      "Without --context: persistent client-accessible shadows (as vssadmin).\n"
      "backup and file-share-backup are non-persistent and auto-release: they\n"
      "are refused unless vssd holds them or --no-auto-release is given.\n"
      "Examples:\n  vssctl shadow create disk\n"
      "  vssctl shadow create disk data --context app-rollback --json\n"
      "  vssctl shadow create disk --context backup --no-auto-release");
  create->callback([&cli, co] {
    if (co->context.empty() && (co->no_writers || co->no_auto_release)) {
      UsageError("shadow create: --no-writers and --no-auto-release go with --context");
    }
    cli.run = [&cli, co] { return RunCreate(cli, *co); };
  });

  auto lo = std::make_shared<ListOptions>();
  CLI::App* list = noun.add_subcommand(
      "list", "List shadow copies (like vssadmin list shadows)");
  list->add_option("--volume", lo->volume, "Only shadows of this volume")
      ->type_name("VOLUME");
  list->add_option("--set", lo->set, "Only shadows of this set")
      ->type_name("SET");
  list->footer(
      "Examples:\n  vssctl shadow list\n  vssctl shadow list --volume disk "
      "--json");
  list->callback(
      [&cli, lo] { cli.run = [&cli, lo] { return RunList(cli, *lo); }; });
}

// A verb taking one SHADOW argument.
void AddOneShadowVerb(CLI::App& noun, Cli& cli, const std::string& verb,
                      const std::string& help, const std::string& example,
                      Status (*fn)(Cli&, const std::string&)) {
  auto id = std::make_shared<std::string>();
  CLI::App* c = noun.add_subcommand(verb, help);
  c->add_option("SHADOW", *id, "Shadow copy id or unique prefix")->required();
  c->footer("Example:\n  " + example);
  c->callback(
      [&cli, id, fn] { cli.run = [&cli, id, fn] { return fn(cli, *id); }; });
}

void AddExport(CLI::App& noun, Cli& cli) {
  auto eo = std::make_shared<ExportOptions>();
  CLI::App* exp =
      noun.add_subcommand("export",
                          "Write a shadow copy as a new image: sparse raw, or "
                          "qcow2, vhdx, vhd, vmdk (full or incremental)");
  exp->add_option("SHADOW", eo->shadow, "Shadow copy id or unique prefix")
      ->required();
  exp->add_option("OUTPUT", eo->output, "New image file (must not exist)")
      ->required();
  exp->add_option("--format", eo->format,
                  "raw, qcow2, vhdx, vhd or vmdk (default: from OUTPUT's "
                  "extension, else raw)")
      ->check(CLI::IsMember({"raw", "qcow2", "vhdx", "vhd", "vmdk"}));
  exp->add_option("--subformat", eo->subformat,
                  "vhdx, vhd: dynamic (default) or fixed; vmdk: "
                  "monolithicSparse (default) or streamOptimized")
      ->type_name("SUBFORMAT");
  exp->add_option("-o,--option", eo->options,
                  "A writer option of the format (repeatable; see README: "
                  "exports)")
      ->type_name("KEY=VALUE");
  exp->add_flag("--compress", eo->compress,
                "qcow2: store clusters compressed where that shrinks them; "
                "vmdk: a streamOptimized image (deflate)");
  exp->add_option("--compression", eo->compression,
                  "qcow2, with --compress: zlib (default) or zstd")
      ->check(CLI::IsMember({"zlib", "zstd"}));
  exp->add_option(
         "--since", eo->since,
         "Incremental: only what changed since this older shadow copy")
      ->type_name("OLDER");
  exp->add_option("--backing", eo->backing,
                  "With --since: the export of OLDER (same format), the new "
                  "image's backing file or parent (a relative name is "
                  "relative to OUTPUT's directory)")
      ->type_name("FILE");
  exp->add_flag("--no-verify", eo->no_verify,
                "Skip reading the export back through its format's driver");
  exp->footer(
      "Examples:\n  vssctl shadow export 1a2b disk-then.img\n"
      "  vssctl shadow export 1a2b full.qcow2 --compress\n"
      "  vssctl shadow export 3c4d inc1.qcow2 --since 1a2b --backing "
      "full.qcow2\n"
      "  vssctl shadow export 1a2b full.vhdx\n"
      "  vssctl shadow export 3c4d inc1.vhdx --since 1a2b --backing full.vhdx\n"
      "  vssctl shadow export 1a2b appliance.vmdk --subformat "
      "streamOptimized");
  exp->callback([&cli, eo] {
    if (eo->since.empty() != eo->backing.empty()) {
      UsageError("shadow export: --since and --backing go together");
    }
    const std::string format = ExportFormat(*eo);
    if (format == "raw" &&
        (eo->compress || !eo->since.empty() || !eo->subformat.empty() ||
         !eo->options.empty())) {
      UsageError(
          "shadow export: --compress, --subformat, -o, --since and --backing "
          "need an image format (--format qcow2, vhdx, vhd or vmdk)");
    }
    cli.run = [&cli, eo] { return RunExport(cli, *eo); };
  });
}

void AddReadExportDiff(CLI::App& noun, Cli& cli) {
  auto ro = std::make_shared<ReadOptions>();
  CLI::App* read = noun.add_subcommand("read", "Read bytes of a shadow copy");
  read->add_option("SHADOW", ro->shadow, "Shadow copy id or unique prefix")
      ->required();
  read->add_option("--offset", ro->offset, "Byte offset")
      ->type_name("N")
      ->required();
  read->add_option("--length", ro->length, "Bytes to read")
      ->type_name("N")
      ->required();
  read->add_option("--output", ro->output,
                   "File to write (default: standard output)")
      ->type_name("FILE");
  read->footer(
      "Example:\n  vssctl shadow read 1a2b --offset 0 --length 1M --output "
      "then.bin");
  read->callback(
      [&cli, ro] { cli.run = [&cli, ro] { return RunRead(cli, *ro); }; });

  AddExport(noun, cli);

  auto d = std::make_shared<TwoIds>();
  CLI::App* diff =
      noun.add_subcommand("diff",
                          "Changed extents since a shadow copy (to a newer "
                          "one, or to the live volume)");
  diff->add_option("SHADOW", d->first, "Older shadow copy")->required();
  diff->add_option("SHADOW2", d->second,
                   "Newer shadow copy (default: the live volume)");
  diff->footer(
      "Examples:\n  vssctl shadow diff 1a2b\n  vssctl shadow diff 1a2b 3c4d "
      "--json");
  diff->callback(
      [&cli, d] { cli.run = [&cli, d] { return RunDiff(cli, *d); }; });
}

void AddDelete(CLI::App& noun, Cli& cli) {
  auto o = std::make_shared<DeleteOptions>();
  CLI::App* c = noun.add_subcommand("delete", "Delete shadow copies");
  c->add_option("SHADOW", o->shadow, "Shadow copy id or unique prefix");
  c->add_option("--set", o->set, "Delete every shadow of this set")
      ->type_name("SET");
  c->add_option("--volume", o->volume,
                "Delete shadows of this volume (with --oldest or --all)")
      ->type_name("VOLUME");
  c->add_flag("--oldest", o->oldest, "With --volume: the oldest shadow");
  c->add_flag("--all", o->all, "With --volume: every shadow");
  c->footer(
      "Examples:\n  vssctl shadow delete 1a2b\n  vssctl shadow delete --set "
      "5e6f\n"
      "  vssctl shadow delete --volume disk --oldest");
  c->callback([&cli, o] {
    int given = !o->shadow.empty() + !o->set.empty() + !o->volume.empty();
    if (given != 1)
      UsageError("shadow delete: give exactly one of SHADOW, --set, --volume");
    if (!o->volume.empty() && o->oldest == o->all) {
      UsageError("shadow delete --volume: give exactly one of --oldest, --all");
    }
    if (o->volume.empty() && (o->oldest || o->all)) {
      UsageError("shadow delete: --oldest and --all go with --volume");
    }
    cli.run = [&cli, o] { return RunDelete(cli, *o); };
  });
}

}  // namespace

void AddShadowCommands(CLI::App& app, Cli& cli) {
  CLI::App* noun = app.add_subcommand(
      "shadow", "Shadow copies: read-only point-in-time views");
  noun->require_subcommand(1);
  noun->footer(
      "Examples:\n  vssctl shadow create disk\n  vssctl shadow list --volume "
      "disk\n"
      "  vssctl shadow diff 1a2b\n"
      "Run `vssctl shadow VERB --help` for each verb.");
  AddCreateList(*noun, cli);
  AddOneShadowVerb(*noun, cli, "show", "Show one shadow copy",
                   "vssctl shadow show 1a2b", RunShow);
  AddReadExportDiff(*noun, cli);
  AddDelete(*noun, cli);
  {
    auto id = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    CLI::App* c = noun->add_subcommand(
        "revert",
        "Revert its volume to a shadow copy (it and newer shadows are removed)");
    c->add_option("SHADOW", *id, "Shadow copy id or unique prefix")->required();
    c->add_flag("--force", *force,
                "Through vssd: disconnect the NBD clients of the volume's live "
                "export (a VM on it) instead of refusing with VSS_E_VOLUME_IN_USE");
    c->footer("Examples:\n  vssctl shadow revert 1a2b\n  vssctl shadow revert 1a2b --force");
    c->callback([&cli, id, force] {
      cli.run = [&cli, id, force] { return RunRevert(cli, *id, *force); };
    });
  }
  AddOneShadowVerb(*noun, cli, "verify",
                   "Read and check every diff-area record a shadow copy needs "
                   "(exit 1 on errors)",
                   "vssctl shadow verify 1a2b", RunVerify);
}

}  // namespace vss::tools
