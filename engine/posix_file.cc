#include "engine/posix_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cowbackup {

Status Status::FromErrno(const std::string& what, const std::string& where, int err) {
  Code code = (err == ENOSPC || err == EDQUOT) ? Code::kNoSpace : Code::kIOError;
  return Status(code, what, where.empty() ? std::string(strerror(err))
                                          : where + ": " + strerror(err));
}

Status PreadFull(int fd, void* buf, size_t len, uint64_t offset, const std::string& path) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read", path, errno);
    }
    if (n == 0) {
      return Status::Incomplete("read: unexpected end of file",
                                path + ", offset " + std::to_string(offset));
    }
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

Status PwriteFull(int fd, const void* buf, size_t len, uint64_t offset, const std::string& path) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write", path, errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

Status WriteFull(int fd, const void* buf, size_t len, const std::string& path) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write", path, errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return Status::OK();
}

Status ReadUpTo(int fd, void* buf, size_t len, size_t* got, const std::string& path) {
  auto* p = static_cast<uint8_t*>(buf);
  *got = 0;
  while (*got < len) {
    ssize_t n = ::read(fd, p + *got, len - *got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read", path, errno);
    }
    if (n == 0) break;
    *got += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status FsyncFd(int fd, const std::string& path) {
  if (::fsync(fd) != 0) return Status::FromErrno("fsync", path, errno);
  return Status::OK();
}

std::string ParentDir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

int64_t ProcessStartUnix(int64_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
  FILE* f = fopen(path, "re");
  if (!f) return -1;
  char buf[1024];
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  // The command name (field 2) may hold spaces: fields resume after ')'.
  const char* p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long long ticks = 0;
  int field = 2;
  for (const char* tok = p + 1; *tok && field < 22; tok++) {
    if (*tok == ' ') {
      field++;
      if (field == 22) ticks = strtoull(tok + 1, nullptr, 10);
    }
  }
  f = fopen("/proc/stat", "re");
  if (!f) return -1;
  long long btime = -1;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "btime %lld", &btime) == 1) break;
  }
  fclose(f);
  const long hz = sysconf(_SC_CLK_TCK);
  if (btime < 0 || hz <= 0) return -1;
  return btime + int64_t(ticks / (unsigned long long)hz);
}

bool OwnerMayBeAlive(int64_t pid, int64_t created_unix_s) {
  if (pid <= 0) return false;
  if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) return false;
  const int64_t started = ProcessStartUnix(pid);
  // Unknown start time: assume alive (never delete a live job's files).
  // One second of slack for the clock-tick rounding of the start time.
  return started < 0 || started <= created_unix_s + 1;
}

Status FsyncParentDir(const std::string& path) {
  std::string dir = ParentDir(path);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open directory", dir, errno);
  Status s = FsyncFd(fd, dir);
  ::close(fd);
  return s;
}

namespace {
// Names in the directory open at `dirfd` (which stays open).
std::vector<std::string> ListDirFd(int dirfd) {
  std::vector<std::string> names;
  const int fd = ::dup(dirfd);  // closedir closes its descriptor
  DIR* d = fd < 0 ? nullptr : ::fdopendir(fd);
  if (d == nullptr) {
    if (fd >= 0) ::close(fd);
    return names;
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  return names;
}

int OpenDirNoFollow(int at, const char* name) {
  return ::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

// Removes `name` in the directory `dirfd`: recursively if it is a directory
// (entered only through O_NOFOLLOW), else unlinkat, which never follows.
void RemoveAt(int dirfd, const std::string& name) {
  const int fd = OpenDirNoFollow(dirfd, name.c_str());
  if (fd < 0) {
    ::unlinkat(dirfd, name.c_str(), 0);  // not a directory (or a symlink to one)
    return;
  }
  for (const std::string& child : ListDirFd(fd)) RemoveAt(fd, child);
  ::close(fd);
  ::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
}
}  // namespace

std::vector<std::string> ListDir(const std::string& dir) {
  // Follows a symlink at `dir`: a destination directory may be reached
  // through one. Listing opens nothing in it.
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return {};
  std::vector<std::string> names = ListDirFd(fd);
  ::close(fd);
  return names;
}

void RemoveTree(const std::string& path) {
  const std::string parent = ParentDir(path);
  const int dirfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return;
  RemoveAt(dirfd, BaseName(path));
  ::close(dirfd);
}

void RemoveFlatDir(const std::string& dir) {
  const int fd = OpenDirNoFollow(AT_FDCWD, dir.c_str());
  if (fd < 0) return;
  for (const std::string& name : ListDirFd(fd)) ::unlinkat(fd, name.c_str(), 0);
  ::close(fd);
  ::rmdir(dir.c_str());
}

int ReopenFd(int fd, int flags) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  const int fd2 = ::open(proc, flags | O_CLOEXEC);
  if (fd2 < 0) return -1;
  struct stat a, b;
  if (::fstat(fd, &a) != 0 || ::fstat(fd2, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
    ::close(fd2);
    errno = EXDEV;  // not the same file: never use it
    return -1;
  }
  return fd2;
}

int OpenRegular(const std::string& path, int flags) {
  const int pinned = ::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pinned < 0) return -1;
  struct stat st;
  int fd = -1;
  if (::fstat(pinned, &st) != 0) {
    // errno from fstat
  } else if (S_ISLNK(st.st_mode)) {
    errno = ELOOP;
  } else if (!S_ISREG(st.st_mode)) {
    errno = EINVAL;
  } else {
    fd = ReopenFd(pinned, flags);
  }
  const int err = errno;
  ::close(pinned);
  errno = err;
  return fd;
}

const char* FileKind(unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symbolic link";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    default: return "not a regular file";
  }
}

int MakeUnique(const std::string& prefix, const std::string& suffix,
               int (*make)(const char* path), std::string* path) {
  for (int attempt = 0;; attempt++) {
    uint64_t r = 0;
    if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r) {
      r = uint64_t(::getpid()) * 0x9e3779b97f4a7c15ull ^ uint64_t(attempt) ^
          uint64_t(reinterpret_cast<uintptr_t>(&r));
    }
    char tail[48];
    snprintf(tail, sizeof tail, "%d-%016llx", int(::getpid()), (unsigned long long)r);
    *path = prefix + tail + suffix;
    const int rc = make(path->c_str());
    if (rc >= 0 || errno != EEXIST || attempt == 63) return rc;
  }
}

int CreateExclusiveFile(const char* path) {
  return ::open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

int CreatePrivateDir(const char* path) { return ::mkdir(path, 0700); }

Sharing FileSharing(int fd) {
  if (::fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
    ::fcntl(fd, F_SETLEASE, F_UNLCK);
    return Sharing::kOnlyHere;
  }
  return errno == EAGAIN ? Sharing::kOpenElsewhere : Sharing::kUnknown;
}

}  // namespace cowbackup
