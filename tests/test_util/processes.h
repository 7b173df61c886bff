// Real processes in tests: fork a child running a lambda, wait for it, and
// signal between processes with a pipe (coord and cli tests).
//
//   Pipe ready, hold;
//   const pid_t child = Spawn([&] {
//     ... attach, claim ...
//     ready.Tell();
//     hold.CloseWrite();
//     hold.Hear();  // until killed, or every writer of `hold` is gone
//     return 0;
//   });
//   ready.CloseWrite();
//   ASSERT_TRUE(ready.Hear());
//   ... look at what the child holds; kill(child, SIGKILL) ...
//   Wait(child);
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace cowbackup::test {

// A child process running `body`; its exit code is body's.
inline pid_t Spawn(const std::function<int()>& body) {
  fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  EXPECT_GT(pid, 0);
  return pid;
}

// The child's wait status.
inline int Wait(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// A one-byte signal between processes: Tell() in one, Hear() in the other.
class Pipe {
 public:
  Pipe() { EXPECT_EQ(::pipe2(fd_, O_CLOEXEC), 0); }
  ~Pipe() {
    CloseRead();
    CloseWrite();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void Tell() { EXPECT_EQ(::write(fd_[1], "x", 1), 1); }
  // True if a byte came, false at end of input (every writer gone: a
  // process that only listens closes its own write end first).
  bool Hear() {
    char c;
    ssize_t n;
    while ((n = ::read(fd_[0], &c, 1)) < 0 && errno == EINTR) {
    }
    return n == 1;
  }
  // Hear(), waiting at most `timeout_ms`: false on a timeout too, so a
  // child that never tells cannot hang the test.
  bool HearWithin(int timeout_ms) {
    struct pollfd p = {fd_[0], POLLIN, 0};
    int n;
    while ((n = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    return n > 0 && Hear();
  }
  // One value, sent whole (a pipe write of at most PIPE_BUF bytes is atomic).
  void Send(uint64_t v) { EXPECT_EQ(::write(fd_[1], &v, sizeof v), ssize_t(sizeof v)); }
  // False at end of input.
  bool Receive(uint64_t* v) {
    ssize_t n;
    while ((n = ::read(fd_[0], v, sizeof *v)) < 0 && errno == EINTR) {
    }
    return n == ssize_t(sizeof *v);
  }
  std::string ReadAll() {
    std::string out;
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd_[0], buf, sizeof buf)) != 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      out.append(buf, size_t(n));
    }
    return out;
  }
  int read_fd() const { return fd_[0]; }
  int write_fd() const { return fd_[1]; }
  void CloseRead() {
    if (fd_[0] >= 0) ::close(fd_[0]);
    fd_[0] = -1;
  }
  void CloseWrite() {
    if (fd_[1] >= 0) ::close(fd_[1]);
    fd_[1] = -1;
  }

 private:
  int fd_[2] = {-1, -1};
};

}  // namespace cowbackup::test
