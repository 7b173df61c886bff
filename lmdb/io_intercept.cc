// The descriptor table and the write path both front ends call; see
// io_intercept.h. The --wrap entry points are in wrap.cc.
#include "lmdb/io_intercept.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstring>
#include <mutex>


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

OpenCapture::OpenCapture(const char* existing) : existing_(existing) { t_capture = this; }
OpenCapture::~OpenCapture() { t_capture = nullptr; }

void CaptureOpenedFd(int fd) {
  if (t_capture != nullptr) t_capture->fds_.push_back(fd);
}

// The write path both front ends call before the real call: the --wrap
// entry points (lmdb/wrap.cc) and the preload library's interposers
// (preload/lmdb_preload.cc).
void InterceptPwrite(int fd, const void* buf, size_t n, off_t offset) noexcept {
  if (FileHook* h = Lookup(fd)) {
    struct iovec iov = {const_cast<void*>(buf), n};
    BeforeWrite(h, fd, uint64_t(offset), &iov, 1, n);
  }
}

void InterceptWrite(int fd, const void* buf, size_t n) noexcept {
  if (FileHook* h = Lookup(fd)) {
    uint64_t offset = 0, len = n;
    PositionOf(fd, &offset, &len);
    struct iovec iov = {const_cast<void*>(buf), n};
    BeforeWrite(h, fd, offset, &iov, 1, len);
  }
}

void InterceptWritev(int fd, const struct iovec* iov, int iovcnt) noexcept {
  if (FileHook* h = Lookup(fd)) {
    uint64_t offset = 0, len = IovLen(iov, iovcnt);
    PositionOf(fd, &offset, &len);
    BeforeWrite(h, fd, offset, iov, iovcnt, len);
  }
}

void InterceptPwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) noexcept {
  if (FileHook* h = Lookup(fd)) BeforeWrite(h, fd, uint64_t(offset), iov, iovcnt, IovLen(iov, iovcnt));
}

void InterceptTruncate(int fd, off_t length) noexcept {
  if (FileHook* h = Lookup(fd)) {
    const int saved = errno;
    if (auto* o = h->observer.load(std::memory_order_acquire)) o->on_truncate(fd, uint64_t(length));
    h->BeforeTruncate(length < 0 ? 0 : uint64_t(length));
    errno = saved;
  }
}

int GuardOpenFlags(const char* path, int flags) {
  const OpenCapture* c = t_capture;
  if (c == nullptr || c->existing_ == nullptr || path == nullptr || strcmp(path, c->existing_) != 0) {
    return flags;
  }
  return (flags & ~O_CREAT) | O_NOFOLLOW;
}

}  // namespace cowbackup::lmdb
