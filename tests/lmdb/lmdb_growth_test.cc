// The point of the LMDB wrapper: a throttled backup under a continuous
// writer does not grow data.mdb, because it pins no page; LMDB's own hot
// copy (mdb_env_copyfd2, what mdb_copy runs) holds a read txn throughout,
// so every page freed meanwhile stays unusable and the file grows.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "lmdb_test_util.h"

namespace cowbackup::lmdb::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string Key(uint64_t i) {
  char buf[24];
  snprintf(buf, sizeof buf, "k%010llu", (unsigned long long)i);
  return buf;
}

// Drains `fd` at `mb_per_s` (1e6 bytes) until end of input.
void DrainThrottled(int fd, double mb_per_s) {
  std::vector<char> buf(1 << 16);
  const auto start = Clock::now();
  uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n <= 0) break;
    total += uint64_t(n);
    const auto due = start + std::chrono::duration<double>(double(total) / (mb_per_s * 1e6));
    std::this_thread::sleep_until(due);
  }
}

TEST(LmdbGrowth, ThrottledBackupDoesNotGrowTheFileLikeAReadTxnDoes) {
  TempDir dir;
  const uint64_t keys = UnderSanitizer() ? 8000 : 30000;
  const size_t kValueLen = 900;
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(dir.subdir("env"), EnvOpts(kNoSync, 4ull << 30), &env));
  Dbi dbi;
  {
    Txn txn;
    ASSERT_OK(Txn::Begin(*env, &txn));
    ASSERT_OK(Dbi::Open(txn, nullptr, 0, &dbi));
    for (uint64_t i = 0; i < keys; ++i) ASSERT_OK(txn.put(dbi, Key(i), SeqValue(i, kValueLen), kAppend));
    ASSERT_OK(txn.commit());
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> commits{0};
  std::thread writer([&] {  // continuous 10-put transactions over the whole key space
    std::mt19937_64 rng(7);
    while (!stop.load()) {
      Txn txn;
      ASSERT_OK(Txn::Begin(*env, &txn));
      for (int i = 0; i < 10; ++i) {
        const uint64_t k = rng() % keys;
        ASSERT_OK(txn.put(dbi, Key(k), SeqValue(rng(), kValueLen)));
      }
      ASSERT_OK(txn.commit());
      commits.fetch_add(1);
    }
  });
  // Let the free list reach its steady state first.
  std::this_thread::sleep_for(std::chrono::milliseconds(UnderSanitizer() ? 1500 : 1000));

  const std::string data = env->data_path();
  const double seconds = 1.5;
  const double rate = std::max(1.0, double(FileSize(data)) / seconds / 1e6);

  // 1. cowbackup, throttled.
  const uint64_t size0 = FileSize(data);
  const uint64_t commits0 = commits.load();
  auto t0 = Clock::now();
  BackupResult r;
  ASSERT_OK(env->backup(dir.path() + "/a.cowbak", Throttled(rate), &r));
  const double cow_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const uint64_t size1 = FileSize(data);
  const uint64_t cow_commits = commits.load() - commits0;

  // 2. LMDB's own hot copy at the same rate: a read txn held throughout.
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const uint64_t commits1 = commits.load();
  t0 = Clock::now();
  std::thread drain([&] { DrainThrottled(pipefd[0], rate); });
  Status copy = env->copy_to_fd(pipefd[1]);
  ::close(pipefd[1]);
  drain.join();
  ::close(pipefd[0]);
  const double copy_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const uint64_t size2 = FileSize(data);
  const uint64_t copy_commits = commits.load() - commits1;
  stop.store(true);
  writer.join();
  ASSERT_OK(copy);

  const double cow_growth = 100.0 * (double(size1) - double(size0)) / double(size0);
  const double copy_growth = 100.0 * (double(size2) - double(size1)) / double(size1);
  printf("throttle %.1f MB/s, %llu keys x %zu B, continuous 10-put writer (MDB_NOSYNC)\n", rate,
         (unsigned long long)keys, kValueLen);
  printf("  cowbackup:        %.2f s, %llu commits, data.mdb %llu -> %llu bytes: %+.2f%% "
         "(%llu pages preserved)\n",
         cow_s, (unsigned long long)cow_commits, (unsigned long long)size0,
         (unsigned long long)size1, cow_growth, (unsigned long long)r.summary.progress.pages_preserved);
  printf("  mdb_env_copyfd2:  %.2f s, %llu commits, data.mdb %llu -> %llu bytes: %+.2f%%\n", copy_s,
         (unsigned long long)copy_commits, (unsigned long long)size1, (unsigned long long)size2,
         copy_growth);
  EXPECT_LE(cow_growth, 1.0) << "a cowbackup backup must not pin pages";
  EXPECT_GT(copy_growth, 2.0) << "the read-txn copy should have grown the file (writer too slow?)";
  EXPECT_GT(cow_commits, 100u) << "the writer must keep committing during the backup";

  // And the backup is the T0 state.
  ASSERT_OK(RestoreTo(dir.path() + "/a.cowbak", dir.path() + "/restored"));
  std::string out;
  EXPECT_EQ(Shell("mdb_stat -efa '" + dir.path() + "/restored' 2>&1", &out), 0) << out;
  std::unique_ptr<Env> restored;
  ASSERT_OK(Env::Open(dir.path() + "/restored", EnvOpts(kReadOnly, 0), &restored));
  EnvInfo info;
  ASSERT_OK(restored->info(&info));
  EXPECT_EQ(info.last_txnid, r.txnid);
  EXPECT_EQ(info.entries, keys);
}

}  // namespace
}  // namespace cowbackup::lmdb::testing
