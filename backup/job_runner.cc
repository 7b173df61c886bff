#include "backup/job_runner.h"

#include <cassert>
#include <system_error>
#include <thread>

#include "engine/sync_point.h"

namespace cowbackup {

JobRunner::JobRunner(std::unique_ptr<BackupJob> job, OnFinished on_finished)
    : on_finished_(std::move(on_finished)), job_(std::move(job)) {}

JobRunner::~JobRunner() { CancelAndWait(); }

Status JobRunner::Start() {
  {
    MutexLock lock(&mu_);
    assert(!started_);
    started_ = true;
  }
  int err = 0;
  try {
    std::thread([this] { RunToEnd(); }).detach();
    return Status::OK();
  } catch (const std::system_error& e) {
    err = e.code().value();
  }
  // No thread saw the job: end it here, so that the hook is disarmed, the
  // outputs are removed and the front end hears of it as of any other end.
  Cancel();
  RunToEnd();
  return Status::FromErrno("start backup thread", "", err);
}

Status JobRunner::RunHere() {
  {
    MutexLock lock(&mu_);
    assert(!started_);
    started_ = true;
  }
  RunToEnd();
  MutexLock lock(&mu_);
  return status_;
}

// Steps 1-4 of the header comment. Step 4 is the thread's last use of the
// runner: once a waiter sees done_ it may destroy the runner while this
// thread is still returning from the unlock of mu_, which POSIX allows (the
// rationale of pthread_mutex_destroy: a mutex may be destroyed as soon as
// it is unlocked, by whichever thread locked it last).
void JobRunner::RunToEnd() {
  BackupJob* job;
  {
    MutexLock lock(&mu_);
    job = job_.get();  // only this function resets job_ once started
  }
  const Status s = job->Run();
  const Summary summary = job->summary();
  std::unique_ptr<BackupJob> ended;
  {
    MutexLock lock(&mu_);
    status_ = s;
    summary_ = summary;
    ended = std::move(job_);
  }
  ended.reset();
  if (on_finished_) on_finished_(s, summary);
  MutexLock lock(&mu_);
  done_ = true;
  done_cv_.SignalAll();
}

void JobRunner::Cancel() {
  MutexLock lock(&mu_);
  if (job_) job_->cancel();
}

bool JobRunner::done() const {
  MutexLock lock(&mu_);
  return done_;
}

Status JobRunner::Wait(Summary* summary) {
  MutexLock lock(&mu_);
  while (!done_) done_cv_.Wait(&mu_);
  if (summary != nullptr) *summary = summary_;
  return status_;
}

void JobRunner::CancelAndWait() {
  Cancel();
  {
    MutexLock lock(&mu_);
    if (!started_) return;
  }
  COWBACKUP_SYNC_POINT("JobRunner::CancelAndWait:waiting");
  (void)Wait();
}

Progress JobRunner::progress() const {
  MutexLock lock(&mu_);
  return job_ ? job_->progress() : summary_.progress;
}

Summary JobRunner::summary() const {
  MutexLock lock(&mu_);
  Summary s = job_ ? job_->summary() : summary_;
  if (!done_) {
    s.state = JobState::kRunning;
    s.error.clear();
  }
  return s;
}

}  // namespace cowbackup
