// FileState: what every connection of the process to one database file
// shares, keyed by (st_dev, st_ino) like unixInodeInfo in os_unix.c.
//
//   connection A --ShimFile--+
//   connection B --ShimFile--+--> FileState (dev, ino) --> reader_ (a parent
//   a running job ---------- +     WriteHook hook         sqlite3_file, open
//                                  commit tracking        until the last ref)
//
// A FileState lives while anything refers to it: each open ShimFile of the
// main database and each job holds one reference (Acquire/Release).
//
// The reader is a file object of the parent VFS, opened once and kept: the
// engine reads pages through it, and the begin-time and end checks take a
// SHARED lock through it. A short-lived open/close would be wrong: closing
// any descriptor of the inode drops every POSIX lock the process holds on
// it (see os_unix.c, "Posix Advisory Locking"); the parent VFS knows this
// and defers the close of its own objects while locks are held.
//
// Commit tracking (foreign-write detection). In rollback-journal modes
// every commit writes page 1 with the file change counter (offset 24)
// incremented by one. While a job runs the shim parses that field from each
// page-1 write it forwards. With the counter c read at T0 under a SHARED
// lock, a write through the shim carrying v is consistent when v is c, c+1
// (a commit, or a cache spill before it) or c-1 (a rollback restoring a
// spilled page 1); anything else means some commit landed without the shim
// seeing it. At the end, again under a SHARED lock, the file's counter must
// equal the last value the shim saw. A commit by another process (or by a
// connection not opened through the shim) therefore shows either as a jump
// or as a final mismatch, and fails the job before anything is published.
// Known gap: only commits move the counter; a foreign transaction that
// spills pages into the file and rolls back is not detected (docs/SQLITE.md).
//
// The begin-time gate. A backup needs SHARED (at T0 and at its end check),
// which a connection holding PENDING or EXCLUSIVE excludes. In rollback
// mode a connection takes EXCLUSIVE at the start of its commit and holds it
// through the journal syncs, the page writes, the database sync and the
// journal's removal; between commits it holds SHARED or RESERVED, which let
// a reader in, only for the few hundred microseconds its next statement
// runs. A backup polling for SHARED missed those windows: under writers
// committing back to back on a loaded machine a quarter of the begin-time
// locks took over 100 ms. So while a backup of this process waits for
// SHARED (LockShared until it gets it and Unlock releases it), the shim
// holds a connection's first EXCLUSIVE request of a transaction, made from
// RESERVED, which readers may share, for at most kGateMaxWaitMs: the
// backup's next poll succeeds. A connection already holding PENDING is not
// held (the backup could not get SHARED past it). Only one connection holds
// RESERVED, so nothing the held one waits for waits for it in turn; the
// bound covers what this reasoning does not see (another process, a hot
// journal rolled back from SHARED).
//
// WAL mode (docs/SQLITE.md, "WAL mode"). A WAL database is written in two
// files: wal_hook guards <db>-wal as hook guards the main file. The
// begin-time instant and the end check take SQLite's own WAL locks
// (LockWal) through the reader's wal-index, exactly as a connection of
// another process would; the shim reports every WAL write and checkpoint
// lock a connection of this process takes or releases (AfterShmLock,
// BeforeShmUnlock), which drives the WAL tracker (foreign-writer
// detection: wal_tracker for this process's job, the part's for another
// process's, both on the job's shared marks) and, for the write lock,
// hook.commits (what yield_to_commits waits out). The region's checkpoint
// holder says which attached process holds the checkpoint lock.
// The begin-time gate holds a connection's request for the write or
// checkpoint lock, as it holds EXCLUSIVE in rollback mode, while a backup
// waits for or holds a WAL lock, so this process's writers never see
// SQLITE_BUSY because of a backup.
//
// Several processes (docs/SQLITE.md, "Writers in several processes"). A
// FileState attaches to the database's coordination region (coord/,
// `<db>-cowbackup`) when it is made. The write path then loads the
// region's armed word, which a backup in any process arms: one acquire
// load while no job runs (BeforeWrite). When it is armed, a write is
// counted inside the region's job (Region::Enter/Leave) and goes either
// to this process's own job (its hooks, as before) or, for a job another
// process owns, through the shared page table as one of its participants
// (TakePart: engine/shared_pages.h); a WAL-mode job's writes to either
// file take the owner's routes, rebuilt from the job's WAL tail
// (BindWalPart: the same WalImageSource). Without a region (it could not be
// attached: region_error()), a private word stands in and only this
// process's jobs exist, as before.
//
// Lock rules:
//   1. The registry mutex (file_state.cc) guards the map and every refs_.
//   2. mu_ guards reader_ and job_claimed_; never held across I/O except the
//      one-time open of the reader.
//   3. The tracking atomics are written by writers that hold the database's
//      EXCLUSIVE lock, and read at begin and end under a SHARED lock: the
//      file lock orders them; the atomics make that visible to TSan too.
#pragma once

#include <sqlite3.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cowbackup/status.h"
#include "backup/db_image.h"
#include "backup/wal_format.h"
#include "coord/armed_word.h"
#include "coord/region.h"
#include "engine/shared_pages.h"
#include "engine/mutex.h"
#include "engine/source.h"
#include "engine/write_hook.h"
#include "vfs/wal_tracker.h"

namespace cowbackup::sqlite {

// Facts read from the database header (the first 100 bytes).
// DbHeader and ParseDbHeader: backup/db_image.h.

class FileState {
 public:
  // Finds or creates the state of (dev, ino) and takes a reference.
  static FileState* Acquire(dev_t dev, ino_t ino, const std::string& path, sqlite3_vfs* parent);
  // Drops a reference; the last one closes the reader and frees the state.
  static void Release(FileState* state);
  // True if (dev, ino) is a database file open in this process through the shim.
  static bool IsOpen(dev_t dev, ino_t ino);
  // The running jobs other processes own on databases open in this process.
  struct ForeignJob {
    std::string database;
    coord::Job job;
    coord::JobProgress progress;
  };
  static std::vector<ForeignJob> ForeignJobs();

  FileState(const FileState&) = delete;
  FileState& operator=(const FileState&) = delete;

  const std::string& path() const { return path_; }
  dev_t dev() const { return dev_; }
  ino_t ino() const { return ino_; }

  // The shim, before every write to the database or its -wal (`wal`): one
  // acquire load while no job is armed in any process.
  void BeforeWrite(bool wal, uint64_t offset, uint64_t len) noexcept {
    if (ArmedWord() != 0) [[unlikely]] SlowWrite(wal, offset, len, /*truncate=*/false);
  }
  void BeforeTruncate(bool wal, uint64_t new_size) noexcept {
    if (ArmedWord() != 0) [[unlikely]] SlowWrite(wal, new_size, 0, /*truncate=*/true);
  }
  // The shim, after a write of page 1 of the main file landed: the change
  // counter it carries, checked while a job of any process tracks commits.
  void AfterPage1Write(const uint8_t* data, size_t len) noexcept {
    if (tracking() || ArmedWord() != 0) [[unlikely]] NotePage1Write(data, len);
  }

  // This process's jobs arm these (their routes); BeforeWrite reaches them.
  WriteHook hook;

  // The coordination region (null if it could not be attached; then
  // region_error() says why) and this process's job in it.
  coord::Region* region() const { return region_.get(); }
  const Status& region_error() const { return region_error_; }
  // At this process's T0, after its hooks are armed: arms the job for the
  // write path, in the region with `t0` facts when there is one (then its
  // word is `word`, from the claimed job). Disarm() after the job's hooks
  // were disarmed.
  Status Arm(uint64_t word, const std::string& t0) { return armed_.Arm(word, t0); }
  void Disarm() { armed_.Disarm(); }

  // One job at a time per file. False if one is already claimed.
  bool ClaimJob();
  void UnclaimJob();

  // The parent file object the engine reads through (opened on first use).
  Status Reader(sqlite3_file** out);
  // Reads through the reader; a short read is an error.
  Status ReadAt(uint64_t offset, uint8_t* buf, size_t len);
  Status FileSize(uint64_t* bytes);
  // A SHARED lock through the reader, retried for up to `timeout_ms`.
  // Closes the begin-time gate from the call until Unlock() (or failure).
  Status LockShared(uint32_t timeout_ms);
  void Unlock();

  // The shim, before it forwards a connection's first EXCLUSIVE request
  // of a transaction: while a backup waits for SHARED (the file comment),
  // waits for it, at most kGateMaxWaitMs. One acquire load when none waits.
  void BeforeExclusive() {
    if (shared_wanted_.load(std::memory_order_acquire) != 0) [[unlikely]] YieldToBackup(shared_wanted_);
    if (region_ != nullptr) region_->BeforeWriterLock();  // another process's backup
  }
  // The same for a connection's request for the WAL checkpoint lock, which
  // the end check takes first (LockWal): SQLite's checkpoint does not retry
  // that lock, it returns SQLITE_BUSY at once.
  void BeforeCheckpointLock() {
    if (ckpt_wanted_.load(std::memory_order_acquire) != 0) [[unlikely]] YieldToBackup(ckpt_wanted_);
    if (region_ != nullptr) region_->BeforeWriterLock();
  }
  // True while a backup wants or holds the WAL lock `slot`: a request that
  // found it busy meanwhile (it passed the gate just before it closed) waits
  // at the gate and tries again, so it never sees SQLITE_BUSY because of a
  // backup.
  bool BackupWantsWalLock(int slot) const {
    return (slot == kWalWriteLock ? shared_wanted_ : ckpt_wanted_).load(std::memory_order_acquire) != 0;
  }
  static constexpr uint32_t kGateMaxWaitMs = 250;
  // True if `<db>-journal` holds a journal nobody is writing (a crashed
  // writer's), i.e. the file is not in a committed state. Call under SHARED.
  bool HotJournal();

  // ---- WAL mode (see the file comment) ----
  WriteHook wal_hook;  // in front of every write to <db>-wal
  WalTracker wal_tracker;
  // SQLite's WAL write lock, and first the checkpoint lock if
  // `checkpoint_too`, taken exclusively through the reader's wal-index,
  // each retried for up to `timeout_ms`. The begin-time gate is closed from
  // the wait for the write lock until UnlockWal(): a long checkpoint being
  // waited out never holds this process's writers at the gate.
  Status LockWal(bool checkpoint_too, uint32_t timeout_ms);
  void UnlockWal();
  // A SHARED lock on the database, held from a WAL-mode T0 to the end of
  // the job as every WAL connection holds one, without closing the gate.
  // While it is held no process gets EXCLUSIVE, which SQLite needs to
  // delete the -wal and -shm files (a last connection's close, after a
  // checkpoint that takes no WAL lock) or to leave WAL mode: either would
  // leave the job watching a wal-index that others no longer use.
  Status HoldShared(uint32_t timeout_ms);
  void ReleaseShared();
  // The wal-index header, consistent (read again while a writer is
  // updating it). Stable while the write lock is held.
  Status ReadWalIndex(WalIndexHeader* h);
  // Under the write lock: the page number of each frame 1..max_frame.
  Status ReadWalFramePages(uint32_t max_frame, std::vector<uint32_t>* pages);
  // From the shim, for an exclusive xShmLock of a connection's: granted,
  // and about to be released.
  void AfterShmLock(int offset, int n);
  void BeforeShmUnlock(int offset, int n);

  // ---- Commit tracking (see the file comment) ----
  // At T0, under SHARED: starts tracking from `counter`. In WAL mode
  // (`wal`: T0's wal-index facts, under the WAL write lock), page-1 writes
  // are only checked to keep the journal mode, and wal_tracker, started
  // here from `wal`, does the rest. A job shared with other processes
  // keeps the last counter in its page table (`shared`), where every
  // participant's page-1 writes move it, and, in WAL mode, the tracker's
  // marks in its WAL tail (`wal_marks`), where every participant's
  // tracker reads and moves them.
  void BeginTracking(uint32_t counter, const WalMark* wal = nullptr, SharedPages* shared = nullptr,
                     uint8_t* wal_marks = nullptr);
  void EndTracking();
  // AfterPage1Write's slow path.
  void NotePage1Write(const uint8_t* data, size_t len) noexcept;
  // True while a job tracks commits; page-1 writes are parsed only then.
  bool tracking() const { return tracking_.load(std::memory_order_acquire); }
  // OK, or the error saying a write bypassed the shim (or the journal
  // mode changed); in WAL mode, wal_tracker's too.
  Status TrackingError() const;
  // At the end, under SHARED: the file's counter against the last seen.
  Status CheckCounterAtEnd(uint32_t file_counter) const;
  // `s`, a commit-tracking failure, naming why this process has no
  // region if it could not attach one (region_error()): then the writers
  // of other processes, participants or not, all bypassed its shim.
  Status WithRegionError(const Status& s) const;

 private:
  FileState(dev_t dev, ino_t ino, std::string path, sqlite3_vfs* parent)
      : dev_(dev), ino_(ino), path_(std::move(path)), parent_(parent) {}
  ~FileState();
  void AttachRegion();
  // In a forked child (pthread_atfork, the only thread there): see
  // file_state.cc, "fork".
  void ReattachAfterFork() NO_THREAD_SAFETY_ANALYSIS;
  friend void AtForkChild();
  uint64_t ArmedWord() const noexcept { return armed_.load(); }
  void SlowWrite(bool wal, uint64_t offset, uint64_t len, bool truncate) noexcept;
  // A job of another process: this process's part in it (below).
  struct Part;
  std::shared_ptr<Part> JoinedPart(uint64_t word);
  void TakePart(const Part& part, bool wal, uint64_t offset, uint64_t len, bool truncate) noexcept;
  // The last change counter: the shared table's while a shared job runs.
  std::atomic_ref<uint32_t> LastCounter() const {
    SharedPages* shared = shared_tracking_.load(std::memory_order_acquire);
    return shared != nullptr ? shared->counter() : std::atomic_ref<uint32_t>(last_counter_);
  }
  // A participant's page-1 write, for a job of another process.
  void NotePartPage1(uint64_t word, const uint8_t* data) noexcept;
  // A WAL-mode part: T0's image and routes, from the job's WAL tail.
  Status BindWalPart(Part* part);
  // The WAL tracker the lock reports of this process's connections go to
  // (`fn(tracker)`): this process's job's, or its part's in another
  // process's WAL-mode job (joined here if need be, inside the job), whose
  // failure it records for the job's owner. Nothing while no job tracks.
  template <typename Fn>
  void WithWalTracker(Fn fn);
  // True while a connection of a participant holds SQLite's checkpoint
  // lock: this process's (ckpt_here_) or another's (the region's
  // checkpoint holder, unless its process is gone).
  bool CkptHeld();
  void SetTrackingError(const std::string& msg) noexcept;
  sqlite3_file* OpenedReader();  // reader_, once Reader() has opened it
  void CloseGate(std::atomic<uint32_t>& wanted);
  void OpenGate(std::atomic<uint32_t>& wanted);
  void CloseGate() { CloseGate(shared_wanted_); }
  void OpenGate() { OpenGate(shared_wanted_); }
  void YieldToBackup(const std::atomic<uint32_t>& wanted);
  // SHARED through the reader `f`, retried for up to `timeout_ms`.
  Status LockReaderShared(sqlite3_file* f, uint32_t timeout_ms);
  // The reader's wal-index region `region` (mapped on first use; null if
  // SQLite has not made it).
  Status WalIndexRegion(uint32_t region, const volatile void** out);
  bool ReadWalMark(WalMark* m);

  const dev_t dev_;
  const ino_t ino_;
  const std::string path_;
  sqlite3_vfs* const parent_;
  int refs_ = 0;  // GUARDED_BY(registry mutex)

  Mutex mu_;
  sqlite3_file* reader_ GUARDED_BY(mu_) = nullptr;
  sqlite3_filename reader_name_ GUARDED_BY(mu_) = nullptr;  // sqlite3_create_filename
  bool job_claimed_ GUARDED_BY(mu_) = false;
  bool locked_ = false;             // only the job holding the claim touches it
  bool held_shared_ = false;        // HoldShared's, like locked_
  bool shm_mapped_ GUARDED_BY(mu_) = false;  // the reader has a wal-index connection
  int wal_locked_ = 0;  // LockWal's: 0, 1 (write) or 2 (write and checkpoint); like locked_
  // Polls for one exclusive WAL lock until `deadline`.
  Status TakeWalLock(sqlite3_file* f, int slot, std::chrono::steady_clock::time_point deadline,
                     uint32_t timeout_ms);
  std::atomic<int> ckpt_here_{0};  // connections of this process holding the checkpoint lock

  // Backups waiting for (or holding) SHARED; written under gate_mu_.
  std::atomic<uint32_t> shared_wanted_{0};
  // Backups waiting for (or holding) the WAL checkpoint lock; the same.
  std::atomic<uint32_t> ckpt_wanted_{0};
  Mutex gate_mu_;
  CondVar gate_cv_;  // signalled when the gate opens
  int gates_closed_ GUARDED_BY(gate_mu_) = 0;          // CloseGate calls not yet opened
  bool region_closed_gate_ GUARDED_BY(gate_mu_) = false;  // this process set the region's writer gate

  std::once_flag region_once_;  // AttachRegion, on the first Acquire
  std::unique_ptr<coord::Region> region_;
  Status region_error_;
  coord::ArmedWord armed_;  // bound to region_ by AttachRegion
  Mutex part_mu_;
  std::shared_ptr<Part> part_ GUARDED_BY(part_mu_);  // the last job of another process seen

  std::atomic<bool> tracking_{false};
  alignas(4) mutable uint32_t last_counter_ = 0;  // through LastCounter() only
  std::atomic<SharedPages*> shared_tracking_{nullptr};  // BeginTracking's `shared`
  std::atomic<bool> tracking_failed_{false};
  mutable Mutex error_mu_;
  std::string tracking_error_ GUARDED_BY(error_mu_);
};

// The engine's view of a database file: pages read through the FileState's
// parent file object. One per job (the page size is the job's).
class ShimSource final : public Source {
 public:
  ShimSource(FileState* state, uint32_t page_size) : state_(state), page_size_(page_size) {}
  Status read(uint64_t offset, uint8_t* buf, size_t len) override;
  uint32_t page_size() const override { return page_size_; }
  const std::string& name() const override { return state_->path(); }

 private:
  FileState* const state_;
  const uint32_t page_size_;
};

}  // namespace cowbackup::sqlite
