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
// Several processes. "Of this process" above means "of any process taking
// part in the job": the marks (T0's, the header as the last writer left
// it, nBackfill as the last checkpointer left it) live in the job's WAL
// tail of the coordination region (docs/REGION.md, "SQLite WAL tail"),
// which every participant's tracker reads and writes (Begin with `shared`
// for the owner, Join for the others). A mark is written only by the
// holder of the SQLite lock that guards it, so SQLite's own locks order
// the processes, as they order the threads of one; the mark a checkpointer
// leaves is read under the write lock too, so it sits behind a sequence
// word (read again if a checkpointer is writing it). Without a region the
// marks are this tracker's own.
//
// Thread-safety: every method may be called from any thread; mu_ orders
// them within the process. The lock callbacks are made by the shim while
// the connection holds (or is about to release) the lock named, which is
// what makes the values stable.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "backup/wal_format.h"
#include "coord/region_format.h"
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
  // At T0, under the WAL write lock: the marks start at `t0`, in `shared`
  // (a job's WAL tail, layout::kOffWal*Mark, mapped while the tracker is
  // active) or, if null, in this tracker.
  void Begin(const WalMark& t0, uint8_t* shared = nullptr);
  // A participant in another process's job: tracks with the marks its
  // owner began at `shared` (its WAL tail).
  void Join(uint8_t* shared);
  // Stops tracking; no method touches `shared` afterwards.
  void End();
  bool active() const { return active_.load(std::memory_order_acquire); }

  // A connection of a participant got the write lock; `ckpt_held`: one of
  // a participant holds the checkpoint lock right now.
  void WriteLocked(const WalMark& now, bool ckpt_held);
  // ... is about to release it.
  void WriteUnlocking(const WalMark& now);
  // A connection of this process got the checkpoint lock / is about to
  // release it.
  void CheckpointLocked(const WalMark& now);
  void CheckpointUnlocking(const WalMark& now);
  // With both locks held, at the end of the copy.
  Status CheckAtEnd(const WalMark& now);

  // How long a mark's sequence word may stay odd before its writer is
  // taken for dead (the job fails; never a write).
  static constexpr int kMarkWaitMs = 500;

  // The first problem found, OK if none (sticky until the next Begin).
  Status error() const;
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // A problem found outside the tracker (the wal-index could not be read).
  void Fail(const std::string& why);

 private:
  void CheckHeaderLocked(const WalMark& now) REQUIRES(mu_);
  void CheckBackfillLocked(const WalMark& now) REQUIRES(mu_);
  void FailLocked(const std::string& why) REQUIRES(mu_);
  // The two marks that change, behind their sequence words. False if a
  // writer of the mark never finished (it died mid-write): then failed.
  bool LoadMarkLocked(size_t seq_off, size_t mark_off, WalMark* out) REQUIRES(mu_);
  void StoreMarkLocked(size_t seq_off, size_t mark_off, const WalMark& m) REQUIRES(mu_);

  std::atomic<bool> active_{false};
  std::atomic<bool> failed_{false};
  mutable Mutex mu_;
  WalMark t0_ GUARDED_BY(mu_);
  // Where the marks are (layout::kOffWal*): own_ or a job's WAL tail: the
  // header as the last writer of a participant left it; generation and
  // nBackfill as the last checkpointer of one left them.
  uint8_t* marks_ GUARDED_BY(mu_) = own_;
  alignas(8) uint8_t own_[coord::layout::kOffWalDbPages] = {};
  std::string error_ GUARDED_BY(mu_);
};

// ---- A WAL-mode job's tail of the page-state area ----
// (docs/REGION.md, "SQLite WAL tail"; layout::kOffWal*.) Besides the
// tracker's marks (WalTracker::Begin writes them), what a participant in
// another process needs to route its writes as the owner's hooks do: T0's
// wal-index facts and the page number of each T0 frame, from which it
// makes the same WalImageSource (backup/wal_image_source.h), and so the
// same routes.
//
// The owner, before arming (after WalTracker::Begin on the same tail):
// `h`, T0's wal-index header; `main_pages`, the main file's size then;
// `frame_pages[i]`, frame i+1's page. `tail` holds WalTailSize(h.max_frame).
void EncodeWalTail(uint8_t* tail, const WalIndexHeader& h, uint64_t main_pages,
                   const std::vector<uint32_t>& frame_pages);
// A participant: the same facts back, from `size` bytes at `tail` (the
// owner's, in shared memory: every count is checked against `size`
// before use; `where` names the region in errors). *h has the fields
// WalScanFromIndex reads, with page size `page_size` (the job's T0 facts').
Status DecodeWalTail(const uint8_t* tail, uint64_t size, uint32_t page_size, const std::string& where,
                     WalIndexHeader* h, uint64_t* main_pages, std::vector<uint32_t>* frame_pages);

}  // namespace cowbackup::sqlite
