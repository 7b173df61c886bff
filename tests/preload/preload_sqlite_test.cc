// The preload library's SQLite half (issue 13) with real, unmodified
// clients: nothing here loads the extension or links cowbackup, unless the
// test says so. Each writer runs under
// LD_PRELOAD=build/libcowbackup_preload.so, commits in a loop, and
// build/cowbackup backs the database up from a process of its own; the
// restored copy must be a committed prefix inside the window the writers'
// timings allow (multiprocess_harness.h), or, for writers that report no
// timings, between the commit counts read just before the call and just
// after it returned.
//
// Without the library every one of these writers is a non-participant and
// the backup fails with "a write bypassed the cowbackup shim"
// (sqlite_multiprocess_test, NonParticipantTest).
//
// Debian's python3 and sqlite3 cannot load an instrumented library, so the
// sanitizer builds skip this file.
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <memory>
#include <thread>

#include "sqlite/multiprocess_harness.h"

namespace cowbackup::testing::mp {
namespace {

constexpr int kRows = 2000;          // ~8 MB of filler
constexpr double kRateMb = 16.0;     // ~0.5 s a backup: commits land during it

std::string PreloadLib() { return BuildDir() + "/libcowbackup_preload.so"; }

Cli CliBackup(const std::string& db, const std::string& dest, const std::string& format,
              const std::string& dir) {
  char rate[32];
  snprintf(rate, sizeof rate, "%g", kRateMb);
  return RunCli({"backup", "--json", "--force", "--busy-timeout-ms", "60000", "--format", format,
                 "--max-rate-mb", rate, "--segment-pages", "16", db, dest},
                dir);
}

// The live database's commit count (a committed-prefix check of it, through
// the plain unix VFS, read-only); -1 after a failure.
int64_t CountNow(const std::string& db) {
  std::string why;
  const int64_t k = CommittedPrefix(db, &why);
  EXPECT_EQ(why, "") << db;
  return k;
}

bool WaitCount(const std::string& db, int64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (CountNow(db) >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a condition
  }
  return false;
}

class PreloadSqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kPythonUsable) GTEST_SKIP() << "sanitizer build: Debian's clients cannot load it";
    ::signal(SIGPIPE, SIG_IGN);
    struct stat st;
    ASSERT_EQ(::stat(PreloadLib().c_str(), &st), 0) << PreloadLib();
  }

  // A backup of `format` while the writers commit, restored: a committed
  // prefix in [lo, hi] from the counts read around the call. Returns
  // whether a commit landed during it.
  bool BackupByCountIsCommittedPrefix(const std::string& format, int i) {
    const int64_t lo = CountNow(db_);
    const std::string dest = dir_ / ("copy-" + std::to_string(i) + (format == "plain" ? ".db" : ".cbk"));
    const Cli c = CliBackup(db_, dest, format, dir_.path());
    const int64_t hi = CountNow(db_);
    EXPECT_TRUE(c.ok()) << c.err;
    if (!c.ok()) return false;
    const std::string restored = RestoreWithCli(dest, format == "plain", dir_.path());
    const int64_t k = CheckPrefix(restored, lo, hi);
    printf("%s backup: copy holds %lld commits, window [%lld, %lld], preserved_pages %lld\n",
           format.c_str(), (long long)k, (long long)lo, (long long)hi,
           (long long)JsonInt(c.out, "preserved_pages"));
    return hi > lo;
  }

  // The same with the windows the harness's writers report.
  void BackupByWindowIsCommittedPrefix(const std::vector<Writer*>& ws, const std::string& format, int i) {
    const std::string dest = dir_ / ("copy-" + std::to_string(i) + (format == "plain" ? ".db" : ".cbk"));
    const Cli c = CliBackup(db_, dest, format, dir_.path());
    ASSERT_TRUE(c.ok()) << c.err;
    // A commit of each writer begun after the return bounds the window.
    for (Writer* w : ws) EXPECT_TRUE(w->WaitCommits(w->commit_count() + 2));
    const Window win = CommitWindow(AllCommits(std::vector<const WriterProcess*>(ws.begin(), ws.end())), c.t_call, c.t_return);
    const std::string restored = RestoreWithCli(dest, format == "plain", dir_.path());
    const int64_t k = CheckPrefix(restored, win.lo, win.hi);
    printf("%s backup: copy holds %lld commits, window [%lld, %lld], preserved_pages %lld\n",
           format.c_str(), (long long)k, (long long)win.lo, (long long)win.hi,
           (long long)JsonInt(c.out, "preserved_pages"));
  }

  // `argv` under the preload library, stdin from `in_fd` (-1: /dev/null),
  // stdout and stderr to files of the test directory.
  pid_t StartUnderPreload(std::vector<std::string> argv, int in_fd) {
    argv.insert(argv.begin(), {"/usr/bin/env", "LD_PRELOAD=" + PreloadLib()});
    const int out = ::open((dir_ / "prog.out").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const int err = ::open((dir_ / "prog.err").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const pid_t pid = SpawnProgram(argv, in_fd, out, err);
    ::close(out);
    ::close(err);
    return pid;
  }
  int Wait(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
  }
  std::string ProgramErrors() { return ReadFile(dir_ / "prog.err"); }

  TempDir dir_{"cowbackup-preload"};
  std::string db_ = dir_ / "app.db";
};

// Debian's python3, the standard sqlite3 module, two writer processes, each
// with its committer thread (and python loads libsqlite3 with _sqlite3 on
// `import sqlite3`, after start).
TEST_F(PreloadSqliteTest, PythonWritersInRollbackModeAreBackedUpFromTheCli) {
  MakeWorkloadDb(db_, kRows);
  WriterSpec spec;
  spec.kind = WriterKind::kPython;
  spec.participant = false;  // nothing of cowbackup in the program
  spec.preload = true;
  Writer a(db_, 1, spec), b(db_, 2, spec);
  ASSERT_TRUE(a.WaitCommits(10));
  ASSERT_TRUE(b.WaitCommits(10));
  BackupByWindowIsCommittedPrefix({&a, &b}, "archive", 1);
  BackupByWindowIsCommittedPrefix({&a, &b}, "plain", 2);
  a.Stop();
  b.Stop();
  EXPECT_EQ(a.errors(), std::vector<std::string>{});
  EXPECT_EQ(b.errors(), std::vector<std::string>{});
  EXPECT_EQ(DistinctSeqs(AllCommits({&a, &b})), "");
}

// WAL mode: a preloaded writer process takes part in the CLI's WAL-mode
// job like any other (docs/SQLITE.md, "Writers in several processes").
TEST_F(PreloadSqliteTest, PythonWriterInWalModeTakesPartInTheBackup) {
  MakeWorkloadDb(db_, kRows, "wal");
  WriterSpec spec;
  spec.kind = WriterKind::kPython;
  spec.participant = false;
  spec.preload = true;
  spec.journal = "wal";
  Writer w(db_, 1, spec);
  ASSERT_TRUE(w.WaitCommits(10));
  const std::string dest = dir_ / "copy.cbk";
  const Cli c = CliBackup(db_, dest, "archive", dir_.path());
  ASSERT_TRUE(c.ok()) << c.err;
  EXPECT_TRUE(w.WaitCommits(w.commit_count() + 2));
  const Window win = CommitWindow(AllCommits({&w}), c.t_call, c.t_return);
  CheckPrefix(RestoreWithCli(dest, false, dir_.path()), win.lo, win.hi);
  w.Stop();
  EXPECT_EQ(w.errors(), std::vector<std::string>{});
}

// Debian's sqlite3 shell (linked to libsqlite3.so.0 at start), fed a script
// of transactions through a pipe until the test stops it.
TEST_F(PreloadSqliteTest, SqliteShellWritingFromAScript) {
  MakeWorkloadDb(db_, kRows);
  int to[2];
  ASSERT_EQ(::pipe2(to, O_CLOEXEC), 0);
  const pid_t shell = StartUnderPreload({"/usr/bin/sqlite3", "-batch", "-bail", db_}, to[0]);
  ::close(to[0]);
  std::atomic<bool> stop{false};
  std::thread feeder([&, fd = to[1]] {
    std::string head = ".timeout 60000\nPRAGMA synchronous = OFF;\n";
    bool ok = ::write(fd, head.data(), head.size()) == ssize_t(head.size());
    const std::string txn =
        "BEGIN IMMEDIATE;\n"
        "INSERT INTO log SELECT n + 1, 1, randomblob(64) FROM counter WHERE id = 1;\n"
        "UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1;\n"
        "UPDATE filler SET data = randomblob(length(data)) WHERE id = abs(random()) % " +
        std::to_string(kRows) + " + 1;\nCOMMIT;\n";
    while (ok && !stop.load()) {
      ok = ::write(fd, txn.data(), txn.size()) == ssize_t(txn.size());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // room for the test's reads
    }
    ::close(fd);
  });
  const bool started = WaitCount(db_, 20);
  if (started) {
    BackupByCountIsCommittedPrefix("archive", 1);
    BackupByCountIsCommittedPrefix("plain", 2);
  }
  stop = true;
  feeder.join();
  const int status = Wait(shell);
  ASSERT_TRUE(started) << ProgramErrors();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ": " << ProgramErrors();
  EXPECT_EQ(ProgramErrors(), "");
  CountNow(db_);
}

// Process life (issue 13, item 3), one python program each:
//   fork:    the parent keeps the connection it opened before the fork, the
//            child opens its own; both write.
//   reopen:  the connection is closed and reopened every 10 commits.
//   threads: three threads, a connection each.
class PreloadProcessLifeTest : public PreloadSqliteTest,
                               public ::testing::WithParamInterface<const char*> {};

TEST_P(PreloadProcessLifeTest, WritesAreBackedUpFromTheCli) {
  MakeWorkloadDb(db_, kRows);
  const std::string stop = dir_ / "stop";
  const pid_t pid = StartUnderPreload(
      {"/usr/bin/python3", SourceDir() + "/tests/preload/preload_writer.py", db_, stop, GetParam()}, -1);
  const bool started = WaitCount(db_, 20);
  bool overlapped = false;
  if (started) {
    overlapped |= BackupByCountIsCommittedPrefix("archive", 1);
    overlapped |= BackupByCountIsCommittedPrefix("plain", 2);
  }
  WriteFile(stop, "");
  const int status = Wait(pid);
  ASSERT_TRUE(started) << ProgramErrors();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ": " << ProgramErrors();
  EXPECT_EQ(ProgramErrors(), "");
  CountNow(db_);
  if (!overlapped) printf("note: no commit landed during either backup\n");
}

INSTANTIATE_TEST_SUITE_P(Modes, PreloadProcessLifeTest, ::testing::Values("fork", "reopen", "threads"),
                         [](const ::testing::TestParamInfo<const char*>& p) { return std::string(p.param); });

// A program that loads the extension itself as well, from the same file or
// from a copy at another path: one shim. Its in-process cowbackup() and the
// CLI both back up its writes (with two shims the second load would fail
// and the program with it).
class PreloadWithExtensionTest : public PreloadSqliteTest,
                                 public ::testing::WithParamInterface<bool> {};

TEST_P(PreloadWithExtensionTest, OneShim) {
  MakeWorkloadDb(db_, kRows);
  WriterSpec spec;
  spec.kind = WriterKind::kPython;
  spec.participant = true;
  spec.preload = true;
  if (GetParam()) {
    spec.extension = dir_.subdir("other") + "/cowbackup";
    WriteFile(spec.extension + ".so", ReadFile(BuildDir() + "/cowbackup.so"));
  }
  Writer w(db_, 1, spec);
  ASSERT_TRUE(w.WaitCommits(10)) << "the writer did not start: two shims?";
  const BackupRun b = w.Backup(dir_ / "inproc.cbk", "archive", "snapshot_first", kRateMb, 16);
  ASSERT_TRUE(b.ok) << b.text;
  const Window win = CommitWindow(AllCommits({&w}), b.t_call, b.t_return);
  CheckPrefix(RestoreWithCli(dir_ / "inproc.cbk", false, dir_.path()), win.lo, win.hi);
  BackupByWindowIsCommittedPrefix({&w}, "archive", 1);
  w.Stop();
  EXPECT_EQ(w.errors(), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(SameFileOrACopy, PreloadWithExtensionTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "ACopyAtAnotherPath" : "TheSameFile");
                         });

// A program that registers cowbackup's VFS itself through the C++ API
// (tests/sqlite/mp_writer, "shim") is covered already: under the library it
// keeps its one shim, and the library neither loads the extension nor says
// anything.
TEST_F(PreloadSqliteTest, ProgramWithTheApiKeepsItsOwnShim) {
  MakeWorkloadDb(db_, kRows);
  int to[2];
  ASSERT_EQ(::pipe2(to, O_CLOEXEC), 0);
  const pid_t pid =
      StartUnderPreload({BuildDir() + "/tests/sqlite/mp_writer", "shim", db_, "1", "commit", "delete"}, to[0]);
  ::close(to[0]);
  const bool started = WaitCount(db_, 20);
  if (started) BackupByCountIsCommittedPrefix("archive", 1);
  ::close(to[1]);  // EOF: it stops
  const int status = Wait(pid);
  ASSERT_TRUE(started) << ProgramErrors();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ": " << ProgramErrors();
  EXPECT_EQ(ProgramErrors(), "");
}

// What the library cannot reach (docs/PRELOAD.md): a program with SQLite
// linked in statically, and one that names a VFS when it opens. Under the
// library they stay non-participants, say nothing, and a backup during
// their commits fails by name rather than copy them wrongly.
class PreloadUncoveredTest : public PreloadSqliteTest,
                             public ::testing::WithParamInterface<const char*> {};

TEST_P(PreloadUncoveredTest, WritesFailTheBackupByName) {
  const std::string program = BuildDir() + "/tests/" + GetParam();
  struct stat st;
  if (::stat(program.c_str(), &st) != 0) GTEST_SKIP() << program << " not built (no libsqlite3.a)";
  MakeWorkloadDb(db_, kRows);
  int to[2];
  ASSERT_EQ(::pipe2(to, O_CLOEXEC), 0);
  const pid_t pid = StartUnderPreload({program, db_}, to[0]);
  ::close(to[0]);
  std::atomic<bool> stop{false};
  std::thread feeder([&, fd = to[1]] {
    const std::string txn =
        "BEGIN IMMEDIATE; INSERT INTO log SELECT n + 1, 1, randomblob(64) FROM counter WHERE id = 1; "
        "UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1; "
        "UPDATE filler SET data = randomblob(length(data)) WHERE id = abs(random()) % " +
        std::to_string(kRows) + " + 1; COMMIT\n";
    const std::string head = "PRAGMA synchronous = OFF\n";
    bool ok = ::write(fd, head.data(), head.size()) == ssize_t(head.size());
    while (ok && !stop.load()) {
      ok = ::write(fd, txn.data(), txn.size()) == ssize_t(txn.size());
      // Room for the test's reads between commits (a rate, not a sync point).
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ::close(fd);
  });
  const bool started = WaitCount(db_, 20);
  Cli c;
  if (started) c = CliBackup(db_, dir_ / "copy.cbk", "archive", dir_.path());
  stop = true;
  feeder.join();
  const int status = Wait(pid);
  ASSERT_TRUE(started) << ProgramErrors();
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.err.find("a write bypassed the cowbackup shim"), std::string::npos) << c.err;
  EXPECT_FALSE(Exists(dir_ / "copy.cbk"));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(ProgramErrors(), "");
  EXPECT_EQ(ReadFile(dir_ / "prog.out").find("error"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Programs, PreloadUncoveredTest,
                         ::testing::Values("preload/static_sqlite", "sqlite/foreign_sqlite"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           return std::string(p.param[0] == 'p' ? "StaticSqlite" : "ExplicitUnixVfs");
                         });

}  // namespace
}  // namespace cowbackup::testing::mp
