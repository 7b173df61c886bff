// Test-only access to CopyJob's steps (engine/copy_job.h declares this class
// a friend). The deterministic interleaving harness plays the copier and
// several writers on one thread by calling these one at a time, in any
// order, where the real job runs before_write() and copy_all() on threads.
// Each step takes the job's mutex itself, as the real code does around it.
#pragma once

#include <string>

#include "engine/copy_job.h"

namespace cowbackup {

class CopyJobTestPeer {
 public:
  using WriteOp = CopyJob::WriteOp;
  using Segment = CopyJob::Segment;

  explicit CopyJobTestPeer(CopyJob* job) : job_(job) {}

  // ---- A writer: before_write()'s steps ----
  // Steps 1-4 as one attempt that never blocks: joins the FIFO on the first
  // call; returns false where before_write() would wait on op->cv (call
  // again later), true once the writer has claimed (op->claimed, possibly
  // empty) or the job has failed, and has left the FIFO.
  bool ClaimWrite(WriteOp* op) {
    MutexLock lock(&job_->mu_);
    if (!op->queued) job_->join_fifo_locked(op);
    if (!job_->failed() && !job_->may_claim_locked(*op)) return false;
    if (!job_->failed()) job_->claim_write_locked(op);
    job_->leave_fifo_locked(op);
    return true;
  }
  void Preserve(WriteOp* op) { job_->preserve(op); }  // step 5, I/O
  void PublishPreserved(WriteOp* op) { job_->publish_preserved(op); }  // step 6

  // ---- The copier: copy_all()'s steps ----
  // Step 1: false when the queue is (for now) empty.
  bool NextSegment(Segment* seg) {
    MutexLock lock(&job_->mu_);
    return job_->next_segment_locked(seg);
  }
  // Steps 2-3: false while a writer is preserving one of its pages.
  bool ClaimSegment(Segment* seg) {
    MutexLock lock(&job_->mu_);
    if (!job_->segment_claimable_locked(*seg)) return false;
    job_->claim_segment_locked(seg);
    return true;
  }
  Status ReadSegment(Segment* seg) { return job_->read_segment(seg); }  // step 4, I/O
  void PublishSegment(Segment* seg) { job_->publish_segment(seg); }     // step 5
  Status EmitSegment(Segment* seg) { return job_->emit_segment(seg); }  // step 6, I/O
  // Shared mode (JobConfig::shared): copy_segment_shared()'s steps 2-5, in
  // its order: BeginShared; rounds of ClaimShared, ReadSegment,
  // PublishShared (sc->later: the real copier waits for writers, then
  // claims again); EndShared, then EmitSegment.
  using SharedCopy = CopyJob::SharedCopy;
  void BeginShared(Segment* seg, SharedCopy* sc) { job_->begin_shared(seg, sc); }
  Status ClaimShared(Segment* seg, SharedCopy* sc) { return job_->claim_shared(seg, sc); }
  void PublishShared(Segment* seg, SharedCopy* sc) { job_->publish_shared(seg, sc); }
  void EndShared(Segment* seg, SharedCopy* sc) { job_->end_shared(seg, sc); }

  bool QueueDrained() {
    MutexLock lock(&job_->mu_);
    return job_->queue_drained_locked();
  }
  // Busy while a writer is still preserving: call again later.
  Status Finish() { return job_->finish(); }
  // What run() does when a step failed with `s`.
  void Abandon(const Status& s) { job_->abandon(s); }

  // "" while the invariants of engine/copy_job.h hold, else the violation.
  std::string InvariantViolation() {
    MutexLock lock(&job_->mu_);
    return job_->invariant_violation_locked();
  }

 private:
  CopyJob* const job_;
};

}  // namespace cowbackup
