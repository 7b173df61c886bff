// The process crash_test kills: writer connections committing through the
// shim while backups of the same database run back to back, until SIGKILL.
//
//   crash_child DB DEST SEED REPORT_FD VARIANT FORMAT [KILL_POINT KILL_AT]
//
// VARIANT is snapshot_first or overlay_at_end, FORMAT archive or plain (the
// scenario, chosen by crash_test); SEED only paces the writers and picks
// the segment size. The journal mode is the database's (crash_test makes
// it rollback or WAL).
//
// Each writer commits the committed-prefix transaction (log row n+1,
// counter (n, sum)) and, after COMMIT returns, writes "C <n>\n" to
// REPORT_FD (one write of less than PIPE_BUF: atomic). Each finished backup
// writes "B <status>\n".
//
// In WAL mode the writers also checkpoint: after every 8th commit of the
// process, the committing writer runs an explicit checkpoint, PASSIVE,
// FULL, RESTART and TRUNCATE in turn (a failed one writes "X <error>\n");
// there is no automatic checkpoint. So backfills and WAL restarts preserve
// pages during the backups, and which thread preserves tells which: a
// writer inside its checkpoint a backfill (or TRUNCATE's cut), any other
// writer a restart writing over T0's frames. Commits and checkpoints take
// turns under a mutex, out of SQLite 3.40's WAL-reset bug (docs/SQLITE.md).
//
// KILL_POINT NAME[@ROLE] and KILL_AT K[/J]: the process stops itself
// (SIGSTOP; crash_test then SIGKILLs it, after looking at what it holds) at
// the K-th time the engine sync point NAME is reached, so crashes land
// exactly before publishing, while a writer preserves a page, etc. ROLE
// (writer or checkpoint) counts only hits on such a thread; /J only the
// J-th hit within one backup (J = 1 at FileState::LockWal:locked is T0's
// lock, not the end check's).
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cowbackup/sqlite.hpp"
#include "engine/sync_point.h"

namespace {

int g_report_fd = -1;
bool g_wal = false;
std::mutex g_turn_mu;  // WAL mode: commits and checkpoints take turns
std::atomic<int64_t> g_commits{0};
std::atomic<long> g_backup_hits{0};  // hits of the kill point in the current backup

enum class Role { kOther, kWriter, kCheckpoint };
thread_local Role t_role = Role::kOther;

void Report(const std::string& line) {
  const std::string l = line + "\n";
  if (::write(g_report_fd, l.data(), l.size()) != ssize_t(l.size())) _exit(3);
}

int Exec(sqlite3* db, const char* sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
}

void Checkpoint(sqlite3* db, int64_t n) {
  static constexpr int kModes[] = {SQLITE_CHECKPOINT_PASSIVE, SQLITE_CHECKPOINT_FULL,
                                   SQLITE_CHECKPOINT_RESTART, SQLITE_CHECKPOINT_TRUNCATE};
  t_role = Role::kCheckpoint;
  const int mode = kModes[n / 8 % 4];
  if (sqlite3_wal_checkpoint_v2(db, "main", mode, nullptr, nullptr) != SQLITE_OK) {
    Report("X checkpoint mode " + std::to_string(mode) + ": " + sqlite3_errmsg(db));
  }
  t_role = Role::kWriter;
}

void Writer(const std::string& path, int id, unsigned seed) {
  t_role = Role::kWriter;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) _exit(4);
  sqlite3_busy_timeout(db, 30000);
  if (g_wal) Exec(db, "PRAGMA wal_autocheckpoint = 0");
  const std::string commit =
      "BEGIN IMMEDIATE;"
      "INSERT INTO log SELECT n + 1, " + std::to_string(id) + ", randomblob(50) FROM counter WHERE id = 1;"
      "UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1;"
      "UPDATE filler SET data = randomblob(length(data)) WHERE id = abs(random()) % 2000 + 1;";
  sqlite3_stmt* read_n = nullptr;
  sqlite3_prepare_v2(db, "SELECT n FROM counter WHERE id = 1", -1, &read_n, nullptr);
  for (unsigned i = 0;; i++) {
    std::unique_lock<std::mutex> turn(g_turn_mu, std::defer_lock);
    if (g_wal) turn.lock();
    if (Exec(db, commit.c_str()) != SQLITE_OK) {
      Exec(db, "ROLLBACK");
      continue;
    }
    int64_t n = -1;
    if (sqlite3_step(read_n) == SQLITE_ROW) n = sqlite3_column_int64(read_n, 0);
    sqlite3_reset(read_n);
    if (Exec(db, "COMMIT") != SQLITE_OK) {
      Exec(db, "ROLLBACK");
      continue;
    }
    Report("C " + std::to_string(n));
    if (g_wal) {
      const int64_t commits = g_commits.fetch_add(1) + 1;
      if (commits % 8 == 0) Checkpoint(db, commits);
    }
    if (turn.owns_lock()) turn.unlock();
    if ((i + seed) % 4 == 0) usleep(200);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* const usage =
      "usage: crash_child DB DEST SEED REPORT_FD snapshot_first|overlay_at_end archive|plain "
      "[KILL_POINT[@writer|@checkpoint] KILL_AT[/J]]\n";
  if (argc != 7 && argc != 9) {
    fputs(usage, stderr);
    return 2;
  }
  const std::string db_path = argv[1], dest = argv[2], variant = argv[5], format = argv[6];
  const unsigned seed = unsigned(strtoul(argv[3], nullptr, 10));
  g_report_fd = atoi(argv[4]);
  if ((variant != "snapshot_first" && variant != "overlay_at_end") ||
      (format != "archive" && format != "plain")) {
    fputs(usage, stderr);
    return 2;
  }
  alarm(120);  // never outlive a broken parent
  if (argc == 9) {
    static std::string point = argv[7];
    static Role role = Role::kOther;  // kOther: any thread
    const size_t at = point.find('@');
    if (at != std::string::npos) {
      const std::string r = point.substr(at + 1);
      if (r != "writer" && r != "checkpoint") {
        fputs(usage, stderr);
        return 2;
      }
      role = r == "writer" ? Role::kWriter : Role::kCheckpoint;
      point.resize(at);
    }
    char* end = nullptr;
    static const long kill_at = strtol(argv[8], &end, 10);
    static const long in_backup = *end == '/' ? strtol(end + 1, nullptr, 10) : 0;
    static std::atomic<long> hits{0};
    cowbackup::sync::SetCallback([](const char* name) {
      if (point != name || (role != Role::kOther && t_role != role)) return;
      if (in_backup != 0 && g_backup_hits.fetch_add(1) + 1 != in_backup) return;
      if (hits.fetch_add(1) + 1 == kill_at) raise(SIGSTOP);
    });
  }
  if (!cowbackup::sqlite::RegisterVfs(true).ok()) return 5;

  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) return 6;
  sqlite3_stmt* mode = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &mode, nullptr) != SQLITE_OK) return 7;
  g_wal = sqlite3_step(mode) == SQLITE_ROW &&
          strcmp(reinterpret_cast<const char*>(sqlite3_column_text(mode, 0)), "wal") == 0;
  sqlite3_finalize(mode);

  std::vector<std::thread> writers;
  for (int w = 0; w < 4; w++) writers.emplace_back(Writer, db_path, w, seed);

  cowbackup::BackupOptions options;
  options.overwrite = true;
  options.segment_pages = 8 + seed % 32;
  options.max_rate_mb = 40;  // ~50 ms a backup: room for writers to collide
  options.variant = variant == "overlay_at_end" ? cowbackup::Variant::kOverlayAtEnd
                                                : cowbackup::Variant::kSnapshotFirst;
  options.format = format == "plain" ? cowbackup::BackupOptions::Format::kPlain
                                     : cowbackup::BackupOptions::Format::kArchive;
  for (;;) {
    g_backup_hits = 0;  // T0 and the end check run on this thread, inside Backup()
    cowbackup::Summary summary;
    const cowbackup::Status s = cowbackup::sqlite::Backup(db, "main", dest, options, &summary);
    Report(std::string("B ") + (s.ok() ? "ok" : s.ToString()));
  }
}
