// A process that runs SQL on a SQLite database through the plain unix VFS,
// one statement list per line of standard input: the foreign writer of the
// WAL-mode tests (sqlite_wal_foreign_test). Nothing of cowbackup is linked
// in, so its commits, checkpoints and journal-mode switches bypass the
// shim exactly as another application's would.
//
//   foreign_sqlite DB
//   > UPDATE t SET v = 1 WHERE id = 3
//   < ok
//   > PRAGMA wal_checkpoint(PASSIVE)
//   < row 0|12|12
//   < ok
//   > SELECT nope
//   < error no such column: nope
//
// Each row of a result is "row " and its columns joined by '|'; each line
// of input ends with "ok" or "error MESSAGE". Output is flushed after each
// line, so the caller can wait for it. EOF on stdin closes the database and
// exits 0.
#include <sqlite3.h>
#include <stdio.h>

// tests/preload builds it again with SQLite linked statically and the
// default VFS (nullptr): a program the preload library cannot reach.
#ifndef FOREIGN_SQLITE_VFS
#define FOREIGN_SQLITE_VFS "unix"
#endif

#include <iostream>
#include <string>

namespace {

int PrintRow(void*, int n, char** values, char**) {
  std::string line = "row ";
  for (int i = 0; i < n; i++) {
    if (i > 0) line += '|';
    line += values[i] != nullptr ? values[i] : "NULL";
  }
  std::cout << line << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: foreign_sqlite DB\n";
    return 2;
  }
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, FOREIGN_SQLITE_VFS) != SQLITE_OK) {
    std::cerr << "open " << argv[1] << ": " << sqlite3_errmsg(db) << "\n";
    return 3;
  }
  sqlite3_busy_timeout(db, 10000);
  for (std::string sql; std::getline(std::cin, sql);) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), PrintRow, nullptr, &err) == SQLITE_OK) {
      std::cout << "ok" << std::endl;
    } else {
      std::cout << "error " << (err != nullptr ? err : sqlite3_errmsg(db)) << std::endl;
    }
    sqlite3_free(err);
  }
  sqlite3_close(db);
  return 0;
}
