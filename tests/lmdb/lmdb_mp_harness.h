// LMDB environments written by several processes (issue 12): the workload
// every multi-process LMDB test runs, its exact model, and the writer
// program (tests/lmdb/lmdb_mp_writer.cc) driven through the line protocol
// of test_util/mp_harness.h, which the SQLite tests share.
//
//   uint64_t preload = 0;
//   Preload(env, 0, &preload);                          // before any writer starts
//   LmdbWriter w(env, 1, /*durable=*/true);             // its own process
//   ASSERT_TRUE(w.WaitCommits(10));
//   Cli c = RunCli({"backup", "--json", env, dest}, dir.path());
//   const int64_t k = CheckEnvCopy(dest, CopyKind::kArchive, preload,
//                                  CommitWindow(AllCommits({&w}), c.t_call, c.t_return), dir.path());
//
// The workload (CommitNext, lmdb_test_util.h): commit K puts seq/K, rewrites
// kFiller of kFillSpace fill/ keys (values of kValueLen bytes) and sets
// "counter" to K, reading the counter inside the write txn: LMDB's writer
// mutex orders the commits of every process into one global sequence, and
// each commit takes the next txnid, so a state with counter K is exactly
// ModelAt(K) at txnid preload + K.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lmdb_test_util.h"
#include "test_util/mp_harness.h"

namespace cowbackup::lmdb::testing {

using test::BuildDir;
using test::mp::Cli;
using test::mp::RunCli;
using test::mp::Window;

// Far beyond what any test writes (tens of MB): a map that fills under a
// slow machine's long run would fail every writer, not the test's point.
inline constexpr uint64_t kMapSize = 4ull << 30;
inline constexpr size_t kValueLen = 200;
inline constexpr int kFiller = 4;
inline constexpr uint64_t kFillSpace = 5000;
// Static bulk that makes the copy take a while (the backups are throttled).
inline constexpr int kBulk = 6000;
inline constexpr size_t kBulkLen = 1500;

inline std::string Sh(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline std::string BulkKey(int i) {
  char buf[32];
  snprintf(buf, sizeof buf, "bulk/%06d", i);
  return buf;
}

// The environment every test starts from: kBulk static entries, written in
// one txn (its txnid is *preload_txnid; the counter is 0 there). Closed
// before it returns: no writer process may inherit this process's region
// attachment (docs/REGION.md, "fork").
inline void Preload(const std::string& env_dir, unsigned flags, uint64_t* preload_txnid) {
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(env_dir, EnvOpts(flags, kMapSize), &env));
  Txn txn;
  ASSERT_OK(Txn::Begin(*env, &txn));
  Dbi dbi;
  ASSERT_OK(Dbi::Open(txn, nullptr, 0, &dbi));
  for (int i = 0; i < kBulk; ++i) ASSERT_OK(txn.put(dbi, BulkKey(i), SeqValue(1000000 + uint64_t(i), kBulkLen)));
  *preload_txnid = txn.id();
  ASSERT_OK(txn.commit());
}

// The state after K workload commits on the preloaded env.
inline std::map<std::string, std::string> ModelAt(uint64_t k) {
  std::map<std::string, std::string> m;
  for (int i = 0; i < kBulk; ++i) m[BulkKey(i)] = SeqValue(1000000 + uint64_t(i), kBulkLen);
  for (uint64_t n = 1; n <= k; ++n) {
    m[SeqKey(n)] = SeqValue(n, kValueLen);
    for (int i = 0; i < kFiller; ++i) {
      const uint64_t f = (n * 7919 + uint64_t(i) * 104729) % kFillSpace;
      m["fill/" + std::to_string(f)] = SeqValue(n + uint64_t(i), kValueLen);
    }
  }
  if (k > 0) m["counter"] = std::to_string(k);
  return m;
}

// Every entry of the main database of the env at `path` (opened read-only,
// so no region; `flags` may add kNoSubdir for a plain image), and its
// newest txnid.
inline void ReadState(const std::string& path, std::map<std::string, std::string>* out, uint64_t* txnid,
                      unsigned flags = 0) {
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(path, EnvOpts(kReadOnly | flags, kMapSize), &env));
  EnvInfo info;
  ASSERT_OK(env->info(&info));
  *txnid = info.last_txnid;
  Txn txn;
  ASSERT_OK(Txn::Begin(*env, &txn, true));
  Dbi dbi;
  ASSERT_OK(Dbi::Open(txn, nullptr, 0, &dbi));
  Cursor c;
  ASSERT_OK(Cursor::Open(txn, dbi, &c));
  std::string_view k, v;
  Status s;
  for (s = c.first(&k, &v); s.ok(); s = c.next(&k, &v)) (*out)[std::string(k)] = std::string(v);
  ASSERT_TRUE(IsNotFound(s)) << s.ToString();
}

// Debian's mdb_stat and a full read by mdb_dump of the env at `path` (a
// directory, or a data file with `nosubdir`); "" or what they said.
inline std::string LmdbUtilsCheck(const std::string& path, bool nosubdir) {
  const std::string n = nosubdir ? " -n" : "";
  std::string text;
  if (Shell("timeout 120 mdb_stat -e" + n + " " + Sh(path) + " 2>&1", &text) != 0) return "mdb_stat: " + text;
  if (Shell("timeout 120 mdb_dump -a" + n + " " + Sh(path) + " 2>&1 >/dev/null", &text) != 0) {
    return "mdb_dump: " + text;
  }
  return "";
}

// What CheckEnvCopy is given: an archive (verified and restored by the
// CLI), a plain data.mdb image, or an environment directory (the live one).
enum class CopyKind { kArchive, kPlain, kEnvDir };

// Checks a copy at `dest`: `cowbackup verify` passes (archives), mdb_stat
// and mdb_dump read it, its newest txnid is preload + K, it holds exactly
// ModelAt(K), and K is inside `win` (every seq committed before the backup
// was called is in, none begun after it returned). Returns K, -1 after a
// failure.
inline int64_t CheckEnvCopy(const std::string& dest, CopyKind kind, uint64_t preload_txnid, const Window& win,
                            const std::string& dir) {
  std::string path = dest;
  const bool plain = kind == CopyKind::kPlain;
  if (kind == CopyKind::kArchive) {
    const Cli v = RunCli({"verify", "--quiet", dest}, dir);
    EXPECT_TRUE(v.ok()) << "a complete-looking archive does not verify: " << dest << ": " << v.err;
    path = dest + ".restored";
    const Cli r = RunCli({"restore", "--force", "--quiet", dest, path}, dir);
    EXPECT_TRUE(r.ok()) << "restore " << dest << ": " << r.err;
    if (!v.ok() || !r.ok()) return -1;
  }
  const std::string utils = LmdbUtilsCheck(path, plain);
  EXPECT_EQ(utils, "") << dest;
  std::map<std::string, std::string> state;
  uint64_t txnid = 0;
  ReadState(path, &state, &txnid, plain ? kNoSubdir : 0);
  if (::testing::Test::HasFatalFailure()) return -1;
  const auto counter = state.find("counter");
  const int64_t k = counter == state.end() ? 0 : std::stoll(counter->second);
  EXPECT_EQ(txnid, preload_txnid + uint64_t(k)) << dest << ": the newest txnid is not the counter's commit";
  const bool exact = state == ModelAt(uint64_t(k));
  EXPECT_TRUE(exact) << dest << ": the copy is not exactly the state after commit " << k;
  EXPECT_GE(k, win.lo) << dest << ": a seq committed before the backup was called is missing";
  EXPECT_LE(k, win.hi) << dest << ": a seq begun after the backup returned is in the copy";
  const bool ok = utils.empty() && exact && txnid == preload_txnid + uint64_t(k) && k >= win.lo && k <= win.hi;
  return ok ? k : -1;
}

// A writer process (tests/lmdb/lmdb_mp_writer.cc) on the env at `env_dir`:
// durable commits, or MDB_NOSYNC|MDB_NOMETASYNC (the meta page then goes
// through LMDB's main descriptor instead of its O_DSYNC one). With
// `kill_point`, it stops itself (SIGSTOP) at the kill_at-th time that
// engine sync point is reached on its writer thread.
class LmdbWriter : public test::mp::WriterProcess {
 public:
  LmdbWriter(const std::string& env_dir, int id, bool durable, const std::string& kill_point = "",
             long kill_at = 0)
      : WriterProcess(Argv(env_dir, id, durable, kill_point, kill_at), id, durable ? "lmdb" : "lmdb nosync") {}

 private:
  static std::vector<std::string> Argv(const std::string& env_dir, int id, bool durable,
                                       const std::string& kill_point, long kill_at) {
    std::vector<std::string> argv = {BuildDir() + "/tests/lmdb/lmdb_mp_writer", env_dir, std::to_string(id),
                                     durable ? "sync" : "nosync"};
    if (!kill_point.empty()) argv.insert(argv.end(), {kill_point, std::to_string(kill_at)});
    return argv;
  }
};

}  // namespace cowbackup::lmdb::testing
