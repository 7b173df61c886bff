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
// mdb_txn_commit of a write transaction). Not on the write path: one
// relaxed add per commit.
#pragma once

#include <atomic>
#include <cstdint>

namespace cowbackup {

class CommitSignal {
 public:
  CommitSignal() = default;
  CommitSignal(const CommitSignal&) = delete;
  CommitSignal& operator=(const CommitSignal&) = delete;

  void begin() noexcept { active_.fetch_add(1, std::memory_order_relaxed); }
  void end() noexcept { active_.fetch_sub(1, std::memory_order_relaxed); }
  bool active() const noexcept { return active_.load(std::memory_order_relaxed) != 0; }

 private:
  std::atomic<uint32_t> active_{0};  // commits in their I/O phase
};

}  // namespace cowbackup
