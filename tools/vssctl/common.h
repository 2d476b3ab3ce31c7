// Shared pieces of vssctl: the invocation context (store, --json, the
// command chosen by the parser), parsing of sizes and bytes, JSON and text
// formatting of the store's volumes, shadows and diff areas, and streaming between devices and files.
//
// Commands are functions returning Status: main() prints a failed Status as
// one line "vssctl: <message>" on stderr and exits 1. Usage errors are found
// by CLI11 while parsing (or thrown as CLI::ValidationError from a command's
// parse callback) and exit 2. Single-threaded: one command per process.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vss/base/status.h"
#include "vss/engine/store.h"
#include "vss/engine/types.h"
#include "vss/formats/block_device.h"
#include "vss/formats/driver.h"

namespace CLI {
class App;
}

namespace vss {
class VssStatus;
}

namespace vss::tools {

using Json = nlohmann::json;

// The state of one vssctl run.
struct Cli {
  std::string store_dir;  // --store; empty: environment or default
  bool json = false;      // --json
  // Set by the parse callback of the chosen command; run after parsing.
  std::function<Status()> run;
  // The exit status of a command that ran without error but has an
  // outcome to report (image check: 2 errors, 3 leaks).
  int exit_code = 0;

  // Opens the store once (creating it when missing). Errors name the store.
  StatusOr<engine::Store*> Store();
  // The store directory in use (after Store() or ResolveStoreDir()).
  const std::string& resolved_store_dir();

 private:
  std::string resolved_dir_;
  std::unique_ptr<engine::Store> store_;
};

// Registration of each noun's commands (volume_cmd.cc, shadow_cmd.cc, ...).
void AddVolumeCommands(CLI::App& app, Cli& cli);
void AddShadowCommands(CLI::App& app, Cli& cli);
void AddStorageCommands(CLI::App& app, Cli& cli);
void AddEventsCommand(CLI::App& app, Cli& cli);
void AddMountCommands(CLI::App& app, Cli& cli);  // mount, unmount, attach
// writers list, providers list, backup, restore (vss_cmd.cc).
void AddVssCommands(CLI::App& app, Cli& cli);
// writer simulate (writer_cmd.cc).
void AddWriterCommands(CLI::App& app, Cli& cli);
// image info, image check (image_cmd.cc).
void AddImageCommands(CLI::App& app, Cli& cli);

// --- The VSS layer (vss_cmd.cc) ---

// The contexts `--context` takes, as vssctl names them ("backup",
// "file-share-backup", "app-rollback", "nas-rollback", "client-accessible",
// "client-accessible-writers").
std::vector<std::string> VssContextNames();

// `shadow create VOLUME... --context ...`: the VSS requester sequence
// through vss::Service (vssd when it serves the store, else in-process).
struct RequesterCreateOptions {
  std::vector<std::string> volumes;
  std::string context;           // one of VssContextNames()
  bool no_writers = false;       // + VSS_VOLSNAP_ATTR_NO_WRITERS
  bool no_auto_release = false;  // + VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE
};
Status CreateShadowSetWithRequester(Cli& cli, const RequesterCreateOptions& o);

// Reverts to `shadow` through vssd (RevertToSnapshot) when vssd serves the
// store: true when it did; false, having done nothing, when no vssd
// answers (the caller then reverts in-process, where the volume lock keeps
// every other user off). The error carries the VSS name
// (VSS_E_VOLUME_IN_USE while NBD clients use the volume, unless
// `force_dismount`).
StatusOr<bool> RevertThroughVssd(Cli& cli, const Guid& shadow, bool force_dismount);

// A VSS error as a vssctl Status whose message carries the VSS name
// ("what: VSS_E_BAD_STATE (0x80042301): ..."); OK stays OK.
Status FromVss(const VssStatus& s, const std::string& what = "");

// Throws CLI::ValidationError: for checks of option combinations made in a
// parse callback, so they are usage errors (exit 2) like CLI11's own.
[[noreturn]] void UsageError(const std::string& message);

// Parses "4096", "64K", "64KiB", "1.5G" is refused; suffixes K M G T P (and
// KB/KiB forms) are binary and case-insensitive. `what` names the option in
// the error ("--size"). kInvalidArgument on anything else or overflow.
StatusOr<uint64_t> ParseSize(const std::string& text, const std::string& what);
// KEY=VALUE texts (an option given several times) as driver options;
// kInvalidArgument naming `what` and the text that is not KEY=VALUE.
StatusOr<DriverOptions> ParseKeyValues(const std::vector<std::string>& texts,
                                       const std::string& what);
// ParseSize, or "UNBOUNDED" (any case) -> engine::kUnbounded.
StatusOr<int64_t> ParseMaxSize(const std::string& text,
                               const std::string& what);
// A byte value: "171", "0xAB", "0253" is decimal. 0..255.
StatusOr<uint8_t> ParseByte(const std::string& text, const std::string& what);

// "256 MiB" / "1.5 GiB" / "512 bytes" for people.
std::string FormatBytes(uint64_t bytes);
// FormatBytes, or "UNBOUNDED" for engine::kUnbounded.
std::string FormatMaxSize(int64_t max_bytes);
// "{xxxxxxxx-...}" as vssadmin shows ids.
std::string Braced(const Guid& id);

// Contexts and attributes.
std::string ContextName(int32_t context);      // "client-accessible"
std::string ContextTypeName(int32_t context);  // "ClientAccessible"
std::vector<std::string> AttributeNames(int32_t attributes);  // VSS names
std::string StateName(int32_t state);                         // "created"

Json VolumeToJson(const engine::VolumeInfo& v);
// A shadow with its VSS properties; kCorruption when the store's record of
// them does not parse.
StatusOr<Json> ShadowToJson(const engine::ShadowInfo& s);
Json DiffAreaToJson(const engine::DiffAreaInfo& d, const engine::VolumeInfo& v);

// Prints one line of compact JSON on stdout.
void PrintJson(const Json& j);

// Shows "what: 42% (1.2 GiB of 3 GiB)" on stderr while long work runs, when
// stderr is a terminal and the work is at least 64 MiB; clears it at the end.
// Copies the allocated, non-zero parts of `src` into `dst` (a new sparse
// image or a volume), 1 MiB at a time with a progress line named `what`;
// flushes `dst` and returns the bytes written.
StatusOr<uint64_t> CopySparse(BlockDevice& src, BlockDevice& dst, const std::string& what);

// Reads the ranges `what` of `expected` and `got` (of equal size) 1 MiB at a
// time with a progress line named `progress_what` and returns the bytes
// compared. kCorruption naming `got` and the first differing offset.
StatusOr<uint64_t> CompareDevices(BlockDevice& expected, BlockDevice& got,
                                  std::span<const Extent> what,
                                  const std::string& progress_what);

class Progress {
 public:
  Progress(std::string what, uint64_t total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void Add(uint64_t bytes);

 private:
  std::string what_;
  uint64_t total_;
  uint64_t done_ = 0;
  int shown_percent_ = -1;
  bool enabled_;
};

// Checks that [offset, offset+length) lies inside a device of `size` bytes.
// kOutOfRange naming `what` otherwise.
Status CheckRange(uint64_t offset, uint64_t length, uint64_t size,
                  const std::string& what);

// Copies [offset, offset+length) of `dev` to `output` (stdout when empty) in
// 1 MiB pieces. A file is written under a temporary name and renamed when
// complete, so a failed read leaves no partial file.
Status ReadToOutput(BlockDevice& dev, uint64_t offset, uint64_t length,
                    const std::string& output);

}  // namespace vss::tools
