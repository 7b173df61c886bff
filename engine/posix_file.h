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
// Removes `path`: a file, or a directory and everything in it (rm -rf;
// symlinks are removed, not followed). Best effort.
void RemoveTree(const std::string& path);
// Removes a directory holding only plain files (an LMDB environment); a
// subdirectory, which no environment has, is left alone with it.
void RemoveFlatDir(const std::string& dir);

// fsync the directory holding `path`, so a rename into it is durable.
Status FsyncParentDir(const std::string& path);
std::string ParentDir(const std::string& path);
// True if the process that created a file at `created_unix_s` (seconds
// since 1970) may still run as `pid`: a process with that pid exists and
// started no later than the file was made. A pid reused by a newer process
// (likely on a busy machine) does not keep a dead owner's files alive.
bool OwnerMayBeAlive(int64_t pid, int64_t created_unix_s);
std::string BaseName(const std::string& path);

}  // namespace cowbackup
