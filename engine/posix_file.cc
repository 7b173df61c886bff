#include "engine/posix_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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

namespace {
// The start time of `pid` in seconds since 1970, from /proc (field 22 of
// /proc/PID/stat, in clock ticks since boot, plus btime of /proc/stat);
// -1 if it cannot be read.
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
}  // namespace

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

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
  }
  return names;
}

void RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    ::unlink(path.c_str());
    return;
  }
  for (const std::string& name : ListDir(path)) RemoveTree(path + "/" + name);
  ::rmdir(path.c_str());
}

void RemoveFlatDir(const std::string& dir) {
  for (const std::string& name : ListDir(dir)) ::unlink((dir + "/" + name).c_str());
  ::rmdir(dir.c_str());
}

}  // namespace cowbackup
