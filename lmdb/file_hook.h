// FileHook: what every write liblmdb makes to one environment's data.mdb
// goes through before it lands (lmdb/io_intercept.h finds it by
// descriptor), and the environment's part in backups: its own process's,
// and those other processes run (docs/LMDB.md, "Several processes").
//
//   Env::Open --> FileHook::Open: attaches to the coordination region
//                 `<env>/cowbackup-region` (coord/region.h)
//   __wrap_pwrite/writev/... --> FileHook::BeforeWrite (one acquire load
//                 of the region's armed word while no job is armed)
//
// Several processes. Every process that opens the environment through this
// library (read-write, without MDB_WRITEMAP or MDB_NOLOCK) attaches to the
// region, and a backup in any of them arms the region's word at its T0.
// A write that sees it armed is counted inside the job (Region::Enter/
// Leave) and goes either to this process's own job (`hook`, its CopyJob in
// shared mode) or, for another process's, through the job's shared page
// table as one of its participants (engine/shared_pages.h, WriteThrough).
// Without a region (it could not be attached: region_error(); or the env
// takes no part) a private word stands in, and only this process's jobs
// exist.
//
// Commit tracking (foreign-commit detection). LMDB gives every commit that
// writes anything the txnid of the previous one plus one (mdb_txn_renew0:
// mti_txnid + 1, under the writer mutex), and writes it last, in the meta
// page (mdb_env_write_meta: bytes [32, 152) of page txnid & 1, txnid at
// 144). So while a job runs, each meta-page write this hook sees (any
// participant's, in any process) must carry the last txnid seen plus one;
// the last one is kept in the job's shared table (SharedPages::counter(),
// mod 2^32), or privately without a region, starting from T0's. A commit
// made by a process that does not take part (plain liblmdb, MDB_WRITEMAP,
// no region) shows as a jump at the next participant's commit, or, at the
// end check, as LMDB's txnid (read under the writer lock, so no commit is
// halfway) differing from the last one seen. Counting meta-page writes, not
// Txn::commit calls, is exact: a commit with nothing to write writes no
// meta page and takes no txnid, a commit that fails before its meta page
// takes none either, and a commit made on the native handle by a process
// that takes part is seen like any other.
// Not detected: a non-participant's write txn that spills pages into
// data.mdb (mdb_page_spill, very large txns) and then aborts, or that dies
// between its page writes and its meta page (docs/LMDB.md).
//
// Thread safety: BeforeWrite/BeforeTruncate from any writing thread (LMDB
// serializes them under its writer mutex, but a job's copier runs beside
// them); Arm/Disarm from the backup's threads, under the writer lock.
#pragma once

#include <sys/stat.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "coord/armed_word.h"
#include "coord/participation.h"
#include "coord/region.h"
#include "cowbackup/status.h"
#include "engine/mutex.h"
#include "engine/write_hook.h"
#include "lmdb/env_source.h"

namespace cowbackup::lmdb {

// Test instrumentation: sees every intercepted write to a hooked
// descriptor, with its bytes, before it lands. Called on the writing thread.
class WriteObserver {
 public:
  virtual ~WriteObserver() = default;
  virtual void on_write(int fd, uint64_t offset, const struct iovec* iov, int iovcnt) = 0;
  virtual void on_truncate(int fd, uint64_t new_size) = 0;
};

// The per-environment state of data.mdb. Owned by the Env; unregistered
// from the descriptor table before mdb_env_close.
class FileHook {
 public:
  FileHook() = default;
  ~FileHook();
  FileHook(const FileHook&) = delete;
  FileHook& operator=(const FileHook&) = delete;

  // Test instrumentation (above).
  std::atomic<WriteObserver*> observer{nullptr};
  // This process's jobs arm it; BeforeWrite reaches it while one is armed.
  WriteHook hook;

  // Env::Open, before any write txn: data.mdb as LMDB opened it (`data_fd`
  // is LMDB's me_fd, kept open by LMDB; `data` its fstat), and the region
  // to attach to ("" to take no part: then `why_not` says why). An env
  // whose writes cannot be seen (MDB_WRITEMAP) still attaches to
  // `unseen_region_path`, as such (coord::AttachOptions::writes_unseen), so
  // that status lists it and backups refuse to start while it is open.
  void Open(int data_fd, const struct stat& data, const std::string& data_path, uint32_t page_size,
            const std::string& region_path, const std::string& why_not,
            const std::string& unseen_region_path = "");

  // io_intercept, before every write to a hooked descriptor: one acquire
  // load while no job is armed in any process.
  void BeforeWrite(uint64_t offset, const struct iovec* iov, int iovcnt, uint64_t len) noexcept {
    if (ArmedWord() != 0) [[unlikely]] SlowWrite(offset, iov, iovcnt, len, /*truncate=*/false);
  }
  void BeforeTruncate(uint64_t new_size) noexcept {
    if (ArmedWord() != 0) [[unlikely]] SlowWrite(new_size, nullptr, 0, 0, /*truncate=*/true);
  }

  // The region (null if none; then region_error() says why).
  coord::Region* region() const { return region_.get(); }
  const Status& region_error() const { return region_error_; }
  uint32_t page_size() const { return page_size_; }
  int data_fd() const { return data_fd_; }
  const std::string& data_path() const { return data_path_; }

  // ---- This process's job (lmdb/backup.cc), under the writer lock ----
  // At T0, after BackupJob::Begin armed `hook`: starts commit tracking from
  // `t0_txnid` (in `part`'s shared table when the job is the region's) and
  // arms the job for the write path: with a region, its word `word` and
  // T0 facts `t0`.
  Status Arm(uint64_t word, const std::string& t0, uint64_t t0_txnid, coord::Participation* part);
  // After the job's hook was disarmed: finishes the region's job and waits
  // (bounded) for this process's writers to leave it.
  void Disarm();
  // OK, or why commit tracking failed the job (a commit it did not see).
  Status TrackingError() const;
  // The last txnid a commit tracked since T0 carried, mod 2^32.
  uint32_t LastTxnid() const;

 private:
  uint64_t ArmedWord() const noexcept { return armed_.load(); }
  void SlowWrite(uint64_t offset, const struct iovec* iov, int iovcnt, uint64_t len, bool truncate) noexcept;
  // A write of this process's own job.
  void OwnWrite(uint64_t offset, const struct iovec* iov, int iovcnt, uint64_t len, bool truncate) noexcept;
  // A job of another process: this process's part in it (file_hook.cc).
  struct Part;
  std::shared_ptr<Part> JoinedPart(uint64_t word);
  void TakePart(const Part& part, uint64_t offset, const struct iovec* iov, int iovcnt, uint64_t len,
                bool truncate) noexcept;
  void SetTrackingError(const Status& why) noexcept;
  // The last txnid seen: the own job's shared table's, else private.
  std::atomic_ref<uint32_t> LastRef() const {
    SharedPages* shared = own_shared_.load(std::memory_order_acquire);
    return shared != nullptr ? shared->counter() : std::atomic_ref<uint32_t>(last_txnid_);
  }

  int data_fd_ = -1;
  uint32_t page_size_ = 0;
  std::string data_path_;
  std::unique_ptr<coord::Region> region_;
  std::unique_ptr<coord::Region> unseen_region_;  // held for its slot only (Open)
  Status region_error_;

  coord::ArmedWord armed_;  // bound to region_ by Open
  // This process's job's shared table, or null (then last_txnid_ counts).
  std::atomic<SharedPages*> own_shared_{nullptr};
  std::atomic<coord::Participation*> own_part_{nullptr};
  mutable uint32_t last_txnid_ = 0;  // only through LastRef()'s atomic_ref
  std::atomic<bool> tracking_failed_{false};
  mutable Mutex error_mu_;
  Status tracking_error_ GUARDED_BY(error_mu_);

  Mutex part_mu_;
  std::shared_ptr<Part> part_ GUARDED_BY(part_mu_);  // the last job joined
};

// An environment as mdb_env_open left it, read by Env::Open (through
// liblmdb.a) or by the preload library (through the program's liblmdb.so).
struct OpenedEnv {
  std::string path;        // as given to mdb_env_open
  std::string data_path;   // <path>/data.mdb, or path itself with MDB_NOSUBDIR
  unsigned flags = 0;      // mdb_env_get_flags
  int me_fd = -1;          // mdb_env_get_fd
  uint32_t page_size = 0;  // mdb_env_stat's ms_psize
};

// Why an env opened with `flags` takes no part in backups other processes
// run, or "" if it does (docs/LMDB.md, "Several processes").
const char* WhyNoPart(unsigned flags);

// The one path from an opened env to one whose writes reach `hook`: finds
// liblmdb's descriptors of data.mdb among `opened` (those mdb_env_open
// opened: me_fd and every other one on its inode, me_mfd), registers them
// (lmdb/io_intercept.h; *data_fds gets them), then opens `hook` on the
// region (or records why it takes no part). On failure the caller
// unregisters the hook (UnregisterHook).
Status HookOpenedEnv(const OpenedEnv& env, const std::vector<int>& opened, FileHook* hook,
                     std::vector<int>* data_fds);

}  // namespace cowbackup::lmdb
