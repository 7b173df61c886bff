// Small POSIX helpers that record errno, syscall and path where they fail.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cowbackup/status.h"

namespace cowbackup {

// Loops over EINTR and short transfers. A read that reaches end of file
// before `len` bytes is Status::Incomplete naming the offset.
Status PreadFull(int fd, void* buf, size_t len, uint64_t offset, const std::string& path);
Status PwriteFull(int fd, const void* buf, size_t len, uint64_t offset, const std::string& path);
Status WriteFull(int fd, const void* buf, size_t len, const std::string& path);
// Reads up to `len` bytes (fewer only at end of input); *got says how many.
Status ReadUpTo(int fd, void* buf, size_t len, size_t* got, const std::string& path);
Status FsyncFd(int fd, const std::string& path);
// Names in `dir`, not . or ..; empty if it cannot be read.
std::vector<std::string> ListDir(const std::string& dir);
// Removes `path`: a file, or a directory and everything in it (rm -rf).
// Walks by directory descriptors opened with O_NOFOLLOW and removes with
// unlinkat, so a symlink swapped in for a subdirectory mid-walk is removed,
// never followed. Best effort.
void RemoveTree(const std::string& path);
// Removes a directory holding only plain files (an LMDB environment); a
// subdirectory, which no environment has, is left alone with it. Never
// follows a symlink at `dir`.
void RemoveFlatDir(const std::string& dir);

// ---- Files a hostile local user can touch (docs/RELIABILITY.md) ----

// A second descriptor of the file `fd` is open on, with `flags`, through
// /proc/self/fd (the open file, never a name someone could have swapped),
// checked to be the same inode. -1 with errno set if it cannot be had.
int ReopenFd(int fd, int flags);
// Opens `path` with `flags` only if it is a regular file, never following
// a symlink and never opening anything else (a FIFO would block, a device
// has side effects): the name is pinned with O_PATH|O_NOFOLLOW, checked
// with fstat, then reopened through ReopenFd. -1 with errno set: ELOOP for
// a symlink, EINVAL for any other non-regular file.
int OpenRegular(const std::string& path, int flags);
// "a directory", "a FIFO", "a character device", ...: what `mode` is, for
// messages.
const char* FileKind(unsigned mode);
// Creates a new entry "<prefix><pid>-<random><suffix>" with `make` (which
// returns >= 0, or -1 with errno set), trying fresh names while the name is
// taken (EEXIST), so a name planted in advance never blocks us or is
// reused. *path is the name made; returns make's result.
int MakeUnique(const std::string& prefix, const std::string& suffix,
               int (*make)(const char* path), std::string* path);
// `make`s for MakeUnique: a 0600 file (O_RDWR, O_EXCL, O_NOFOLLOW), and a
// 0700 directory (returns 0).
int CreateExclusiveFile(const char* path);
int CreatePrivateDir(const char* path);
// Whether the file `fd` is open on is also open elsewhere (another open
// file description, in any process, this one included): told by whether
// a write lease can be had. kUnknown where the file system has no leases
// or the file is not ours. Used to never replace a file in use, nor
// shrink one someone may still read.
enum class Sharing { kOnlyHere, kOpenElsewhere, kUnknown };
Sharing FileSharing(int fd);

// fsync the directory holding `path`, so a rename into it is durable.
Status FsyncParentDir(const std::string& path);
std::string ParentDir(const std::string& path);
// True if the process that created a file at `created_unix_s` (seconds
// since 1970) may still run as `pid`: a process with that pid exists and
// started no later than the file was made. A pid reused by a newer process
// (likely on a busy machine) does not keep a dead owner's files alive.
bool OwnerMayBeAlive(int64_t pid, int64_t created_unix_s);
// The start time of `pid` in seconds since 1970, from /proc (field 22 of
// /proc/PID/stat, in clock ticks since boot, plus btime of /proc/stat);
// -1 if it cannot be read.
int64_t ProcessStartUnix(int64_t pid);
std::string BaseName(const std::string& path);

}  // namespace cowbackup
