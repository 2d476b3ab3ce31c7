// vssctl writer simulate: an out-of-process VSS writer for testing backup
// software. It subscribes to vssd (Service::Connect in daemon mode),
// reports the components it was given in OnIdentify, logs every event it
// receives as one JSON line, and misbehaves on purpose at a chosen event:
//
//   --fail-at EVENT   SetWriterFailure(--error, default
//                     VSS_E_WRITERERROR_RETRYABLE) and return false
//   --veto-at EVENT   a veto as VSS defines it: return false (with
//                     SetWriterFailure(VSS_E_WRITERERROR_NONRETRYABLE));
//                     at prepare-snapshot or freeze it aborts the set
//   --delay-at E=S    sleep S seconds before answering E (repeatable)
//   --crash-at EVENT  log the event, then die at once (SIGKILL: no
//                     unsubscribe, no cleanup), as a crashing writer does
//
// SetWriterFailure is not allowed from OnIdentify (VSS): failing or vetoing
// at identify only returns false. The writer runs until SIGTERM or SIGINT,
// then unsubscribes and exits 0. "ready: ..." on stderr says it is
// subscribed.

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "common.h"
#include "vss/api/service.h"
#include "vss/api/writer.h"

namespace vss::tools {
namespace {

struct EventSpelling {
  WriterEventKind kind;
  const char* cli_name;  // as --fail-at etc. take it
  const char* alias;     // the VSS event name, normalized
};
constexpr EventSpelling kEvents[] = {
    {WriterEventKind::kIdentify, "identify", "identify"},
    {WriterEventKind::kPrepareBackup, "prepare-backup", "prepareforbackup"},
    {WriterEventKind::kPrepareSnapshot, "prepare-snapshot", "prepareforsnapshot"},
    {WriterEventKind::kFreeze, "freeze", "freeze"},
    {WriterEventKind::kThaw, "thaw", "thaw"},
    {WriterEventKind::kPostSnapshot, "post-snapshot", "postsnapshot"},
    {WriterEventKind::kAbort, "abort", "abort"},
    {WriterEventKind::kBackupComplete, "backup-complete", "backupcomplete"},
    {WriterEventKind::kBackupShutdown, "backup-shutdown", "backupshutdown"},
    {WriterEventKind::kPreRestore, "pre-restore", "prerestore"},
    {WriterEventKind::kPostRestore, "post-restore", "postrestore"},
};

// Lower case without '-', '_' and spaces.
std::string Normalize(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '-' || c == '_' || c == ' ') continue;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// "freeze", "Freeze", "OnFreeze", "prepare-snapshot", "PrepareForSnapshot",
// "OnPrepareSnapshot", ...
std::optional<WriterEventKind> ParseEvent(const std::string& text) {
  std::string n = Normalize(text);
  for (int pass = 0; pass < 2; ++pass) {
    for (const EventSpelling& e : kEvents) {
      if (n == Normalize(e.cli_name) || n == e.alias) return e.kind;
    }
    if (n.rfind("on", 0) != 0) break;
    n = n.substr(2);  // OnFreeze -> freeze
  }
  return std::nullopt;
}

std::string EventList() {
  std::string out;
  for (const EventSpelling& e : kEvents) out += (out.empty() ? "" : ", ") + std::string(e.cli_name);
  return out;
}

WriterEventKind EventOrUsage(const std::string& option, const std::string& text) {
  std::optional<WriterEventKind> k = ParseEvent(text);
  if (!k) UsageError(option + ": unknown event '" + text + "' (one of " + EventList() + ")");
  return *k;
}

constexpr HResult kWriterErrors[] = {
    VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, VSS_E_WRITERERROR_OUTOFRESOURCES,
    VSS_E_WRITERERROR_TIMEOUT,              VSS_E_WRITERERROR_RETRYABLE,
    VSS_E_WRITERERROR_NONRETRYABLE,         VSS_E_WRITERERROR_RECOVERY_FAILED,
    VSS_E_WRITERERROR_PARTIAL_FAILURE,
};

// A VSS_E_WRITERERROR_* name (any case) or its value in hex.
std::optional<HResult> ParseWriterError(const std::string& text) {
  std::string upper;
  for (char c : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (HResult hr : kWriterErrors) {
    if (upper == HResultName(hr) || upper == HResultHex(hr)) return hr;
  }
  return std::nullopt;
}

// A stable class id for a writer name, so that a writer started again
// under the same name is the same writer class (a restore finds it).
Guid WriterIdFor(const std::string& name) {
  auto fnv = [&](uint64_t h) {
    for (unsigned char c : name) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
    return h;
  };
  auto mix = [](uint64_t z) {  // splitmix64's finalizer: every bit counts
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  uint64_t a = mix(fnv(0xcbf29ce484222325ULL));
  uint64_t b = mix(fnv(a ^ 0x9e3779b97f4a7c15ULL));
  Guid g;
  for (int i = 0; i < 8; ++i) {
    g.bytes[i] = static_cast<uint8_t>(a >> (56 - 8 * i));
    g.bytes[8 + i] = static_cast<uint8_t>(b >> (56 - 8 * i));
  }
  g.bytes[6] = static_cast<uint8_t>((g.bytes[6] & 0x0f) | 0x50);  // name-based
  g.bytes[8] = static_cast<uint8_t>((g.bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return g;
}

std::string NowWithMillis() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03lldZ", buf, static_cast<long long>(ms));
  return out;
}

std::string BackupTypeText(VSS_BACKUP_TYPE t) {
  static const char* kNames[] = {"undefined", "full", "incremental", "differential",
                                 "log", "copy", "other"};
  if (t >= 0 && t < static_cast<int32_t>(std::size(kNames))) return kNames[t];
  return std::to_string(t);
}

// What the command line asked for, checked.
struct Plan {
  std::string name;
  Guid writer_id;
  VSS_APPLICATION_LEVEL level = VSS_APP_FRONT_END;
  std::vector<std::pair<std::string, std::string>> components;  // name, path
  std::optional<WriterEventKind> fail_at;
  std::optional<WriterEventKind> veto_at;
  std::optional<WriterEventKind> crash_at;
  HResult error = VSS_E_WRITERERROR_RETRYABLE;
  std::map<WriterEventKind, double> delays;  // seconds
  std::string log;                           // empty: stdout
};

struct SimulateOptions {
  std::string name;
  std::vector<std::string> components;
  std::string fail_at;
  std::string error;
  std::string veto_at;
  std::vector<std::string> delays;
  std::string crash_at;
  std::string log;
  std::string level = "front-end";
  std::string writer_id;
};

// Throws CLI::ValidationError (exit 2) on bad arguments.
Plan MakePlan(const SimulateOptions& o) {
  Plan p;
  if (o.name.empty()) UsageError("writer simulate: --name must not be empty");
  p.name = o.name;
  if (o.writer_id.empty()) {
    p.writer_id = WriterIdFor(o.name);
  } else {
    std::string text = o.writer_id;
    if (text.size() >= 2 && text.front() == '{' && text.back() == '}') {
      text = text.substr(1, text.size() - 2);
    }
    std::optional<Guid> g = Guid::Parse(text);
    if (!g || g->IsNull()) UsageError("--writer-id: '" + o.writer_id + "' is not a GUID");
    p.writer_id = *g;
  }
  static const std::map<std::string, VSS_APPLICATION_LEVEL> kLevels = {
      {"system", VSS_APP_SYSTEM}, {"back-end", VSS_APP_BACK_END}, {"front-end", VSS_APP_FRONT_END}};
  p.level = kLevels.at(o.level);  // CLI11 checked it
  std::set<std::string> names;
  for (const std::string& c : o.components) {
    size_t colon = c.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == c.size()) {
      UsageError("--component: '" + c + "' is not NAME:PATH (e.g. db:disk/var/db)");
    }
    std::string name = c.substr(0, colon);
    if (!names.insert(name).second) UsageError("--component: '" + name + "' is given twice");
    p.components.emplace_back(name, c.substr(colon + 1));
  }
  if (!o.fail_at.empty()) p.fail_at = EventOrUsage("--fail-at", o.fail_at);
  if (!o.veto_at.empty()) p.veto_at = EventOrUsage("--veto-at", o.veto_at);
  if (!o.crash_at.empty()) p.crash_at = EventOrUsage("--crash-at", o.crash_at);
  if (p.fail_at && p.veto_at && *p.fail_at == *p.veto_at) {
    UsageError("--fail-at and --veto-at name the same event");
  }
  if (!o.error.empty()) {
    if (!p.fail_at) UsageError("--error goes with --fail-at");
    std::optional<HResult> hr = ParseWriterError(o.error);
    if (!hr) {
      UsageError("--error: '" + o.error +
                 "' is not a writer error (VSS_E_WRITERERROR_RETRYABLE, _NONRETRYABLE, "
                 "_TIMEOUT, _OUTOFRESOURCES, _INCONSISTENTSNAPSHOT, _RECOVERY_FAILED, "
                 "_PARTIAL_FAILURE)");
    }
    p.error = *hr;
  }
  for (const std::string& d : o.delays) {
    size_t eq = d.find('=');
    if (eq == std::string::npos) UsageError("--delay-at: '" + d + "' is not EVENT=SECONDS");
    WriterEventKind k = EventOrUsage("--delay-at", d.substr(0, eq));
    std::string secs = d.substr(eq + 1);
    char* end = nullptr;
    errno = 0;
    double s = secs.empty() ? -1 : std::strtod(secs.c_str(), &end);
    if (secs.empty() || *end != '\0' || errno != 0 || !std::isfinite(s) || s < 0 || s > 86400) {
      UsageError("--delay-at: '" + secs + "' is not a number of seconds (0 to 86400)");
    }
    if (!p.delays.emplace(k, s).second) UsageError("--delay-at: '" + d.substr(0, eq) + "' is given twice");
  }
  p.log = o.log;
  return p;
}

// The writer. Handlers run one at a time on its event thread.
class SimulatedWriter final : public Writer {
 public:
  SimulatedWriter(const Plan& plan, std::FILE* log) : plan_(plan), log_(log) {}
  ~SimulatedWriter() override { Unsubscribe().IgnoreError(); }

  // Ends a running delay early (on SIGTERM).
  void Stop() {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    cv_.notify_all();
  }

  bool OnIdentify(CreateWriterMetadata& metadata) override {
    return Handle(WriterEventKind::kIdentify, nullptr, &metadata, Guid());
  }
  bool OnPrepareBackup(WriterComponents& c) override {
    return Handle(WriterEventKind::kPrepareBackup, &c, nullptr, Guid());
  }
  bool OnPrepareSnapshot() override {
    return Handle(WriterEventKind::kPrepareSnapshot, nullptr, nullptr, Guid());
  }
  bool OnFreeze() override { return Handle(WriterEventKind::kFreeze, nullptr, nullptr, Guid()); }
  bool OnThaw() override { return Handle(WriterEventKind::kThaw, nullptr, nullptr, Guid()); }
  bool OnPostSnapshot(WriterComponents& c) override {
    return Handle(WriterEventKind::kPostSnapshot, &c, nullptr, Guid());
  }
  bool OnAbort() override { return Handle(WriterEventKind::kAbort, nullptr, nullptr, Guid()); }
  bool OnBackupComplete(WriterComponents& c) override {
    return Handle(WriterEventKind::kBackupComplete, &c, nullptr, Guid());
  }
  bool OnBackupShutdown(const Guid& set_id) override {
    return Handle(WriterEventKind::kBackupShutdown, nullptr, nullptr, set_id);
  }
  bool OnPreRestore(WriterComponents& c) override {
    return Handle(WriterEventKind::kPreRestore, &c, nullptr, Guid());
  }
  bool OnPostRestore(WriterComponents& c) override {
    return Handle(WriterEventKind::kPostRestore, &c, nullptr, Guid());
  }

 private:
  static bool IsRestore(WriterEventKind k) {
    return k == WriterEventKind::kPreRestore || k == WriterEventKind::kPostRestore;
  }

  Json EventLine(WriterEventKind kind, const WriterComponents* comps, const Guid& shutdown_set) {
    Guid set_id = kind == WriterEventKind::kBackupShutdown ? shutdown_set : GetCurrentSnapshotSetId();
    Json line{{"time", NowWithMillis()},
              {"writer", plan_.name},
              {"instance_id", registration().identity.instance_id.ToString()},
              {"event", WriterEventName(kind)},
              {"set_id", set_id.IsNull() ? "" : set_id.ToString()},
              {"context", GetContext()},
              {"context_name", ContextName(GetContext())}};
    if (IsRestore(kind)) {
      line["restore_type"] = static_cast<int>(GetRestoreType());
    } else {
      line["backup_type"] = BackupTypeText(GetBackupType());
    }
    Json volumes = Json::array();
    for (const std::string& v : GetCurrentVolumeArray()) {
      VssStatusOr<std::string> device = GetSnapshotDeviceName(v);
      volumes.push_back({{"volume", v}, {"device", device.ok() ? *device : ""}});
    }
    line["volumes"] = volumes;
    if (comps != nullptr) {
      Json list = Json::array();
      for (const Component& c : comps->components()) {
        list.push_back({{"name", c.GetComponentName()},
                        {"logical_path", c.GetLogicalPath()},
                        {"backup_stamp", c.GetBackupStamp()},
                        {"previous_backup_stamp", c.GetPreviousBackupStamp()},
                        {"selected_for_restore", c.IsSelectedForRestore()}});
      }
      line["components"] = list;
    }
    return line;
  }

  void Log(const Json& line) {
    std::lock_guard<std::mutex> l(log_mu_);
    std::string text = line.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
    std::fputs(text.c_str(), log_);
    std::fflush(log_);
  }

  // Sleeps `seconds` unless the writer is stopping; returns the seconds slept.
  double Delay(double seconds) {
    auto start = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::duration<double>(seconds), [&] { return stopping_; });
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  bool Handle(WriterEventKind kind, WriterComponents* comps, CreateWriterMetadata* metadata,
              const Guid& shutdown_set) {
    Json line = EventLine(kind, comps, shutdown_set);
    if (auto d = plan_.delays.find(kind); d != plan_.delays.end()) {
      line["delay_s"] = Delay(d->second);
    }
    if (plan_.crash_at == kind) {
      line["outcome"] = "crash";
      Log(line);
      ::kill(::getpid(), SIGKILL);
      ::_exit(137);  // not reached
    }
    if (metadata != nullptr && !Describe(*metadata, line)) {
      Log(line);
      return false;
    }
    const bool identify = kind == WriterEventKind::kIdentify;
    if (plan_.fail_at == kind || plan_.veto_at == kind) {
      const bool veto = plan_.veto_at == kind;
      HResult hr = veto ? VSS_E_WRITERERROR_NONRETRYABLE : plan_.error;
      line["outcome"] = veto ? "vetoed" : "failed";
      if (!identify) {  // VSS: no SetWriterFailure from OnIdentify
        SetWriterFailureEx(hr, S_OK, std::string(veto ? "vetoed" : "failed") +
                                         " on purpose by vssctl writer simulate")
            .IgnoreError();
        line["error"] = HResultName(hr);
      }
      Log(line);
      return false;
    }
    if (kind == WriterEventKind::kPostSnapshot && comps != nullptr) {
      // A backup stamp per component, so incremental backups have one.
      for (Component& c : comps->components()) {
        c.SetBackupStamp(plan_.name + "/" + c.GetComponentName() + "@" + line["time"].get<std::string>());
      }
    }
    line["outcome"] = "ok";
    Log(line);
    return true;
  }

  // The components of --component in the writer metadata.
  bool Describe(CreateWriterMetadata& md, Json& line) {
    for (const auto& [name, path] : plan_.components) {
      VssStatus s = md.AddComponent(VSS_CT_FILEGROUP, "", name, "simulated component " + name);
      if (s.ok()) s = md.AddFilesToFileGroup("", name, path, "*", true);
      if (!s.ok()) {
        line["outcome"] = "failed";
        line["error"] = s.ToString();
        return false;
      }
    }
    return true;
  }

  const Plan& plan_;
  std::FILE* log_;
  std::mutex log_mu_;
  std::mutex mu_;  // guards stopping_
  std::condition_variable cv_;
  bool stopping_ = false;
};

Status RunSimulate(Cli& cli, const Plan& plan) {
  // SIGTERM and SIGINT are taken by sigwait below; blocked before the
  // service starts its threads so that none of them gets the signal.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::FILE* log = stdout;
  if (!plan.log.empty()) {
    log = std::fopen(plan.log.c_str(), "a");
    if (log == nullptr) return ErrnoError(errno, "--log " + plan.log);
  }
  struct CloseLog {
    std::FILE* f;
    ~CloseLog() {
      if (f != stdout) std::fclose(f);
    }
  } close_log{log};

  ServiceOptions options;
  options.store_dir = cli.resolved_store_dir();
  options.mode = ServiceOptions::Mode::kDaemon;
  VssStatusOr<std::unique_ptr<Service>> service = Service::Connect(options);
  if (!service.ok()) {
    return FromVss(service.status(), "writer simulate needs vssd serving " + options.store_dir);
  }
  {
    SimulatedWriter writer(plan, log);
    VSS_RETURN_IF_ERROR(FromVss(
        writer.Initialize(plan.writer_id, plan.name, VSS_UT_USERDATA, VSS_ST_OTHER, plan.level),
        "Initialize"));
    VSS_RETURN_IF_ERROR(FromVss(writer.Subscribe(**service), "Subscribe"));
    std::fprintf(stderr, "ready: writer '%s' (class %s, instance %s) subscribed to %s\n",
                 plan.name.c_str(), Braced(plan.writer_id).c_str(),
                 Braced(writer.registration().identity.instance_id).c_str(),
                 (*service)->Describe().c_str());
    std::fflush(stderr);
    int sig = 0;
    while (sigwait(&signals, &sig) != 0) {
    }
    writer.Stop();
    VSS_RETURN_IF_ERROR(FromVss(writer.Unsubscribe(), "Unsubscribe"));
  }
  return OkStatus();
}

}  // namespace

void AddWriterCommands(CLI::App& app, Cli& cli) {
  CLI::App* noun = app.add_subcommand("writer", "Writers shipped with vss");
  noun->require_subcommand(1);
  auto o = std::make_shared<SimulateOptions>();
  CLI::App* sim = noun->add_subcommand(
      "simulate", "Run a VSS writer that logs its events and misbehaves on purpose (needs vssd)");
  sim->add_option("--name", o->name, "Writer name")->required();
  sim->add_option("--component", o->components,
                  "A file-group component NAME with files under PATH (VOLUME/dir); repeatable")
      ->type_name("NAME:PATH");
  sim->add_option("--fail-at", o->fail_at, "Fail at this event (SetWriterFailure --error, false)")
      ->type_name("EVENT");
  sim->add_option("--error", o->error,
                  "The failure of --fail-at (default VSS_E_WRITERERROR_RETRYABLE)")
      ->type_name("VSS_E_WRITERERROR_...");
  sim->add_option("--veto-at", o->veto_at,
                  "Veto at this event (VSS_E_WRITERERROR_NONRETRYABLE, false)")
      ->type_name("EVENT");
  sim->add_option("--delay-at", o->delays, "Sleep before answering EVENT; repeatable")
      ->type_name("EVENT=SECONDS");
  sim->add_option("--crash-at", o->crash_at, "Die (SIGKILL) at this event, after logging it")
      ->type_name("EVENT");
  sim->add_option("--log", o->log, "Append the JSON event lines here (default: stdout)")
      ->type_name("FILE");
  sim->add_option("--level", o->level, "Freeze level: system, back-end, front-end (default)")
      ->check(CLI::IsMember({"system", "back-end", "front-end"}));
  sim->add_option("--writer-id", o->writer_id,
                  "Writer class id (default: derived from --name, the same every run)")
      ->type_name("GUID");
  sim->footer(
      "EVENT: identify, prepare-backup, prepare-snapshot, freeze, thaw, post-snapshot,\n"
      "abort, backup-complete, backup-shutdown, pre-restore, post-restore (VSS names\n"
      "such as Freeze or OnFreeze too). Runs until SIGTERM or SIGINT; prints\n"
      "\"ready: ...\" on stderr once subscribed.\n"
      "Examples:\n"
      "  vssctl writer simulate --name db --component data:disk/db --log db.log\n"
      "  vssctl writer simulate --name bad --fail-at freeze --error VSS_E_WRITERERROR_TIMEOUT\n"
      "  vssctl writer simulate --name slow --delay-at freeze=90");
  sim->callback([&cli, o] {
    auto plan = std::make_shared<Plan>(MakePlan(*o));
    cli.run = [&cli, plan] { return RunSimulate(cli, *plan); };
  });
}

}  // namespace vss::tools
