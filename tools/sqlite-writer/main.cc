// vss-sqlite-writer: a sample application with its VSS writer. It owns a
// SQLite database (WAL mode) on a volume, keeps inserting rows into it, and
// takes part in the backups of that volume: at freeze it holds its writes
// and checkpoints the WAL, at thaw it lets them go (sqlite_writer.h).
//
//   vss-sqlite-writer --db PATH --volume VOLUME [--mount DIR] [--store DIR]
//                     [--interval-ms N] [--freeze-timeout-ms N]
//
// It subscribes through vssd when vssd serves the store; without vssd it
// runs in-process, where only requesters of this process could reach it,
// and says so. Events are logged on stdout, one line each. SIGINT or
// SIGTERM: unsubscribe, stop inserting, close the database, exit 0.
// Exit codes: 1 the database or the store could not be opened (one line on
// stderr), 2 the command line is wrong.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <mutex>
#include <string>

#include "sqlite_writer.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "vss-sqlite-writer: %s\n", message.c_str());
  return 1;
}

// "2024-05-01T12:00:00.123 line" on stdout; lines come from several threads.
void LogLine(const std::string& line) {
  static std::mutex mu;
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  char millis[8];
  std::snprintf(millis, sizeof(millis), ".%03d", static_cast<int>(ms));
  std::lock_guard<std::mutex> lock(mu);
  std::cout << stamp << millis << " " << line << std::endl;
}

int Run(int argc, char** argv) {
  vss::tools::SqliteWriterOptions options;
  std::string store_dir;
  int64_t interval_ms = 100;
  CLI::App app{
      "A sample application that owns a SQLite database on a volume, with its VSS "
      "writer.",
      "vss-sqlite-writer"};
  app.add_option("--db", options.db_path, "The database file (created when missing)")
      ->type_name("PATH")
      ->required();
  app.add_option("--volume", options.volume, "The store volume whose filesystem holds it")
      ->type_name("VOLUME")
      ->required();
  app.add_option("--mount", options.mount_point,
                 "Where that filesystem is mounted (default: the database's directory)")
      ->type_name("DIR");
  app.add_option("--store", store_dir, "Store directory (default: $VSS_STORE, ...)")
      ->type_name("DIR");
  app.add_option("--interval-ms", interval_ms, "Pause between two inserts")
      ->check(CLI::Range(int64_t{1}, int64_t{3600000}));
  app.add_option("--freeze-timeout-ms", options.freeze_timeout_ms,
                 "Longest hold of the writes (the writer's freeze window)")
      ->check(CLI::Range(1u, 3600000u));
  app.footer(
      "Example:\n  vss-sqlite-writer --db /mnt/disk/app/app.db --volume disk "
      "--mount /mnt/disk");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "vss-sqlite-writer: %s (see --help)\n", e.what());
    return 2;
  }
  options.insert_interval = std::chrono::milliseconds(interval_ms);
  options.log = LogLine;

  // SIGINT and SIGTERM are taken by sigwait: block them before any thread
  // starts so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  vss::ServiceOptions service_options;
  service_options.store_dir = store_dir;
  vss::VssStatusOr<std::unique_ptr<vss::Service>> service = vss::Service::Connect(service_options);
  if (!service.ok()) return Fail("store: " + service.status().ToString());
  vss::StatusOr<std::unique_ptr<vss::tools::SqliteWriter>> writer =
      vss::tools::SqliteWriter::Open(options);
  if (!writer.ok()) return Fail(writer.status().ToString());
  if (vss::VssStatus s = (*writer)->Subscribe(**service); !s.ok()) {
    return Fail("subscribe: " + s.ToString());
  }
  LogLine("subscribed, " + (*service)->Describe() + "; inserting into " + options.db_path);
  if (!(*service)->remote()) {
    LogLine(
        "no vssd serves the store: only requesters in this process reach this writer "
        "(start vssd to serve backups from other processes)");
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  const int64_t inserted = (*writer)->rows_inserted();
  writer->reset();  // unsubscribes before the service goes away
  LogLine("stopped on signal " + std::to_string(signal_number) + " after inserting " +
          std::to_string(inserted) + " rows");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
