// SharedPages: the copy-on-write rule for a job that several processes
// take part in (docs/DESIGN.md, "Writers in several processes").
//
// The per-page state of such a job lives in memory every party maps (the
// coordination region's page-state area, coord/), not in one process's
// bitmaps, so the protocol is made of atomic operations on it instead of a
// mutex. One u32 word per T0 page:
//
//   kPending    neither copied nor preserved: a writer must preserve it
//   kCopied     the copier has its T0 bytes (settled)
//   kPreserved  the snapshot volume holds its T0 bytes (settled)
//   >= kBusy    a party is reading it: a writer preserving it, or the
//               copier (kSnapshotFirst) reading it from the source. The
//               value names the party (Peers::busy_word), so that a waiter
//               can tell whether it is still alive and inside the job.
//
// A writer (any process), before its write lands, WriteThrough():
//   1. for each page of the range, ascending: settled, skip; pending, claim
//      it (compare-and-swap to its busy word); busy, wait until it is not;
//   2. read the claimed pages from the source, put them in the volume;
//   3. publish them kPreserved, wake the waiters.
// The copier (the job's owner), per segment, ClaimForCopy()/PublishCopied():
//   kSnapshotFirst claims the pending pages (busy), takes preserved pages
//   from the volume, and leaves pages a writer holds for later (they will
//   be preserved); after reading it publishes its claims kCopied (after a
//   failed read, nothing: the job fails, as after a failed preservation,
//   and its claims stay). It never waits while it holds a claim, and
//   writers claim in ascending order, so no two parties wait on each
//   other in a cycle.
//   kOverlayAtEnd claims nothing: it reads and then publishes kCopied only
//   pages still pending (a compare-and-swap); a page a writer took first is
//   preserved and overlaid at the end.
//
// Death. A busy page whose holder died, or left the job (Peers::holder_gone),
// is put back to pending: a writer's write lands only after it published,
// so the page still holds its T0 bytes, and the next party claims it again.
// The copier's death ends the job (the front end's Peers::job_current says
// so); nobody waits on anything for longer than kPollMs between checks.
// The reset is sound only if holder_gone(w) is never true while the party
// of `w` may still publish: every thread that claims must be counted inside
// the job (the front end's Enter..Leave) until WriteThrough returns. A live
// holder taken for gone would have its page claimed and preserved twice,
// and its late put could overwrite the volume's pre-image after another
// writer's write landed.
//
// Waiting is a futex on wake_seq (process-shared), which every publish and
// every reset increments; a waiter sleeps at most kPollMs, then looks again.
//
// The area's header (all atomics; docs/REGION.md, "The page-state area"):
//   0 wake_seq u32 | 4 waiters u32 | 8 counter u32 | 12 failure code u32
//   16 pages u64 | 24 preserved u64 | 32 done u64 | 40 max_wait_ns u64
//   48 failed_claim u32 | 52 failure_len u32 | 56 failer_pid u64
//   64 failure message (up to 960 bytes) | 1024 the state words
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "cowbackup/status.h"
#include "engine/page_range.h"
#include "engine/snapshot_volume.h"
#include "engine/source.h"

namespace cowbackup {

class SharedPages {
 public:
  static constexpr uint32_t kPending = 0, kCopied = 1, kPreserved = 2, kBusy = 0x80000000u;
  static constexpr size_t kOffWakeSeq = 0, kOffWaiters = 4, kOffCounter = 8, kOffFailCode = 12,
                          kOffPages = 16, kOffPreserved = 24, kOffDone = 32, kOffMaxWait = 40,
                          kOffFailClaim = 48, kOffFailLen = 52, kOffFailPid = 56,
                          kOffFailMsg = 64, kMaxFailMsg = 960, kHeaderSize = 1024;
  static constexpr int kPollMs = 10;
  // A writer preserves its claim in reads of at most this many pages (a
  // truncate may claim the whole file).
  static constexpr uint64_t kPreserveChunkPages = 256;

  // What a party knows of the others; the front end's (coord::JobParticipation).
  class Peers {
   public:
    virtual ~Peers() = default;
    // This party's busy word (>= kBusy), as the writer or as the copier.
    virtual uint32_t busy_word(bool copier) const = 0;
    // True if the party named by busy word `w` is dead or no longer inside
    // the job: its claim will never be published.
    virtual bool holder_gone(uint32_t w) = 0;
    // False once the job this party joined has ended, failed or died.
    virtual bool job_current() = 0;
    // Fails the job for every party; never fails the caller.
    virtual void fail(const Status& why) noexcept = 0;
  };

  // Bytes of an area for `pages` pages.
  static uint64_t AreaSize(uint64_t pages) { return kHeaderSize + 4 * pages; }
  // Zeroes `area` and records `pages` (the owner, before arming).
  static void Init(uint8_t* area, uint64_t pages);

  // `area` holds AreaSize(pages) bytes, mapped shared (or private memory in
  // tests); both outlive this object.
  SharedPages(uint8_t* area, uint64_t pages, Peers* peers);

  uint64_t pages() const { return pages_; }
  uint32_t load(uint64_t pgno) const { return word(pgno).load(std::memory_order_acquire); }
  static bool settled(uint32_t w) { return w == kCopied || w == kPreserved; }
  // True if every page of `pages` (clipped to T0) is settled: nothing to do.
  bool AllSettled(PageRange pages) const;

  // ---- Writers ----
  // The whole writer protocol for a write of `pages` (clipped to T0):
  // claim, preserve (read from `source`, put in `volume`), publish. A
  // failure fails the job (Peers::fail), never the write: the write may
  // land once it returns, whatever it returns (the failure, for the
  // caller's own job if it has one).
  Status WriteThrough(PageRange pages, Source* source, SnapshotVolume* volume, uint32_t page_size) noexcept;

  // ---- The copier ----
  enum class Take : uint8_t { kSkip, kSource, kVolume, kLater };
  // For each page of `seg`: kSkip (copied already), kVolume (preserved),
  // kSource (pending: claimed, kSnapshotFirst; or read unclaimed,
  // `overlay`), kLater (a writer is preserving it: ask again after
  // WaitForWriters). Resets the claims of parties gone.
  void ClaimForCopy(PageRange seg, bool overlay, std::vector<Take>* take);
  // After reading: the kSource pages become kCopied (overlay: those still
  // pending). Wakes the waiters.
  void PublishCopied(PageRange seg, bool overlay, const std::vector<Take>& take);
  // Sleeps until some page of `seg` that was kLater changed, or kPollMs.
  // False if the job is no longer current.
  bool WaitForWriters(PageRange seg);
  // True once no page is busy (a gone holder's claim is reset on the way).
  bool NoneBusy();

  // ---- Shared counters ----
  void AddDone(uint64_t n) { u64(kOffDone).fetch_add(n, std::memory_order_relaxed); }
  uint64_t done() const { return u64(kOffDone).load(std::memory_order_relaxed); }
  uint64_t preserved() const { return u64(kOffPreserved).load(std::memory_order_relaxed); }
  uint64_t max_wait_ns() const { return u64(kOffMaxWait).load(std::memory_order_relaxed); }
  void NoteWait(uint64_t ns);
  // The first failure of the job, for every party to report: the first
  // caller's message (cut to kMaxFailMsg bytes) and pid; later calls keep
  // it. Wakes the waiters, who then find the job no longer current.
  void RecordFailure(const Status& why, int64_t pid) noexcept;
  // OK if none was recorded, else the first failure's code and message,
  // and in *pid the process that recorded it.
  Status Failure(int64_t* pid = nullptr) const;
  // What a party reports once the job is no longer current because another
  // party failed it: that failure, its code kept, naming the process; or,
  // if none was recorded, a generic I/O error.
  Status LostStatus() const;
  Peers* peers() const { return peers_; }
  // Wakes every waiter, to look at the pages and the job again.
  void Wake();
  // The front end's u32 (SQLite: the last change counter a participant wrote).
  std::atomic_ref<uint32_t> counter() const { return u32(kOffCounter); }

 private:
  // The deterministic interleaving harness runs a writer's steps below one
  // at a time (tests/engine/shared_pages_peer.h).
  friend class SharedPagesTestPeer;

  std::atomic_ref<uint32_t> word(uint64_t pgno) const {
    return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(area_ + kHeaderSize + 4 * pgno));
  }
  std::atomic_ref<uint32_t> u32(size_t off) const {
    return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(area_ + off));
  }
  std::atomic_ref<uint64_t> u64(size_t off) const {
    return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(area_ + off));
  }
  // Claims every unsettled page of `pages` for this writer. False if the
  // job ended meanwhile (what was claimed is left: the job is over).
  bool ClaimForWrite(PageRange pages, std::vector<PageRange>* claimed);
  // ClaimForWrite's step for one page: settled (nothing to do); pending and
  // now claimed with `mine` (appended to *claimed); or busy with *busy.
  enum class Claim : uint8_t { kSettled, kClaimed, kBusy };
  Claim TryClaim(uint64_t pgno, uint32_t mine, uint32_t* busy, std::vector<PageRange>* claimed);
  // Waits while page `pgno` holds busy word `w`; resets it if its holder is
  // gone. False if the job is no longer current.
  bool WaitWhileBusy(uint64_t pgno, uint32_t w);
  // WaitWhileBusy's decision, made once: the word changed; the job is no
  // longer current; the holder was gone and the page is reset; or sleep.
  enum class Busy : uint8_t { kChanged, kJobOver, kReset, kSleep };
  Busy CheckBusy(uint64_t pgno, uint32_t w);
  // Steps 2 and 3 of WriteThrough for its claim.
  Status Preserve(const std::vector<PageRange>& claimed, Source* source, SnapshotVolume* volume,
                  uint32_t page_size);
  void Publish(const std::vector<PageRange>& claimed);
  // Puts `pgno` back to pending if it still holds `w`, and wakes.
  void ResetGone(uint64_t pgno, uint32_t w);
  // One futex sleep on wake_seq if it still reads `seq`, at most kPollMs.
  void Sleep(uint32_t seq);

  uint8_t* const area_;
  const uint64_t pages_;
  Peers* const peers_;
};

}  // namespace cowbackup
