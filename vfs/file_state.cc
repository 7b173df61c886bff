#include "vfs/file_state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>
#include <utility>

#include "backup/wal_image_source.h"
#include "coord/participation.h"
#include "engine/encoding.h"
#include "engine/file_source.h"
#include "engine/posix_file.h"
#include "engine/sync_point.h"

namespace cowbackup::sqlite {

namespace {

// Registry of every FileState of the process (lock rule 1).
std::mutex g_registry_mu;
std::map<std::pair<dev_t, ino_t>, FileState*>& Registry() {
  static auto* registry = new std::map<std::pair<dev_t, ino_t>, FileState*>();
  return *registry;
}

constexpr uint8_t kJournalMagic[8] = {0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7};

// Calls `attempt` (an SQLite lock call) until it returns anything but
// SQLITE_BUSY or `deadline` passes; returns its last result. Short pauses:
// with writers back to back the gaps between commits are brief, and a
// poller that sleeps long can miss them all.
template <typename Attempt>
int PollLock(std::chrono::steady_clock::time_point deadline, Attempt attempt) {
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    const int rc = attempt();
    if ((rc & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() >= deadline) return rc;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(200));
  }
}

std::string SqliteError(const char* what, int rc, const std::string& path) {
  return std::string(what) + ": " + path + ": " + sqlite3_errstr(rc) + " (" + std::to_string(rc) + ")";
}

}  // namespace

// This process's part in a job another process owns.
struct FileState::Part {
  ~Part() {
    tracker.End();
    image.reset();
    wal_file.reset();
    if (wal_fd >= 0) ::close(wal_fd);
  }
  uint64_t word = 0;  // the job's armed word, without the failed bit
  bool wal = false;   // a WAL-mode job
  uint32_t page_size = 0;
  std::unique_ptr<coord::Participation> p;  // null: could not join (the job was failed)
  std::unique_ptr<ShimSource> source;       // the main file
  // A WAL-mode job: T0's image, made from the job's WAL tail as the
  // owner's (the same routes), reading the -wal through a descriptor of
  // our own; and the tracker on the job's shared marks.
  int wal_fd = -1;
  std::unique_ptr<FileSource> wal_file;  // null if there was no -wal file (then no frame)
  std::unique_ptr<WalImageSource> image;
  WalTracker tracker;
};

// ---------------------------------------------------------------------------
// fork. A child shares the parent's open file description of each region,
// and with it the parent's slot, byte locks and job ownership: it must not
// use them. So in the child every region is forgotten (unmapped and closed,
// touching nothing shared) and attached anew: the child takes part as a
// process of its own, owns none of the parent's jobs, and joins a job that
// runs (its writes are a participant's). The registry mutex is held across
// fork so the child finds the registry whole.

void AtForkPrepare() { g_registry_mu.lock(); }
void AtForkParent() { g_registry_mu.unlock(); }
void AtForkChild() {
  for (auto& [key, st] : Registry()) st->ReattachAfterFork();
  g_registry_mu.unlock();
}

void FileState::ReattachAfterFork() {
  if (region_ != nullptr) {
    region_->ForgetAfterFork();
    // Leaked, never destroyed: a thread of the parent that is not in the
    // child may have held its mutex at the fork.
    (void)region_.release();
  }
  part_.reset();
  // The parent's backups, not the child's: no gate of theirs is the child's to open.
  shared_wanted_.store(0, std::memory_order_relaxed);
  ckpt_wanted_.store(0, std::memory_order_relaxed);
  gates_closed_ = 0;
  region_closed_gate_ = false;
  AttachRegion();
}

// ---------------------------------------------------------------------------
// Registry

FileState* FileState::Acquire(dev_t dev, ino_t ino, const std::string& path, sqlite3_vfs* parent) {
  static std::once_flag fork_handlers;
  std::call_once(fork_handlers, [] { ::pthread_atfork(AtForkPrepare, AtForkParent, AtForkChild); });
  FileState* state;
  {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    FileState*& slot = Registry()[{dev, ino}];
    if (slot == nullptr) slot = new FileState(dev, ino, path, parent);
    slot->refs_++;
    state = slot;
  }
  // Every caller waits for the one attach: no write through this state may
  // happen before its region is known (a participant's write must never
  // pass as a non-participant's).
  std::call_once(state->region_once_, [state] { state->AttachRegion(); });
  return state;
}

void FileState::AttachRegion() {
  armed_.Bind(nullptr);  // a private word until (and unless) the region is attached
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_) {
    region_error_ = Status::NotFound("no coordination region: the database's name no longer leads to it",
                                     path_);
    return;
  }
  region_error_ = coord::Region::Attach(coord::RegionPathForSqlite(path_), st, coord::AttachOptions(), &region_);
  armed_.Bind(region_.get());
  hook.commits.ShareHistory(region_ != nullptr ? region_->commit_history() : nullptr);
}

bool FileState::IsOpen(dev_t dev, ino_t ino) {
  std::lock_guard<std::mutex> lock(g_registry_mu);
  return Registry().count({dev, ino}) != 0;
}

std::vector<FileState::ForeignJob> FileState::ForeignJobs() {
  std::vector<FileState*> states;
  {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    for (auto& [key, st] : Registry()) {
      st->refs_++;
      states.push_back(st);
    }
  }
  // The region calls wait for its meta lock: not under the registry mutex.
  std::vector<ForeignJob> out;
  for (FileState* st : states) {
    coord::Job job;
    if (st->region_ != nullptr && st->region_->ReadJob(&job).ok() && job.state == coord::JobState::kRunning &&
        !st->region_->owns_job()) {
      ForeignJob f{st->path_, job, {}};
      (void)st->region_->ReadProgress(job, &f.progress);
      out.push_back(std::move(f));
    }
    Release(st);
  }
  return out;
}

void FileState::Release(FileState* state) {
  {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    if (--state->refs_ > 0) return;
    Registry().erase({state->dev_, state->ino_});
  }
  delete state;
}

FileState::~FileState() {
  if (reader_ != nullptr) {
    if (reader_->pMethods != nullptr) {
      if (shm_mapped_) reader_->pMethods->xShmUnmap(reader_, 0);
      if (locked_ || held_shared_) reader_->pMethods->xUnlock(reader_, SQLITE_LOCK_NONE);
      reader_->pMethods->xClose(reader_);
    }
    sqlite3_free(reader_);
  }
  sqlite3_free_filename(reader_name_);
}

bool FileState::ClaimJob() {
  MutexLock lock(&mu_);
  if (job_claimed_) return false;
  job_claimed_ = true;
  return true;
}

void FileState::UnclaimJob() {
  MutexLock lock(&mu_);
  job_claimed_ = false;
}

// ---------------------------------------------------------------------------
// The reader

Status FileState::Reader(sqlite3_file** out) {
  MutexLock lock(&mu_);
  if (reader_ == nullptr) {
    // A name made by sqlite3_create_filename, as xOpen expects of a main
    // database (the parent may look for URI parameters after it).
    reader_name_ = sqlite3_create_filename(path_.c_str(), "", "", 0, nullptr);
    auto* f = static_cast<sqlite3_file*>(sqlite3_malloc(parent_->szOsFile));
    if (reader_name_ == nullptr || f == nullptr) {
      sqlite3_free(f);
      return Status::FromErrno("open reader", path_, ENOMEM);
    }
    memset(f, 0, size_t(parent_->szOsFile));
    int out_flags = 0;
    const int rc = parent_->xOpen(parent_, reader_name_, f,
                                  SQLITE_OPEN_READONLY | SQLITE_OPEN_MAIN_DB, &out_flags);
    if (rc != SQLITE_OK) {
      if (f->pMethods != nullptr) f->pMethods->xClose(f);
      sqlite3_free(f);
      return Status::FromErrno(SqliteError("open the database for reading", rc, path_), "", EIO);
    }
    reader_ = f;
  }
  *out = reader_;
  return Status::OK();
}

Status FileState::ReadAt(uint64_t offset, uint8_t* buf, size_t len) {
  sqlite3_file* f = nullptr;
  Status s = Reader(&f);
  if (!s.ok()) return s;
  while (len > 0) {
    const int n = int(std::min<size_t>(len, size_t(1) << 30));
    const int rc = f->pMethods->xRead(f, buf, n, sqlite3_int64(offset));
    if (rc == SQLITE_IOERR_SHORT_READ) {
      return Status::Incomplete("read: the database file is shorter than expected",
                                path_ + ", offset " + std::to_string(offset));
    }
    if (rc != SQLITE_OK) {
      return Status::FromErrno(SqliteError("read", rc, path_) + ", offset " + std::to_string(offset),
                               "", EIO);
    }
    buf += n;
    len -= size_t(n);
    offset += uint64_t(n);
  }
  return Status::OK();
}

Status FileState::FileSize(uint64_t* bytes) {
  sqlite3_file* f = nullptr;
  Status s = Reader(&f);
  if (!s.ok()) return s;
  sqlite3_int64 size = 0;
  const int rc = f->pMethods->xFileSize(f, &size);
  if (rc != SQLITE_OK) return Status::FromErrno(SqliteError("file size", rc, path_), "", EIO);
  *bytes = uint64_t(size);
  return Status::OK();
}

// With a region, the first backup of this process to close a gate also
// closes the region's writer gate, which holds writers of the other
// attached processes the same way (docs/REGION.md, "Writer gate"); the
// last to open one opens it.
void FileState::CloseGate(std::atomic<uint32_t>& wanted) {
  MutexLock lock(&gate_mu_);
  wanted.fetch_add(1, std::memory_order_release);
  if (region_ != nullptr && gates_closed_++ == 0) region_closed_gate_ = region_->CloseWriterGate();
}

void FileState::OpenGate(std::atomic<uint32_t>& wanted) {
  MutexLock lock(&gate_mu_);
  wanted.fetch_sub(1, std::memory_order_release);
  if (region_ != nullptr && --gates_closed_ == 0 && region_closed_gate_) {
    region_->OpenWriterGate();
    region_closed_gate_ = false;
  }
  gate_cv_.SignalAll();
}

void FileState::YieldToBackup(const std::atomic<uint32_t>& wanted) {
  COWBACKUP_SYNC_POINT("FileState::BeforeExclusive:yield");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kGateMaxWaitMs);
  MutexLock lock(&gate_mu_);
  while (wanted.load(std::memory_order_relaxed) != 0) {
    if (!gate_cv_.WaitUntil(&gate_mu_, deadline)) {
      COWBACKUP_SYNC_POINT("FileState::BeforeExclusive:gave_up");
      break;
    }
  }
}

Status FileState::LockShared(uint32_t timeout_ms) {
  sqlite3_file* f = nullptr;
  Status s = Reader(&f);
  if (!s.ok()) return s;
  CloseGate();  // opened by Unlock(), or below if no lock is had
  COWBACKUP_SYNC_POINT("FileState::LockShared:waiting");
  s = LockReaderShared(f, timeout_ms);
  if (!s.ok()) {
    OpenGate();
    return s;
  }
  locked_ = true;
  COWBACKUP_SYNC_POINT("FileState::LockShared:locked");
  return Status::OK();
}

Status FileState::LockReaderShared(sqlite3_file* f, uint32_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  const int rc = PollLock(deadline, [f] { return f->pMethods->xLock(f, SQLITE_LOCK_SHARED); });
  if (rc == SQLITE_OK) return Status::OK();
  if ((rc & 0xff) != SQLITE_BUSY) return Status::FromErrno(SqliteError("lock", rc, path_), "", EIO);
  return Status::Busy("the database stayed locked for busy_timeout_ms=" + std::to_string(timeout_ms) +
                          " (a writer holds it)",
                      path_);
}

Status FileState::HoldShared(uint32_t timeout_ms) {
  if (held_shared_) return Status::OK();
  sqlite3_file* f = nullptr;
  Status s = Reader(&f);
  if (s.ok()) s = LockReaderShared(f, timeout_ms);
  held_shared_ = s.ok();
  return s;
}

void FileState::ReleaseShared() {
  if (!held_shared_) return;
  sqlite3_file* f = OpenedReader();
  f->pMethods->xUnlock(f, SQLITE_LOCK_NONE);
  held_shared_ = false;
}

sqlite3_file* FileState::OpenedReader() {
  MutexLock lock(&mu_);
  return reader_;
}

void FileState::Unlock() {
  if (!locked_) return;
  sqlite3_file* f = OpenedReader();
  f->pMethods->xUnlock(f, SQLITE_LOCK_NONE);
  locked_ = false;
  OpenGate();
}

bool FileState::HotJournal() {
  // Only under SHARED: a journal with a valid header that nobody holds a
  // RESERVED lock for was left by a crashed writer.
  const std::string journal = path_ + "-journal";
  // A regular file only: a FIFO planted there must not block the backup.
  const int fd = OpenRegular(journal, O_RDONLY | O_NONBLOCK);
  if (fd < 0) return false;
  uint8_t magic[8] = {};
  const bool has_header = ::pread(fd, magic, sizeof magic, 0) == ssize_t(sizeof magic) &&
                          memcmp(magic, kJournalMagic, sizeof magic) == 0;
  ::close(fd);  // the journal's own descriptor: no lock of the database on it
  if (!has_header) return false;
  int reserved = 0;
  sqlite3_file* f = OpenedReader();
  f->pMethods->xCheckReservedLock(f, &reserved);
  return reserved == 0;
}

// ---------------------------------------------------------------------------
// WAL mode

Status FileState::WalIndexRegion(uint32_t region, const volatile void** out) {
  sqlite3_file* f = nullptr;
  Status s = Reader(&f);
  if (!s.ok()) return s;
  MutexLock lock(&mu_);
  if (f->pMethods->iVersion < 2 || f->pMethods->xShmMap == nullptr) {
    return Status::NotSupported("the parent VFS has no shared memory for WAL mode", path_);
  }
  void volatile* p = nullptr;
  // bExtend 0: map what SQLite made, never create or grow it.
  const int rc = f->pMethods->xShmMap(f, int(region), int(kWalIndexRegionSize), 0, &p);
  shm_mapped_ = true;  // even on failure the parent may hold a wal-index connection
  if (rc != SQLITE_OK && rc != SQLITE_READONLY) {
    return Status::FromErrno(SqliteError("map the wal-index", rc, path_ + "-shm"), "", EIO);
  }
  if (p == nullptr) {
    return Status::Busy("the wal-index (-shm) has no region " + std::to_string(region) +
                            " (no connection has read the database in WAL mode, or one uses "
                            "locking_mode=EXCLUSIVE, whose wal-index is private)",
                        path_);
  }
  *out = p;
  return Status::OK();
}

Status FileState::TakeWalLock(sqlite3_file* f, int slot, std::chrono::steady_clock::time_point deadline,
                              uint32_t timeout_ms) {
  const int rc = PollLock(deadline, [f, slot] {
    return f->pMethods->xShmLock(f, slot, 1, SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE);
  });
  if (rc == SQLITE_OK) return Status::OK();
  if ((rc & 0xff) != SQLITE_BUSY) return Status::FromErrno(SqliteError("WAL lock", rc, path_), "", EIO);
  return Status::Busy("the WAL " + std::string(slot == kWalWriteLock ? "write" : "checkpoint") +
                          " lock stayed held for busy_timeout_ms=" + std::to_string(timeout_ms),
                      path_);
}

Status FileState::LockWal(bool checkpoint_too, uint32_t timeout_ms) {
  const volatile void* shm = nullptr;
  Status s = WalIndexRegion(0, &shm);
  if (!s.ok()) return s;
  sqlite3_file* f = OpenedReader();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  if (checkpoint_too) {
    CloseGate(ckpt_wanted_);  // this process's checkpointers wait, not BUSY
    s = TakeWalLock(f, kWalCkptLock, deadline, timeout_ms);
    if (!s.ok()) {
      OpenGate(ckpt_wanted_);
      return s;
    }
  }
  CloseGate();  // opened by UnlockWal(), or below if the lock is not had
  COWBACKUP_SYNC_POINT("FileState::LockWal:waiting");
  s = TakeWalLock(f, kWalWriteLock, deadline, timeout_ms);
  if (!s.ok()) {
    if (checkpoint_too) {
      f->pMethods->xShmLock(f, kWalCkptLock, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
      OpenGate(ckpt_wanted_);
    }
    OpenGate();
    return s;
  }
  wal_locked_ = checkpoint_too ? 2 : 1;
  COWBACKUP_SYNC_POINT("FileState::LockWal:locked");
  return Status::OK();
}

void FileState::UnlockWal() {
  if (wal_locked_ == 0) return;
  sqlite3_file* f = OpenedReader();
  f->pMethods->xShmLock(f, kWalWriteLock, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
  if (wal_locked_ == 2) {
    f->pMethods->xShmLock(f, kWalCkptLock, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
    OpenGate(ckpt_wanted_);
  }
  wal_locked_ = 0;
  OpenGate();
}

Status FileState::ReadWalIndex(WalIndexHeader* h) {
  const volatile void* shm = nullptr;
  Status s = WalIndexRegion(0, &shm);
  if (!s.ok()) return s;
  uint8_t buf[kWalIndexHeaderSize];
  for (int attempt = 0;; attempt++) {
    CopyWalIndexHeader(const_cast<const void*>(shm), buf);
    s = ParseWalIndexHeader(buf, sizeof buf, path_ + "-shm", h);
    // A writer halfway through the header, or a restart that has published
    // mxFrame 0 but not yet reset nBackfill: read again.
    const bool settling = s.IsBusy() || (s.ok() && h->backfilled > h->max_frame);
    if (!settling || attempt >= 1000) return settling ? Status::Busy("the wal-index header kept changing", path_) : s;
    std::this_thread::yield();
  }
}

Status FileState::ReadWalFramePages(uint32_t max_frame, std::vector<uint32_t>* pages) {
  pages->assign(max_frame, 0);
  const volatile void* region = nullptr;
  uint32_t mapped = UINT32_MAX;
  for (uint32_t frame = 1; frame <= max_frame; frame++) {
    const WalIndexSlot slot = WalIndexFrameSlot(frame);
    if (slot.region != mapped) {
      Status s = WalIndexRegion(slot.region, &region);
      if (!s.ok()) return s;
      mapped = slot.region;
    }
    // Stable under the write lock; atomic loads keep the shared mapping race-free to TSan.
    const auto* word = reinterpret_cast<const std::atomic<uint32_t>*>(
        const_cast<const uint8_t*>(static_cast<const volatile uint8_t*>(region)) + slot.offset);
    (*pages)[frame - 1] = word->load(std::memory_order_relaxed);
  }
  return Status::OK();
}

bool FileState::ReadWalMark(WalMark* m) {
  WalIndexHeader h;
  if (!ReadWalIndex(&h).ok()) return false;
  *m = WalMark{h.salt1, h.salt2, h.max_frame, h.backfilled};
  return true;
}

bool FileState::CkptHeld() {
  if (ckpt_here_.load(std::memory_order_acquire) > 0) return true;
  if (region_ == nullptr) return false;
  const uint32_t w = std::atomic_ref<uint32_t>(*region_->sqlite_ckpt_holder()).load(std::memory_order_seq_cst);
  return w != 0 && !region_->PartyGone(w);
}

template <typename Fn>
void FileState::WithWalTracker(Fn fn) {
  if (wal_tracker.active()) {  // this process's job
    fn(wal_tracker);
    return;
  }
  if (region_ == nullptr) return;
  const uint64_t word = region_->load_armed();
  if (word == 0 || (word & coord::layout::kFailedBit) != 0 || armed_.own(word) || !region_->Enter(word)) return;
  std::shared_ptr<Part> part = JoinedPart(word);
  if (part != nullptr && part->p != nullptr && part->wal && part->tracker.active()) {
    fn(part->tracker);
    // Recorded for the owner, who reports it (its word now says failed).
    if (part->tracker.failed()) part->p->fail(Status::Corruption(part->tracker.error().message(), path_));
  }
  region_->Leave();
}

void FileState::AfterShmLock(int offset, int n) {
  const bool checkpoint = offset == kWalCkptLock && n == 1;
  if (checkpoint) {
    ckpt_here_.fetch_add(1, std::memory_order_acq_rel);
    // Before nBackfill can move: any participant's write lock sees it held.
    if (region_ != nullptr) {
      std::atomic_ref<uint32_t>(*region_->sqlite_ckpt_holder()).store(region_->BusyWord(false), std::memory_order_seq_cst);
    }
  }
  if (offset != kWalWriteLock && !checkpoint) return;
  WithWalTracker([&](WalTracker& t) {
    WalMark m;
    if (!ReadWalMark(&m)) {
      t.Fail("the wal-index header could not be read during the backup");
    } else if (checkpoint) {
      t.CheckpointLocked(m);
    } else {
      // A checkpoint lock held by this connection or another participant's
      // counts too: nBackfill may move under it, and its release records
      // where it went.
      t.WriteLocked(m, CkptHeld());
    }
  });
}

void FileState::BeforeShmUnlock(int offset, int n) {
  const bool checkpoint = offset == kWalCkptLock && n == 1;
  if (offset == kWalWriteLock || checkpoint) {
    WithWalTracker([&](WalTracker& t) {
      WalMark m;
      if (!ReadWalMark(&m)) {
        t.Fail("the wal-index header could not be read during the backup");
      } else if (checkpoint) {
        t.CheckpointUnlocking(m);
      } else {
        t.WriteUnlocking(m);
      }
    });
  }
  if (checkpoint) {
    // After its mark is recorded: a write lock that sees it clear sees the mark.
    if (region_ != nullptr) {
      uint32_t mine = region_->BusyWord(false);
      std::atomic_ref<uint32_t>(*region_->sqlite_ckpt_holder())
          .compare_exchange_strong(mine, 0, std::memory_order_seq_cst);
    }
    ckpt_here_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

// ---------------------------------------------------------------------------
// Commit tracking

void FileState::BeginTracking(uint32_t counter, const WalMark* wal, SharedPages* shared, uint8_t* wal_marks) {
  {
    MutexLock lock(&error_mu_);
    tracking_error_.clear();
  }
  tracking_failed_.store(false, std::memory_order_relaxed);
  shared_tracking_.store(shared, std::memory_order_release);
  LastCounter().store(counter, std::memory_order_relaxed);
  if (wal != nullptr) wal_tracker.Begin(*wal, wal_marks);
  tracking_.store(true, std::memory_order_release);
}

void FileState::EndTracking() {
  tracking_.store(false, std::memory_order_release);
  // The job's page table goes with its part; a write still counted into
  // the job (Enter) holds what it loaded, and the area stays mapped until
  // it leaves (ArmedWord::Disarm).
  shared_tracking_.store(nullptr, std::memory_order_release);
  wal_tracker.End();
}

void FileState::SetTrackingError(const std::string& msg) noexcept {
  try {
    MutexLock lock(&error_mu_);
    if (tracking_failed_.load(std::memory_order_relaxed)) return;
    tracking_error_ = msg;
    tracking_failed_.store(true, std::memory_order_release);
  } catch (...) {
    tracking_failed_.store(true, std::memory_order_release);
  }
}

namespace {

constexpr const char* kSwitchedToWal =
    "the database switched to WAL mode during the backup (the copy was discarded; back it up again)";

// One step of commit tracking: a page-1 write carrying counter `v` after
// `last` (the file comment). "" if consistent, else why not. Stores `v`.
std::string CounterStep(std::atomic_ref<uint32_t> last_ref, uint32_t v) {
  const uint32_t last = last_ref.load(std::memory_order_relaxed);
  last_ref.store(v, std::memory_order_relaxed);
  // Unsigned arithmetic: wraps at 2^32 like the counter itself.
  if (v == last || v == last + 1 || v == last - 1) return "";
  return "a write bypassed the cowbackup shim during the backup (file change counter went from " +
         std::to_string(last) + " to " + std::to_string(v) +
         " through the shim: a process not taking part in the backup, or a connection not opened "
         "through the cowbackup VFS, committed); the copy was discarded";
}

}  // namespace

void FileState::NotePage1Write(const uint8_t* data, size_t len) noexcept {
  if (len < 28) return;
  // Counted inside the region's job, as a write is: a shared job's counter
  // lives in its page table, which must not be reused under us.
  uint64_t word = region_ != nullptr ? region_->load_armed() : 0;
  if (word != 0 && !region_->Enter(word)) word = 0;
  if (tracking()) {
    const bool wal = data[18] == 2 || data[19] == 2;
    if (wal != wal_tracker.active()) {
      SetTrackingError(wal ? kSwitchedToWal
                           : "the database left WAL mode during the backup (the copy was "
                             "discarded; back it up again)");
    } else if (!wal) {  // the counter does not count WAL commits: wal_tracker does
      const std::string err = CounterStep(LastCounter(), DecodeBig32(data + 24));
      if (!err.empty()) SetTrackingError(err);
    }
  } else if (word != 0 && (word & coord::layout::kFailedBit) == 0) {
    NotePartPage1(word, data);
  }
  if (word != 0) region_->Leave();
}

Status FileState::TrackingError() const {
  if (!tracking_failed_.load(std::memory_order_acquire)) {
    Status s = wal_tracker.error();
    return s.ok() ? s : WithRegionError(Status::Corruption(s.message(), path_));
  }
  MutexLock lock(&error_mu_);
  return WithRegionError(Status::Corruption(tracking_error_, path_));
}

Status FileState::CheckCounterAtEnd(uint32_t file_counter) const {
  Status s = TrackingError();
  if (!s.ok()) return s;
  const uint32_t last = LastCounter().load(std::memory_order_relaxed);
  if (file_counter != last) {
    return WithRegionError(Status::Corruption(
        "a write bypassed the cowbackup shim during the backup (file change counter is " +
            std::to_string(file_counter) + ", the shim saw commits up to " + std::to_string(last) +
            ": a process not taking part in the backup, or a connection not opened through "
            "the cowbackup VFS, committed); the copy was discarded",
        path_));
  }
  return Status::OK();
}

Status FileState::WithRegionError(const Status& s) const {
  if (s.ok() || region_ != nullptr || region_error_.ok()) return s;
  return Status::FromCode(s.code(), s.message() +
                                        "; this process could not attach the database's coordination "
                                        "region, so processes writing through cowbackup could not take "
                                        "part in its backup: " +
                                        region_error_.message());
}

// ---------------------------------------------------------------------------
// Several processes (the file comment)


Status FileState::BindWalPart(Part* part) {
  WalIndexHeader h;
  uint64_t main_pages = 0;
  std::vector<uint32_t> frame_pages;
  coord::Participation& p = *part->p;
  Status s = DecodeWalTail(p.tail(), p.tail_size(), part->page_size, region_->path(), &h, &main_pages, &frame_pages);
  if (!s.ok()) return s;
  const std::string wal_path = path_ + "-wal";
  part->wal_fd = OpenRegular(wal_path, O_RDONLY | O_CLOEXEC);
  if (part->wal_fd >= 0) {
    part->wal_file = std::make_unique<FileSource>(part->wal_fd, wal_path, part->page_size);
  } else if (errno != ENOENT || h.max_frame > 0) {
    return Status::FromErrno("open the WAL", wal_path, errno);
  }
  s = WalImageSource::Make(part->source.get(), main_pages, part->wal_file.get(), WalScanFromIndex(h, frame_pages),
                           &part->image);
  if (!s.ok()) return s;
  if (part->image->page_count() != p.pages().pages()) {
    return Status::Corruption("the WAL-mode job's tail gives an image of " + std::to_string(part->image->page_count()) +
                                  " pages, its page table " + std::to_string(p.pages().pages()),
                              region_->path());
  }
  part->tracker.Join(p.tail());
  return Status::OK();
}

void FileState::SlowWrite(bool wal, uint64_t offset, uint64_t len, bool truncate) noexcept {
  WriteHook& h = wal ? wal_hook : hook;
  if (region_ == nullptr) {  // only this process's jobs
    truncate ? h.before_truncate(offset) : h.before_write(offset, len);
    return;
  }
  const uint64_t word = region_->load_armed();
  if (word == 0 || !region_->Enter(word)) return;  // the job ended meanwhile
  if (armed_.own(word)) {
    truncate ? h.before_truncate(offset) : h.before_write(offset, len);
  } else if ((word & coord::layout::kFailedBit) == 0) {
    if (std::shared_ptr<Part> part = JoinedPart(word)) TakePart(*part, wal, offset, len, truncate);
  }
  region_->Leave();
}

// Inside the job (Region::Enter), so it cannot end and be replaced while
// we join it: the section read here is the job whose word we saw.
std::shared_ptr<FileState::Part> FileState::JoinedPart(uint64_t word) {
  try {
    MutexLock lock(&part_mu_);
    if (part_ != nullptr && part_->word == word) return part_;
    coord::Job job;
    if (!region_->ReadRunningJob(word, &job)) return nullptr;  // this write goes ahead, the next looks again
    Status s;
    auto part = std::make_shared<Part>();
    part->word = word;
    char mode[16] = {};
    unsigned page_size = 0;
    if (sscanf(job.t0.c_str(), "sqlite1 %15s %u", mode, &page_size) != 2 || page_size < 512 ||
        page_size > 65536 || (page_size & (page_size - 1)) != 0) {
      s = Status::Corruption("the job's T0 facts are not a SQLite job's: \"" + job.t0.substr(0, 40) + "\"",
                             region_->path());
    } else {
      part->wal = strcmp(mode, "wal") == 0;
      part->page_size = page_size;
      s = coord::Participation::Join(region_.get(), word, job, page_size, &part->p);
    }
    if (s.ok()) {
      part->source = std::make_unique<ShimSource>(this, page_size);
      if (part->wal && !(s = BindWalPart(part.get())).ok()) {
        part->p->fail(s);  // recorded for the owner
        part->p.reset();
      }
    }
    if (!s.ok()) {
      // A job we cannot honour must not publish a copy that lacks our writes.
      region_->FailArmedJob(word);
    }
    part_ = part;
    return part;
  } catch (...) {
    region_->FailArmedJob(word);  // out of memory: fail it rather than miss a write
    return nullptr;
  }
}

void FileState::TakePart(const Part& part, bool wal, uint64_t offset, uint64_t len,
                         bool truncate) noexcept {
  if (part.p == nullptr) return;
  if (!part.wal && wal) {  // a -wal written during a rollback-mode job
    part.p->fail(Status::Corruption(kSwitchedToWal, path_));
    return;
  }
  if (!part.p->job_current()) return;
  SharedPages& pages = part.p->pages();
  if (part.wal) {
    // The owner's routes (WalImageSource::Route): the image pages the
    // write could change, preserved through the shared table first.
    const uint64_t n = truncate ? UINT64_MAX - offset : len;
    part.image->PagesChangedBy(wal ? WalImageSource::File::kWal : WalImageSource::File::kMain, offset, n,
                               [&](PageRange r) {
                                 (void)pages.WriteThrough(r, part.image.get(), part.p->volume(), part.page_size);
                               });
    return;
  }
  const PageRange range = truncate ? PageRange{offset / part.page_size, pages.pages()}
                                   : PageRange::FromBytes(offset, len, part.page_size);
  (void)pages.WriteThrough(range, part.source.get(), part.p->volume(), part.page_size);  // a failure failed the job
}

void FileState::NotePartPage1(uint64_t word, const uint8_t* data) noexcept {
  std::shared_ptr<Part> part = JoinedPart(word);
  if (part == nullptr || part->p == nullptr) return;
  std::string err;
  try {
    const bool wal = data[18] == 2 || data[19] == 2;
    if (part->wal) {  // the counter does not count WAL commits: the tracker does
      if (!wal) err = "the database left WAL mode during the backup (the copy was discarded; back it up again)";
    } else {
      err = wal ? std::string(kSwitchedToWal) : CounterStep(part->p->pages().counter(), DecodeBig32(data + 24));
    }
  } catch (...) {
    err = "out of memory";
  }
  if (!err.empty()) part->p->fail(Status::Corruption(err, path_));
}

Status ShimSource::read(uint64_t offset, uint8_t* buf, size_t len) {
  // This process's own job stops early once its copy is known to be
  // invalid. Its error stays until its next job begins: a read for another
  // process's job (a participant preserving a page) must not see it, or a
  // job this process ran and lost would fail the next one too.
  if (state_->tracking()) {
    Status s = state_->TrackingError();
    if (!s.ok()) return s;
  }
  return state_->ReadAt(offset, buf, len);
}

}  // namespace cowbackup::sqlite
