// The preload library's idle cost (issue 13, item 2): ns per write(2) to a
// descriptor that is not a data file, libc's own call against the
// library's interposed one, in the same process, batches interleaved; then
// the same with an LMDB environment open (its two descriptors registered,
// so the lookup scans used slots), and a same-bytes pwrite to data.mdb
// itself with no job armed (the hook's one acquire load).
//
// Last, a Python sqlite3 writer's commits per CPU second with and without the library
// (bench/preload/py_sqlite_writer.py, best of RUNS alternating runs each).
//
//   build/bench/preload/preload_bench [ROUNDS [RUNS]]
//
// Not run under the library, it runs itself again under
// LD_PRELOAD=$COWBACKUP_BUILD_DIR/libcowbackup_preload.so (or the build
// directory above its own). The write(2) itself costs ~150 ns and varies
// more than the difference between the two, so the step the library adds
// before libc's call (lmdb::InterceptWrite, from the same source compiled
// into this program) is also timed alone. Each figure is the minimum over ROUNDS
// (default 30) batches of the per-call mean: the least-disturbed batch.
#include <dlfcn.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "lmdb/file_hook.h"
#include "lmdb/io_intercept.h"

extern char** environ;

namespace {

using WriteFn = ssize_t (*)(int, const void*, size_t);
using PwriteFn = ssize_t (*)(int, const void*, size_t, off_t);
constexpr int kBatch = 100000;

double Now() {
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Minimum over `rounds` batches of ns per call, for two callables run in
// alternating batches.
template <typename A, typename B>
void Compare(const char* what, int rounds, A a, B b) {
  double best_a = 1e18, best_b = 1e18;
  for (int r = 0; r < rounds; r++) {
    double t = Now();
    for (int i = 0; i < kBatch; i++) a();
    best_a = std::min(best_a, (Now() - t) / kBatch);
    t = Now();
    for (int i = 0; i < kBatch; i++) b();
    best_b = std::min(best_b, (Now() - t) / kBatch);
  }
  printf("%-44s libc %7.1f ns   preloaded %7.1f ns   difference %+5.1f ns\n", what, best_a, best_b, best_b - best_a);
}

bool Preloaded() {
  Dl_info info;
  void* w = dlsym(RTLD_DEFAULT, "write");
  return w != nullptr && dladdr(w, &info) != 0 && info.dli_fname != nullptr &&
         strstr(info.dli_fname, "libcowbackup_preload") != nullptr;
}

int RerunPreloaded(char** argv) {
  std::string dir;
  if (const char* d = getenv("COWBACKUP_BUILD_DIR")) dir = d;
  if (dir.empty()) {
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 2;
    dir.assign(self, size_t(n));
    for (int up = 0; up < 3; up++) dir = dir.substr(0, dir.rfind('/'));  // build/bench/preload/x
  }
  const std::string lib = dir + "/libcowbackup_preload.so";
  setenv("LD_PRELOAD", lib.c_str(), 1);
  execve("/proc/self/exe", argv, environ);
  perror("preload_bench: execve");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (!Preloaded()) return RerunPreloaded(argv);
  const int rounds = argc > 1 ? atoi(argv[1]) : 30;
  void* libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  const auto libc_write = reinterpret_cast<WriteFn>(dlsym(libc, "write"));
  const auto libc_pwrite = reinterpret_cast<PwriteFn>(dlsym(libc, "pwrite"));
  const int null = open("/dev/null", O_WRONLY);
  char byte = 0;
  printf("preload_bench: %d batches of %d calls each, minimum per-call mean\n", rounds, kBatch);
  Compare("write(/dev/null), no environment open", rounds, [&] { libc_write(null, &byte, 1); },
          [&] { write(null, &byte, 1); });

  // An environment open: its descriptors are in the table.
  char dir[] = "/tmp/cowbackup-preload-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) return 1;
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  MDB_dbi dbi;
  MDB_val k = {3, const_cast<char*>("key")}, v = {5, const_cast<char*>("value")};
  if (mdb_env_create(&env) != 0 || mdb_env_open(env, dir, 0, 0600) != 0 || mdb_txn_begin(env, nullptr, 0, &txn) != 0 ||
      mdb_dbi_open(txn, nullptr, 0, &dbi) != 0 || mdb_put(txn, dbi, &k, &v, 0) != 0 || mdb_txn_commit(txn) != 0) {
    fprintf(stderr, "preload_bench: cannot make an LMDB environment in %s\n", dir);
    return 1;
  }
  Compare("write(/dev/null), one environment open", rounds, [&] { libc_write(null, &byte, 1); },
          [&] { write(null, &byte, 1); });

  // data.mdb itself, no job armed: page 2 written back with its own bytes.
  int fd = -1;
  MDB_stat st;
  mdb_env_get_fd(env, &fd);
  mdb_env_stat(env, &st);
  std::string page(st.ms_psize, '\0');
  if (pread(fd, page.data(), page.size(), off_t(2) * st.ms_psize) != ssize_t(page.size())) return 1;
  Compare("pwrite(data.mdb, same bytes), no job armed", std::max(5, rounds / 3),
          [&] { libc_pwrite(fd, page.data(), page.size(), off_t(2) * st.ms_psize); },
          [&] { pwrite(fd, page.data(), page.size(), off_t(2) * st.ms_psize); });
  mdb_env_close(env);

  // The added step alone, no syscall: the descriptor lookup of a write to
  // a descriptor that is not a data file, with no slot used and with two.
  auto alone = [&](const char* what) {
    double best = 1e18;
    for (int r = 0; r < rounds; r++) {
      const double t = Now();
      for (int i = 0; i < kBatch; i++) cowbackup::lmdb::InterceptWrite(null, &byte, 1);
      best = std::min(best, (Now() - t) / kBatch);
    }
    printf("%-44s %5.2f ns per call\n", what, best);
  };
  alone("added step alone, no environment open");
  cowbackup::lmdb::FileHook dummy;
  if (!cowbackup::lmdb::RegisterFd(100000, &dummy).ok() || !cowbackup::lmdb::RegisterFd(100001, &dummy).ok()) return 1;
  alone("added step alone, two descriptors registered");
  cowbackup::lmdb::UnregisterHook(&dummy);

  const int runs = argc > 2 ? atoi(argv[2]) : 5;
  const std::string script = std::string(COWBACKUP_SOURCE_DIR) + "/bench/preload/py_sqlite_writer.py";
  const std::string db = std::string(dir) + "/py.db";
  auto rate = [&](bool preload) {
    const std::string cmd = std::string(preload ? "" : "env -u LD_PRELOAD ") + "/usr/bin/python3 " + script + " " +
                            db + " 20000";
    FILE* p = popen(cmd.c_str(), "r");
    double r = 0;
    if (p == nullptr || fscanf(p, "%lf", &r) != 1) r = 0;
    if (p) pclose(p);
    return r;
  };
  double best_plain = 0, best_pre = 0;
  for (int r = 0; r < runs; r++) {
    best_plain = std::max(best_plain, rate(false));
    best_pre = std::max(best_pre, rate(true));
  }
  printf("python3 sqlite3 writer, commits per CPU s (best of %d)  plain %.0f   preloaded %.0f   ratio %.3f\n", runs,
         best_plain, best_pre, best_plain > 0 ? best_pre / best_plain : 0.0);
  const std::string rm = std::string("rm -rf ") + dir;
  return system(rm.c_str()) == 0 ? 0 : 1;
}
