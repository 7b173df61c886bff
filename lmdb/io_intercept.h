// Write interception for LMDB's data file: every write liblmdb makes to
// data.mdb reaches a FileHook *before* it lands.
//
// MECHANISM
//   cowbackup_lmdb links Debian's unmodified static liblmdb.a and asks the
//   linker to wrap the calls liblmdb makes to the kernel:
//
//     -Wl,--wrap=open,--wrap=pwrite,--wrap=writev,--wrap=write,
//         --wrap=ftruncate (and the *64 / pwritev spellings)
//
//   `nm liblmdb.a` shows that 0.9.24 as packaged references open, pwrite,
//   writev, write, lseek and ftruncate (no pwritev: it is built without
//   MDB_USE_PWRITEV). With --wrap every undefined reference to `pwrite` in
//   an object of the final link resolves to __wrap_pwrite (below), which
//   calls the real one as __real_pwrite (lmdb/wrap.cc). The option is an INTERFACE link
//   option of the CMake target, so it is applied in the link that pulls
//   liblmdb.a into the executable (or shared object) — the only link where
//   --wrap can see liblmdb's references.
//
//   Why not the alternatives:
//   - Interposing pwrite/writev by defining them in the executable collides
//     with the sanitizers' own interceptors of those functions and would
//     catch every write of the process, not just liblmdb's.
//   - A shared object that swallows liblmdb.a (-Bsymbolic, hidden mdb_*)
//     would carry its own copy of engine/ and backup/ next to the
//     application's: two copies of every class in one process.
//   - LD_PRELOAD as the only way: a deployment step that can silently be
//     missing. It is offered for programs that cannot be relinked
//     (preload/lmdb_preload.cc), through the same Intercept* calls.
//   --wrap needs no change to liblmdb and no step at run time, and a wrong
//   link is detected: Env::Open captures the descriptors liblmdb opens
//   through __wrap_open; if it saw none, the env was opened by some other
//   liblmdb (e.g. liblmdb.so came first on the link line) whose writes we
//   would not see, and Open fails saying so.
//
// SCOPE AND COST
//   A small table maps descriptors to FileHooks (lmdb/file_hook.h). Env::Open registers the
//   two descriptors liblmdb keeps on data.mdb: me_fd (mdb_env_get_fd) and
//   me_mfd, the O_DSYNC descriptor mdb_env_write_meta writes the meta page
//   through. me_mfd is not exposed by LMDB; we find it as the descriptor
//   opened by mdb_env_open, on this thread, on the same inode as me_fd.
//   Any write to another descriptor costs one acquire load of the table's
//   size and a scan of its few used slots (two per open env), then the
//   real call.
//
// OFFSETS
//   pwrite/pwritev carry their offset. writev and write (mdb_page_flush:
//   lseek + writev for runs of pages) write at the descriptor's position,
//   which the hook reads with lseek(fd, 0, SEEK_CUR) — only for hooked
//   descriptors. LMDB moves that position only under its writer mutex.
//   Writes may be any length at any offset: the meta write is a sub-page
//   pwrite; the engine preserves every page the range touches.
//
// Errors: the hook never fails a write; errno is preserved across it.
#pragma once

#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "cowbackup/status.h"
#include "lmdb/file_hook.h"

struct MDB_env;
struct MDB_txn;

namespace cowbackup::lmdb {

// Registers `fd` -> `hook`. Busy when the table is full.
Status RegisterFd(int fd, FileHook* hook);
// Removes every descriptor that points at `hook`.
void UnregisterHook(FileHook* hook);
// The hook of `fd`, or nullptr. For tests and the Env.
FileHook* LookupFd(int fd);

// Records the descriptors __wrap_open returns on this thread while alive
// (Env::Open wraps mdb_env_open in one). Not nestable. If `existing` is
// given, opens of exactly that path on this thread get O_NOFOLLOW and lose
// O_CREAT: mdb_env_open can neither create data.mdb nor follow a link there.
class OpenCapture {
 public:
  explicit OpenCapture(const char* existing = nullptr);
  ~OpenCapture();
  OpenCapture(const OpenCapture&) = delete;
  OpenCapture& operator=(const OpenCapture&) = delete;
  const std::vector<int>& fds() const { return fds_; }

 private:
  friend void CaptureOpenedFd(int fd);
  friend int GuardOpenFlags(const char* path, int flags);
  const char* const existing_;
  std::vector<int> fds_;
};
void CaptureOpenedFd(int fd);
// The flags __wrap_open passes on for `path` (OpenCapture's `existing`).
int GuardOpenFlags(const char* path, int flags);
// open()'s third argument, present only with O_CREAT or O_TMPFILE.
inline mode_t OpenModeArg(int flags, va_list ap) {
  return (flags & (O_CREAT | O_TMPFILE)) ? mode_t(va_arg(ap, unsigned)) : 0;
}

// The write path, before the real call, for both front ends: the --wrap
// entry points (lmdb/wrap.cc) and the preload library's interposers
// (preload/lmdb_preload.cc). A descriptor with no hook costs one acquire
// load while none is registered, else a scan of the used slots. Never
// fail; errno is kept.
void InterceptPwrite(int fd, const void* buf, size_t n, off_t offset) noexcept;
void InterceptWrite(int fd, const void* buf, size_t n) noexcept;    // at the position
void InterceptWritev(int fd, const struct iovec* iov, int iovcnt) noexcept;  // ditto
void InterceptPwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) noexcept;
void InterceptTruncate(int fd, off_t length) noexcept;

// The T0 gate of write txns begun with mdb_txn_begin itself, which the
// link wraps too (--wrap=mdb_txn_begin): a program that keeps its own
// mdb_* code (the C API, Env::Attach, or native_handle()) yields to a
// starting backup as Txn::Begin does. __wrap_mdb_txn_begin passes a
// top-level write txn of a registered env through `gate` first, unless
// this thread already did (GateBypass). Read and nested txns go straight
// through. The env must be unregistered before its Env::Impl is destroyed,
// with no txn of it beginning meanwhile (LMDB's own rule for
// mdb_env_close).
class T0Gate;
Status RegisterEnv(const MDB_env* env, T0Gate* gate);
// Removes the entry of `gate` (none if it was never registered: an attach
// refused because the env is attached already leaves that one alone).
void UnregisterEnv(const T0Gate* gate);
// The gate of `env`, or nullptr. For tests.
T0Gate* LookupEnvGate(const MDB_env* env);
// __wrap_mdb_txn_begin's step before the real call (see above).
void BeforeTxnBegin(MDB_env* env, MDB_txn* parent, unsigned int flags);
// While alive, this thread's mdb_txn_begin skips the gate: the caller
// passed it already (Txn::Begin, before MDB_NOLOCK's mutex), or is the
// backup itself taking the writer lock (which must not wait for itself).
class GateBypass {
 public:
  GateBypass();
  ~GateBypass();
  GateBypass(const GateBypass&) = delete;
  GateBypass& operator=(const GateBypass&) = delete;

 private:
  const bool saved_;
};

}  // namespace cowbackup::lmdb
