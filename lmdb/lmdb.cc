// RAII types over liblmdb: Env, Txn, Dbi, Cursor (include/cowbackup/lmdb.hpp).
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cassert>
#include <chrono>

#include "coord/region.h"
#include "engine/futex.h"
#include "engine/sync_point.h"
#include "lmdb/env_impl.h"
#include "lmdb/env_source.h"

namespace cowbackup::lmdb {

static_assert(kNoSubdir == MDB_NOSUBDIR && kNoSync == MDB_NOSYNC && kReadOnly == MDB_RDONLY &&
              kNoMetaSync == MDB_NOMETASYNC && kWriteMap == MDB_WRITEMAP &&
              kMapAsync == MDB_MAPASYNC && kNoTls == MDB_NOTLS && kNoLock == MDB_NOLOCK &&
              kNoReadAhead == MDB_NORDAHEAD && kNoMemInit == MDB_NOMEMINIT);
static_assert(kReverseKey == MDB_REVERSEKEY && kDupSort == MDB_DUPSORT &&
              kIntegerKey == MDB_INTEGERKEY && kDupFixed == MDB_DUPFIXED && kCreate == MDB_CREATE);
static_assert(kNoOverwrite == MDB_NOOVERWRITE && kNoDupData == MDB_NODUPDATA &&
              kAppend == MDB_APPEND);

namespace {
MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view View(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }
}  // namespace

Status FromMdb(int rc, const std::string& operation, const std::string& where) {
  if (rc == MDB_SUCCESS) return Status::OK();
  const std::string what = operation + ": " + mdb_strerror(rc);
  switch (rc) {
    case MDB_NOTFOUND:
      return Status::NotFound(what, where);
    case MDB_MAP_FULL:
    case ENOSPC:
    case EDQUOT:
      return Status::NoSpace(what, where);
    case EINVAL:
    case MDB_INCOMPATIBLE:
    case MDB_BAD_RSLOT:
    case MDB_BAD_TXN:
    case MDB_BAD_VALSIZE:
    case MDB_BAD_DBI:
    case MDB_KEYEXIST:
      return Status::InvalidArgument(what, where);
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
      return Status::Corruption(what, where);
    case MDB_VERSION_MISMATCH:
      return Status::NotSupported(what, where);
    case EBUSY:
    case EAGAIN:
    case MDB_READERS_FULL:
    case MDB_MAP_RESIZED:
      return Status::Busy(what, where);
    default:
      return Status::IOError(what, where);
  }
}

// ---------------------------------------------------------------------------
// Env

Env::Env(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Env::~Env() = default;

Env::Impl::~Impl() {
  StopBackups(this);
  // Unhook before closing: once mdb_env_close has closed the descriptors
  // their numbers may be reused by other files at once. mdb_env_close
  // writes nothing to data.mdb (no txn may be active).
  UnregisterEnv(&t0_gate);
  UnregisterHook(&file);
  if (env != nullptr && owns_env) mdb_env_close(env);
}

namespace {
// Hooks data.mdb's descriptors among `opened` and attaches the env to the
// coordination region (or records why not), before the application can
// begin a write txn: HookOpenedEnv (file_hook.h), the preload library's path
// too, with what liblmdb tells us.
Status HookEnv(Env::Impl* e, const std::vector<int>& opened) {
  OpenedEnv o;
  o.path = e->path;
  o.data_path = e->data_path;
  o.flags = e->flags;
  int rc = mdb_env_get_fd(e->env, &o.me_fd);
  if (rc != 0) return FromMdb(rc, "mdb_env_get_fd", e->path);
  MDB_stat st;
  rc = mdb_env_stat(e->env, &st);
  if (rc != 0) return FromMdb(rc, "mdb_env_stat", e->path);
  o.page_size = st.ms_psize;
  Status s = HookOpenedEnv(o, opened, &e->file, &e->data_fds);
  if (s.ok()) e->t0_gate.Share(e->file.region());
  return s;
}

// The one path from an open MDB_env to an env that takes part in backups,
// for Env::Open and Env::Attach: hook data.mdb's descriptors among
// `candidates`, then attach to the region. On failure ~Impl undoes it.
Status Join(Env::Impl* e, const std::vector<int>& candidates) {
  Status s = HookEnv(e, candidates);
  if (s.ok()) s = RegisterEnv(e->env, &e->t0_gate);
  return s;
}

// The descriptors open in this process on the inode of `e`'s data.mdb
// (me_fd's): me_fd and me_mfd, for an env opened before we could capture
// its opens. A descriptor the application opened on data.mdb itself would
// be found too, and HookOpenedEnv refuses the count.
Status DataFdsOf(Env::Impl* e, std::vector<int>* fds) {
  int me_fd = -1;
  int rc = mdb_env_get_fd(e->env, &me_fd);
  if (rc != 0) return FromMdb(rc, "mdb_env_get_fd", e->path);
  struct stat data;
  if (::fstat(me_fd, &data) != 0) return Status::FromErrno("fstat", e->data_path, errno);
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return Status::FromErrno("opendir", "/proc/self/fd", errno);
  while (const struct dirent* ent = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = strtol(ent->d_name, &end, 10);
    if (end == ent->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    struct stat st;
    if (::fstat(int(fd), &st) == 0 && st.st_dev == data.st_dev && st.st_ino == data.st_ino) {
      fds->push_back(int(fd));
    }
  }
  ::closedir(dir);
  return Status::OK();
}

// Whether the mdb_* functions this library calls (and so the program's:
// one definition per symbol in a program) are liblmdb.a's, linked into the
// same object as this code, where the --wrap link options send their write
// calls to __wrap_* (a link without those options fails: __real_* stay
// undefined). The wrong link that does link is liblmdb.so ahead of
// liblmdb.a: then mdb_env_open lives in liblmdb.so. Env::Open proves the
// right link by capturing mdb_env_open's opens; an env opened before
// Attach needs this instead.
Status CheckInterceptedLiblmdb(const std::string& path) {
  Dl_info ours{}, theirs{};
  if (::dladdr(reinterpret_cast<void*>(&Join), &ours) == 0 ||
      ::dladdr(reinterpret_cast<void*>(&mdb_env_open), &theirs) == 0 || ours.dli_fbase != theirs.dli_fbase) {
    return Status::NotSupported(
        std::string("lmdb attach: the program's mdb_env_open is in ") +
            (theirs.dli_fname ? theirs.dli_fname : "another object") +
            ", not in the liblmdb.a linked with cowbackup's write interception (is liblmdb.so / -llmdb "
            "linked ahead of it? link only cowbackup::lmdb): this environment's writes cannot be seen",
        path);
  }
  return Status::OK();
}
}  // namespace

Status Env::Open(const std::string& path, const EnvOptions& options, std::unique_ptr<Env>* out) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->data_path = (options.flags & MDB_NOSUBDIR) ? path : path + "/data.mdb";
  int rc = mdb_env_create(&impl->env);
  if (rc != 0) {
    impl->env = nullptr;
    return FromMdb(rc, "mdb_env_create", path);
  }
  if (options.map_size > 0 && (rc = mdb_env_set_mapsize(impl->env, size_t(options.map_size))) != 0) {
    return FromMdb(rc, "mdb_env_set_mapsize", path);
  }
  if (options.max_dbs > 0 && (rc = mdb_env_set_maxdbs(impl->env, options.max_dbs)) != 0) {
    return FromMdb(rc, "mdb_env_set_maxdbs", path);
  }
  if (options.max_readers > 0 && (rc = mdb_env_set_maxreaders(impl->env, options.max_readers)) != 0) {
    return FromMdb(rc, "mdb_env_set_maxreaders", path);
  }
  struct stat checked {};
  if (options.existing_only) {
    Status s = CheckDataFile(impl->data_path, &checked);
    if (!s.ok()) return s;
  }
  std::vector<int> opened;
  {
    OpenCapture capture(options.existing_only ? impl->data_path.c_str() : nullptr);
    rc = mdb_env_open(impl->env, path.c_str(), options.flags, mdb_mode_t(options.mode));
    opened = capture.fds();
  }
  if (rc != 0) return FromMdb(rc, "mdb_env_open", path);
  if (options.existing_only) {
    // What LMDB opened is the file checked above, not one swapped in since.
    int me_fd = -1;
    struct stat now;
    if (mdb_env_get_fd(impl->env, &me_fd) != 0 || ::fstat(me_fd, &now) != 0 ||
        now.st_dev != checked.st_dev || now.st_ino != checked.st_ino) {
      return Status::Busy("lmdb: data.mdb was replaced while the environment was being opened",
                          impl->data_path);
    }
  }
  unsigned flags = 0;
  mdb_env_get_flags(impl->env, &flags);
  impl->flags = flags;
  Status s = Join(impl.get(), opened);
  if (!s.ok()) return s;  // ~Impl unhooks and closes
  out->reset(new Env(std::move(impl)));
  return Status::OK();
}

Status Env::Attach(MDB_env* env, std::unique_ptr<Env>* out) {
  if (env == nullptr) return Status::InvalidArgument("lmdb attach: no environment (MDB_env* is null)");
  const char* path = nullptr;
  if (mdb_env_get_path(env, &path) != 0 || path == nullptr) {
    return Status::InvalidArgument("lmdb attach: the environment is not open (call mdb_env_open first)");
  }
  unsigned flags = 0;
  int rc = mdb_env_get_flags(env, &flags);
  if (rc != 0) return FromMdb(rc, "lmdb attach: mdb_env_get_flags", path);
  if (const char* why = WhyNoPart(flags); *why != '\0') {
    return Status::NotSupported(std::string("lmdb attach: cannot take part in backups: ") + why, path);
  }
  Status s = CheckInterceptedLiblmdb(path);
  if (!s.ok()) return s;
  auto impl = std::make_unique<Impl>();
  impl->env = env;
  impl->owns_env = false;
  impl->path = path;
  impl->data_path = (flags & MDB_NOSUBDIR) ? impl->path : impl->path + "/data.mdb";
  impl->flags = flags;
  std::vector<int> fds;
  s = DataFdsOf(impl.get(), &fds);
  if (s.ok()) s = Join(impl.get(), fds);
  if (!s.ok()) return s;  // ~Impl unhooks; the env stays the caller's
  out->reset(new Env(std::move(impl)));
  return Status::OK();
}

Status Env::set_map_size(uint64_t bytes) {
  if (impl_->write_owner.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
    // LMDB refuses it too (EINVAL); say so before waiting on map_mu, which
    // a backup taking T0 may hold while it waits for this thread's txn.
    return Status::InvalidArgument("mdb_env_set_mapsize: a write transaction is active", impl_->path);
  }
  std::lock_guard<std::mutex> lock(impl_->map_mu);
  return FromMdb(mdb_env_set_mapsize(impl_->env, size_t(bytes)), "mdb_env_set_mapsize", impl_->path);
}

Status Env::info(EnvInfo* out) const {
  MDB_envinfo ei;
  int rc = mdb_env_info(impl_->env, &ei);
  if (rc != 0) return FromMdb(rc, "mdb_env_info", impl_->path);
  MDB_stat st;
  rc = mdb_env_stat(impl_->env, &st);
  if (rc != 0) return FromMdb(rc, "mdb_env_stat", impl_->path);
  *out = EnvInfo{};
  out->page_size = st.ms_psize;
  out->map_size = ei.me_mapsize;
  out->last_pgno = ei.me_last_pgno;
  out->last_txnid = ei.me_last_txnid;
  out->max_readers = ei.me_maxreaders;
  out->num_readers = ei.me_numreaders;
  out->entries = st.ms_entries;
  struct stat fst;
  if (::stat(impl_->data_path.c_str(), &fst) != 0) {
    return Status::FromErrno("stat", impl_->data_path, errno);
  }
  out->file_bytes = uint64_t(fst.st_size);
  return Status::OK();
}

Status Env::sync(bool force) {
  return FromMdb(mdb_env_sync(impl_->env, force ? 1 : 0), "mdb_env_sync", impl_->path);
}

const std::string& Env::path() const { return impl_->path; }
const std::string& Env::data_path() const { return impl_->data_path; }
unsigned Env::flags() const { return impl_->flags; }
MDB_env* Env::native_handle() const { return impl_->env; }
Status Env::coordination() const {
  return impl_->file.region() != nullptr ? Status::OK() : impl_->file.region_error();
}

Status Env::copy_to_fd(int fd, bool compact) {
  return FromMdb(mdb_env_copyfd2(impl_->env, fd, compact ? MDB_CP_COMPACT : 0), "mdb_env_copyfd2",
                 impl_->path);
}

// ---------------------------------------------------------------------------
// T0Gate

void T0Gate::announce() {
  MutexLock lock(&mu_);
  announced_++;
  waiting_.store(uint32_t(announced_ - done_), std::memory_order_release);
  // Another process's backup may hold the word: this one then waits
  // without it (only one of them can own the job anyway).
  if (region_ != nullptr && !region_closed_) region_closed_ = region_->CloseWriterGate();
}

void T0Gate::done() {
  MutexLock lock(&mu_);
  done_++;
  waiting_.store(uint32_t(announced_ - done_), std::memory_order_release);
  if (region_closed_ && announced_ == done_) {
    region_->OpenWriterGate();
    region_closed_ = false;
  }
  cv_.SignalAll();
}

void T0Gate::wait() {
  MutexLock lock(&mu_);
  const uint64_t ahead = announced_;  // the backups this writer lets go first
  if (done_ < ahead) COWBACKUP_SYNC_POINT("lmdb::Txn::Begin:yield");
  while (done_ < ahead) cv_.Wait(&mu_);
}

void T0Gate::Share(coord::Region* region) { region_ = region; }

// ---------------------------------------------------------------------------
// Txn

Txn::~Txn() { abort(); }

Txn::Txn(Txn&& other) noexcept
    : env_(other.env_), txn_(other.txn_), read_only_(other.read_only_) {
  other.txn_ = nullptr;
}

Txn& Txn::operator=(Txn&& other) noexcept {
  if (this != &other) {
    abort();
    env_ = other.env_;
    txn_ = other.txn_;
    read_only_ = other.read_only_;
    other.txn_ = nullptr;
  }
  return *this;
}

Status Txn::Begin(Env& env, Txn* out, bool read_only) {
  out->abort();
  Env::Impl* e = env.impl();
  // Before the writer lock: a backup waiting for it goes first.
  if (!read_only) e->t0_gate.before_write_txn();
  std::unique_lock<std::mutex> nolock;
  if (!read_only && (e->flags & MDB_NOLOCK)) nolock = std::unique_lock<std::mutex>(e->nolock_writer_mu);
  MDB_txn* txn = nullptr;
  GateBypass passed;  // the gate above, before kNoLock's mutex
  int rc = mdb_txn_begin(e->env, nullptr, read_only ? MDB_RDONLY : 0, &txn);
  if (rc != 0) return FromMdb(rc, read_only ? "mdb_txn_begin(read)" : "mdb_txn_begin", e->path);
  if (!read_only) {
    e->write_owner.store(std::this_thread::get_id(), std::memory_order_relaxed);
    nolock.release();  // held until finish()
  }
  out->env_ = &env;
  out->txn_ = txn;
  out->read_only_ = read_only;
  return Status::OK();
}

void Txn::finish() {
  txn_ = nullptr;
  if (read_only_) return;
  Env::Impl* e = env_->impl();
  e->write_owner.store(std::thread::id(), std::memory_order_relaxed);
  if (e->flags & MDB_NOLOCK) e->nolock_writer_mu.unlock();
}

Status Txn::commit() {
  if (txn_ == nullptr) return Status::InvalidArgument("mdb_txn_commit: no active transaction");
  // A write commit's flush and syncs: a yielding backup waits them out.
  CommitSignal* commits = read_only_ ? nullptr : &env_->impl()->file.hook.commits;
  if (commits) commits->begin();
  const int rc = mdb_txn_commit(txn_);  // frees the txn whatever rc is
  if (commits) commits->end();
  finish();
  return FromMdb(rc, "mdb_txn_commit", env_->path());
}

void Txn::abort() {
  if (txn_ == nullptr) return;
  mdb_txn_abort(txn_);
  finish();
}

void Txn::reset() {
  if (txn_ != nullptr && read_only_) mdb_txn_reset(txn_);
}

Status Txn::renew() {
  if (txn_ == nullptr || !read_only_) {
    return Status::InvalidArgument("mdb_txn_renew: not a read transaction");
  }
  return FromMdb(mdb_txn_renew(txn_), "mdb_txn_renew", env_->path());
}

uint64_t Txn::id() const { return txn_ ? uint64_t(mdb_txn_id(txn_)) : 0; }

Status Txn::get(const Dbi& dbi, std::string_view key, std::string_view* value) const {
  MDB_val k = Val(key), v{0, nullptr};
  const int rc = mdb_get(txn_, dbi.handle(), &k, &v);
  if (rc != 0) return FromMdb(rc, "mdb_get", env_->path());
  *value = View(v);
  return Status::OK();
}

Status Txn::put(const Dbi& dbi, std::string_view key, std::string_view value, unsigned flags) {
  MDB_val k = Val(key), v = Val(value);
  return FromMdb(mdb_put(txn_, dbi.handle(), &k, &v, flags), "mdb_put", env_->path());
}

Status Txn::del(const Dbi& dbi, std::string_view key) {
  MDB_val k = Val(key);
  return FromMdb(mdb_del(txn_, dbi.handle(), &k, nullptr), "mdb_del", env_->path());
}

Status Txn::stat(const Dbi& dbi, DbStat* out) const {
  MDB_stat st;
  const int rc = mdb_stat(txn_, dbi.handle(), &st);
  if (rc != 0) return FromMdb(rc, "mdb_stat", env_->path());
  out->page_size = st.ms_psize;
  out->depth = st.ms_depth;
  out->branch_pages = st.ms_branch_pages;
  out->leaf_pages = st.ms_leaf_pages;
  out->overflow_pages = st.ms_overflow_pages;
  out->entries = st.ms_entries;
  return Status::OK();
}

// ---------------------------------------------------------------------------
// Dbi

Status Dbi::Open(Txn& txn, const char* name, unsigned flags, Dbi* out) {
  if (!txn.active()) return Status::InvalidArgument("mdb_dbi_open: no active transaction");
  MDB_dbi dbi = 0;
  const int rc = mdb_dbi_open(txn.native_handle(), name, flags, &dbi);
  if (rc != 0) {
    return FromMdb(rc, std::string("mdb_dbi_open(") + (name ? name : "main") + ")",
                   txn.env()->path());
  }
  out->dbi_ = dbi;
  out->valid_ = true;
  return Status::OK();
}

// ---------------------------------------------------------------------------
// Cursor

Cursor::~Cursor() { close(); }

Cursor::Cursor(Cursor&& other) noexcept : cursor_(other.cursor_) { other.cursor_ = nullptr; }

Cursor& Cursor::operator=(Cursor&& other) noexcept {
  if (this != &other) {
    close();
    cursor_ = other.cursor_;
    other.cursor_ = nullptr;
  }
  return *this;
}

void Cursor::close() {
  if (cursor_ != nullptr) mdb_cursor_close(cursor_);
  cursor_ = nullptr;
}

Status Cursor::Open(const Txn& txn, const Dbi& dbi, Cursor* out) {
  out->close();
  if (!txn.active()) return Status::InvalidArgument("mdb_cursor_open: no active transaction");
  const int rc = mdb_cursor_open(txn.native_handle(), dbi.handle(), &out->cursor_);
  if (rc != 0) {
    out->cursor_ = nullptr;
    return FromMdb(rc, "mdb_cursor_open", txn.env()->path());
  }
  return Status::OK();
}

Status Cursor::get(std::string_view* key, std::string_view* value, int op, const char* what) {
  MDB_val k{0, nullptr}, v{0, nullptr};
  if (op == MDB_SET_RANGE) k = Val(*key);
  const int rc = mdb_cursor_get(cursor_, &k, &v, MDB_cursor_op(op));
  if (rc != 0) return FromMdb(rc, what);
  *key = View(k);
  *value = View(v);
  return Status::OK();
}

Status Cursor::first(std::string_view* key, std::string_view* value) {
  return get(key, value, MDB_FIRST, "mdb_cursor_get(MDB_FIRST)");
}
Status Cursor::last(std::string_view* key, std::string_view* value) {
  return get(key, value, MDB_LAST, "mdb_cursor_get(MDB_LAST)");
}
Status Cursor::next(std::string_view* key, std::string_view* value) {
  return get(key, value, MDB_NEXT, "mdb_cursor_get(MDB_NEXT)");
}
Status Cursor::prev(std::string_view* key, std::string_view* value) {
  return get(key, value, MDB_PREV, "mdb_cursor_get(MDB_PREV)");
}
Status Cursor::seek(std::string_view key, std::string_view* found_key, std::string_view* value) {
  *found_key = key;
  return get(found_key, value, MDB_SET_RANGE, "mdb_cursor_get(MDB_SET_RANGE)");
}

Status Cursor::put(std::string_view key, std::string_view value, unsigned flags) {
  MDB_val k = Val(key), v = Val(value);
  return FromMdb(mdb_cursor_put(cursor_, &k, &v, flags), "mdb_cursor_put");
}

Status Cursor::del() { return FromMdb(mdb_cursor_del(cursor_, 0), "mdb_cursor_del"); }

}  // namespace cowbackup::lmdb
