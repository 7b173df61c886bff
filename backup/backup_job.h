// BackupJob: everything a front end (SQLite shim, LMDB wrapper, CLI) needs
// around a CopyJob, so that each of them only finds its begin-time instant:
//
//   BackupJob::Prepare(source, params, &job);  // checks dest, creates temp
//                                               // output and snapshot volume
//   { take the storage engine's begin-time lock;
//     job->Begin(t0_pages, metadata, &hook);    // T0: arms the write hook
//     release the lock; }
//   job->Run();                                 // copies, disarms, publishes
//
// Run() disarms the hook before it returns (waiting for writers inside the
// job), so the BackupJob may be destroyed right after. On failure or cancel
// the temporary output and the snapshot volume are removed and nothing
// appears at the destination.
//
// Thread-safety: Prepare/Begin/Run on one thread at a time, in that order;
// cancel(), progress() and summary() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backup/format.h"
#include "backup/output.h"
#include "cowbackup/job.h"
#include "engine/copy_job.h"
#include "engine/mutex.h"
#include "engine/write_hook.h"

namespace cowbackup {

struct BackupParams {
  std::string dest;       // archive or image path; "-" = standard output
  int dest_fd = -1;       // >= 0: stream the archive to this descriptor
  BackupOptions options;
  format::SourceKind kind = format::SourceKind::kRaw;
  std::string source_name;  // the database path, for messages and volume headers
  // Called on the copier thread after every page is copied and before the
  // destination is published; a non-OK status fails the job instead (the
  // SQLite shim checks here that no write bypassed it). May be empty.
  std::function<Status()> before_publish;
};

class BackupJob {
 public:
  static Status Prepare(Source* source, const BackupParams& params,
                        std::unique_ptr<BackupJob>* out);
  ~BackupJob();

  // T0. `metadata` is "key=value\n" lines (format::MetaLine) for the header.
  // Arms every hook (the first one's commits are what yield_to_commits
  // waits out); Run() disarms them.
  struct HookRoute {
    WriteHook* hook;
    WriteRouter* router = nullptr;  // see write_hook.h, "Routes"
  };
  Status Begin(uint64_t t0_pages, const std::string& metadata, std::vector<HookRoute> hooks);
  Status Begin(uint64_t t0_pages, const std::string& metadata, WriteHook* hook) {
    return Begin(t0_pages, metadata, std::vector<HookRoute>{{hook}});
  }
  // Before Begin(), for a job other processes take part in: the shared
  // page table the CopyJob keeps its state in (JobConfig::shared).
  void Share(SharedPages* shared) { shared_ = shared; }
  // The snapshot volume's path, absolute ("" if it is not a file).
  std::string volume_path() const;
  // Copies, disarms the hook, publishes. Returns the final status.
  Status Run();
  // Instead of Run(), when the begin-time instant failed (before or after
  // Begin()): disarms what Begin() armed and removes what Prepare created.
  void Abort(const Status& why);

  // The front end, after releasing its begin-time lock: how long it held
  // it (Summary::begin_lock_us).
  void NoteBeginLock(std::chrono::steady_clock::duration held);

  void cancel();
  Progress progress() const;
  Summary summary() const;
  // Paths of stale temporaries and volumes Prepare removed.
  const std::vector<std::string>& stale_removed() const { return stale_removed_; }

 private:
  BackupJob(Source* source, BackupParams params);
  Status PrepareOutputs();
  Summary Finish(const Status& s);

  Source* const source_;
  const BackupParams params_;
  const std::chrono::steady_clock::time_point created_;
  std::unique_ptr<AtomicFile> file_;      // kPlain / archive to a path
  AtomicFile* reserve_in_ = nullptr;      // file_, once the sink owns it
  uint64_t reserve_bytes_ = 0;            // what Run() reserves there
  std::unique_ptr<ByteOutput> stream_;    // archive to a descriptor
  std::unique_ptr<FileSnapshotVolume> volume_;
  SharedPages* shared_ = nullptr;
  std::unique_ptr<Sink> sink_;
  std::unique_ptr<CopyJob> job_ GUARDED_BY(mu_);  // set once, by Begin()
  std::vector<HookRoute> armed_;  // by Begin(), disarmed by Run()
  std::atomic<bool> cancel_requested_{false};
  std::vector<std::string> stale_removed_;

  mutable Mutex mu_;
  Summary summary_ GUARDED_BY(mu_);  // final once state != kRunning
};

// Snapshot volumes in `dir` left by processes that no longer run, whose
// header names a source `names_source` accepts (or that have no header yet:
// their owner died making them). Opens only regular files owned by this
// user, never through a symlink (lstat, then OpenRegular).
std::vector<std::string> ListStaleVolumes(const std::string& dir,
                                          const std::function<bool(const std::string&)>& names_source);
// Removes what ListStaleVolumes lists for `source_name`; returns their paths.
std::vector<std::string> RemoveStaleVolumes(const std::string& dir, const std::string& source_name);
// Removes the snapshot volume of a job known to be dead (the coordination
// region said so: its owner's lock is free), if `path` is a regular file of
// this user with a volume header. True if it removed it.
bool RemoveDeadJobVolume(const std::string& path);

}  // namespace cowbackup
