// cowbackup LMDB wrapper: RAII types over Debian's unmodified liblmdb 0.9.24
// and hot, begin-time backups that pin no pages.
//
// USING
//   #include "cowbackup/lmdb.hpp"   // CMake: cowbackup_lmdb in-tree, cowbackup::lmdb installed
//   namespace cl = cowbackup::lmdb;
//   std::unique_ptr<cl::Env> env;
//   Status s = cl::Env::Open("/var/db/app", {.map_size = 1ull << 30}, &env);
//   cl::Txn txn;  s = cl::Txn::Begin(*env, &txn);
//   cl::Dbi dbi;  s = cl::Dbi::Open(txn, nullptr, 0, &dbi);
//   s = txn.put(dbi, "key", "value");  s = txn.commit();
//   s = env->backup("/backups/app.cowbak", BackupOptions{});   // while writers run
//   // restore: cowbackup restore app.cowbak /var/db/app-restored  (a directory
//   // holding data.mdb that mdb_stat / mdb_dump / Env::Open read)
//
// LINKING
//   cowbackup_lmdb links liblmdb.a (not liblmdb.so) with the linker's --wrap
//   on the write calls liblmdb makes (lmdb/io_intercept.h says why). Do not
//   also link liblmdb.so / -llmdb into the same program: Env::Open detects an
//   env opened by another liblmdb and fails rather than back it up wrongly.
//
// WHAT A BACKUP IS
//   backup() serializes with LMDB's single writer (it begins a write txn,
//   which takes the writer mutex), reads the newest meta page (txnid T,
//   last_pgno L), arms the copy-on-write hook and aborts the txn: that is
//   T0. It then copies pages 0..L with no read transaction held; writers
//   keep committing and reusing free pages, and every page below L+1 they
//   overwrite before the copier got there has its pre-image saved first.
//   The archive restores to a data.mdb whose newest meta page is T's.
//   LMDB's writer mutex is not fair, so while a backup waits for it, write
//   Txns of this process that Begin after it wait until it has taken T0,
//   and those of other attached processes up to 250 ms: it waits for at
//   most one txn per writer thread (docs/LMDB.md).
//
// SEVERAL PROCESSES
//   Every process that opens the env through this library (read-write,
//   without MDB_WRITEMAP or MDB_NOLOCK) attaches to the env's coordination
//   region and takes part in a backup any of them (or `cowbackup backup`)
//   runs: its writes preserve pre-images for that job. A commit made by a
//   process that takes no part (plain liblmdb, MDB_WRITEMAP) fails the
//   backup by name (docs/LMDB.md, "Several processes").
//
// LIMITATIONS
//   - A non-participant's write txn that spills pages into data.mdb and
//     aborts is not detected (docs/LMDB.md).
//   - MDB_WRITEMAP envs write through the memory map: backup refuses them
//     (kNotSupported). Read-only envs are refused too (T0 needs the writer
//     lock).
//   - backup(), and BackupTask::wait(), must not be called from a thread
//     holding a write Txn of the same env (kBusy): they need the writer
//     mutex (T0, and the end check).
//
// TYPES
//   LMDB's own types stay out of this header: keys and values are
//   std::string_view (pointing into the map; valid until the txn ends or
//   the next write in it), flags are our constants with LMDB's values
//   (lmdb.cc checks they match). native_handle() returns the MDB_* pointer
//   (forward-declared) for the rare call we do not wrap.
//
// THREAD-SAFETY
//   As LMDB: an Env is shared by all threads; a Txn and its Cursors belong
//   to one thread (read txns may move with kNoTls); one write Txn at a
//   time per env. backup()/start_backup() and BackupTask may be called
//   from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "cowbackup/job.h"
#include "cowbackup/status.h"

struct MDB_env;
struct MDB_txn;
struct MDB_cursor;

namespace cowbackup::lmdb {

// Environment flags (mdb_env_open), values as in lmdb.h.
inline constexpr unsigned kNoSubdir = 0x4000;
inline constexpr unsigned kNoSync = 0x10000;
inline constexpr unsigned kReadOnly = 0x20000;
inline constexpr unsigned kNoMetaSync = 0x40000;
inline constexpr unsigned kWriteMap = 0x80000;
inline constexpr unsigned kMapAsync = 0x100000;
inline constexpr unsigned kNoTls = 0x200000;
inline constexpr unsigned kNoLock = 0x400000;
inline constexpr unsigned kNoReadAhead = 0x800000;
inline constexpr unsigned kNoMemInit = 0x1000000;
// Database flags (mdb_dbi_open).
inline constexpr unsigned kReverseKey = 0x02;
inline constexpr unsigned kDupSort = 0x04;
inline constexpr unsigned kIntegerKey = 0x08;
inline constexpr unsigned kDupFixed = 0x10;
inline constexpr unsigned kCreate = 0x40000;
// Write flags (mdb_put, mdb_cursor_put).
inline constexpr unsigned kNoOverwrite = 0x10;
inline constexpr unsigned kNoDupData = 0x20;
inline constexpr unsigned kAppend = 0x20000;

struct EnvOptions {
  unsigned flags = 0;
  uint64_t map_size = 0;     // bytes; 0 = LMDB's default, or the file's if larger
  unsigned max_dbs = 0;      // named databases; 0 = only the main one
  unsigned max_readers = 0;  // 0 = LMDB's default (126)
  unsigned mode = 0644;      // for files LMDB creates
  // Open only an environment that already exists, changing nothing in
  // data.mdb: before mdb_env_open, data.mdb must be a regular file (not a
  // symbolic link, FIFO or device) holding two valid LMDB meta pages, and
  // mdb_env_open may neither create it nor follow a link to it; otherwise
  // Open fails naming the problem. (An empty data.mdb would otherwise be
  // initialized.) lock.mdb is created if missing, as any LMDB reader does.
  // For opening an environment only to back it up (the CLI does).
  bool existing_only = false;
};

struct EnvInfo {
  uint32_t page_size = 0;
  uint64_t map_size = 0;
  uint64_t last_pgno = 0;   // last page used by the newest meta page
  uint64_t last_txnid = 0;  // txnid of the newest meta page
  unsigned max_readers = 0;
  unsigned num_readers = 0;
  uint64_t entries = 0;     // in the main database
  uint64_t file_bytes = 0;  // size of data.mdb
};

struct DbStat {
  uint32_t page_size = 0;
  unsigned depth = 0;
  uint64_t branch_pages = 0, leaf_pages = 0, overflow_pages = 0, entries = 0;
};

// What a backup took at T0, and how it ended.
struct BackupResult {
  Summary summary;
  uint64_t txnid = 0;      // of the T0 meta page: the restored env's newest
  uint64_t last_pgno = 0;  // of the T0 meta page
  uint64_t t0_pages = 0;   // last_pgno + 1: pages in the archive
  uint64_t map_size = 0;   // the env's map size at T0
  uint32_t page_size = 0;
};

class BackupTask;
class Txn;

// An open environment. Closing (the destructor) cancels and waits for the
// env's running backups, then calls mdb_env_close: every Txn and Cursor
// must be gone by then, as LMDB requires.
class Env {
 public:
  static Status Open(const std::string& path, const EnvOptions& options, std::unique_ptr<Env>* out);
  // Takes an environment the caller opened itself (mdb_env_create and
  // mdb_env_open of the liblmdb this library links) into backups, as Open
  // does: its data.mdb writes reach the copy-on-write hook and it attaches
  // to the coordination region. The caller keeps the MDB_env: it must
  // destroy this Env before mdb_env_close. Refused (NotSupported, naming
  // the flag) for read-only, MDB_WRITEMAP and MDB_NOLOCK envs, which could
  // not take part; NotSupported too if the env's liblmdb is not the one
  // whose writes this library intercepts. Call it before the program's
  // first write txn on the env; its write txns, begun with mdb_txn_begin,
  // yield to a starting backup as Txn::Begin's do (the link wraps
  // mdb_txn_begin). Destroy it, like mdb_env_close, only while no txn of
  // the env is active or beginning. The C API (cowbackup/lmdb.h) is this.
  static Status Attach(MDB_env* env, std::unique_ptr<Env>* out);
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  // mdb_env_set_mapsize: grows (or shrinks) the map. LMDB requires that no
  // transaction of this process is active; a running backup holds none.
  Status set_map_size(uint64_t bytes);
  Status info(EnvInfo* info) const;
  Status sync(bool force);
  const std::string& path() const;
  const std::string& data_path() const;  // data.mdb
  unsigned flags() const;

  // LMDB's own hot copy (mdb_env_copyfd2): holds one read txn for the
  // whole copy, so writers cannot reuse pages freed meanwhile. For
  // comparison in tests and benchmarks.
  Status copy_to_fd(int fd, bool compact = false);

  // A begin-time backup to `dest` (archive or plain image, per options;
  // "-" streams to stdout). Returns when the backup is complete.
  Status backup(const std::string& dest, const BackupOptions& options, BackupResult* result = nullptr);
  // The same, streaming the archive to `fd` (a pipe, socket or file).
  Status backup_to_fd(int fd, const BackupOptions& options, BackupResult* result = nullptr);
  // The same, on a background thread. Returns once T0 is taken (so the
  // backup covers everything committed before the call), or an error.
  Status start_backup(const std::string& dest, const BackupOptions& options,
                      std::unique_ptr<BackupTask>* task);

  // OK if this Env takes part in backups any process runs (it is attached
  // to the environment's coordination region, docs/LMDB.md "Several
  // processes"), else why not: read-only, MDB_WRITEMAP or MDB_NOLOCK, or
  // the region could not be attached. An Env that takes no part still
  // backs up what only this process writes.
  Status coordination() const;

  MDB_env* native_handle() const;

  struct Impl;
  Impl* impl() const { return impl_.get(); }

 private:
  explicit Env(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A backup running in the background. Destroying it cancels it and waits.
class BackupTask {
 public:
  ~BackupTask();
  BackupTask(const BackupTask&) = delete;
  BackupTask& operator=(const BackupTask&) = delete;

  Progress progress() const;
  Summary summary() const;
  // The txnid of the T0 meta page (fixed once start_backup has returned).
  uint64_t t0_txnid() const;
  void cancel();
  bool done() const;
  // Waits for the end; the backup's final status. kBusy at once from a
  // thread holding a write Txn of the env: the backup's end check needs the
  // writer lock, so it cannot end before that txn does.
  Status wait(BackupResult* result = nullptr);

  struct Impl;

 private:
  friend class Env;
  explicit BackupTask(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Dbi;

// A transaction. Move-only; the destructor aborts one still active.
// A write txn holds LMDB's writer mutex from Begin to commit/abort.
class Txn {
 public:
  Txn() = default;
  ~Txn();
  Txn(Txn&& other) noexcept;
  Txn& operator=(Txn&& other) noexcept;

  static Status Begin(Env& env, Txn* out, bool read_only = false);
  Status commit();
  void abort();
  // Read txns: release the snapshot and take a fresh one later.
  void reset();
  Status renew();

  // NotFound when the key is absent. `value` points into the map.
  Status get(const Dbi& dbi, std::string_view key, std::string_view* value) const;
  Status put(const Dbi& dbi, std::string_view key, std::string_view value, unsigned flags = 0);
  Status del(const Dbi& dbi, std::string_view key);
  Status stat(const Dbi& dbi, DbStat* stat) const;

  bool active() const { return txn_ != nullptr; }
  bool read_only() const { return read_only_; }
  uint64_t id() const;
  Env* env() const { return env_; }
  MDB_txn* native_handle() const { return txn_; }

 private:
  void finish();  // bookkeeping after commit/abort
  Env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
  bool read_only_ = false;
};

// A database handle. LMDB keeps handles open until the env closes and
// mdb_dbi_close is unsafe while any txn may use the handle, so a Dbi is a
// plain value and closing is left to the env (the RAII owner).
class Dbi {
 public:
  Dbi() = default;
  // `name` nullptr = the main database. A handle opened in a write txn
  // becomes visible to others when that txn commits.
  static Status Open(Txn& txn, const char* name, unsigned flags, Dbi* out);
  unsigned handle() const { return dbi_; }
  bool valid() const { return valid_; }

 private:
  unsigned dbi_ = 0;
  bool valid_ = false;
};

// A cursor. Move-only; the destructor closes it. A cursor of a write txn
// must be destroyed before the txn ends (LMDB frees it at commit).
class Cursor {
 public:
  Cursor() = default;
  ~Cursor();
  Cursor(Cursor&& other) noexcept;
  Cursor& operator=(Cursor&& other) noexcept;

  static Status Open(const Txn& txn, const Dbi& dbi, Cursor* out);
  // Each positions the cursor and returns the entry there; NotFound past
  // either end or when nothing matches.
  Status first(std::string_view* key, std::string_view* value);
  Status last(std::string_view* key, std::string_view* value);
  Status next(std::string_view* key, std::string_view* value);
  Status prev(std::string_view* key, std::string_view* value);
  // The first entry with key >= `key` (MDB_SET_RANGE).
  Status seek(std::string_view key, std::string_view* found_key, std::string_view* value);
  Status put(std::string_view key, std::string_view value, unsigned flags = 0);
  Status del();
  void close();
  MDB_cursor* native_handle() const { return cursor_; }

 private:
  Status get(std::string_view* key, std::string_view* value, int op, const char* what);
  MDB_cursor* cursor_ = nullptr;
};

// An LMDB return code as a Status: "<operation>: <mdb_strerror>" plus
// `where` (a path). MDB_NOTFOUND -> NotFound, MDB_MAP_FULL / ENOSPC ->
// NoSpace, EINVAL / MDB_INCOMPATIBLE / MDB_BAD_* -> InvalidArgument,
// MDB_CORRUPTED / MDB_PAGE_NOTFOUND / MDB_INVALID -> Corruption,
// MDB_VERSION_MISMATCH -> NotSupported, EBUSY / EAGAIN / MDB_READERS_FULL /
// MDB_MAP_RESIZED -> Busy, anything else -> IOError.
Status FromMdb(int rc, const std::string& operation, const std::string& where = {});

}  // namespace cowbackup::lmdb
