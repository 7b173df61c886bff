// What `verify --deep` runs on a restored copy, beyond the archive's own
// checksums: does the database engine itself accept the pages?
//
//   SQLite: PRAGMA integrity_check on the restored file, opened read-only.
//   LMDB:   a full cursor walk of the main database and of every named
//           database found in it, each count checked against mdb_stat.
//
// LMDB trusts its pages (a damaged branch page can crash a cursor), so the
// walk runs in a forked child: a crash there is reported as damage, never
// taken down with the tool.
#pragma once

#include <cstdint>
#include <string>

#include "cowbackup/status.h"

namespace cowbackup::cli {

struct DeepResult {
  std::string check;       // "sqlite integrity_check" or "lmdb cursor walk"
  uint64_t databases = 0;  // LMDB: main + named databases walked
  uint64_t entries = 0;    // LMDB: key/data items seen; SQLite: 0
};

// Status::Corruption naming the first problem the engine reports.
Status CheckSqliteDatabase(const std::string& db_path, DeepResult* result);
// `env_dir` holds data.mdb.
Status CheckLmdbEnvironment(const std::string& env_dir, DeepResult* result);

}  // namespace cowbackup::cli
