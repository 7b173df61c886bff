// What a SOURCE argument names (backup, status), told from what is on disk:
// a SQLite database file, an LMDB environment directory, or the data file
// of an LMDB environment opened MDB_NOSUBDIR.
#pragma once

#include <string>

#include "cowbackup/status.h"

namespace cowbackup::cli {

enum class SourceKind {
  kSqlite,        // a regular file with SQLite's header, or empty
  kLmdbEnv,       // a directory holding data.mdb
  kLmdbDataFile,  // a regular file that begins with an LMDB meta page
};

// Looks at `source` (a FIFO is never opened, a file only read): an error
// says what it is instead. A file named data.mdb is its environment's
// (the error says to give the directory), not an MDB_NOSUBDIR data file.
Status DetectSource(const std::string& source, SourceKind* kind);

}  // namespace cowbackup::cli
