// A writer process of the multi-process tests (issue 12), through the
// embedded API: the C++ twin of tests/sqlite/mp_writer.py, with the same
// command line, commands and report lines, so a test can mix them freely.
//
//   mp_writer shim|unix DB ID MODE JOURNAL [KILL_POINT KILL_AT]
//
// shim: cowbackup::sqlite::RegisterVfs() makes the shim the default VFS
// before the database is opened, so this process takes part in backups
// (a participant); unix: the plain unix VFS, nothing of cowbackup (a
// non-participant). MODE:
//   commit  one thread commits the committed-prefix transaction
//           (sqlite_test_util.h's workload: log row n+1, counter (n, sum),
//           and four random filler rows rewritten so that pages all over
//           the file change), pausing 1 ms between commits so the writers
//           of several processes share SQLite's lock fairly;
//   spill   one thread runs a transaction that rewrites 200 filler rows
//           with the marker "SPIL" repeated, with cache_size 8, so SQLite
//           spills them into the database file, holds them there ~5 ms,
//           and rolls back; over and over. Nothing is ever committed.
//   idle    (C++ only) no thread writes; the test commands every write
//           (commit, checkpoint below), so it knows when each happened.
// JOURNAL: delete, truncate or persist (the connection's journal_mode; a
// connection setting, not the file's), or wal (the file is WAL already).
//
// Standard input, one command a line:
//   backup DEST FORMAT VARIANT MAX_RATE_MB SEGMENT_PAGES
//           a backup from this process (cowbackup::sqlite::Backup) on a
//           second connection, while the writer thread goes on
//   commit N          idle mode: N committed-prefix transactions, each
//                     reported as the writer thread's are
//   checkpoint MODE   idle mode: PRAGMA wal_checkpoint(MODE) (PASSIVE,
//                     FULL, RESTART, TRUNCATE); "K" is written
//   stop    the writer thread ends; "S" is written; exit 0 (also at EOF)
// Standard output, one line each (CLOCK_MONOTONIC nanoseconds, the clock
// of steady_clock and of python's time.monotonic_ns(), so every process
// of a test reads the same clock):
//   R PID                              ready: the database is open
//   C SEQ T_BEGIN T_LOCKED T_END       committed SEQ: before BEGIN
//                                      IMMEDIATE, after it returned (the
//                                      write lock held), after COMMIT returned
//   P N T_BEGIN T_LOCKED T_END         spill mode: the N-th transaction
//                                      spilled and rolled back
//   E MESSAGE                          a transaction failed
//   B T_CALL T_RETURN ok SUMMARY_JSON  a backup returned
//   B T_CALL T_RETURN error MESSAGE
//   K BUSY LOG CHECKPOINTED            a checkpoint returned (its three
//                                      columns)
//   S                                  stopped
//
// KILL_POINT NAME and KILL_AT K (crash_child.cc's): the process stops
// itself (SIGSTOP) at the K-th time the engine sync point NAME is reached
// on the writer thread, so the test can SIGKILL it exactly there (e.g.
// "CopyJob::preserve:read": holding pages it claimed in a job another
// process owns, mid-preservation).
#include <signal.h>
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "cowbackup/sqlite.hpp"
#include "test_util/mp_writer_io.h"

namespace {

using namespace cowbackup::test::mp_writer;

// Runs `sql`; "" or the error.
std::string Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = rc == SQLITE_OK ? "" : (err ? err : sqlite3_errstr(rc));
  sqlite3_free(err);
  return msg;
}

int64_t QueryInt(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return v;
}

sqlite3* OpenDb(const std::string& path, bool shim, const std::string& journal) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, shim ? nullptr : "unix") != SQLITE_OK) {
    std::cerr << "mp_writer: open " << path << ": " << sqlite3_errmsg(db) << "\n";
    _exit(4);
  }
  sqlite3_busy_timeout(db, 30000);
  // SIGKILL, not power loss, is what these tests do: the page cache keeps
  // every write, and the machine's disk is shared with other work.
  std::string e = Exec(db, "PRAGMA synchronous = OFF");
  if (e.empty() && journal != "wal") e = Exec(db, "PRAGMA journal_mode = " + journal);
  if (!e.empty()) {
    std::cerr << "mp_writer: " << e << "\n";
    _exit(4);
  }
  return db;
}

// The committed-prefix transaction's body for writer `id`.
std::string CommitBody(sqlite3* db, int id) {
  const int64_t rows = QueryInt(db, "SELECT max(id) FROM filler");
  const std::string r = "abs(random()) % " + std::to_string(rows) + " + 1";
  return "INSERT INTO log SELECT n + 1, " + std::to_string(id) + ", randomblob(64) FROM counter WHERE id = 1;"
         "UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1;"
         "UPDATE filler SET data = randomblob(length(data)) WHERE id IN (" + r + ", " + r + ", " + r +
         ", " + r + ");";
}

// One committed-prefix transaction, reported ("C" or "E").
void CommitOnce(sqlite3* db, const std::string& body) {
  const int64_t t_begin = NowNs();
  std::string e = Exec(db, "BEGIN IMMEDIATE");
  const int64_t t_locked = NowNs();
  int64_t seq = -1;
  if (e.empty()) e = Exec(db, body);
  if (e.empty() && (seq = QueryInt(db, "SELECT n FROM counter WHERE id = 1")) < 0) e = "no counter";
  if (e.empty()) e = Exec(db, "COMMIT");
  const int64_t t_end = NowNs();
  if (!e.empty()) {
    Exec(db, "ROLLBACK");
    Say("E " + OneLine(e));
  } else {
    Say("C " + std::to_string(seq) + " " + std::to_string(t_begin) + " " + std::to_string(t_locked) + " " +
        std::to_string(t_end));
  }
}

void Committer(sqlite3* db, int id) {
  const std::string body = CommitBody(db, id);
  while (!g_stop.load()) {
    CommitOnce(db, body);
    usleep(1000);
  }
}

// "checkpoint MODE": PRAGMA wal_checkpoint(MODE), reported "K BUSY LOG CHECKPOINTED" or "E".
void Checkpoint(sqlite3* db, const std::string& mode) {
  sqlite3_stmt* st = nullptr;
  const std::string sql = "PRAGMA wal_checkpoint(" + mode + ")";
  std::string line;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    line = "K " + std::to_string(sqlite3_column_int64(st, 0)) + " " + std::to_string(sqlite3_column_int64(st, 1)) +
           " " + std::to_string(sqlite3_column_int64(st, 2));
  } else {
    line = "E checkpoint: " + OneLine(sqlite3_errmsg(db));
  }
  sqlite3_finalize(st);
  Say(line);
}

void Spiller(sqlite3* db) {
  const int64_t rows = QueryInt(db, "SELECT max(id) FROM filler");
  std::string e = Exec(db, "PRAGMA cache_size = 8");
  if (!e.empty()) Say("E " + OneLine(e));
  unsigned seed = unsigned(getpid());
  for (int64_t n = 1; !g_stop.load(); n++) {
    const int64_t first = 1 + int64_t(rand_r(&seed) % uint64_t(rows > 200 ? rows - 199 : 1));
    const int64_t t_begin = NowNs();
    e = Exec(db, "BEGIN IMMEDIATE");
    const int64_t t_locked = NowNs();
    if (e.empty()) {
      e = Exec(db, "UPDATE filler SET data = CAST(replace(hex(zeroblob(length(data) / 4)), '00', 'SPIL') "
                   "AS BLOB) WHERE id BETWEEN " + std::to_string(first) + " AND " +
                       std::to_string(first + 199));
    }
    usleep(5000);  // the spilled pages stay in the file a while
    const std::string r = Exec(db, "ROLLBACK");
    if (e.empty()) e = r;
    const int64_t t_end = NowNs();
    if (!e.empty()) {
      Say("E " + OneLine(e));
    } else {
      Say("P " + std::to_string(n) + " " + std::to_string(t_begin) + " " + std::to_string(t_locked) + " " +
          std::to_string(t_end));
    }
    usleep(2000);
  }
}

// "backup DEST FORMAT VARIANT MAX_RATE_MB SEGMENT_PAGES" on connection `db`.
void RunBackup(sqlite3* db, std::istringstream& args) {
  std::string dest, format, variant;
  double max_rate = 0;
  uint32_t segment_pages = 0;
  args >> dest >> format >> variant >> max_rate >> segment_pages;
  cowbackup::BackupOptions options;
  options.overwrite = true;
  options.format = format == "plain" ? cowbackup::BackupOptions::Format::kPlain
                                     : cowbackup::BackupOptions::Format::kArchive;
  options.variant = variant == "overlay_at_end" ? cowbackup::Variant::kOverlayAtEnd
                                                : cowbackup::Variant::kSnapshotFirst;
  options.max_rate_mb = max_rate;
  if (segment_pages > 0) options.segment_pages = segment_pages;
  options.busy_timeout_ms = 60000;  // writers of other processes are not held at the gate
  cowbackup::Summary summary;
  uint64_t job_id = 0;
  const int64_t t_call = NowNs();
  const cowbackup::Status s = cowbackup::sqlite::Backup(db, "main", dest, options, &summary, &job_id);
  const int64_t t_return = NowNs();
  Say("B " + std::to_string(t_call) + " " + std::to_string(t_return) +
      (s.ok() ? " ok " + cowbackup::sqlite::SummaryJson(summary, job_id) : " error " + OneLine(s.ToString())));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6 && argc != 8) {
    std::cerr << "usage: mp_writer shim|unix DB ID commit|spill|idle delete|truncate|persist|wal "
                 "[KILL_POINT KILL_AT]\n";
    return 2;
  }
  const bool shim = strcmp(argv[1], "shim") == 0;
  const std::string path = argv[2], mode = argv[4], journal = argv[5];
  const int id = atoi(argv[3]);
  alarm(900);  // never outlive a broken test (ctest's timeout)
  if (argc == 8) StopAt(argv[6], argv[7]);
  if (shim && !cowbackup::sqlite::RegisterVfs(/*make_default=*/true).ok()) return 5;
  sqlite3* db = OpenDb(path, shim, journal);
  Say("R " + std::to_string(getpid()));
  std::thread writer([db, id, mode] {
    t_writer = true;
    if (mode == "spill") {
      Spiller(db);
    } else if (mode == "commit") {
      Committer(db, id);
    }
  });
  sqlite3* backup_db = nullptr;
  for (std::string line; std::getline(std::cin, line);) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    if (command == "stop") break;
    if (command == "commit" && mode == "idle") {  // the writer thread is idle: this connection is ours
      static const std::string body = CommitBody(db, id);
      long n = 0;
      in >> n;
      for (long i = 0; i < n; i++) CommitOnce(db, body);
    }
    if (command == "checkpoint" && mode == "idle") {
      std::string how;
      in >> how;
      Checkpoint(db, how);
    }
    if (command == "backup") {
      if (backup_db == nullptr) backup_db = OpenDb(path, shim, journal);
      RunBackup(backup_db, in);
    }
  }
  g_stop = true;
  writer.join();
  sqlite3_close(backup_db);
  sqlite3_close(db);
  Say("S");
  return 0;
}
