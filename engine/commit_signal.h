// CommitSignal: whether the application is in the I/O phase of a commit, so
// a backup that was asked to can hold its destination writes until it is
// over (JobConfig::yield_to). On a disk the two share, a copy write queued
// ahead of a commit's fsyncs is what costs the application its commits;
// waiting for the gaps between commits trades backup time for that, far
// more cheaply than a rate limit (README, Performance).
//
// Front ends report the phase (SQLite shim: a connection holds EXCLUSIVE on
// the database file, which in rollback mode spans the journal syncs, the
// page writes, the database sync and the journal's removal; LMDB wrapper:
// mdb_txn_commit of a write transaction). Not on the write path: per
// commit two reads of the steady clock and a few relaxed adds, which also
// keep the CommitHistory the automatic pacing reads (engine/pacer.h).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace cowbackup {

// The steady clock in nanoseconds: what CommitHistory's buckets and the
// pacer count in (CLOCK_MONOTONIC, the same in every process).
inline int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What the application experienced, for the pacer (engine/pacer.h): the
// commits that ended and the time their I/O phase took, per 100 ms of the
// steady clock, for the last kBuckets of them. Lock-free; a bucket reused
// for a new 100 ms while a commit adds to it may lose that commit (the
// database's own write lock makes commits to one file one at a time, so
// this is rare): the figures are a measurement, never a protocol.
class CommitHistory {
 public:
  static constexpr int kBuckets = 16;
  static constexpr int64_t kBucketNs = 100'000'000;

  void Record(int64_t end_ns, int64_t took_ns) noexcept {
    const int64_t epoch = end_ns / kBucketNs;
    Bucket& b = buckets_[epoch % kBuckets];
    int64_t seen = b.epoch.load(std::memory_order_acquire);
    if (seen != epoch && b.epoch.compare_exchange_strong(seen, epoch, std::memory_order_acq_rel)) {
      b.commits.store(0, std::memory_order_relaxed);
      b.ns.store(0, std::memory_order_relaxed);
    }
    b.commits.fetch_add(1, std::memory_order_relaxed);
    b.ns.fetch_add(uint64_t(took_ns > 0 ? took_ns : 0), std::memory_order_relaxed);
  }

  struct Sum {
    uint64_t commits = 0;
    uint64_t ns = 0;  // their I/O phases, together
  };
  // The commits that ended in the whole buckets [from_ns, to_ns) covers
  // (at most the last kBuckets - 1 before to_ns's own).
  Sum Between(int64_t from_ns, int64_t to_ns) const noexcept {
    Sum sum;
    const int64_t last = to_ns / kBucketNs;
    for (int64_t e = std::max(from_ns / kBucketNs, last - (kBuckets - 1)); e < last; e++) {
      const Bucket& b = buckets_[e % kBuckets];
      if (b.epoch.load(std::memory_order_acquire) != e) continue;
      sum.commits += b.commits.load(std::memory_order_relaxed);
      sum.ns += b.ns.load(std::memory_order_relaxed);
    }
    return sum;
  }

 private:
  struct Bucket {
    std::atomic<int64_t> epoch{-1};
    std::atomic<uint64_t> commits{0};
    std::atomic<uint64_t> ns{0};
  };
  Bucket buckets_[kBuckets];
};

class CommitSignal {
 public:
  CommitSignal() = default;
  CommitSignal(const CommitSignal&) = delete;
  CommitSignal& operator=(const CommitSignal&) = delete;

  void begin() noexcept {
    began_ns_.store(SteadyNowNs(), std::memory_order_relaxed);
    active_.fetch_add(1, std::memory_order_relaxed);
  }
  void end() noexcept {
    active_.fetch_sub(1, std::memory_order_relaxed);
    const int64_t now = SteadyNowNs();
    history_.Record(now, now - began_ns_.load(std::memory_order_relaxed));
  }
  bool active() const noexcept { return active_.load(std::memory_order_relaxed) != 0; }
  const CommitHistory& history() const noexcept { return history_; }

 private:
  std::atomic<uint32_t> active_{0};  // commits in their I/O phase
  // When the commit in its I/O phase began: one at a time per file (its
  // write lock), so one word is enough.
  std::atomic<int64_t> began_ns_{0};
  CommitHistory history_;
};

}  // namespace cowbackup
