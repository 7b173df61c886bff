// Env::Impl: what an open environment keeps besides the MDB_env, shared by
// lmdb.cc (RAII types) and backup.cc (the backup API).
#pragma once

#include <lmdb.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cowbackup/lmdb.hpp"
#include "engine/mutex.h"
#include "coord/region.h"
#include "lmdb/io_intercept.h"

namespace cowbackup::lmdb {

struct BackupRun;

// The begin-time gate: lets a backup waiting for the writer lock (to take
// T0) have it ahead of this process's next write txns. LMDB's writer mutex
// and nolock_writer_mu are not fair: a writer that commits and begins
// again at once takes the mutex back before a woken waiter runs, so
// writers committing back to back could keep a backup from starting for
// minutes. With the gate the backup waits for the write txn in progress
// and at most one txn of each writer thread already past the gate.
//
//   backup (TakeT0)                     writer (Txn::Begin, write txn)
//   announce()                          before_write_txn():
//   lock the writer mutex ...             waiting_ == 0: go on (idle path)
//   T0, unlock                            else wait until every backup
//   done()                                announced before it is done
//
// A writer waits only for backups announced before it arrived, so a
// stream of backups cannot starve the writers either. Write txns begun
// with mdb_txn_begin itself (the C API, Env::Attach, native_handle())
// pass the gate too: the link wraps mdb_txn_begin (io_intercept.h,
// RegisterEnv). Nested txns take no writer mutex and are not gated.
//
// Writers in other processes (docs/LMDB.md, "Several processes"): LMDB's
// writer mutex is process-shared and no fairer. With a region (Share()),
// the first announce() also sets the region's writer gate word to this
// process's busy word, and the last done() clears it; a write txn of any
// attached process that finds another process's word there waits until it
// changes, at most Region::kWriterGateMaxWaitMs, and clears it if that
// process is gone (docs/REGION.md, "Writer gate"; coord::Region holds the
// one implementation, which the SQLite shim uses too).
class T0Gate {
 public:
  // Before a write txn takes the writer lock. The idle path is one
  // acquire load of each gate word.
  void before_write_txn() {
    if (waiting_.load(std::memory_order_acquire) != 0) [[unlikely]] wait();
    if (region_ != nullptr) region_->BeforeWriterLock();
  }
  // A backup is about to wait for the writer lock / has taken T0 and
  // released it (or failed). Every announce() is matched by one done().
  void announce();
  void done();
  // At Env::Open, before any txn: the region whose writer gate this
  // process's backups close and its writers honour.
  void Share(coord::Region* region);

 private:
  void wait();
  std::atomic<uint32_t> waiting_{0};  // announced - done, for the idle path
  Mutex mu_;
  CondVar cv_;  // signalled by done()
  uint64_t announced_ GUARDED_BY(mu_) = 0;
  uint64_t done_ GUARDED_BY(mu_) = 0;
  bool region_closed_ GUARDED_BY(mu_) = false;  // this process set the region's word
  // Set by Share() before any txn, then only read.
  coord::Region* region_ = nullptr;
};

struct Env::Impl {
  MDB_env* env = nullptr;
  // False for an env the application opened and closes itself (Env::Attach).
  bool owns_env = true;
  std::string path;
  std::string data_path;
  unsigned flags = 0;
  // The write hook of data.mdb; registered for every descriptor in
  // data_fds (me_fd and me_mfd) from Open until the destructor.
  FileHook file;
  std::vector<int> data_fds;

  // Write txns begun through Txn::Begin yield here to a starting backup.
  T0Gate t0_gate;
  // kNoLock envs have no writer mutex in LMDB; write txns and the backup's
  // T0 serialize on this one instead (held from Txn::Begin to its end).
  std::mutex nolock_writer_mu;
  // mdb_env_set_mapsize must not run while any txn of this process is
  // active. The backup's T0 write txn is one the application does not
  // know about, so set_map_size() and T0 serialize here.
  std::mutex map_mu;
  // The thread holding a write txn of this env (for backup()'s check that
  // its caller is not that thread, which would deadlock on the mutex).
  std::atomic<std::thread::id> write_owner{};

  // Background backups, cancelled and joined when the env closes.
  Mutex runs_mu;
  std::vector<std::shared_ptr<BackupRun>> runs GUARDED_BY(runs_mu);

  ~Impl();
};

// Cancels and joins the env's background backups (backup.cc).
void StopBackups(Env::Impl* env);

}  // namespace cowbackup::lmdb
