// The embedded API (include/cowbackup/sqlite.hpp): begin-time instant, job
// registry, background jobs. The SQL functions (sql/) are a thin layer over
// this file.
//
// Begin time (issue 3, requirement 2), in BeginJob():
//   1. refuse what cannot be copied correctly: temp/in-memory schemas, files
//      not opened through the shim, a destination that is the database or
//      its journal/WAL/shm, a second job on the same file;
//   2. read the header without a lock (page size, journal mode), create the
//      outputs;
//   3. rollback mode (TakeT0): SHARED lock through the parent VFS (retried
//      up to busy_timeout_ms): no writer is inside a commit, so the file is
//      committed; re-read the header (page count, change counter), start
//      commit tracking, arm the job (T0), unlock.
//      WAL mode (TakeWalT0): the WAL write lock through the parent VFS's
//      xShmLock (retried the same way): no commit is halfway, and the
//      wal-index says exactly which frames are committed (mxFrame); read
//      them from it, open our own descriptor of the -wal file, make the
//      image source (backup/wal_image_source.h), start tracking, arm the
//      job's two hooks (main file and -wal, each with its route), unlock.
//   Nothing that blocks writers or checkpoints is held after that.
// End (before the destination is published, on the copier thread): the
// same lock again (WAL mode: the write and checkpoint locks), and check
// that every commit (and checkpoint) since T0 went through the shim.
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <strings.h>
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "backup/backup_job.h"
#include "backup/format.h"
#include "backup/job_runner.h"
#include "backup/text.h"
#include "backup/wal_image_source.h"
#include "coord/participation.h"
#include "cowbackup/sqlite.hpp"
#include "engine/mutex.h"
#include "engine/file_source.h"
#include "engine/posix_file.h"
#include "engine/sync_point.h"
#include "vfs/file_state.h"
#include "vfs/shim_vfs.h"

namespace cowbackup::sqlite {

namespace {

constexpr size_t kMaxFinishedJobs = 100;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The registry of jobs (below).
Mutex g_jobs_mu;

// One backup of the process. Created by BeginJob, kept in the registry.
// Its life after T0 (thread, wait, cancel, outcome) is its JobRunner's;
// state, claimed and source are the copier thread's from then on, until
// ReleaseFile() (the runner's on_finished) lets them go.
struct Job {
  uint64_t id = 0;
  std::string schema, database, destination;
  FileState* state = nullptr;  // a reference, released in the destructor
  bool claimed = false;        // holds state's one-job claim
  std::unique_ptr<Source> source;  // a ShimSource, or a WalJobSource in WAL mode
  std::unique_ptr<BackupJob> backup;  // until T0, then the runner's
  // The region's side (several processes): the claimed job's word, and
  // this owner's part in it; null without a region.
  uint64_t word = 0;
  std::unique_ptr<coord::Participation> part;
  std::string dead_volume;  // a dead job's, found at the claim: removed after T0
  int64_t started_ms = 0;
  std::unique_ptr<JobRunner> runner;  // set once T0 is taken

  int64_t finished_ms GUARDED_BY(g_jobs_mu) = 0;  // set before runner is done

  ~Job() {
    runner.reset();  // waits for the copier thread; destroys the BackupJob
    backup.reset();
    source.reset();
    if (state != nullptr) {
      if (claimed) {
        state->EndTracking();
        state->Disarm();
        state->ReleaseShared();
        state->UnclaimJob();
      }
      FileState::Release(state);
    }
    part.reset();
  }
};

uint64_t g_next_id GUARDED_BY(g_jobs_mu) = 1;
std::map<uint64_t, std::shared_ptr<Job>>& Jobs() REQUIRES(g_jobs_mu) {
  static auto* jobs = new std::map<uint64_t, std::shared_ptr<Job>>();
  return *jobs;
}

// The destination may not be the database itself, nor any database open in
// this process through the shim (another schema or connection: the
// per-inode registry knows), whatever path names it. What no destination
// may be (a symlink, a device, a name SQLite would take for a journal, a
// database open elsewhere) is CheckOutputPath's, run by AtomicFile.
Status CheckDestination(const std::string& dest, const FileState& st) {
  if (dest.empty()) return Status::InvalidArgument("destination path is empty");
  if (dest == "-") return Status::InvalidArgument("destination \"-\" (standard output) is not supported here");
  struct stat sb;
  if (::stat(dest.c_str(), &sb) != 0) return Status::OK();
  if (sb.st_dev == st.dev() && sb.st_ino == st.ino()) {
    return Status::InvalidArgument("destination is the database file itself", dest);
  }
  if (FileState::IsOpen(sb.st_dev, sb.st_ino)) {
    return Status::InvalidArgument("destination is a database open in this process; cowbackup "
                                   "never replaces a live database",
                                   dest);
  }
  return Status::OK();
}

Status ReadHeader(FileState* st, uint64_t* size, DbHeader* h) {
  Status s = st->FileSize(size);
  if (!s.ok()) return s;
  *h = DbHeader{};
  if (*size == 0) return Status::OK();  // an empty database: no header yet
  uint8_t buf[100];
  if (*size < sizeof buf) return Status::Corruption("not a SQLite database (file too short)", st->path());
  s = st->ReadAt(0, buf, sizeof buf);
  if (s.ok()) s = ParseDbHeader(buf, sizeof buf, st->path(), h);
  return s;
}

// The source of a WAL-mode job: the database as a full checkpoint at T0
// would leave it (backup/wal_image_source.h). Made before T0, bound at T0.
class WalJobSource final : public Source {
 public:
  WalJobSource(FileState* st, uint32_t page_size) : main_(st, page_size) {}
  ~WalJobSource() override {
    if (wal_fd_ >= 0) ::close(wal_fd_);
  }
  Status read(uint64_t offset, uint8_t* buf, size_t len) override {
    // A participant that failed the job meanwhile (its tracker found a
    // write that bypassed the shim, say): its reason, not the overwritten
    // frame that write may have caused, is the one to report.
    if (part_ != nullptr) {
      Status s = part_->Lost();
      if (!s.ok()) return s;
    }
    return image_->read(offset, buf, len);
  }
  // At T0, with a region: this owner's part in the region's job.
  void Watch(coord::Participation* part) { part_ = part; }
  uint32_t page_size() const override { return main_.page_size(); }
  const std::string& name() const override { return main_.name(); }

  // Under the WAL write lock: T0's committed frames, from the wal-index
  // header `h`, and the main file's size then. The -wal file is read
  // through a descriptor of our own from now on, so neither SQLite
  // deleting the file nor a new one in its place changes what is read.
  Status Bind(FileState* st, const WalIndexHeader& h, uint64_t main_pages) {
    const std::string wal_path = st->path() + "-wal";
    wal_fd_ = OpenRegular(wal_path, O_RDONLY | O_CLOEXEC);
    if (wal_fd_ >= 0) {
      wal_ = std::make_unique<FileSource>(wal_fd_, wal_path, page_size());
    } else if (errno != ENOENT || h.max_frame > 0) {
      return Status::FromErrno("open the WAL", wal_path, errno);
    }
    Status s = st->ReadWalFramePages(h.max_frame, &frame_pages_);
    if (!s.ok()) return s;
    header_ = h;
    main_pages_ = main_pages;
    return WalImageSource::Make(&main_, main_pages, wal_.get(), WalScanFromIndex(h, frame_pages_),
                                &image_);
  }
  WalImageSource* image() { return image_.get(); }
  // Bind()'s facts, for the job's WAL tail (participants rebuild the image).
  void EncodeTail(uint8_t* tail) const { EncodeWalTail(tail, header_, main_pages_, frame_pages_); }
  uint64_t TailSize() const { return coord::layout::WalTailSize(header_.max_frame); }

 private:
  ShimSource main_;
  int wal_fd_ = -1;
  std::unique_ptr<FileSource> wal_;  // null if there was no -wal file (then no frame)
  std::unique_ptr<WalImageSource> image_;
  WalIndexHeader header_;
  uint64_t main_pages_ = 0;
  std::vector<uint32_t> frame_pages_;  // frame i+1's page at [i]
  coord::Participation* part_ = nullptr;
};

// Before a WAL-mode T0: a read transaction on the backing-up connection
// makes sure the wal-index exists and is recovered (SQLite runs WAL
// recovery if a writer crashed), and leaves the connection as every WAL
// connection is, holding a SHARED lock on the database file, which keeps
// the -wal file from being deleted and the journal mode from changing.
Status OpenWal(sqlite3* db, const std::string& schema) {
  char* sql = sqlite3_mprintf("PRAGMA \"%w\".schema_version", schema.c_str());
  if (sql == nullptr) return Status::FromErrno("prepare", schema, ENOMEM);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  sqlite3_free(sql);
  if (rc == SQLITE_OK) return Status::OK();
  std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return (rc & 0xff) == SQLITE_BUSY ? Status::Busy("begin-time read: " + msg, schema)
                                    : Status::FromErrno("begin-time read: " + msg, schema, EIO);
}

// Runs on the copier thread before the destination is published. The file's
// counter and the shim's must be compared under the same SHARED lock: once
// it is released, writers commit again and the shim's counter moves on
// (load_test under TSan caught the comparison made after the unlock).
Status EndCheck(FileState* st, coord::Participation* part, uint32_t timeout_ms) {
  Status s = st->TrackingError();
  if (!s.ok()) return s;
  s = st->LockShared(timeout_ms);
  if (!s.ok()) return Status::Busy("end-of-backup check: " + s.ToString());
  // Under SHARED no commit is halfway: a participant that found a commit
  // it did not make has failed the job by now.
  if (part != nullptr && !(s = part->Lost()).ok()) {
    st->Unlock();
    return s;
  }
  uint64_t size = 0;
  DbHeader h;
  s = ReadHeader(st, &size, &h);
  COWBACKUP_SYNC_POINT("sqlite::EndCheck:before_compare");
  if (s.ok() && h.wal()) {
    s = Status::Corruption("the database switched to WAL mode during the backup (the copy was "
                           "discarded; back it up again)",
                           st->path());
  }
  if (s.ok()) s = st->CheckCounterAtEnd(h.change_counter);
  st->Unlock();
  return s;
}

// The same in WAL mode, under both WAL locks: no commit, restart or
// checkpoint is halfway, so the wal-index and nBackfill are final
// (vfs/wal_tracker.h).
Status EndCheckWal(FileState* st, coord::Participation* part, uint32_t timeout_ms) {
  Status s = st->TrackingError();
  if (!s.ok()) return s;
  s = st->LockWal(/*checkpoint_too=*/true, timeout_ms);
  if (!s.ok()) return Status::Busy("end-of-backup check: " + s.ToString());
  // Under both locks no commit or checkpoint is halfway: a process that
  // wrote has failed the job by now.
  if (part != nullptr && !(s = part->Lost()).ok()) {
    st->UnlockWal();
    return s;
  }
  WalIndexHeader wi;
  s = st->ReadWalIndex(&wi);
  COWBACKUP_SYNC_POINT("sqlite::EndCheckWal:before_compare");
  if (s.ok()) s = st->wal_tracker.CheckAtEnd({wi.salt1, wi.salt2, wi.max_frame, wi.backfilled});
  uint64_t size = 0;
  DbHeader h;
  if (s.ok()) s = ReadHeader(st, &size, &h);
  if (s.ok() && size > 0 && !h.wal()) {
    // Another process switched it (ours would have shown in a page-1 write).
    s = Status::Corruption("the database left WAL mode during the backup (the copy was "
                           "discarded; back it up again)");
  }
  st->UnlockWal();
  // The tracker's findings name the database; an I/O error (reading the
  // wal-index or the header) stays one, as in EndCheck.
  return s.IsCorruption() ? Status::Corruption(s.message(), st->path()) : s;
}

// `wal`: T0's wal-index header in WAL mode, else null.
std::string Metadata(const std::string& path, const std::string& schema, const DbHeader& h,
                     uint64_t pages, const WalIndexHeader* wal) {
  using format::MetaLine;
  std::string m = MetaLine("source_path", path) + MetaLine("sqlite_schema", schema) +
                  MetaLine("sqlite_change_counter", std::to_string(h.change_counter)) +
                  MetaLine("sqlite_page_count", std::to_string(pages)) +
                  MetaLine("sqlite_schema_cookie", std::to_string(h.schema_cookie)) +
                  MetaLine("sqlite_journal_mode", wal != nullptr ? "wal" : "rollback");
  if (wal != nullptr) {
    m += MetaLine("sqlite_wal_max_frame", std::to_string(wal->max_frame)) +
         MetaLine("sqlite_wal_salts", std::to_string(wal->salt1) + "/" + std::to_string(wal->salt2));
  }
  return m + MetaLine("sqlite_version", sqlite3_libversion());
}

// Releases the begin-time lock when the T0 function returns, however it
// returns, and records how long it was held (Summary::begin_lock_us).
class BeginLockHold {
 public:
  BeginLockHold(Job* job, void (FileState::*unlock)()) : job_(job), unlock_(unlock) {}
  BeginLockHold(const BeginLockHold&) = delete;
  BeginLockHold& operator=(const BeginLockHold&) = delete;
  ~BeginLockHold() {
    (job_->state->*unlock_)();
    job_->backup->NoteBeginLock(std::chrono::steady_clock::now() - locked_);
  }

 private:
  Job* const job_;
  void (FileState::*const unlock_)();
  const std::chrono::steady_clock::time_point locked_ = std::chrono::steady_clock::now();
};

// Under the begin-time lock, with a region: claims the database's one job
// for this process (Busy while a backup of another process runs) and makes
// the page table every process's writers share. A WAL-mode job's table
// has a tail of `tail_bytes` (the caller fills it: docs/REGION.md, "SQLite
// WAL tail"), from which the other processes route their writes as this
// one's hooks do and track commits and checkpoints on shared marks.
Status ClaimInRegion(Job* job, uint64_t pages, uint64_t tail_bytes = 0) {
  coord::Region* region = job->state->region();
  if (region == nullptr) return Status::OK();
  Status s = coord::Participation::Claim(region, job->backup->volume_path(), pages, &job->part,
                                        &job->dead_volume, tail_bytes);
  if (!s.ok()) return s;
  job->word = job->part->seen();
  job->backup->Share(&job->part->pages());
  return Status::OK();
}

// The region's T0 facts of a SQLite job, which a participant reads before
// it takes part (FileState::JoinedPart).
std::string T0Facts(bool wal, uint32_t page_size) {
  return std::string("sqlite1 ") + (wal ? "wal " : "rollback ") + std::to_string(page_size);
}

// Step 3 of the file comment: the begin-time instant itself.
Status TakeT0(Job* job, const BackupOptions& options, bool* retry) {
  FileState* st = job->state;
  *retry = false;
  Status s = st->LockShared(options.busy_timeout_ms);
  if (!s.ok()) return Status::Busy("begin-time lock: " + s.ToString());
  BeginLockHold hold(job, &FileState::Unlock);
  if (st->HotJournal()) {
    return Status::Busy("the database has a hot journal (a writer crashed mid-transaction); open "
                        "it with SQLite and read from it once to roll it back, then retry",
                        st->path());
  }
  uint64_t size = 0;
  DbHeader h;
  s = ReadHeader(st, &size, &h);
  if (!s.ok()) return s;
  if (h.wal()) {
    *retry = true;  // switched to WAL mode since we looked
    return Status::Busy("the database switched to WAL mode while starting", st->path());
  }
  const uint32_t page_size = job->source->page_size();
  if (size > 0 && h.page_size != page_size) {
    *retry = true;  // VACUUM changed the page size since we looked
    return Status::Busy("page size changed while starting", st->path());
  }
  if (size % page_size != 0) {
    return Status::Corruption("database file size " + std::to_string(size) +
                                  " is not a multiple of its page size " + std::to_string(page_size),
                              st->path());
  }
  const uint64_t pages = size / page_size;
  s = ClaimInRegion(job, pages);
  if (!s.ok()) return s;
  st->BeginTracking(h.change_counter, nullptr, job->part ? &job->part->pages() : nullptr);
  s = job->backup->Begin(pages, Metadata(st->path(), job->schema, h, pages, nullptr), &st->hook);
  if (s.ok()) s = st->Arm(job->word, T0Facts(false, page_size));
  if (!s.ok()) st->EndTracking();
  return s;
}

// Step 3 in WAL mode. The write lock is held from LockWal to the end of
// this function: reading the header and the frames' page numbers from
// shared memory, one open and one fstat, a 100-byte read, and arming.
Status TakeWalT0(Job* job, const BackupOptions& options, bool* retry) {
  FileState* st = job->state;
  auto* source = static_cast<WalJobSource*>(job->source.get());
  *retry = false;
  // Held to the end of the job (FileState::HoldShared), taken first as
  // SQLite's connections take it before any WAL lock.
  Status s = st->HoldShared(options.busy_timeout_ms);
  if (s.ok()) s = st->LockWal(/*checkpoint_too=*/false, options.busy_timeout_ms);
  if (!s.ok()) return Status::Busy("begin-time lock: " + s.ToString());
  BeginLockHold hold(job, &FileState::UnlockWal);
  WalIndexHeader wi;
  s = st->ReadWalIndex(&wi);
  if (!s.ok()) return s;
  uint64_t size = 0;
  s = st->FileSize(&size);
  if (!s.ok()) return s;
  const uint32_t page_size = source->page_size();
  if (size % page_size != 0) {
    return Status::Corruption("database file size " + std::to_string(size) +
                                  " is not a multiple of its page size " + std::to_string(page_size),
                              st->path());
  }
  s = source->Bind(st, wi, size / page_size);
  if (!s.ok()) return s;
  const uint64_t pages = source->image()->page_count();
  DbHeader h;
  if (pages > 0) {
    uint8_t buf[100];
    s = source->read(0, buf, sizeof buf);
    if (s.ok()) s = ParseDbHeader(buf, sizeof buf, st->path(), &h);
    if (!s.ok()) return s;
    if (!h.wal()) {
      *retry = true;  // a commit in the WAL left WAL mode since we looked
      return Status::Busy("the database left WAL mode while starting", st->path());
    }
  }
  s = ClaimInRegion(job, pages, source->TailSize());
  if (!s.ok()) return s;
  source->Watch(job->part.get());
  uint8_t* tail = nullptr;
  if (job->part != nullptr) {
    tail = job->part->tail();
    source->EncodeTail(tail);  // before the word is armed: a participant reads it after
  }
  const WalMark t0{wi.salt1, wi.salt2, wi.max_frame, wi.backfilled};
  st->BeginTracking(h.change_counter, &t0, nullptr, tail);
  WalImageSource* image = source->image();
  s = job->backup->Begin(pages, Metadata(st->path(), job->schema, h, pages, &wi),
                         {{&st->hook, image->main_route()}, {&st->wal_hook, image->wal_route()}});
  if (s.ok()) s = st->Arm(job->word, T0Facts(true, page_size));
  if (!s.ok()) st->EndTracking();
  return s;
}

// Forgets the oldest finished jobs beyond kMaxFinishedJobs, counting
// `ending` (kept) among the finished. Returns them, for the caller to drop
// after unlocking (a job's destructor takes locks of its own).
std::vector<std::shared_ptr<Job>> PruneFinishedLocked(const Job* ending) REQUIRES(g_jobs_mu) {
  std::vector<std::shared_ptr<Job>> pruned;
  size_t finished = 1;
  for (auto& [id, job] : Jobs()) finished += job.get() != ending && job->runner->done() ? 1 : 0;
  for (auto it = Jobs().begin(); finished > kMaxFinishedJobs && it != Jobs().end();) {
    if (it->second.get() != ending && it->second->runner->done()) {
      pruned.push_back(std::move(it->second));
      it = Jobs().erase(it);
      finished--;
    } else {
      ++it;
    }
  }
  return pruned;
}

// The runner's on_finished, on the copier thread right after the copy
// (the BackupJob is gone): free the file for the next job before anyone
// hears this one ended (WaitBackup, cowbackup_jobs).
void ReleaseFile(Job* job) {
  job->state->EndTracking();
  job->state->Disarm();
  job->part.reset();
  job->state->ReleaseShared();
  job->state->UnclaimJob();
  job->claimed = false;
  // A finished job keeps no descriptor of the database open.
  job->source.reset();
  FileState::Release(job->state);
  job->state = nullptr;
  std::vector<std::shared_ptr<Job>> pruned;  // dropped after the unlock
  MutexLock lock(&g_jobs_mu);
  job->finished_ms = NowUnixMs();
  pruned = PruneFinishedLocked(job);
}

Status BeginJob(sqlite3* db, const std::string& schema_in, const std::string& dest,
                const BackupOptions& options, bool synchronous, std::shared_ptr<Job>* out) {
  if (db == nullptr) return Status::InvalidArgument("no database connection");
  const std::string schema = schema_in.empty() ? "main" : schema_in;
  if (strcasecmp(schema.c_str(), "temp") == 0) {
    return Status::InvalidArgument("the temp schema cannot be backed up: temporary databases are "
                                   "private to their connection");
  }
  const char* filename = sqlite3_db_filename(db, schema.c_str());
  if (filename == nullptr) return Status::NotFound("no such database schema: " + schema);
  if (*filename == '\0') {
    return Status::InvalidArgument("schema " + schema + " is an in-memory or temporary database; "
                                   "only database files can be backed up");
  }
  const int txn = sqlite3_txn_state(db, schema.c_str());
  if (txn == SQLITE_TXN_WRITE ||
      (synchronous && txn == SQLITE_TXN_READ)) {
    return Status::InvalidArgument(
        "cannot back up schema " + schema + " from inside a transaction that has " +
        (txn == SQLITE_TXN_WRITE ? "written to" : "read from") +
        " it (the backup would hold writers off for its whole run); commit first, or use "
        "cowbackup_start");
  }
  // Any other open transaction refuses too. SQLite 3.40 does not apply
  // SQLITE_DIRECTONLY to CHECK constraints: a hostile schema's CHECK could
  // otherwise back up another (attached) schema to a path it chose, from an
  // INSERT or even PRAGMA integrity_check. Such a statement always holds a
  // transaction; an application's own SELECT cowbackup(...) holds none.
  if (sqlite3_txn_state(db, nullptr) != SQLITE_TXN_NONE) {
    return Status::InvalidArgument(
        "cowbackup must be called outside any transaction (this connection has one open on "
        "another schema); commit first");
  }
  sqlite3_file* file = nullptr;
  if (sqlite3_file_control(db, schema.c_str(), SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK) {
    file = nullptr;
  }
  FileState* found = ShimFileState(file);
  if (found == nullptr) {
    return Status::InvalidArgument(
        std::string("database ") + filename + " (schema " + schema +
        ") was not opened through the cowbackup VFS, so its writes cannot be intercepted: open it "
        "after loading the extension (or after cowbackup::sqlite::RegisterVfs()), or with "
        "vfs=cowbackup (file:...?vfs=cowbackup)");
  }
  Status s = CheckDestination(dest, *found);
  if (!s.ok()) return s;

  auto job = std::make_shared<Job>();
  job->schema = schema;
  job->database = found->path();
  job->destination = dest;
  job->started_ms = NowUnixMs();
  job->state = FileState::Acquire(found->dev(), found->ino(), found->path(), nullptr);
  if (!job->state->ClaimJob()) {
    return Status::Busy("a backup of this database is already running in this process", found->path());
  }
  job->claimed = true;

  for (int attempt = 0;; attempt++) {
    uint64_t size = 0;
    DbHeader h;
    s = ReadHeader(job->state, &size, &h);
    if (!s.ok()) return s;
    const bool wal = h.wal();
    if (wal) {
      s = OpenWal(db, schema);
      if (!s.ok()) return s;
    }
    job->backup.reset();
    const uint32_t page_size = size == 0 ? 4096 : h.page_size;
    if (wal) {
      job->source = std::make_unique<WalJobSource>(job->state, page_size);
    } else {
      job->source = std::make_unique<ShimSource>(job->state, page_size);
    }
    BackupParams params;
    params.dest = dest;
    params.options = options;
    params.kind = format::SourceKind::kSqlite;
    params.source_name = job->state->path();
    Job* raw = job.get();
    const uint32_t timeout_ms = options.busy_timeout_ms;
    params.before_publish = [raw, timeout_ms, wal] {
      return wal ? EndCheckWal(raw->state, raw->part.get(), timeout_ms)
                 : EndCheck(raw->state, raw->part.get(), timeout_ms);
    };
    s = BackupJob::Prepare(job->source.get(), params, &job->backup);
    if (!s.ok()) return s;
    bool retry = false;
    s = wal ? TakeWalT0(job.get(), options, &retry) : TakeT0(job.get(), options, &retry);
    if (!job->dead_volume.empty()) {
      RemoveDeadJobVolume(job->dead_volume);  // a dead job's, found at the claim
      job->dead_volume.clear();
    }
    if (s.ok()) break;
    job->backup->Abort(s);
    job->state->Disarm();
    job->part.reset();
    if (!retry || attempt >= 3) return s;
  }
  Job* raw = job.get();  // the runner is the job's: no reference cycle
  job->runner = std::make_unique<JobRunner>(
      std::move(job->backup), [raw](const Status&, const Summary&) { ReleaseFile(raw); });
  {
    MutexLock lock(&g_jobs_mu);
    job->id = g_next_id++;
    Jobs()[job->id] = job;
  }
  *out = std::move(job);
  return Status::OK();
}

std::shared_ptr<Job> FindJob(uint64_t id) {
  MutexLock lock(&g_jobs_mu);
  auto it = Jobs().find(id);
  return it == Jobs().end() ? nullptr : it->second;
}

JobInfo InfoLocked(const Job& job) REQUIRES(g_jobs_mu) {
  JobInfo info;
  info.id = job.id;
  info.schema = job.schema;
  info.database = job.database;
  info.destination = job.destination;
  info.summary = job.runner->summary();
  info.started_unix_ms = job.started_ms;
  info.finished_unix_ms = info.summary.state != JobState::kRunning ? job.finished_ms : 0;
  info.owner_pid = ::getpid();
  return info;
}

}  // namespace

Status RegisterVfs(bool make_default) {
  try {
    return RegisterShimVfs(make_default);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("register: ") + e.what());
  }
}

bool OpenedThroughShim(sqlite3* db, const char* schema) {
  sqlite3_file* file = nullptr;
  if (sqlite3_file_control(db, schema, SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK) return false;
  return ShimFileState(file) != nullptr;
}

Status StartBackup(sqlite3* db, const std::string& schema, const std::string& dest,
                   const BackupOptions& options, uint64_t* job_id) {
  std::shared_ptr<Job> job;
  Status s = BeginJob(db, schema, dest, options, /*synchronous=*/false, &job);
  if (!s.ok()) return s;
  *job_id = job->id;
  return job->runner->Start();  // on failure the job ended, cancelled
}

Status Backup(sqlite3* db, const std::string& schema, const std::string& dest,
              const BackupOptions& options, Summary* summary, uint64_t* job_id) {
  std::shared_ptr<Job> job;
  Status s = BeginJob(db, schema, dest, options, /*synchronous=*/true, &job);
  if (!s.ok()) return s;
  if (job_id != nullptr) *job_id = job->id;
  (void)job->runner->RunHere();
  return job->runner->Wait(summary);
}

Status WaitBackup(uint64_t job_id, Summary* summary) {
  std::shared_ptr<Job> job = FindJob(job_id);
  if (!job) return Status::NotFound("no such backup job: " + std::to_string(job_id));
  return job->runner->Wait(summary);
}

Status CancelBackup(uint64_t job_id) {
  std::shared_ptr<Job> job = FindJob(job_id);
  if (!job) return Status::NotFound("no such backup job: " + std::to_string(job_id));
  job->runner->Cancel();
  return Status::OK();
}

Status GetJob(uint64_t job_id, JobInfo* info) {
  MutexLock lock(&g_jobs_mu);
  auto it = Jobs().find(job_id);
  if (it == Jobs().end()) return Status::NotFound("no such backup job: " + std::to_string(job_id));
  *info = InfoLocked(*it->second);
  return Status::OK();
}

std::vector<JobInfo> ListJobs() {
  std::vector<JobInfo> out;
  {
    MutexLock lock(&g_jobs_mu);
    out.reserve(Jobs().size());
    for (auto& [id, job] : Jobs()) out.push_back(InfoLocked(*job));
  }
  // Not under g_jobs_mu: the region calls wait for their own locks.
  for (const FileState::ForeignJob& f : FileState::ForeignJobs()) {
    JobInfo info;
    info.id = f.job.job_id;
    info.database = f.database;
    info.summary.state = JobState::kRunning;
    info.summary.progress.pages_total = f.progress.pages;
    info.summary.progress.pages_done = f.progress.done;
    info.summary.progress.pages_preserved = f.progress.preserved;
    info.started_unix_ms = int64_t(f.job.claimed_unix_us / 1000);
    info.owner_pid = f.job.owner_pid;
    out.push_back(std::move(info));
  }
  return out;
}

std::string SummaryJson(const Summary& s, uint64_t job_id) {
  char buf[400];
  snprintf(buf, sizeof buf,
           "{\"job_id\":%llu,\"state\":\"%s\",\"pages\":%llu,\"preserved_pages\":%llu,"
           "\"bytes\":%llu,\"seconds\":%.6f,\"page_size\":%u,\"max_write_wait_us\":%llu,"
           "\"yield_ms\":%llu,\"begin_lock_us\":%llu,\"pace_min_mb\":%.3f",
           (unsigned long long)job_id, JobStateName(s.state),
           (unsigned long long)s.progress.pages_done,
           (unsigned long long)s.progress.pages_preserved,
           (unsigned long long)s.progress.bytes_written, s.seconds, s.page_size,
           (unsigned long long)s.progress.max_write_wait_us,
           (unsigned long long)s.progress.yield_ms, (unsigned long long)s.begin_lock_us,
           s.progress.pace_min_mb);
  std::string out = buf;
  if (!s.error.empty()) {
    out += ",\"error\":" + JsonQuote(s.error);  // one escaper with the CLI's --json
  }
  return out + "}";
}

}  // namespace cowbackup::sqlite
