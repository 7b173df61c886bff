// The eponymous virtual table cowbackup_jobs (see jobs_vtab.cc).
#pragma once

#include <sqlite3.h>

namespace cowbackup::sql {

// Registers the module on `db`; an SQLite result code.
int RegisterJobsTable(sqlite3* db);

}  // namespace cowbackup::sql
