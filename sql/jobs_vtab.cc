// cowbackup_jobs: an eponymous-only virtual table (no xCreate), after
// ext/misc/vfsstat.c, listing every backup job of the process, and the
// running jobs of other processes on databases it has open (owner_pid):
//
//   SELECT id, state, pages_done, pages_total FROM cowbackup_jobs;
//
// Each scan takes a snapshot of cowbackup::sqlite::ListJobs() in xFilter.
#include "sql/jobs_vtab.h"

#include <cstring>
#include <ctime>
#include <new>
#include <vector>

#include "backup/text.h"
#include "cowbackup/sqlite.hpp"

namespace cowbackup::sql {

namespace {

enum Column {
  kId, kSchema, kDatabase, kDestination, kState, kPagesTotal, kPagesDone, kPagesPreserved,
  kBytesWritten, kStarted, kFinished, kError, kOwnerPid, kPaceMb
};

struct JobsCursor {
  sqlite3_vtab_cursor base;  // must come first
  std::vector<cowbackup::sqlite::JobInfo> rows;
  size_t pos = 0;
};

// "2024-05-01T12:00:00.123Z"
std::string IsoTime(int64_t unix_ms) {
  const time_t secs = time_t(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[96];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(unix_ms % 1000));
  return buf;
}

int JobsConnect(sqlite3* db, void*, int, const char* const*, sqlite3_vtab** out, char**) {
  int rc = sqlite3_declare_vtab(
      db,
      "CREATE TABLE x(id INTEGER, schema TEXT, database TEXT, destination TEXT, state TEXT, "
      "pages_total INTEGER, pages_done INTEGER, pages_preserved INTEGER, bytes_written INTEGER, "
      "started TEXT, finished TEXT, error TEXT, owner_pid INTEGER, pace_mb REAL)");
  if (rc != SQLITE_OK) return rc;
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  auto* vtab = static_cast<sqlite3_vtab*>(sqlite3_malloc(sizeof(sqlite3_vtab)));
  if (vtab == nullptr) return SQLITE_NOMEM;
  memset(vtab, 0, sizeof *vtab);
  *out = vtab;
  return SQLITE_OK;
}

int JobsDisconnect(sqlite3_vtab* vtab) {
  sqlite3_free(vtab);
  return SQLITE_OK;
}

int JobsBestIndex(sqlite3_vtab*, sqlite3_index_info* info) {
  info->estimatedCost = 10;
  info->estimatedRows = 10;
  return SQLITE_OK;
}

int JobsOpen(sqlite3_vtab*, sqlite3_vtab_cursor** out) {
  auto* cur = new (std::nothrow) JobsCursor();
  if (cur == nullptr) return SQLITE_NOMEM;
  *out = &cur->base;
  return SQLITE_OK;
}

int JobsClose(sqlite3_vtab_cursor* c) {
  delete reinterpret_cast<JobsCursor*>(c);
  return SQLITE_OK;
}

int JobsFilter(sqlite3_vtab_cursor* c, int, const char*, int, sqlite3_value**) {
  auto* cur = reinterpret_cast<JobsCursor*>(c);
  try {
    cur->rows = cowbackup::sqlite::ListJobs();
  } catch (...) {
    return SQLITE_NOMEM;
  }
  cur->pos = 0;
  return SQLITE_OK;
}

int JobsNext(sqlite3_vtab_cursor* c) {
  reinterpret_cast<JobsCursor*>(c)->pos++;
  return SQLITE_OK;
}

int JobsEof(sqlite3_vtab_cursor* c) {
  auto* cur = reinterpret_cast<JobsCursor*>(c);
  return cur->pos >= cur->rows.size();
}

void ResultText(sqlite3_context* ctx, const std::string& s) {
  sqlite3_result_text(ctx, s.data(), int(s.size()), SQLITE_TRANSIENT);
}

int JobsColumn(sqlite3_vtab_cursor* c, sqlite3_context* ctx, int col) {
  auto* cur = reinterpret_cast<JobsCursor*>(c);
  const cowbackup::sqlite::JobInfo& j = cur->rows[cur->pos];
  try {
    switch (col) {
      case kId: sqlite3_result_int64(ctx, sqlite3_int64(j.id)); break;
      case kSchema: ResultText(ctx, j.schema); break;
      case kDatabase: ResultText(ctx, j.database); break;
      case kDestination: ResultText(ctx, j.destination); break;
      case kState: sqlite3_result_text(ctx, JobStateName(j.summary.state), -1, SQLITE_STATIC); break;
      case kPagesTotal: sqlite3_result_int64(ctx, sqlite3_int64(j.summary.progress.pages_total)); break;
      case kPagesDone: sqlite3_result_int64(ctx, sqlite3_int64(j.summary.progress.pages_done)); break;
      case kPagesPreserved:
        sqlite3_result_int64(ctx, sqlite3_int64(j.summary.progress.pages_preserved));
        break;
      case kBytesWritten:
        sqlite3_result_int64(ctx, sqlite3_int64(j.summary.progress.bytes_written));
        break;
      case kStarted: ResultText(ctx, IsoTime(j.started_unix_ms)); break;
      case kFinished:
        if (j.finished_unix_ms != 0) ResultText(ctx, IsoTime(j.finished_unix_ms));
        break;  // NULL while running
      case kError:
        // A message, escaped as cowbackup()'s errors are; database and
        // destination stay the exact paths the application gave.
        if (!j.summary.error.empty()) ResultText(ctx, TerminalSafe(j.summary.error));
        break;
      case kOwnerPid: sqlite3_result_int64(ctx, j.owner_pid); break;
      case kPaceMb:
        // Automatic pacing's limit now (MB/s); 0 at full speed, or off.
        sqlite3_result_double(ctx, j.summary.progress.pace_mb);
        break;
    }
  } catch (...) {
    sqlite3_result_error_nomem(ctx);
  }
  return SQLITE_OK;
}

int JobsRowid(sqlite3_vtab_cursor* c, sqlite3_int64* rowid) {
  auto* cur = reinterpret_cast<JobsCursor*>(c);
  *rowid = sqlite3_int64(cur->rows[cur->pos].id);
  return SQLITE_OK;
}

sqlite3_module MakeModule() {
  sqlite3_module m;
  memset(&m, 0, sizeof m);
  m.iVersion = 0;
  m.xCreate = nullptr;  // eponymous only: CREATE VIRTUAL TABLE is refused
  m.xConnect = JobsConnect;
  m.xBestIndex = JobsBestIndex;
  m.xDisconnect = JobsDisconnect;
  m.xDestroy = nullptr;
  m.xOpen = JobsOpen;
  m.xClose = JobsClose;
  m.xFilter = JobsFilter;
  m.xNext = JobsNext;
  m.xEof = JobsEof;
  m.xColumn = JobsColumn;
  m.xRowid = JobsRowid;
  return m;
}
const sqlite3_module kJobsModule = MakeModule();

}  // namespace

int RegisterJobsTable(sqlite3* db) {
  return sqlite3_create_module(db, "cowbackup_jobs", &kJobsModule, nullptr);
}

}  // namespace cowbackup::sql
