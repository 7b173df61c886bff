// The LMDB backup API: finds T0 and drives a BackupJob (backup/backup_job.h).
//
// T0, step by step (compare mdb_env_copyfd0, which takes the writer mutex
// only while it copies the meta pages, then holds a read txn throughout):
//   1. Begin a write txn: LMDB's writer mutex (or, with MDB_NOLOCK, the
//      wrapper's) is now ours, so no commit is in flight and none starts.
//      The mutex is not fair, so the backup first closes the T0 gate
//      (env_impl.h): this process's next write txns wait for it, and so,
//      through the region's writer gate, do other processes' (bounded);
//      it waits only for the txns already past the gate.
//   2. Read the newest meta page: txnid T, last_pgno L (mdb_env_info), and
//      check that data.mdb's meta pages on disk say the same.
//   3. With a region: claim the environment's one job, its page table
//      sized for L + 1 pages (Busy if another process's backup runs).
//   4. Arm the write hook with a job over pages [0, L + 1), and the
//      region's word with the T0 facts: that is T0, for every attached
//      process (lmdb/file_hook.h), and commit tracking starts from T.
//   5. Abort the txn. Writers resume; no read txn is held during the copy.
// The end check (before the destination is published) takes the same
// lock and compares LMDB's txnid with the last commit a participant made
// (lmdb/file_hook.h, "Commit tracking"): a commit no attached process made
// fails the backup.
//
// Why pages 0..L at T0 restore to a valid env whose newest meta is T:
//   - Everything T's meta page reaches lies in pages 0..L, and their T0
//     content is what the archive holds: a page a writer changes after T0
//     (a free page reused, or the older meta page, rewritten by the next
//     commit) has its T0 pre-image preserved first.
//   - Both meta pages are pages 0 and 1: the one with T, and the older one
//     (T - 1, whose tree is also intact at T0: LMDB frees its pages only in
//     T and reuses them from T + 1 on).
//   - Pages past L are free at T0; writes there are past the T0 end of the
//     job and cost nothing.
#include <errno.h>
#include <lmdb.h>

#include <chrono>
#include <mutex>

#include "backup/backup_job.h"
#include "backup/format.h"
#include "backup/job_runner.h"
#include "coord/participation.h"
#include "engine/sync_point.h"
#include "lmdb/backup_internal.h"
#include "lmdb/env_impl.h"
#include "lmdb/env_source.h"

namespace cowbackup::lmdb {

// One backup, shared by its BackupTask and the env (which cancels it and
// waits for its end on close). Its life after T0 (thread, wait, cancel,
// outcome) is its JobRunner's.
struct BackupRun {
  Env::Impl* env = nullptr;
  std::unique_ptr<EnvSource> source;
  std::unique_ptr<BackupJob> job;  // until T0, then the runner's
  BackupResult result;  // T0 fields, set before the job runs; summary unused
  // The region's side (several processes): the claimed job's word, and
  // this owner's part in it; null without a region.
  uint64_t word = 0;
  std::unique_ptr<coord::Participation> part;
  std::string dead_volume;  // a dead job's, found at the claim: removed after T0
  bool armed = false;       // claimed at T0 (and maybe armed); Release() undoes it
  std::unique_ptr<JobRunner> runner;  // set once T0 is taken; destroyed before source

  ~BackupRun() {
    runner.reset();  // a run never started ends here, without on_finished
    Release();
  }
  // After the job ended (the runner's on_finished) or failed at T0: the
  // env's data file is free for the next job, here and in the region.
  void Release() {
    if (armed) env->file.Disarm();
    armed = false;
    part.reset();
  }

  // `result` with the job's final summary.
  Status Wait(BackupResult* out) {
    Summary summary;
    Status s = runner->Wait(&summary);
    if (out != nullptr) {
      *out = result;
      out->summary = summary;
    }
    return s;
  }
};

struct BackupTask::Impl {
  std::shared_ptr<BackupRun> run;
};

namespace {

// Why an env cannot be backed up, or OK.
Status CheckBackupable(Env::Impl* e) {
  if (e->flags & MDB_WRITEMAP) {
    return Status::NotSupported(
        "lmdb backup: the environment is open with MDB_WRITEMAP, which writes through the "
        "memory map where no write can be intercepted; open it without MDB_WRITEMAP to back it up",
        e->path);
  }
  if (e->flags & MDB_RDONLY) {
    return Status::NotSupported(
        "lmdb backup: the environment is open read-only here, and a backup needs LMDB's writer "
        "lock for its begin-time instant; back it up from a process that opens it read-write "
        "(any process writing it through cowbackup, or `cowbackup backup`)",
        e->path);
  }
  if (e->write_owner.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
    return Status::Busy(
        "lmdb backup: called from a thread that holds a write transaction of this environment "
        "(the backup needs the writer lock for its begin-time instant)",
        e->path);
  }
  // A process that has it open with MDB_WRITEMAP says so in the region
  // (coord::AttachOptions::writes_unseen): its commits would fail the
  // backup anyway, so it does not start.
  std::vector<coord::Participant> parties;
  coord::Region* region = e->file.region();
  if (region != nullptr && region->Participants(&parties).ok()) {
    for (const coord::Participant& p : parties) {
      if (!p.writes_unseen) continue;
      return Status::NotSupported(
          "lmdb backup: process " + std::to_string(p.pid) +
              " has the environment open with MDB_WRITEMAP, which writes through the memory map where "
              "no write can be intercepted; a backup cannot start while it is open without it",
          e->path);
    }
  }
  return Status::OK();
}

// The writer lock, for the begin-time instant and the end check. First the
// T0 gate closes (env_impl.h): this process's write txns that begin from
// now on wait, and with a region so do those of every attached process
// (bounded); then LMDB's writer mutex, by beginning a write txn (or, with
// MDB_NOLOCK, the wrapper's mutex). map_mu keeps set_map_size() out while
// the txn is active. The destructor releases all of it, the gate last.
class WriterLock {
 public:
  explicit WriterLock(Env::Impl* e) : e_(e) {}
  ~WriterLock() { Release(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

  // `t0`: for the begin-time instant (else the end check).
  Status Acquire(const std::string& what, bool t0) {
    e_->t0_gate.announce();
    announced_ = true;
    if (t0) {
      COWBACKUP_SYNC_POINT("lmdb::TakeT0:announced");
    } else {
      COWBACKUP_SYNC_POINT("lmdb::EndCheck:announced");
    }
    map_lock_ = std::unique_lock<std::mutex>(e_->map_mu);
    if (e_->flags & MDB_NOLOCK) nolock_ = std::unique_lock<std::mutex>(e_->nolock_writer_mu);
    GateBypass self;  // the gate this backup closed must not hold it up
    const int rc = mdb_txn_begin(e_->env, nullptr, 0, &txn_);
    if (rc != 0) {
      txn_ = nullptr;
      return FromMdb(rc, what + ": mdb_txn_begin", e_->path);
    }
    locked_ = std::chrono::steady_clock::now();
    return Status::OK();
  }
  // How long the writer mutex was held, or zero if it never was.
  std::chrono::steady_clock::duration Release() {
    std::chrono::steady_clock::duration held{};
    if (txn_ != nullptr) {
      mdb_txn_abort(txn_);  // writes nothing; releases the writer mutex
      txn_ = nullptr;
      held = std::chrono::steady_clock::now() - locked_;
    }
    if (nolock_.owns_lock()) nolock_.unlock();
    if (map_lock_.owns_lock()) map_lock_.unlock();
    if (announced_) e_->t0_gate.done();
    announced_ = false;
    return held;
  }

 private:
  Env::Impl* const e_;
  bool announced_ = false;
  std::unique_lock<std::mutex> map_lock_, nolock_;
  MDB_txn* txn_ = nullptr;
  std::chrono::steady_clock::time_point locked_;
};

// The region's T0 facts of an LMDB job, which a participant reads before
// it takes part (FileHook::JoinedPart).
std::string T0Facts(uint32_t page_size, uint64_t txnid) {
  return "lmdb1 " + std::to_string(page_size) + " " + std::to_string(txnid);
}

// Under the writer lock, with a region: claims the environment's one job
// for this process (Busy while a backup of another process runs) and makes
// the page table every process's writers share.
Status ClaimInRegion(Env::Impl* e, BackupRun* run, uint64_t pages) {
  coord::Region* region = e->file.region();
  if (region == nullptr) return Status::OK();
  if (region->owns_job()) {
    return Status::Busy("lmdb backup: a backup of this environment is already running in this process",
                        e->path);
  }
  Status s = coord::Participation::Claim(region, run->job->volume_path(), pages, &run->part, &run->dead_volume);
  if (!s.ok()) return s;
  run->word = run->part->seen();
  run->job->Share(&run->part->pages());
  return Status::OK();
}

// Steps 1-5 of the file comment. On success the job is armed, in the
// region too if there is one.
Status TakeT0(Env::Impl* e, BackupRun* run) {
  WriterLock lock(e);
  Status s = lock.Acquire("lmdb backup", /*t0=*/true);
  if (!s.ok()) return s;
  MDB_envinfo info;
  const int rc = mdb_env_info(e->env, &info);
  if (rc != 0) s = FromMdb(rc, "lmdb backup: mdb_env_info", e->path);
  MetaPage meta;
  if (s.ok()) s = ReadNewestMeta(run->source.get(), &meta);
  if (s.ok() && (meta.txnid != info.me_last_txnid || meta.last_pgno != info.me_last_pgno)) {
    char buf[256];
    snprintf(buf, sizeof buf,
             "lmdb backup: newest meta page on disk (txnid %llu, last_pgno %llu) differs from "
             "LMDB's (txnid %llu, last_pgno %llu)",
             (unsigned long long)meta.txnid, (unsigned long long)meta.last_pgno,
             (unsigned long long)info.me_last_txnid, (unsigned long long)info.me_last_pgno);
    s = Status::Corruption(buf, e->data_path);
  }
  BackupResult& r = run->result;
  if (s.ok()) {
    r.txnid = meta.txnid;
    r.last_pgno = meta.last_pgno;
    r.t0_pages = meta.last_pgno + 1;
    r.map_size = info.me_mapsize;
    r.page_size = run->source->page_size();
    s = ClaimInRegion(e, run, r.t0_pages);
    run->armed = s.ok();  // Release() finishes the claimed job, whatever happens next
  }
  if (s.ok()) {
    const std::string metadata =
        format::MetaLine("source_path", e->data_path) + format::MetaLine("lmdb_txnid", std::to_string(r.txnid)) +
        format::MetaLine("lmdb_last_pgno", std::to_string(r.last_pgno)) +
        format::MetaLine("lmdb_mapsize", std::to_string(r.map_size)) +
        format::MetaLine("lmdb_page_size", std::to_string(r.page_size)) +
        format::MetaLine("lmdb_flags", std::to_string(e->flags));
    s = run->job->Begin(r.t0_pages, metadata, &e->file.hook);
  }
  if (s.ok()) s = e->file.Arm(run->word, T0Facts(r.page_size, r.txnid), r.txnid, run->part.get());
  run->job->NoteBeginLock(lock.Release());
  return s;
}

// Runs on the copier thread before the destination is published: every
// commit since T0 was made by a process taking part (FileHook's commit
// tracking). LMDB's txnid is read under the writer lock, so no commit is
// halfway: one that wrote pages has written its meta page too.
Status EndCheck(Env::Impl* e, BackupRun* run) {
  Status s = e->file.TrackingError();
  if (!s.ok()) return s;
  WriterLock lock(e);
  s = lock.Acquire("lmdb backup: end check", /*t0=*/false);
  if (!s.ok()) return s;
  if (run->part != nullptr && !(s = run->part->Lost()).ok()) return s;
  s = e->file.TrackingError();
  if (!s.ok()) return s;
  MDB_envinfo info;
  const int rc = mdb_env_info(e->env, &info);
  if (rc != 0) return FromMdb(rc, "lmdb backup: end check: mdb_env_info", e->path);
  const uint32_t seen = e->file.LastTxnid();
  if (uint32_t(info.me_last_txnid) == seen) return Status::OK();
  const uint64_t t0 = run->result.txnid;
  const std::string why =
      e->file.region() != nullptr
          ? "a process using liblmdb directly (not through the cowbackup LMDB library), one with "
            "MDB_WRITEMAP or MDB_NOLOCK, or one that could not attach to the coordination region"
          : "this process takes no part in backups run elsewhere (" + e->file.region_error().ToString() +
                "), so every other process's commits count as foreign";
  return Status::Corruption(
      "another process committed to the environment during the backup without taking part in it "
      "(txnid " + std::to_string(t0) + " at T0, " + std::to_string(info.me_last_txnid) +
          " at the end, but the commits made by processes taking part reached only " +
          std::to_string(t0 + uint32_t(seen - uint32_t(t0))) + ": " + why + "); the copy was discarded",
      e->data_path);
}

// Checks, prepares the job and takes T0. On failure nothing is left behind.
Status StartRun(Env& env, const std::string& dest, int dest_fd, const BackupOptions& options,
                const BackupHooks* hooks, std::shared_ptr<BackupRun>* out) {
  Env::Impl* e = env.impl();
  Status s = CheckBackupable(e);
  if (!s.ok()) return s;
  MDB_stat st;
  int rc = mdb_env_stat(e->env, &st);
  if (rc != 0) return FromMdb(rc, "lmdb backup: mdb_env_stat", e->path);
  int me_fd = -1;
  rc = mdb_env_get_fd(e->env, &me_fd);
  if (rc != 0) return FromMdb(rc, "lmdb backup: mdb_env_get_fd", e->path);

  auto run = std::make_shared<BackupRun>();
  run->env = e;
  run->source.reset(new EnvSource(me_fd, st.ms_psize, e->data_path));
  Source* source = run->source.get();
  if (hooks && hooks->wrap_source) source = hooks->wrap_source(source);

  BackupParams params;
  params.dest = dest;
  params.dest_fd = dest_fd;
  params.options = options;
  params.kind = format::SourceKind::kLmdb;
  params.source_name = e->data_path;
  BackupRun* raw = run.get();  // the run owns the job: no reference cycle
  params.before_publish = [e, raw] { return EndCheck(e, raw); };
  s = BackupJob::Prepare(source, params, &run->job);
  if (!s.ok()) return s;
  s = TakeT0(e, run.get());
  if (!run->dead_volume.empty()) {
    RemoveDeadJobVolume(run->dead_volume);  // a dead job's, found at the claim
    run->dead_volume.clear();
  }
  if (!s.ok()) {
    run->job->Abort(s);
    run->Release();
    return s;
  }
  // The run's end frees the data file for the next job before anyone
  // hears it ended.
  run->runner = std::make_unique<JobRunner>(std::move(run->job),
                                            [raw](const Status&, const Summary&) { raw->Release(); });
  *out = std::move(run);
  return Status::OK();
}

}  // namespace

Status BackupWithHooks(Env& env, const std::string& dest, int dest_fd, const BackupOptions& options,
                       const BackupHooks& hooks, BackupResult* result) {
  std::shared_ptr<BackupRun> run;
  Status s = StartRun(env, dest, dest_fd, options, &hooks, &run);
  if (!s.ok()) {
    if (result) {
      *result = BackupResult{};
      result->summary.state = JobState::kFailed;
      result->summary.error = s.ToString();
    }
    return s;
  }
  (void)run->runner->RunHere();
  return run->Wait(result);
}

Status Env::backup(const std::string& dest, const BackupOptions& options, BackupResult* result) {
  return BackupWithHooks(*this, dest, -1, options, BackupHooks{}, result);
}

Status Env::backup_to_fd(int fd, const BackupOptions& options, BackupResult* result) {
  if (fd < 0) return Status::InvalidArgument("lmdb backup: bad descriptor " + std::to_string(fd));
  return BackupWithHooks(*this, "", fd, options, BackupHooks{}, result);
}

Status Env::start_backup(const std::string& dest, const BackupOptions& options,
                         std::unique_ptr<BackupTask>* task) {
  std::shared_ptr<BackupRun> run;
  Status s = StartRun(*this, dest, -1, options, nullptr, &run);
  if (!s.ok()) return s;
  {
    MutexLock lock(&impl_->runs_mu);
    // Forget finished runs, keep the running ones.
    auto& runs = impl_->runs;
    for (auto it = runs.begin(); it != runs.end();) {
      if ((*it)->runner->done()) {
        it = runs.erase(it);
      } else {
        ++it;
      }
    }
    runs.push_back(run);
  }
  s = run->runner->Start();  // on failure the job ended, cancelled
  if (!s.ok()) return s;
  auto impl = std::make_unique<BackupTask::Impl>();
  impl->run = std::move(run);
  task->reset(new BackupTask(std::move(impl)));
  return Status::OK();
}

void StopBackups(Env::Impl* e) {
  std::vector<std::shared_ptr<BackupRun>> runs;
  {
    MutexLock lock(&e->runs_mu);
    runs.swap(e->runs);
  }
  for (auto& run : runs) run->runner->CancelAndWait();
}

// ---------------------------------------------------------------------------
// BackupTask

BackupTask::BackupTask(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

BackupTask::~BackupTask() { impl_->run->runner->CancelAndWait(); }

Progress BackupTask::progress() const { return impl_->run->runner->progress(); }
Summary BackupTask::summary() const { return impl_->run->runner->summary(); }
void BackupTask::cancel() { impl_->run->runner->Cancel(); }
// Set by TakeT0 before the run's thread started; nothing writes it after.
uint64_t BackupTask::t0_txnid() const { return impl_->run->result.txnid; }
bool BackupTask::done() const { return impl_->run->runner->done(); }
Status BackupTask::wait(BackupResult* result) {
  BackupRun* run = impl_->run.get();
  // The end check waits for the writer lock, which this thread would hold.
  if (!run->runner->done() && run->env->write_owner.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
    return Status::Busy(
        "lmdb backup: wait() from a thread that holds a write transaction of the environment would "
        "never return (the backup's end check needs the writer lock); commit or abort first",
        run->env->path);
  }
  return run->Wait(result);
}

}  // namespace cowbackup::lmdb
