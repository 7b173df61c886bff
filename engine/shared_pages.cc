#include "engine/shared_pages.h"

#include <algorithm>
#include <cstring>

#include "engine/futex.h"
#include "engine/sync_point.h"

namespace cowbackup {

void SharedPages::Init(uint8_t* area, uint64_t pages) {
  memset(area, 0, AreaSize(pages));
  memcpy(area + kOffPages, &pages, sizeof pages);
}

SharedPages::SharedPages(uint8_t* area, uint64_t pages, Peers* peers)
    : area_(area), pages_(pages), peers_(peers) {}

// ---------------------------------------------------------------------------
// Writers

bool SharedPages::AllSettled(PageRange pages) const {
  pages = pages.clip(pages_);
  for (uint64_t p = pages.begin; p < pages.end; p++) {
    if (!settled(load(p))) return false;
  }
  return true;
}

Status SharedPages::WriteThrough(PageRange pages, Source* source, SnapshotVolume* volume,
                                 uint32_t page_size) noexcept {
  pages = pages.clip(pages_);
  if (pages.empty()) return Status::OK();
  const auto entered = std::chrono::steady_clock::now();
  // 1. Claim every unsettled page, ascending, waiting out busy ones.
  std::vector<PageRange> claimed;
  if (!ClaimForWrite(pages, &claimed)) return Status::OK();
  // 2. Preserve: the claimed pages still hold their T0 bytes.
  Status s = Preserve(claimed, source, volume, page_size);
  if (!s.ok()) {
    // The claims stay busy: the job is failed, nobody waits for them.
    peers_->fail(s);
    return s;
  }
  // 3. Publish.
  if (!claimed.empty()) COWBACKUP_SYNC_POINT("SharedPages::publish");
  Publish(claimed);
  NoteWait(uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now() - entered)
                        .count()));
  return Status::OK();
}

bool SharedPages::ClaimForWrite(PageRange pages, std::vector<PageRange>* claimed) {
  const uint32_t mine = peers_->busy_word(/*copier=*/false);
  for (uint64_t p = pages.begin; p < pages.end;) {
    uint32_t w = 0;
    if (TryClaim(p, mine, &w, claimed) != Claim::kBusy) {
      p++;
    } else if (!WaitWhileBusy(p, w)) {
      return false;
    }
  }
  return true;
}

SharedPages::Claim SharedPages::TryClaim(uint64_t pgno, uint32_t mine, uint32_t* busy,
                                         std::vector<PageRange>* claimed) {
  uint32_t w = word(pgno).load(std::memory_order_acquire);
  for (;;) {
    if (settled(w)) return Claim::kSettled;
    if (w != kPending) {
      *busy = w;
      return Claim::kBusy;
    }
    // A failed exchange reloads w: look again at what won.
    if (word(pgno).compare_exchange_strong(w, mine, std::memory_order_acq_rel)) break;
  }
  if (!claimed->empty() && claimed->back().end == pgno) {
    claimed->back().end++;
  } else {
    claimed->push_back({pgno, pgno + 1});
  }
  COWBACKUP_SYNC_POINT("SharedPages::claimed");
  return Claim::kClaimed;
}

bool SharedPages::WaitWhileBusy(uint64_t pgno, uint32_t w) {
  COWBACKUP_SYNC_POINT("SharedPages::wait");
  const uint32_t seq = u32(kOffWakeSeq).load(std::memory_order_acquire);
  switch (CheckBusy(pgno, w)) {
    case Busy::kJobOver: return false;
    case Busy::kSleep: Sleep(seq); return true;
    case Busy::kChanged:
    case Busy::kReset: return true;
  }
  return true;
}

SharedPages::Busy SharedPages::CheckBusy(uint64_t pgno, uint32_t w) {
  if (word(pgno).load(std::memory_order_acquire) != w) return Busy::kChanged;
  if (!peers_->job_current()) return Busy::kJobOver;
  if (peers_->holder_gone(w)) {
    ResetGone(pgno, w);
    return Busy::kReset;
  }
  return Busy::kSleep;
}

Status SharedPages::Preserve(const std::vector<PageRange>& claimed, Source* source,
                             SnapshotVolume* volume, uint32_t page_size) {
  std::vector<uint8_t> buf;
  for (const PageRange& run : claimed) {
    // In chunks: a truncate's claim may be the whole file.
    for (uint64_t first = run.begin; first < run.end;) {
      const uint64_t n = std::min(run.end - first, kPreserveChunkPages);
      buf.resize(n * page_size);
      COWBACKUP_SYNC_POINT("CopyJob::preserve:read");  // the same step as in one process
      Status s = source->read(first * page_size, buf.data(), buf.size());
      for (uint64_t i = 0; s.ok() && i < n; i++) s = volume->put(first + i, buf.data() + i * page_size);
      if (!s.ok()) return s;
      first += n;
    }
  }
  return Status::OK();
}

void SharedPages::Publish(const std::vector<PageRange>& claimed) {
  uint64_t n = 0;
  for (const PageRange& run : claimed) {
    for (uint64_t p = run.begin; p < run.end; p++) word(p).store(kPreserved, std::memory_order_release);
    n += run.size();
  }
  if (n > 0) {
    u64(kOffPreserved).fetch_add(n, std::memory_order_relaxed);
    Wake();
  }
}

void SharedPages::ResetGone(uint64_t pgno, uint32_t w) {
  COWBACKUP_SYNC_POINT("SharedPages::reset_gone");
  if (word(pgno).compare_exchange_strong(w, kPending, std::memory_order_acq_rel)) Wake();
}

void SharedPages::NoteWait(uint64_t ns) {
  std::atomic_ref<uint64_t> max = u64(kOffMaxWait);
  uint64_t prev = max.load(std::memory_order_relaxed);
  while (ns > prev && !max.compare_exchange_weak(prev, ns, std::memory_order_relaxed)) {
  }
}

// ---------------------------------------------------------------------------
// The copier

void SharedPages::ClaimForCopy(PageRange seg, bool overlay, std::vector<Take>* take) {
  const uint32_t mine = peers_->busy_word(/*copier=*/true);
  take->assign(seg.size(), Take::kSkip);
  for (uint64_t p = seg.begin; p < seg.end; p++) {
    Take& t = (*take)[p - seg.begin];
    for (;;) {
      uint32_t w = word(p).load(std::memory_order_acquire);
      if (w == kCopied) {
        t = Take::kSkip;
      } else if (w == kPreserved) {
        t = Take::kVolume;
      } else if (w == kPending) {
        if (!overlay && !word(p).compare_exchange_strong(w, mine, std::memory_order_acq_rel)) continue;
        t = Take::kSource;
      } else if (overlay) {
        // Read it anyway; the writer's pre-image is overlaid at the end.
        t = Take::kSource;
      } else if (peers_->holder_gone(w)) {
        ResetGone(p, w);
        continue;
      } else {
        t = Take::kLater;
      }
      break;
    }
  }
}

void SharedPages::PublishCopied(PageRange seg, bool overlay, const std::vector<Take>& take) {
  const uint32_t mine = peers_->busy_word(/*copier=*/true);
  for (uint64_t p = seg.begin; p < seg.end; p++) {
    if (take[p - seg.begin] != Take::kSource) continue;
    uint32_t expect = overlay ? kPending : mine;
    word(p).compare_exchange_strong(expect, kCopied, std::memory_order_acq_rel);
  }
  Wake();
}

bool SharedPages::WaitForWriters(PageRange seg) {
  const uint32_t seq = u32(kOffWakeSeq).load(std::memory_order_acquire);
  bool busy = false;
  for (uint64_t p = seg.begin; p < seg.end; p++) {
    const uint32_t w = word(p).load(std::memory_order_acquire);
    if (w < kBusy) continue;
    if (peers_->holder_gone(w)) {
      ResetGone(p, w);
      return peers_->job_current();
    }
    busy = true;
  }
  if (!peers_->job_current()) return false;
  if (busy) Sleep(seq);
  return true;
}

bool SharedPages::NoneBusy() {
  for (uint64_t p = 0; p < pages_; p++) {
    const uint32_t w = word(p).load(std::memory_order_acquire);
    if (w < kBusy) continue;
    if (!peers_->holder_gone(w)) return false;
    ResetGone(p, w);
  }
  return true;
}

void SharedPages::RecordFailure(const Status& why, int64_t pid) noexcept {
  uint32_t none = 0;
  if (u32(kOffFailClaim).compare_exchange_strong(none, 1, std::memory_order_acq_rel)) {
    try {
      const std::string msg = why.message().substr(0, kMaxFailMsg);
      memcpy(area_ + kOffFailMsg, msg.data(), msg.size());
      u32(kOffFailCode).store(uint32_t(why.code()), std::memory_order_relaxed);
      u64(kOffFailPid).store(uint64_t(pid), std::memory_order_relaxed);
      u32(kOffFailLen).store(uint32_t(msg.size()), std::memory_order_release);
    } catch (...) {
      // Out of memory: the job fails without its reason.
    }
  }
  Wake();  // waiters look at the job again now
}

Status SharedPages::Failure(int64_t* pid) const {
  const uint32_t len = u32(kOffFailLen).load(std::memory_order_acquire);
  if (len == 0 || len > kMaxFailMsg) return Status::OK();
  if (pid != nullptr) *pid = int64_t(u64(kOffFailPid).load(std::memory_order_relaxed));
  // The code comes from another process: one this build does not know is
  // reported as an I/O error.
  const uint32_t code = u32(kOffFailCode).load(std::memory_order_relaxed);
  return Status::FromCode(code <= uint32_t(Status::Code::kIncomplete) ? Status::Code(code) : Status::Code::kIOError,
                          std::string(reinterpret_cast<const char*>(area_ + kOffFailMsg), len));
}

Status SharedPages::LostStatus() const {
  int64_t pid = 0;
  const Status why = Failure(&pid);
  if (why.ok()) return Status::IOError("another process taking part in the backup failed it (it recorded no reason)");
  return Status::FromCode(why.code(), "process " + std::to_string(pid) +
                                          ", taking part in the backup, failed it: " + why.message());
}

// ---------------------------------------------------------------------------
// Waiting

// Wake and Sleep are a Dekker pair (each writes one word, then reads the
// other's): seq_cst, or C++ lets both read the old value, and a sleeper
// would miss this wake and sleep the whole kPollMs.
void SharedPages::Wake() {
  u32(kOffWakeSeq).fetch_add(1, std::memory_order_seq_cst);
  if (u32(kOffWaiters).load(std::memory_order_seq_cst) != 0) {
    FutexWakeAll(reinterpret_cast<uint32_t*>(area_ + kOffWakeSeq));
  }
}

void SharedPages::Sleep(uint32_t seq) {
  u32(kOffWaiters).fetch_add(1, std::memory_order_seq_cst);
  // FUTEX_WAIT re-reads the word in the kernel: a Wake() after our load of
  // `seq` changed it, so the call returns at once instead of sleeping.
  FutexWait(reinterpret_cast<uint32_t*>(area_ + kOffWakeSeq), seq, kPollMs);
  u32(kOffWaiters).fetch_sub(1, std::memory_order_acq_rel);
}

}  // namespace cowbackup
