// The C API for LMDB programs (include/cowbackup/lmdb.h): attach an
// MDB_env the program opened itself, back it up, detach; refusals and
// errors; a C writer process that takes part in a backup the CLI runs.
// The in-process backup under writes is the C example's test
// (examples/lmdb_c_check.sh, test example_lmdb_c).
#include "cowbackup/lmdb.h"

#include <lmdb.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "engine/sync_point.h"

#include "lmdb/io_intercept.h"
#include "lmdb/lmdb_test_util.h"
#include "test_util/processes.h"
#include "test_util/wait_for.h"

namespace cowbackup::lmdb::testing {
namespace {

std::string Sh(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string CliBinary() {
  const char* dir = getenv("COWBACKUP_BUILD_DIR");
  return std::string(dir ? dir : ".") + "/cowbackup";
}

// An MDB_env opened with plain mdb_* calls (the liblmdb.a this binary
// links, as a C program linking cowbackup::lmdb would).
class PlainEnv {
 public:
  ~PlainEnv() { Close(); }
  int Open(const std::string& dir, unsigned flags) {
    Close();
    int rc = mdb_env_create(&env_);
    if (rc == 0) rc = mdb_env_set_mapsize(env_, size_t(64) << 20);
    if (rc == 0) rc = mdb_env_open(env_, dir.c_str(), flags, 0644);
    return rc;
  }
  void Close() {
    if (env_ != nullptr) mdb_env_close(env_);
    env_ = nullptr;
  }
  // Commits `n` transactions, each putting one key.
  void Write(int n) {
    for (int i = 0; i < n; ++i) {
      MDB_txn* txn = nullptr;
      MDB_dbi dbi;
      ASSERT_EQ(mdb_txn_begin(env_, nullptr, 0, &txn), 0);
      ASSERT_EQ(mdb_dbi_open(txn, nullptr, 0, &dbi), 0);
      std::string key = "key" + std::to_string(written_), value(200, char('a' + written_ % 26));
      MDB_val k{key.size(), key.data()}, v{value.size(), value.data()};
      ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
      ASSERT_EQ(mdb_txn_commit(txn), 0);
      ++written_;
    }
  }
  MDB_env* get() const { return env_; }

 private:
  MDB_env* env_ = nullptr;
  int written_ = 0;
};

// An attach that must fail: returns its code, *message the text.
int AttachFails(MDB_env* env, std::string* message) {
  cowbackup_lmdb* cb = reinterpret_cast<cowbackup_lmdb*>(1);
  char* err = nullptr;
  const int code = cowbackup_lmdb_attach(env, &cb, &err);
  EXPECT_EQ(cb, nullptr);
  *message = err ? err : "";
  cowbackup_free(err);
  cowbackup_lmdb_detach(cb);
  return code;
}

class LmdbCapiTest : public ::testing::Test {
 protected:
  TempDir dir_{"cowbackup-capi"};
  std::string env_dir_ = dir_.subdir("env");
};

TEST_F(LmdbCapiTest, AttachedEnvBacksUpToExactlyItsLastCommit) {
  PlainEnv env;
  ASSERT_EQ(env.Open(env_dir_, 0), 0);
  env.Write(50);
  cowbackup_lmdb* cb = nullptr;
  char* err = nullptr;
  ASSERT_EQ(cowbackup_lmdb_attach(env.get(), &cb, &err), COWBACKUP_OK) << err;
  EXPECT_EQ(err, nullptr);
  env.Write(50);  // after attach too

  cowbackup_lmdb_result result;
  ASSERT_EQ(cowbackup_lmdb_backup(cb, (dir_ / "a.cowbak").c_str(), nullptr, &result, &err), COWBACKUP_OK) << err;
  MDB_envinfo info;
  ASSERT_EQ(mdb_env_info(env.get(), &info), 0);
  EXPECT_EQ(result.txnid, uint64_t(info.me_last_txnid));
  EXPECT_EQ(result.pages, uint64_t(info.me_last_pgno) + 1);
  EXPECT_GT(result.bytes_written, 0u);

  ASSERT_OK(RestoreTo(dir_ / "a.cowbak", dir_ / "restored"));
  std::string original, restored;
  ASSERT_EQ(Shell("mdb_dump -a " + Sh(env_dir_), &original), 0);
  ASSERT_EQ(Shell("mdb_dump -a " + Sh(dir_ / "restored"), &restored), 0);
  EXPECT_EQ(restored, original);
  cowbackup_lmdb_detach(cb);
}

TEST_F(LmdbCapiTest, DetachUnhooksTheDataFileAndAllowsAttachAgain) {
  PlainEnv env;
  ASSERT_EQ(env.Open(env_dir_, 0), 0);
  int me_fd = -1;
  ASSERT_EQ(mdb_env_get_fd(env.get(), &me_fd), 0);
  EXPECT_EQ(LookupFd(me_fd), nullptr);
  cowbackup_lmdb* cb = nullptr;
  ASSERT_EQ(cowbackup_lmdb_attach(env.get(), &cb, nullptr), COWBACKUP_OK);
  EXPECT_NE(LookupFd(me_fd), nullptr);
  cowbackup_lmdb_detach(cb);
  EXPECT_EQ(LookupFd(me_fd), nullptr);
  // The env is still the program's: it writes, attaches again, backs up.
  env.Write(3);
  ASSERT_EQ(cowbackup_lmdb_attach(env.get(), &cb, nullptr), COWBACKUP_OK);
  EXPECT_EQ(cowbackup_lmdb_backup(cb, (dir_ / "b.cowbak").c_str(), nullptr, nullptr, nullptr), COWBACKUP_OK);
  cowbackup_lmdb_detach(cb);
  cowbackup_lmdb_detach(nullptr);  // a no-op
}

TEST_F(LmdbCapiTest, CoordinationSaysWhyAnEnvTakesNoPart) {
  PlainEnv env;
  ASSERT_EQ(env.Open(env_dir_, 0), 0);
  cowbackup_lmdb* cb = nullptr;
  ASSERT_EQ(cowbackup_lmdb_attach(env.get(), &cb, nullptr), COWBACKUP_OK);
  char* err = nullptr;
  EXPECT_EQ(cowbackup_lmdb_coordination(cb, &err), COWBACKUP_OK) << err;
  EXPECT_EQ(err, nullptr);
  cowbackup_lmdb_detach(cb);
  EXPECT_EQ(cowbackup_lmdb_coordination(nullptr, nullptr), COWBACKUP_INVALID_ARGUMENT);

  // A region that cannot be opened (here a directory in its place): the
  // attach still works for this process's own backups, and says why not.
  const std::string other = dir_.subdir("other");
  ASSERT_EQ(::mkdir((other + "/cowbackup-region").c_str(), 0700), 0);
  ASSERT_EQ(env.Open(other, 0), 0);
  env.Write(5);
  ASSERT_EQ(cowbackup_lmdb_attach(env.get(), &cb, nullptr), COWBACKUP_OK);
  EXPECT_NE(cowbackup_lmdb_coordination(cb, &err), COWBACKUP_OK);
  ASSERT_NE(err, nullptr);
  EXPECT_NE(std::string(err).find("cowbackup-region"), std::string::npos) << err;
  cowbackup_free(err);
  EXPECT_EQ(cowbackup_lmdb_backup(cb, (dir_ / "own.cowbak").c_str(), nullptr, nullptr, nullptr), COWBACKUP_OK);
  cowbackup_lmdb_detach(cb);
}

TEST_F(LmdbCapiTest, SecondAttachOfTheSameEnvIsBusy) {
  PlainEnv env;
  ASSERT_EQ(env.Open(env_dir_, 0), 0);
  cowbackup_lmdb* cb = nullptr;
  ASSERT_EQ(cowbackup_lmdb_attach(env.get(), &cb, nullptr), COWBACKUP_OK);
  std::string message;
  EXPECT_EQ(AttachFails(env.get(), &message), COWBACKUP_BUSY);
  EXPECT_NE(message.find("already hooked"), std::string::npos) << message;
  // The refused attach left the first one whole: hooked and gated.
  int me_fd = -1;
  ASSERT_EQ(mdb_env_get_fd(env.get(), &me_fd), 0);
  EXPECT_NE(LookupFd(me_fd), nullptr);
  EXPECT_NE(LookupEnvGate(env.get()), nullptr);
  cowbackup_lmdb_detach(cb);
  EXPECT_EQ(LookupEnvGate(env.get()), nullptr);
}

TEST_F(LmdbCapiTest, RefusesWriteMapReadOnlyAndNoLockByName) {
  PlainEnv env;
  ASSERT_EQ(env.Open(env_dir_, 0), 0);
  env.Write(1);
  struct Case {
    unsigned flags;
    const char* named;
  } cases[] = {{MDB_WRITEMAP, "MDB_WRITEMAP"}, {MDB_RDONLY, "read-only"}, {MDB_NOLOCK, "MDB_NOLOCK"}};
  for (const Case& c : cases) {
    ASSERT_EQ(env.Open(env_dir_, c.flags), 0) << c.named;
    std::string message;
    EXPECT_EQ(AttachFails(env.get(), &message), COWBACKUP_NOT_SUPPORTED) << c.named;
    EXPECT_NE(message.find(c.named), std::string::npos) << message;
    EXPECT_NE(message.find(env_dir_), std::string::npos) << message;
  }
}

TEST_F(LmdbCapiTest, RefusesAnEnvNotOpenedAndANullOne) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  std::string message;
  EXPECT_EQ(AttachFails(env, &message), COWBACKUP_INVALID_ARGUMENT);
  EXPECT_NE(message.find("mdb_env_open first"), std::string::npos) << message;
  mdb_env_close(env);
  EXPECT_EQ(AttachFails(nullptr, &message), COWBACKUP_INVALID_ARGUMENT);
  EXPECT_EQ(cowbackup_lmdb_attach(nullptr, nullptr, nullptr), COWBACKUP_INVALID_ARGUMENT);
}

TEST_F(LmdbCapiTest, BadOptionsAreRefusedByName) {
  PlainEnv env;
  ASSERT_EQ(env.Open(env_dir_, 0), 0);
  env.Write(1);
  cowbackup_lmdb* cb = nullptr;
  ASSERT_EQ(cowbackup_lmdb_attach(env.get(), &cb, nullptr), COWBACKUP_OK);
  cowbackup_lmdb_options o;
  cowbackup_lmdb_options_init(&o);
  EXPECT_EQ(o.segment_pages, kDefaultSegmentPages);
  EXPECT_EQ(o.max_rate_mb, 0);
  char* err = nullptr;
  struct Case {
    void (*set)(cowbackup_lmdb_options*);
    const char* named;
  } cases[] = {{[](cowbackup_lmdb_options* p) { p->segment_pages = 0; }, "segment_pages"},
               {[](cowbackup_lmdb_options* p) { p->max_rate_mb = -1; }, "max_rate_mb"},
               {[](cowbackup_lmdb_options* p) { p->max_rate_mb = 1e-9; }, "max_rate_mb"}};
  for (const Case& c : cases) {
    cowbackup_lmdb_options bad = o;
    c.set(&bad);
    cowbackup_lmdb_result result;
    result.txnid = 77;
    EXPECT_EQ(cowbackup_lmdb_backup(cb, (dir_ / "c.cowbak").c_str(), &bad, &result, &err),
              COWBACKUP_INVALID_ARGUMENT)
        << c.named;
    ASSERT_NE(err, nullptr);
    EXPECT_NE(std::string(err).find(c.named), std::string::npos) << err;
    EXPECT_EQ(result.txnid, 0u);
    cowbackup_free(err);
  }
  EXPECT_EQ(cowbackup_lmdb_backup(cb, nullptr, nullptr, nullptr, &err), COWBACKUP_INVALID_ARGUMENT);
  cowbackup_free(err);
  EXPECT_EQ(cowbackup_lmdb_backup(nullptr, "x", nullptr, nullptr, nullptr), COWBACKUP_INVALID_ARGUMENT);
  // An existing archive is kept unless overwrite says otherwise.
  ASSERT_EQ(cowbackup_lmdb_backup(cb, (dir_ / "d.cowbak").c_str(), &o, nullptr, nullptr), COWBACKUP_OK);
  EXPECT_NE(cowbackup_lmdb_backup(cb, (dir_ / "d.cowbak").c_str(), &o, nullptr, nullptr), COWBACKUP_OK);
  o.overwrite = 1;
  EXPECT_EQ(cowbackup_lmdb_backup(cb, (dir_ / "d.cowbak").c_str(), &o, nullptr, nullptr), COWBACKUP_OK);
  cowbackup_lmdb_detach(cb);
}

// The program holds a write txn; a backup starts and waits for the writer
// lock; a second write txn the program begins with plain mdb_txn_begin
// then waits at the T0 gate, not on LMDB's (unfair) mutex: the backup's
// T0 is the first txn's commit and the second commits after it.
TEST_F(LmdbCapiTest, WriterArrivingAfterTheBackupWaitsForT0) {
  PlainEnv env;
  ASSERT_EQ(env.Open(env_dir_, 0), 0);
  env.Write(10);
  cowbackup_lmdb* cb = nullptr;
  ASSERT_EQ(cowbackup_lmdb_attach(env.get(), &cb, nullptr), COWBACKUP_OK);
  std::atomic<bool> announced{false}, yielded{false};
  sync::SetCallback([&](const char* name) {
    const std::string n = name;
    if (n == "lmdb::TakeT0:announced") announced.store(true);
    if (n == "lmdb::Txn::Begin:yield") yielded.store(true);
  });
  auto put_one = [&](MDB_txn* txn, std::string key) {
    MDB_dbi dbi;
    MDB_val k{key.size(), key.data()}, v{1, const_cast<char*>("1")};
    return mdb_dbi_open(txn, nullptr, 0, &dbi) == 0 && mdb_put(txn, dbi, &k, &v, 0) == 0;
  };

  MDB_txn* first = nullptr;
  ASSERT_EQ(mdb_txn_begin(env.get(), nullptr, 0, &first), 0);
  ASSERT_TRUE(put_one(first, "first"));
  const uint64_t first_id = mdb_txn_id(first);

  cowbackup_lmdb_result result{};
  int code = -1;
  std::thread backup([&] { code = cowbackup_lmdb_backup(cb, (dir_ / "g.cowbak").c_str(), nullptr, &result, nullptr); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  EXPECT_TRUE(test::WaitFor([&] { return announced.load(); }, deadline)) << "the backup never announced itself";

  std::atomic<uint64_t> second_id{0};
  std::atomic<bool> second_ok{false};
  std::thread second([&] {
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env.get(), nullptr, 0, &txn) != 0) return;
    second_id.store(mdb_txn_id(txn));
    second_ok.store(put_one(txn, "second") && mdb_txn_commit(txn) == 0);
  });
  EXPECT_TRUE(test::WaitFor([&] { return yielded.load(); }, deadline))
      << "a write txn begun with mdb_txn_begin while a backup waited did not yield to it";
  EXPECT_EQ(second_id.load(), 0u) << "the second writer got the lock ahead of the backup";

  ASSERT_EQ(mdb_txn_commit(first), 0);
  backup.join();
  second.join();
  sync::SetCallback(nullptr);
  ASSERT_EQ(code, COWBACKUP_OK);
  EXPECT_TRUE(second_ok.load());
  EXPECT_EQ(result.txnid, first_id) << "T0 is the commit that held the lock when the backup arrived";
  EXPECT_EQ(second_id.load(), first_id + 1);
  cowbackup_lmdb_detach(cb);
}

// A program whose mdb_* calls resolve to liblmdb.so (linked ahead of
// cowbackup::lmdb) writes where no hook sees it: attach refuses it.
TEST_F(LmdbCapiTest, RefusesAnEnvOfAnotherLiblmdb) {
  std::string out;
  ASSERT_EQ(Shell(Sh(CAPI_WRONG_LINK) + " " + Sh(env_dir_) + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("attach: " + std::to_string(COWBACKUP_NOT_SUPPORTED) + " "), std::string::npos) << out;
  EXPECT_NE(out.find("liblmdb.so"), std::string::npos) << out;
}

// A C program writing through the C API takes part in a backup another
// process runs (`cowbackup backup`, through the coordination region): the
// backup succeeds (a writer that took no part would fail it as a foreign
// committer) and restores to exactly the state after one commit.
TEST_F(LmdbCapiTest, WriterProcessTakesPartInTheCliBackup) {
  const std::string ready = dir_ / "ready", stop = dir_ / "stop";
  const pid_t writer = test::Spawn([&] {
    execl(CAPI_WRITER, CAPI_WRITER, env_dir_.c_str(), ready.c_str(), stop.c_str(), (char*)nullptr);
    return 127;
  });
  const bool started = test::WaitFor([&] { return access(ready.c_str(), F_OK) == 0; },
                                     std::chrono::steady_clock::now() + std::chrono::seconds(120));
  std::string out;
  const int rc = started ? Shell("timeout 300 " + Sh(CliBinary()) + " backup --max-rate-mb 1 --segment-pages 4 " +
                                     Sh(env_dir_) + " " + Sh(dir_ / "cli.cowbak") + " 2>&1",
                                 &out)
                         : -1;
  close(open(stop.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  const int status = test::Wait(writer);
  ASSERT_TRUE(started) << "the writer never committed 1000 transactions";
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer status " << status;
  ASSERT_EQ(rc, 0) << out;

  ASSERT_OK(RestoreTo(dir_ / "cli.cowbak", dir_ / "restored"));
  std::string dump;
  ASSERT_EQ(Shell("mdb_dump -p " + Sh(dir_ / "restored") + " | sed -n '/^HEADER=END$/,/^DATA=END$/p'", &dump), 0);
  // The state after commit N (capi_writer.c): count = N, and key s holds
  // the value of the last commit n <= N with n % 500 == s.
  const size_t at = dump.find(" count\n ");
  ASSERT_NE(at, std::string::npos) << dump.substr(0, 200);
  const long n_at_t0 = std::stol(dump.substr(at + 8));
  ASSERT_GE(n_at_t0, 1000);
  std::string expected = "HEADER=END\n count\n " + std::to_string(n_at_t0) + "\n";
  for (long s = 0; s < 500; ++s) {
    const long n = n_at_t0 - ((n_at_t0 - s) % 500 + 500) % 500;
    if (n < 1) continue;
    char key[32];
    snprintf(key, sizeof key, "key%03ld", s);
    expected += std::string(" ") + key + "\n value-" + std::to_string(n) + "\n";
  }
  expected += "DATA=END\n";
  EXPECT_EQ(dump, expected);
}

}  // namespace
}  // namespace cowbackup::lmdb::testing
