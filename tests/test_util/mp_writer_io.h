// What the writer programs of the multi-process tests share
// (tests/sqlite/mp_writer.cc, tests/lmdb/lmdb_mp_writer.cc): the line
// protocol's output, its clock, and the seeded stop at a sync point that
// the kill sweeps use (test_util/mp_harness.h reads the other end).
#pragma once

#include <signal.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>

#include "engine/sync_point.h"

namespace cowbackup::test::mp_writer {

inline std::atomic<bool> g_stop{false};  // the "stop" command
inline thread_local bool t_writer = false;  // the committing thread

// CLOCK_MONOTONIC, as the harness's NowNs.
inline int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// One protocol line to the harness, whole, from any thread.
inline void Say(const std::string& line) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::cout << line << '\n' << std::flush;
}

inline std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

// The writer thread stops itself (SIGSTOP) at the `kill_at`-th hit of the
// sync point `point`, for the harness to SIGKILL it there.
inline void StopAt(const char* point, const char* kill_at) {
  static const std::string where = point;
  static const long nth = atol(kill_at);
  static std::atomic<long> hits{0};
  cowbackup::sync::SetCallback([](const char* name) {
    if (t_writer && where == name && hits.fetch_add(1) + 1 == nth) raise(SIGSTOP);
  });
}

}  // namespace cowbackup::test::mp_writer
