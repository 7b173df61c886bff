// The preload library's LMDB half (issue 13) with real, unmodified
// clients: Debian's python3 with python3-lmdb (tests/preload/lmdb_writer.py)
// and a C program linked with -llmdb (tests/lmdb/plain_lmdb_writer.c), under
// LD_PRELOAD=build/libcowbackup_preload.so; build/cowbackup backs the
// environment up from a process of its own. The restored environment, read
// by Debian's mdb_dump, must be exactly the state after the backup's T0
// txn: the writers' workload makes that state a function of the commit
// count (lmdb_writer.py), and the CLI reports T0's txnid.
//
// Without the library each of these writers is a non-participant and the
// backup fails with "another process committed to the environment during
// the backup without taking part" (lmdb_multiprocess_test, NonParticipant).
#include <sys/stat.h>

#include <map>

#include "lmdb/lmdb_test_util.h"
#include "sqlite/multiprocess_harness.h"

namespace cowbackup::testing::mp {
namespace {

using cowbackup::lmdb::testing::Shell;

constexpr int kBulk = 6000;  // ~9 MB: a throttled backup runs for seconds

std::string PreloadLib() { return BuildDir() + "/libcowbackup_preload.so"; }
std::string WriterScript() { return SourceDir() + "/tests/preload/lmdb_writer.py"; }

std::string Sh(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string Pad(uint64_t k) {
  std::string s = std::to_string(k);
  s.resize(200, '.');
  return s;
}

std::string Num8(uint64_t k) {
  char b[16];
  snprintf(b, sizeof b, "%08llu", (unsigned long long)k);
  return b;
}

// The environment after the workload's commit `k` (lmdb_writer.py).
std::map<std::string, std::string> Model(uint64_t k) {
  std::map<std::string, std::string> m;
  for (int i = 0; i < kBulk; i++) {
    char key[16], unit[8];
    snprintf(key, sizeof key, "bulk/%05d", i);
    snprintf(unit, sizeof unit, "b%05d", i);
    std::string v;
    for (int r = 0; r < 250; r++) v += unit;
    m[key] = v;
  }
  m["counter"] = std::to_string(k);
  for (uint64_t j = 1; j <= k; j++) {
    m["seq/" + Num8(j)] = Pad(j);
    char fill[16];
    snprintf(fill, sizeof fill, "fill/%04llu", (unsigned long long)(j * 7919 % 500));
    m[fill] = Pad(j);
  }
  return m;
}

// mdb_dump -p of `env`'s main database; false after a failure.
bool DumpEnv(const std::string& env, std::map<std::string, std::string>* out) {
  std::string text;
  const int rc = Shell("mdb_dump -p " + Sh(env) + " 2>&1", &text);
  EXPECT_EQ(rc, 0) << text;
  if (rc != 0) return false;
  const size_t at = text.find("HEADER=END\n");
  EXPECT_NE(at, std::string::npos) << text.substr(0, 200);
  if (at == std::string::npos) return false;
  std::vector<std::string> lines;
  size_t p = at + 11;
  while (p < text.size()) {
    const size_t e = text.find('\n', p);
    lines.push_back(text.substr(p, e - p));
    p = e == std::string::npos ? text.size() : e + 1;
  }
  size_t i = 0;
  for (; i + 1 < lines.size() && lines[i] != "DATA=END"; i += 2) {
    // Printable format: each line starts with a space; our bytes need no escapes.
    (*out)[lines[i].substr(1)] = lines[i + 1].substr(1);
  }
  EXPECT_TRUE(i < lines.size() && lines[i] == "DATA=END");
  return true;
}

// LMDB's newest txnid of `env` (Debian's mdb_stat -e).
uint64_t Txnid(const std::string& env) {
  std::string text;
  EXPECT_EQ(Shell("mdb_stat -e " + Sh(env) + " 2>&1", &text), 0) << text;
  const size_t at = text.find("Last transaction ID: ");
  return at == std::string::npos ? 0 : std::strtoull(text.c_str() + at + 21, nullptr, 10);
}

class PreloadLmdbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kPythonUsable) GTEST_SKIP() << "sanitizer build: Debian's clients cannot load it";
    struct stat st;
    ASSERT_EQ(::stat(PreloadLib().c_str(), &st), 0) << PreloadLib();
    std::string out;
    ASSERT_EQ(Shell("/usr/bin/python3 " + Sh(WriterScript()) + " init " + Sh(env_) + " " + std::to_string(kBulk) +
                    " 2>&1", &out), 0) << out;
    init_txnid_ = Txnid(env_);
    ASSERT_GT(init_txnid_, 0u);
  }

  pid_t StartUnderPreload(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"/usr/bin/env", "LD_PRELOAD=" + PreloadLib()});
    const int err = ::open((dir_ / "prog.err").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const pid_t pid = SpawnProgram(argv, -1, -1, err);
    ::close(err);
    return pid;
  }
  pid_t StartWriter(const std::string& mode) {
    return StartUnderPreload({"/usr/bin/python3", WriterScript(), "run", env_, stop_, mode});
  }
  static int WaitPid(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
  }
  bool WaitCommits(uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Txnid(env_) >= init_txnid_ + n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a condition
    }
    return false;
  }
  Cli Backup(const std::string& dest, double rate_mb) {
    char rate[32];
    snprintf(rate, sizeof rate, "%g", rate_mb);
    return RunCli({"backup", "--json", "--force", "--busy-timeout-ms", "60000", "--max-rate-mb", rate, env_, dest},
                  dir_.path());
  }
  // Restores `c`'s archive and checks it: mdb_stat reads it, and mdb_dump
  // shows exactly the workload after T0 (the txnid the CLI reported), which
  // lies within [lo, hi] (txnids read around the call). Returns T0's count.
  uint64_t VerifyCopy(const Cli& c, const std::string& dest, uint64_t lo, uint64_t hi) {
    EXPECT_TRUE(c.ok()) << c.err;
    if (!c.ok()) return 0;
    const std::string restored = dest + ".restored";
    const Cli r = RunCli({"restore", "--force", "--quiet", dest, restored}, dir_.path());
    EXPECT_TRUE(r.ok()) << r.err;
    std::string text;
    EXPECT_EQ(Shell("mdb_stat -e " + Sh(restored) + " 2>&1", &text), 0) << text;
    const int64_t t0 = JsonInt(c.out, "lmdb_txnid");
    EXPECT_GE(t0, int64_t(lo));
    EXPECT_LE(t0, int64_t(hi));
    EXPECT_EQ(Txnid(restored), uint64_t(t0)) << "the copy's newest meta page is T0's";
    std::map<std::string, std::string> got;
    if (t0 < int64_t(init_txnid_) || !DumpEnv(restored, &got)) return 0;
    const uint64_t k = uint64_t(t0) - init_txnid_;  // one workload commit per txnid
    EXPECT_TRUE(got == Model(k)) << "the copy is not the state after T0 (txnid " << t0 << ", commit " << k
                                 << "; counter " << got["counter"] << ", " << got.size() << " keys)";
    printf("copy: T0 txnid %lld in [%llu, %llu], preserved_pages %lld\n", (long long)t0, (unsigned long long)lo,
           (unsigned long long)hi, (long long)JsonInt(c.out, "preserved_pages"));
    return k;
  }
  std::string ProgramErrors() { return ReadFile(dir_ / "prog.err"); }

  TempDir dir_{"cowbackup-preload-lmdb"};
  std::string env_ = dir_.subdir("env");
  std::string stop_ = dir_ / "stop";
  uint64_t init_txnid_ = 0;
};

// Two python3-lmdb writer processes; one that forks a writer child; one
// that closes and reopens its environment every 10 commits.
class PreloadLmdbWritersTest : public PreloadLmdbTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(PreloadLmdbWritersTest, CopyIsExactlyTheStateAfterT0) {
  const std::string mode = GetParam();
  std::vector<pid_t> writers = {StartWriter(mode == "two" ? "plain" : mode)};
  if (mode == "two") writers.push_back(StartWriter("plain"));
  const bool started = WaitCommits(20);
  if (started) {
    for (int i = 0; i < 2; i++) {
      const uint64_t lo = Txnid(env_);
      const std::string dest = dir_ / ("copy-" + std::to_string(i) + ".cbk");
      const Cli c = Backup(dest, 8.0);
      VerifyCopy(c, dest, lo, Txnid(env_));
    }
  }
  WriteFile(stop_, "");
  for (pid_t w : writers) {
    const int status = WaitPid(w);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ": " << ProgramErrors();
  }
  ASSERT_TRUE(started) << ProgramErrors();
  EXPECT_EQ(ProgramErrors(), "");
  std::map<std::string, std::string> now;
  ASSERT_TRUE(DumpEnv(env_, &now));
  EXPECT_TRUE(now == Model(Txnid(env_) - init_txnid_)) << "the live environment broke the workload's rule";
}

INSTANTIATE_TEST_SUITE_P(Writers, PreloadLmdbWritersTest, ::testing::Values("two", "fork", "reopen"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           const std::string m = p.param;
                           return std::string(m == "two" ? "TwoProcesses" : m == "fork" ? "ForkedChild" : "Reopening");
                         });

// A C program linked with -llmdb (Debian's liblmdb.so.0), run again and
// again under the library while a throttled backup runs: its commits after
// T0 are seen, and the backup succeeds.
TEST_F(PreloadLmdbTest, CProgramLinkedWithLiblmdb) {
  const std::string dest = dir_ / "copy.cbk";
  Cli c = StartCli({"backup", "--json", "--force", "--max-rate-mb", "4", env_, dest}, dir_.path());
  struct Run {
    uint64_t txnid_before;
    bool cli_running_after;
  };
  std::vector<Run> runs;
  while (!CliExited(&c) && runs.size() < 2000) {
    const uint64_t before = Txnid(env_);
    const pid_t w = StartUnderPreload({PLAIN_LMDB_WRITER, env_, "20", "1073741824"});
    const int status = WaitPid(w);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ": " << ProgramErrors();
    runs.push_back({before, !CliExited(&c)});
  }
  FinishCli(&c);
  ASSERT_TRUE(c.ok()) << c.err;
  EXPECT_EQ(ProgramErrors(), "");
  const int64_t t0 = JsonInt(c.out, "lmdb_txnid");
  // Some run began after T0 and ended while the backup still ran: commits
  // inside the job that a non-participant's would have failed.
  bool inside = false;
  for (const Run& r : runs) inside |= int64_t(r.txnid_before) >= t0 && r.cli_running_after;
  EXPECT_TRUE(inside) << runs.size() << " runs, T0 txnid " << t0;
  const std::string restored = dest + ".restored";
  const Cli r = RunCli({"restore", "--force", "--quiet", dest, restored}, dir_.path());
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(Txnid(restored), uint64_t(t0));
  std::map<std::string, std::string> got;
  ASSERT_TRUE(DumpEnv(restored, &got));
  EXPECT_EQ(got.size(), size_t(kBulk + 1 + (t0 - int64_t(init_txnid_)))) << "one foreign/ key per commit to T0";
}

// MDB_WRITEMAP: one line on stderr at open; `status` lists the process as
// one whose writes are unseen, and a backup is refused by name before it
// starts, publishing nothing.
TEST_F(PreloadLmdbTest, WriteMapIsReportedAndTheBackupRefused) {
  const pid_t w = StartWriter("writemap");
  const bool started = WaitCommits(20);
  const std::string dest = dir_ / "copy.cbk";
  Cli c, status_cli;
  if (started) {
    status_cli = RunCli({"status", "--json", env_}, dir_.path());
    c = Backup(dest, 8.0);
  }
  WriteFile(stop_, "");
  const int status = WaitPid(w);
  ASSERT_TRUE(started) << ProgramErrors();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(status_cli.ok()) << status_cli.err;
  EXPECT_NE(status_cli.out.find("\"pid\": " + std::to_string(w)), std::string::npos) << status_cli.out;
  EXPECT_NE(status_cli.out.find("\"writes_unseen\": true"), std::string::npos) << status_cli.out;
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.err.find("process " + std::to_string(w) + " has the environment open with MDB_WRITEMAP"),
            std::string::npos)
      << c.err;
  struct stat st;
  EXPECT_NE(::stat(dest.c_str(), &st), 0) << "a refused backup published";
  const std::string err = ProgramErrors();
  const std::string line = "cowbackup preload: " + env_ + ": opened with MDB_WRITEMAP";
  EXPECT_NE(err.find(line), std::string::npos) << err;
  EXPECT_EQ(err.find(line), err.rfind(line)) << "said more than once: " << err;
}

}  // namespace
}  // namespace cowbackup::testing::mp
