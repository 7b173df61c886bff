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
  // At T0: the pacer's baseline is the application's last second before it.
  if (config_.pace_by != nullptr && config_.pace_share > 0) {
    pacer_ = std::make_unique<Pacer>(config_.pace_by, config_.pace_share, SteadyNowNs());
  }
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
  if (SharedPages* shared = config_.shared) {
    const PageRange pages = PageRange::FromBytes(offset, len, config_.page_size);
    if (!shared->AllSettled(pages) && shared->peers()->job_current()) {
      COWBACKUP_SYNC_POINT("CopyJob::before_write:slow");
      Status s = shared->WriteThrough(pages, source_, volume_, config_.page_size);
      if (!s.ok()) fail(s);  // this process's own job: its own reason
    }
    return;
  }
  WriteOp op;
  op.pages = PageRange::FromBytes(offset, len, config_.page_size).clip(config_.t0_pages);
  if (op.pages.empty() || settled_.all(op.pages.begin, op.pages.end)) return;
  COWBACKUP_SYNC_POINT("CopyJob::before_write:slow");
  const auto entered = std::chrono::steady_clock::now();
  {
    MutexLock lock(&mu_);
    // 1. Join the FIFO, once.
    join_fifo_locked(&op);
    // 2. Wait to be its head with no busy page in the range (rules 3, 4).
    while (!failed() && !may_claim_locked(op)) {
      COWBACKUP_SYNC_POINT("CopyJob::before_write:queued");  // under mu_
      op.cv.Wait(&mu_);
    }
    // 3. Claim: mark the range's unsettled pages busy.
    if (!failed()) claim_write_locked(&op);
    // 4. Leave the FIFO and wake the next head.
    leave_fifo_locked(&op);
    COWBACKUP_SYNC_POINT("CopyJob::before_write:released");  // under mu_
  }
  if (!op.claimed.empty()) {
    // 5. Save the claimed pages' T0 content, mutex released (rule 2).
    preserve(&op);
    // 6. Publish: preserved and settled, no longer busy; wake the waiters.
    publish_preserved(&op);
  }
  note_write_wait(entered);
}

void CopyJob::before_truncate(uint64_t new_size) noexcept {
  // A truncate changes the page holding the new end of file (if it is cut
  // mid-page) and removes every page after it.
  uint64_t first = new_size / page_size_;
  if (first >= config_.t0_pages) return;
  before_write(first * page_size_, (config_.t0_pages - first) * page_size_);
}

void CopyJob::join_fifo_locked(WriteOp* op) {
  assert(!op->queued);  // I5: at most once
  fifo_.push_back(op);
  op->queued = true;
}

bool CopyJob::may_claim_locked(const WriteOp& op) const {
  return fifo_.front() == &op && !range_busy_locked(op.pages);
}

// All or nothing: may_claim_locked() saw no busy page in the range.
void CopyJob::claim_write_locked(WriteOp* op) {
  op->claimed.clear();
  for (uint64_t p = op->pages.begin; p < op->pages.end; p++) {
    if (settled_.test(p)) continue;
    assert(!busy_.test(p));
    busy_.set(p);
    busy_count_++;
    if (!op->claimed.empty() && op->claimed.back().end == p) {
      op->claimed.back().end++;
    } else {
      op->claimed.push_back({p, p + 1});
    }
  }
  if (!op->claimed.empty()) note_hot_locked(op->claimed.front().begin);
}

// The head leaves after its claim; any writer leaves when the job fails.
void CopyJob::leave_fifo_locked(WriteOp* op) {
  assert(op->queued);
  auto it = std::find(fifo_.begin(), fifo_.end(), op);
  assert(it != fifo_.end());
  const bool was_head = it == fifo_.begin();
  fifo_.erase(it);
  op->queued = false;
  if (was_head) wake_fifo_head_locked();
}

void CopyJob::wake_fifo_head_locked() {
  if (!fifo_.empty()) fifo_.front()->cv.Signal();
}

bool CopyJob::range_busy_locked(PageRange pages) const {
  for (uint64_t p = pages.begin; p < pages.end; p++) {
    if (busy_.test(p)) return true;
  }
  return false;
}

void CopyJob::preserve(WriteOp* op) {
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

void CopyJob::publish_preserved(WriteOp* op) {
  MutexLock lock(&mu_);
  const bool ok = !failed();
  for (const PageRange& run : op->claimed) {
    for (uint64_t p = run.begin; p < run.end; p++) {
      assert(busy_.test(p) && !settled_.test(p));  // I1, I3: this writer's claim
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

void CopyJob::note_write_wait(std::chrono::steady_clock::time_point entered) {
  const uint64_t waited = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::steady_clock::now() - entered)
                                       .count());
  uint64_t prev = max_write_wait_ns_.load(std::memory_order_relaxed);
  while (waited > prev &&
         !max_write_wait_ns_.compare_exchange_weak(prev, waited, std::memory_order_relaxed)) {
  }
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
  {
    MutexLock lock(&mu_);
    if (failed()) return;
    error_ = status;
    failed_.store(true, std::memory_order_release);
    for (WriteOp* op : fifo_) op->cv.Signal();
    copier_cv_.SignalAll();
  }
  if (config_.shared != nullptr) config_.shared->peers()->fail(status);
}

bool CopyJob::shared_job_lost() {
  if (config_.shared == nullptr || config_.shared->peers()->job_current()) return false;
  fail(config_.shared->LostStatus());
  return true;
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
  uint64_t max_wait_ns = max_write_wait_ns_.load(std::memory_order_relaxed);
  if (const SharedPages* shared = config_.shared) {
    p.pages_preserved = shared->preserved();
    max_wait_ns = std::max(max_wait_ns, shared->max_wait_ns());
  }
  p.max_write_wait_us = max_wait_ns / 1000;
  p.yield_ms = yield_ns_.load(std::memory_order_relaxed) / 1000000;
  p.pace_mb = pace_mb_.load(std::memory_order_relaxed);
  p.pace_min_mb = pace_min_mb_.load(std::memory_order_relaxed);
  return p;
}

size_t CopyJob::state_memory_bytes() const {
  MutexLock lock(&mu_);
  return settled_.memory_bytes() + copied_.memory_bytes() + preserved_.memory_bytes() +
         busy_.memory_bytes();
}

bool CopyJob::queue_drained_locked() const {
  return sealed_ && queue_.empty() && hot_.empty();
}

// ---------------------------------------------------------------------------
// The copier

bool CopyJob::next_segment_locked(Segment* seg) {
  std::deque<PageRange>& q = hot_.empty() ? queue_ : hot_;
  if (q.empty()) return false;
  PageRange& head = q.front();
  seg->range = {head.begin, std::min<uint64_t>(head.end, head.begin + config_.segment_pages)};
  head.begin = seg->range.end;
  if (head.empty()) q.pop_front();
  seg->from.assign(seg->range.size(), Segment::From::kSkip);
  return true;
}

// kOverlayAtEnd claims nothing, so it never waits.
bool CopyJob::segment_claimable_locked(const Segment& seg) const {
  return config_.variant == Variant::kOverlayAtEnd || !range_busy_locked(seg.range);
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
        assert(!settled_.test(p));  // I1: neither copied nor preserved
        busy_.set(p);
        busy_count_++;
      }
    }
  }
}

Status CopyJob::read_segment(Segment* seg) {
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
// truncate landed (or the truncate bypassed us: finish() tells which);
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

void CopyJob::publish_segment(Segment* seg) {
  MutexLock lock(&mu_);
  short_pages_.insert(short_pages_.end(), seg->short_pages.begin(), seg->short_pages.end());
  seg->short_pages.clear();
  const bool snapshot_first = config_.variant == Variant::kSnapshotFirst;
  for (uint64_t p = seg->range.begin; p < seg->range.end; p++) {
    const Segment::From from = seg->from[p - seg->range.begin];
    if (from == Segment::From::kSkip) continue;
    copied_.set(p);
    if (from == Segment::From::kSource && snapshot_first) {
      assert(busy_.test(p) && !settled_.test(p));  // I1, I3: the copier's claim
      busy_.clear(p);
      busy_count_--;
    }
    assert(from != Segment::From::kVolume || settled_.test(p));  // preserved before the claim
    // kOverlayAtEnd: a page a writer is still preserving stays unsettled
    // until that writer publishes, or a second writer could overwrite it
    // before its pre-image is saved (the harness found this, seed 256).
    if (!busy_.test(p)) settled_.set(p);
  }
  wake_fifo_head_locked();
}

Status CopyJob::emit_segment(Segment* seg) {
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
    if (config_.shared != nullptr) config_.shared->AddDone(j - i);
    i = j;
  }
  throttle();
  return Status::OK();
}

// Sleeps until the next sink write may start: the rate limit and the
// pacer's (the later of the two); wakes early on failure or cancel.
// Paced on the page bytes this job emitted, not on what the sink has
// flushed: a buffering sink would otherwise let bursts through.
void CopyJob::throttle() {
  if (config_.max_rate_mb <= 0 && pacer_ == nullptr) return;
  const uint64_t bytes = pages_done_.load(std::memory_order_relaxed) * page_size_;
  auto due = std::chrono::steady_clock::time_point::min();
  if (config_.max_rate_mb > 0) {
    due = started_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(double(bytes) / (config_.max_rate_mb * 1e6)));
  }
  if (pacer_ != nullptr) {
    const std::chrono::steady_clock::time_point paced{std::chrono::nanoseconds(pacer_->NextWriteNs(bytes, SteadyNowNs()))};
    due = std::max(due, paced);
    pace_mb_.store(pacer_->rate_mb(), std::memory_order_relaxed);
    pace_min_mb_.store(pacer_->counts().lowest_rate_mb, std::memory_order_relaxed);
  }
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

// `preserved` is preserved_ as finish() found it: every page settled and
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

Status CopyJob::finish() {
  // The pages whose T0 pre-image the volume holds, once no preservation is
  // in flight (they no longer change).
  Bitmap preserved;
  if (config_.shared != nullptr) {
    Status s = settle_shared(&preserved);
    if (!s.ok()) return s;
  }
  {
    MutexLock lock(&mu_);
    if (failed()) return error_;
    if (config_.shared == nullptr) {
      if (busy_count_ != 0) return Status::Busy("preservation in flight");
      assert(invariant_violation_locked().empty());
      preserved = preserved_;
    }
    for (uint64_t p = 0; p < config_.t0_pages; p++) {
      if (!copied_.test(p)) {
        return Status::InvalidArgument("copy queue drained with page " + std::to_string(p) +
                                       " not copied");
      }
    }
    for (uint64_t p : short_pages_) {
      if (!preserved.test(p)) {
        return Status::Corruption(
            "the source shrank during the backup without the engine seeing it "
            "(a write bypassed cowbackup)",
            source_->name() + ", page " + std::to_string(p));
      }
    }
  }
  if (shared_job_lost()) return status();
  if (config_.variant == Variant::kOverlayAtEnd) {
    Status s = emit_overlays(preserved);
    if (!s.ok()) return s;
  }
  COWBACKUP_SYNC_POINT("CopyJob::finish:before_sink_finish");
  return sink_->finish(progress());
}

// The copier's loop, in before_write()'s shape: take a segment, wait until
// none of its pages is busy, claim, then (mutex released) read, publish, and
// hand the pages to the sink.
Status CopyJob::copy_all() {
  Segment seg;
  for (;;) {
    bool have = false;
    {
      MutexLock lock(&mu_);
      // 1. The next segment; an open queue may be empty for now.
      while (!failed() && !(have = next_segment_locked(&seg)) && !sealed_) copier_cv_.Wait(&mu_);
      if (failed()) return error_;
      if (!have) break;  // drained and sealed
      if (config_.shared == nullptr) {
        // 2. Wait until no writer is preserving a page of it (kSnapshotFirst).
        while (!failed() && !segment_claimable_locked(seg)) copier_cv_.Wait(&mu_);
        if (failed()) return error_;
        // 3. Claim: mark the pages to read from the source busy.
        claim_segment_locked(&seg);
      }
    }
    Status s;
    if (config_.shared != nullptr) {
      // 2-5 through the shared table.
      s = copy_segment_shared(&seg);
    } else {
      COWBACKUP_SYNC_POINT("CopyJob::copy:claimed");
      // 4. Read, mutex released.
      s = read_segment(&seg);
      // 5. Publish: copied (and settled), no longer busy; wake the FIFO head.
      if (s.ok()) publish_segment(&seg);
    }
    if (!s.ok()) return s;
    COWBACKUP_SYNC_POINT("CopyJob::copy:published");
    // 6. To the sink.
    s = emit_segment(&seg);
    if (!s.ok()) return s;
  }
  // Wait for preservations still in flight (kOverlayAtEnd), then finish.
  {
    MutexLock lock(&mu_);
    while (!failed() && busy_count_ != 0) copier_cv_.Wait(&mu_);
    if (failed()) return error_;
  }
  return finish();
}

// Shared mode. ClaimForCopy may leave pages a writer is preserving for
// later: read and publish what was taken, wait for those writers, and ask
// again until every page of the segment is taken. The copier holds no
// claim while it waits (shared_pages.h).
Status CopyJob::copy_segment_shared(Segment* seg) {
  SharedCopy sc;
  begin_shared(seg, &sc);
  for (;;) {
    Status s = claim_shared(seg, &sc);
    if (!s.ok()) return s;
    COWBACKUP_SYNC_POINT("CopyJob::copy:claimed");
    s = read_segment(seg);
    // A failed read publishes nothing (the pages are not copied); its
    // claims stay, the job being over, as a failed writer's do.
    if (!s.ok()) return s;
    publish_shared(seg, &sc);
    if (!sc.later) break;
    if (!config_.shared->WaitForWriters(seg->range) && shared_job_lost()) return status();
  }
  end_shared(seg, &sc);
  return Status::OK();
}

void CopyJob::begin_shared(Segment* seg, SharedCopy* sc) {
  const size_t n = seg->range.size();
  sc->taken.assign(n, Segment::From::kSkip);
  sc->todo.assign(n, false);
  sc->short_pages.clear();
  MutexLock lock(&mu_);
  for (size_t i = 0; i < n; i++) sc->todo[i] = !copied_.test(seg->range.begin + i);
}

Status CopyJob::claim_shared(Segment* seg, SharedCopy* sc) {
  if (shared_job_lost()) return status();
  config_.shared->ClaimForCopy(seg->range, config_.variant == Variant::kOverlayAtEnd, &sc->take);
  sc->later = false;
  for (size_t i = 0; i < seg->range.size(); i++) {
    seg->from[i] = Segment::From::kSkip;
    if (!sc->todo[i]) continue;
    switch (sc->take[i]) {
      case SharedPages::Take::kSkip: sc->todo[i] = false; break;  // copied before: not by us
      case SharedPages::Take::kSource: seg->from[i] = Segment::From::kSource; break;
      case SharedPages::Take::kVolume: seg->from[i] = Segment::From::kVolume; break;
      case SharedPages::Take::kLater: sc->later = true; break;
    }
  }
  seg->short_pages.clear();
  return Status::OK();
}

void CopyJob::publish_shared(Segment* seg, SharedCopy* sc) {
  config_.shared->PublishCopied(seg->range, config_.variant == Variant::kOverlayAtEnd, sc->take);
  sc->short_pages.insert(sc->short_pages.end(), seg->short_pages.begin(), seg->short_pages.end());
  for (size_t i = 0; i < seg->range.size(); i++) {
    if (seg->from[i] == Segment::From::kSkip) continue;
    sc->taken[i] = seg->from[i];
    sc->todo[i] = false;
  }
}

// `seg->from` ends as in local mode: what was emitted from where.
void CopyJob::end_shared(Segment* seg, SharedCopy* sc) {
  seg->from = std::move(sc->taken);
  MutexLock lock(&mu_);
  short_pages_.insert(short_pages_.end(), sc->short_pages.begin(), sc->short_pages.end());
  for (size_t i = 0; i < seg->from.size(); i++) {
    if (seg->from[i] != Segment::From::kSkip) copied_.set(seg->range.begin + i);
  }
}

// Shared mode, before finish()'s checks: waits until no page is busy
// anywhere, then reads which pages the table says preserved.
Status CopyJob::settle_shared(Bitmap* preserved) {
  SharedPages* shared = config_.shared;
  const PageRange all{0, config_.t0_pages};
  while (!shared->NoneBusy()) {
    if (!shared->WaitForWriters(all) && shared_job_lost()) return status();
  }
  if (shared_job_lost()) return status();
  *preserved = Bitmap(config_.t0_pages);
  for (uint64_t p = 0; p < config_.t0_pages; p++) {
    if (shared->load(p) == SharedPages::kPreserved) preserved->set(p);
  }
  return Status::OK();
}

std::string CopyJob::invariant_violation_locked() const {
  uint64_t busy = 0;
  for (uint64_t p = 0; p < config_.t0_pages; p++) {
    const std::string page = "page " + std::to_string(p);
    if (busy_.test(p)) {
      busy++;
      if (settled_.test(p)) return page + " is busy and settled (I1)";
    }
    if (!failed() &&
        settled_.test(p) != ((copied_.test(p) || preserved_.test(p)) && !busy_.test(p))) {
      return page + (settled_.test(p) ? " is settled" : " is not settled") +
             " against copied/preserved/busy (I4)";
    }
  }
  if (busy != busy_count_) {
    return "busy_count_ " + std::to_string(busy_count_) + " but " + std::to_string(busy) +
           " busy pages (I2)";
  }
  for (auto it = fifo_.begin(); it != fifo_.end(); ++it) {
    if (!(*it)->queued || std::find(it + 1, fifo_.end(), *it) != fifo_.end()) {
      return "the FIFO holds a writer twice or unmarked (I5)";
    }
  }
  return "";
}

Status CopyJob::run() {
  // Once the sink has finished, the copy is published and complete: a
  // cancel() that raced with the last step comes too late to matter.
  Status s = copy_all();
  if (!s.ok()) abandon(s);
  volume_->remove();
  return s.ok() ? s : status();
}

void CopyJob::abandon(const Status& s) {
  // A shared job that another party failed first fails for its reason, not
  // for what followed: with the job over, writers stop preserving, and the
  // copier's next read may come up short.
  shared_job_lost();
  fail(s);
  sink_->abandon();
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
