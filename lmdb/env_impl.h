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
#include "lmdb/io_intercept.h"

namespace cowbackup::lmdb {

struct BackupRun;

struct Env::Impl {
  MDB_env* env = nullptr;
  std::string path;
  std::string data_path;
  unsigned flags = 0;
  // The write hook of data.mdb; registered for every descriptor in
  // data_fds (me_fd and me_mfd) from Open until the destructor.
  FileHook file;
  std::vector<int> data_fds;

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
