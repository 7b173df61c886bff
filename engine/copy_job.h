// The copy-on-write copy job: the one place where the begin-time rule lives.
//
// A job copies pages [0, t0_pages) of a Source to a Sink while writers keep
// changing the source. Every write is reported through before_write() (or
// before_truncate()) *before* it lands. For each page it touches that is
// below the T0 end of file and not yet settled (copied, or preserved), the
// writer first saves the page's current content in the SnapshotVolume; the
// copier later takes preserved pages from there. Whatever the interleaving,
// the sink receives exactly the source as it was at T0.
//
// Page state (four bitmaps, a few bits per page; all but settled_ under mu_):
//
//   settled_    copied or preserved: writers need do nothing. Bits only go
//               0 -> 1, so writers test it without the lock (fast path).
//   copied_     the copier has taken the page (its T0 bytes are in hand).
//   preserved_  the snapshot volume holds the page's T0 pre-image.
//   busy_       someone is doing I/O on the page right now: the copier is
//               reading it from the source (kSnapshotFirst), or a writer is
//               preserving it. Nobody else may start on a busy page.
//
// Invariants (under mu_; asserted in debug builds where cheap, all of them
// by invariant_violation_locked(), which the interleaving harness checks
// after every step):
//   I1. busy implies not settled: only unsettled pages are claimed, and a
//       page settles only once its claim is released.
//   I2. busy_count_ is the number of busy bits.
//   I3. Whoever sets a busy bit clears it: a writer the pages of its claim
//       (WriteOp::claimed), the copier (kSnapshotFirst) the pages of its
//       segment it reads from the source. So a page being published was busy
//       and claimed by the party publishing it. A writer settles exactly the
//       pages it claimed. The copier settles the pages it claimed, pages
//       already settled (taken from the volume), and, in kOverlayAtEnd (which
//       claims nothing), copied pages nobody holds busy; a page a writer is
//       preserving settles when that writer publishes.
//   I4. Until the job fails, a page is settled exactly when it is copied or
//       preserved and not busy.
//   I5. fifo_ holds each waiting writer once, in arrival order; only its
//       head may claim.
//
// Lock rules:
//   1. mu_ guards everything below it in the class but the atomics.
//   2. No I/O under mu_: claim pages (mark busy), unlock, do the I/O,
//      relock, publish (set bits, clear busy), wake the FIFO head.
//   3. A claim is all-or-nothing: a writer whose range holds a busy page
//      claims nothing and waits, so no two parties ever wait on each other.
//   4. Writers that must wait queue in fifo_ and proceed in arrival order
//      (DBImpl::Write style: each waiter has its own condvar, only the head
//      may claim, and it wakes the next one when it leaves).
//
// before_write() reads top to bottom as those rules: push onto the FIFO,
// wait to be its head with no busy page in the range, claim, pop and wake
// the next head, then (mutex released) preserve, then publish. The copier's
// loop, copy_all(), is the same shape for a segment.
//
// Failure is sticky (first error wins). Once failed, before_write() returns
// at once, queued writers are released, and run() removes the snapshot
// volume and abandons the sink. A failure never reaches a writer.
//
// Lifetime: the job must outlive every before_write() call in progress;
// WriteHook (write_hook.h) provides that for front ends.
//
// Shared mode (JobConfig::shared): the job's writers may be in other
// processes, so the page state is a SharedPages table in shared memory and
// the rules above are its (no mutex, no FIFO: claims by compare-and-swap
// in ascending page order, waits on a futex). The bitmaps here then only
// record what this copier has emitted (copied_); busy_, settled_ and
// preserved_ stay empty, and the invariants I1-I5 are the table's
// (shared_pages.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "cowbackup/job.h"
#include "cowbackup/status.h"
#include "engine/aligned_buffer.h"
#include "engine/bitmap.h"
#include "engine/commit_signal.h"
#include "engine/mutex.h"
#include "engine/pacer.h"
#include "engine/page_range.h"
#include "engine/shared_pages.h"
#include "engine/sink.h"
#include "engine/snapshot_volume.h"
#include "engine/source.h"

namespace cowbackup {

struct JobConfig {
  uint32_t page_size = 4096;
  uint64_t t0_pages = 0;  // pages in the source at T0
  uint32_t segment_pages = kDefaultSegmentPages;
  Variant variant = Variant::kSnapshotFirst;
  double max_rate_mb = 0;  // destination throttle, MB/s; 0 = none
  bool hot_first = false;  // move segments writers hit to the queue front
  // If set, each write to the sink waits while the application is
  // committing (commit_signal.h), for at most max_yield at a time, so the
  // copy always moves on. Not owned; must outlive the job.
  const CommitSignal* yield_to = nullptr;
  std::chrono::microseconds max_yield{10000};
  // If set with pace_share > 0, the copy paces itself by these commits
  // (engine/pacer.h), keeping the application at pace_share of its speed.
  // Not owned; must outlive the job.
  const CommitHistory* pace_by = nullptr;
  double pace_share = 0;
  // The queue starts empty and stays open for enqueue() until seal();
  // otherwise it starts as [0, t0_pages) in segments, sealed.
  bool open_queue = false;
  // A job other processes take part in: the page state is this shared
  // table's (engine/shared_pages.h), not the job's own bitmaps, and every
  // writer, local or not, follows its protocol. Not owned; must outlive the job.
  SharedPages* shared = nullptr;
};

class CopyJob {
 public:
  // The job does not own its parts; they must outlive it.
  CopyJob(Source* source, SnapshotVolume* volume, Sink* sink, const JobConfig& config);
  CopyJob(const CopyJob&) = delete;
  CopyJob& operator=(const CopyJob&) = delete;
  ~CopyJob();

  // ---- Interception (any thread, concurrently) ----
  // Returns once every page of [offset, offset + len) below the T0 end of
  // file is settled, or the job has failed. Never fails the caller.
  void before_write(uint64_t offset, uint64_t len) noexcept;
  // The pages a truncate to `new_size` would cut off or shorten.
  void before_truncate(uint64_t new_size) noexcept;

  // ---- The copier (one thread) ----
  // Copies until the queue is drained and sealed, then finishes the sink.
  // Returns the job's final status. On failure or cancel the sink is
  // abandoned; the snapshot volume is removed either way.
  Status run();

  // ---- Control (any thread) ----
  void cancel();
  // Records the first failure; later calls do nothing.
  void fail(const Status& status);
  // Adds pages to copy, at the back or the front of the queue. Pages already
  // copied are skipped when their turn comes.
  void enqueue(PageRange pages, bool front = false);
  // No more enqueue() calls: run() returns once the queue is drained.
  void seal();

  Progress progress() const;
  Status status() const;
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  const JobConfig& config() const { return config_; }
  // Bytes of per-page state (the bitmaps), for the memory benchmark.
  size_t state_memory_bytes() const;

 private:
  // The deterministic interleaving harness calls the steps below one at a
  // time, without threads (tests/engine/copy_job_peer.h).
  friend class CopyJobTestPeer;

  // A writer inside before_write(), on its stack.
  struct WriteOp {
    PageRange pages;                 // clipped to T0
    std::vector<PageRange> claimed;  // runs this writer marked busy; it must preserve them
    CondVar cv;                      // its own wake-up (FIFO)
    bool queued = false;             // in fifo_
  };
  // The copier's unit of work.
  struct Segment {
    enum class From : uint8_t { kSkip, kSource, kVolume };
    PageRange range;
    std::vector<From> from;  // per page of range
    IoBuffer data;
    // kOverlayAtEnd: pages cut off by a truncate before the copier read them
    // (they must have been preserved; finish() checks).
    std::vector<uint64_t> short_pages;
  };

  // before_write()'s steps, in its order.
  void join_fifo_locked(WriteOp* op) REQUIRES(mu_);
  bool may_claim_locked(const WriteOp& op) const REQUIRES(mu_);
  void claim_write_locked(WriteOp* op) REQUIRES(mu_);
  void leave_fifo_locked(WriteOp* op) REQUIRES(mu_);
  void preserve(WriteOp* op);  // I/O: source -> snapshot volume
  void publish_preserved(WriteOp* op);
  void note_write_wait(std::chrono::steady_clock::time_point entered);

  // copy_all()'s steps, in its order.
  bool next_segment_locked(Segment* seg) REQUIRES(mu_);  // false: queue empty (for now)
  bool segment_claimable_locked(const Segment& seg) const REQUIRES(mu_);
  void claim_segment_locked(Segment* seg) REQUIRES(mu_);
  Status read_segment(Segment* seg);  // I/O
  Status read_live_run(Segment* seg, size_t first, size_t count);
  void publish_segment(Segment* seg);
  Status emit_segment(Segment* seg);  // I/O to the sink
  bool queue_drained_locked() const REQUIRES(mu_);  // empty and sealed
  // After the last segment, with no page busy: overlays (kOverlayAtEnd),
  // then sink finish. Busy while a preservation is still in flight.
  Status finish();
  Status emit_overlays(const Bitmap& preserved);
  Status copy_all();
  // Shared mode: steps 2-5 of copy_all for one segment, through the
  // shared table, in rounds (pages a writer holds are taken in a later
  // round); and the wait before finish()'s checks.
  struct SharedCopy {
    std::vector<Segment::From> taken;     // per page: emitted from where, over all rounds
    std::vector<bool> todo;               // per page: not taken yet
    std::vector<SharedPages::Take> take;  // this round's, as ClaimForCopy said
    std::vector<uint64_t> short_pages;
    bool later = false;                   // this round left pages for later
  };
  Status copy_segment_shared(Segment* seg);
  // copy_segment_shared's steps, in its order: begin; per round claim,
  // read_segment(), publish (then WaitForWriters if `later`); end.
  void begin_shared(Segment* seg, SharedCopy* sc);
  Status claim_shared(Segment* seg, SharedCopy* sc);
  void publish_shared(Segment* seg, SharedCopy* sc);
  void end_shared(Segment* seg, SharedCopy* sc);
  Status settle_shared(Bitmap* preserved);
  // Fails the job with the reason another party recorded, once the shared
  // job is no longer current. True if it did.
  bool shared_job_lost();
  // run()'s end when copy_all() failed with `s`: the job fails (with
  // another party's reason if it failed the shared job first), the sink is
  // abandoned.
  void abandon(const Status& s);

  bool range_busy_locked(PageRange pages) const REQUIRES(mu_);
  void wake_fifo_head_locked() REQUIRES(mu_);
  void note_hot_locked(uint64_t pgno) REQUIRES(mu_);
  void throttle();
  void yield_to_commits();
  // "" while I1, I2, I4 and I5 hold, else the first violation; O(pages).
  std::string invariant_violation_locked() const REQUIRES(mu_);

  Source* const source_;
  SnapshotVolume* const volume_;
  Sink* const sink_;
  const JobConfig config_;
  const uint64_t page_size_;
  const std::chrono::steady_clock::time_point started_;
  std::unique_ptr<Pacer> pacer_;  // JobConfig::pace_by; the copier's alone

  MonotonicBitmap settled_;  // lock-free reads; see the class comment

  mutable Mutex mu_;
  CondVar copier_cv_;  // the copier waits here for busy pages
  Bitmap copied_ GUARDED_BY(mu_);
  Bitmap preserved_ GUARDED_BY(mu_);
  Bitmap busy_ GUARDED_BY(mu_);
  uint64_t busy_count_ GUARDED_BY(mu_) = 0;
  std::deque<PageRange> queue_ GUARDED_BY(mu_);
  std::deque<PageRange> hot_ GUARDED_BY(mu_);
  bool sealed_ GUARDED_BY(mu_) = false;
  std::deque<WriteOp*> fifo_ GUARDED_BY(mu_);
  std::vector<uint64_t> short_pages_ GUARDED_BY(mu_);
  Status error_ GUARDED_BY(mu_);

  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> pages_done_{0};
  std::atomic<uint64_t> pages_preserved_{0};
  std::atomic<uint64_t> max_write_wait_ns_{0};
  std::atomic<uint64_t> yield_ns_{0};
  std::atomic<double> pace_mb_{0}, pace_min_mb_{0};  // the pacer's, for progress()
};

}  // namespace cowbackup
