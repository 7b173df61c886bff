// `make demo`: the main job end to end.
//
//   cowbackup_demo EXTENSION WORKDIR [SIZE_MB]
//
// Builds a sample database, keeps writer threads committing (each commit
// appends seq = n+1 to a log and adds it to a counter row), takes a hot
// backup with SELECT cowbackup() through the loaded extension, restores
// it, checks PRAGMA integrity_check and the committed-prefix invariant, and
// prints pages copied, pre-images preserved, writer throughput and the
// longest commit stall during the backup.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backup/restore.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "cowbackup demo: %s\n", what.c_str());
  std::exit(1);
}

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    Die(sql.substr(0, 60) + ": " + (err ? err : "?"));
  }
}

std::string Query(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) Die(sqlite3_errmsg(db));
  std::string out;
  const int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_text(st, 0)) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    std::string e = sqlite3_errmsg(db);
    sqlite3_finalize(st);
    Die(e);
  }
  sqlite3_finalize(st);
  return out;
}

sqlite3* Open(const std::string& path, const char* vfs = nullptr) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) != SQLITE_OK) {
    Die("open " + path);
  }
  sqlite3_busy_timeout(db, 30000);
  return db;
}

struct Writers {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> started{0}, finished{0};
  std::atomic<bool> measuring{false};
  std::mutex mu;
  double max_stall_ms = 0;  // GUARDED_BY(mu), while measuring
};

void WriterLoop(Writers* w, const std::string& path, int rows) {
  sqlite3* db = Open(path);
  while (!w->stop) {
    w->started++;
    const auto t0 = Clock::now();
    Exec(db, "BEGIN IMMEDIATE;"
             "INSERT INTO log SELECT n + 1, randomblob(50) FROM counter WHERE id = 1;"
             "UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1;"
             "UPDATE filler SET data = randomblob(length(data)) WHERE id = abs(random()) % " +
                 std::to_string(rows) + " + 1;"
             "COMMIT;");
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    w->finished++;
    if (w->measuring) {
      std::lock_guard<std::mutex> lock(w->mu);
      w->max_stall_ms = std::max(w->max_stall_ms, ms);
    }
  }
  sqlite3_close(db);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) Die("usage: cowbackup_demo EXTENSION WORKDIR [SIZE_MB]");
  const std::string ext = argv[1], dir = argv[2];
  const int size_mb = argc > 3 ? std::atoi(argv[3]) : 64;
  const int rows = size_mb * 256;  // 4 KiB rows
  const std::string path = dir + "/live.db", archive = dir + "/live.cowbak",
                    restored = dir + "/restored.db";

  // Load the extension: from now on connections go through the shim.
  sqlite3* boot = Open(":memory:");
  sqlite3_enable_load_extension(boot, 1);
  char* err = nullptr;
  if (sqlite3_load_extension(boot, ext.c_str(), nullptr, &err) != SQLITE_OK) {
    Die(std::string("load ") + ext + ": " + (err ? err : "?"));
  }
  sqlite3_close(boot);

  std::printf("1. building a %d MB sample database: %s\n", size_mb, path.c_str());
  sqlite3* db = Open(path);
  Exec(db, "PRAGMA journal_mode=DELETE;"
           "CREATE TABLE log(seq INTEGER PRIMARY KEY, pad BLOB);"
           "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INT, sum INT);"
           "INSERT INTO counter VALUES(1, 0, 0);"
           "CREATE TABLE filler(id INTEGER PRIMARY KEY, data BLOB);"
           "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < " +
               std::to_string(rows) + ") INSERT INTO filler SELECT i, randomblob(3900) FROM c;");

  std::printf("2. starting 2 writer threads (one commit = log row + counter + a random 4 KiB row)\n");
  Writers w;
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; i++) threads.emplace_back(WriterLoop, &w, path, rows);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int64_t c0 = w.finished;
  auto t0 = Clock::now();
  w.measuring = true;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  w.measuring = false;
  const double base_tps = double(w.finished - c0) /
                          std::chrono::duration<double>(Clock::now() - t0).count();
  double base_stall_ms;
  {
    std::lock_guard<std::mutex> lock(w.mu);
    base_stall_ms = w.max_stall_ms;
  }

  std::printf("3. hot backup: SELECT cowbackup('%s')\n", archive.c_str());
  {
    std::lock_guard<std::mutex> lock(w.mu);
    w.max_stall_ms = 0;
  }
  const int64_t lo = w.finished;
  c0 = w.finished;
  w.measuring = true;
  t0 = Clock::now();
  const std::string summary = Query(db, "SELECT cowbackup('" + archive + "', 'main', '{\"overwrite\":true}')");
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  w.measuring = false;
  const int64_t hi = w.started;
  const double during_tps = double(w.finished - c0) / secs;
  w.stop = true;
  for (auto& t : threads) t.join();
  std::printf("   %s\n", summary.c_str());

  std::printf("4. restoring %s -> %s\n", archive.c_str(), restored.c_str());
  cowbackup::Status s = cowbackup::RestoreArchive(archive, restored, /*force=*/true);
  if (!s.ok()) Die("restore: " + s.ToString());

  std::printf("5. checking the restored copy\n");
  sqlite3* r = Open(restored, "unix");
  const std::string integrity = Query(r, "PRAGMA integrity_check");
  const int64_t k = std::atoll(Query(r, "SELECT count(*) FROM log").c_str());
  const bool prefix =
      Query(r, "SELECT (SELECT count(*) = coalesce(max(seq), 0) AND coalesce(min(seq), 1) = 1 FROM log) "
               "AND n = " + std::to_string(k) + " AND sum = " + std::to_string(k * (k + 1) / 2) +
               " FROM counter") == "1";
  sqlite3_close(r);
  sqlite3_close(db);

  auto field = [&](const char* key) {
    const size_t at = summary.find(std::string("\"") + key + "\":");
    return at == std::string::npos ? std::string("?")
                                   : summary.substr(at + strlen(key) + 3,
                                                    summary.find_first_of(",}", at) - at - strlen(key) - 3);
  };
  std::printf("\n");
  std::printf("  pages copied              %s (page size %s)\n", field("pages").c_str(), field("page_size").c_str());
  std::printf("  pre-images preserved      %s\n", field("preserved_pages").c_str());
  std::printf("  backup time               %.2f s\n", secs);
  std::printf("  writer throughput         %.0f commits/s before, %.0f commits/s during (%.0f%%)\n",
              base_tps, during_tps, base_tps > 0 ? 100 * during_tps / base_tps : 0);
  std::printf("  longest commit            %.1f ms during the backup (%.1f ms in the second before)\n",
              w.max_stall_ms, base_stall_ms);
  std::printf("  integrity_check           %s\n", integrity.c_str());
  std::printf("  committed prefix          1..%lld (%s; commits finished before the call %lld, begun by its end %lld)\n",
              (long long)k, prefix && k >= lo && k <= hi ? "ok" : "BROKEN", (long long)lo, (long long)hi);
  const bool ok = integrity == "ok" && prefix && k >= lo && k <= hi;
  std::printf("\n%s\n", ok ? "demo: OK" : "demo: FAILED");
  return ok ? 0 : 1;
}
