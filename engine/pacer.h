// Pacer: the copy's pace set by what the application experiences, so a
// user need not pick a rate (BackupOptions::pace). A congestion controller
// whose signal is the application's commits (engine/commit_signal.h):
//
//   baseline    the mean commit time in the second before the backup
//               began. With none (no commit then), the copy runs at full
//               speed; once commits appear it pauses for one probe (two
//               whole 100 ms buckets without copying) to take one.
//   each bucket the share of its speed the application keeps is estimated
//               as baseline / the mean commit time of the last two whole
//               buckets; a window with no commit where the baseline had two
//               or more reads as 0 (a writer stalled across it). A window
//               with no commit and a baseline of fewer reads as unaffected.
//   the rate    below the target share: cut to 70 % (from the copy's
//               measured speed when it was unlimited), never below
//               kMinRateMb, so the backup always ends. At or above: raised
//               by 10 % + 1 MB/s, and lifted altogether once it is twice
//               what the copy reached. Additive increase, multiplicative
//               decrease: the AIMD of TCP.
//   re-probe    after every kReprobeNs of paced copying the copy pauses for
//               a probe again: the application's own load drifts.
//
// Commit time, not commits/s, is the signal: an application that commits
// when it has work does not commit less under a backup, it waits longer. For
// one that commits back to back the two are the same share.
//
// Not thread-safe: the copier alone calls it. Time is the steady clock in
// nanoseconds (SteadyNowNs), passed in so tests drive it.
#pragma once

#include <cstdint>

#include "engine/commit_signal.h"

namespace cowbackup {

class Pacer {
 public:
  static constexpr double kMinRateMb = 1;
  static constexpr int64_t kReprobeNs = 10'000'000'000;

  // `history`: the commits to watch (not owned); `target_share`: the share
  // of its speed the application keeps, in (0, 1].
  Pacer(const CommitHistory* history, double target_share, int64_t now_ns);

  // The copier, before each write to the destination, with the bytes it
  // wrote so far: the time that write may start (now_ns or later).
  int64_t NextWriteNs(uint64_t bytes_written, int64_t now_ns);

  // The limit now, MB/s; 0 while the copy runs at full speed.
  double rate_mb() const { return rate_mb_; }
  // What it did, for the job's summary.
  struct Counts {
    uint64_t decreases = 0, increases = 0, probes = 0;
    double lowest_rate_mb = 0;  // 0 if never limited
    double last_share = 1;      // the last estimate of the application's share
  };
  const Counts& counts() const { return counts_; }

 private:
  void Decide(uint64_t bytes_written, int64_t now_ns);
  void SetRate(double mb, uint64_t bytes_written, int64_t now_ns);
  void StartProbe(int64_t now_ns);

  const CommitHistory* const history_;
  const double target_;
  double base_ns_ = 0;          // mean commit time without the copy; 0: none yet
  double base_per_window_ = 0;  // commits in two buckets then
  double rate_mb_ = 0;          // 0: unlimited
  int64_t decided_epoch_ = 0;   // the last bucket a decision was made in
  // The rate's anchor: from here the bytes are paced at rate_mb_.
  int64_t anchor_ns_ = 0;
  uint64_t anchor_bytes_ = 0;
  int64_t probe_until_ns_ = 0;  // no write before this (a probe runs)
  int64_t probe_from_ns_ = 0;
  int64_t next_probe_ns_ = 0;
  int64_t hold_until_ns_ = 0;   // no second cut before the first shows
  // The copy's own speed while unlimited: bytes and time since the limit
  // was lifted.
  int64_t free_since_ns_ = 0;
  uint64_t free_since_bytes_ = 0;
  double full_speed_mb_ = 0;
  Counts counts_;
};

}  // namespace cowbackup
