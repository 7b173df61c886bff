// cowbackup for applications that link SQLite themselves: hot,
// begin-time-consistent backups of a live database without SQL.
//
// USING
//   #include <cowbackup/sqlite.hpp>
//   cowbackup::sqlite::RegisterVfs();          // before opening databases
//   sqlite3_open("app.db", &db);               // goes through the shim
//   cowbackup::Summary sum;
//   cowbackup::Status s = cowbackup::sqlite::Backup(db, "main", "app.cowbak", {}, &sum);
//
// With CMake: find_package(cowbackup) and link cowbackup::sqlite.
//
// The database must be opened through the shim VFS "cowbackup" (opened after
// RegisterVfs() made it the default, or with vfs=cowbackup), in a
// rollback-journal mode (DELETE, TRUNCATE, PERSIST, MEMORY, OFF). WAL
// databases are refused until WAL support lands. Every connection of the
// process to the same file shares one per-file state, so a backup started
// from any connection sees every connection's writes. A write from another
// process (or from a connection that bypasses the shim) during the backup
// fails the backup with a message saying so.
//
// Thread-safety: every function may be called from any thread. `db` is used
// only while StartBackup()/Backup() takes the begin-time instant, under the
// connection's own mutex rules (do not use one connection from two threads
// unless SQLite runs serialized).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cowbackup/job.h"
#include "cowbackup/status.h"

struct sqlite3;

namespace cowbackup::sqlite {

// The name the shim VFS is registered under.
inline constexpr const char* kVfsName = "cowbackup";

// Registers the shim over the current default VFS and, if `make_default`,
// makes it the default. Idempotent: a second call only re-applies the
// default. Connections opened earlier do not go through the shim.
Status RegisterVfs(bool make_default = true);

// True if `schema` ("main", an attached name) of `db` is a file opened
// through the shim.
bool OpenedThroughShim(sqlite3* db, const char* schema);

// Takes the begin-time instant (T0) before it returns and copies on a
// background thread. `*job_id` identifies the job for the calls below.
Status StartBackup(sqlite3* db, const std::string& schema, const std::string& dest,
                   const BackupOptions& options, uint64_t* job_id);

// The same, copying on the calling thread; returns the job's final status.
// `summary` and `job_id` (each may be null) are filled either way once the
// job got an id (its begin-time checks passed). Refused inside a
// transaction that has read `schema`: it would hold writers off.
Status Backup(sqlite3* db, const std::string& schema, const std::string& dest,
              const BackupOptions& options, Summary* summary, uint64_t* job_id = nullptr);

// Waits for a job to end; its final status (OK, failed, cancelled).
Status WaitBackup(uint64_t job_id, Summary* summary);
// Asks a running job to stop; NotFound for an unknown id. The job ends
// (state cancelled) shortly after; nothing appears at its destination.
Status CancelBackup(uint64_t job_id);

// What cowbackup_jobs shows, one per job of the process (the most recent
// finished jobs are kept, running ones always), then the running jobs that
// other processes run on databases this process has open through the shim
// (several processes share one job: docs/SQLITE.md). Those carry the
// coordination region's job id, no schema or destination, and their
// owner's pid; GetJob, WaitBackup and CancelBackup know only this
// process's jobs.
struct JobInfo {
  uint64_t id = 0;
  std::string schema;
  std::string database;     // the database file's path
  std::string destination;
  Summary summary;          // state, progress, seconds, error
  int64_t started_unix_ms = 0;
  int64_t finished_unix_ms = 0;  // 0 while running
  int64_t owner_pid = 0;         // the process running it
};
Status GetJob(uint64_t job_id, JobInfo* info);
std::vector<JobInfo> ListJobs();

// The summary as the SQL function returns it:
// {"state":"done","pages":N,"preserved_pages":P,"bytes":B,"seconds":S,...}
std::string SummaryJson(const Summary& summary, uint64_t job_id);

}  // namespace cowbackup::sqlite
