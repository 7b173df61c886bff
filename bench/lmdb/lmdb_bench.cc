// The LMDB scenario of issue 4, measured in one run:
//
//   an env of N keys x 900-byte values (N = 1,000,000: ~1.3 GiB by default),
//   a writer committing 10-put transactions without pause, and
//   1. writer alone                         -> p99 commit latency (baseline)
//   2. cowbackup throttled to 100 MB/s      -> data.mdb growth, p99 latency
//   3. mdb_env_copyfd2 (what mdb_copy runs: one read txn for the whole copy)
//      into a pipe drained at 100 MB/s      -> data.mdb growth, p99 latency
//   4. idle, unthrottled: cowbackup archive vs `dd conv=fsync` of data.mdb
//
// Environment:
//   COWBACKUP_LMDB_BENCH_KEYS    keys (default 1000000; `make bench` smoke: less)
//   COWBACKUP_LMDB_BENCH_RATE    throttle in MB/s (default 100)
//   COWBACKUP_LMDB_BENCH_NOSYNC  1: MDB_NOSYNC writer (default 0: durable commits)
//   COWBACKUP_BENCH_DIR          where the env lives (default $TMPDIR or /tmp)
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cowbackup/lmdb.hpp"

namespace cl = cowbackup::lmdb;
using Clock = std::chrono::steady_clock;

namespace {

uint64_t EnvU64(const char* name, uint64_t dflt) {
  const char* v = getenv(name);
  return v && *v ? strtoull(v, nullptr, 10) : dflt;
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
}

void Check(const cowbackup::Status& s, const char* what) {
  if (!s.ok()) {
    fprintf(stderr, "lmdb_bench: %s: %s\n", what, s.ToString().c_str());
    exit(1);
  }
}

std::string Key(uint64_t i) {
  char buf[24];
  snprintf(buf, sizeof buf, "k%010llu", (unsigned long long)i);
  return buf;
}

std::string Value(std::mt19937_64& rng, size_t len) {
  std::string v(len, '\0');
  for (size_t i = 0; i < len; i += 8) {
    const uint64_t x = rng();
    memcpy(&v[i], &x, std::min<size_t>(8, len - i));
  }
  return v;
}

// A writer committing 10-put transactions without pause; records commit
// latencies while `recording` is set.
class Writer {
 public:
  Writer(cl::Env* env, cl::Dbi dbi, uint64_t keys) : env_(env), dbi_(dbi), keys_(keys) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Writer() {
    stop_.store(true);
    thread_.join();
  }
  void Record(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    if (on) latencies_us_.clear();
    recording_ = on;
  }
  double P99Ms() {
    std::lock_guard<std::mutex> lock(mu_);
    if (latencies_us_.empty()) return 0;
    std::vector<double> v = latencies_us_;
    std::sort(v.begin(), v.end());
    return v[size_t(double(v.size() - 1) * 0.99)] / 1000.0;
  }
  size_t Commits() {
    std::lock_guard<std::mutex> lock(mu_);
    return latencies_us_.size();
  }

 private:
  void Loop() {
    std::mt19937_64 rng(42);
    while (!stop_.load()) {
      const auto t0 = Clock::now();
      cl::Txn txn;
      Check(cl::Txn::Begin(*env_, &txn), "writer: begin");
      for (int i = 0; i < 10; ++i) Check(txn.put(dbi_, Key(rng() % keys_), Value(rng, 900)), "writer: put");
      Check(txn.commit(), "writer: commit");
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      std::lock_guard<std::mutex> lock(mu_);
      if (recording_) latencies_us_.push_back(us);
    }
  }
  cl::Env* const env_;
  const cl::Dbi dbi_;
  const uint64_t keys_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  bool recording_ = false;
  std::vector<double> latencies_us_;
  std::thread thread_;
};

void DrainThrottled(int fd, double mb_per_s) {
  std::vector<char> buf(1 << 16);
  const auto start = Clock::now();
  uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n <= 0) break;
    total += uint64_t(n);
    std::this_thread::sleep_until(start + std::chrono::duration<double>(double(total) / (mb_per_s * 1e6)));
  }
}

double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void BM_LmdbScenario(benchmark::State& state) {
  const uint64_t keys = EnvU64("COWBACKUP_LMDB_BENCH_KEYS", 1000000);
  const double rate = double(EnvU64("COWBACKUP_LMDB_BENCH_RATE", 100));
  const bool nosync = EnvU64("COWBACKUP_LMDB_BENCH_NOSYNC", 0) != 0;
  const char* base = getenv("COWBACKUP_BENCH_DIR");
  if (!base || !*base) base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/cowbackup-lmdb-bench-XXXXXX";
  if (!mkdtemp(tmpl.data())) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  const std::string dir = tmpl, envdir = dir + "/env";
  ::mkdir(envdir.c_str(), 0700);

  for (auto _ : state) {
    std::unique_ptr<cl::Env> env;
    cl::EnvOptions eo;
    eo.flags = nosync ? cl::kNoSync : 0;
    eo.map_size = 64ull << 30;
    Check(cl::Env::Open(envdir, eo, &env), "open");
    cl::Dbi dbi;
    {
      std::mt19937_64 rng(1);
      const auto t0 = Clock::now();
      for (uint64_t i = 0; i < keys;) {
        cl::Txn txn;
        Check(cl::Txn::Begin(*env, &txn), "load: begin");
        if (i == 0) Check(cl::Dbi::Open(txn, nullptr, 0, &dbi), "dbi");
        for (uint64_t end = std::min(keys, i + 20000); i < end; ++i) {
          Check(txn.put(dbi, Key(i), Value(rng, 900), cl::kAppend), "load: put");
        }
        Check(txn.commit(), "load: commit");
      }
      Check(env->sync(true), "sync");
      fprintf(stderr, "loaded %llu keys in %.1f s: data.mdb %.1f MB\n", (unsigned long long)keys,
              Seconds(t0), double(FileSize(env->data_path())) / 1e6);
    }
    const std::string data = env->data_path();
    double base_p99 = 0, cow_p99 = 0, copy_p99 = 0, cow_s = 0, copy_s = 0;
    uint64_t s0, s1, s1p, s2, preserved = 0;
    size_t base_n, cow_n, copy_n, pipe_n;
    double pipe_s = 0, pipe_p99 = 0;
    {
      Writer writer(env.get(), dbi, keys);
      std::this_thread::sleep_for(std::chrono::seconds(3));  // free list steady state
      writer.Record(true);
      std::this_thread::sleep_for(std::chrono::seconds(5));
      base_p99 = writer.P99Ms();
      base_n = writer.Commits();

      s0 = FileSize(data);
      writer.Record(true);
      auto t0 = Clock::now();
      cowbackup::BackupOptions opts;
      opts.max_rate_mb = rate;
      cl::BackupResult r;
      Check(env->backup(dir + "/throttled.cowbak", opts, &r), "throttled backup");
      cow_s = Seconds(t0);
      cow_p99 = writer.P99Ms();
      cow_n = writer.Commits();
      preserved = r.summary.progress.pages_preserved;
      s1 = FileSize(data);
      ::unlink((dir + "/throttled.cowbak").c_str());

      // cowbackup streaming into a pipe drained (discarded) like the
      // mdb_copy run below: the same destination, no archive disk writes.
      int q[2];
      if (::pipe(q) != 0) exit(1);
      writer.Record(true);
      t0 = Clock::now();
      std::thread qdrain([&] { DrainThrottled(q[0], 1e6); });
      Check(env->backup_to_fd(q[1], opts), "throttled backup to a pipe");
      ::close(q[1]);
      qdrain.join();
      ::close(q[0]);
      pipe_s = Seconds(t0);
      pipe_p99 = writer.P99Ms();
      pipe_n = writer.Commits();
      s1p = FileSize(data);

      int p[2];
      if (::pipe(p) != 0) exit(1);
      writer.Record(true);
      t0 = Clock::now();
      std::thread drain([&] { DrainThrottled(p[0], rate); });
      Check(env->copy_to_fd(p[1]), "mdb_env_copyfd2");
      ::close(p[1]);
      drain.join();
      ::close(p[0]);
      copy_s = Seconds(t0);
      copy_p99 = writer.P99Ms();
      copy_n = writer.Commits();
      s2 = FileSize(data);
    }
    // Idle, unthrottled: data.mdb is in the page cache for both.
    const std::string dd = "dd if='" + data + "' of='" + dir + "/dd.out' bs=1M conv=fsync status=none";
    double dd_s = 1e9, idle_s = 1e9;
    for (int i = 0; i < 2; ++i) {
      auto t0 = Clock::now();
      if (system(dd.c_str()) != 0) exit(1);
      dd_s = std::min(dd_s, Seconds(t0));
      ::unlink((dir + "/dd.out").c_str());
      t0 = Clock::now();
      Check(env->backup(dir + "/idle.cowbak", cowbackup::BackupOptions{}), "idle backup");
      idle_s = std::min(idle_s, Seconds(t0));
      ::unlink((dir + "/idle.cowbak").c_str());
    }
    const double cow_growth = 100.0 * (double(s1) - double(s0)) / double(s0);
    const double pipe_growth = 100.0 * (double(s1p) - double(s1)) / double(s1);
    const double copy_growth = 100.0 * (double(s2) - double(s1p)) / double(s1p);
    printf("\nLMDB scenario: %llu keys x 900 B, data.mdb %.2f GB, 10-put writer (%s), throttle %.0f MB/s\n",
           (unsigned long long)keys, double(s0) / 1e9, nosync ? "MDB_NOSYNC" : "durable commits", rate);
    printf("  %-34s %10s %12s %10s %9s\n", "", "time s", "data.mdb", "growth", "p99 ms");
    printf("  %-34s %10s %12s %10s %9.2f  (%zu commits)\n", "writer alone", "", "", "", base_p99, base_n);
    printf("  %-34s %10.1f %12llu %+9.2f%% %9.2f  (%zu commits, %llu pages preserved)\n",
           "cowbackup -> archive file, throttled", cow_s, (unsigned long long)s1, cow_growth, cow_p99, cow_n,
           (unsigned long long)preserved);
    printf("  %-34s %10.1f %12llu %+9.2f%% %9.2f  (%zu commits)\n", "cowbackup -> pipe, throttled", pipe_s,
           (unsigned long long)s1p, pipe_growth, pipe_p99, pipe_n);
    printf("  %-34s %10.1f %12llu %+9.2f%% %9.2f  (%zu commits)\n", "mdb_env_copyfd2 -> pipe, throttled",
           copy_s, (unsigned long long)s2, copy_growth, copy_p99, copy_n);
    printf("  idle unthrottled: cowbackup archive %.2f s, dd conv=fsync %.2f s: ratio %.3f\n", idle_s, dd_s,
           idle_s / dd_s);
    printf("  p99 during backup / alone: %.2fx (archive file), %.2fx (pipe)\n\n",
           base_p99 > 0 ? cow_p99 / base_p99 : 0.0, base_p99 > 0 ? pipe_p99 / base_p99 : 0.0);
    state.counters["cow_growth_pct"] = cow_growth;
    state.counters["copy_growth_pct"] = copy_growth;
    state.counters["p99_ratio"] = base_p99 > 0 ? cow_p99 / base_p99 : 0;
    state.counters["idle_vs_dd"] = idle_s / dd_s;
  }
  (void)!system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace

BENCHMARK(BM_LmdbScenario)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK_MAIN();
