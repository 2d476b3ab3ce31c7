// vssctl volume create|add|list|show|set|remove|write|read

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <span>

#include "common.h"
#include "vss/engine/volume.h"

namespace vss::tools {
namespace {

constexpr size_t kPiece = size_t{1} << 20;

struct CreateOptions {
  std::string path;
  std::string size;
  std::string name;
  std::string chunk_size;
  std::string format;  // create: the image format (empty: raw)
  std::string cluster_size;          // create: the driver's cluster_size
  std::vector<std::string> options;  // create: KEY=VALUE driver options
  std::string subformat;             // create: the subformat option
  bool create = true;
};

struct IoOptions {
  std::string volume;
  std::string offset;
  std::string length;
  std::string input;
  std::string pattern;
  std::string output;
};

struct SetOptions {
  std::string volume;
  std::string guest_agent;
  bool no_guest_agent = false;
};

struct RemoveOptions {
  std::string volume;
  bool force = false;
};

std::string AbsolutePath(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

void PrintVolumeLines(const engine::VolumeInfo& v) {
  std::printf("   ID:         %s\n", Braced(v.id).c_str());
  std::printf("   Image:      %s\n", v.path.c_str());
  std::printf("   Format:     %s\n", v.format.c_str());
  std::printf("   Size:       %s (%llu bytes)\n", FormatBytes(v.size).c_str(),
              static_cast<unsigned long long>(v.size));
  std::printf("   Chunk size: %s\n", FormatBytes(v.chunk_size).c_str());
  std::printf("   Created:    %s\n",
              engine::TimestampToIso8601(v.created).c_str());
  std::printf("   Guest agent: %s\n",
              v.guest_agent.empty() ? "none" : v.guest_agent.c_str());
}

// The driver options of `volume create`: each -o KEY=VALUE, --subformat as
// the subformat option, and --cluster-size as the cluster_size option in
// bytes.
StatusOr<DriverOptions> CreateDriverOptions(const CreateOptions& o) {
  VSS_ASSIGN_OR_RETURN(DriverOptions out, ParseKeyValues(o.options, "--option"));
  if (!o.subformat.empty()) out["subformat"] = o.subformat;
  if (!o.cluster_size.empty()) {
    VSS_ASSIGN_OR_RETURN(uint64_t bytes, ParseSize(o.cluster_size, "--cluster-size"));
    out["cluster_size"] = std::to_string(bytes);
  }
  return out;
}

Status RunCreate(Cli& cli, const CreateOptions& o) {
  engine::CreateVolumeRequest req;
  req.path = AbsolutePath(o.path);
  req.name = o.name;
  req.create = o.create;
  req.format = o.format;
  if (o.create) {
    VSS_ASSIGN_OR_RETURN(req.size, ParseSize(o.size, "--size"));
    VSS_ASSIGN_OR_RETURN(req.create_options, CreateDriverOptions(o));
  }
  if (!o.chunk_size.empty()) {
    VSS_ASSIGN_OR_RETURN(uint64_t chunk,
                         ParseSize(o.chunk_size, "--chunk-size"));
    if (chunk > (uint64_t{1} << 30)) {
      return InvalidArgumentError("--chunk-size: " + o.chunk_size +
                                  " is too large");
    }
    req.chunk_size = static_cast<uint32_t>(chunk);
  }
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  StatusOr<engine::VolumeInfo> added = store->CreateVolume(req);
  if (added.status().code() == StatusCode::kUnsupported) {
    // "web.qcow2 is a qcow2 image; ...": the file as the user named it.
    // status() returns a copy: keep it alive while its message is read.
    const Status refused = added.status();
    const std::string& m = refused.message();
    size_t is = m.find(" is a ");
    if (is != std::string::npos) {
      return Status(StatusCode::kUnsupported, o.path + m.substr(is));
    }
  }
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, std::move(added));
  if (cli.json) {
    PrintJson(VolumeToJson(v));
    return OkStatus();
  }
  std::printf("%s volume '%s'\n", o.create ? "Created" : "Added",
              v.name.c_str());
  PrintVolumeLines(v);
  return OkStatus();
}

Status RunList(Cli& cli) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(auto volumes, store->ListVolumes());
  VSS_ASSIGN_OR_RETURN(auto shadows, store->ListShadows());
  auto count_of = [&](const Guid& id) {
    return std::count_if(shadows.begin(), shadows.end(),
                         [&](const auto& s) { return s.volume_id == id; });
  };
  if (cli.json) {
    Json out = Json::array();
    for (const auto& v : volumes) {
      Json j = VolumeToJson(v);
      j["shadows"] = count_of(v.id);
      out.push_back(j);
    }
    PrintJson(out);
    return OkStatus();
  }
  if (volumes.empty()) {
    std::printf("No volumes in store %s.\n", cli.resolved_store_dir().c_str());
    return OkStatus();
  }
  std::printf("%-16s %-38s %10s %8s %7s  %s\n", "NAME", "ID", "SIZE", "CHUNK",
              "SHADOWS", "IMAGE");
  for (const auto& v : volumes) {
    std::printf("%-16s %-38s %10s %8s %7ld  %s\n", v.name.c_str(),
                Braced(v.id).c_str(), FormatBytes(v.size).c_str(),
                FormatBytes(v.chunk_size).c_str(),
                static_cast<long>(count_of(v.id)), v.path.c_str());
  }
  return OkStatus();
}

Status RunShow(Cli& cli, const std::string& text) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(text));
  VSS_ASSIGN_OR_RETURN(engine::DiffAreaInfo d, store->DiffAreaOf(v.id));
  VSS_ASSIGN_OR_RETURN(auto shadows,
                       store->ListShadowsOfVolume(v.id));
  if (cli.json) {
    Json j = VolumeToJson(v);
    j["diff_area"] = DiffAreaToJson(d, v);
    Json ids = Json::array();
    for (const auto& s : shadows) ids.push_back(s.id.ToString());
    j["shadows"] = ids;
    PrintJson(j);
    return OkStatus();
  }
  std::printf("Volume '%s'\n", v.name.c_str());
  PrintVolumeLines(v);
  std::printf("   Diff area:  %s (used %s, maximum %s)\n", d.dir.c_str(),
              FormatBytes(d.used_bytes).c_str(),
              FormatMaxSize(d.max_bytes).c_str());
  std::printf("   Shadow copies: %zu\n", shadows.size());
  for (const auto& s : shadows) {
    std::printf("      %s  %s\n", Braced(s.id).c_str(),
                engine::TimestampToIso8601(s.created).c_str());
  }
  return OkStatus();
}

Status RunSet(Cli& cli, const SetOptions& o) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(o.volume));
  const std::string socket = o.no_guest_agent ? "" : AbsolutePath(o.guest_agent);
  VSS_ASSIGN_OR_RETURN(v, store->SetVolumeGuestAgent(v.id, socket));
  if (cli.json) {
    PrintJson(VolumeToJson(v));
    return OkStatus();
  }
  if (v.guest_agent.empty()) {
    std::printf("Volume '%s' has no guest agent\n", v.name.c_str());
  } else {
    std::printf("Volume '%s': guest agent %s\n", v.name.c_str(),
                v.guest_agent.c_str());
  }
  return OkStatus();
}

void AddSet(CLI::App& noun, Cli& cli) {
  auto o = std::make_shared<SetOptions>();
  CLI::App* c = noun.add_subcommand("set", "Change a volume's settings");
  c->add_option("VOLUME", o->volume, "Volume name or id")->required();
  auto* agent = c->add_option(
                     "--guest-agent", o->guest_agent,
                     "Unix socket of the QEMU guest agent of the guest on "
                     "this volume: shadows freeze the guest through it")
                    ->type_name("SOCKET");
  auto* none = c->add_flag("--no-guest-agent", o->no_guest_agent,
                           "Forget the volume's guest agent socket");
  agent->excludes(none);
  c->footer(
      "The socket is the host end of the guest's virtio-serial port\n"
      "org.qemu.guest_agent.0; it need not exist yet. vssd's guest agent\n"
      "writer sends guest-fsfreeze-freeze/-thaw through it.\n"
      "Example:\n  vssctl volume set web --guest-agent /run/vm/web.qga");
  c->callback([&cli, o] {
    if (o->guest_agent.empty() && !o->no_guest_agent) {
      UsageError("volume set: give --guest-agent SOCKET or --no-guest-agent");
    }
    cli.run = [&cli, o] { return RunSet(cli, *o); };
  });
}

Status RunRemove(Cli& cli, const RemoveOptions& o) {
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(o.volume));
  VSS_ASSIGN_OR_RETURN(auto shadows,
                       store->ListShadowsOfVolume(v.id));
  if (!shadows.empty() && !o.force) {
    return FailedPreconditionError(
        "volume '" + v.name + "' has " + std::to_string(shadows.size()) +
        " shadow copies; delete them first or use --force");
  }
  VSS_RETURN_IF_ERROR(store->RemoveVolume(v.id));
  if (cli.json) {
    PrintJson(Json{{"removed", v.id.ToString()},
                   {"name", v.name},
                   {"shadows_deleted", shadows.size()}});
    return OkStatus();
  }
  std::printf(
      "Removed volume '%s' %s and %zu shadow copies; the image %s "
      "was kept.\n",
      v.name.c_str(), Braced(v.id).c_str(), shadows.size(), v.path.c_str());
  return OkStatus();
}

// Streams `length` bytes of `fd` into the volume at `offset`.
Status WriteFromFd(BlockDevice& dev, uint64_t offset, uint64_t length, int fd,
                   const std::string& input) {
  Progress progress("writing " + input, length);
  std::vector<uint8_t> buf(std::min<uint64_t>(length, kPiece));
  for (uint64_t done = 0; done < length;) {
    size_t want =
        static_cast<size_t>(std::min<uint64_t>(length - done, kPiece));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "reading " + input);
    if (n == 0) return IoError(input + ": file shrank while being read");
    VSS_RETURN_IF_ERROR(dev.Write(
        offset + done,
        std::span<const uint8_t>(buf.data(), static_cast<size_t>(n))));
    done += static_cast<uint64_t>(n);
    progress.Add(static_cast<uint64_t>(n));
  }
  return OkStatus();
}

Status WritePattern(BlockDevice& dev, uint64_t offset, uint64_t length,
                    uint8_t byte) {
  if (byte == 0) return dev.WriteZeroes(offset, length);
  Progress progress("writing", length);
  std::vector<uint8_t> buf(std::min<uint64_t>(length, kPiece), byte);
  for (uint64_t done = 0; done < length;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(length - done, kPiece));
    VSS_RETURN_IF_ERROR(
        dev.Write(offset + done, std::span<const uint8_t>(buf.data(), n)));
    done += n;
    progress.Add(n);
  }
  return OkStatus();
}

// Opens the input file and returns its descriptor and size.
StatusOr<std::pair<int, uint64_t>> OpenInput(const std::string& input) {
  int fd = ::open(input.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, input);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgumentError(input + ": not a regular file");
  }
  return std::make_pair(fd, static_cast<uint64_t>(st.st_size));
}

Status RunWrite(Cli& cli, const IoOptions& o) {
  VSS_ASSIGN_OR_RETURN(uint64_t offset, ParseSize(o.offset, "--offset"));
  uint64_t length = 0;
  uint8_t byte = 0;
  int fd = -1;
  if (o.input.empty()) {
    VSS_ASSIGN_OR_RETURN(length, ParseSize(o.length, "--length"));
    VSS_ASSIGN_OR_RETURN(byte, ParseByte(o.pattern, "--pattern"));
  } else {
    VSS_ASSIGN_OR_RETURN(auto in, OpenInput(o.input));
    fd = in.first;
    length = in.second;
  }
  struct Closer {
    int fd;
    ~Closer() {
      if (fd >= 0) ::close(fd);
    }
  } closer{fd};
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(o.volume));
  VSS_RETURN_IF_ERROR(
      CheckRange(offset, length, v.size, "volume '" + v.name + "'"));
  VSS_ASSIGN_OR_RETURN(engine::Volume * vol, store->OpenVolume(v.id));
  VSS_RETURN_IF_ERROR(fd >= 0 ? WriteFromFd(*vol, offset, length, fd, o.input)
                              : WritePattern(*vol, offset, length, byte));
  VSS_RETURN_IF_ERROR(vol->Flush());
  if (cli.json) {
    PrintJson(Json{{"volume", v.name},
                   {"volume_id", v.id.ToString()},
                   {"offset", offset},
                   {"length", length}});
    return OkStatus();
  }
  std::printf("Wrote %s (%llu bytes) to volume '%s' at offset %llu\n",
              FormatBytes(length).c_str(),
              static_cast<unsigned long long>(length), v.name.c_str(),
              static_cast<unsigned long long>(offset));
  return OkStatus();
}

Status RunRead(Cli& cli, const IoOptions& o) {
  VSS_ASSIGN_OR_RETURN(uint64_t offset, ParseSize(o.offset, "--offset"));
  VSS_ASSIGN_OR_RETURN(uint64_t length, ParseSize(o.length, "--length"));
  VSS_ASSIGN_OR_RETURN(engine::Store * store, cli.Store());
  VSS_ASSIGN_OR_RETURN(engine::VolumeInfo v, store->ResolveVolume(o.volume));
  VSS_RETURN_IF_ERROR(
      CheckRange(offset, length, v.size, "volume '" + v.name + "'"));
  VSS_ASSIGN_OR_RETURN(engine::Volume * vol, store->OpenVolume(v.id));
  return ReadToOutput(*vol, offset, length, o.output);
}

// Registers `volume create` (create=true) or `volume add`.
void AddCreate(CLI::App& noun, Cli& cli, bool create) {
  auto o = std::make_shared<CreateOptions>();
  o->create = create;
  CLI::App* c =
      create ? noun.add_subcommand(
                   "create",
                   "Create a new image file (sparse raw, or --format) and register it as a volume")
             : noun.add_subcommand(
                   "add", "Register an existing image file as a volume");
  c->add_option("PATH", o->path, "Image file")->required();
  if (create) {
    c->add_option("--size", o->size, "Size of the new image (e.g. 10G)")
        ->type_name("SIZE")
        ->required();
    c->add_option("--format", o->format,
                  "Image format: raw (default), qcow2, vhdx, vhd, vmdk")
        ->type_name("FORMAT");
    c->add_option("--subformat", o->subformat,
                  "vhdx, vhd: dynamic (default) or fixed; vmdk: "
                  "monolithicSparse (default), monolithicFlat, "
                  "twoGbMaxExtentSparse, twoGbMaxExtentFlat")
        ->type_name("SUBFORMAT");
    c->add_option("--cluster-size", o->cluster_size,
                  "The image's cluster size (qcow2: 512 to 2M, default 64K)")
        ->type_name("SIZE");
    c->add_option("-o,--option", o->options,
                  "A format option, e.g. compression_type=zstd (repeatable; see "
                  "README: volume formats)")
        ->type_name("KEY=VALUE");
  }
  c->add_option("--name", o->name, "Volume name (default: the file name)");
  c->add_option(
       "--chunk-size", o->chunk_size,
       "Copy-on-write unit, a power of two from 4K to 1M (default 64K)")
      ->type_name("SIZE");
  c->footer(
      create
          ? "Examples:\n  vssctl volume create disk.img --size 10G --name disk\n"
            "  vssctl volume create web.qcow2 --size 20G --format qcow2 --cluster-size 64K\n"
            "  vssctl volume create data.vhd --size 8G --format vhd --subformat dynamic"
          : "The format is read from the image's header (raw when it shows none); a\n"
            "format vss has no driver for (qcow version 1, QED, VDI) is refused.\n"
            "The volume is recorded by the image's real path (symbolic links resolved).\n"
            "Examples:\n  vssctl volume add /var/lib/vm/web.raw --name web\n"
            "  vssctl volume add /var/lib/libvirt/images/web.qcow2 --name web\n"
            "  vssctl volume add dc01.vhdx --name dc01");
  c->callback(
      [&cli, o] { cli.run = [&cli, o] { return RunCreate(cli, *o); }; });
}

void AddWrite(CLI::App& noun, Cli& cli) {
  auto o = std::make_shared<IoOptions>();
  CLI::App* c = noun.add_subcommand(
      "write", "Write a file or a repeated byte into a volume (copy-on-write)");
  c->add_option("VOLUME", o->volume, "Volume name or id")->required();
  c->add_option("--offset", o->offset, "Byte offset in the volume")
      ->type_name("N")
      ->required();
  auto* input = c->add_option("--input", o->input, "File whose bytes to write")
                    ->type_name("FILE");
  auto* pattern =
      c->add_option("--pattern", o->pattern, "Byte to repeat (171 or 0xAB)")
          ->type_name("BYTE");
  auto* length =
      c->add_option("--length", o->length, "Bytes to write with --pattern")
          ->type_name("N");
  input->excludes(pattern)->excludes(length);
  pattern->needs(length);
  length->needs(pattern);
  c->footer(
      "Examples:\n  vssctl volume write disk --offset 0 --input data.bin\n"
      "  vssctl volume write disk --offset 1M --pattern 0xAB --length 64K");
  c->callback([&cli, o] {
    if (o->input.empty() && o->pattern.empty()) {
      UsageError(
          "volume write: give --input FILE or --pattern BYTE --length N");
    }
    cli.run = [&cli, o] { return RunWrite(cli, *o); };
  });
}

void AddRead(CLI::App& noun, Cli& cli) {
  auto o = std::make_shared<IoOptions>();
  CLI::App* c = noun.add_subcommand("read", "Read bytes of a volume");
  c->add_option("VOLUME", o->volume, "Volume name or id")->required();
  c->add_option("--offset", o->offset, "Byte offset")
      ->type_name("N")
      ->required();
  c->add_option("--length", o->length, "Bytes to read")
      ->type_name("N")
      ->required();
  c->add_option("--output", o->output,
                "File to write (default: standard output)")
      ->type_name("FILE");
  c->footer(
      "Example:\n  vssctl volume read disk --offset 0 --length 1M --output "
      "now.bin");
  c->callback([&cli, o] { cli.run = [&cli, o] { return RunRead(cli, *o); }; });
}

void AddListShowRemove(CLI::App& noun, Cli& cli) {
  CLI::App* list = noun.add_subcommand("list", "List the volumes of the store");
  list->footer("Example:\n  vssctl volume list --json");
  list->callback([&cli] { cli.run = [&cli] { return RunList(cli); }; });

  auto show_id = std::make_shared<std::string>();
  CLI::App* show =
      noun.add_subcommand("show", "Show a volume, its diff area and shadows");
  show->add_option("VOLUME", *show_id, "Volume name or id")->required();
  show->footer("Example:\n  vssctl volume show disk");
  show->callback([&cli, show_id] {
    cli.run = [&cli, show_id] { return RunShow(cli, *show_id); };
  });

  auto o = std::make_shared<RemoveOptions>();
  CLI::App* rm = noun.add_subcommand(
      "remove", "Forget a volume and its shadows (the image file is kept)");
  rm->add_option("VOLUME", o->volume, "Volume name or id")->required();
  rm->add_flag("--force", o->force, "Also delete its shadow copies");
  rm->footer("Example:\n  vssctl volume remove disk --force");
  rm->callback(
      [&cli, o] { cli.run = [&cli, o] { return RunRemove(cli, *o); }; });
}

}  // namespace

void AddVolumeCommands(CLI::App& app, Cli& cli) {
  CLI::App* noun = app.add_subcommand(
      "volume",
      "Volumes: disk image files whose writes go through copy-on-write");
  noun->require_subcommand(1);
  noun->footer(
      "Examples:\n  vssctl volume create disk.img --size 10G --name disk\n"
      "  vssctl volume list\n  vssctl volume read disk --offset 0 --length 4K "
      "| xxd\n"
      "Run `vssctl volume VERB --help` for each verb.");
  AddCreate(*noun, cli, /*create=*/true);
  AddCreate(*noun, cli, /*create=*/false);
  AddListShowRemove(*noun, cli);
  AddSet(*noun, cli);
  AddWrite(*noun, cli);
  AddRead(*noun, cli);
}

}  // namespace vss::tools
