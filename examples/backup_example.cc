// A hot backup from an application that links SQLite itself, with the
// embedded API (no extension, no SQL):
//
//   backup_example DB ARCHIVE
//
// Registers the shim before opening the database, keeps a writer thread
// committing, takes a backup, prints its progress and summary.
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <cowbackup/sqlite.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s DB ARCHIVE\n", argv[0]);
    return 2;
  }
  // 1. The shim first: databases opened afterwards go through it.
  cowbackup::Status s = cowbackup::sqlite::RegisterVfs();
  if (!s.ok()) {
    std::fprintf(stderr, "backup_example: register: %s\n", s.ToString().c_str());
    return 1;
  }
  sqlite3* db = nullptr;
  if (sqlite3_open(argv[1], &db) != SQLITE_OK) return 1;
  sqlite3_exec(db,
               "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);"
               "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 5000) "
               "INSERT INTO t(v) SELECT randomblob(1000) FROM c;",
               nullptr, nullptr, nullptr);

  // 2. An application thread keeps writing on its own connection.
  std::atomic<bool> stop{false};
  std::atomic<int> commits{0};
  std::thread writer([&] {
    sqlite3* w = nullptr;
    sqlite3_open(argv[1], &w);
    sqlite3_busy_timeout(w, 5000);
    while (!stop) {
      if (sqlite3_exec(w, "UPDATE t SET v = randomblob(1000) WHERE id = abs(random()) % 5000 + 1",
                       nullptr, nullptr, nullptr) == SQLITE_OK) {
        commits++;
      }
    }
    sqlite3_close(w);
  });

  // 3. Start, watch, wait.
  cowbackup::BackupOptions options;
  options.overwrite = true;
  options.max_rate_mb = 20;  // so there is something to watch
  uint64_t id = 0;
  s = cowbackup::sqlite::StartBackup(db, "main", argv[2], options, &id);
  if (s.ok()) {
    cowbackup::sqlite::JobInfo info;
    while (cowbackup::sqlite::GetJob(id, &info).ok() &&
           info.summary.state == cowbackup::JobState::kRunning) {
      std::printf("job %llu: %llu/%llu pages, %llu preserved\n", (unsigned long long)id,
                  (unsigned long long)info.summary.progress.pages_done,
                  (unsigned long long)info.summary.progress.pages_total,
                  (unsigned long long)info.summary.progress.pages_preserved);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    cowbackup::Summary summary;
    s = cowbackup::sqlite::WaitBackup(id, &summary);
    std::printf("%s\n", cowbackup::sqlite::SummaryJson(summary, id).c_str());
  }
  stop = true;
  writer.join();
  std::printf("writer commits meanwhile: %d\n", commits.load());
  sqlite3_close(db);
  if (!s.ok()) {
    std::fprintf(stderr, "backup_example: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
