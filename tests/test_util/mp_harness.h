// Real processes for the multi-process tests (issue 12), SQLite's and
// LMDB's: writer processes that speak one line protocol (below), the
// command-line tool as a process of its own, and the committed-prefix
// window across processes. tests/sqlite/multiprocess_harness.h and
// tests/lmdb/lmdb_mp_harness.h start their writer programs through it.
//
//   WriterProcess w({BuildDir() + "/tests/lmdb/lmdb_mp_writer", env, "1", "sync"}, 1, "lmdb");
//   ASSERT_TRUE(w.WaitCommits(10));
//   Cli backup = RunCli({"backup", "--json", env, dest}, dir);   // its own process
//   const Window win = CommitWindow(AllCommits({&w}), backup.t_call, backup.t_return);
//   w.Stop();
//
// The protocol. A writer commits transactions numbered by one global
// sequence (allocated inside each transaction, under the database's write
// lock, so commits are totally ordered) and prints one line per event on
// stdout; it reads commands on stdin ("backup DEST FORMAT VARIANT
// MAX_RATE_MB SEGMENT_PAGES", "stop"):
//   R PID                              ready: the database is open
//   C SEQ T_BEGIN T_LOCKED T_END       committed SEQ: before the write txn
//                                      began, once it held the write lock,
//                                      after the commit returned
//   P N T_BEGIN T_LOCKED T_END         (SQLite spill mode) the N-th
//                                      transaction spilled and rolled back
//   E MESSAGE                          a transaction failed
//   B T_CALL T_RETURN ok SUMMARY_JSON  a backup returned
//   B T_CALL T_RETURN error MESSAGE
//   S                                  stopped
// Times are CLOCK_MONOTONIC nanoseconds in every process (steady_clock
// here, clock_gettime in the C++ writers, time.monotonic_ns() in python).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <initializer_list>
#include <vector>

#include "test_util/files.h"

extern char** environ;

namespace cowbackup::test::mp {

inline int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// posix_spawn of `argv` with stdin from `in_fd` (or /dev/null if -1) and
// stdout to `out_fd`, stderr to `err_fd` (-1: the test's own).
inline pid_t SpawnProgram(const std::vector<std::string>& argv, int in_fd, int out_fd, int err_fd) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (in_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
  } else {
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  }
  if (out_fd >= 0) posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  if (err_fd >= 0) posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  std::vector<std::string> args = argv;
  std::vector<char*> p;
  for (std::string& a : args) p.push_back(a.data());
  p.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, p[0], &fa, nullptr, p.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << argv[0];
  return rc == 0 ? pid : -1;
}

// One committed transaction, as its writer reported it.
struct Commit {
  int64_t seq = 0;
  int64_t t_begin = 0, t_locked = 0, t_end = 0;
  int writer = 0;
  // How long the transaction held the database's write lock (SQLite's, or
  // LMDB's writer mutex): what cowbackup's waits add to (waits for the lock
  // itself are SQLite's busy handler, or LMDB's mutex).
  int64_t held_ns() const { return t_end - t_locked; }
};

// A backup run by a writer process (its "B" line) or by the CLI.
struct BackupRun {
  int64_t t_call = 0, t_return = 0;
  bool ok = false;
  std::string text;  // the summary JSON, or the error
};

// A writer process speaking the protocol above, and what it reported. Not
// copyable; the destructor kills it if it still runs. `kind` names it in
// messages ("python", "c++", "lmdb").
class WriterProcess {
 public:
  WriterProcess(const std::vector<std::string>& argv, int id, std::string kind) : id_(id), kind_(std::move(kind)) {
    // A command to a writer that died must fail the test, not kill it.
    ::signal(SIGPIPE, SIG_IGN);
    int to[2], from[2];
    EXPECT_EQ(::pipe2(to, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(from, O_CLOEXEC), 0);
    pid_ = SpawnProgram(argv, to[0], from[1], -1);
    ::close(to[0]);
    ::close(from[1]);
    in_ = to[1];
    reader_ = std::thread([this, fd = from[0]] { Read(fd); });
  }
  virtual ~WriterProcess() {
    if (pid_ > 0 && !reaped_) Kill();
    if (in_ >= 0) ::close(in_);
    if (reader_.joinable()) reader_.join();
  }
  WriterProcess(const WriterProcess&) = delete;
  WriterProcess& operator=(const WriterProcess&) = delete;

  pid_t pid() const { return pid_; }
  int id() const { return id_; }
  const char* kind_name() const { return kind_.c_str(); }

  // Until `n` commits (or, spill mode, rolled-back spills) are reported;
  // false at the deadline or if the process ended.
  bool WaitCommits(size_t n, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return commits_.size() + spills_ >= n || eof_; }) &&
           commits_.size() + spills_ >= n;
  }
  // Runs a backup in this process (mp_writer's "backup" command) and waits
  // for its report.
  BackupRun Backup(const std::string& dest, const std::string& format, const std::string& variant,
                   double max_rate_mb, uint32_t segment_pages) {
    StartBackup(dest, format, variant, max_rate_mb, segment_pages);
    return WaitBackup();
  }
  // The same in two steps: the command, and later its report.
  void StartBackup(const std::string& dest, const std::string& format, const std::string& variant,
                   double max_rate_mb, uint32_t segment_pages) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      backups_asked_++;
    }
    char rate[32];
    snprintf(rate, sizeof rate, "%g", max_rate_mb);
    Send("backup " + dest + " " + format + " " + variant + " " + rate + " " + std::to_string(segment_pages));
  }
  BackupRun WaitBackup() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(300), [&] { return backups_.size() >= backups_asked_ || eof_; });
    if (backups_.size() >= backups_asked_) return backups_[backups_asked_ - 1];
    ADD_FAILURE() << "writer " << id_ << " (" << kind_name() << ") reported no backup";
    return {};
  }
  // True once the last backup asked for has reported (or the process ended).
  bool BackupDone() const {
    std::lock_guard<std::mutex> lock(mu_);
    return backups_.size() >= backups_asked_ || eof_;
  }
  // Asks it to stop and waits for it to exit 0 (after its "S" line).
  void Stop() {
    Send("stop");
    ::close(in_);
    in_ = -1;
    const int status = Reap();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "writer " << id_ << " (" << kind_name() << ") ended with status " << status;
    if (reader_.joinable()) reader_.join();
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_TRUE(stopped_) << "writer " << id_ << " did not report its stop";
  }
  // SIGKILL; returns the time it was sent.
  int64_t Kill() {
    const int64_t t = NowNs();
    if (!reaped_) ::kill(pid_, SIGKILL);  // a reaped pid may be another process's now
    Reap();
    if (reader_.joinable()) reader_.join();
    return t;
  }
  // True once the process stopped itself (mp_writer's KILL_POINT), false at
  // the deadline or if it exited.
  bool WaitStopped(std::chrono::steady_clock::time_point deadline) {
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG | WUNTRACED);
      if (r == pid_ && WIFSTOPPED(status)) return true;
      if (r == pid_) {
        reaped_ = true;
        status_ = status;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }

  std::vector<Commit> commits() const {
    std::lock_guard<std::mutex> lock(mu_);
    return commits_;
  }
  size_t commit_count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return commits_.size();
  }
  size_t spills() const {
    std::lock_guard<std::mutex> lock(mu_);
    return spills_;
  }
  std::vector<std::string> errors() const {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }
  // Idle mode (SQLite's mp_writer.cc): `n` commits, returned when all are
  // reported.
  bool CommitNow(size_t n) {
    const size_t before = commit_count();
    Send("commit " + std::to_string(n));
    return WaitCommits(before + n);
  }
  // Idle mode (SQLite's mp_writer.cc): PRAGMA wal_checkpoint(`mode`); its
  // "K" line's three numbers ("busy log checkpointed"), or "" if it failed
  // (errors()).
  std::string CheckpointNow(const std::string& mode) {
    size_t asked;
    {
      std::lock_guard<std::mutex> lock(mu_);
      asked = ++checkpoints_asked_;
    }
    Send("checkpoint " + mode);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(120),
                 [&] { return checkpoints_.size() + checkpoint_errors_ >= asked || eof_; });
    return checkpoints_.size() >= asked ? checkpoints_[asked - 1] : "";
  }

 private:
  void Send(const std::string& line) {
    const std::string l = line + "\n";
    EXPECT_EQ(::write(in_, l.data(), l.size()), ssize_t(l.size())) << "writer " << id_;
  }
  int Reap() {
    int status = 0;
    if (!reaped_) {
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      reaped_ = true;
      status_ = status;
    }
    return status_;
  }
  void Read(int fd) {
    FILE* f = fdopen(fd, "r");
    char* line = nullptr;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
      std::string l(line, size_t(n) - (line[n - 1] == '\n' ? 1 : 0));
      Parse(l);
    }
    free(line);
    fclose(f);
    std::lock_guard<std::mutex> lock(mu_);
    eof_ = true;
    cv_.notify_all();
  }
  void Parse(const std::string& l) {
    std::istringstream in(l);
    std::string tag;
    in >> tag;
    std::lock_guard<std::mutex> lock(mu_);
    if (tag == "C") {
      Commit c;
      c.writer = id_;
      in >> c.seq >> c.t_begin >> c.t_locked >> c.t_end;
      commits_.push_back(c);
    } else if (tag == "P") {
      spills_++;
    } else if (tag == "E") {
      errors_.push_back(l.substr(2));
      if (l.rfind("E checkpoint:", 0) == 0) checkpoint_errors_++;
    } else if (tag == "K") {
      checkpoints_.push_back(l.substr(2));
    } else if (tag == "B") {
      BackupRun b;
      std::string result;
      in >> b.t_call >> b.t_return >> result;
      b.ok = result == "ok";
      std::getline(in, b.text);
      if (!b.text.empty() && b.text[0] == ' ') b.text.erase(0, 1);
      backups_.push_back(b);
    } else if (tag == "S") {
      stopped_ = true;
    } else if (tag != "R") {
      errors_.push_back("unexpected line: " + l);
    }
    cv_.notify_all();
  }

  const int id_;
  const std::string kind_;
  pid_t pid_ = -1;
  int in_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Commit> commits_;
  size_t spills_ = 0;
  std::vector<std::string> errors_;
  std::vector<BackupRun> backups_;
  size_t backups_asked_ = 0;
  std::vector<std::string> checkpoints_;
  size_t checkpoints_asked_ = 0, checkpoint_errors_ = 0;
  bool stopped_ = false, eof_ = false;
};

// The command-line tool run as a process of its own: build/cowbackup ARGS.
struct Cli {
  pid_t pid = -1;
  int64_t t_call = 0, t_return = 0;
  int status = 0;
  bool reaped = false;
  std::string out, err;
  bool ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  bool killed() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }
};

// Starts it, with stdout and stderr into files of `dir` (FinishCli reads them).
inline Cli StartCli(const std::vector<std::string>& args, const std::string& dir) {
  static int n = 0;
  const std::string base = dir + "/.cli-" + std::to_string(getpid()) + "-" + std::to_string(n++);
  const int out = ::open((base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err = ::open((base + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  std::vector<std::string> argv = {BuildDir() + "/cowbackup"};
  argv.insert(argv.end(), args.begin(), args.end());
  Cli c;
  c.t_call = NowNs();
  c.pid = SpawnProgram(argv, -1, out, err);
  ::close(out);
  ::close(err);
  c.out = base + ".out";  // the file names until FinishCli
  c.err = base + ".err";
  return c;
}

// True once it has exited (reaped; FinishCli then only reads its output).
inline bool CliExited(Cli* c) {
  if (!c->reaped && ::waitpid(c->pid, &c->status, WNOHANG) == c->pid) {
    c->reaped = true;
    c->t_return = NowNs();
  }
  return c->reaped;
}

// Waits for it (after an optional SIGKILL) and reads its output.
inline void FinishCli(Cli* c, bool kill_it = false) {
  if (!c->reaped) {
    if (kill_it) ::kill(c->pid, SIGKILL);
    while (::waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR) {
    }
    c->reaped = true;
    c->t_return = NowNs();
  }
  const std::string out = c->out, err = c->err;
  c->out = ReadFile(out);
  c->err = ReadFile(err);
  ::unlink(out.c_str());
  ::unlink(err.c_str());
}

inline Cli RunCli(const std::vector<std::string>& args, const std::string& dir) {
  Cli c = StartCli(args, dir);
  FinishCli(&c);
  return c;
}

// A JSON number field of a summary ("preserved_pages", ...); -1 if absent.
inline int64_t JsonInt(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  size_t at = json.find(k);
  if (at == std::string::npos) return -1;
  at += k.size();
  while (at < json.size() && json[at] == ' ') at++;
  return std::strtoll(json.c_str() + at, nullptr, 10);
}

// Every commit the writers reported (any WriterProcess kind).
template <typename W>
std::vector<Commit> AllCommits(const std::vector<const W*>& writers) {
  std::vector<Commit> all;
  for (const W* w : writers) {
    const std::vector<Commit> c = w->commits();
    all.insert(all.end(), c.begin(), c.end());
  }
  return all;
}
inline std::vector<Commit> AllCommits(std::initializer_list<const WriterProcess*> writers) {
  return AllCommits(std::vector<const WriterProcess*>(writers));
}

// The committed-prefix window of a backup called at t_call that returned
// at t_return: every seq whose COMMIT returned before the call is in the
// copy (K >= lo), none whose BEGIN started after the return is (K <= hi).
struct Window {
  int64_t lo = 0, hi = INT64_MAX;
};
inline Window CommitWindow(const std::vector<Commit>& all, int64_t t_call, int64_t t_return) {
  Window w;
  for (const Commit& c : all) {
    if (c.t_end < t_call) w.lo = std::max(w.lo, c.seq);
    if (c.t_begin > t_return) w.hi = std::min(w.hi, c.seq - 1);
  }
  return w;
}

// Each seq reported once, by one writer; "" or what is wrong.
inline std::string DistinctSeqs(std::vector<Commit> all) {
  std::sort(all.begin(), all.end(), [](const Commit& a, const Commit& b) { return a.seq < b.seq; });
  for (size_t i = 1; i < all.size(); i++) {
    if (all[i].seq == all[i - 1].seq) {
      return "seq " + std::to_string(all[i].seq) + " reported by writers " + std::to_string(all[i - 1].writer) +
             " and " + std::to_string(all[i].writer);
    }
  }
  return "";
}

// Names in `dir` that a finished backup must not leave: snapshot volumes
// and temporary archives.
inline std::vector<std::string> Leftovers(const TempDir& dir) {
  std::vector<std::string> found;
  for (const std::string& name : dir.list()) {
    const bool volume = name.size() > 8 && name.compare(name.size() - 8, 8, ".cowsnap") == 0;
    if (volume || name.find(".cowtmp-") != std::string::npos) found.push_back(name);
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace cowbackup::test::mp
