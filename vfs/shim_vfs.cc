#include "vfs/shim_vfs.h"

#include <sys/stat.h>

#include <cstring>
#include <mutex>

#include "vfs/file_state.h"

namespace cowbackup::sqlite {

namespace {

struct ShimFile {
  sqlite3_file base;   // must come first
  FileState* state;    // the main database's; null if the file could not be identified
  bool wal;            // this is <db>-wal (writes go to state->wal_hook), not the database
  bool exclusive;      // this connection holds EXCLUSIVE or the WAL write lock: counted in hook.commits
  bool asked_exclusive;  // asked for EXCLUSIVE since its last unlock (may hold PENDING)
  bool holds_ckpt;     // holds the WAL checkpoint lock
  // (the parent's object follows, 8-byte aligned by the size check below)
};
static_assert(sizeof(ShimFile) % 8 == 0);

sqlite3_vfs g_vfs;               // the shim; g_vfs.pAppData is the parent
std::mutex g_register_mu;
bool g_registered = false;       // GUARDED_BY(g_register_mu)

sqlite3_vfs* Parent() { return static_cast<sqlite3_vfs*>(g_vfs.pAppData); }
sqlite3_file* ParentFile(sqlite3_file* f) { return reinterpret_cast<sqlite3_file*>(&reinterpret_cast<ShimFile*>(f)[1]); }
ShimFile* Shim(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f); }

// ---- io methods: all forward; xWrite and xTruncate report first, xLock and
// xUnlock note EXCLUSIVE ----

// In rollback mode a connection holds EXCLUSIVE exactly through a commit's
// I/O: the journal's final writes and syncs, the page writes, the database
// sync and the journal's removal. That is the phase a yielding backup waits
// out (engine/commit_signal.h).
void NoteExclusive(ShimFile* s, bool held) {
  if (s->state == nullptr || s->exclusive == held) return;
  s->exclusive = held;
  held ? s->state->hook.commits.begin() : s->state->hook.commits.end();
}

int ShimClose(sqlite3_file* f) {
  sqlite3_file* p = ParentFile(f);
  const int rc = p->pMethods->xClose(p);
  NoteExclusive(Shim(f), false);
  if (Shim(f)->state != nullptr) FileState::Release(Shim(f)->state);
  Shim(f)->state = nullptr;
  return rc;
}

int ShimRead(sqlite3_file* f, void* buf, int amt, sqlite3_int64 ofs) {
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xRead(p, buf, amt, ofs);
}

int ShimWrite(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 ofs) {
  FileState* st = Shim(f)->state;
  if (st != nullptr) st->BeforeWrite(Shim(f)->wal, uint64_t(ofs), uint64_t(amt));
  sqlite3_file* p = ParentFile(f);
  const int rc = p->pMethods->xWrite(p, buf, amt, ofs);
  // Page 1 carries the file change counter; parsed only while a job runs.
  if (ofs == 0 && rc == SQLITE_OK && st != nullptr && !Shim(f)->wal) {
    st->AfterPage1Write(static_cast<const uint8_t*>(buf), size_t(amt));
  }
  return rc;
}

int ShimTruncate(sqlite3_file* f, sqlite3_int64 size) {
  FileState* st = Shim(f)->state;
  if (st != nullptr) st->BeforeTruncate(Shim(f)->wal, uint64_t(size));
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xTruncate(p, size);
}

int ShimSync(sqlite3_file* f, int flags) {
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xSync(p, flags);
}

int ShimFileSize(sqlite3_file* f, sqlite3_int64* size) {
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xFileSize(p, size);
}

int ShimLock(sqlite3_file* f, int lock) {
  sqlite3_file* p = ParentFile(f);
  ShimFile* s = Shim(f);
  if (lock == SQLITE_LOCK_EXCLUSIVE && !s->asked_exclusive) {
    // A commit starting: let a backup waiting for SHARED in first (the
    // begin-time gate, file_state.h). Not once PENDING may be held.
    s->asked_exclusive = true;
    if (s->state != nullptr) s->state->BeforeExclusive();
  }
  const int rc = p->pMethods->xLock(p, lock);
  if (rc == SQLITE_OK && lock == SQLITE_LOCK_EXCLUSIVE) NoteExclusive(Shim(f), true);
  return rc;
}

int ShimUnlock(sqlite3_file* f, int lock) {
  sqlite3_file* p = ParentFile(f);
  if (lock < SQLITE_LOCK_EXCLUSIVE) NoteExclusive(Shim(f), false);
  if (lock <= SQLITE_LOCK_SHARED) Shim(f)->asked_exclusive = false;
  return p->pMethods->xUnlock(p, lock);
}

int ShimCheckReservedLock(sqlite3_file* f, int* out) {
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xCheckReservedLock(p, out);
}

int ShimFileControl(sqlite3_file* f, int op, void* arg) {
  sqlite3_file* p = ParentFile(f);
  const int rc = p->pMethods->xFileControl(p, op, arg);
  if (op == SQLITE_FCNTL_VFSNAME && rc == SQLITE_OK) {
    // As cksumvfs does: prefix the parent's name with ours.
    char** name = static_cast<char**>(arg);
    *name = sqlite3_mprintf("cowbackup/%z", *name);
  }
  return rc;
}

int ShimSectorSize(sqlite3_file* f) {
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xSectorSize(p);
}

int ShimDeviceCharacteristics(sqlite3_file* f) {
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xDeviceCharacteristics(p);
}

int ShimShmMap(sqlite3_file* f, int pg, int pgsz, int extend, void volatile** out) {
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xShmMap(p, pg, pgsz, extend, out);
}

// The WAL write lock (slot 0) is held for a whole write transaction, the
// checkpoint lock (slot 1, alone) for a checkpoint. Both are reported to
// the FileState (foreign-writer tracking; the write lock is also what a
// yielding backup waits out), and a request for either waits at the
// begin-time gate first (file_state.h), except a checkpointer's request
// for the write lock: a backup may be waiting for the lock it holds.
int ShimShmLock(sqlite3_file* f, int offset, int n, int flags) {
  sqlite3_file* p = ParentFile(f);
  ShimFile* s = Shim(f);
  FileState* st = s->state;
  const bool tracked = offset == kWalWriteLock || (offset == kWalCkptLock && n == 1);
  if (st == nullptr || !tracked || (flags & SQLITE_SHM_EXCLUSIVE) == 0) {
    return p->pMethods->xShmLock(p, offset, n, flags);
  }
  if (flags & SQLITE_SHM_UNLOCK) {
    const bool held = offset == kWalWriteLock ? s->exclusive : s->holds_ckpt;
    if (held) st->BeforeShmUnlock(offset, n);
    if (offset == kWalWriteLock) NoteExclusive(s, false);
    if (offset == kWalCkptLock) s->holds_ckpt = false;
    return p->pMethods->xShmLock(p, offset, n, flags);
  }
  int rc;
  for (int attempt = 0;; attempt++) {
    if (offset == kWalCkptLock) {
      st->BeforeCheckpointLock();
    } else if (!s->holds_ckpt) {
      st->BeforeExclusive();
    }
    rc = p->pMethods->xShmLock(p, offset, n, flags);
    // Found busy by a backup's lock taken just after the gate let it by:
    // wait at the gate once more (file_state.h, BackupWantsWalLock).
    if ((rc & 0xff) != SQLITE_BUSY || attempt > 0 || !st->BackupWantsWalLock(offset)) break;
  }
  if (rc == SQLITE_OK) {
    if (offset == kWalWriteLock) NoteExclusive(s, true);
    if (offset == kWalCkptLock) s->holds_ckpt = true;
    st->AfterShmLock(offset, n);
  }
  return rc;
}

void ShimShmBarrier(sqlite3_file* f) {
  sqlite3_file* p = ParentFile(f);
  p->pMethods->xShmBarrier(p);
}

int ShimShmUnmap(sqlite3_file* f, int delete_flag) {
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xShmUnmap(p, delete_flag);
}

int ShimFetch(sqlite3_file* f, sqlite3_int64 ofs, int amt, void** pp) {
  sqlite3_file* p = ParentFile(f);
  // Only reached for iVersion >= 3 tables, i.e. when the parent has xFetch.
  return p->pMethods->xFetch(p, ofs, amt, pp);
}

int ShimUnfetch(sqlite3_file* f, sqlite3_int64 ofs, void* ptr) {
  sqlite3_file* p = ParentFile(f);
  return p->pMethods->xUnfetch(p, ofs, ptr);
}

constexpr sqlite3_io_methods MakeMethods(int version) {
  return sqlite3_io_methods{
      version,        ShimClose,       ShimRead,
      ShimWrite,      ShimTruncate,    ShimSync,
      ShimFileSize,   ShimLock,        ShimUnlock,
      ShimCheckReservedLock, ShimFileControl, ShimSectorSize,
      ShimDeviceCharacteristics,
      version >= 2 ? ShimShmMap : nullptr,
      version >= 2 ? ShimShmLock : nullptr,
      version >= 2 ? ShimShmBarrier : nullptr,
      version >= 2 ? ShimShmUnmap : nullptr,
      version >= 3 ? ShimFetch : nullptr,
      version >= 3 ? ShimUnfetch : nullptr,
  };
}
const sqlite3_io_methods kMethodsV1 = MakeMethods(1);
const sqlite3_io_methods kMethodsV2 = MakeMethods(2);
const sqlite3_io_methods kMethodsV3 = MakeMethods(3);

bool IsShimMethods(const sqlite3_io_methods* m) {
  return m == &kMethodsV1 || m == &kMethodsV2 || m == &kMethodsV3;
}

// ---- VFS methods ----

int ShimOpen(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  sqlite3_vfs* parent = Parent();
  const bool wal = (flags & SQLITE_OPEN_WAL) != 0;
  if (((flags & SQLITE_OPEN_MAIN_DB) == 0 && !wal) || name == nullptr) {
    // Journals, temp files: the parent's object, our code never runs.
    return parent->xOpen(parent, name, f, flags, out_flags);
  }
  ShimFile* shim = Shim(f);
  shim->state = nullptr;
  shim->wal = wal;
  shim->exclusive = false;
  shim->asked_exclusive = false;
  shim->holds_ckpt = false;
  sqlite3_file* p = ParentFile(f);
  const int rc = parent->xOpen(parent, name, p, flags, out_flags);
  if (rc != SQLITE_OK) {
    f->pMethods = nullptr;  // SQLite skips xClose
    return rc;
  }
  const int version = p->pMethods->iVersion;
  f->pMethods = version >= 3 ? &kMethodsV3 : version == 2 ? &kMethodsV2 : &kMethodsV1;
  // A WAL file belongs to its database (SQLite passes the -wal name made
  // from it); its writes go to that database's FileState.
  const char* db_name = wal ? sqlite3_filename_database(name) : name;
  struct stat st;
  if (db_name != nullptr && ::stat(db_name, &st) == 0) {
    try {
      shim->state = FileState::Acquire(st.st_dev, st.st_ino, db_name, parent);
    } catch (...) {
      shim->state = nullptr;  // out of memory: the file works, backups refuse it
    }
  }
  return SQLITE_OK;
}

int ShimDelete(sqlite3_vfs*, const char* name, int sync_dir) {
  return Parent()->xDelete(Parent(), name, sync_dir);
}
int ShimAccess(sqlite3_vfs*, const char* name, int flags, int* out) {
  return Parent()->xAccess(Parent(), name, flags, out);
}
int ShimFullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return Parent()->xFullPathname(Parent(), name, n, out);
}
void* ShimDlOpen(sqlite3_vfs*, const char* path) { return Parent()->xDlOpen(Parent(), path); }
void ShimDlError(sqlite3_vfs*, int n, char* msg) { Parent()->xDlError(Parent(), n, msg); }
void (*ShimDlSym(sqlite3_vfs*, void* h, const char* sym))(void) {
  return Parent()->xDlSym(Parent(), h, sym);
}
void ShimDlClose(sqlite3_vfs*, void* h) { Parent()->xDlClose(Parent(), h); }
int ShimRandomness(sqlite3_vfs*, int n, char* out) { return Parent()->xRandomness(Parent(), n, out); }
int ShimSleep(sqlite3_vfs*, int us) { return Parent()->xSleep(Parent(), us); }
int ShimCurrentTime(sqlite3_vfs*, double* t) { return Parent()->xCurrentTime(Parent(), t); }
int ShimGetLastError(sqlite3_vfs*, int n, char* msg) {
  return Parent()->xGetLastError ? Parent()->xGetLastError(Parent(), n, msg) : 0;
}
int ShimCurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* t) {
  return Parent()->xCurrentTimeInt64(Parent(), t);
}
int ShimSetSystemCall(sqlite3_vfs*, const char* name, sqlite3_syscall_ptr fn) {
  return Parent()->xSetSystemCall(Parent(), name, fn);
}
sqlite3_syscall_ptr ShimGetSystemCall(sqlite3_vfs*, const char* name) {
  return Parent()->xGetSystemCall(Parent(), name);
}
const char* ShimNextSystemCall(sqlite3_vfs*, const char* name) {
  return Parent()->xNextSystemCall(Parent(), name);
}

}  // namespace

Status RegisterShimVfs(bool make_default) {
  std::lock_guard<std::mutex> lock(g_register_mu);
  if (g_registered) {
    if (make_default) sqlite3_vfs_register(&g_vfs, 1);
    return Status::OK();
  }
  if (sqlite3_initialize() != SQLITE_OK) return Status::NotSupported("sqlite3_initialize failed");
  sqlite3_vfs* existing = sqlite3_vfs_find("cowbackup");
  if (existing != nullptr) {
    // Another copy of cowbackup in this process registered first; its
    // files are not ours, so backups through this copy would refuse them.
    return Status::Busy("a VFS named \"cowbackup\" is already registered by another copy of the "
                        "library in this process");
  }
  sqlite3_vfs* parent = sqlite3_vfs_find(nullptr);
  if (parent == nullptr) return Status::NotFound("no default SQLite VFS to wrap");
  memset(&g_vfs, 0, sizeof g_vfs);
  g_vfs.iVersion = parent->iVersion;
  g_vfs.szOsFile = int(sizeof(ShimFile)) + parent->szOsFile;
  g_vfs.mxPathname = parent->mxPathname;
  g_vfs.zName = "cowbackup";
  g_vfs.pAppData = parent;
  g_vfs.xOpen = ShimOpen;
  g_vfs.xDelete = ShimDelete;
  g_vfs.xAccess = ShimAccess;
  g_vfs.xFullPathname = ShimFullPathname;
  g_vfs.xDlOpen = parent->xDlOpen ? ShimDlOpen : nullptr;
  g_vfs.xDlError = parent->xDlError ? ShimDlError : nullptr;
  g_vfs.xDlSym = parent->xDlSym ? ShimDlSym : nullptr;
  g_vfs.xDlClose = parent->xDlClose ? ShimDlClose : nullptr;
  g_vfs.xRandomness = ShimRandomness;
  g_vfs.xSleep = ShimSleep;
  g_vfs.xCurrentTime = ShimCurrentTime;
  g_vfs.xGetLastError = ShimGetLastError;
  if (parent->iVersion >= 2) g_vfs.xCurrentTimeInt64 = parent->xCurrentTimeInt64 ? ShimCurrentTimeInt64 : nullptr;
  if (parent->iVersion >= 3) {
    g_vfs.xSetSystemCall = parent->xSetSystemCall ? ShimSetSystemCall : nullptr;
    g_vfs.xGetSystemCall = parent->xGetSystemCall ? ShimGetSystemCall : nullptr;
    g_vfs.xNextSystemCall = parent->xNextSystemCall ? ShimNextSystemCall : nullptr;
  }
  const int rc = sqlite3_vfs_register(&g_vfs, make_default ? 1 : 0);
  if (rc != SQLITE_OK) return Status::NotSupported(std::string("sqlite3_vfs_register: ") + sqlite3_errstr(rc));
  g_registered = true;
  return Status::OK();
}

FileState* ShimFileState(sqlite3_file* file) {
  if (file == nullptr || !IsShimMethods(file->pMethods) || Shim(file)->wal) return nullptr;
  return Shim(file)->state;
}

sqlite3_vfs* ShimParentVfs() {
  std::lock_guard<std::mutex> lock(g_register_mu);
  return g_registered ? Parent() : nullptr;
}

}  // namespace cowbackup::sqlite
