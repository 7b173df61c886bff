// The --wrap entry points and the descriptor table; see io_intercept.h.
#include "lmdb/io_intercept.h"

#include <lmdb.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstring>
#include <mutex>

#include "lmdb/env_impl.h"

namespace cowbackup::lmdb {
namespace {

// The descriptor table. Slots are claimed under g_mu and never compacted;
// g_used is the high-water mark a lookup scans up to.
//
// Publication order (writers hold g_mu):
//   register:   hook, then fd (release), then g_used (release)
//   unregister: fd = -1, then hook = nullptr
// A lookup that matched a descriptor number reads the hook after it
// (acquire), so it never sees the fd without its hook. A lookup racing an
// unregister can only be a write to that env's own descriptor, which LMDB
// forbids concurrently with mdb_env_close.
constexpr int kSlots = 256;  // two per open environment
struct Slot {
  std::atomic<int> fd{-1};
  std::atomic<FileHook*> hook{nullptr};
};
Slot g_slots[kSlots];
std::atomic<int> g_used{0};
std::mutex g_mu;

thread_local OpenCapture* t_capture = nullptr;

// The env table of __wrap_mdb_txn_begin: the same scheme as the
// descriptor table (claimed under g_mu, never compacted; gate before env
// on register, env before gate on unregister).
struct EnvSlot {
  std::atomic<const MDB_env*> env{nullptr};
  std::atomic<T0Gate*> gate{nullptr};
};
EnvSlot g_envs[kSlots / 2];
std::atomic<int> g_envs_used{0};
thread_local bool t_gate_passed = false;

T0Gate* LookupGate(const MDB_env* env) {
  const int n = g_envs_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    if (g_envs[i].env.load(std::memory_order_acquire) == env) return g_envs[i].gate.load(std::memory_order_acquire);
  }
  return nullptr;
}

inline FileHook* Lookup(int fd) {
  const int n = g_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    if (g_slots[i].fd.load(std::memory_order_acquire) == fd) {
      return g_slots[i].hook.load(std::memory_order_acquire);
    }
  }
  return nullptr;
}

uint64_t IovLen(const struct iovec* iov, int iovcnt) {
  uint64_t len = 0;
  for (int i = 0; i < iovcnt; ++i) len += iov[i].iov_len;
  return len;
}

// The one place every intercepted write goes through. Never fails the
// write; keeps errno as the caller left it.
void BeforeWrite(FileHook* h, int fd, uint64_t offset, const struct iovec* iov, int iovcnt,
                 uint64_t len) noexcept {
  const int saved = errno;
  if (WriteObserver* o = h->observer.load(std::memory_order_acquire)) {
    o->on_write(fd, offset, iov, iovcnt);
  }
  h->BeforeWrite(offset, iov, iovcnt, len);
  errno = saved;
}

// The position a write()/writev() will land at. LMDB seeks first (under its
// writer mutex). If the position cannot be had — never on a regular file —
// report the whole file, which makes the job preserve every page: slow but
// never wrong.
void PositionOf(int fd, uint64_t* offset, uint64_t* len) {
  const int saved = errno;
  const off_t pos = ::lseek(fd, 0, SEEK_CUR);
  errno = saved;
  if (pos < 0) {
    *offset = 0;
    *len = UINT64_MAX / 2;
    return;
  }
  *offset = uint64_t(pos);
}

}  // namespace

Status RegisterFd(int fd, FileHook* hook) {
  std::lock_guard<std::mutex> lock(g_mu);
  const int n = g_used.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) {
    if (g_slots[i].fd.load(std::memory_order_relaxed) == fd) {
      return Status::Busy("lmdb: descriptor " + std::to_string(fd) + " is already hooked");
    }
  }
  for (int i = 0; i < kSlots; ++i) {
    if (g_slots[i].fd.load(std::memory_order_relaxed) != -1) continue;
    g_slots[i].hook.store(hook, std::memory_order_release);
    g_slots[i].fd.store(fd, std::memory_order_release);
    if (i >= n) g_used.store(i + 1, std::memory_order_release);
    return Status::OK();
  }
  return Status::Busy("lmdb: too many open environments (write-hook table full)");
}

void UnregisterHook(FileHook* hook) {
  std::lock_guard<std::mutex> lock(g_mu);
  const int n = g_used.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) {
    if (g_slots[i].hook.load(std::memory_order_relaxed) == hook) {
      g_slots[i].fd.store(-1, std::memory_order_release);
      g_slots[i].hook.store(nullptr, std::memory_order_release);
    }
  }
}

FileHook* LookupFd(int fd) { return Lookup(fd); }

Status RegisterEnv(const MDB_env* env, T0Gate* gate) {
  std::lock_guard<std::mutex> lock(g_mu);
  const int n = g_envs_used.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) {
    if (g_envs[i].env.load(std::memory_order_relaxed) == env) {
      return Status::Busy("lmdb: the environment is already attached");
    }
  }
  for (int i = 0; i < kSlots / 2; ++i) {
    if (g_envs[i].env.load(std::memory_order_relaxed) != nullptr) continue;
    g_envs[i].gate.store(gate, std::memory_order_release);
    g_envs[i].env.store(env, std::memory_order_release);
    if (i >= n) g_envs_used.store(i + 1, std::memory_order_release);
    return Status::OK();
  }
  return Status::Busy("lmdb: too many open environments (gate table full)");
}

T0Gate* LookupEnvGate(const MDB_env* env) { return LookupGate(env); }

void UnregisterEnv(const T0Gate* gate) {
  std::lock_guard<std::mutex> lock(g_mu);
  const int n = g_envs_used.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) {
    if (g_envs[i].gate.load(std::memory_order_relaxed) == gate) {
      g_envs[i].env.store(nullptr, std::memory_order_release);
      g_envs[i].gate.store(nullptr, std::memory_order_release);
    }
  }
}

GateBypass::GateBypass() : saved_(t_gate_passed) { t_gate_passed = true; }
GateBypass::~GateBypass() { t_gate_passed = saved_; }

OpenCapture::OpenCapture(const char* existing) : existing_(existing) { t_capture = this; }
OpenCapture::~OpenCapture() { t_capture = nullptr; }

void CaptureOpenedFd(int fd) {
  if (t_capture != nullptr) t_capture->fds_.push_back(fd);
}

int GuardOpenFlags(const char* path, int flags) {
  const OpenCapture* c = t_capture;
  if (c == nullptr || c->existing_ == nullptr || path == nullptr || strcmp(path, c->existing_) != 0) {
    return flags;
  }
  return (flags & ~O_CREAT) | O_NOFOLLOW;
}

}  // namespace cowbackup::lmdb

// ---------------------------------------------------------------------------
// The wrapped calls. Names are fixed by the linker's --wrap convention.
using cowbackup::lmdb::BeforeWrite;
using cowbackup::lmdb::FileHook;
using cowbackup::lmdb::Lookup;

extern "C" {

int __real_open(const char* path, int flags, ...);
int __real_open64(const char* path, int flags, ...);
ssize_t __real_pwrite(int fd, const void* buf, size_t n, off_t offset);
ssize_t __real_pwrite64(int fd, const void* buf, size_t n, off_t offset);
ssize_t __real_write(int fd, const void* buf, size_t n);
ssize_t __real_writev(int fd, const struct iovec* iov, int iovcnt);
ssize_t __real_pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset);
ssize_t __real_pwritev64(int fd, const struct iovec* iov, int iovcnt, off_t offset);
int __real_ftruncate(int fd, off_t length);
int __real_mdb_txn_begin(MDB_env* env, MDB_txn* parent, unsigned int flags, MDB_txn** txn);
int __real_ftruncate64(int fd, off_t length);

namespace {
mode_t ModeArg(int flags, va_list ap) {
  return (flags & (O_CREAT | O_TMPFILE)) ? mode_t(va_arg(ap, unsigned)) : 0;
}
}  // namespace

int __wrap_open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  const int fd = __real_open(path, cowbackup::lmdb::GuardOpenFlags(path, flags), mode);
  if (fd >= 0) cowbackup::lmdb::CaptureOpenedFd(fd);
  return fd;
}

int __wrap_open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  const int fd = __real_open64(path, cowbackup::lmdb::GuardOpenFlags(path, flags), mode);
  if (fd >= 0) cowbackup::lmdb::CaptureOpenedFd(fd);
  return fd;
}

ssize_t __wrap_pwrite(int fd, const void* buf, size_t n, off_t offset) {
  if (FileHook* h = Lookup(fd)) {
    struct iovec iov = {const_cast<void*>(buf), n};
    BeforeWrite(h, fd, uint64_t(offset), &iov, 1, n);
  }
  return __real_pwrite(fd, buf, n, offset);
}

ssize_t __wrap_pwrite64(int fd, const void* buf, size_t n, off_t offset) {
  if (FileHook* h = Lookup(fd)) {
    struct iovec iov = {const_cast<void*>(buf), n};
    BeforeWrite(h, fd, uint64_t(offset), &iov, 1, n);
  }
  return __real_pwrite64(fd, buf, n, offset);
}

ssize_t __wrap_write(int fd, const void* buf, size_t n) {
  if (FileHook* h = Lookup(fd)) {
    uint64_t offset = 0, len = n;
    cowbackup::lmdb::PositionOf(fd, &offset, &len);
    struct iovec iov = {const_cast<void*>(buf), n};
    BeforeWrite(h, fd, offset, &iov, 1, len);
  }
  return __real_write(fd, buf, n);
}

ssize_t __wrap_writev(int fd, const struct iovec* iov, int iovcnt) {
  if (FileHook* h = Lookup(fd)) {
    uint64_t offset = 0, len = cowbackup::lmdb::IovLen(iov, iovcnt);
    cowbackup::lmdb::PositionOf(fd, &offset, &len);
    BeforeWrite(h, fd, offset, iov, iovcnt, len);
  }
  return __real_writev(fd, iov, iovcnt);
}

ssize_t __wrap_pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  if (FileHook* h = Lookup(fd)) {
    BeforeWrite(h, fd, uint64_t(offset), iov, iovcnt, cowbackup::lmdb::IovLen(iov, iovcnt));
  }
  return __real_pwritev(fd, iov, iovcnt, offset);
}

ssize_t __wrap_pwritev64(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  if (FileHook* h = Lookup(fd)) {
    BeforeWrite(h, fd, uint64_t(offset), iov, iovcnt, cowbackup::lmdb::IovLen(iov, iovcnt));
  }
  return __real_pwritev64(fd, iov, iovcnt, offset);
}

namespace {
void BeforeTruncate(FileHook* h, int fd, off_t length) noexcept {
  const int saved = errno;
  if (auto* o = h->observer.load(std::memory_order_acquire)) o->on_truncate(fd, uint64_t(length));
  h->BeforeTruncate(length < 0 ? 0 : uint64_t(length));
  errno = saved;
}
}  // namespace

int __wrap_ftruncate(int fd, off_t length) {
  if (FileHook* h = Lookup(fd)) BeforeTruncate(h, fd, length);
  return __real_ftruncate(fd, length);
}

int __wrap_ftruncate64(int fd, off_t length) {
  if (FileHook* h = Lookup(fd)) BeforeTruncate(h, fd, length);
  return __real_ftruncate64(fd, length);
}

}  // extern "C"

extern "C" {

// Write txns the program begins itself pass the env's T0 gate first
// (io_intercept.h, RegisterEnv).
int __wrap_mdb_txn_begin(MDB_env* env, MDB_txn* parent, unsigned int flags, MDB_txn** txn) {
  if (parent == nullptr && (flags & MDB_RDONLY) == 0 && !cowbackup::lmdb::t_gate_passed) {
    if (cowbackup::lmdb::T0Gate* gate = cowbackup::lmdb::LookupGate(env)) gate->before_write_txn();
  }
  return __real_mdb_txn_begin(env, parent, flags, txn);
}

}  // extern "C"
