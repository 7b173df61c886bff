#include "coord/region.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "engine/clock.h"
#include "engine/encoding.h"
#include "engine/futex.h"
#include "engine/posix_file.h"
#include "engine/sync_point.h"

namespace cowbackup::coord {

using namespace layout;

namespace {
const std::string kWhat = "coordination region: ";

uint64_t RandomJobId() {
  for (;;) {
    uint64_t r = 0;
    if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r) {
      r = NowUnixMicros() * 0x9e3779b97f4a7c15ull ^ uint64_t(::getpid());
    }
    r &= kMaxJobId;
    if (r != 0) return r;
  }
}

bool Live(JobState s) { return s == JobState::kArming || s == JobState::kRunning; }

std::string JobName(const Job& j) {
  return "job " + std::to_string(j.job_id) + " (pid " + std::to_string(j.owner_pid) + ")";
}
}  // namespace

std::string RegionPathForSqlite(const std::string& db_path) { return db_path + kRegionSuffix; }

std::string RegionPathForLmdb(const std::string& env_path, bool no_subdir) {
  return no_subdir ? env_path + kRegionSuffix : env_path + "/" + kLmdbRegionName;
}

// ---- Byte locks (docs/REGION.md, "Why byte locks, and which") ----

Status Region::TryLock(uint64_t byte, short type, bool* got) {
  struct flock fl = {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = off_t(byte);
  fl.l_len = 1;
  int rc;
  do {
    rc = ::fcntl(fd_, F_OFD_SETLK, &fl);
  } while (rc != 0 && errno == EINTR);
  *got = rc == 0;
  if (rc == 0 || errno == EAGAIN || errno == EACCES) return Status::OK();
  return Status::FromErrno(kWhat + "lock byte " + std::to_string(byte), path_, errno);
}

void Region::Unlock(uint64_t byte) {
  bool got;
  (void)TryLock(byte, F_UNLCK, &got);  // unlocking what we hold cannot conflict
}

Status Region::HeldElsewhere(uint64_t byte, bool* held) {
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = off_t(byte);
  fl.l_len = 1;
  if (::fcntl(fd_, F_OFD_GETLK, &fl) != 0) {
    return Status::FromErrno(kWhat + "test lock byte " + std::to_string(byte), path_, errno);
  }
  *held = fl.l_type != F_UNLCK;  // our own description's locks never conflict
  return Status::OK();
}

// lock_meta for one scope, polled for at most kMetaLockWaitMs. Taken with
// the Region's mutex held (OFD locks do not exclude threads of one
// description). No fence is needed around it: the kernel's unlock
// publishes the lock's state with a release after the holder's stores to
// the mapping, and the next holder's lock reads it with an acquire before
// its loads (SQLite relies on the same for what -shm's locks guard).
class Region::MetaLock {
 public:
  explicit MetaLock(Region* r) : r_(r) {}
  ~MetaLock() {
    if (held_) r_->Unlock(kLockMeta);
  }
  MetaLock(const MetaLock&) = delete;
  MetaLock& operator=(const MetaLock&) = delete;

  Status Acquire() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kMetaLockWaitMs);
    auto pause = std::chrono::microseconds(20);
    for (;;) {
      Status s = r_->TryLock(kLockMeta, F_WRLCK, &held_);
      if (!s.ok()) return s;
      if (held_) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        return Status::Busy(kWhat + "its meta lock was held by another process for over " +
                                std::to_string(kMetaLockWaitMs) + " ms",
                            r_->path_);
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(1000));
    }
    return Status::OK();
  }
  bool held() const { return held_; }

 private:
  Region* const r_;
  bool held_ = false;
};

// ---- Attach ----

Region::Region(std::string path) : path_(std::move(path)), scratch_(new uint8_t[kFixedSize]()) {}

Status Region::Attach(const std::string& path, int db_fd, std::unique_ptr<Region>* out) {
  return Attach(path, db_fd, AttachOptions(), out);
}

Status Region::Attach(const std::string& path, int db_fd, const AttachOptions& options,
                      std::unique_ptr<Region>* out) {
  out->reset();
  struct stat db;
  if (::fstat(db_fd, &db) != 0) return Status::FromErrno(kWhat + "stat the database", path, errno);
  return Attach(path, db, options, out);
}

Status Region::Attach(const std::string& path, const struct stat& db, const AttachOptions& options,
                      std::unique_ptr<Region>* out) {
  out->reset();
  std::unique_ptr<Region> r(new Region(path));
  r->options_ = options;
  Status s = r->OpenFile(db);
  if (s.ok()) s = r->TakeInitLock(db);
  if (s.ok()) s = r->TakeSlot();
  if (s.ok()) *out = std::move(r);
  return s;  // else ~Region closes what was opened, dropping every lock
}

Status Region::OpenFile(const struct stat& db) {
  // 1. An existing region only if it is a regular file (OpenRegular never
  //    follows a symlink nor opens a FIFO or device); else make it.
  for (int attempt = 0; fd_ < 0; attempt++) {
    fd_ = OpenRegular(path_, O_RDWR);
    if (fd_ >= 0) break;
    if (errno == ELOOP || errno == EINVAL) {
      struct stat st;
      const unsigned mode = ::lstat(path_.c_str(), &st) == 0 ? st.st_mode : 0;
      return Status::InvalidArgument(kWhat + "is " + FileKind(mode) + "; only a regular file is used",
                                     path_);
    }
    if (errno == ENOENT && !options_.create) return Status::NotFound(kWhat + "does not exist", path_);
    if (errno != ENOENT || attempt == 8) return Status::FromErrno(kWhat + "open", path_, errno);
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      if (errno == EEXIST) continue;  // made by another opener meanwhile
      return Status::FromErrno(kWhat + "create", path_, errno);
    }
    // The database's bits, never group or other write, whatever the umask
    // (as SQLite's robust_open sets -shm's); root gives it to the
    // database's owner, as SQLite's robustFchown does.
    if (::fchmod(fd_, db.st_mode & 0644) != 0) return Status::FromErrno(kWhat + "chmod", path_, errno);
    if (::geteuid() == 0 && ::fchown(fd_, db.st_uid, db.st_gid) != 0) {
      return Status::FromErrno(kWhat + "chown", path_, errno);
    }
  }
  // 2. What we opened: one link, the database's owner, no one else may write.
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno(kWhat + "stat", path_, errno);
  if (st.st_nlink != 1) {
    return Status::InvalidArgument(kWhat + "has " + std::to_string(st.st_nlink) + " links; it must have one",
                                   path_);
  }
  if (st.st_uid != db.st_uid) {
    return Status::InvalidArgument(kWhat + "is owned by uid " + std::to_string(st.st_uid) +
                                       ", the database by uid " + std::to_string(db.st_uid),
                                   path_);
  }
  if (st.st_mode & 0022) {
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    return Status::InvalidArgument(kWhat + "is writable by group or others (mode " + mode +
                                       "); only the database's owner may write it",
                                   path_);
  }
  return Status::OK();
}

Status Region::TakeInitLock(const struct stat& db) {
  // 3. Exclusive if no one holds lock_init, else shared; a first opener at
  //    work holds it exclusive for a moment: poll, bounded.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kInitLockWaitMs);
  bool exclusive = false, shared = false;
  for (;;) {
    Status s = TryLock(kLockInit, F_WRLCK, &exclusive);
    if (s.ok() && !exclusive) s = TryLock(kLockInit, F_RDLCK, &shared);
    if (!s.ok()) return s;
    if (exclusive || shared) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::Busy(kWhat + "another process has been initialising it for over " +
                              std::to_string(kInitLockWaitMs) + " ms",
                          path_);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  COWBACKUP_SYNC_POINT("region:attach:init-locked");
  // 4. Shared: the header must be valid for this database, unless no one
  //    else is attached after all (then the upgrade succeeds).
  if (!exclusive) {
    RegionHeader h;
    Status s = CheckHeader(db, &h);
    if (!s.ok()) {
      Status up = TryLock(kLockInit, F_WRLCK, &exclusive);
      if (!up.ok()) return up;
      if (!exclusive) return s;
    } else {
      generation_ = h.generation;
      return Map();
    }
  }
  // 5. Exclusive: this is the first opener.
  Status s = RecoverAsFirstOpener(db);
  if (!s.ok()) return s;
  bool got = false;
  s = TryLock(kLockInit, F_RDLCK, &got);  // downgrade; cannot conflict
  if (s.ok() && !got) s = Status::IOError(kWhat + "could not downgrade lock_init", path_);
  return s;
}

Status Region::CheckHeader(const struct stat& db, RegionHeader* out) {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno(kWhat + "stat", path_, errno);
  uint8_t h[kHeaderSize] = {};
  size_t got = 0;
  while (got < kHeaderSize) {
    const ssize_t n = ::pread(fd_, h + got, kHeaderSize - got, off_t(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(kWhat + "read", path_, errno);
    if (n == 0) break;
    got += size_t(n);
  }
  if (got < kOffVersion + 4) {
    return Status::Corruption(kWhat + "truncated to " + std::to_string(st.st_size) + " bytes", path_);
  }
  // Magic and version first: another version's region is named as such.
  if (memcmp(h, kMagic, sizeof kMagic) == 0 && DecodeFixed32(h + kOffVersion) != kFormatVersion) {
    return DecodeHeader(h, path_, out);
  }
  if (uint64_t(st.st_size) < kFixedSize) {
    return Status::Corruption(kWhat + "truncated to " + std::to_string(st.st_size) + " bytes (version 1 has " +
                                  std::to_string(kFixedSize) + ")",
                              path_);
  }
  Status s = DecodeHeader(h, path_, out);
  if (!s.ok()) return s;
  if (out->db_dev != uint64_t(db.st_dev) || out->db_ino != uint64_t(db.st_ino)) {
    return Status::Corruption(kWhat + "belongs to another database file (device " + std::to_string(out->db_dev) +
                                  ", inode " + std::to_string(out->db_ino) + "; this one is device " +
                                  std::to_string(db.st_dev) + ", inode " + std::to_string(db.st_ino) + ")",
                              path_);
  }
  return Status::OK();
}

Status Region::RecoverAsFirstOpener(const struct stat& db) {
  // R1: no one else is attached. Keep a region that is valid for this
  // database, after clearing what only the living may hold; rebuild any
  // other. Either way the header's checksum is written last.
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno(kWhat + "stat", path_, errno);
  RegionHeader h;
  Status valid = CheckHeader(db, &h);
  MutexLock lock(&mu_);
  if (valid.ok()) {
    if (uint64_t(st.st_size) > kFixedSize && ::ftruncate(fd_, kFixedSize) != 0) {
      return Status::FromErrno(kWhat + "truncate", path_, errno);
    }
    Status s = Map();
    if (!s.ok()) return s;
    h.generation++;
    EncodeHeader(h, map_);
    for (uint32_t i = 0; i < kSlotCount; i++) EncodeSlot(SlotRecord(), i, map_);
    Job job;
    Status js = LoadJobLocked(&job);
    if (!js.ok()) {
      StoreJobLocked(Job());
      recovery_ = "job section reset: " + js.message();
    } else if (Live(job.state)) {
      recovery_ = JobName(job) + " marked dead";
      job.state = JobState::kDead;
      StoreJobLocked(job);
    }
    StoreArmed(0);
    std::atomic_ref<uint32_t>(*gate_).store(0, std::memory_order_release);  // a dead party's
    std::atomic_ref<uint32_t>(*ckpt_holder_).store(0, std::memory_order_release);  // the same
  } else {
    if (!options_.rebuild) return valid;
    if (st.st_size != 0) recovery_ = "rebuilt: " + valid.message();
    if (::ftruncate(fd_, 0) != 0) return Status::FromErrno(kWhat + "truncate", path_, errno);
    COWBACKUP_SYNC_POINT("region:recover:emptied");
    if (const int err = ::posix_fallocate(fd_, 0, kFixedSize); err != 0) {
      return Status::FromErrno(kWhat + "reserve " + std::to_string(kFixedSize) + " bytes", path_, err);
    }
    Status s = Map();
    if (!s.ok()) return s;
    StoreJobLocked(Job());
    h = RegionHeader{1, uint64_t(db.st_dev), uint64_t(db.st_ino)};
    EncodeHeader(h, map_);
  }
  generation_ = h.generation;
  return Status::OK();
}

Status Region::Map() {
  void* p = ::mmap(nullptr, kFixedSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) return Status::FromErrno(kWhat + "map", path_, errno);
  map_ = static_cast<uint8_t*>(p);
  armed_ = reinterpret_cast<uint64_t*>(map_ + kOffArmed);
  gate_ = reinterpret_cast<uint32_t*>(map_ + kOffWriterGate);
  commits_.Bind(map_ + kOffCommitHistory);
  ckpt_holder_ = reinterpret_cast<uint32_t*>(map_ + kOffSqliteCkptHolder);
  return Status::OK();
}

Status Region::TakeSlot() {
  // 6. The first slot whose lock can be had: free, or its holder died.
  MutexLock lock(&mu_);
  MetaLock meta(this);
  Status s = meta.Acquire();
  for (uint32_t i = 0; s.ok() && i < kSlotCount && !attached_; i++) {
    s = TryLock(kLockSlot0 + i, F_WRLCK, &attached_);
    if (attached_) slot_ = i;
  }
  if (!s.ok()) return s;
  if (!attached_) return Status::Busy(kWhat + "all " + std::to_string(kSlotCount) + " slots are taken", path_);
  COWBACKUP_SYNC_POINT("region:attach:slot-locked");
  const SlotRecord rec{options_.writes_unseen ? 2u : 1u, ::getpid(), ProcessStartUnix(::getpid()), NowUnixMicros()};
  EncodeSlot(rec, slot_, map_);
  tag_ = uint32_t(rec.attached_unix_us) & kTagMask;
  COWBACKUP_SYNC_POINT("region:attach:attached");
  return Status::OK();
}

// ---- Detach ----

Region::~Region() {
  if (fd_ < 0) return;  // never opened, or forgotten after fork
  if (map_ != nullptr) {
    MutexLock lock(&mu_);
    MetaLock meta(this);
    const bool locked = meta.Acquire().ok();
    if (owns_job_) (void)EndJobLocked(JobState::kDead, locked);
    if (attached_ && locked) {
      EncodeSlot(SlotRecord(), slot_, map_);
      COWBACKUP_SYNC_POINT("region:detach:slot-cleared");
    }
    if (attached_) Unlock(kLockSlot0 + slot_);
  }
  commits_.Bind(nullptr);
  if (map_ != nullptr) ::munmap(map_, kFixedSize);
  ::close(fd_);  // drops lock_init and anything still held
}

void Region::ForgetAfterFork() {
  armed_ = &zero_;
  gate_ = &zero_gate_;
  commits_.Bind(nullptr);
  ckpt_holder_ = &zero_ckpt_holder_;
  if (map_ != nullptr) ::munmap(map_, kFixedSize);
  map_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

// ---- The write path's word ----

bool Region::FailArmedJob(uint64_t seen) noexcept {
  if (seen == 0) return false;
  uint64_t expected = seen;
  std::atomic_ref<uint64_t> word(*armed_);
  while (!word.compare_exchange_weak(expected, expected | kFailedBit, std::memory_order_acq_rel)) {
    if ((expected & ~kFailedBit) != (seen & ~kFailedBit)) return false;  // another job's word now
  }
  return true;
}

// ---- Participants ----

Status Region::Participants(std::vector<Participant>* out) {
  out->clear();
  MutexLock lock(&mu_);
  MetaLock meta(this);
  Status s = meta.Acquire();
  for (uint32_t i = 0; s.ok() && i < kSlotCount; i++) {
    bool held = i == slot_ && attached_;
    if (!held) s = HeldElsewhere(kLockSlot0 + i, &held);
    if (!s.ok() || !held) continue;
    const SlotRecord r = DecodeSlot(map_, i);
    out->push_back(
        Participant{i, r.pid, r.pid_start_unix_s, r.attached_unix_us, i == slot_ && attached_, r.state == 2});
  }
  return s;
}

// ---- The job section ----

Status Region::LoadJobLocked(Job* out) {
  // A private copy first: a field is checked and then used from memory no
  // other process can change in between.
  memcpy(scratch_.get() + kOffJob, map_ + kOffJob, kOffSlots - kOffJob);
  return DecodeJob(scratch_.get(), path_, out);
}

void Region::StoreJobLocked(const Job& job) { EncodeJob(job, map_); }

void Region::MarkDeadLocked(Job* job) {
  // The word is disarmed by R6, after this, in ResolveJobLocked.
  job->state = JobState::kDead;
  StoreJobLocked(*job);
  COWBACKUP_SYNC_POINT("region:dead:marked");
}

Status Region::ResolveJobLocked(Job* out, Status* damage) {
  *damage = Status::OK();
  Job job;
  Status s = LoadJobLocked(&job);
  bool owner_alive = owns_job_;
  if (!owner_alive) {
    Status t = HeldElsewhere(kLockOwner, &owner_alive);
    if (!t.ok()) return t;
  }
  if (!s.ok()) {
    // R3: a damaged section no one owns is reset; an owner's is its own.
    if (owner_alive) return s;
    StoreJobLocked(Job());
    StoreArmed(0);
    *damage = s;
    *out = Job();
    return Status::OK();
  }
  // R4: arming or running without a live owner is dead.
  if (Live(job.state) && !owner_alive) MarkDeadLocked(&job);
  // R6: the word says what the section says; a running job whose word did
  // not say so may have missed a write, so it is failed.
  const uint64_t want = job.state == JobState::kRunning ? ArmedValue(job.job_id) : 0;
  const uint64_t have = load_armed();
  if ((have & ~kFailedBit) != want) StoreArmed(want == 0 ? 0 : want | kFailedBit);
  *out = std::move(job);
  return Status::OK();
}

Status Region::ReadJob(Job* out) {
  MutexLock lock(&mu_);
  MetaLock meta(this);
  Status s = meta.Acquire();
  if (!s.ok()) return s;
  Status damage;
  s = ResolveJobLocked(out, &damage);
  return s.ok() ? damage : s;
}

bool Region::owns_job() {
  MutexLock lock(&mu_);
  return owns_job_;
}

Status Region::ClaimJob(const std::string& volume_path, uint64_t page_state_size, Job* replaced_dead,
                        Job* claimed) {
  *replaced_dead = Job();
  Job job;
  job.state = JobState::kArming;
  job.owner_slot = slot_;
  job.job_id = RandomJobId();
  job.owner_pid = ::getpid();
  job.owner_start_unix_s = ProcessStartUnix(job.owner_pid);
  job.claimed_unix_us = NowUnixMicros();
  job.page_state_offset = page_state_size > 0 ? kFixedSize : 0;
  job.page_state_size = page_state_size;
  job.volume_path = volume_path;
  Status s = CheckJob(job, path_);
  if (!s.ok()) return s;

  MutexLock lock(&mu_);
  if (owns_job_) return Status::InvalidArgument(kWhat + "this process already owns " + JobName(owned_), path_);
  MetaLock meta(this);
  s = meta.Acquire();
  if (!s.ok()) return s;
  // A region unlinked or replaced since we attached is no longer the one
  // new participants find: a job in it would not be seen by them.
  struct stat ours, named;
  if (::fstat(fd_, &ours) != 0 || ::lstat(path_.c_str(), &named) != 0 || ours.st_dev != named.st_dev ||
      ours.st_ino != named.st_ino) {
    return Status::Busy(kWhat + "the file at this name is no longer the one attached (removed or replaced); "
                            "reopen the database",
                        path_);
  }
  Job cur;
  Status damage;
  s = ResolveJobLocked(&cur, &damage);
  if (!s.ok()) return s;
  if (Live(cur.state)) {
    return Status::Busy(kWhat + "a backup of this database is already running: " + JobName(cur), path_);
  }
  s = DrainLocked();
  if (!s.ok()) return s;
  bool got = false;
  s = TryLock(kLockOwner, F_WRLCK, &got);
  if (!s.ok()) return s;
  if (!got) return Status::Busy(kWhat + "the job-owner lock is held by a process that owns no job", path_);
  COWBACKUP_SYNC_POINT("region:claim:owner-locked");
  if (page_state_size > 0) {
    if (const int err = ::posix_fallocate(fd_, off_t(kFixedSize), off_t(page_state_size)); err != 0) {
      Unlock(kLockOwner);
      return Status::FromErrno(kWhat + "reserve the per-page state area (" + std::to_string(page_state_size) +
                                   " bytes)",
                               path_, err);
    }
  }
  if (cur.state == JobState::kDead) *replaced_dead = cur;
  StoreJobLocked(job);
  owns_job_ = true;
  owned_ = job;
  if (claimed != nullptr) *claimed = job;
  COWBACKUP_SYNC_POINT("region:claim:claimed");
  return Status::OK();
}

Status Region::Arm(const std::string& t0) {
  MutexLock lock(&mu_);
  if (!owns_job_) return Status::InvalidArgument(kWhat + "arm: this process owns no job", path_);
  if (t0.size() > kMaxT0Len) {
    return Status::InvalidArgument(kWhat + "T0 facts of " + std::to_string(t0.size()) + " bytes (at most " +
                                       std::to_string(kMaxT0Len) + ")",
                                   path_);
  }
  MetaLock meta(this);
  Status s = meta.Acquire();
  if (!s.ok()) return s;
  Job cur;
  s = LoadJobLocked(&cur);
  if (!s.ok() || cur.job_id != owned_.job_id || cur.state != JobState::kArming) {
    return Status::Corruption(kWhat + "the job section changed under its owner, " + JobName(owned_) +
                                  (s.ok() ? "" : ": " + s.message()),
                              path_);
  }
  owned_.t0 = t0;
  owned_.state = JobState::kRunning;
  StoreJobLocked(owned_);
  COWBACKUP_SYNC_POINT("region:arm:running");
  StoreArmed(ArmedValue(owned_.job_id));
  COWBACKUP_SYNC_POINT("region:arm:armed");
  return Status::OK();
}

Status Region::Finish() {
  MutexLock lock(&mu_);
  if (!owns_job_) return Status::InvalidArgument(kWhat + "finish: this process owns no job", path_);
  MetaLock meta(this);
  Status s = meta.Acquire();
  Status end = EndJobLocked(JobState::kDone, s.ok());
  return s.ok() ? end : s;
}

Status Region::EndJobLocked(JobState final_state, bool meta_locked) {
  // Disarm first: from here no writer enters the job. Without lock_meta
  // the section is left as it is; with the owner lock gone it reads dead.
  StoreArmed(0);
  COWBACKUP_SYNC_POINT("region:end:disarmed");
  if (meta_locked) {
    owned_.state = final_state;
    StoreJobLocked(owned_);
    COWBACKUP_SYNC_POINT("region:end:stored");
  }
  Unlock(kLockOwner);
  owns_job_ = false;
  return Status::OK();
}

// ---- Taking part ----

bool Region::Enter(uint64_t seen) noexcept {
  if (map_ == nullptr || !attached_) return false;
  // A Dekker pair with DrainLocked, which disarms the word before it reads
  // the counts: either it sees this count, or this load sees the change.
  Inside(slot_).fetch_add(1, std::memory_order_seq_cst);
  if (std::atomic_ref<uint64_t>(*armed_).load(std::memory_order_seq_cst) == seen) return true;
  Leave();
  return false;
}

bool Region::ReadRunningJob(uint64_t seen, Job* out) {
  // The meta lock may be busy for longer than one wait under load: asked
  // again while the word still says this job, for at most kJoinWaitMs.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kJoinWaitMs);
  Status s;
  while ((s = ReadJob(out)).IsBusy() && load_armed() == seen && std::chrono::steady_clock::now() < deadline) {
    COWBACKUP_SYNC_POINT("Region::ReadRunningJob:busy");
  }
  if (s.ok() && out->state == JobState::kRunning && ArmedValue(out->job_id) == seen) return true;
  // Not that running job. Either it ended (the word moved on: nothing to
  // do) or it could not be read: then this write cannot take part, and the
  // job must not publish a copy that lacks it (docs/REGION.md, "The write
  // path"). FailArmedJob is a no-op once the word moved on.
  FailArmedJob(seen);
  return false;
}

void Region::Leave() noexcept { Inside(slot_).fetch_sub(1, std::memory_order_seq_cst); }

bool Region::AwaitOwnLeave() {
  if (map_ == nullptr || !attached_) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDrainWaitMs);
  while (Inside(slot_).load(std::memory_order_seq_cst) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

uint32_t Region::BusyWord(bool copier) const {
  return kBusyBit | (copier ? kBusyCopierBit : 0) | (tag_ << kTagShift) | slot_;
}

bool Region::HolderGone(uint32_t w, uint32_t owner_slot) {
  const uint32_t slot = w & 0xff;
  if (w & kBusyCopierBit) return slot != owner_slot || !OwnerAlive();
  if (attached_ && slot == slot_ && ((w >> kTagShift) & kTagMask) == tag_) return false;
  // Without lock_meta: a process that holds it forever (stopped mid-call,
  // or hostile) must not hold a writer on a dead holder's page. The slot
  // lock says whether anyone is there; while the holder itself is, its
  // record (written before it could claim a page, which the caller's
  // acquire load of `w` saw) and count are stable, so nothing read here can
  // call a live holder gone. A record being rewritten by a newcomer in a
  // dead holder's slot may read torn: at worst "not gone" for one poll.
  if (map_ == nullptr) return false;  // forgotten after fork: cannot tell
  if (PartyGone(w)) return true;
  return Inside(slot).load(std::memory_order_seq_cst) == 0;
}

bool Region::PartyGone(uint32_t w) {
  const uint32_t slot = w & 0xff;
  if (attached_ && slot == slot_ && ((w >> kTagShift) & kTagMask) == tag_) return false;
  if (map_ == nullptr) return false;
  bool held = false;
  if (!HeldElsewhere(kLockSlot0 + slot, &held).ok()) return false;  // cannot tell: wait on
  if (!held) return true;
  const SlotRecord r = DecodeSlot(map_, slot);
  return (uint32_t(r.attached_unix_us) & kTagMask) != ((w >> kTagShift) & kTagMask);
}

bool Region::OwnerAlive() {
  {
    MutexLock lock(&mu_);
    if (owns_job_) return true;
  }
  bool held = true;
  return !HeldElsewhere(kLockOwner, &held).ok() || held;
}

Status Region::DrainLocked() {
  // The word is 0 here (no live job: ResolveJobLocked disarmed a dead one).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDrainWaitMs);
  for (;;) {
    uint32_t busy_slot = kSlotCount;
    for (uint32_t i = 0; i < kSlotCount && busy_slot == kSlotCount; i++) {
      if (Inside(i).load(std::memory_order_seq_cst) == 0) continue;
      bool held = attached_ && i == slot_;
      if (!held) {
        Status s = HeldElsewhere(kLockSlot0 + i, &held);
        if (!s.ok()) return s;
      }
      if (held) busy_slot = i;
    }
    if (busy_slot == kSlotCount) return Status::OK();
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::Busy(kWhat + "a process (slot " + std::to_string(busy_slot) +
                              ", pid " + std::to_string(DecodeSlot(map_, busy_slot).pid) +
                              ") is still inside the previous backup; try again",
                          path_);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

Region::Area::~Area() { ::munmap(data_, size_); }

Status Region::MapArea(const Job& job, std::unique_ptr<Area>* out) {
  out->reset();
  if (job.page_state_size == 0) return Status::Corruption(kWhat + JobName(job) + " has no page-state area", path_);
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno(kWhat + "stat", path_, errno);
  if (uint64_t(st.st_size) < job.page_state_offset + job.page_state_size) {
    return Status::Corruption(kWhat + "is " + std::to_string(st.st_size) + " bytes, shorter than " +
                                  JobName(job) + "'s page-state area (" +
                                  std::to_string(job.page_state_offset + job.page_state_size) + ")",
                              path_);
  }
  void* p = ::mmap(nullptr, job.page_state_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_,
                   off_t(job.page_state_offset));
  if (p == MAP_FAILED) return Status::FromErrno(kWhat + "map the page-state area", path_, errno);
  out->reset(new Area(static_cast<uint8_t*>(p), job.page_state_size));
  return Status::OK();
}

// ---- Progress (for `status`) ----

Status Region::ReadProgress(const Job& job, JobProgress* out) {
  *out = JobProgress();
  const std::string name = kWhat + JobName(job) + ": per-page state area";
  if (job.page_state_size == 0) return Status::NotFound(name + ": none (size 0)", path_);
  // The section's decoder bounds these already; checked again here since
  // `job` is the caller's, and the sums below must not wrap.
  if (job.page_state_offset < kFixedSize || job.page_state_size < kPageStateHeaderSize ||
      job.page_state_size > kMaxPageStateSize || job.page_state_offset > kMaxPageStateSize) {
    return Status::Corruption(name + ": offset " + std::to_string(job.page_state_offset) + ", size " +
                                  std::to_string(job.page_state_size) + " out of range",
                              path_);
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno(kWhat + "stat", path_, errno);
  const uint64_t end = job.page_state_offset + job.page_state_size;
  if (uint64_t(st.st_size) < end) {
    return Status::NotFound(name + ": ends at " + std::to_string(end) + ", beyond the file's " +
                                std::to_string(st.st_size) + " bytes",
                            path_);
  }
  // Others advance the counters while we read: a torn read can only show
  // an impossible combination, which a later read does not.
  Status s;
  for (int attempt = 0; attempt < 3; attempt++) {
    uint8_t h[kPageStateHeaderSize];
    s = PreadFull(fd_, h, sizeof h, job.page_state_offset, path_);
    if (!s.ok()) return s;
    JobProgress p{DecodeFixed64(h + kOffPsPages), DecodeFixed64(h + kOffPsPreserved),
                  DecodeFixed64(h + kOffPsDone)};
    const uint64_t words = (job.page_state_size - kPageStateHeaderSize) / kPageStateWordSize;
    if (p.pages > words) {
      s = Status::Corruption(name + ": pages " + std::to_string(p.pages) + " does not fit its " +
                                 std::to_string(job.page_state_size) + " bytes",
                             path_);
    } else if (p.preserved > p.pages) {
      s = Status::Corruption(name + ": preserved " + std::to_string(p.preserved) + " exceeds pages " +
                                 std::to_string(p.pages),
                             path_);
    } else if (p.done > p.pages) {
      s = Status::Corruption(name + ": done " + std::to_string(p.done) + " exceeds pages " +
                                 std::to_string(p.pages),
                             path_);
    } else {
      *out = p;
      return Status::OK();
    }
  }
  return s;
}

// ---- The writer gate (docs/REGION.md, "Writer gate") ----

bool Region::CloseWriterGate() noexcept {
  if (map_ == nullptr || !attached_) return false;
  uint32_t expected = 0;
  return std::atomic_ref<uint32_t>(*gate_).compare_exchange_strong(expected, BusyWord(false),
                                                                   std::memory_order_acq_rel);
}

void Region::OpenWriterGate() noexcept {
  if (map_ == nullptr || !attached_) return;
  uint32_t expected = BusyWord(false);
  std::atomic_ref<uint32_t>(*gate_).compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
  FutexWakeAll(gate_);
}

void Region::WaitAtWriterGate(uint32_t w) noexcept {
  COWBACKUP_SYNC_POINT("Region::writer_gate:wait");
  std::atomic_ref<uint32_t> gate(*gate_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWriterGateMaxWaitMs);
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      COWBACKUP_SYNC_POINT("Region::writer_gate:timeout");
      return;
    }
    const int left_ms = int(std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count());
    FutexWait(gate_, w, std::min(left_ms, SharedPages::kPollMs));
    if (gate.load(std::memory_order_acquire) != w) return;
    if (PartyGone(w)) {
      uint32_t expected = w;
      gate.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
      FutexWakeAll(gate_);
      return;
    }
  }
}

}  // namespace cowbackup::coord
