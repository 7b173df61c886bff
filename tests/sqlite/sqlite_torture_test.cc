// Torture: writer threads on separate connections commit without pause
// while backups of two databases run at once, through SELECT cowbackup().
// Every restored copy must pass integrity_check and hold exactly a committed
// prefix 1..K, K between the commits finished before the call and the
// transactions begun when it returned.
//
// The backups run every scenario of
//
//   variant  snapshot_first | overlay_at_end
//   format   archive | plain
//   yield    yield_to_commits or not
//
// named "variant/format/yield" (e.g. "overlay_at_end/archive/yield"). Database
// a copies in 7-page segments (many boundaries), b in 64-page ones. In the
// normal build each database runs all eight (b in another order, so the two
// never run the same one at once): every scenario with both segment sizes.
// Sanitizer builds split the eight between a and b, four each, such that
// each database still sees both values of every dimension. COWBACKUP_LONG=1
// runs the lists three times.
#include <thread>
#include <vector>

#include "sqlite/sqlite_test_util.h"

namespace cowbackup::testing {
namespace {

constexpr int kFillerRows = 6000 / kScale;
constexpr int kFillerBytes = 3000;

struct Db {
  std::string path;
  CommitCounters commits;
  std::atomic<int> writer_errors{0};
  std::string first_error;
};

void Writer(Db* d, int id, const std::atomic<bool>* stop) {
  sqlite3* db = Open(d->path);
  std::string error;
  while (!stop->load()) {
    if (!CommitOne(db, id, kFillerRows, &d->commits, &error)) {
      if (d->writer_errors.fetch_add(1) == 0) d->first_error = error;
    }
  }
  sqlite3_close(db);
}

struct Scenario {
  const char* variant;  // as the "variant" option takes it
  const char* format;   // as the "format" option takes it
  bool yield;           // "yield_to_commits"

  std::string name() const {
    return std::string(variant) + "/" + format + "/" + (yield ? "yield" : "no_yield");
  }
  bool plain() const { return std::string(format) == "plain"; }
};

std::vector<Scenario> AllScenarios() {
  std::vector<Scenario> all;
  for (const char* variant : {"snapshot_first", "overlay_at_end"}) {
    for (const char* format : {"archive", "plain"}) {
      for (bool yield : {false, true}) all.push_back({variant, format, yield});
    }
  }
  return all;
}

struct BackupResult {
  std::string scenario, dest, error;
  bool plain = false;
  int64_t lo = 0, hi = 0;
  std::string summary;
};

void Backups(Db* d, const TempDir* dir, const std::string& tag, int segment_pages,
             const std::vector<Scenario>& scenarios, std::vector<BackupResult>* out) {
  sqlite3* db = Open(d->path);
  for (size_t i = 0; i < scenarios.size(); i++) {
    const Scenario& scenario = scenarios[i];
    BackupResult r;
    r.scenario = scenario.name();
    r.plain = scenario.plain();
    r.dest = *dir / (tag + "-" + std::to_string(i) + (r.plain ? ".db" : ".cowbak"));
    const std::string options = "{\"segment_pages\":" + std::to_string(segment_pages) +
                                ",\"variant\":\"" + scenario.variant +
                                "\",\"format\":\"" + scenario.format +
                                // Throttled so each backup lasts ~0.3-0.6 s and
                                // writers overwrite uncopied pages even on a
                                // loaded machine under sanitizers (an
                                // unthrottled backup once finished first,
                                // 3 times in 40 ASan runs).
                                "\",\"max_rate_mb\":" + (kScale == 1 ? "60" : "8") +
                                (scenario.yield ? ",\"yield_to_commits\":true" : "") + "}";
    r.lo = d->commits.finished.load();
    r.summary = Query(db, "SELECT cowbackup(" + Quote(r.dest) + ", 'main', " + Quote(options) + ")",
                      &r.error);
    r.hi = d->commits.started.load();
    out->push_back(r);
  }
  sqlite3_close(db);
}

TEST(SqliteTorture, ConcurrentWritersAndBackupsGiveCommittedPrefixes) {
  LoadExtension();
  TempDir dir;
  Db a, b;
  a.path = dir / "a.db";
  b.path = dir / "b.db";
  for (Db* d : {&a, &b}) {
    sqlite3* db = Open(d->path);
    CreateWorkload(db, kFillerRows, kFillerBytes);
    sqlite3_close(db);
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int i = 0; i < 4; i++) writers.emplace_back(Writer, &a, i, &stop);
  for (int i = 0; i < 2; i++) writers.emplace_back(Writer, &b, 10 + i, &stop);
  // Let the writers get going before the first T0.
  while (a.commits.finished.load() < 20 || b.commits.finished.load() < 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::vector<Scenario> list_a, list_b;
  const std::vector<Scenario> all = AllScenarios();
  const int passes = LongRun() ? 3 : 1;
  for (int pass = 0; pass < passes; pass++) {
    for (size_t i = 0; i < all.size(); i++) {
      if (kScale == 1) {
        list_a.push_back(all[i]);
        list_b.push_back(all[(i + all.size() / 2) % all.size()]);
      } else {
        // Even parity of the index bits (variant, format, yield) to a: half
        // the product, in which every value of every dimension occurs.
        (__builtin_parity(unsigned(i)) == 0 ? list_a : list_b).push_back(all[i]);
      }
    }
  }
  std::vector<BackupResult> results_a, results_b;
  std::thread ta(Backups, &a, &dir, "a", 7, list_a, &results_a);
  std::thread tb(Backups, &b, &dir, "b", 64, list_b, &results_b);
  ta.join();
  tb.join();
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_EQ(a.writer_errors.load(), 0) << a.first_error;
  EXPECT_EQ(b.writer_errors.load(), 0) << b.first_error;

  int64_t preserved_total = 0;
  for (const auto& [results, list] : {std::pair{&results_a, &list_a}, std::pair{&results_b, &list_b}}) {
    ASSERT_EQ(results->size(), list->size());
    for (const BackupResult& r : *results) {
      SCOPED_TRACE("scenario " + r.scenario + ", " + r.dest);
      ASSERT_EQ(r.error, "");
      EXPECT_NE(r.summary.find("\"state\":\"done\""), std::string::npos) << r.summary;
      EXPECT_EQ(Mode(r.dest), 0600u);
      std::string restored = r.dest;
      if (!r.plain) {
        restored = r.dest + ".restored.db";
        Status s = RestoreTo(r.dest, restored);
        ASSERT_TRUE(s.ok()) << s.ToString();
      }
      const int64_t k = CheckPrefix(restored, r.lo, r.hi);
      EXPECT_GE(k, 0) << r.summary;
      const size_t at = r.summary.find("\"preserved_pages\":");
      if (at != std::string::npos) preserved_total += std::stoll(r.summary.substr(at + 18));
    }
  }
  // The writers did overwrite uncopied pages: copy-on-write was exercised.
  EXPECT_GT(preserved_total, 0);
  std::printf("commits: a=%lld b=%lld, pre-images preserved in all backups: %lld\n",
              (long long)a.commits.finished.load(), (long long)b.commits.finished.load(),
              (long long)preserved_total);
}

}  // namespace
}  // namespace cowbackup::testing
