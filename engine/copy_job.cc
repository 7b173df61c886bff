#include "engine/copy_job.h"

#include <algorithm>
#include <cstring>
#include <cassert>
#include <thread>

#include "engine/sync_point.h"

namespace cowbackup {

namespace {
constexpr size_t kMaxHotSegments = 64;
}  // namespace

CopyJob::CopyJob(Source* source, SnapshotVolume* volume, Sink* sink, const JobConfig& config)
    : source_(source),
      volume_(volume),
      sink_(sink),
      config_(config),
      page_size_(config.page_size),
      started_(std::chrono::steady_clock::now()),
      settled_(config.t0_pages),
      copied_(config.t0_pages),
      preserved_(config.t0_pages),
      busy_(config.t0_pages) {
  assert(config_.segment_pages > 0 && config_.page_size > 0);
  if (!config_.open_queue) {
    if (config_.t0_pages > 0) queue_.push_back({0, config_.t0_pages});
    sealed_ = true;
  }
}

CopyJob::~CopyJob() = default;

// ---------------------------------------------------------------------------
// Writers

void CopyJob::before_write(uint64_t offset, uint64_t len) noexcept {
  if (failed()) return;
  WriteOp op;
  op.pages = PageRange::FromBytes(offset, len, config_.page_size).clip(config_.t0_pages);
  if (op.pages.empty() || settled_.all(op.pages.begin, op.pages.end)) return;
  COWBACKUP_SYNC_POINT("CopyJob::before_write:slow");
  const auto entered = std::chrono::steady_clock::now();
  {
    MutexLock lock(&mu_);
    while (!claim_write_locked(&op)) {
      COWBACKUP_SYNC_POINT("CopyJob::before_write:queued");  // under mu_
      op.cv.Wait(&mu_);
    }
    COWBACKUP_SYNC_POINT("CopyJob::before_write:released");  // under mu_
  }
  if (!op.claimed.empty()) {
    step_preserve(&op);
    step_publish_preserved(&op);
  }
  const uint64_t waited = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::steady_clock::now() - entered)
                                       .count());
  uint64_t prev = max_write_wait_ns_.load(std::memory_order_relaxed);
  while (waited > prev &&
         !max_write_wait_ns_.compare_exchange_weak(prev, waited, std::memory_order_relaxed)) {
  }
}

void CopyJob::before_truncate(uint64_t new_size) noexcept {
  // A truncate changes the page holding the new end of file (if it is cut
  // mid-page) and removes every page after it.
  uint64_t first = new_size / page_size_;
  if (first >= config_.t0_pages) return;
  before_write(first * page_size_, (config_.t0_pages - first) * page_size_);
}

// The FIFO rule: a writer may claim only when no earlier writer is waiting.
// Returns true when the writer may go on (its claim is in op->claimed, or
// the job has failed); false after queueing it.
bool CopyJob::claim_write_locked(WriteOp* op) {
  const bool queued = std::find(fifo_.begin(), fifo_.end(), op) != fifo_.end();
  if (failed()) {
    if (queued) remove_from_fifo_locked(op);
    return true;
  }
  const bool my_turn = queued ? fifo_.front() == op : fifo_.empty();
  if (my_turn) {
    // All-or-nothing: a busy page anywhere in the range means wait.
    bool any_busy = false;
    for (uint64_t p = op->pages.begin; p < op->pages.end && !any_busy; p++) {
      any_busy = !settled_.test(p) && busy_.test(p);
    }
    if (!any_busy) {
      op->claimed.clear();
      for (uint64_t p = op->pages.begin; p < op->pages.end; p++) {
        if (settled_.test(p)) continue;
        busy_.set(p);
        busy_count_++;
        if (!op->claimed.empty() && op->claimed.back().end == p) {
          op->claimed.back().end++;
        } else {
          op->claimed.push_back({p, p + 1});
        }
      }
      if (!op->claimed.empty()) note_hot_locked(op->claimed.front().begin);
      if (queued) remove_from_fifo_locked(op);
      return true;
    }
  }
  if (!queued) fifo_.push_back(op);
  return false;
}

void CopyJob::remove_from_fifo_locked(WriteOp* op) {
  auto it = std::find(fifo_.begin(), fifo_.end(), op);
  if (it == fifo_.end()) return;
  const bool was_head = it == fifo_.begin();
  fifo_.erase(it);
  if (was_head) wake_fifo_head_locked();
}

void CopyJob::wake_fifo_head_locked() {
  if (!fifo_.empty()) fifo_.front()->cv.Signal();
}

bool CopyJob::step_claim_write(WriteOp* op) {
  MutexLock lock(&mu_);
  return claim_write_locked(op);
}

void CopyJob::step_preserve(WriteOp* op) {
  std::vector<uint8_t> buf;
  for (const PageRange& run : op->claimed) {
    for (uint64_t p = run.begin; p < run.end;) {
      if (failed()) return;
      // Read a run of pages at once; a truncate can claim many.
      const uint64_t n = std::min<uint64_t>(run.end - p, config_.segment_pages);
      buf.resize(n * page_size_);
      COWBACKUP_SYNC_POINT("CopyJob::preserve:read");
      Status s = source_->read(p * page_size_, buf.data(), buf.size());
      for (uint64_t i = 0; s.ok() && i < n; i++) {
        s = volume_->put(p + i, buf.data() + i * page_size_);
      }
      if (!s.ok()) {
        fail(s);
        return;
      }
      p += n;
    }
  }
}

void CopyJob::step_publish_preserved(WriteOp* op) {
  MutexLock lock(&mu_);
  const bool ok = !failed();
  for (const PageRange& run : op->claimed) {
    for (uint64_t p = run.begin; p < run.end; p++) {
      busy_.clear(p);
      busy_count_--;
      if (ok) {
        preserved_.set(p);
        settled_.set(p);
        pages_preserved_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  op->claimed.clear();
  wake_fifo_head_locked();
  copier_cv_.Signal();
}

void CopyJob::note_hot_locked(uint64_t pgno) {
  if (!config_.hot_first || hot_.size() >= kMaxHotSegments) return;
  const uint64_t seg = config_.segment_pages;
  const PageRange range = PageRange{pgno / seg * seg, pgno / seg * seg + seg}.clip(config_.t0_pages);
  if (hot_.empty() || !(hot_.back() == range)) hot_.push_back(range);
}

// ---------------------------------------------------------------------------
// Queue and control

void CopyJob::enqueue(PageRange pages, bool front) {
  pages = pages.clip(config_.t0_pages);
  if (pages.empty()) return;
  MutexLock lock(&mu_);
  if (front) {
    queue_.push_front(pages);
  } else {
    queue_.push_back(pages);
  }
  copier_cv_.Signal();
}

void CopyJob::seal() {
  MutexLock lock(&mu_);
  sealed_ = true;
  copier_cv_.Signal();
}

void CopyJob::cancel() { fail(Status::Cancelled("backup cancelled")); }

void CopyJob::fail(const Status& status) {
  assert(!status.ok());
  MutexLock lock(&mu_);
  if (failed()) return;
  error_ = status;
  failed_.store(true, std::memory_order_release);
  for (WriteOp* op : fifo_) op->cv.Signal();
  copier_cv_.SignalAll();
}

Status CopyJob::status() const {
  MutexLock lock(&mu_);
  return error_;
}

Progress CopyJob::progress() const {
  Progress p;
  p.pages_total = config_.t0_pages;
  p.pages_done = pages_done_.load(std::memory_order_relaxed);
  p.pages_preserved = pages_preserved_.load(std::memory_order_relaxed);
  p.bytes_written = sink_->bytes_written();
  p.max_write_wait_us = max_write_wait_ns_.load(std::memory_order_relaxed) / 1000;
  p.yield_ms = yield_ns_.load(std::memory_order_relaxed) / 1000000;
  return p;
}

size_t CopyJob::state_memory_bytes() const {
  MutexLock lock(&mu_);
  return settled_.memory_bytes() + copied_.memory_bytes() + preserved_.memory_bytes() +
         busy_.memory_bytes();
}

bool CopyJob::queue_drained() const {
  MutexLock lock(&mu_);
  return sealed_ && queue_.empty() && hot_.empty();
}

// ---------------------------------------------------------------------------
// The copier

bool CopyJob::step_next_segment(Segment* seg) {
  MutexLock lock(&mu_);
  std::deque<PageRange>& q = hot_.empty() ? queue_ : hot_;
  if (q.empty()) return false;
  PageRange& head = q.front();
  seg->range = {head.begin, std::min<uint64_t>(head.end, head.begin + config_.segment_pages)};
  head.begin = seg->range.end;
  if (head.empty()) q.pop_front();
  seg->from.assign(seg->range.size(), Segment::From::kSkip);
  return true;
}

bool CopyJob::segment_claimable_locked(const Segment& seg) const {
  if (config_.variant == Variant::kOverlayAtEnd) return true;
  for (uint64_t p = seg.range.begin; p < seg.range.end; p++) {
    if (busy_.test(p)) return false;
  }
  return true;
}

void CopyJob::claim_segment_locked(Segment* seg) {
  const bool snapshot_first = config_.variant == Variant::kSnapshotFirst;
  for (uint64_t p = seg->range.begin; p < seg->range.end; p++) {
    Segment::From& from = seg->from[p - seg->range.begin];
    if (copied_.test(p)) {
      from = Segment::From::kSkip;
    } else if (snapshot_first && preserved_.test(p)) {
      from = Segment::From::kVolume;
    } else {
      from = Segment::From::kSource;
      // kSnapshotFirst: writers wait while we read the page, so what we
      // read is its T0 content. kOverlayAtEnd reads without claiming:
      // a page written meanwhile is preserved and overlaid at the end.
      if (snapshot_first) {
        busy_.set(p);
        busy_count_++;
      }
    }
  }
}

bool CopyJob::step_claim_segment(Segment* seg) {
  MutexLock lock(&mu_);
  if (!segment_claimable_locked(*seg)) return false;
  claim_segment_locked(seg);
  return true;
}

Status CopyJob::step_read_segment(Segment* seg) {
  seg->data.resize(seg->range.size() * page_size_);
  const size_t n = seg->from.size();
  for (size_t i = 0; i < n;) {
    const Segment::From from = seg->from[i];
    size_t j = i + 1;
    while (j < n && seg->from[j] == from) j++;
    const uint64_t pgno = seg->range.begin + i;
    uint8_t* dst = seg->data.data() + i * page_size_;
    Status s;
    if (from == Segment::From::kSource) {
      COWBACKUP_SYNC_POINT("CopyJob::read_segment:source");
      s = source_->read(pgno * page_size_, dst, (j - i) * page_size_);
      if (s.IsIncomplete() && config_.variant == Variant::kOverlayAtEnd) s = read_live_run(seg, i, j - i);
    } else if (from == Segment::From::kVolume) {
      for (size_t k = i; s.ok() && k < j; k++) {
        s = volume_->get(seg->range.begin + k, seg->data.data() + k * page_size_);
      }
    }
    if (!s.ok()) return s;
    i = j;
  }
  return Status::OK();
}

// kOverlayAtEnd reads live pages without holding writers off, so a truncate
// may cut pages off under the read. Such a page was preserved before the
// truncate landed (or the truncate bypassed us: step_finish tells which);
// its overlay will replace the zeros written here.
Status CopyJob::read_live_run(Segment* seg, size_t first, size_t count) {
  seg->short_pages.clear();
  for (size_t k = first; k < first + count; k++) {
    const uint64_t pgno = seg->range.begin + k;
    uint8_t* dst = seg->data.data() + k * page_size_;
    Status s = source_->read(pgno * page_size_, dst, page_size_);
    if (s.IsIncomplete()) {
      memset(dst, 0, page_size_);
      seg->short_pages.push_back(pgno);
    } else if (!s.ok()) {
      return s;
    }
  }
  return Status::OK();
}

void CopyJob::step_publish_segment(Segment* seg) {
  MutexLock lock(&mu_);
  short_pages_.insert(short_pages_.end(), seg->short_pages.begin(), seg->short_pages.end());
  seg->short_pages.clear();
  const bool snapshot_first = config_.variant == Variant::kSnapshotFirst;
  for (uint64_t p = seg->range.begin; p < seg->range.end; p++) {
    const Segment::From from = seg->from[p - seg->range.begin];
    if (from == Segment::From::kSkip) continue;
    copied_.set(p);
    if (from == Segment::From::kSource && snapshot_first) {
      busy_.clear(p);
      busy_count_--;
    }
    // kOverlayAtEnd: a page a writer is still preserving stays unsettled
    // until that writer publishes, or a second writer could overwrite it
    // before its pre-image is saved (the harness found this, seed 256).
    if (!busy_.test(p)) settled_.set(p);
  }
  wake_fifo_head_locked();
}

Status CopyJob::step_emit_segment(Segment* seg) {
  yield_to_commits();
  const size_t n = seg->from.size();
  for (size_t i = 0; i < n;) {
    if (seg->from[i] == Segment::From::kSkip) {
      i++;
      continue;
    }
    size_t j = i + 1;
    while (j < n && seg->from[j] != Segment::From::kSkip) j++;
    Status s = sink_->put_run(seg->range.begin + i, seg->data.data() + i * page_size_, j - i);
    if (!s.ok()) return s;
    pages_done_.fetch_add(j - i, std::memory_order_relaxed);
    i = j;
  }
  throttle();
  return Status::OK();
}

// Sleeps until the bytes written so far fit the rate limit; wakes early on
// failure or cancel.
void CopyJob::throttle() {
  if (config_.max_rate_mb <= 0) return;
  // Paced on the page bytes this job emitted, not on what the sink has
  // flushed: a buffering sink would otherwise let bursts through.
  const double seconds = double(pages_done_.load(std::memory_order_relaxed) * page_size_) /
                         (config_.max_rate_mb * 1e6);
  const auto due = started_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double>(seconds));
  MutexLock lock(&mu_);
  while (!failed() && copier_cv_.WaitUntil(&mu_, due)) {
  }
}

// Holds the next sink write while the application is committing (polled:
// a commit's I/O phase lasts about a millisecond, and waking the copier
// from the commit path would put a futex call on it). Called with no page
// busy, so no writer can be waiting for the copier meanwhile.
void CopyJob::yield_to_commits() {
  if (config_.yield_to == nullptr || !config_.yield_to->active()) return;
  COWBACKUP_SYNC_POINT("CopyJob::yield:waiting");
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  while (config_.yield_to->active() && !failed() && Clock::now() - start < config_.max_yield) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  const std::chrono::nanoseconds waited = Clock::now() - start;
  yield_ns_.fetch_add(uint64_t(waited.count()), std::memory_order_relaxed);
}

// `preserved` is preserved_ as step_finish found it: every page settled and
// no preservation in flight, so it no longer changes.
Status CopyJob::emit_overlays(const Bitmap& preserved) {
  std::vector<uint8_t> page(page_size_);
  for (uint64_t p = 0; p < config_.t0_pages; p++) {
    if (failed()) return status();
    if (!preserved.test(p)) continue;
    Status s = volume_->get(p, page.data());
    if (s.ok()) s = sink_->put_overlay(p, page.data());
    if (!s.ok()) return s;
  }
  return Status::OK();
}

Status CopyJob::step_finish() {
  Bitmap preserved;
  {
    MutexLock lock(&mu_);
    if (failed()) return error_;
    if (busy_count_ != 0) return Status::Busy("preservation in flight");
    for (uint64_t p = 0; p < config_.t0_pages; p++) {
      if (!copied_.test(p)) {
        return Status::InvalidArgument("copy queue drained with page " + std::to_string(p) +
                                       " not copied");
      }
    }
    for (uint64_t p : short_pages_) {
      if (!preserved_.test(p)) {
        return Status::Corruption(
            "the source shrank during the backup without the engine seeing it "
            "(a write bypassed cowbackup)",
            source_->name() + ", page " + std::to_string(p));
      }
    }
    if (config_.variant == Variant::kOverlayAtEnd) preserved = preserved_;
  }
  if (config_.variant == Variant::kOverlayAtEnd) {
    Status s = emit_overlays(preserved);
    if (!s.ok()) return s;
  }
  COWBACKUP_SYNC_POINT("CopyJob::finish:before_sink_finish");
  return sink_->finish(progress());
}

Status CopyJob::copy_all() {
  Segment seg;
  for (;;) {
    if (!step_next_segment(&seg)) {
      MutexLock lock(&mu_);
      while (!failed() && !sealed_ && queue_.empty() && hot_.empty()) copier_cv_.Wait(&mu_);
      if (failed()) return error_;
      if (sealed_ && queue_.empty() && hot_.empty()) break;
      continue;
    }
    for (;;) {
      if (step_claim_segment(&seg)) break;
      MutexLock lock(&mu_);
      while (!failed() && !segment_claimable_locked(seg)) copier_cv_.Wait(&mu_);
      if (failed()) return error_;
    }
    if (failed()) return status();
    COWBACKUP_SYNC_POINT("CopyJob::copy:claimed");
    Status s = step_read_segment(&seg);
    if (!s.ok()) return s;
    step_publish_segment(&seg);
    COWBACKUP_SYNC_POINT("CopyJob::copy:published");
    s = step_emit_segment(&seg);
    if (!s.ok()) return s;
  }
  // Wait for preservations still in flight (kOverlayAtEnd), then finish.
  {
    MutexLock lock(&mu_);
    while (!failed() && busy_count_ != 0) copier_cv_.Wait(&mu_);
    if (failed()) return error_;
  }
  return step_finish();
}

Status CopyJob::run() {
  // Once the sink has finished, the copy is published and complete: a
  // cancel() that raced with the last step comes too late to matter.
  Status s = copy_all();
  if (!s.ok()) {
    fail(s);
    sink_->abandon();
  }
  volume_->remove();
  return s.ok() ? s : status();
}

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kRunning: return "running";
    case JobState::kDone: return "done";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "unknown";
}

}  // namespace cowbackup
