// Load: 8 writer connections over 4 databases and 2 attached databases,
// while 4 backups of the databases and 2 of the attached ones run over and
// over at the same time, through the embedded API. Runs under TSan in CI
// (label "tsan"): no data race, no deadlock (a watchdog aborts if no
// commit or backup progresses for 60 s), and every copy is consistent: its
// restore passes integrity_check and holds exactly a committed prefix 1..K,
// K between the commits finished before the backup began and those begun
// when it returned. A few seconds in CI; 60 s with COWBACKUP_LONG=1.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "backup/restore.h"
#include "cowbackup/sqlite.hpp"
#include "faults/page_workload.h"
#include "sqlite/sqlite_test_util.h"

namespace cowbackup::faults {
namespace {

using testing::CommittedPrefix;
using testing::Exec;


struct Db {
  std::string path;
  std::atomic<int64_t> started{0}, finished{0};
};

void Create(const std::string& path) {
  sqlite3* db = testing::Open(path, "unix");
  testing::CreateWorkload(db, 300, 1000);
  sqlite3_close(db);
}

TEST(LoadTest, EightWritersSixConcurrentBackupsStayConsistent) {
  ASSERT_TRUE(sqlite::RegisterVfs(/*make_default=*/false).ok());
  const std::string dir = MakeTempDir("cowbackup-load");
  const int seconds = LongRun() ? 60 : 4;
  // dbs[0..3]: the main databases; dbs[4..5]: attached to 0 and 1 as "aux".
  std::vector<std::unique_ptr<Db>> dbs;
  for (int i = 0; i < 6; i++) {
    dbs.push_back(std::make_unique<Db>());
    dbs[i]->path = dir + "/db" + std::to_string(i) + ".db";
    Create(dbs[i]->path);
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> progress{0};
  std::atomic<int64_t> commit_errors{0}, backups{0}, backup_errors{0};

  // Writers: 8 connections, two per main database; writers 0 and 1 also
  // commit into the attached database of theirs.
  std::vector<std::thread> threads;
  for (int w = 0; w < 8; w++) {
    threads.emplace_back([&, w] {
      const int main_db = w % 4;
      const int aux_db = w < 2 ? 4 + w : -1;
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(dbs[main_db]->path.c_str(), &db, SQLITE_OPEN_READWRITE,
                          sqlite::kVfsName) != SQLITE_OK) {
        commit_errors++;
        return;
      }
      sqlite3_busy_timeout(db, 30000);
      Exec(db, "PRAGMA synchronous = OFF");
      if (aux_db >= 0) Exec(db, "ATTACH '" + dbs[aux_db]->path + "' AS aux; PRAGMA aux.synchronous = OFF");
      for (int i = 0; !stop; i++) {
        const bool to_aux = aux_db >= 0 && i % 2;
        Db& target = *dbs[to_aux ? aux_db : main_db];
        const std::string s = to_aux ? "aux." : "";
        target.started++;
        const std::string e = Exec(db,
            "BEGIN IMMEDIATE;"
            "INSERT INTO " + s + "log SELECT n + 1, " + std::to_string(w) + ", randomblob(40) FROM " + s + "counter;"
            "UPDATE " + s + "counter SET n = n + 1, sum = sum + n + 1;"
            "UPDATE " + s + "filler SET data = randomblob(1000) WHERE id = abs(random()) % 300 + 1;"
            "COMMIT;");
        if (!e.empty()) {
          Exec(db, "ROLLBACK");
          commit_errors++;
          fprintf(stderr, "writer %d: commit failed: %s\n", w, e.c_str());
          break;
        }
        target.finished++;
        progress++;
      }
      sqlite3_close(db);
    });
  }

  // Backups: 4 of the main databases, 2 of the attached ones (schema aux,
  // through a connection that attached them).
  for (int b = 0; b < 6; b++) {
    threads.emplace_back([&, b] {
      const bool attached = b >= 4;
      const int owner = attached ? b - 4 : b;
      Db& target = *dbs[b];
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(dbs[owner]->path.c_str(), &db, SQLITE_OPEN_READWRITE, sqlite::kVfsName) !=
          SQLITE_OK) {
        backup_errors++;
        return;
      }
      sqlite3_busy_timeout(db, 30000);
      if (attached) {
        const std::string e = Exec(db, "ATTACH '" + target.path + "' AS aux");
        if (!e.empty()) {
          fprintf(stderr, "backup %d: attach: %s\n", b, e.c_str());
          backup_errors++;
          sqlite3_close(db);
          return;
        }
      }
      const std::string dest = dir + "/backup" + std::to_string(b) + ".cowbak";
      const std::string restored = dir + "/restored" + std::to_string(b) + ".db";
      BackupOptions options;
      options.overwrite = true;
      options.segment_pages = 8 << (b % 3);
      options.variant = b % 2 ? Variant::kOverlayAtEnd : Variant::kSnapshotFirst;
      options.busy_timeout_ms = 30000;
      for (int round = 0; !stop; round++) {
        const int64_t lo = target.finished.load();
        Summary summary;
        const Status s = sqlite::Backup(db, attached ? "aux" : "main", dest, options, &summary);
        const int64_t hi = target.started.load();
        if (!s.ok()) {
          backup_errors++;
          fprintf(stderr, "backup %d: %s\n", b, s.ToString().c_str());
          break;
        }
        const Status r = RestoreArchive(dest, restored, true);
        std::string why;
        const int64_t k = r.ok() ? CommittedPrefix(restored, &why) : -1;
        if (!r.ok() || k < lo || k > hi) {
          backup_errors++;
          fprintf(stderr, "backup %d round %d: restore %s, %s, K %lld not in [%lld, %lld]\n", b, round,
                  r.ToString().c_str(), why.c_str(), (long long)k, (long long)lo, (long long)hi);
        }
        backups++;
        progress++;
      }
      sqlite3_close(db);
    });
  }

  // Watchdog: a deadlock shows as no progress at all.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int64_t last = -1;
  auto last_change = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (progress != last) {
      last = progress;
      last_change = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_change > std::chrono::seconds(60)) {
      fprintf(stderr, "load test: no commit or backup finished for 60 s: deadlock\n");
      std::abort();
    }
  }
  stop = true;
  for (auto& t : threads) t.join();

  int64_t commits = 0;
  for (const auto& d : dbs) commits += d->finished;
  EXPECT_EQ(commit_errors.load(), 0);
  EXPECT_EQ(backup_errors.load(), 0);
  EXPECT_GE(backups.load(), 6) << "every backup thread should finish at least once";
  for (const auto& d : dbs) {
    std::string why;
    EXPECT_EQ(CommittedPrefix(d->path, &why), d->finished.load()) << d->path << ": " << why;
  }
  fprintf(stderr, "load: %d s, %lld commits by 8 writers, %lld consistent backups by 6 threads\n",
          seconds, (long long)commits, (long long)backups.load());
  if (!HasFailure()) RemoveTree(dir);
}

}  // namespace
}  // namespace cowbackup::faults
