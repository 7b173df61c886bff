// The wrapper's RAII types, and the proof that no write to data.mdb escapes
// the hook: a shadow copy of the file, updated only from what the hook saw,
// must equal the real file after every kind of write LMDB makes.
#include <dirent.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>

#include <cstring>
#include <map>
#include <mutex>
#include <random>

#include "lmdb/env_impl.h"
#include "lmdb/io_intercept.h"
#include "lmdb_test_util.h"

namespace cowbackup::lmdb::testing {
namespace {

// Applies every intercepted write to an in-memory copy of data.mdb.
class ShadowFile final : public WriteObserver {
 public:
  explicit ShadowFile(std::string initial) : bytes_(std::move(initial)) {}
  void on_write(int fd, uint64_t offset, const struct iovec* iov, int iovcnt) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++writes_by_fd_[fd];
    if (iovcnt > 1) ++multi_iov_writes_;
    if (offset % page_size_ != 0 || (iovcnt == 1 && iov[0].iov_len % page_size_ != 0)) {
      ++partial_page_writes_;
    }
    for (int i = 0; i < iovcnt; ++i) {
      const size_t len = iov[i].iov_len;
      if (bytes_.size() < offset + len) bytes_.resize(offset + len, '\0');
      std::memcpy(bytes_.data() + offset, iov[i].iov_base, len);
      offset += len;
    }
  }
  void on_truncate(int, uint64_t new_size) override {
    std::lock_guard<std::mutex> lock(mu_);
    bytes_.resize(new_size, '\0');
  }
  std::string bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }
  void set_page_size(uint32_t p) { page_size_ = p; }
  std::map<int, uint64_t> writes_by_fd() const {
    std::lock_guard<std::mutex> lock(mu_);
    return writes_by_fd_;
  }
  uint64_t multi_iov_writes() const { return multi_iov_writes_; }
  uint64_t partial_page_writes() const { return partial_page_writes_; }

 private:
  mutable std::mutex mu_;
  std::string bytes_;
  uint32_t page_size_ = 4096;
  std::map<int, uint64_t> writes_by_fd_;
  uint64_t multi_iov_writes_ = 0;
  uint64_t partial_page_writes_ = 0;
};

// First index where two byte strings differ, as text for a failure message.
std::string FirstDifference(const std::string& a, const std::string& b, uint32_t page_size) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) {
      return "offset " + std::to_string(i) + ", page " + std::to_string(i / page_size);
    }
  }
  return "length " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
}

// A mix of every write LMDB makes: small puts (single-page pwrites and
// multi-page writev runs), values of several pages (overflow pages: long
// writev runs), deletes (page reuse), named databases, and the meta page
// of every commit.
void MixedWorkload(Env& env, int txns, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Txn txn;
  ASSERT_OK(Txn::Begin(env, &txn));
  Dbi main_db, side_db;
  ASSERT_OK(Dbi::Open(txn, nullptr, 0, &main_db));
  ASSERT_OK(Dbi::Open(txn, "side", kCreate | kDupSort, &side_db));
  ASSERT_OK(txn.commit());
  for (int t = 0; t < txns; ++t) {
    ASSERT_OK(Txn::Begin(env, &txn));
    const int puts = 1 + int(rng() % 40);
    for (int i = 0; i < puts; ++i) {
      const std::string key = "k" + std::to_string(rng() % 5000);
      const uint64_t kind = rng() % 20;
      if (kind == 0) {
        ASSERT_OK(txn.put(main_db, key, SeqValue(rng(), 4096 * (1 + rng() % 12))));  // overflow
      } else if (kind < 4) {
        Status s = txn.del(main_db, key);
        ASSERT_TRUE(s.ok() || IsNotFound(s)) << s.ToString();
      } else if (kind < 6) {
        ASSERT_OK(txn.put(side_db, key, SeqValue(rng(), 20)));
      } else {
        ASSERT_OK(txn.put(main_db, key, SeqValue(rng(), 50 + rng() % 900)));
      }
    }
    if (rng() % 10 == 0) {
      txn.abort();  // aborted txns write nothing, but may have spilled
    } else {
      ASSERT_OK(txn.commit());
    }
  }
}

TEST(LmdbWrapper, OpenPutGetCursorAndErrors) {
  TempDir dir;
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(dir.subdir("env"), EnvOpts(0, 1 << 20), &env));
  Txn txn;
  ASSERT_OK(Txn::Begin(*env, &txn));
  Dbi dbi;
  ASSERT_OK(Dbi::Open(txn, nullptr, 0, &dbi));
  ASSERT_OK(txn.put(dbi, "b", "2"));
  ASSERT_OK(txn.put(dbi, "a", "1"));
  ASSERT_OK(txn.put(dbi, "c", "3"));
  Status s = txn.put(dbi, "a", "x", kNoOverwrite);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.ToString().find("mdb_put: MDB_KEYEXIST"), std::string::npos) << s.ToString();
  ASSERT_OK(txn.commit());
  EXPECT_FALSE(txn.active());

  ASSERT_OK(Txn::Begin(*env, &txn, true));
  std::string_view v;
  ASSERT_OK(txn.get(dbi, "b", &v));
  EXPECT_EQ(v, "2");
  s = txn.get(dbi, "zz", &v);
  EXPECT_TRUE(IsNotFound(s));
  EXPECT_NE(s.ToString().find("mdb_get: MDB_NOTFOUND"), std::string::npos) << s.ToString();
  {
    Cursor c;
    ASSERT_OK(Cursor::Open(txn, dbi, &c));
    std::string_view k;
    std::string keys;
    for (s = c.first(&k, &v); s.ok(); s = c.next(&k, &v)) keys += std::string(k);
    EXPECT_TRUE(IsNotFound(s));
    EXPECT_EQ(keys, "abc");
    ASSERT_OK(c.seek("bb", &k, &v));
    EXPECT_EQ(k, "c");
    ASSERT_OK(c.last(&k, &v));
    EXPECT_EQ(k, "c");
    ASSERT_OK(c.prev(&k, &v));
    EXPECT_EQ(k, "b");
    Cursor moved = std::move(c);
    ASSERT_OK(moved.next(&k, &v));
    EXPECT_EQ(k, "c");
  }
  Txn moved = std::move(txn);
  EXPECT_FALSE(txn.active());
  EXPECT_TRUE(moved.active());
  moved.abort();

  // A full map is kNoSpace, naming the operation and the env.
  ASSERT_OK(Txn::Begin(*env, &txn));
  s = Status::OK();
  for (int i = 0; s.ok() && i < 100000; ++i) s = txn.put(dbi, "big" + std::to_string(i), std::string(2000, 'x'));
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_NE(s.ToString().find("MDB_MAP_FULL"), std::string::npos) << s.ToString();
  EXPECT_NE(s.ToString().find(env->path()), std::string::npos) << s.ToString();
  txn.abort();
  EnvInfo info;
  ASSERT_OK(env->info(&info));
  EXPECT_EQ(info.page_size, 4096u);
  EXPECT_EQ(info.entries, 3u);
}

TEST(LmdbWrapper, OpenMissingDirectoryFailsWithPath) {
  std::unique_ptr<Env> env;
  Status s = Env::Open("/nonexistent/cowbackup/env", EnvOptions{}, &env);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("mdb_env_open"), std::string::npos) << s.ToString();
  EXPECT_NE(s.ToString().find("/nonexistent/cowbackup/env"), std::string::npos) << s.ToString();
}

// Both of LMDB's descriptors of data.mdb are hooked, and nothing else.
TEST(LmdbIntercept, HooksMeFdAndTheMetaDescriptor) {
  TempDir dir;
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(dir.subdir("env"), EnvOpts(0, 1 << 22), &env));
  int me_fd = -1;
  ASSERT_EQ(mdb_env_get_fd(env->native_handle(), &me_fd), 0);
  struct stat data;
  ASSERT_EQ(::fstat(me_fd, &data), 0);
  int hooked = 0, dsync = 0, same_inode = 0;
  DIR* d = ::opendir("/proc/self/fd");
  ASSERT_NE(d, nullptr);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int fd = atoi(e->d_name);
    struct stat st;
    if (::fstat(fd, &st) != 0) continue;
    const bool mine = st.st_dev == data.st_dev && st.st_ino == data.st_ino;
    same_inode += mine;
    if (LookupFd(fd) != nullptr) {
      ++hooked;
      EXPECT_TRUE(mine) << "fd " << fd << " is hooked but is not data.mdb";
      if (::fcntl(fd, F_GETFL) & O_DSYNC) ++dsync;
    }
  }
  ::closedir(d);
  EXPECT_EQ(same_inode, 2);
  EXPECT_EQ(hooked, 2);
  EXPECT_EQ(dsync, 1) << "me_mfd (O_DSYNC) must be one of the hooked descriptors";
  EXPECT_NE(LookupFd(me_fd), nullptr);
  env.reset();
  EXPECT_EQ(LookupFd(me_fd), nullptr) << "closing the env unhooks its descriptors";
}

// Writes to other files pass straight through, unseen.
TEST(LmdbIntercept, OtherDescriptorsAreNotHooked) {
  TempDir dir;
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(dir.subdir("env"), EnvOpts(0, 1 << 22), &env));
  // Count what reaches the env's hook (the observer sees every intercepted
  // call; the idle write path keeps no counter of its own).
  struct Counter final : WriteObserver {
    std::atomic<int> calls{0};
    void on_write(int, uint64_t, const struct iovec*, int) override { calls++; }
    void on_truncate(int, uint64_t) override { calls++; }
  } counter;
  env->impl()->file.observer.store(&counter);
  const std::string other = dir.path() + "/other";
  const int fd = ::open(other.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(LookupFd(fd), nullptr);
  ASSERT_EQ(::pwrite(fd, "hello", 5, 4096), 5);
  struct iovec iov[2] = {{const_cast<char*>("ab"), 2}, {const_cast<char*>("cd"), 2}};
  ASSERT_EQ(::writev(fd, iov, 2), 4);
  ::close(fd);
  env->impl()->file.observer.store(nullptr);
  EXPECT_EQ(counter.calls.load(), 0);
}

// Every write a commit makes to data.mdb (pages, then the meta page) lands
// while the env's CommitSignal is up, and the signal is down between
// commits: what a yield_to_commits backup waits out.
TEST(LmdbIntercept, CommitsAreReportedToTheHook) {
  TempDir dir;
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(dir.subdir("env"), EnvOpts(0, 1 << 22), &env));
  const CommitSignal& commits = env->impl()->file.hook.commits;
  struct Check final : WriteObserver {
    explicit Check(const CommitSignal* c) : commits(c) {}
    const CommitSignal* commits;
    std::atomic<int> writes{0}, outside{0};
    void on_write(int, uint64_t, const struct iovec*, int) override {
      writes++;
      if (!commits->active()) outside++;
    }
    void on_truncate(int, uint64_t) override {}
  } check(&commits);
  env->impl()->file.observer.store(&check);
  for (int i = 0; i < 3; i++) {
    Txn txn;
    ASSERT_OK(Txn::Begin(*env, &txn));
    Dbi dbi;
    ASSERT_OK(Dbi::Open(txn, nullptr, 0, &dbi));
    ASSERT_OK(txn.put(dbi, "key" + std::to_string(i), std::string(3000, 'v')));
    EXPECT_FALSE(commits.active());
    ASSERT_OK(txn.commit());
    EXPECT_FALSE(commits.active());
  }
  env->impl()->file.observer.store(nullptr);
  EXPECT_GE(check.writes.load(), 6) << "each commit writes pages and a meta page";
  EXPECT_EQ(check.outside.load(), 0);
}

class NoWriteEscapes : public ::testing::TestWithParam<unsigned> {};

// The shadow file, built only from intercepted writes, equals data.mdb
// after thousands of transactions of every kind, map growth included.
TEST_P(NoWriteEscapes, ShadowOfInterceptedWritesEqualsTheFile) {
  TempDir dir;
  const std::string path = dir.subdir("env");
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(path, EnvOpts(GetParam(), 32 << 20, 4), &env));
  // mdb_env_open wrote the initial meta pages before the hook existed.
  ShadowFile shadow(ReadFile(env->data_path()));
  shadow.set_page_size(4096);
  env->impl()->file.observer.store(&shadow);
  // Synced commits cost two fsyncs each: fewer of them.
  const bool synced = !(GetParam() & kNoSync);
  const int txns = UnderSanitizer() || synced ? 300 : 1500;
  for (int round = 0; round < 3; ++round) {
    MixedWorkload(*env, txns, 17 + round);
    if (HasFatalFailure()) return;
    // Grow the map between rounds: later pages land past the old end.
    EnvInfo info;
    ASSERT_OK(env->info(&info));
    ASSERT_OK(env->set_map_size(info.map_size * 2));
    const std::string file = ReadFile(env->data_path());
    const std::string seen = shadow.bytes();
    ASSERT_TRUE(file == seen) << "a write escaped the hook: first difference at "
                              << FirstDifference(file, seen, 4096) << " after round " << round;
  }
  env->impl()->file.observer.store(nullptr);
  // What the test exercised: both descriptors, writev runs, sub-page
  // (meta) writes.
  const auto by_fd = shadow.writes_by_fd();
  EXPECT_EQ(by_fd.size(), (GetParam() & (kNoSync | kNoMetaSync)) ? 1u : 2u);
  EXPECT_GT(shadow.multi_iov_writes(), 0u);
  EXPECT_GT(shadow.partial_page_writes(), 0u);
}

// The shadow comparison does notice a write it did not see.
TEST_P(NoWriteEscapes, AnUnseenWriteIsDetected) {
  TempDir dir;
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(dir.subdir("env"), EnvOpts(GetParam(), 32 << 20, 4), &env));
  ShadowFile shadow(ReadFile(env->data_path()));
  env->impl()->file.observer.store(&shadow);
  MixedWorkload(*env, 50, 1);
  env->impl()->file.observer.store(nullptr);  // one commit goes unseen
  MixedWorkload(*env, 1, 2);
  EXPECT_NE(ReadFile(env->data_path()), shadow.bytes());
}

INSTANTIATE_TEST_SUITE_P(Flags, NoWriteEscapes,
                         ::testing::Values(0u, kNoSync, kNoMetaSync, kNoSync | kNoMetaSync | kNoLock),
                         [](const auto& info) {
                           switch (info.param) {
                             case 0: return std::string("Default");
                             case kNoSync: return std::string("NoSync");
                             case kNoMetaSync: return std::string("NoMetaSync");
                             default: return std::string("NoSyncNoLock");
                           }
                         });

}  // namespace
}  // namespace cowbackup::lmdb::testing
