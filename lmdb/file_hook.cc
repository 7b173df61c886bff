#include "lmdb/file_hook.h"

#include <errno.h>
#include <lmdb.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>

#include "backup/db_image.h"
#include "lmdb/io_intercept.h"

namespace cowbackup::lmdb {

namespace {

// The txnid a write to data.mdb carries into a meta page (the bytes at
// kMetaTxnidOffset of page 0 or 1, all within the write's buffers), if it
// carries one. LMDB writes it in host byte order.
bool MetaTxnid(uint64_t offset, const struct iovec* iov, int iovcnt, uint32_t page_size, uint64_t* txnid) {
  uint64_t bytes = 0;
  for (int i = 0; i < iovcnt; ++i) bytes += iov[i].iov_len;
  bool found = false;
  for (uint64_t pgno = 0; pgno < 2; ++pgno) {
    const uint64_t field = pgno * page_size + kMetaTxnidOffset;
    if (field < offset || field + 8 > offset + bytes) continue;
    uint8_t buf[8];
    uint64_t skip = field - offset;
    size_t got = 0;
    for (int i = 0; i < iovcnt && got < sizeof buf; ++i) {
      const uint64_t n = iov[i].iov_len;
      if (skip >= n) {
        skip -= n;
        continue;
      }
      const size_t take = size_t(std::min<uint64_t>(n - skip, sizeof buf - got));
      memcpy(buf + got, static_cast<const uint8_t*>(iov[i].iov_base) + skip, take);
      got += take;
      skip = 0;
    }
    uint64_t v = 0;
    memcpy(&v, buf, sizeof v);
    *txnid = found ? std::max(*txnid, v) : v;
    found = true;
  }
  return found;
}

// One step of commit tracking (file_hook.h): a meta-page write carrying
// txnid `v` after `last_ref` (mod 2^32). OK if it is the next commit, else
// why not. Stores `v`.
Status TxnidStep(std::atomic_ref<uint32_t> last_ref, uint64_t v, const std::string& path) {
  const uint32_t last = last_ref.load(std::memory_order_relaxed);
  last_ref.store(uint32_t(v), std::memory_order_relaxed);
  const uint32_t ahead = uint32_t(v) - last;  // wraps like the counter
  if (ahead == 1) return Status::OK();
  char buf[400];
  if (ahead == 0 || ahead >= 0x80000000u) {
    // Back (or the same): mdb_env_write_meta restores the older meta page
    // after its write failed.
    snprintf(buf, sizeof buf,
             "a meta page of data.mdb was rewritten with txnid %llu after txnid %llu was committed "
             "(LMDB restores the older meta page when writing the new one failed): the copy was "
             "discarded",
             (unsigned long long)v, (unsigned long long)(v + (last - uint32_t(v))));
  } else {
    snprintf(buf, sizeof buf,
             "another process committed to the environment during the backup without taking part "
             "in it: a commit with txnid %llu followed txnid %llu, so %u commit(s) in between "
             "reached data.mdb unseen (a process using liblmdb directly, not through the cowbackup "
             "LMDB library, one with MDB_WRITEMAP or MDB_NOLOCK, or one that could not attach to "
             "the coordination region); the copy was discarded",
             (unsigned long long)v, (unsigned long long)(v - ahead), ahead - 1);
  }
  return Status::Corruption(buf, path);
}

}  // namespace

// This process's part in a job another process owns.
struct FileHook::Part {
  uint64_t word = 0;  // the job's armed word, without the failed bit
  std::unique_ptr<coord::Participation> p;  // null: could not join (the job was failed)
  std::unique_ptr<EnvSource> source;
};

FileHook::~FileHook() {
  MutexLock lock(&part_mu_);
  part_.reset();  // before the region it refers to
}

void FileHook::Open(int data_fd, const struct stat& data, const std::string& data_path, uint32_t page_size,
                    const std::string& region_path, const std::string& why_not,
                    const std::string& unseen_region_path) {
  data_fd_ = data_fd;
  page_size_ = page_size;
  data_path_ = data_path;
  if (region_path.empty()) {
    region_error_ = Status::NotSupported(why_not, data_path);
    if (!unseen_region_path.empty()) {
      coord::AttachOptions unseen;
      unseen.writes_unseen = true;
      (void)coord::Region::Attach(unseen_region_path, data, unseen, &unseen_region_);  // best effort: a report
    }
    return;
  }
  // data.mdb's fstat, not a descriptor of our own: closing one would drop
  // this process's POSIX locks on the inode (LMDB's are on lock.mdb, but
  // an application's may not be).
  region_error_ = coord::Region::Attach(region_path, data, coord::AttachOptions(), &region_);
  armed_.Bind(region_.get());
  hook.commits.ShareHistory(region_ != nullptr ? region_->commit_history() : nullptr);
}

Status FileHook::Arm(uint64_t word, const std::string& t0, uint64_t t0_txnid, coord::Participation* part) {
  {
    MutexLock lock(&error_mu_);
    tracking_error_ = Status::OK();
  }
  tracking_failed_.store(false, std::memory_order_relaxed);
  SharedPages* shared = part != nullptr ? &part->pages() : nullptr;
  if (shared != nullptr) shared->counter().store(uint32_t(t0_txnid), std::memory_order_relaxed);
  std::atomic_ref<uint32_t>(last_txnid_).store(uint32_t(t0_txnid), std::memory_order_relaxed);
  own_part_.store(part, std::memory_order_release);
  own_shared_.store(shared, std::memory_order_release);
  return armed_.Arm(word, t0);
}

void FileHook::Disarm() {
  armed_.Disarm();
  own_shared_.store(nullptr, std::memory_order_release);
  own_part_.store(nullptr, std::memory_order_release);
}

Status FileHook::TrackingError() const {
  if (!tracking_failed_.load(std::memory_order_acquire)) return Status::OK();
  MutexLock lock(&error_mu_);
  return tracking_error_;
}

uint32_t FileHook::LastTxnid() const { return LastRef().load(std::memory_order_relaxed); }

void FileHook::SetTrackingError(const Status& why) noexcept {
  {
    MutexLock lock(&error_mu_);
    if (!tracking_failed_.load(std::memory_order_relaxed)) tracking_error_ = why;
    tracking_failed_.store(true, std::memory_order_release);
  }
  // A shared job fails for every party, and its copier stops.
  if (coord::Participation* part = own_part_.load(std::memory_order_acquire)) part->fail(why);
}

void FileHook::SlowWrite(uint64_t offset, const struct iovec* iov, int iovcnt, uint64_t len,
                         bool truncate) noexcept {
  if (region_ == nullptr) {  // only this process's jobs
    OwnWrite(offset, iov, iovcnt, len, truncate);
    return;
  }
  const uint64_t word = region_->load_armed();
  if (word == 0 || !region_->Enter(word)) return;  // the job ended meanwhile
  if (armed_.own(word)) {
    OwnWrite(offset, iov, iovcnt, len, truncate);
  } else if ((word & coord::layout::kFailedBit) == 0) {
    if (std::shared_ptr<Part> part = JoinedPart(word)) TakePart(*part, offset, iov, iovcnt, len, truncate);
  }
  region_->Leave();
}

void FileHook::OwnWrite(uint64_t offset, const struct iovec* iov, int iovcnt, uint64_t len,
                        bool truncate) noexcept {
  if (truncate) {
    hook.before_truncate(offset);
    return;
  }
  hook.before_write(offset, len);
  uint64_t txnid = 0;
  if (!MetaTxnid(offset, iov, iovcnt, page_size_, &txnid)) return;
  try {
    Status s = TxnidStep(LastRef(), txnid, data_path_);
    if (!s.ok()) SetTrackingError(s);
  } catch (...) {
    SetTrackingError(Status::IOError("out of memory while tracking commits", data_path_));
  }
}

// Inside the job (Region::Enter), so it cannot end and be replaced while
// we join it: the section read here is the job whose word we saw.
std::shared_ptr<FileHook::Part> FileHook::JoinedPart(uint64_t word) {
  try {
    MutexLock lock(&part_mu_);
    if (part_ != nullptr && part_->word == word) return part_;
    coord::Job job;
    if (!region_->ReadRunningJob(word, &job)) return nullptr;  // this write goes ahead, the next looks again
    Status s;
    auto part = std::make_shared<Part>();
    part->word = word;
    unsigned page_size = 0;
    unsigned long long txnid = 0;
    if (sscanf(job.t0.c_str(), "lmdb1 %u %llu", &page_size, &txnid) != 2) {
      s = Status::Corruption("the job's T0 facts are not an LMDB job's: \"" + job.t0.substr(0, 40) + "\"",
                             region_->path());
    } else if (page_size != page_size_) {
      s = Status::Corruption("the job's T0 facts give page size " + std::to_string(page_size) +
                                 ", this process's environment has " + std::to_string(page_size_),
                             region_->path());
    } else {
      s = coord::Participation::Join(region_.get(), word, job, page_size_, &part->p);
    }
    if (!s.ok()) {
      // A job we cannot honour must not publish a copy that lacks our writes.
      region_->FailArmedJob(word);
      part->p.reset();
    } else {
      part->source = std::make_unique<EnvSource>(data_fd_, page_size_, data_path_);
    }
    part_ = part;
    return part;
  } catch (...) {
    region_->FailArmedJob(word);  // out of memory: fail it rather than miss a write
    return nullptr;
  }
}

void FileHook::TakePart(const Part& part, uint64_t offset, const struct iovec* iov, int iovcnt, uint64_t len,
                        bool truncate) noexcept {
  if (part.p == nullptr || !part.p->job_current()) return;
  SharedPages& pages = part.p->pages();
  const PageRange range = truncate ? PageRange{offset / page_size_, pages.pages()}
                                   : PageRange::FromBytes(offset, len, page_size_);
  (void)pages.WriteThrough(range, part.source.get(), part.p->volume(), page_size_);
  uint64_t txnid = 0;
  if (truncate || !MetaTxnid(offset, iov, iovcnt, page_size_, &txnid)) return;
  try {
    Status s = TxnidStep(pages.counter(), txnid, data_path_);
    if (!s.ok()) part.p->fail(s);
  } catch (...) {
    part.p->fail(Status::IOError("out of memory while tracking commits", data_path_));
  }
}

const char* WhyNoPart(unsigned flags) {
  if (flags & MDB_RDONLY) return "the environment is open read-only here: this process writes nothing";
  if (flags & MDB_WRITEMAP) {
    return "the environment is open with MDB_WRITEMAP, whose writes go through the memory map where "
           "no write can be intercepted: its commits fail a backup another process runs";
  }
  if (flags & MDB_NOLOCK) {
    return "the environment is open with MDB_NOLOCK: LMDB's writer lock, which a backup's begin-time "
           "instant takes, is not shared with other processes";
  }
  return "";
}

Status HookOpenedEnv(const OpenedEnv& env, const std::vector<int>& opened, FileHook* hook,
                     std::vector<int>* data_fds) {
  struct stat data;
  if (::fstat(env.me_fd, &data) != 0) return Status::FromErrno("fstat", env.data_path, errno);
  bool saw_me_fd = false;
  for (int fd : opened) {
    struct stat st;
    if (::fstat(fd, &st) != 0 || st.st_dev != data.st_dev || st.st_ino != data.st_ino) continue;
    saw_me_fd |= fd == env.me_fd;
    data_fds->push_back(fd);
  }
  if (!saw_me_fd) {
    return Status::NotSupported(
        "lmdb: mdb_env_open did not open data.mdb through cowbackup's write interception "
        "(is liblmdb.so linked ahead of liblmdb.a, or the --wrap link options missing?)",
        env.path);
  }
  // Writable envs without MDB_WRITEMAP also keep me_mfd (O_DSYNC, meta pages).
  const size_t expected = (env.flags & (MDB_RDONLY | MDB_WRITEMAP)) ? 1 : 2;
  if (data_fds->size() != expected) {
    return Status::NotSupported("lmdb: found " + std::to_string(data_fds->size()) +
                                    " descriptors of data.mdb, expected " + std::to_string(expected),
                                env.data_path);
  }
  for (int fd : *data_fds) {
    Status s = RegisterFd(fd, hook);
    if (!s.ok()) return s;
  }
  const std::string why_not = WhyNoPart(env.flags);
  const std::string path = coord::RegionPathForLmdb(env.path, (env.flags & MDB_NOSUBDIR) != 0);
  const bool unseen = (env.flags & MDB_WRITEMAP) != 0 && (env.flags & (MDB_RDONLY | MDB_NOLOCK)) == 0;
  hook->Open(env.me_fd, data, env.data_path, env.page_size, why_not.empty() ? path : "", why_not,
             unseen ? path : "");
  return Status::OK();
}

}  // namespace cowbackup::lmdb
