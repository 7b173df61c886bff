// libcowbackup_preload.so, LMDB half: a program's environments, opened
// through its own liblmdb.so.0 (Debian's liblmdb0, which python3-lmdb links),
// take part in backups other processes run, with no change to the program
// (docs/PRELOAD.md).
//
// MECHANISM
//   The same two steps as the --wrap front end (lmdb/io_intercept.h), with
//   interposition in place of the linker:
//   - the libc calls liblmdb writes data.mdb with (`nm -D liblmdb.so.0`:
//     open, pwrite, write, writev, ftruncate; we take the --wrap list) are
//     defined here and report to the one write path (Intercept*) before
//     calling libc's. Only registered descriptors have a hook: any other
//     costs one acquire load while no environment is open, else a scan of
//     the few used slots (bench/preload_bench.cc);
//   - mdb_env_open is defined here: it calls the real one under an
//     OpenCapture (the descriptors it opens on this thread), then
//     HookOpenedEnv, the path Env::Open takes: data.mdb's two descriptors
//     hooked, the environment attached to the coordination region;
//   - mdb_txn_begin of a write txn first honours the region's writer gate
//     (what Txn::Begin does), so a backup's begin-time instant is not
//     starved by this process's writers; mdb_env_close unhooks before the
//     real close (the descriptor numbers are free again after it).
//   The real mdb_* functions are found as the SQLite half finds SQLite's
//   (preload/real_symbol.h): Python loads liblmdb.so RTLD_LOCAL.
//
//   MDB_WRITEMAP writes through the map where nothing can be seen: the env
//   takes no part (WhyNoPart), one line on stderr at open says so, and a
//   backup during its commits fails naming a commit it did not see.
//
// FORK: LMDB forbids using an env across fork; the child opens its own
// (which attaches as a participant of its own). The inherited region
// handles are forgotten in the child (coord/region.h, FORK).
#undef _FORTIFY_SOURCE  // we define open(); fortify's inline wrapper would clash
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "lmdb/file_hook.h"
#include "lmdb/io_intercept.h"
#include "preload/real_symbol.h"

namespace cowbackup::preload {
namespace {

constexpr const char* kLmdb = "liblmdb.so.0";

// An environment this library hooked, from its mdb_env_open to its
// mdb_env_close.
struct HookedEnv {
  MDB_env* env = nullptr;
  lmdb::FileHook hook;
  std::vector<int> data_fds;
};

// The hooked environments. A process opens a few; the table is small and
// fixed so that nothing here runs a destructor at exit.
constexpr int kMaxEnvs = 128;
pthread_mutex_t g_envs_mu = PTHREAD_MUTEX_INITIALIZER;
HookedEnv* g_envs[kMaxEnvs];     // GUARDED_BY(g_envs_mu)
std::atomic<int> g_env_count{0};  // mdb_txn_begin's idle check

bool AddEnv(HookedEnv* e) {
  pthread_mutex_lock(&g_envs_mu);
  bool added = false;
  for (HookedEnv*& slot : g_envs) {
    if (slot == nullptr) {
      slot = e;
      added = true;
      g_env_count.fetch_add(1, std::memory_order_release);
      break;
    }
  }
  pthread_mutex_unlock(&g_envs_mu);
  return added;
}

// Removes and returns `env`'s entry, or nullptr.
HookedEnv* TakeEnv(MDB_env* env) {
  HookedEnv* found = nullptr;
  pthread_mutex_lock(&g_envs_mu);
  for (HookedEnv*& slot : g_envs) {
    if (slot != nullptr && slot->env == env) {
      found = slot;
      slot = nullptr;
      g_env_count.fetch_sub(1, std::memory_order_release);
      break;
    }
  }
  pthread_mutex_unlock(&g_envs_mu);
  return found;
}

// `env`'s region, or nullptr. The env cannot close meanwhile: LMDB forbids
// mdb_env_close while a txn of it may begin.
coord::Region* RegionOf(MDB_env* env) {
  coord::Region* r = nullptr;
  pthread_mutex_lock(&g_envs_mu);
  for (HookedEnv* e : g_envs) {
    if (e != nullptr && e->env == env) {
      r = e->hook.region();
      break;
    }
  }
  pthread_mutex_unlock(&g_envs_mu);
  return r;
}

// In a forked child: the inherited regions are the parent's (their open
// file descriptions hold its locks); forget them untouched.
void ForgetEnvsAfterFork() {
  for (HookedEnv* e : g_envs) {
    if (e != nullptr && e->hook.region() != nullptr) e->hook.region()->ForgetAfterFork();
  }
}
// Holding the table's mutex over fork keeps it consistent in the child.
void LockEnvs() { pthread_mutex_lock(&g_envs_mu); }
void UnlockEnvs() { pthread_mutex_unlock(&g_envs_mu); }
void ChildAfterFork() {
  ForgetEnvsAfterFork();
  pthread_mutex_unlock(&g_envs_mu);
}
pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
void InstallForkHandlers() { pthread_atfork(LockEnvs, UnlockEnvs, ChildAfterFork); }

void Say(const std::string& path, const std::string& what) {
  fprintf(stderr, "cowbackup preload: %s: %s\n", path.c_str(), what.c_str());
}

template <typename Fn>
Fn Lmdb(const char* name, const void* caller) {
  return reinterpret_cast<Fn>(RealSymbol(name, caller, kLmdb));
}

// After a successful mdb_env_open: the env hooked and attached (or, if it
// cannot take part, left alone with a line on stderr saying why).
void Attach(MDB_env* env, const char* path, const std::vector<int>& opened, const void* caller) {
  const auto get_flags = Lmdb<int (*)(MDB_env*, unsigned*)>("mdb_env_get_flags", caller);
  const auto get_fd = Lmdb<int (*)(MDB_env*, mdb_filehandle_t*)>("mdb_env_get_fd", caller);
  const auto env_stat = Lmdb<int (*)(MDB_env*, MDB_stat*)>("mdb_env_stat", caller);
  lmdb::OpenedEnv o;
  o.path = path;
  MDB_stat st;
  if (get_flags == nullptr || get_fd == nullptr || env_stat == nullptr || get_flags(env, &o.flags) != 0 ||
      get_fd(env, &o.me_fd) != 0 || env_stat(env, &st) != 0) {
    Say(o.path, "cannot read the environment's facts from liblmdb; it is not covered");
    return;
  }
  o.page_size = st.ms_psize;
  o.data_path = (o.flags & MDB_NOSUBDIR) ? o.path : o.path + "/data.mdb";
  auto* e = new HookedEnv;
  e->env = env;
  Status s = lmdb::HookOpenedEnv(o, opened, &e->hook, &e->data_fds);
  if (s.ok() && !AddEnv(e)) s = Status::Busy("too many open environments in this process");
  if (!s.ok()) {
    lmdb::UnregisterHook(&e->hook);
    delete e;
    Say(o.path, "not covered: " + s.ToString());
    return;
  }
  pthread_once(&g_atfork_once, InstallForkHandlers);
  if ((o.flags & MDB_WRITEMAP) && !(o.flags & MDB_RDONLY)) {
    Say(o.path, "opened with MDB_WRITEMAP: its writes go through the memory map, where cowbackup cannot "
                "see them; this environment takes no part in backups, and a backup during its commits "
                "fails");
  } else if (e->hook.region() == nullptr && !(o.flags & MDB_RDONLY)) {
    Say(o.path, "takes no part in backups: " + e->hook.region_error().ToString());
  }
}

std::atomic<int (*)(MDB_env*, const char*, unsigned, mdb_mode_t)> g_env_open{nullptr};
std::atomic<void (*)(MDB_env*)> g_env_close{nullptr};
std::atomic<int (*)(MDB_env*, MDB_txn*, unsigned, MDB_txn**)> g_txn_begin{nullptr};

// libc's own functions.
template <typename Fn>
Fn Libc(std::atomic<Fn>* slot, const char* name) {
  return Real(slot, name, nullptr, "libc.so.6");
}
std::atomic<int (*)(const char*, int, ...)> g_open{nullptr};
std::atomic<int (*)(const char*, int, ...)> g_open64{nullptr};
std::atomic<ssize_t (*)(int, const void*, size_t, off_t)> g_pwrite{nullptr};
std::atomic<ssize_t (*)(int, const void*, size_t, off_t)> g_pwrite64{nullptr};
std::atomic<ssize_t (*)(int, const void*, size_t)> g_write{nullptr};
std::atomic<ssize_t (*)(int, const struct iovec*, int)> g_writev{nullptr};
std::atomic<ssize_t (*)(int, const struct iovec*, int, off_t)> g_pwritev{nullptr};
std::atomic<ssize_t (*)(int, const struct iovec*, int, off_t)> g_pwritev64{nullptr};
std::atomic<int (*)(int, off_t)> g_ftruncate{nullptr};
std::atomic<int (*)(int, off_t)> g_ftruncate64{nullptr};

// Resolved at load, so that the first write of a signal handler does not
// run dlsym (the interposed calls stay async-signal-safe for descriptors
// that are not data files).
__attribute__((constructor)) void ResolveLibc() {
  Libc(&g_open, "open");
  Libc(&g_open64, "open64");
  Libc(&g_pwrite, "pwrite");
  Libc(&g_pwrite64, "pwrite64");
  Libc(&g_write, "write");
  Libc(&g_writev, "writev");
  Libc(&g_pwritev, "pwritev");
  Libc(&g_pwritev64, "pwritev64");
  Libc(&g_ftruncate, "ftruncate");
  Libc(&g_ftruncate64, "ftruncate64");
}

}  // namespace
}  // namespace cowbackup::preload

using namespace cowbackup::preload;
namespace lmdb = cowbackup::lmdb;

#define PRELOAD_EXPORT __attribute__((visibility("default")))

extern "C" {

PRELOAD_EXPORT int mdb_env_open(MDB_env* env, const char* path, unsigned int flags, mdb_mode_t mode) {
  const void* caller = __builtin_return_address(0);
  const auto real = Real(&g_env_open, "mdb_env_open", caller, kLmdb);
  if (real == nullptr) return EINVAL;
  std::vector<int> opened;
  int rc;
  {
    lmdb::OpenCapture capture;
    rc = real(env, path, flags, mode);
    opened = capture.fds();
  }
  if (rc == 0 && path != nullptr) Attach(env, path, opened, caller);
  return rc;
}

PRELOAD_EXPORT void mdb_env_close(MDB_env* env) {
  const auto real = Real(&g_env_close, "mdb_env_close", __builtin_return_address(0), kLmdb);
  HookedEnv* e = TakeEnv(env);
  if (e != nullptr) lmdb::UnregisterHook(&e->hook);
  if (real != nullptr) real(env);
  delete e;
}

PRELOAD_EXPORT int mdb_txn_begin(MDB_env* env, MDB_txn* parent, unsigned int flags, MDB_txn** txn) {
  const auto real = Real(&g_txn_begin, "mdb_txn_begin", __builtin_return_address(0), kLmdb);
  if (real == nullptr) return EINVAL;
  // A write txn (not nested: that takes no writer lock) waits at the gate.
  if (parent == nullptr && !(flags & MDB_RDONLY) && g_env_count.load(std::memory_order_acquire) != 0) {
    if (cowbackup::coord::Region* r = RegionOf(env)) r->BeforeWriterLock();
  }
  return real(env, parent, flags, txn);
}

PRELOAD_EXPORT int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = lmdb::OpenModeArg(flags, ap);
  va_end(ap);
  const int fd = Libc(&g_open, "open")(path, lmdb::GuardOpenFlags(path, flags), mode);
  if (fd >= 0) lmdb::CaptureOpenedFd(fd);
  return fd;
}

PRELOAD_EXPORT int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = lmdb::OpenModeArg(flags, ap);
  va_end(ap);
  const int fd = Libc(&g_open64, "open64")(path, lmdb::GuardOpenFlags(path, flags), mode);
  if (fd >= 0) lmdb::CaptureOpenedFd(fd);
  return fd;
}

PRELOAD_EXPORT ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  lmdb::InterceptPwrite(fd, buf, n, offset);
  return Libc(&g_pwrite, "pwrite")(fd, buf, n, offset);
}

PRELOAD_EXPORT ssize_t pwrite64(int fd, const void* buf, size_t n, off_t offset) {
  lmdb::InterceptPwrite(fd, buf, n, offset);
  return Libc(&g_pwrite64, "pwrite64")(fd, buf, n, offset);
}

PRELOAD_EXPORT ssize_t write(int fd, const void* buf, size_t n) {
  lmdb::InterceptWrite(fd, buf, n);
  return Libc(&g_write, "write")(fd, buf, n);
}

PRELOAD_EXPORT ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  lmdb::InterceptWritev(fd, iov, iovcnt);
  return Libc(&g_writev, "writev")(fd, iov, iovcnt);
}

PRELOAD_EXPORT ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  lmdb::InterceptPwritev(fd, iov, iovcnt, offset);
  return Libc(&g_pwritev, "pwritev")(fd, iov, iovcnt, offset);
}

PRELOAD_EXPORT ssize_t pwritev64(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  lmdb::InterceptPwritev(fd, iov, iovcnt, offset);
  return Libc(&g_pwritev64, "pwritev64")(fd, iov, iovcnt, offset);
}

PRELOAD_EXPORT int ftruncate(int fd, off_t length) {
  lmdb::InterceptTruncate(fd, length);
  return Libc(&g_ftruncate, "ftruncate")(fd, length);
}

PRELOAD_EXPORT int ftruncate64(int fd, off_t length) {
  lmdb::InterceptTruncate(fd, length);
  return Libc(&g_ftruncate64, "ftruncate64")(fd, length);
}

}  // extern "C"
