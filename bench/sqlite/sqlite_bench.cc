// Issue 3's performance section, and issue 11's in WAL mode, side by side in
// one run, through the real build/cowbackup.so loaded into this process:
//
//   dd_conv_fsync        dd bs=1M conv=fsync of the database file
//   cowbackup_idle       SELECT cowbackup(plain) and (archive), no writer
//   cowbackup_writer     the same under a continuous writer: time vs idle,
//                        longest commit stall, writer throughput vs none
//   ideal_copy_writer    the floor for any copier on this disk: a raw
//                        O_DIRECT copy (no copy-on-write, no consistency)
//                        under the writer, by chunk size, and gated by an
//                        oracle that knows when the writer is committing
//   shim_overhead        writer throughput through the shim (no backup)
//                        vs the plain default VFS
//   dot_backup_writer    sqlite3_backup (the shell's .backup) under the
//                        writer, cut off at kCutoff x idle time
//   vacuum_into_writer   VACUUM INTO under the writer
//   cli_writer_procs     `cowbackup backup` (its own process) under 4 writer
//                        processes that take part in its job (issue 12):
//                        forks of this program through the cowbackup VFS
//                        (/0), or Debian's python3 under the preload
//                        library, py_update_writer.py (/1, issue 13)
//
// The writer commits 10-row UPDATE transactions without pause
// (synchronous=FULL) on its own connection. The live figures are taken in
// both journal modes (the benchmarks' last argument: 0 rollback journal,
// 1 WAL with the default autocheckpoint); in WAL mode they add the WAL's
// peak size during the copy (against an equal period of the same writer
// right after it, for cowbackup) and how long cowbackup held SQLite's WAL
// write lock at T0 and at its end check.
//
//   COWBACKUP_SQLITE_BENCH_MB   database size (default 1024; e.g. 64 for a
//                               smoke run)
//   COWBACKUP_BUILD_DIR         where cowbackup.so is (default: next to bench/)
//   COWBACKUP_SQLITE_BENCH_DEST directory the copies go to (default: beside
//                               the database, the same disk)
//   COWBACKUP_BENCH_QUICK       1: short measuring windows (make bench QUICK=1,
//                               and make test's smoke run)
//   COWBACKUP_BENCH_OUT         a directory: the figures as JSON
//                               (sqlite_figures.json) and, for the plots, the
//                               writer's commits and the WAL's size over time
//                               in the live scenarios (trace-*.csv); see
//                               bench/report.py
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backup/text.h"
#include "backup/wal_format.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kCutoff = 4.0;
constexpr double kPaceShare = 0.85;  // the automatic pacing's target in the bench  // .backup gives up after 4x cowbackup's idle time (>= 5 s)

std::string g_dir, g_db, g_ext, g_dest_dir;
std::string g_out;        // COWBACKUP_BENCH_OUT, "" if not set
double g_window_s = 3;    // the writer-alone windows (0.5 with COWBACKUP_BENCH_QUICK)
int g_rows = 0;
bool g_wal = false;  // the database's journal mode now (UseJournal)
// The final tables, one per journal mode: figure name -> value, printed in
// the order each figure was first set (a deque: Figure's references stay
// valid). Figure() writes to the current mode's.
std::deque<std::pair<std::string, std::string>> g_tables[2];

void Figure(const std::string& name, const std::string& value) {
  auto& table = g_tables[g_wal];
  for (auto& [n, v] : table) {
    if (n == name) {
      v = value;
      return;
    }
  }
  table.emplace_back(name, value);
}
void Figure(const std::string& name, double v, const char* fmt) {
  char b[64];
  snprintf(b, sizeof b, fmt, v);
  Figure(name, std::string(b));
}

// Milliseconds the disk holding the database has had I/O in flight
// (io_ticks, the 10th field of /sys/dev/block/M:m/stat); -1 if unknown.
double DiskBusyMs() {
  struct stat st;
  if (::stat(g_db.c_str(), &st) != 0) return -1;
  std::ifstream f("/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" +
                  std::to_string(minor(st.st_dev)) + "/stat");
  double field = -1;
  for (int i = 0; i < 10 && (f >> field); i++) {
  }
  return f ? field : -1;
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite_bench: %s: %s\n", sql.substr(0, 60).c_str(), err ? err : "?");
    std::exit(1);
  }
}

sqlite3* Open(const std::string& path, const char* vfs = nullptr) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
  sqlite3_busy_timeout(db, 60000);
  return db;
}

// ---------------------------------------------------------------------------
// The begin-time lock hold, timed from the unix VFS's own fcntl calls
// (replaced through its xSetSystemCall; cowbackup.so exports no sync
// points). SQLite's WAL write lock is byte 120 of the -shm file
// (UNIX_SHM_BASE + slot 0, os_unix.c), taken with F_SETLK; the main file's
// locks sit at 1 GiB. The writer thread takes it for every commit and is
// not timed. During a cowbackup() call every other hold is the backup's;
// the last is the end check's (EndCheckWal, after the checkpoint lock).
// T0's hold comes from the summary's begin_lock_us, which the front end
// measures around its whole begin-time instant. A hold is timed from the
// granting fcntl's return to the releasing one's.

thread_local bool t_is_writer = false;
thread_local Clock::time_point t_wal_locked_at;
int (*g_real_fcntl)(int, int, ...) = nullptr;
std::atomic<bool> g_probe_armed{false};
std::atomic<int64_t> g_end_hold_ns{-1};  // -1: not seen
constexpr off_t kShmWriteLockByte = 120;

int TimedFcntl(int fd, int op, ...) {
  va_list ap;
  va_start(ap, op);
  void* arg = va_arg(ap, void*);  // as glibc's fcntl reads it
  va_end(ap);
  const int rc = g_real_fcntl(fd, op, arg);
  if (op != F_SETLK || t_is_writer || rc != 0) return rc;
  const auto* fl = static_cast<const struct flock*>(arg);
  if (fl->l_whence != SEEK_SET || fl->l_start != kShmWriteLockByte) return rc;
  if (fl->l_type == F_WRLCK) {
    t_wal_locked_at = Clock::now();
  } else if (fl->l_type == F_UNLCK && t_wal_locked_at != Clock::time_point{}) {
    const int64_t ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t_wal_locked_at).count();
    t_wal_locked_at = {};
    if (g_probe_armed.load(std::memory_order_relaxed)) g_end_hold_ns = ns;
  }
  return rc;
}

void InstallLockProbe() {
  sqlite3_vfs* unix_vfs = sqlite3_vfs_find("unix");
  if (unix_vfs == nullptr || unix_vfs->iVersion < 3) return;
  g_real_fcntl = reinterpret_cast<int (*)(int, int, ...)>(unix_vfs->xGetSystemCall(unix_vfs, "fcntl"));
  const auto timed = reinterpret_cast<sqlite3_syscall_ptr>(&TimedFcntl);
  if (g_real_fcntl == nullptr || unix_vfs->xSetSystemCall(unix_vfs, "fcntl", timed) != SQLITE_OK) {
    g_real_fcntl = nullptr;
  }
}

// ---------------------------------------------------------------------------
// The WAL's size: SQLite's wal-index header (mxFrame) read from the -shm
// file. The -wal file itself only grows (a restart rewrites it from the
// start), so its size says nothing about a later window.

uint64_t WalBytes(uint32_t frames, uint32_t page_size) {
  return frames == 0 ? 0 : cowbackup::sqlite::WalFrameOffset(frames + 1, page_size);
}

// Samples mxFrame every millisecond while it lives; the largest since
// open_window().
class WalSampler {
 public:
  WalSampler() {
    thread_ = std::thread([this] {
      int fd = -1;
      while (!stop_.load()) {
        if (fd < 0) fd = ::open((g_db + "-shm").c_str(), O_RDONLY | O_CLOEXEC);
        uint8_t buf[cowbackup::sqlite::kWalIndexHeaderSize];
        cowbackup::sqlite::WalIndexHeader h;
        for (int attempt = 0; fd >= 0 && attempt < 10; attempt++) {
          if (::pread(fd, buf, sizeof buf, 0) != ssize_t(sizeof buf)) break;
          if (cowbackup::sqlite::ParseWalIndexHeader(buf, sizeof buf, "", &h).ok()) {
            page_size_.store(h.page_size);
            Record(h.max_frame);
            uint32_t peak = peak_.load();
            while (h.max_frame > peak && !peak_.compare_exchange_weak(peak, h.max_frame)) {
            }
            break;
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (fd >= 0) ::close(fd);
    });
  }
  ~WalSampler() {
    stop_ = true;
    thread_.join();
  }
  void open_window() { peak_.store(0); }
  // The peak since open_window(), in bytes of WAL.
  uint64_t peak_bytes() const { return WalBytes(peak_.load(), page_size_.load()); }
  // The WAL's size over the sampler's life, every 10 ms (for the plots).
  std::vector<std::pair<Clock::time_point, uint64_t>> series() {
    std::lock_guard<std::mutex> lock(mu_);
    return series_;
  }

 private:
  void Record(uint32_t frames) {
    const auto now = Clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    if (series_.empty() || now - series_.back().first >= std::chrono::milliseconds(10)) {
      series_.emplace_back(now, WalBytes(frames, page_size_.load()));
    }
  }

  std::mutex mu_;
  std::vector<std::pair<Clock::time_point, uint64_t>> series_;  // GUARDED_BY(mu_)
  std::atomic<bool> stop_{false};
  std::atomic<uint32_t> peak_{0}, page_size_{0};
  std::thread thread_;
};

// Switches the database to WAL or back to a rollback journal (DELETE), on a
// connection of its own: no other may be open.
void UseJournal(bool wal) {
  if (wal == g_wal) return;
  sqlite3* db = Open(g_db);
  sqlite3_stmt* st = nullptr;
  const char* mode = wal ? "wal" : "delete";
  sqlite3_prepare_v2(db, (std::string("PRAGMA journal_mode=") + mode).c_str(), -1, &st, nullptr);
  const bool ok = sqlite3_step(st) == SQLITE_ROW &&
                  strcmp(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), mode) == 0;
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (!ok) {
    std::fprintf(stderr, "sqlite_bench: cannot switch %s to journal_mode=%s\n", g_db.c_str(), mode);
    std::exit(1);
  }
  g_wal = wal;
}

void Setup() {
  InstallLockProbe();
  if (const char* q = getenv("COWBACKUP_BENCH_QUICK"); q != nullptr && strcmp(q, "1") == 0) g_window_s = 0.5;
  if (const char* out = getenv("COWBACKUP_BENCH_OUT"); out != nullptr) g_out = out;
  const char* mb_env = getenv("COWBACKUP_SQLITE_BENCH_MB");
  const int mb = mb_env ? std::max(4, atoi(mb_env)) : 1024;
  g_rows = mb * 256;  // one ~3.9 KB row per 4 KiB page
  char tmpl[] = "/tmp/cowbackup-sqlite-bench-XXXXXX";
  g_dir = mkdtemp(tmpl);
  g_db = g_dir + "/bench.db";
  const char* dest_env = getenv("COWBACKUP_SQLITE_BENCH_DEST");
  g_dest_dir = dest_env ? dest_env : g_dir;
  const char* build = getenv("COWBACKUP_BUILD_DIR");
  g_ext = std::string(build ? build : ".") + "/cowbackup";
  sqlite3* boot = Open(":memory:");
  sqlite3_enable_load_extension(boot, 1);
  char* err = nullptr;
  if (sqlite3_load_extension(boot, g_ext.c_str(), nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite_bench: load %s: %s (set COWBACKUP_BUILD_DIR)\n", g_ext.c_str(), err ? err : "?");
    std::exit(1);
  }
  sqlite3_close(boot);
  std::fprintf(stderr, "sqlite_bench: building a %d MB database in %s\n", mb, g_dir.c_str());
  sqlite3* db = Open(g_db);
  Exec(db, "PRAGMA page_size=4096; PRAGMA journal_mode=DELETE;"
           "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
           "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < " +
               std::to_string(g_rows) + ") INSERT INTO t SELECT i, randomblob(3900) FROM c;");
  sqlite3_close(db);
  // Warm page cache.
  (void)!system(("cat '" + g_db + "' > /dev/null").c_str());
}

// What a writer did in a window: commits/s, its longest commit, and in WAL
// mode the WAL's peak size.
struct WindowResult {
  double tps = 0, max_ms = 0;
  uint64_t wal_peak = 0;  // bytes
};

// One writer transaction's statements: 10 random rows rewritten (`st` is
// the prepared UPDATE, `x` the writer's xorshift state), after BEGIN IMMEDIATE.
void UpdateTenRows(sqlite3* db, sqlite3_stmt* st, uint64_t* x) {
  Exec(db, "BEGIN IMMEDIATE");
  for (int i = 0; i < 10; i++) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    sqlite3_bind_int64(st, 1, sqlite3_int64(*x % uint64_t(g_rows) + 1));
    sqlite3_step(st);
    sqlite3_reset(st);
  }
}

// The continuous writer: 10-row UPDATE transactions without pause. Every
// commit's [begin, end] is recorded, so a window's figures count a commit
// that was stuck across the whole window too (VACUUM INTO blocks it). In
// WAL mode the autocheckpoint runs inside its COMMIT, so a commit's time
// includes the checkpoint it ran.
struct Writer {
  std::atomic<bool> stop{false};
  std::atomic<bool> in_commit{false};  // inside COMMIT: the oracle the gated ideal copy uses
  std::mutex mu;
  std::vector<std::pair<Clock::time_point, Clock::time_point>> commits;  // GUARDED_BY(mu)
  Clock::time_point window_start;
  std::unique_ptr<WalSampler> wal;  // in WAL mode
  std::thread thread;

  explicit Writer(const char* vfs, bool sync_off = false) {
    if (g_wal) wal = std::make_unique<WalSampler>();
    thread = std::thread([this, vfs, sync_off] {
      t_is_writer = true;
      sqlite3* db = Open(g_db, vfs);
      // PERSIST: no journal unlink per commit, so no discard wait either.
      if (sync_off) Exec(db, "PRAGMA synchronous=OFF; PRAGMA journal_mode=PERSIST");
      sqlite3_stmt* st = nullptr;
      sqlite3_prepare_v2(db, "UPDATE t SET v = randomblob(3900) WHERE id = ?1", -1, &st, nullptr);
      uint64_t x = 88172645463325252ull;
      while (!stop) {
        const auto t0 = Clock::now();
        UpdateTenRows(db, st, &x);
        in_commit.store(true, std::memory_order_relaxed);
        Exec(db, "COMMIT");
        in_commit.store(false, std::memory_order_relaxed);
        std::lock_guard<std::mutex> lock(mu);
        commits.emplace_back(t0, Clock::now());
      }
      sqlite3_finalize(st);
      sqlite3_close(db);
    });
  }
  void open_window() {
    window_start = Clock::now();
    if (wal) wal->open_window();
  }
  // Commits/s ending inside [window_start, now], the longest commit
  // overlapping it (waits for the commit in flight at the end), and the
  // WAL's peak in it.
  WindowResult close_window() {
    WindowResult r;
    if (wal) r.wal_peak = wal->peak_bytes();
    const auto end = Clock::now();
    const auto give_up = end + std::chrono::seconds(60);
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!commits.empty() && commits.back().first >= end) break;
      }
      if (Clock::now() > give_up) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::lock_guard<std::mutex> lock(mu);
    int64_t n = 0;
    for (const auto& [b, e] : commits) {
      if (e >= window_start && e <= end) n++;
      if (e >= window_start && b <= end) {
        r.max_ms = std::max(r.max_ms, std::chrono::duration<double, std::milli>(e - b).count());
      }
    }
    r.tps = double(n) / std::chrono::duration<double>(end - window_start).count();
    return r;
  }
  ~Writer() {
    stop = true;
    thread.join();
  }
};

// For the plots (bench/report.py), with COWBACKUP_BENCH_OUT: the writer's
// commits around a copy that ran over [start, end], each as its end (s from
// `start`) and its latency (ms), in trace-<scenario>-<mode>-commits.dat;
// in WAL mode the WAL's size over the same time in ...-wal.dat. The copy's
// span is the first line of each. The writer keeps committing for a moment
// after the copy, so the plot shows it recover.
void Trace(const std::string& scenario, Writer* w, Clock::time_point start, Clock::time_point end) {
  if (g_out.empty()) return;
  std::this_thread::sleep_for(std::chrono::duration<double>(g_window_s / 3));
  const std::string base = g_out + "/trace-" + scenario + (g_wal ? "-wal" : "-rollback");
  auto at = [start](Clock::time_point t) { return std::chrono::duration<double>(t - start).count(); };
  const std::string span = "# copy " + std::to_string(0.0) + " " + std::to_string(at(end)) + "\n";
  {
    std::ofstream f(base + "-commits.dat");
    f << span << "# end_s latency_ms\n";
    std::lock_guard<std::mutex> lock(w->mu);
    for (const auto& [b, e] : w->commits) f << at(e) << " " << std::chrono::duration<double, std::milli>(e - b).count() << "\n";
  }
  if (w->wal) {
    std::ofstream f(base + "-wal.dat");
    f << span << "# t_s wal_mb\n";
    for (const auto& [t, bytes] : w->wal->series()) f << at(t) << " " << double(bytes) / 1e6 << "\n";
  }
}

// The writer alone for `seconds`: commits/s; its longest commit, the share
// of the time the disk was busy and the WAL's peak, if asked.
double WriterTps(double seconds, const char* vfs, bool sync_off, double* max_ms,
                 double* disk_busy = nullptr, uint64_t* wal_peak = nullptr) {
  Writer w(vfs, sync_off);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto t0 = Clock::now();
  const double busy0 = DiskBusyMs();
  w.open_window();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  if (disk_busy) *disk_busy = (DiskBusyMs() - busy0) / 1000 / Seconds(t0);
  const WindowResult r = w.close_window();
  if (max_ms) *max_ms = r.max_ms;
  if (wal_peak) *wal_peak = r.wal_peak;
  return r.tps;
}

// One SELECT cowbackup(); its wall time, the longest stall it added to an
// application write (the summary's max_write_wait_us) and, in WAL mode, how
// long it held the WAL write lock at T0 and at the end check (-1: not seen).
struct CowResult {
  double seconds = 0;
  double max_write_wait_ms = 0;
  double pace_min_mb = 0;  // the lowest rate automatic pacing set (0: none)
  double t0_hold_ms = -1, end_hold_ms = -1;
};
double g_idle_plain[2] = {0, 0};  // BM_CowbackupIdle/0/mode sets it: the clean idle figure

// The copy is left at its path until RemoveCopies(): deleting 1 GiB frees
// (and, on a disk mounted with discard, trims) its blocks in the next
// journal commit, which the writer's fsync would wait for inside the
// measured window.
// `pacing`: the JSON options that set it ("" for none), e.g.
// ",\"yield_to_commits\":true" or ",\"pace\":0.85".
CowResult Cowbackup(const std::string& format, int max_rate_mb = 0, const std::string& pacing = "") {
  sqlite3* db = Open(g_db);
  const std::string dest = g_dest_dir + "/out." + format;
  g_end_hold_ns = -1;
  g_probe_armed = true;
  const auto t0 = Clock::now();
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, ("SELECT cowbackup('" + dest + "', 'main', '{\"format\":\"" + format +
                          "\",\"max_rate_mb\":" + std::to_string(max_rate_mb) +
                          pacing + "}')").c_str(),
                     -1, &st, nullptr);
  if (sqlite3_step(st) != SQLITE_ROW) {
    std::fprintf(stderr, "sqlite_bench: cowbackup: %s\n", sqlite3_errmsg(db));
    std::exit(1);
  }
  CowResult r;
  r.seconds = Seconds(t0);
  g_probe_armed = false;
  if (g_end_hold_ns >= 0) r.end_hold_ms = double(g_end_hold_ns) / 1e6;
  const std::string summary = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  const size_t at = summary.find("\"max_write_wait_us\":");
  if (at != std::string::npos) r.max_write_wait_ms = std::stod(summary.substr(at + 20)) / 1000;
  const size_t pace = summary.find("\"pace_min_mb\":");
  if (pace != std::string::npos) r.pace_min_mb = std::stod(summary.substr(pace + 14));
  const size_t lock = summary.find("\"begin_lock_us\":");
  if (lock != std::string::npos) r.t0_hold_ms = std::stod(summary.substr(lock + 16)) / 1000;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return r;
}

void RemoveCopies() {
  for (const char* name : {"/out.plain", "/out.archive", "/ideal.copy"}) unlink((g_dest_dir + name).c_str());
}

// Every figure starts from a quiet disk: the freshly built 1 GiB database,
// a previous copy or the writer's commits would otherwise still be written
// back underneath the next measurement (idle times varied 5x without it).
void Quiesce() {
  RemoveCopies();
  ::sync();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
}

// cowbackup's idle plain-copy time, the "vs idle" reference: the clean
// figure BM_CowbackupIdle/0 measured, or one taken now on a quiet disk when
// a filter left that out.
double IdlePlain() {
  if (g_idle_plain[g_wal] == 0) {
    Quiesce();
    g_idle_plain[g_wal] = Cowbackup("plain").seconds;
  }
  return g_idle_plain[g_wal];
}

// Figures: "4.2 MB"; "0.123 ms" ("not seen" if negative).
std::string Mb(uint64_t bytes) {
  char b[32];
  snprintf(b, sizeof b, "%.1f MB", double(bytes) / 1e6);
  return b;
}
std::string Ms(double ms) {
  if (ms < 0) return "not seen";
  char b[32];
  snprintf(b, sizeof b, "%.3f ms", ms);
  return b;
}

void BM_DdConvFsync(benchmark::State& state) {
  UseJournal(false);
  for (auto _ : state) {
    Quiesce();
    const std::string dest = g_dir + "/dd.copy";
    const auto t0 = Clock::now();
    (void)!system(("dd if='" + g_db + "' of='" + dest + "' bs=1M conv=fsync status=none").c_str());
    const double s = Seconds(t0);
    state.SetIterationTime(s);
    unlink(dest.c_str());
    Figure("dd conv=fsync", s, "%.3f s");
  }
}

// range(0): archive; range(1): WAL mode.
void BM_CowbackupIdle(benchmark::State& state) {
  const std::string format = state.range(0) ? "archive" : "plain";
  UseJournal(state.range(1) != 0);
  for (auto _ : state) {
    // The best of three: one slow run (writeback of the freshly built file)
    // would otherwise flatter every "vs idle" ratio below.
    double s = 1e9, busy_s = 0;
    for (int run = 0; run < 3; run++) {
      Quiesce();
      const double busy0 = DiskBusyMs();
      const double t = Cowbackup(format).seconds;
      if (t < s) {
        s = t;
        busy_s = (DiskBusyMs() - busy0) / 1000;
      }
    }
    state.SetIterationTime(s);
    Figure("cowbackup idle (" + format + ")", s, "%.3f s");
    if (format == "plain") {
      g_idle_plain[g_wal] = s;
      Figure("  disk busy, idle backup (plain, io_ticks)", busy_s, "%.2f s");
    }
  }
}

// A copy run under the continuous writer, against the writer alone measured
// just before it. In WAL mode, with `after`, the same writer goes on for an
// equal period once the copy is done: the WAL's peak without a copy.
struct UnderWriterResult {
  double seconds = 0, tps_ratio = 0, max_ms = 0, base_tps = 0, base_ms = 0, base_disk_busy = 0;
  uint64_t wal_peak = 0, base_wal_peak = 0, after_wal_peak = 0;  // bytes
};
template <typename Copy>
UnderWriterResult UnderWriter(Copy copy, bool after = false, const char* trace = nullptr) {
  UnderWriterResult r;
  Quiesce();
  r.base_tps = WriterTps(g_window_s, nullptr, false, &r.base_ms, &r.base_disk_busy, &r.base_wal_peak);
  Quiesce();
  Writer w(nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = Clock::now();
  w.open_window();
  copy(&w);
  r.seconds = Seconds(t0);
  const auto copy_end = Clock::now();
  const WindowResult during = w.close_window();
  r.tps_ratio = during.tps / r.base_tps;
  r.max_ms = during.max_ms;
  r.wal_peak = during.wal_peak;
  if (after && g_wal) {
    w.open_window();
    std::this_thread::sleep_for(std::chrono::duration<double>(r.seconds));
    r.after_wal_peak = w.close_window().wal_peak;
  }
  if (trace != nullptr) Trace(trace, &w, t0, copy_end);
  return r;
}

// range(0): max_rate_mb (0 = unlimited); range(1): 1 yield_to_commits,
// 2 automatic pacing at kPaceShare; range(2): WAL mode. The throttled,
// yielding and paced runs show what each buys
// the writer on a disk the two share.
void BM_CowbackupUnderWriter(benchmark::State& state) {
  const int rate = int(state.range(0));
  const bool yield = state.range(1) != 0;  // one of the commit-aware modes
  const bool pace = state.range(1) == 2;
  UseJournal(state.range(2) != 0);
  const std::string at = pace   ? "  pace " + std::to_string(kPaceShare).substr(0, 4) + ": "
                         : yield ? "  yield_to_commits: "
                         : rate ? "  max_rate_mb=" + std::to_string(rate) + ": "
                                : "  ";
  for (auto _ : state) {
    // Against the idle time measured on a quiet file, not one taken right
    // after the writer's load, while writeback still runs.
    const double idle = IdlePlain();
    CowResult cow;
    const UnderWriterResult r =
        UnderWriter([&](Writer*) { cow = Cowbackup("plain", rate, pace    ? ",\"pace\":" + std::to_string(kPaceShare)
                                                               : yield ? ",\"yield_to_commits\":true"
                                                                       : ""); },
                    /*after=*/true, rate == 0 && !yield ? "cowbackup" : pace ? "cowbackup_paced" : nullptr);
    state.counters["max_hook_wait_ms"] = cow.max_write_wait_ms;
    state.SetIterationTime(r.seconds);
    state.counters["vs_idle"] = r.seconds / idle;
    state.counters["max_commit_ms"] = r.max_ms;
    state.counters["writer_tps_ratio"] = r.tps_ratio;
    if (rate == 0 && !yield) {
      Figure("cowbackup under writer", r.seconds, "%.3f s");
      Figure("  longest stall cowbackup added to a write", cow.max_write_wait_ms, "%.2f ms");
      Figure("  writer's longest commit, no backup", r.base_ms, "%.1f ms");
      Figure("  writer throughput, no backup", r.base_tps, "%.1f commits/s");
      Figure("  disk busy, writer alone (io_ticks)", 100 * r.base_disk_busy, "%.0f %% of the time");
    }
    Figure(at + "time vs idle", r.seconds / idle, "%.2fx");
    Figure(at + "writer's longest commit", r.max_ms, "%.1f ms");
    Figure(at + "writer throughput vs no backup", 100 * r.tps_ratio, "%.0f %%");
    if (pace) Figure(at + "lowest rate it set", cow.pace_min_mb, "%.1f MB/s");
    if (g_wal) {
      // Against an equal period of the same writer right after the backup.
      const double ratio = double(r.wal_peak) / double(std::max<uint64_t>(r.after_wal_peak, 1));
      state.counters["wal_peak_ratio"] = ratio;
      state.counters["t0_lock_ms"] = cow.t0_hold_ms;
      char x[32];
      snprintf(x, sizeof x, " (%.2fx)", ratio);
      Figure(at + "WAL peak: during / equal period after",
             Mb(r.wal_peak) + " / " + Mb(r.after_wal_peak) + x);
      Figure(at + "WAL write lock held: T0 / end check",
             Ms(cow.t0_hold_ms) + " / " + Ms(cow.end_hold_ms));
      if (rate == 0 && !yield) {
        Figure("  WAL peak, writer alone", Mb(r.base_wal_peak));
      } else {
        Figure(at + "longest stall cowbackup added to a write", cow.max_write_wait_ms, "%.2f ms");
      }
    }
  }
}

// The floor for any copier on this disk: a raw O_DIRECT copy of the file in
// `chunk` bytes (no copy-on-write, no consistency, no framing) under the same
// writer. With `gate`, each chunk waits until the writer is not inside COMMIT
// -- an oracle no real copier has, so the best any pacing could do. If no
// row here keeps the writer at 85 % within 1.3x cowbackup's idle time, no
// copier on this disk can.
double IdealCopy(size_t chunk, const std::atomic<bool>* gate) {
  const std::string dest = g_dest_dir + "/ideal.copy";
  const int in = ::open(g_db.c_str(), O_RDONLY);
  const int out = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0600);
  void* buf = nullptr;
  if (in < 0 || out < 0 || posix_memalign(&buf, 4096, chunk) != 0) {
    std::fprintf(stderr, "sqlite_bench: ideal copy: cannot open %s or %s\n", g_db.c_str(), dest.c_str());
    std::exit(1);
  }
  const auto t0 = Clock::now();
  ssize_t n;
  for (off_t at = 0; (n = ::pread(in, buf, chunk, at)) > 0; at += n) {
    while (gate && gate->load(std::memory_order_relaxed)) std::this_thread::yield();
    if (::pwrite(out, buf, size_t(n), at) != n) {
      std::fprintf(stderr, "sqlite_bench: ideal copy: write %s failed\n", dest.c_str());
      std::exit(1);
    }
  }
  ::fsync(out);
  const double s = Seconds(t0);
  ::close(out);
  ::close(in);
  std::free(buf);
  return s;  // the copy stays until RemoveCopies(), outside the window
}

// range(0): chunk KiB; range(1): gated on the writer's commits.
void BM_IdealCopyUnderWriter(benchmark::State& state) {
  const size_t chunk = size_t(state.range(0)) << 10;
  const bool gated = state.range(1) != 0;
  UseJournal(false);
  for (auto _ : state) {
    const double idle = IdlePlain();
    double s = 0;
    const UnderWriterResult r = UnderWriter([&](Writer* w) { s = IdealCopy(chunk, gated ? &w->in_commit : nullptr); });
    state.SetIterationTime(s);
    state.counters["vs_idle"] = s / idle;
    state.counters["writer_tps_ratio"] = r.tps_ratio;
    Figure("ideal O_DIRECT copy under writer (no consistency), by chunk:", "");
    const std::string at = "  " + std::to_string(state.range(0)) + " KiB" + (gated ? ", gated" : "") + ": ";
    Figure(at + "time vs cowbackup idle", s / idle, "%.2fx");
    Figure(at + "writer throughput", 100 * r.tps_ratio, "%.0f %%");
  }
}

void BM_ShimOverhead(benchmark::State& state) {
  constexpr int kPairs = 6;
  UseJournal(false);
  for (auto _ : state) {
    Quiesce();
    // synchronous=OFF so fsync does not hide the VFS's own cost. Pairs in
    // ABBA order against drift, and the median pair against this disk's
    // hiccups (each commit unlinks its journal: a synchronous discard here).
    double shim = 0, plain = 0;
    std::vector<double> ratios;
    for (int pair = 0; pair < kPairs; pair++) {
      const bool plain_first = pair % 2 == 0;
      const double a = WriterTps(g_window_s / 3, plain_first ? "unix" : "cowbackup", true, nullptr);
      const double b = WriterTps(g_window_s / 3, plain_first ? "cowbackup" : "unix", true, nullptr);
      const double p = plain_first ? a : b, c = plain_first ? b : a;
      plain += p / kPairs;
      shim += c / kPairs;
      ratios.push_back(c / p);
    }
    std::sort(ratios.begin(), ratios.end());
    const double median = (ratios[kPairs / 2 - 1] + ratios[kPairs / 2]) / 2;
    state.SetIterationTime(2 * kPairs * g_window_s / 3);
    state.counters["shim_vs_plain"] = median;
    Figure("writer, default VFS (sync=OFF)", plain, "%.0f commits/s");
    Figure("writer, shim, no backup (sync=OFF)", shim, "%.0f commits/s");
    Figure("  shim overhead", 100 * (1 - median), "%.1f %% (median of 6 pairs)");
  }
}

// range(0): WAL mode (here and in BM_VacuumIntoUnderWriter).
void BM_DotBackupUnderWriter(benchmark::State& state) {
  UseJournal(state.range(0) != 0);
  for (auto _ : state) {
    Quiesce();
    const double idle = IdlePlain();
    const double cutoff = std::max(5.0, kCutoff * idle);
    Writer w(nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sqlite3* src = Open(g_db);
    const std::string dest = g_dir + "/dot.backup";
    unlink(dest.c_str());
    sqlite3* dst = Open(dest, "unix");
    const auto t0 = Clock::now();
    w.open_window();
    sqlite3_backup* b = sqlite3_backup_init(dst, "main", src, "main");
    int rc = SQLITE_OK;
    while ((rc = sqlite3_backup_step(b, 100)) == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      if (Seconds(t0) > cutoff) break;
    }
    const bool finished = rc == SQLITE_DONE;
    sqlite3_backup_finish(b);
    const double s = Seconds(t0);
    const auto copy_end = Clock::now();
    const WindowResult during = w.close_window();
    Trace("dot_backup", &w, t0, copy_end);
    sqlite3_close(dst);
    sqlite3_close(src);
    unlink(dest.c_str());
    state.SetIterationTime(s);
    state.counters["finished"] = finished;
    state.counters["max_commit_ms"] = during.max_ms;
    Figure(".backup under writer",
           finished ? std::to_string(s) + " s" : "never finished (cut at " + std::to_string(int(s)) + " s)");
    Figure("  .backup: writer's longest commit", during.max_ms, "%.1f ms");
    if (g_wal) Figure("  .backup: WAL peak", Mb(during.wal_peak));
  }
}

void BM_VacuumIntoUnderWriter(benchmark::State& state) {
  UseJournal(state.range(0) != 0);
  for (auto _ : state) {
    Quiesce();
    Writer w(nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sqlite3* db = Open(g_db);
    const std::string dest = g_dir + "/vacuum.into";
    unlink(dest.c_str());
    const auto t0 = Clock::now();
    w.open_window();
    Exec(db, "VACUUM INTO '" + dest + "'");
    const double s = Seconds(t0);
    const auto copy_end = Clock::now();
    const WindowResult during = w.close_window();
    Trace("vacuum_into", &w, t0, copy_end);
    sqlite3_close(db);
    unlink(dest.c_str());
    state.SetIterationTime(s);
    state.counters["max_commit_ms"] = during.max_ms;
    Figure("VACUUM INTO under writer", s, "%.3f s");
    Figure("  VACUUM INTO: writer's longest commit", during.max_ms, "%.1f ms");
    if (g_wal) Figure("  VACUUM INTO: WAL peak", Mb(during.wal_peak));
  }
}

// ---------------------------------------------------------------------------
// Issue 12: writers in several processes, the backup from the CLI (its own
// process), rollback-journal mode. Each writer process commits the same
// 10-row UPDATE transactions without pause through the cowbackup VFS (it
// attaches to the database's region and takes part in the CLI's job).
// Their counters live in a shared anonymous mapping.

constexpr int kWriterProcs = 4;
// In a file mapped shared, so that the preloaded Python writers
// (py_update_writer.py, issue 13) keep the same counters: the offsets
// below are that script's.
struct ProcWriters {
  std::atomic<int> phase{0};  // 0 run, 1 count (the window), 2 stop
  std::atomic<uint64_t> commits[kWriterProcs];
  std::atomic<uint64_t> max_ns[kWriterProcs];
};
static_assert(offsetof(ProcWriters, commits) == 8 && offsetof(ProcWriters, max_ns) == 8 + 8 * kWriterProcs);

class WriterProcesses {
 public:
  // `preloaded`: Debian's python3 with its standard sqlite3 module under
  // build/libcowbackup_preload.so, loading nothing itself; else forks of
  // this program writing through the cowbackup VFS.
  explicit WriterProcesses(bool preloaded = false) {
    const std::string counters = g_dir + "/writers.counters";
    const int fd = ::open(counters.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    void* p = fd >= 0 && ::ftruncate(fd, sizeof(ProcWriters)) == 0
                  ? mmap(nullptr, sizeof(ProcWriters), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                  : MAP_FAILED;
    if (fd >= 0) ::close(fd);
    if (p == MAP_FAILED) std::exit(1);
    w_ = new (p) ProcWriters();
    fflush(nullptr);
    const char* build = getenv("COWBACKUP_BUILD_DIR");
    const std::string preload = "LD_PRELOAD=" + std::string(build ? build : ".") + "/libcowbackup_preload.so";
    for (int i = 0; i < kWriterProcs; i++) {
      const pid_t pid = fork();
      if (pid == 0 && preloaded) {
        const std::string script = std::string(COWBACKUP_SOURCE_DIR) + "/bench/sqlite/py_update_writer.py";
        const std::string index = std::to_string(i), rows = std::to_string(g_rows);
        execl("/usr/bin/env", "env", preload.c_str(), "/usr/bin/python3", script.c_str(), counters.c_str(),
              g_db.c_str(), index.c_str(), rows.c_str(), static_cast<char*>(nullptr));
        _exit(127);
      }
      if (pid == 0) _exit(Run(i));
      pids_.push_back(pid);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(preloaded ? 1000 : 300));
  }
  ~WriterProcesses() {
    w_->phase = 2;
    for (pid_t pid : pids_) waitpid(pid, nullptr, 0);
    munmap(w_, sizeof(ProcWriters));
  }
  void open_window() {
    for (int i = 0; i < kWriterProcs; i++) w_->commits[i] = 0, w_->max_ns[i] = 0;
    start_ = Clock::now();
    w_->phase = 1;
  }
  // Commits/s of all the writers together in the window, and the longest
  // commit any of them made in it.
  WindowResult close_window() {
    w_->phase = 0;
    WindowResult r;
    uint64_t n = 0, max_ns = 0;
    for (int i = 0; i < kWriterProcs; i++) n += w_->commits[i], max_ns = std::max<uint64_t>(max_ns, w_->max_ns[i]);
    r.tps = double(n) / Seconds(start_);
    r.max_ms = double(max_ns) / 1e6;
    return r;
  }

 private:
  int Run(int i) {
    sqlite3* db = Open(g_db, "cowbackup");
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "UPDATE t SET v = randomblob(3900) WHERE id = ?1", -1, &st, nullptr);
    uint64_t x = 88172645463325252ull + uint64_t(i) * 7919;
    while (w_->phase.load() != 2) {
      const auto t0 = Clock::now();
      UpdateTenRows(db, st, &x);
      Exec(db, "COMMIT");
      if (w_->phase.load() == 1) {
        const uint64_t ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
        w_->commits[i]++;
        uint64_t prev = w_->max_ns[i].load();
        while (ns > prev && !w_->max_ns[i].compare_exchange_weak(prev, ns)) {
        }
      }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return 0;
  }

  ProcWriters* w_ = nullptr;
  std::vector<pid_t> pids_;
  Clock::time_point start_;
};

// `cowbackup backup --json` of the database; its wall time and the
// longest wait it added to a write in any process (max_write_wait_us).
CowResult CliBackup() {
  const char* build = getenv("COWBACKUP_BUILD_DIR");
  const std::string cli = std::string(build ? build : ".") + "/cowbackup";
  const std::string dest = g_dest_dir + "/out.archive";
  unlink(dest.c_str());
  const auto t0 = Clock::now();
  FILE* f = popen(("'" + cli + "' backup --json --busy-timeout-ms 60000 '" + g_db + "' '" + dest + "'").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (f != nullptr && (n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int rc = f != nullptr ? pclose(f) : -1;
  CowResult r;
  r.seconds = Seconds(t0);
  if (rc != 0) {
    std::fprintf(stderr, "sqlite_bench: cowbackup backup failed: %s\n", out.c_str());
    std::exit(1);
  }
  const size_t at = out.find("\"max_write_wait_us\":");
  if (at != std::string::npos) r.max_write_wait_ms = std::stod(out.substr(at + 20)) / 1000;
  const size_t lock = out.find("\"begin_lock_us\":");
  if (lock != std::string::npos) r.t0_hold_ms = std::stod(out.substr(lock + 16)) / 1000;
  return r;
}

// range(0): 1 for Debian's python3 writers under the preload library
// (issue 13), 0 for this program's forks through the cowbackup VFS.
void BM_CliUnderWriterProcesses(benchmark::State& state) {
  const bool preloaded = state.range(0) != 0;
  UseJournal(false);
  for (auto _ : state) {
    double idle = 1e9;
    for (int run = 0; run < 3; run++) {
      Quiesce();
      idle = std::min(idle, CliBackup().seconds);
    }
    Quiesce();
    WriterProcesses writers(preloaded);
    writers.open_window();
    std::this_thread::sleep_for(std::chrono::duration<double>(g_window_s));
    const WindowResult base = writers.close_window();
    writers.open_window();
    const CowResult r = CliBackup();
    const WindowResult during = writers.close_window();
    state.SetIterationTime(r.seconds);
    state.counters["vs_idle"] = r.seconds / idle;
    const std::string kind = preloaded ? " preloaded python3 writers" : " writer processes";
    const std::string at = "  " + std::to_string(kWriterProcs) + kind + ": ";
    Figure("cowbackup backup (CLI) idle", idle, "%.3f s");
    Figure("cowbackup backup (CLI) under " + std::to_string(kWriterProcs) + kind, r.seconds, "%.3f s");
    Figure(at + "time vs idle", r.seconds / idle, "%.2fx");
    Figure(at + "longest wait added to a write (max_write_wait_us)", r.max_write_wait_ms, "%.3f ms");
    Figure(at + "begin-time lock held", r.t0_hold_ms, "%.3f ms");
    Figure(at + "longest commit, before / during", std::to_string(int(base.max_ms + 0.5)) + " / " +
                                                   std::to_string(int(during.max_ms + 0.5)) + " ms");
    Figure(at + "throughput during vs before", 100 * during.tps / base.tps, "%.0f %%");
    Figure(at + "commits/s before", base.tps, "%.0f");
  }
}

BENCHMARK(BM_DdConvFsync)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CowbackupIdle)
    ->Args({0, 0})->Args({1, 0})->Args({0, 1})->Args({1, 1})
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CowbackupUnderWriter)
    ->Args({0, 0, 0})->Args({500, 0, 0})->Args({250, 0, 0})->Args({0, 1, 0})->Args({0, 2, 0})
    ->Args({0, 0, 1})->Args({500, 0, 1})->Args({250, 0, 1})->Args({0, 1, 1})->Args({0, 2, 1})
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_IdealCopyUnderWriter)
    ->Args({4096, 0})->Args({1024, 0})->Args({256, 0})->Args({64, 0})->Args({1024, 1})->Args({256, 1})
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ShimOverhead)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DotBackupUnderWriter)->Arg(0)->Arg(1)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_VacuumIntoUnderWriter)->Arg(0)->Arg(1)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CliUnderWriterProcesses)->Arg(0)->Arg(1)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

// With COWBACKUP_BENCH_OUT: the tables as JSON, one object per figure
// ({"mode", "section", "name", "text", "value", "unit"}), for
// bench/report.py. `value` is the text's leading number (null if none:
// "never finished ..."); `unit` what follows it; `section` the unindented
// figure a "  ..." line belongs to.
void WriteFiguresJson() {
  if (g_out.empty()) return;
  using cowbackup::JsonQuote;
  std::ofstream f(g_out + "/sqlite_figures.json");
  f << "{\"database_mb\": " << g_rows / 256 << ", \"figures\": [";
  bool first = true;
  for (const bool wal : {false, true}) {
    std::string section;
    for (const auto& [name, text] : g_tables[wal]) {
      if (name.rfind("  ", 0) != 0) section = name;
      char* end = nullptr;
      const double v = strtod(text.c_str(), &end);
      const bool number = end != text.c_str();
      std::string unit = number ? std::string(end) : "";
      unit.erase(0, unit.find_first_not_of(' '));
      f << (first ? "\n  " : ",\n  ") << "{\"mode\": " << JsonQuote(wal ? "wal" : "rollback")
        << ", \"section\": " << JsonQuote(section) << ", \"name\": " << JsonQuote(name.substr(name.find_first_not_of(' ')))
        << ", \"text\": " << JsonQuote(text) << ", \"value\": ";
      if (number) {
        f << v;
      } else {
        f << "null";
      }
      f << ", \"unit\": " << JsonQuote(unit) << "}";
      first = false;
    }
  }
  f << "\n]}\n";
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  Setup();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (const bool wal : {false, true}) {
    if (g_tables[wal].empty()) continue;
    std::printf("\nSQLite hot backup, %s, %d MB database, 4 KiB pages, warm page cache\n",
                wal ? "WAL mode (default autocheckpoint)" : "rollback journal", g_rows / 256);
    size_t width = 48;
    for (const auto& [name, value] : g_tables[wal]) width = std::max(width, name.size());
    for (const auto& [name, value] : g_tables[wal]) {
      std::printf("  %-*s %s\n", int(width), name.c_str(), value.c_str());
    }
  }
  WriteFiguresJson();
  (void)!system(("rm -rf '" + g_dir + "'").c_str());
  return 0;
}
