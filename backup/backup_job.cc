#include "backup/backup_job.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/archive_writer.h"
#include "backup/options.h"
#include "engine/clock.h"
#include "engine/posix_file.h"

namespace cowbackup {

namespace {
// Runs BackupParams::before_publish just before the real sink publishes.
class CheckedSink final : public Sink {
 public:
  CheckedSink(std::unique_ptr<Sink> inner, std::function<Status()> check)
      : inner_(std::move(inner)), check_(std::move(check)) {}
  Status put_run(uint64_t first_pgno, const uint8_t* pages, size_t count) override {
    return inner_->put_run(first_pgno, pages, count);
  }
  Status put_overlay(uint64_t pgno, const uint8_t* page) override {
    return inner_->put_overlay(pgno, page);
  }
  Status finish(const Progress& final) override {
    Status s = check_();
    return s.ok() ? inner_->finish(final) : s;
  }
  void abandon() noexcept override { inner_->abandon(); }
  uint64_t bytes_written() const override { return inner_->bytes_written(); }

 private:
  const std::unique_ptr<Sink> inner_;
  const std::function<Status()> check_;
};

}  // namespace

std::vector<std::string> ListStaleVolumes(const std::string& dir,
                                          const std::function<bool(const std::string&)>& names_source) {
  std::vector<std::string> stale;
  const std::string suffix = kVolumeSuffix;
  for (const std::string& name : ListDir(dir)) {
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const std::string path = dir + "/" + name;
    // Only a regular file of ours is ever opened or removed: a FIFO or a
    // device planted under a stale-looking name is left alone.
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) continue;
    FileSnapshotVolume::Info info;
    if (FileSnapshotVolume::ReadInfo(path, &info).ok()) {
      if (!names_source(info.source_name)) continue;
    } else {
      // No valid header: its owner died between creating the file and
      // writing the header. The name <base>.<pid>-<n>.cowsnap still names
      // the owner, and the file's mtime bounds when it was made.
      const size_t dot = name.rfind('.', name.size() - suffix.size() - 1);
      if (dot == std::string::npos) continue;
      info.pid = strtoll(name.c_str() + dot + 1, nullptr, 10);
      if (info.pid <= 0) continue;
      info.created_unix_us = uint64_t(st.st_mtime) * 1000000;
    }
    if (info.pid == ::getpid()) continue;
    if (OwnerMayBeAlive(info.pid, int64_t(info.created_unix_us / 1000000))) continue;
    stale.push_back(path);
  }
  return stale;
}

std::vector<std::string> RemoveStaleVolumes(const std::string& dir, const std::string& source_name) {
  std::vector<std::string> removed;
  const auto same = [&source_name](const std::string& name) { return name == source_name; };
  for (const std::string& path : ListStaleVolumes(dir, same)) {
    if (::unlink(path.c_str()) == 0) removed.push_back(path);
  }
  return removed;
}

bool RemoveDeadJobVolume(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) return false;
  FileSnapshotVolume::Info info;
  if (!FileSnapshotVolume::ReadInfo(path, &info).ok()) return false;
  return ::unlink(path.c_str()) == 0;
}

BackupJob::BackupJob(Source* source, BackupParams params)
    : source_(source), params_(std::move(params)), created_(std::chrono::steady_clock::now()) {
  summary_.page_size = source_->page_size();
}

BackupJob::~BackupJob() {
  // Run() or Abort() normally ran; make sure nothing is left behind.
  if (!armed_.empty()) {
    job_->cancel();  // releases held writers; before_write becomes a no-op
    for (const HookRoute& route : armed_) route.hook->disarm();
  }
  if (sink_) sink_->abandon();
  if (file_) file_->abandon();
  if (volume_) volume_->remove();
}

Status BackupJob::Prepare(Source* source, const BackupParams& params,
                          std::unique_ptr<BackupJob>* out) {
  const bool streaming = params.dest_fd >= 0;
  Status s = ValidateBackupOptions(params.options, streaming);
  if (!s.ok()) return s;
  std::unique_ptr<BackupJob> job(new BackupJob(source, params));
  s = job->PrepareOutputs();
  if (!s.ok()) return s;
  *out = std::move(job);
  return Status::OK();
}

Status BackupJob::PrepareOutputs() {
  const bool streaming = params_.dest_fd >= 0;
  if (streaming) {
    stream_.reset(new StreamOutput(params_.dest_fd, params_.dest.empty() ? "<stream>" : params_.dest));
  } else {
    stale_removed_ = AtomicFile::RemoveStale(params_.dest);
    // A plain copy is a database SQLite may open (a raw source's may be one
    // too); an LMDB image is data.mdb, with nothing beside it to apply.
    const bool sqlite_image = params_.options.format == BackupOptions::Format::kPlain &&
                              params_.kind != format::SourceKind::kLmdb;
    Status s = AtomicFile::Create(params_.dest, params_.options.overwrite, &file_,
                                  sqlite_image ? Contents::kSqliteImage : Contents::kOther);
    if (!s.ok()) return s;
  }
  std::string dir = params_.options.snapshot_dir;
  if (dir.empty()) {
    const char* tmp = getenv("TMPDIR");
    dir = streaming ? (tmp && *tmp ? tmp : "/tmp") : ParentDir(params_.dest);
  }
  for (const std::string& p : RemoveStaleVolumes(dir, params_.source_name)) stale_removed_.push_back(p);
  const std::string base = streaming ? BaseName(params_.source_name) : BaseName(params_.dest);
  std::unique_ptr<FileSnapshotVolume> volume;
  Status s = FileSnapshotVolume::CreateUnique(dir + "/" + base + ".", source_->page_size(),
                                              params_.source_name, &volume);
  if (!s.ok()) {
    if (file_) file_->abandon();
    return s;
  }
  volume_ = std::move(volume);
  return Status::OK();
}

Status BackupJob::Begin(uint64_t t0_pages, const std::string& metadata, std::vector<HookRoute> hooks) {
  const uint32_t page_size = source_->page_size();
  reserve_in_ = file_.get();
  reserve_bytes_ = t0_pages * page_size;
  if (params_.options.format == BackupOptions::Format::kArchive) {
    reserve_bytes_ += t0_pages * format::kRecordOverhead;  // + header, trailer: a few hundred bytes
  }
  if (params_.options.format == BackupOptions::Format::kPlain) {
    sink_.reset(new ImageWriter(page_size, t0_pages, std::move(file_)));
  } else {
    format::Header h;
    h.source_kind = params_.kind;
    h.page_size = page_size;
    h.page_count = t0_pages;
    h.created_unix_us = NowUnixMicros();
    Status s = format::FitMetadata(metadata, &h.metadata);
    if (s.ok()) s = h.Validate();
    if (!s.ok()) return s;
    std::unique_ptr<ByteOutput> out = file_ ? std::unique_ptr<ByteOutput>(std::move(file_))
                                            : std::move(stream_);
    sink_.reset(new ArchiveWriter(h, std::move(out)));
  }
  // The front end's check runs first (outermost), then the caller's
  // (BackupOptions::before_publish).
  for (const std::function<Status()>* check : {&params_.options.before_publish, &params_.before_publish}) {
    if (*check) sink_.reset(new CheckedSink(std::move(sink_), *check));
  }
  JobConfig config;
  config.page_size = page_size;
  config.t0_pages = t0_pages;
  config.segment_pages = params_.options.segment_pages;
  config.variant = params_.options.variant;
  config.max_rate_mb = params_.options.max_rate_mb;
  config.hot_first = params_.options.hot_first;
  config.shared = shared_;
  if (params_.options.yield_to_commits) config.yield_to = &hooks.front().hook->commits;
  config.pace_by = &hooks.front().hook->commits.history();
  config.pace_share = params_.options.pace;
  CopyJob* job = new CopyJob(source_, volume_.get(), sink_.get(), config);
  {
    MutexLock lock(&mu_);
    job_.reset(job);
  }
  for (const HookRoute& route : hooks) {
    Status s = route.hook->arm(job, route.router);
    if (!s.ok()) {
      for (const HookRoute& armed : armed_) armed.hook->disarm();
      armed_.clear();
      return s;
    }
    armed_.push_back(route);
  }
  if (cancel_requested_.load()) job->cancel();
  return Status::OK();
}

Status BackupJob::Run() {
  CopyJob* job;
  {
    MutexLock lock(&mu_);
    job = job_.get();
  }
  // On the copier thread, after T0: a large fallocate never lengthens the
  // begin-time lock.
  if (reserve_in_ != nullptr) {
    Status r = reserve_in_->Reserve(reserve_bytes_);
    if (!r.ok()) job->fail(r);
  }
  Status s = job->run();
  for (const HookRoute& route : armed_) route.hook->disarm();
  armed_.clear();
  Finish(s);
  return s;
}

std::string BackupJob::volume_path() const {
  if (!volume_) return "";
  std::string p = volume_->path();
  if (!p.empty() && p[0] == '/') return p;
  while (p.rfind("./", 0) == 0) p.erase(0, 2);
  char cwd[4096];
  return ::getcwd(cwd, sizeof cwd) != nullptr ? std::string(cwd) + "/" + p : p;
}

void BackupJob::Abort(const Status& why) {
  for (const HookRoute& route : armed_) route.hook->disarm();
  armed_.clear();
  if (sink_) sink_->abandon();
  if (file_) file_->abandon();
  if (volume_) volume_->remove();
  Finish(why);
}

Summary BackupJob::Finish(const Status& s) {
  MutexLock lock(&mu_);
  summary_.progress = job_ ? job_->progress() : Progress{};
  summary_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - created_).count();
  summary_.state = s.ok() ? JobState::kDone : s.IsCancelled() ? JobState::kCancelled : JobState::kFailed;
  summary_.error = s.ok() ? "" : s.ToString();
  return summary_;
}

void BackupJob::NoteBeginLock(std::chrono::steady_clock::duration held) {
  MutexLock lock(&mu_);
  summary_.begin_lock_us = uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(held).count());
}

void BackupJob::cancel() {
  cancel_requested_.store(true);
  MutexLock lock(&mu_);
  if (job_ && summary_.state == JobState::kRunning) job_->cancel();
}

Progress BackupJob::progress() const {
  MutexLock lock(&mu_);
  if (summary_.state != JobState::kRunning || !job_) return summary_.progress;
  return job_->progress();
}

Summary BackupJob::summary() const {
  MutexLock lock(&mu_);
  Summary s = summary_;
  if (s.state == JobState::kRunning) {
    if (job_) s.progress = job_->progress();
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - created_).count();
  }
  return s;
}

}  // namespace cowbackup
