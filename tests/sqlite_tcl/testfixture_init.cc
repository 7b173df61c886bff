// SQLITE_EXTRA_INIT hook for SQLite's own testfixture (tests/sqlite_tcl/run.sh).
//
// COMPILING
//   testfixture is built from Debian's sqlite3 source package with
//   -DSQLITE_EXTRA_INIT=cowbackup_testfixture_init and this file plus the
//   cowbackup_vfs, cowbackup_backup and cowbackup_engine static libraries on
//   its link line, and without libsqlite3: the shim's sqlite3_* calls resolve
//   to testfixture's own SQLite.
//
// USING
//   sqlite3_initialize() calls the hook after every (re)initialization, so
//   the shim is the default VFS again after a test's sqlite3_shutdown, whose
//   re-initialization makes "unix" the default.
//     COWBACKUP_TESTFIXTURE_VFS=unix      the plain unix VFS stays the
//                                         default: one binary runs both
//                                         columns of run.sh's table
//     COWBACKUP_TESTFIXTURE_BACKUP=DIR    backups running while tests write:
//                                         each connection that opens a file
//                                         named test.db starts a throttled
//                                         backup of it into DIR unless one
//                                         runs already (an auto-extension,
//                                         so on the test's thread, before
//                                         sqlite3_open returns)
//   At exit, running backups are cancelled and their outcomes are appended
//   to DIR/outcomes.
//
// LIMITATIONS (backup mode)
//   A job keeps a unix file object of test.db open and takes SHARED locks
//   at its start and end, through the same unix VFS that testfixture counts
//   and fault-injects: a job still running when a test file ends shows as
//   "files were left open"/"Unfreed memory", its reads can take an I/O error
//   a test injected for SQLite, and its locks can make a lock test see BUSY.
//   run.sh reports such differences beside the test names; they are not the
//   shim changing SQLite's behaviour. WAL databases are refused for now.
#include <sqlite3.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unistd.h>

#include "cowbackup/sqlite.hpp"
#include "vfs/shim_vfs.h"

namespace {

namespace cs = cowbackup::sqlite;

// Throttled so that a test database of a few hundred KB takes a second or
// more: the test keeps writing while the copier runs.
constexpr double kMaxRateMb = 0.2;
// The begin-time lock is taken on the test's own thread: a lock held by
// another connection of that thread is not released while we wait.
constexpr uint32_t kBusyTimeoutMs = 20;

std::mutex g_mu;
std::string g_backup_dir;                  // "" = backup mode off
uint64_t g_next_dest = 0;                  // GUARDED_BY(g_mu)
std::map<std::string, int> g_refusals;     // first words of refusals; GUARDED_BY(g_mu)
std::atomic<uint64_t> g_started{0};

// Deletes the archives of finished jobs (pagerfault opens test.db tens of
// thousands of times) and counts their outcomes.
struct Outcomes {
  uint64_t done = 0, failed = 0, cancelled = 0;
  std::map<std::string, int> errors;
};
Outcomes g_outcomes;                       // GUARDED_BY(g_mu)
std::map<uint64_t, bool> g_seen;           // job id -> counted; GUARDED_BY(g_mu)

// An error message without its paths (each test's directory differs), cut
// to a line: the key under which outcomes are counted.
std::string Reason(const std::string& msg) {
  std::string out;
  for (size_t i = 0; i < msg.size() && out.size() < 90; i++) {
    if (msg[i] == '/' && (i == 0 || msg[i - 1] == ' ')) {
      while (i < msg.size() && msg[i] != ' ' && msg[i] != ')' && msg[i] != ',') i++;
      out += "<path>";
      if (i < msg.size()) out += msg[i];
    } else {
      out += msg[i];
    }
  }
  return out;
}

void CollectFinishedLocked() {
  for (const cs::JobInfo& job : cs::ListJobs()) {
    if (job.summary.state == cowbackup::JobState::kRunning || g_seen[job.id]) continue;
    g_seen[job.id] = true;
    switch (job.summary.state) {
      case cowbackup::JobState::kDone: g_outcomes.done++; break;
      case cowbackup::JobState::kFailed:
        g_outcomes.failed++;
        g_outcomes.errors[Reason(job.summary.error)]++;
        break;
      default: g_outcomes.cancelled++; break;
    }
    unlink(job.destination.c_str());
  }
}

int StartBackupOnOpen(sqlite3* db, char** /*err*/, const sqlite3_api_routines* /*api*/) {
  const char* name = sqlite3_db_filename(db, "main");
  const size_t len = name == nullptr ? 0 : std::strlen(name);
  if (len < 7 || std::strcmp(name + len - 7, "test.db") != 0 ||
      (len > 7 && name[len - 8] != '/')) {
    return SQLITE_OK;
  }
  std::lock_guard<std::mutex> lock(g_mu);
  CollectFinishedLocked();
  cowbackup::BackupOptions options;
  options.max_rate_mb = kMaxRateMb;
  options.busy_timeout_ms = kBusyTimeoutMs;
  options.overwrite = true;
  const std::string dest = g_backup_dir + "/backup-" + std::to_string(g_next_dest++) + ".cowbak";
  uint64_t id = 0;
  const cowbackup::Status s = cs::StartBackup(db, "main", dest, options, &id);
  if (s.ok()) {
    g_started++;
  } else {
    g_refusals[Reason(s.ToString())]++;
  }
  return SQLITE_OK;  // a refused backup never fails the test's open
}

void CancelRunningAtExit() {
  uint64_t running = 0;
  for (const cs::JobInfo& job : cs::ListJobs()) {
    if (job.summary.state != cowbackup::JobState::kRunning) continue;
    running++;
    (void)cs::CancelBackup(job.id);
    cowbackup::Summary ignored;
    (void)cs::WaitBackup(job.id, &ignored);
  }
  std::lock_guard<std::mutex> lock(g_mu);
  CollectFinishedLocked();
  // One line per process into DIR/outcomes, not to stderr: SQLite's crash
  // tests run child testfixtures with `exec`, which fails on any stderr
  // output. run.sh reads "running at exit": such a job's file object and
  // memory were still in use when the harness counted open files and memory.
  FILE* out = std::fopen((g_backup_dir + "/outcomes").c_str(), "a");
  if (out == nullptr) return;
  std::fprintf(out,
               "pid %d: backups started %llu: done %llu, failed %llu, cancelled %llu; running at "
               "exit %llu\n",
               int(getpid()), (unsigned long long)g_started.load(),
               (unsigned long long)g_outcomes.done, (unsigned long long)g_outcomes.failed,
               (unsigned long long)g_outcomes.cancelled, (unsigned long long)running);
  for (const auto& [error, n] : g_outcomes.errors) {
    std::fprintf(out, "pid %d:   failed %d x: %s\n", int(getpid()), n, error.c_str());
  }
  for (const auto& [why, n] : g_refusals) {
    std::fprintf(out, "pid %d:   not started %d x: %s\n", int(getpid()), n, why.c_str());
  }
  std::fclose(out);
}

}  // namespace

extern "C" int cowbackup_testfixture_init(const char* /*unused*/) {
  const char* vfs = std::getenv("COWBACKUP_TESTFIXTURE_VFS");
  if (vfs != nullptr && std::strcmp(vfs, "unix") == 0) return SQLITE_OK;
  const cowbackup::Status s = cs::RegisterShimVfs(/*make_default=*/true);
  if (!s.ok()) {
    std::fprintf(stderr, "cowbackup_testfixture_init: %s\n", s.ToString().c_str());
    return SQLITE_ERROR;
  }
  const char* dir = std::getenv("COWBACKUP_TESTFIXTURE_BACKUP");
  if (dir != nullptr && *dir != '\0') {
    static std::once_flag at_exit;
    std::call_once(at_exit, [dir] {
      g_backup_dir = dir;
      // The job registry (a function-local static) must be built before the
      // handler is registered, so that it is destroyed after the handler ran.
      (void)cs::ListJobs();
      std::atexit(CancelRunningAtExit);
    });
    // Again after each re-initialization: sqlite3_shutdown (and the test
    // harness's sqlite3_reset_auto_extension) clear the list.
    return sqlite3_auto_extension(reinterpret_cast<void (*)(void)>(StartBackupOnOpen));
  }
  return SQLITE_OK;
}
