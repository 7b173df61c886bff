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
// and the several-process scenario of issue 12 (BM_LmdbCliUnderWriterProcesses):
//
//   the same env, 3 writer processes (each its own Env through the cowbackup
//   LMDB library, taking part in any process's backup) committing 10-put
//   transactions without pause, and `cowbackup backup ENVDIR ARCHIVE` run as
//   a process of its own: its time against its idle time, the longest wait
//   it added to a write in any process (max_write_wait_us), the writers'
//   throughput and longest commit during it against before, and data.mdb's
//   growth during it against the same with the `mdb_copy` program (one read
//   txn for the whole copy) run instead, both unthrottled and both paced
//   to COWBACKUP_LMDB_BENCH_RATE (cowbackup's --max-rate-mb; mdb_copy to
//   its stdout, a pipe drained at that rate), where a copy lasts long
//   enough for the difference to show. Runs alternate cowbackup and
//   mdb_copy; medians and the spread (min..max) are in the counters.
//
// Environment:
//   COWBACKUP_LMDB_BENCH_KEYS    keys (default 1000000; `make bench` smoke: less)
//   COWBACKUP_LMDB_BENCH_RATE    throttle in MB/s (default 100)
//   COWBACKUP_LMDB_BENCH_NOSYNC  1: MDB_NOSYNC writer (default 0: durable commits)
//   COWBACKUP_LMDB_BENCH_RUNS    several-process runs of each copier (default 3)
//   COWBACKUP_BUILD_DIR          where build/cowbackup is (bench/run.sh sets it)
//   COWBACKUP_BENCH_DIR          where the env lives (default $TMPDIR or /tmp)
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
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


// ---------------------------------------------------------------------------
// Issue 12: writer processes. Their counters live in a shared anonymous
// mapping; each process opens the env itself after the fork (an Env, and
// its region attachment, must not cross a fork).

constexpr int kWriterProcs = 3;
struct ProcCounters {
  std::atomic<int> phase{0};  // 0 run, 1 count (the window), 2 stop
  std::atomic<uint64_t> commits[kWriterProcs];
  std::atomic<uint64_t> max_ns[kWriterProcs];
  std::atomic<uint64_t> max_begin_ns[kWriterProcs];  // Txn::Begin: the writer gate and LMDB's mutex
  std::atomic<int> failed{0};
};

struct Window {
  double tps = 0, max_ms = 0, max_begin_ms = 0, seconds = 0;
};

void RaiseTo(std::atomic<uint64_t>& max, uint64_t v) {
  uint64_t prev = max.load();
  while (v > prev && !max.compare_exchange_weak(prev, v)) {
  }
}

class WriterProcesses {
 public:
  WriterProcesses(const std::string& envdir, uint64_t keys, bool nosync) {
    void* p = mmap(nullptr, sizeof(ProcCounters), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) exit(1);
    c_ = new (p) ProcCounters();
    fflush(nullptr);
    for (int i = 0; i < kWriterProcs; i++) {
      const pid_t pid = fork();
      if (pid == 0) _exit(Run(envdir, keys, nosync, i));
      pids_.push_back(pid);
    }
  }
  ~WriterProcesses() {
    c_->phase = 2;
    for (pid_t pid : pids_) waitpid(pid, nullptr, 0);
    if (c_->failed.load() != 0) {
      fprintf(stderr, "lmdb_bench: a writer process failed\n");
      exit(1);
    }
    munmap(c_, sizeof(ProcCounters));
  }
  void open_window() {
    for (int i = 0; i < kWriterProcs; i++) c_->commits[i] = 0, c_->max_ns[i] = 0, c_->max_begin_ns[i] = 0;
    start_ = Clock::now();
    c_->phase = 1;
  }
  Window close_window() {
    c_->phase = 0;
    Window w;
    w.seconds = Seconds(start_);
    uint64_t n = 0, max_ns = 0, max_begin_ns = 0;
    for (int i = 0; i < kWriterProcs; i++) {
      n += c_->commits[i];
      max_ns = std::max<uint64_t>(max_ns, c_->max_ns[i]);
      max_begin_ns = std::max<uint64_t>(max_begin_ns, c_->max_begin_ns[i]);
    }
    w.tps = double(n) / w.seconds;
    w.max_ms = double(max_ns) / 1e6;
    w.max_begin_ms = double(max_begin_ns) / 1e6;
    return w;
  }

 private:
  int Run(const std::string& envdir, uint64_t keys, bool nosync, int i) {
    alarm(3600);  // never outlive the bench
    std::unique_ptr<cl::Env> env;
    cl::EnvOptions eo;
    eo.flags = nosync ? cl::kNoSync : 0;
    eo.map_size = 64ull << 30;
    cowbackup::Status s = cl::Env::Open(envdir, eo, &env);
    if (s.ok()) s = env->coordination();  // it takes part in the CLI's jobs
    cl::Dbi dbi;
    if (s.ok()) {
      cl::Txn txn;
      s = cl::Txn::Begin(*env, &txn, true);
      if (s.ok()) s = cl::Dbi::Open(txn, nullptr, 0, &dbi);
      if (s.ok()) s = txn.commit();
    }
    std::mt19937_64 rng(1000 + uint64_t(i));
    while (s.ok() && c_->phase.load() != 2) {
      const auto t0 = Clock::now();
      cl::Txn txn;
      s = cl::Txn::Begin(*env, &txn);
      const auto begun = Clock::now();
      for (int k = 0; s.ok() && k < 10; ++k) s = txn.put(dbi, Key(rng() % keys), Value(rng, 900));
      if (s.ok()) s = txn.commit();
      if (s.ok() && c_->phase.load() == 1) {
        const auto ns = [](auto d) { return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()); };
        c_->commits[i]++;
        RaiseTo(c_->max_ns[i], ns(Clock::now() - t0));
        RaiseTo(c_->max_begin_ns[i], ns(begun - t0));
      }
    }
    if (!s.ok()) {
      fprintf(stderr, "lmdb_bench: writer %d: %s\n", i, s.ToString().c_str());
      c_->failed = 1;
      return 1;
    }
    return 0;
  }

  ProcCounters* c_ = nullptr;
  std::vector<pid_t> pids_;
  Clock::time_point start_;
};

// A command's wall time; its stdout in *out. Exits the bench on failure.
double RunTimed(const std::string& cmd, std::string* out = nullptr) {
  const auto t0 = Clock::now();
  FILE* f = popen(cmd.c_str(), "r");
  std::string text;
  char buf[4096];
  size_t n;
  while (f != nullptr && (n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const int rc = f != nullptr ? pclose(f) : -1;
  const double s = Seconds(t0);
  if (rc != 0) {
    fprintf(stderr, "lmdb_bench: %s failed: %s\n", cmd.c_str(), text.c_str());
    exit(1);
  }
  if (out != nullptr) *out = text;
  return s;
}

// A JSON number field of the CLI's summary; 0 if absent.
double JsonNumber(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  return at == std::string::npos ? 0 : strtod(json.c_str() + at + key.size() + 3, nullptr);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Median, and min..max, for the table and the counters.
void Put(benchmark::State& state, const std::string& name, const std::vector<double>& v) {
  state.counters[name] = Median(v);
  state.counters[name + "_min"] = *std::min_element(v.begin(), v.end());
  state.counters[name + "_max"] = *std::max_element(v.begin(), v.end());
}
std::string Spread(const std::vector<double>& v, const char* fmt) {
  char a[64], b[64], c[64];
  snprintf(a, sizeof a, fmt, Median(v));
  snprintf(b, sizeof b, fmt, *std::min_element(v.begin(), v.end()));
  snprintf(c, sizeof c, fmt, *std::max_element(v.begin(), v.end()));
  return std::string(a) + " (" + b + " .. " + c + ")";
}

void BM_LmdbCliUnderWriterProcesses(benchmark::State& state) {
  const uint64_t keys = EnvU64("COWBACKUP_LMDB_BENCH_KEYS", 1000000);
  const bool nosync = EnvU64("COWBACKUP_LMDB_BENCH_NOSYNC", 0) != 0;
  const int runs = int(std::max<uint64_t>(1, EnvU64("COWBACKUP_LMDB_BENCH_RUNS", 3)));
  const char* build = getenv("COWBACKUP_BUILD_DIR");
  const std::string cli = std::string(build && *build ? build : ".") + "/cowbackup";
  const char* base = getenv("COWBACKUP_BENCH_DIR");
  if (!base || !*base) base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/cowbackup-lmdb-mp-bench-XXXXXX";
  if (!mkdtemp(tmpl.data())) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  const std::string dir = tmpl, envdir = dir + "/env", data = envdir + "/data.mdb";
  ::mkdir(envdir.c_str(), 0700);
  const std::string archive = dir + "/out.cbk", copydir = dir + "/mdb_copy.out";
  const std::string backup_cmd = "'" + cli + "' backup --json --force '" + envdir + "' '" + archive + "' 2>&1";
  const std::string copy_cmd = "mkdir -p '" + copydir + "' && mdb_copy '" + envdir + "' '" + copydir + "' 2>&1";
  const double rate = double(EnvU64("COWBACKUP_LMDB_BENCH_RATE", 100));
  const std::string paced_cmd = "'" + cli + "' backup --json --force --max-rate-mb " + std::to_string(rate) + " '" +
                                envdir + "' '" + archive + "' 2>&1";
  // mdb_copy to its stdout, drained at `rate`; its wall time.
  auto paced_copy = [&] {
    const auto t0 = Clock::now();
    FILE* f = popen(("mdb_copy '" + envdir + "'").c_str(), "r");
    if (f == nullptr) exit(1);
    DrainThrottled(fileno(f), rate);
    if (pclose(f) != 0) {
      fprintf(stderr, "lmdb_bench: mdb_copy to a pipe failed\n");
      exit(1);
    }
    return Seconds(t0);
  };

  // A fresh env (every run starts from the same file: mdb_copy's growth is
  // for good), loaded in this process and closed before the writers fork.
  auto load = [&] {
    (void)!system(("rm -rf '" + envdir + "' && mkdir -m 700 '" + envdir + "'").c_str());
    {
      std::unique_ptr<cl::Env> env;
      cl::EnvOptions eo;
      eo.flags = cl::kNoSync;
      eo.map_size = 64ull << 30;
      Check(cl::Env::Open(envdir, eo, &env), "open");
      cl::Dbi dbi;
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
      fprintf(stderr, "loaded %llu keys in %.1f s: data.mdb %.1f MB\n", (unsigned long long)keys, Seconds(t0),
              double(FileSize(data)) / 1e6);
    }
  };

  for (auto _ : state) {
    std::vector<double> idle;
    std::vector<double> during_s, vs_idle, wait_ms, begin_ms, share, base_max_ms, during_max_ms, cow_growth,
        copy_s, copy_share, copy_growth, copy_max_ms, base_begin_ms, during_begin_ms, copy_begin_ms, paced_s,
        paced_growth, paced_share, paced_copy_s, paced_copy_growth, paced_copy_share;
    std::vector<double> base_tps;
    for (int run = 0; run < runs; run++) {
      load();
      if (run == 0) {
        for (int i = 0; i < 3; i++) {
          idle.push_back(RunTimed(backup_cmd));
          ::unlink(archive.c_str());
        }
      }
      WriterProcesses writers(envdir, keys, nosync);
      std::this_thread::sleep_for(std::chrono::seconds(3));  // the free list's steady state
      writers.open_window();
      std::this_thread::sleep_for(std::chrono::seconds(3));
      const Window before = writers.close_window();
      base_tps.push_back(before.tps);
      {
        // cowbackup from the CLI.
        uint64_t s0 = FileSize(data);
        writers.open_window();
        std::string out;
        const double t = RunTimed(backup_cmd, &out);
        Window w = writers.close_window();
        cow_growth.push_back(double(FileSize(data)) - double(s0));
        ::unlink(archive.c_str());
        during_s.push_back(t);
        vs_idle.push_back(t / Median(idle));
        wait_ms.push_back(JsonNumber(out, "max_write_wait_us") / 1000);
        begin_ms.push_back(JsonNumber(out, "begin_lock_us") / 1000);
        share.push_back(100 * w.tps / before.tps);
        during_max_ms.push_back(w.max_ms);
        during_begin_ms.push_back(w.max_begin_ms);
        // The writers alone for as long, between the copies.
        writers.open_window();
        std::this_thread::sleep_for(std::chrono::duration<double>(t));
        const Window alone = writers.close_window();
        base_max_ms.push_back(alone.max_ms);
        base_begin_ms.push_back(alone.max_begin_ms);
        // mdb_copy (the program) instead.
        s0 = FileSize(data);
        writers.open_window();
        const double tc = RunTimed(copy_cmd);
        w = writers.close_window();
        copy_growth.push_back(double(FileSize(data)) - double(s0));
        (void)!system(("rm -rf '" + copydir + "'").c_str());
        copy_s.push_back(tc);
        copy_share.push_back(100 * w.tps / before.tps);
        copy_max_ms.push_back(w.max_ms);
        copy_begin_ms.push_back(w.max_begin_ms);
        // Both paced to `rate`.
        s0 = FileSize(data);
        writers.open_window();
        paced_s.push_back(RunTimed(paced_cmd));
        w = writers.close_window();
        paced_growth.push_back(double(FileSize(data)) - double(s0));
        paced_share.push_back(100 * w.tps / before.tps);
        ::unlink(archive.c_str());
        s0 = FileSize(data);
        writers.open_window();
        paced_copy_s.push_back(paced_copy());
        w = writers.close_window();
        paced_copy_growth.push_back(double(FileSize(data)) - double(s0));
        paced_copy_share.push_back(100 * w.tps / before.tps);
      }
    }
    const double size0 = double(FileSize(data));  // the last run's, grown by mdb_copy
    printf("\nLMDB, %d writer processes: %llu keys x 900 B, data.mdb %.2f GB at the end, 10-put "
           "transactions without pause (%s), `cowbackup backup` from the CLI; %d runs, each on a fresh env: "
           "median (min .. max)\n",
           kWriterProcs, (unsigned long long)keys, size0 / 1e9, nosync ? "MDB_NOSYNC" : "durable commits", runs);
    printf("  %-58s %s\n", "cowbackup backup, idle (3 runs)", Spread(idle, "%.2f s").c_str());
    printf("  %-58s %s\n", "cowbackup backup under the writers", Spread(during_s, "%.2f s").c_str());
    printf("  %-58s %s\n", "  time vs idle", Spread(vs_idle, "%.2fx").c_str());
    printf("  %-58s %s\n", "  longest wait added to a write (max_write_wait_us)", Spread(wait_ms, "%.3f ms").c_str());
    printf("  %-58s %s\n", "  writer lock held at T0 (begin_lock_us)", Spread(begin_ms, "%.3f ms").c_str());
    printf("  %-58s %s\n", "  writers' throughput during vs before", Spread(share, "%.0f %%").c_str());
    printf("  %-58s %s\n", "  writers' commits/s before (all 3)", Spread(base_tps, "%.0f").c_str());
    printf("  %-58s %s / %s\n", "  writers' longest commit during / alone as long",
           Spread(during_max_ms, "%.1f ms").c_str(), Spread(base_max_ms, "%.1f ms").c_str());
    printf("  %-58s %s / %s\n", "  of which in Txn::Begin (writer gate, LMDB's mutex)",
           Spread(during_begin_ms, "%.1f ms").c_str(), Spread(base_begin_ms, "%.1f ms").c_str());
    printf("  %-58s %s\n", "  data.mdb growth during the backup", Spread(cow_growth, "%.0f B").c_str());
    printf("  %-58s %s\n", "mdb_copy (program) under the writers", Spread(copy_s, "%.2f s").c_str());
    printf("  %-58s %s\n", "  writers' throughput during vs before", Spread(copy_share, "%.0f %%").c_str());
    printf("  %-58s %s\n", "  writers' longest commit during", Spread(copy_max_ms, "%.1f ms").c_str());
    printf("  %-58s %s\n", "  of which in Txn::Begin", Spread(copy_begin_ms, "%.1f ms").c_str());
    printf("  %-58s %s\n", "  data.mdb growth during the copy", Spread(copy_growth, "%.0f B").c_str());
    char paced[96];
    snprintf(paced, sizeof paced, "paced to %.0f MB/s: cowbackup backup", rate);
    printf("  %-58s %s\n", paced, Spread(paced_s, "%.2f s").c_str());
    printf("  %-58s %s\n", "  writers' throughput during vs before", Spread(paced_share, "%.0f %%").c_str());
    printf("  %-58s %s\n", "  data.mdb growth", Spread(paced_growth, "%.0f B").c_str());
    snprintf(paced, sizeof paced, "paced to %.0f MB/s: mdb_copy to a pipe", rate);
    printf("  %-58s %s\n", paced, Spread(paced_copy_s, "%.2f s").c_str());
    printf("  %-58s %s\n", "  writers' throughput during vs before", Spread(paced_copy_share, "%.0f %%").c_str());
    printf("  %-58s %s\n", "  data.mdb growth", Spread(paced_copy_growth, "%.0f B").c_str());
    printf("  %-58s %.2f %% (unthrottled: %.0f B vs %.0f B)\n\n",
           "cowbackup's growth against mdb_copy's, paced (medians)",
           Median(paced_copy_growth) > 0 ? 100 * Median(paced_growth) / Median(paced_copy_growth) : 0.0,
           Median(cow_growth), Median(copy_growth));
    Put(state, "idle_s", idle);
    Put(state, "vs_idle", vs_idle);
    Put(state, "max_write_wait_ms", wait_ms);
    Put(state, "tput_share_pct", share);
    Put(state, "cow_growth_bytes", cow_growth);
    Put(state, "mdb_copy_growth_bytes", copy_growth);
    Put(state, "paced_cow_growth_bytes", paced_growth);
    Put(state, "paced_mdb_copy_growth_bytes", paced_copy_growth);
    Put(state, "base_tps", base_tps);
    state.SetIterationTime(Median(during_s));
  }
  (void)!system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace

BENCHMARK(BM_LmdbScenario)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_LmdbCliUnderWriterProcesses)->Iterations(1)->Unit(benchmark::kSecond)->UseManualTime();
BENCHMARK_MAIN();
