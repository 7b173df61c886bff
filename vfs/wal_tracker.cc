#include "vfs/wal_tracker.h"

#include <chrono>
#include <thread>

#include "coord/region_format.h"

namespace cowbackup::sqlite {

std::string WalMark::ToString() const {
  return "generation " + std::to_string(salt1) + "/" + std::to_string(salt2) + ", mxFrame " +
         std::to_string(max_frame) + ", nBackfill " + std::to_string(backfilled);
}

namespace {

using namespace coord::layout;
static_assert(kOffWalCkptMark + kWalMarkSize <= kOffWalDbPages);

std::atomic_ref<uint32_t> U32(uint8_t* marks, size_t off) {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(marks + off));
}

WalMark LoadFields(uint8_t* marks, size_t off) {
  return WalMark{U32(marks, off).load(std::memory_order_relaxed), U32(marks, off + 4).load(std::memory_order_relaxed),
                 U32(marks, off + 8).load(std::memory_order_relaxed),
                 U32(marks, off + 12).load(std::memory_order_relaxed)};
}

void StoreFields(uint8_t* marks, size_t off, const WalMark& m) {
  U32(marks, off).store(m.salt1, std::memory_order_relaxed);
  U32(marks, off + 4).store(m.salt2, std::memory_order_relaxed);
  U32(marks, off + 8).store(m.max_frame, std::memory_order_relaxed);
  U32(marks, off + 12).store(m.backfilled, std::memory_order_relaxed);
}

}  // namespace

// A sequence lock whose one writer at a time is the holder of the SQLite
// lock guarding the mark: odd while it writes.
void WalTracker::StoreMarkLocked(size_t seq_off, size_t mark_off, const WalMark& m) {
  std::atomic_ref<uint32_t> seq = U32(marks_, seq_off);
  const uint32_t s = seq.load(std::memory_order_relaxed);
  seq.store(s | 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  StoreFields(marks_, mark_off, m);
  seq.store((s | 1) + 1, std::memory_order_release);
}

bool WalTracker::LoadMarkLocked(size_t seq_off, size_t mark_off, WalMark* out) {
  std::atomic_ref<uint32_t> seq = U32(marks_, seq_off);
  // A live writer is odd for a few stores; one preempted there, at most a
  // scheduling delay. Odd for kMarkWaitMs: its process died mid-write.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kMarkWaitMs);
  for (int attempt = 0;; attempt++) {
    const uint32_t before = seq.load(std::memory_order_acquire);
    if ((before & 1) == 0) {
      *out = LoadFields(marks_, mark_off);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (seq.load(std::memory_order_relaxed) == before) return true;
    }
    if (attempt > 100) {
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::yield();
    }
  }
  FailLocked("a process taking part in the backup died while it updated the shared WAL tracker");
  return false;
}

void WalTracker::Begin(const WalMark& t0, uint8_t* shared) {
  MutexLock lock(&mu_);
  marks_ = shared != nullptr ? shared : own_;
  t0_ = t0;
  StoreFields(marks_, kOffWalT0Mark, t0);
  StoreMarkLocked(kOffWalHeaderSeq, kOffWalHeaderMark, t0);
  StoreMarkLocked(kOffWalCkptSeq, kOffWalCkptMark, t0);
  error_.clear();
  failed_.store(false, std::memory_order_relaxed);
  active_.store(true, std::memory_order_release);
}

void WalTracker::Join(uint8_t* shared) {
  MutexLock lock(&mu_);
  marks_ = shared;
  t0_ = LoadFields(marks_, kOffWalT0Mark);  // written before the job was armed
  error_.clear();
  failed_.store(false, std::memory_order_relaxed);
  active_.store(true, std::memory_order_release);
}

void WalTracker::End() {
  MutexLock lock(&mu_);  // waits out a check that is reading the marks
  active_.store(false, std::memory_order_release);
  marks_ = own_;
}

void WalTracker::FailLocked(const std::string& why) {
  if (failed_.load(std::memory_order_relaxed)) return;
  error_ = why + "; the copy was discarded";
  failed_.store(true, std::memory_order_release);
}

void WalTracker::Fail(const std::string& why) {
  MutexLock lock(&mu_);
  FailLocked(why);
}

void WalTracker::CheckHeaderLocked(const WalMark& now) {
  if (!active_.load(std::memory_order_relaxed)) return;
  WalMark header;
  if (!LoadMarkLocked(kOffWalHeaderSeq, kOffWalHeaderMark, &header)) return;
  if (now.SameGeneration(header) && now.max_frame == header.max_frame) return;
  FailLocked("a write bypassed the cowbackup shim during the backup (the wal-index went from " +
             header.ToString() + " to " + now.ToString() +
             " with no process taking part in the backup writing: a process not taking part, or a "
             "connection not opened through the cowbackup VFS, committed or restarted the WAL)");
}

void WalTracker::CheckBackfillLocked(const WalMark& now) {
  if (!active_.load(std::memory_order_relaxed)) return;
  WalMark ckpt;
  if (!LoadMarkLocked(kOffWalCkptSeq, kOffWalCkptMark, &ckpt)) return;
  // A generation our checkpointers have not touched starts at 0 (the
  // restart that began it reset nBackfill).
  const uint32_t ours = now.SameGeneration(ckpt) ? ckpt.backfilled : 0;
  if (now.backfilled <= ours) return;
  // Frames up to T0's mxFrame of T0's generation: their pages are copied
  // from the WAL, so writing them into the main file changes nothing the
  // copy reads.
  if (now.SameGeneration(t0_) && now.backfilled <= t0_.max_frame) return;
  FailLocked("a checkpoint bypassed the cowbackup shim during the backup (nBackfill is " +
             std::to_string(now.backfilled) + ", the checkpoints of the processes taking part left " +
             std::to_string(ours) + ", and the backup began at " + t0_.ToString() +
             ": a process not taking part, or a connection not opened through the cowbackup VFS, "
             "copied frames committed after the backup began into the database file)");
}

void WalTracker::WriteLocked(const WalMark& now, bool ckpt_held) {
  MutexLock lock(&mu_);
  CheckHeaderLocked(now);
  if (!ckpt_held) CheckBackfillLocked(now);
}

void WalTracker::WriteUnlocking(const WalMark& now) {
  MutexLock lock(&mu_);
  if (active_.load(std::memory_order_relaxed)) StoreMarkLocked(kOffWalHeaderSeq, kOffWalHeaderMark, now);
}

void WalTracker::CheckpointLocked(const WalMark& now) {
  MutexLock lock(&mu_);
  CheckBackfillLocked(now);
}

void WalTracker::CheckpointUnlocking(const WalMark& now) {
  MutexLock lock(&mu_);
  if (active_.load(std::memory_order_relaxed)) StoreMarkLocked(kOffWalCkptSeq, kOffWalCkptMark, now);
}

Status WalTracker::CheckAtEnd(const WalMark& now) {
  MutexLock lock(&mu_);
  CheckHeaderLocked(now);
  CheckBackfillLocked(now);
  return failed_.load(std::memory_order_relaxed) ? Status::Corruption(error_) : Status::OK();
}

Status WalTracker::error() const {
  if (!failed()) return Status::OK();
  MutexLock lock(&mu_);
  return Status::Corruption(error_);
}

// ---- The job's WAL tail ----

void EncodeWalTail(uint8_t* tail, const WalIndexHeader& h, uint64_t main_pages,
                   const std::vector<uint32_t>& frame_pages) {
  U32(tail, kOffWalDbPages).store(h.db_pages, std::memory_order_relaxed);
  U32(tail, kOffWalReserved).store(0, std::memory_order_relaxed);
  std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(tail + kOffWalMainPages))
      .store(main_pages, std::memory_order_relaxed);
  for (uint32_t f = 0; f < h.max_frame; f++) {
    U32(tail, kOffWalFramePages + 4 * size_t(f)).store(f < frame_pages.size() ? frame_pages[f] : 0,
                                                       std::memory_order_relaxed);
  }
}

Status DecodeWalTail(const uint8_t* tail_in, uint64_t size, uint32_t page_size, const std::string& where,
                     WalIndexHeader* h, uint64_t* main_pages, std::vector<uint32_t>* frame_pages) {
  auto* tail = const_cast<uint8_t*>(tail_in);  // read only: atomic loads
  if (size < kOffWalFramePages) {
    return Status::Corruption("the WAL-mode job's tail of " + std::to_string(size) + " bytes is shorter than " +
                                  std::to_string(kOffWalFramePages),
                              where);
  }
  const WalMark t0 = LoadFields(tail, kOffWalT0Mark);
  if (WalTailSize(t0.max_frame) > size) {
    return Status::Corruption("the WAL-mode job's tail says mxFrame " + std::to_string(t0.max_frame) +
                                  ", more frames than its " + std::to_string(size) + " bytes hold",
                              where);
  }
  *h = WalIndexHeader{};
  h->version = kWalFormatVersion;
  h->initialized = true;
  h->page_size = page_size;
  h->salt1 = t0.salt1;
  h->salt2 = t0.salt2;
  h->max_frame = t0.max_frame;
  h->backfilled = t0.backfilled;
  h->db_pages = U32(tail, kOffWalDbPages).load(std::memory_order_relaxed);
  *main_pages = std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(tail + kOffWalMainPages))
                    .load(std::memory_order_relaxed);
  frame_pages->resize(t0.max_frame);
  for (uint32_t f = 0; f < t0.max_frame; f++) {
    (*frame_pages)[f] = U32(tail, kOffWalFramePages + 4 * size_t(f)).load(std::memory_order_relaxed);
  }
  return Status::OK();
}

}  // namespace cowbackup::sqlite
