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
// steady clock, for the last kBuckets of them. Lock-free, in its own memory
// or bound to kSize bytes elsewhere: the coordination region keeps one that
// every attached process records into (docs/REGION.md, "Commit history"),
// so a backup in any process paces by all of them. A bucket taken over for
// a new 100 ms while another commit adds to it may lose that commit's time;
// the figures are a measurement, never a protocol.
class CommitHistory {
 public:
  static constexpr int kBuckets = 16;
  static constexpr int64_t kBucketNs = 100'000'000;
  // Bucket i is two 64-bit words at 16 * i: (epoch << 32) | commits, where
  // epoch is the bucket's 100 ms of the steady clock modulo 2^32, and the
  // commits' total I/O time in ns.
  static constexpr size_t kSize = 16 * kBuckets;

  CommitHistory() = default;
  CommitHistory(const CommitHistory&) = delete;
  CommitHistory& operator=(const CommitHistory&) = delete;

  // Records into `storage` (kSize bytes, 8-byte aligned, zero or written
  // by this class) from now on; nullptr: into its own memory again. Not
  // while a Record or Between runs.
  void Bind(void* storage) { words_ = storage != nullptr ? static_cast<uint64_t*>(storage) : own_; }

  void Record(int64_t end_ns, int64_t took_ns) noexcept {
    const uint32_t epoch = uint32_t(end_ns / kBucketNs);
    std::atomic_ref<uint64_t> head(words_[2 * (epoch % kBuckets)]);
    std::atomic_ref<uint64_t> ns(words_[2 * (epoch % kBuckets) + 1]);
    const uint64_t took = uint64_t(took_ns > 0 ? took_ns : 0);
    uint64_t w = head.load(std::memory_order_acquire);
    for (;;) {
      if (uint32_t(w >> 32) == epoch) {
        if (head.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) {
          ns.fetch_add(took, std::memory_order_relaxed);
          return;
        }
      } else if (head.compare_exchange_weak(w, (uint64_t(epoch) << 32) | 1, std::memory_order_acq_rel)) {
        ns.store(took, std::memory_order_relaxed);  // this bucket's first commit
        return;
      }
    }
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
      const size_t i = 2 * size_t(uint32_t(e) % kBuckets);
      const uint64_t head = std::atomic_ref<uint64_t>(words_[i]).load(std::memory_order_acquire);
      if (uint32_t(head >> 32) != uint32_t(e)) continue;
      sum.commits += uint32_t(head);
      sum.ns += std::atomic_ref<uint64_t>(words_[i + 1]).load(std::memory_order_relaxed);
    }
    return sum;
  }

 private:
  uint64_t* words_ = own_;
  alignas(8) uint64_t own_[2 * kBuckets] = {};
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
    history().Record(now, now - began_ns_.load(std::memory_order_relaxed));
  }
  bool active() const noexcept { return active_.load(std::memory_order_relaxed) != 0; }
  // Where commits are recorded and a pacer reads them: `shared` (the
  // coordination region's, which every attached process records into;
  // it must outlive this signal's use) or, with nullptr, this signal's own.
  void ShareHistory(CommitHistory* shared) { shared_.store(shared, std::memory_order_release); }
  CommitHistory& history() const noexcept {
    CommitHistory* shared = shared_.load(std::memory_order_acquire);
    return shared != nullptr ? *shared : history_;
  }

 private:
  std::atomic<uint32_t> active_{0};  // commits in their I/O phase
  // When the commit in its I/O phase began: one at a time per file (its
  // write lock), so one word is enough.
  std::atomic<int64_t> began_ns_{0};
  mutable CommitHistory history_;
  std::atomic<CommitHistory*> shared_{nullptr};
};

}  // namespace cowbackup
