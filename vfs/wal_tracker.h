// WalTracker: during a WAL-mode backup, tells whether some process that is
// not going through this shim (another process, or a connection opened
// with another VFS) wrote the database in a way that could make the copy
// wrong. The rollback-mode counterpart is FileState's change-counter
// tracking.
//
// What the copy depends on (docs/SQLITE.md, "WAL mode"): the main file's
// pages that T0's committed frames do not replace, and those frames. Only
// two things overwrite them, and the shim routes both through the job when
// a connection of this process does them: a checkpoint backfilling frames
// committed after T0 into the main file, and a WAL restart writing over
// T0's frames. A foreign writer shows in the wal-index (-shm):
//
//   commits and restarts  move the header's (salt-1, salt-2, mxFrame). They
//                         happen only under the WAL write lock (slot 0), so
//                         the header the shim reads when a connection of
//                         this process takes that lock must be the one the
//                         last such connection left when it released it.
//   checkpoints           raise nBackfill, only under the checkpoint lock
//                         (slot 1); a restart resets it to 0. When a
//                         connection of this process takes the checkpoint
//                         lock, nBackfill must be what the last one left
//                         (0 in a generation none has checkpointed). A raise
//                         is harmless if it stays within T0's frames of T0's
//                         generation: those pages are copied from the WAL.
//                         The same check runs when a connection takes the
//                         write lock while none of this process holds the
//                         checkpoint lock, which catches a foreign
//                         checkpoint before a restart of ours ends its
//                         generation (a restart needs the write lock).
//   at the end            with both locks held (FileState::LockWal), both
//                         checks once more.
//
// Each check compares values that only the lock holder may change, so what
// passes is exact, not sampled. The limits are in docs/SQLITE.md.
//
// Thread-safety: every method may be called from any thread; mu_ orders
// them. The lock callbacks are made by the shim while the connection holds
// (or is about to release) the lock named, which is what makes the values
// stable.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "cowbackup/status.h"
#include "engine/mutex.h"

namespace cowbackup::sqlite {

// The wal-index facts the tracker compares: the header's generation and
// mxFrame, and nBackfill.
struct WalMark {
  uint32_t salt1 = 0;
  uint32_t salt2 = 0;
  uint32_t max_frame = 0;
  uint32_t backfilled = 0;
  bool SameGeneration(const WalMark& o) const { return salt1 == o.salt1 && salt2 == o.salt2; }
  std::string ToString() const;
};

class WalTracker {
 public:
  // At T0, under the WAL write lock.
  void Begin(const WalMark& t0);
  void End() { active_.store(false, std::memory_order_release); }
  bool active() const { return active_.load(std::memory_order_acquire); }

  // A connection of this process got the write lock; `ckpt_held_here`:
  // one of this process holds the checkpoint lock right now.
  void WriteLocked(const WalMark& now, bool ckpt_held_here);
  // ... is about to release it.
  void WriteUnlocking(const WalMark& now);
  // A connection of this process got the checkpoint lock / is about to
  // release it.
  void CheckpointLocked(const WalMark& now);
  void CheckpointUnlocking(const WalMark& now);
  // With both locks held, at the end of the copy.
  Status CheckAtEnd(const WalMark& now);

  // The first problem found, OK if none (sticky until the next Begin).
  Status error() const;
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // A problem found outside the tracker (the wal-index could not be read).
  void Fail(const std::string& why);

 private:
  void CheckHeaderLocked(const WalMark& now) REQUIRES(mu_);
  void CheckBackfillLocked(const WalMark& now) REQUIRES(mu_);
  void FailLocked(const std::string& why) REQUIRES(mu_);

  std::atomic<bool> active_{false};
  std::atomic<bool> failed_{false};
  mutable Mutex mu_;
  WalMark t0_ GUARDED_BY(mu_);
  WalMark header_ GUARDED_BY(mu_);  // as the last writer of this process left it
  WalMark ckpt_ GUARDED_BY(mu_);    // generation and nBackfill as our last checkpointer left them
  std::string error_ GUARDED_BY(mu_);
};

}  // namespace cowbackup::sqlite
