// The process crash_test kills: writer connections committing through the
// shim while backups of the same database run back to back, until SIGKILL.
//
//   crash_child DB DEST SEED REPORT_FD VARIANT FORMAT [KILL_POINT KILL_AT]
//
// VARIANT is snapshot_first or overlay_at_end, FORMAT archive or plain (the
// scenario, chosen by crash_test); SEED only paces the writers and picks
// the segment size.
//
// Each writer commits the committed-prefix transaction (log row n+1,
// counter (n, sum)) and, after COMMIT returns, writes "C <n>\n" to
// REPORT_FD (one write of less than PIPE_BUF: atomic). Each finished backup
// writes "B <status>\n". With KILL_POINT, the process kills itself at the
// KILL_AT-th time an engine sync point of that name is reached, so crashes
// land exactly before publishing, while a writer preserves a page, etc.
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cowbackup/sqlite.hpp"
#include "engine/sync_point.h"

namespace {

int g_report_fd = -1;

void Report(const std::string& line) {
  const std::string l = line + "\n";
  if (::write(g_report_fd, l.data(), l.size()) != ssize_t(l.size())) _exit(3);
}

int Exec(sqlite3* db, const char* sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
}

void Writer(const std::string& path, int id, unsigned seed) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) _exit(4);
  sqlite3_busy_timeout(db, 30000);
  const std::string commit =
      "BEGIN IMMEDIATE;"
      "INSERT INTO log SELECT n + 1, " + std::to_string(id) + ", randomblob(50) FROM counter WHERE id = 1;"
      "UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1;"
      "UPDATE filler SET data = randomblob(length(data)) WHERE id = abs(random()) % 2000 + 1;";
  sqlite3_stmt* read_n = nullptr;
  sqlite3_prepare_v2(db, "SELECT n FROM counter WHERE id = 1", -1, &read_n, nullptr);
  for (unsigned i = 0;; i++) {
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
    if ((i + seed) % 4 == 0) usleep(200);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* const usage =
      "usage: crash_child DB DEST SEED REPORT_FD snapshot_first|overlay_at_end archive|plain "
      "[KILL_POINT KILL_AT]\n";
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
    static const long kill_at = strtol(argv[8], nullptr, 10);
    static std::atomic<long> hits{0};
    cowbackup::sync::SetCallback([](const char* name) {
      if (point == name && hits.fetch_add(1) + 1 == kill_at) raise(SIGKILL);
    });
  }
  if (!cowbackup::sqlite::RegisterVfs(true).ok()) return 5;

  std::vector<std::thread> writers;
  for (int w = 0; w < 4; w++) writers.emplace_back(Writer, db_path, w, seed);

  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) return 6;
  cowbackup::BackupOptions options;
  options.overwrite = true;
  options.segment_pages = 8 + seed % 32;
  options.max_rate_mb = 40;  // ~50 ms a backup: room for writers to collide
  options.variant = variant == "overlay_at_end" ? cowbackup::Variant::kOverlayAtEnd
                                                : cowbackup::Variant::kSnapshotFirst;
  options.format = format == "plain" ? cowbackup::BackupOptions::Format::kPlain
                                     : cowbackup::BackupOptions::Format::kArchive;
  for (;;) {
    cowbackup::Summary summary;
    const cowbackup::Status s = cowbackup::sqlite::Backup(db, "main", dest, options, &summary);
    Report(std::string("B ") + (s.ok() ? "ok" : s.ToString()));
  }
}
