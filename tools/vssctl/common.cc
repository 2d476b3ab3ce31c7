#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <span>

#include "vss/api/shadow_properties.h"
#include "vss/api/types.h"

namespace vss::tools {
namespace {

constexpr uint64_t kPiece = uint64_t{1} << 20;  // streaming unit

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return s;
}

// The multiplier of a size suffix ("", "k", "kb", "kib", ...), or 0.
uint64_t SuffixMultiplier(const std::string& suffix) {
  static const char kUnits[] = "kmgtp";
  std::string s = Lower(suffix);
  if (s.empty() || s == "b") return 1;
  const char* unit = std::strchr(kUnits, s[0]);
  if (unit == nullptr) return 0;
  std::string rest = s.substr(1);
  if (!rest.empty() && rest != "b" && rest != "ib") return 0;
  return uint64_t{1} << (10 * (unit - kUnits + 1));
}

Status WriteAll(int fd, std::span<const uint8_t> data,
                const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "writing " + what);
    data = data.subspan(static_cast<size_t>(n));
  }
  return OkStatus();
}

Status CopyToFd(BlockDevice& dev, uint64_t offset, uint64_t length, int fd,
                const std::string& what) {
  Progress progress("reading " + dev.name(), length);
  std::vector<uint8_t> buf(std::min(length, kPiece));
  for (uint64_t done = 0; done < length;) {
    size_t n = static_cast<size_t>(std::min(length - done, kPiece));
    std::span<uint8_t> piece(buf.data(), n);
    VSS_RETURN_IF_ERROR(dev.Read(offset + done, piece));
    VSS_RETURN_IF_ERROR(WriteAll(fd, piece, what));
    done += n;
    progress.Add(n);
  }
  return OkStatus();
}

bool IsRegularOrMissing(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno == ENOENT;
  return S_ISREG(st.st_mode);
}

}  // namespace

StatusOr<engine::Store*> Cli::Store() {
  if (store_) return store_.get();
  engine::StoreOptions options;
  options.dir = resolved_store_dir();
  auto store = engine::Store::Open(options);
  if (!store.ok()) {
    Status s = store.status();
    if (s.message().find(options.dir) != std::string::npos) return s;
    return s.WithContext("store " + options.dir);
  }
  store_ = std::move(store).value();
  return store_.get();
}

const std::string& Cli::resolved_store_dir() {
  if (resolved_dir_.empty()) {
    std::string dir = store_dir.empty() ? engine::DefaultStoreDir() : store_dir;
    std::error_code ec;
    auto abs = std::filesystem::absolute(dir, ec);
    resolved_dir_ = ec ? dir : abs.lexically_normal().string();
    if (resolved_dir_.size() > 1 && resolved_dir_.back() == '/') {
      resolved_dir_.pop_back();
    }
  }
  return resolved_dir_;
}

void UsageError(const std::string& message) {
  throw CLI::ValidationError(message);
}

StatusOr<DriverOptions> ParseKeyValues(const std::vector<std::string>& texts,
                                       const std::string& what) {
  DriverOptions out;
  for (const std::string& kv : texts) {
    size_t eq = kv.find('=');
    if (eq == 0 || eq == std::string::npos)
      return InvalidArgumentError(what + ": '" + kv + "' is not KEY=VALUE");
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

StatusOr<uint64_t> ParseSize(const std::string& text, const std::string& what) {
  auto bad = [&] {
    return InvalidArgumentError(what + ": '" + text +
                                "' is not a size (bytes, or a number with "
                                "K, M, G, T or P, e.g. 64K, 10G)");
  };
  size_t digits = 0;
  while (digits < text.size() &&
         std::isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  if (digits == 0 || digits > 20) return bad();
  uint64_t mult = SuffixMultiplier(text.substr(digits));
  if (mult == 0) return bad();
  errno = 0;
  unsigned long long value =
      std::strtoull(text.substr(0, digits).c_str(), nullptr, 10);
  if (errno == ERANGE || value > std::numeric_limits<uint64_t>::max() / mult) {
    return InvalidArgumentError(what + ": '" + text + "' is too large");
  }
  return static_cast<uint64_t>(value) * mult;
}

StatusOr<int64_t> ParseMaxSize(const std::string& text,
                               const std::string& what) {
  if (Lower(text) == "unbounded") return engine::kUnbounded;
  VSS_ASSIGN_OR_RETURN(uint64_t bytes, ParseSize(text, what));
  if (bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return InvalidArgumentError(what + ": '" + text + "' is too large");
  }
  return static_cast<int64_t>(bytes);
}

StatusOr<uint8_t> ParseByte(const std::string& text, const std::string& what) {
  std::string digits = text;
  int base = 10;
  if (digits.size() > 2 &&
      (digits.rfind("0x", 0) == 0 || digits.rfind("0X", 0) == 0)) {
    digits = digits.substr(2);
    base = 16;
  }
  bool ok = !digits.empty() && digits.size() <= 3;
  for (char c : digits) {
    ok = ok && (base == 16 ? std::isxdigit(static_cast<unsigned char>(c))
                           : std::isdigit(static_cast<unsigned char>(c)));
  }
  unsigned long value = ok ? std::strtoul(digits.c_str(), nullptr, base) : 256;
  if (value > 255) {
    return InvalidArgumentError(what + ": '" + text +
                                "' is not a byte (0..255 or 0x00..0xFF)");
  }
  return static_cast<uint8_t>(value);
}

std::string FormatBytes(uint64_t bytes) {
  static const char* kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " bytes";
  int unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  if (value == static_cast<double>(static_cast<uint64_t>(value))) {
    std::snprintf(buf, sizeof buf, "%.0f %s", value, kUnits[unit]);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f %s", value, kUnits[unit]);
  }
  return buf;
}

std::string FormatMaxSize(int64_t max_bytes) {
  if (max_bytes < 0) return "UNBOUNDED";
  return FormatBytes(static_cast<uint64_t>(max_bytes));
}

std::string Braced(const Guid& id) { return "{" + id.ToString() + "}"; }

std::string ContextName(int32_t context) {
  switch (context) {
    case VSS_CTX_BACKUP:
      return "backup";
    case VSS_CTX_FILE_SHARE_BACKUP:
      return "file-share-backup";
    case VSS_CTX_NAS_ROLLBACK:
      return "nas-rollback";
    case VSS_CTX_APP_ROLLBACK:
      return "app-rollback";
    case VSS_CTX_CLIENT_ACCESSIBLE:
      return "client-accessible";
    case VSS_CTX_CLIENT_ACCESSIBLE_WRITERS:
      return "client-accessible-writers";
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", static_cast<unsigned>(context));
  return buf;
}

std::string ContextTypeName(int32_t context) {
  switch (context) {
    case VSS_CTX_BACKUP:
      return "Backup";
    case VSS_CTX_FILE_SHARE_BACKUP:
      return "FileShareBackup";
    case VSS_CTX_NAS_ROLLBACK:
      return "NASRollback";
    case VSS_CTX_APP_ROLLBACK:
      return "ApplicationRollback";
    case VSS_CTX_CLIENT_ACCESSIBLE:
      return "ClientAccessible";
    case VSS_CTX_CLIENT_ACCESSIBLE_WRITERS:
      return "ClientAccessibleWriters";
  }
  return ContextName(context);
}

std::vector<std::string> AttributeNames(int32_t attributes) {
  static const std::pair<uint32_t, const char*> kNames[] = {
      {0x1, "PERSISTENT"},
      {0x2, "NO_AUTORECOVERY"},
      {0x4, "CLIENT_ACCESSIBLE"},
      {0x8, "NO_AUTO_RELEASE"},
      {0x10, "NO_WRITERS"},
      {0x20, "TRANSPORTABLE"},
      {0x40, "NOT_SURFACED"},
      {0x80, "NOT_TRANSACTED"},
      {0x10000, "HARDWARE_ASSISTED"},
      {0x20000, "DIFFERENTIAL"},
      {0x40000, "PLEX"},
      {0x80000, "IMPORTED"},
      {0x100000, "EXPOSED_LOCALLY"},
      {0x200000, "EXPOSED_REMOTELY"},
      {0x400000, "AUTORECOVER"},
      {0x800000, "ROLLBACK_RECOVERY"},
      {0x1000000, "DELAYED_POSTSNAPSHOT"},
      {0x2000000, "TXF_RECOVERY"},
      {0x4000000, "FILE_SHARE"},
  };
  std::vector<std::string> names;
  for (const auto& [bit, name] : kNames) {
    if (static_cast<uint32_t>(attributes) & bit) {
      names.push_back(std::string("VSS_VOLSNAP_ATTR_") + name);
    }
  }
  return names;
}

std::string StateName(int32_t state) {
  static const char* kNames[] = {"unknown",
                                 "preparing",
                                 "processing-prepare",
                                 "prepared",
                                 "processing-precommit",
                                 "precommitted",
                                 "processing-commit",
                                 "committed",
                                 "processing-postcommit",
                                 "processing-prefinalcommit",
                                 "prefinalcommitted",
                                 "processing-postfinalcommit",
                                 "created",
                                 "aborted",
                                 "deleted",
                                 "postcommitted"};
  if (state >= 0 && state < static_cast<int32_t>(std::size(kNames))) {
    return kNames[state];
  }
  return std::to_string(state);
}

Json VolumeToJson(const engine::VolumeInfo& v) {
  return Json{{"id", v.id.ToString()},
              {"name", v.name},
              {"path", v.path},
              {"size", v.size},
              {"chunk_size", v.chunk_size},
              {"format", v.format},
              {"created", engine::TimestampToIso8601(v.created)},
              {"guest_agent", v.guest_agent.empty() ? Json(nullptr) : Json(v.guest_agent)}};
}

StatusOr<Json> ShadowToJson(const engine::ShadowInfo& s) {
  VSS_ASSIGN_OR_RETURN(SnapshotProp p, SnapshotPropOf(s));
  VSS_ASSIGN_OR_RETURN(int32_t context, ContextOf(s));
  return Json{
      {"shadow_id", s.id.ToString()},
      {"set_id", s.set_id.ToString()},
      {"count_in_set", s.count_in_set},
      {"volume_id", s.volume_id.ToString()},
      {"original_volume", s.volume_name},
      {"device_object", p.snapshot_device_object},
      {"originating_machine", p.originating_machine},
      {"service_machine", p.service_machine},
      {"exposed_name", s.exposed_name},
      {"exposed_path", s.exposed_path},
      {"provider_id", p.provider_id.ToString()},
      {"attributes", p.snapshot_attributes},
      {"attribute_names", AttributeNames(p.snapshot_attributes)},
      {"context", context},
      {"context_name", ContextName(context)},
      {"state", static_cast<int32_t>(p.status)},
      {"state_name", StateName(p.status)},
      {"created", engine::TimestampToIso8601(s.created)},
      {"creation_timestamp", s.created},
      {"epoch", s.epoch},
      {"persistent", s.persistent},
  };
}

Json DiffAreaToJson(const engine::DiffAreaInfo& d, const engine::VolumeInfo& v) {
  Json max = d.max_bytes < 0 ? Json("UNBOUNDED") : Json(d.max_bytes);
  return Json{{"volume_id", v.id.ToString()},
              {"volume", v.name},
              {"dir", d.dir},
              {"used_bytes", d.used_bytes},
              {"max_bytes", max}};
}

void PrintJson(const Json& j) {
  std::cout << j.dump(-1, ' ', false, Json::error_handler_t::replace) << '\n';
}

Progress::Progress(std::string what, uint64_t total)
    : what_(std::move(what)),
      total_(total),
      enabled_(total >= (uint64_t{64} << 20) && ::isatty(STDERR_FILENO)) {}

Progress::~Progress() {
  if (enabled_ && shown_percent_ >= 0) std::fprintf(stderr, "\r\033[K");
}

void Progress::Add(uint64_t bytes) {
  done_ += bytes;
  if (!enabled_) return;
  int percent = static_cast<int>(done_ * 100 / total_);
  if (percent == shown_percent_) return;
  shown_percent_ = percent;
  std::fprintf(stderr, "\r%s: %d%% (%s of %s)\033[K", what_.c_str(), percent,
               FormatBytes(done_).c_str(), FormatBytes(total_).c_str());
}

Status CheckRange(uint64_t offset, uint64_t length, uint64_t size,
                  const std::string& what) {
  if (offset > size || length > size - offset) {
    return OutOfRangeError(what + ": range " + std::to_string(offset) + "+" +
                           std::to_string(length) + " passes the end (" +
                           std::to_string(size) + " bytes)");
  }
  return OkStatus();
}

Status ReadToOutput(BlockDevice& dev, uint64_t offset, uint64_t length,
                    const std::string& output) {
  VSS_RETURN_IF_ERROR(CheckRange(offset, length, dev.size(), dev.name()));
  if (output.empty()) {
    std::cout.flush();
    return CopyToFd(dev, offset, length, STDOUT_FILENO, "standard output");
  }
  bool via_temp = IsRegularOrMissing(output);
  std::string path =
      via_temp ? output + ".vssctl-tmp-" + std::to_string(getpid()) : output;
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (via_temp ? O_EXCL : O_TRUNC);
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return ErrnoError(errno, output);
  Status s = CopyToFd(dev, offset, length, fd, output);
  if (::close(fd) != 0 && s.ok()) s = ErrnoError(errno, output);
  if (via_temp && s.ok() && ::rename(path.c_str(), output.c_str()) != 0) {
    s = ErrnoError(errno, output);
  }
  if (via_temp && !s.ok()) ::unlink(path.c_str());
  return s;
}

namespace {

bool AllZero(std::span<const uint8_t> data) {
  return std::all_of(data.begin(), data.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

StatusOr<uint64_t> CopySparse(BlockDevice& src, BlockDevice& dst, const std::string& what) {
  constexpr uint64_t kPiece = uint64_t{1} << 20;
  VSS_ASSIGN_OR_RETURN(auto extents, src.Extents(0, src.size()));
  uint64_t allocated = 0;
  for (const Extent& e : extents) allocated += e.allocated ? e.length : 0;
  Progress progress(what, allocated);
  std::vector<uint8_t> buf(std::min(src.size(), kPiece));
  uint64_t written = 0;
  for (const Extent& e : extents) {
    if (!e.allocated) continue;
    for (uint64_t done = 0; done < e.length;) {
      size_t n = static_cast<size_t>(std::min(e.length - done, kPiece));
      std::span<uint8_t> piece(buf.data(), n);
      VSS_RETURN_IF_ERROR(src.Read(e.offset + done, piece));
      if (!AllZero(piece)) {
        VSS_RETURN_IF_ERROR(dst.Write(e.offset + done, piece));
        written += n;
      }
      done += n;
      progress.Add(n);
    }
  }
  VSS_RETURN_IF_ERROR(dst.Flush());
  return written;
}

StatusOr<uint64_t> CompareDevices(BlockDevice& expected, BlockDevice& got,
                                  std::span<const Extent> what,
                                  const std::string& progress_what) {
  constexpr uint64_t kPiece = uint64_t{1} << 20;
  uint64_t total = 0;
  for (const Extent& e : what) total += e.length;
  Progress progress(progress_what, total);
  std::vector<uint8_t> a(kPiece), b(kPiece);
  for (const Extent& e : what) {
    for (uint64_t done = 0; done < e.length;) {
      size_t n = static_cast<size_t>(std::min(e.length - done, kPiece));
      VSS_RETURN_IF_ERROR(
          expected.Read(e.offset + done, std::span(a.data(), n)));
      VSS_RETURN_IF_ERROR(got.Read(e.offset + done, std::span(b.data(), n)));
      if (std::memcmp(a.data(), b.data(), n) != 0) {
        size_t i = 0;
        while (a[i] == b[i]) ++i;
        return CorruptionError(got.name() + " differs from " + expected.name() +
                               " at byte " +
                               std::to_string(e.offset + done + i));
      }
      done += n;
      progress.Add(n);
    }
  }
  return total;
}

}  // namespace vss::tools
