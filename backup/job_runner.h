// JobRunner: the life of one BackupJob after its begin-time instant, the
// same for every front end (the SQLite shim's job registry, the LMDB
// wrapper's BackupTask): run on a thread of its own or on the caller's,
// watched, cancelled and waited for from any thread.
//
//   std::unique_ptr<BackupJob> job;
//   BackupJob::Prepare(...); job->Begin(...);   // T0: the hook is armed
//   JobRunner runner(std::move(job), on_finished);
//   Status s = runner.Start();                  // or runner.RunHere()
//   runner.progress(); runner.Cancel();         // any thread
//   s = runner.Wait(&summary);                  // any thread, any number
//
// How a job ends, in this order, on the thread that ran it:
//   1. BackupJob::Run() returns: the hook is disarmed and the destination
//      published, or the outputs removed;
//   2. the BackupJob is destroyed (so the Source it read may go next);
//   3. on_finished(status, summary) runs: the front end frees what the job
//      held (the SQLite shim ends commit tracking and releases the file's
//      one-job claim, so that the next backup of the file may start);
//   4. done() turns true and Wait() returns, in every waiter.
// So whoever hears that a job ended may start the next one at once.
//
// summary().state is kRunning until step 4, then final; progress() and the
// rest of summary() are live until step 1, then final.
//
// The thread is detached, and marking the job done is the last thing it
// does with the runner: so CancelAndWait() (and the destructor) are a join
// as far as the runner is concerned, and a job nobody waits for (the SQL
// functions' cowbackup_start) leaves no thread to join behind, however many
// finished jobs a front end keeps.
//
// Thread-safety: Start() or RunHere() once, by the owner; everything else
// from any thread. The destructor cancels a running job and waits for its
// end, so it must not run on the job's thread inside on_finished (which
// must not destroy its own runner). Lock order: a front end's lock, then
// mu_, then the BackupJob's own.
#pragma once

#include <functional>
#include <memory>

#include "backup/backup_job.h"
#include "cowbackup/job.h"
#include "cowbackup/status.h"
#include "engine/mutex.h"

namespace cowbackup {

class JobRunner {
 public:
  // Step 3 above. Called without any of the runner's locks held.
  using OnFinished = std::function<void(const Status& status, const Summary& summary)>;

  // `job` has taken T0 (BackupJob::Begin succeeded). `on_finished` may be
  // empty; it runs only for a job that was started.
  explicit JobRunner(std::unique_ptr<BackupJob> job, OnFinished on_finished = nullptr);
  // CancelAndWait(). A job never started is destroyed here (the hook
  // disarmed, the outputs removed), without on_finished.
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Runs the job on a new thread. If no thread can be created, the job is
  // cancelled and ended on the calling thread (steps 1-4: nothing is left
  // behind) and the error is returned.
  Status Start();
  // Runs the job on the calling thread; returns its final status.
  Status RunHere();

  // Asks the job to stop (kCancelled); a no-op once it ended. Before
  // Start() it makes the job end as soon as it starts.
  void Cancel();
  bool done() const;
  // Blocks until done(); the final status and, if `summary`, the summary.
  Status Wait(Summary* summary = nullptr);
  // Cancel(), then Wait() for a started job; returns at once for a job
  // never started. Afterwards no thread uses the runner.
  void CancelAndWait();

  Progress progress() const;
  Summary summary() const;

 private:
  void RunToEnd();

  const OnFinished on_finished_;

  mutable Mutex mu_;
  CondVar done_cv_;  // signalled when done_ turns true
  // The job until step 2; then summary_ and status_ hold its outcome.
  std::unique_ptr<BackupJob> job_ GUARDED_BY(mu_);
  bool started_ GUARDED_BY(mu_) = false;
  bool done_ GUARDED_BY(mu_) = false;
  Status status_ GUARDED_BY(mu_);
  Summary summary_ GUARDED_BY(mu_);
};

}  // namespace cowbackup
