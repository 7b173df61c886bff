// The --wrap entry points (lmdb/io_intercept.h, MECHANISM): names fixed by
// the linker's convention. Each reports to the shared write path, then
// makes the real call.
#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lmdb/io_intercept.h"

using namespace cowbackup::lmdb;

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
int __real_ftruncate64(int fd, off_t length);
int __real_mdb_txn_begin(MDB_env* env, MDB_txn* parent, unsigned int flags, MDB_txn** txn);

int __wrap_open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = OpenModeArg(flags, ap);
  va_end(ap);
  const int fd = __real_open(path, GuardOpenFlags(path, flags), mode);
  if (fd >= 0) CaptureOpenedFd(fd);
  return fd;
}

int __wrap_open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = OpenModeArg(flags, ap);
  va_end(ap);
  const int fd = __real_open64(path, GuardOpenFlags(path, flags), mode);
  if (fd >= 0) CaptureOpenedFd(fd);
  return fd;
}

ssize_t __wrap_pwrite(int fd, const void* buf, size_t n, off_t offset) {
  InterceptPwrite(fd, buf, n, offset);
  return __real_pwrite(fd, buf, n, offset);
}

ssize_t __wrap_pwrite64(int fd, const void* buf, size_t n, off_t offset) {
  InterceptPwrite(fd, buf, n, offset);
  return __real_pwrite64(fd, buf, n, offset);
}

ssize_t __wrap_write(int fd, const void* buf, size_t n) {
  InterceptWrite(fd, buf, n);
  return __real_write(fd, buf, n);
}

ssize_t __wrap_writev(int fd, const struct iovec* iov, int iovcnt) {
  InterceptWritev(fd, iov, iovcnt);
  return __real_writev(fd, iov, iovcnt);
}

ssize_t __wrap_pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  InterceptPwritev(fd, iov, iovcnt, offset);
  return __real_pwritev(fd, iov, iovcnt, offset);
}

ssize_t __wrap_pwritev64(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  InterceptPwritev(fd, iov, iovcnt, offset);
  return __real_pwritev64(fd, iov, iovcnt, offset);
}

int __wrap_ftruncate(int fd, off_t length) {
  InterceptTruncate(fd, length);
  return __real_ftruncate(fd, length);
}

int __wrap_ftruncate64(int fd, off_t length) {
  InterceptTruncate(fd, length);
  return __real_ftruncate64(fd, length);
}

int __wrap_mdb_txn_begin(MDB_env* env, MDB_txn* parent, unsigned int flags, MDB_txn** txn) {
  BeforeTxnBegin(env, parent, flags);
  return __real_mdb_txn_begin(env, parent, flags, txn);
}

}  // extern "C"
