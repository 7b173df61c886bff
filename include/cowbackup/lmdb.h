/* cowbackup C API for LMDB programs: hot, begin-time backups of an
 * environment the program opened with its usual mdb_* calls.
 *
 * USING
 *   #include <lmdb.h>
 *   #include <cowbackup/lmdb.h>     (CMake: find_package(cowbackup),
 *                                    link cowbackup::lmdb)
 *
 *   MDB_env* env;
 *   mdb_env_create(&env);
 *   mdb_env_open(env, "/var/db/app", 0, 0644);
 *   cowbackup_lmdb* cb;
 *   char* err = NULL;
 *   if (cowbackup_lmdb_attach(env, &cb, &err) != COWBACKUP_OK) {
 *     fprintf(stderr, "%s\n", err);  cowbackup_free(err);  ...
 *   }
 *   ... mdb_txn_begin / mdb_put / mdb_txn_commit as before, any thread ...
 *   cowbackup_lmdb_backup(cb, "/backups/app.cowbak", NULL, NULL, &err);
 *   cowbackup_lmdb_detach(cb);
 *   mdb_env_close(env);
 *
 *   Restore with the CLI: cowbackup restore app.cowbak /var/db/app-restored
 *   (a directory holding data.mdb that mdb_dump and mdb_env_open read).
 *
 * WHAT ATTACH DOES
 *   It is the C++ wrapper's cowbackup::lmdb::Env::Attach (lmdb.hpp), which
 *   shares its code with Env::Open: the env's data.mdb writes reach the
 *   copy-on-write hook before they land, and the env joins the
 *   coordination region beside it, so this process takes part in a backup
 *   that any attached process or `cowbackup backup ENVDIR` runs, and its
 *   own backups are joined by theirs (docs/LMDB.md, "Several processes").
 *   Attach right after mdb_env_open, before the first write transaction.
 *   A backup is exactly the state after the last transaction committed
 *   before it began (its T0); writers keep committing while it copies.
 *
 * LINKING
 *   cowbackup::lmdb links Debian's static liblmdb.a and wraps the write
 *   calls liblmdb makes with the linker's --wrap (link options that come
 *   with the target). So the program's mdb_* calls must resolve to that
 *   liblmdb: do not also link -llmdb / liblmdb.so. Attach checks that they
 *   do and fails with COWBACKUP_NOT_SUPPORTED otherwise, rather than back
 *   up an environment whose writes it cannot see. (A link without the
 *   --wrap options fails: __real_pwrite and the like stay undefined.)
 *
 * REFUSED
 *   Environments opened read-only (a backup needs LMDB's writer lock),
 *   with MDB_WRITEMAP (writes go through the memory map, where none can
 *   be intercepted) or with MDB_NOLOCK (the writer lock is not shared with
 *   other processes): attach fails with COWBACKUP_NOT_SUPPORTED naming the
 *   flag.
 *
 * WRITERS
 *   Write transactions the program begins with mdb_txn_begin yield to a
 *   starting backup (LMDB's writer mutex is not fair): the link wraps
 *   mdb_txn_begin too, so a backup waits for the write transaction in
 *   progress and at most one more per writing thread, as with the C++
 *   wrapper (docs/LMDB.md, "Starting under busy writers").
 *
 * LIMITATIONS
 *   - cowbackup_lmdb_backup must not be called from a thread that holds a
 *     write transaction of the env (it needs LMDB's writer lock), nor
 *     while the program calls mdb_env_set_mapsize (LMDB's own rule: no
 *     transaction active; the backup's begin-time instant is a write
 *     transaction).
 *   - detach, like mdb_env_close, only while no transaction of the env is
 *     active or beginning in any thread, and no backup of the handle runs.
 *   - BackupOptions::yield_to_commits (C++) has no C field: commits made
 *     with mdb_txn_commit are not seen by it.

 * ERRORS
 *   Every call that can fail returns a cowbackup_code (COWBACKUP_OK = 0)
 *   and, if `errmsg` is not NULL, sets *errmsg to a message that says what
 *   failed and where (NULL on success); free it with cowbackup_free.
 *
 * THREAD-SAFETY
 *   A handle may be used from any thread; one backup of an environment
 *   runs at a time, in this process or any other (another one fails with
 *   COWBACKUP_BUSY).
 */
#ifndef COWBACKUP_LMDB_H
#define COWBACKUP_LMDB_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct MDB_env; /* lmdb.h's MDB_env */

/* The codes of cowbackup::Status (status.h), same values. */
typedef enum cowbackup_code {
  COWBACKUP_OK = 0,
  COWBACKUP_NOT_FOUND = 1,
  COWBACKUP_CORRUPTION = 2,       /* bad bytes; or a foreign commit during the backup */
  COWBACKUP_NOT_SUPPORTED = 3,    /* a flag or link this library cannot work with */
  COWBACKUP_INVALID_ARGUMENT = 4, /* the caller's fault: bad option, path, state */
  COWBACKUP_IO_ERROR = 5,         /* a system call or LMDB call failed */
  COWBACKUP_NO_SPACE = 6,         /* ENOSPC / EDQUOT */
  COWBACKUP_BUSY = 7,             /* another backup runs, or a lock is in the way */
  COWBACKUP_CANCELLED = 8,
  COWBACKUP_INCOMPLETE = 9
} cowbackup_code;

/* An attached environment. */
typedef struct cowbackup_lmdb cowbackup_lmdb;

/* Backup options; cowbackup_lmdb_options_init sets the defaults. Values
 * are checked as the C++ API and the CLI check them (backup/options.h):
 * out of range is COWBACKUP_INVALID_ARGUMENT naming the option. */
typedef struct cowbackup_lmdb_options {
  double max_rate_mb;          /* destination throttle, MB/s (1e6 B); 0 = none, else 0.001 .. 1e6 */
  uint32_t segment_pages;      /* pages per copy segment: 1 .. 1048576 (default 256) */
  const char* snapshot_dir;    /* where the snapshot volume lives; NULL = beside the archive */
  int overwrite;               /* nonzero: replace an existing archive */
  int plain;                   /* nonzero: write a plain data.mdb image instead of an archive */
} cowbackup_lmdb_options;

/* What a finished backup took and did. */
typedef struct cowbackup_lmdb_result {
  uint64_t txnid;            /* of the T0 meta page: the restored env's newest transaction */
  uint64_t pages;            /* pages at T0 (last_pgno + 1) */
  uint64_t pages_preserved;  /* pre-images writers made the backup save */
  uint64_t bytes_written;    /* to the destination */
  uint64_t begin_lock_us;    /* how long the writer lock was held for T0 */
  double seconds;
} cowbackup_lmdb_result;

void cowbackup_lmdb_options_init(cowbackup_lmdb_options* options);

/* Attaches `env` (opened with mdb_env_open, not yet closed). On success
 * *out is the handle; the env stays the caller's, who must detach before
 * mdb_env_close. */
int cowbackup_lmdb_attach(struct MDB_env* env, cowbackup_lmdb** out, char** errmsg);

/* Backs the env up to the archive `dest` ("-" = stdout) while writers keep
 * committing; returns when it is complete and published. `options` NULL =
 * defaults; `result` may be NULL. */
int cowbackup_lmdb_backup(cowbackup_lmdb* handle, const char* dest, const cowbackup_lmdb_options* options,
                          cowbackup_lmdb_result* result, char** errmsg);

/* COWBACKUP_OK if the env takes part in backups other processes run (it
 * is attached to the coordination region beside it); else why not, for
 * example a region file that cannot be opened. An env that takes no part
 * still backs up what this process writes, and its commits fail a backup
 * another process runs, by name (docs/LMDB.md, "Several processes"). */
int cowbackup_lmdb_coordination(const cowbackup_lmdb* handle, char** errmsg);

/* Detaches (NULL is a no-op). The env's writes no longer reach the hook
 * and it leaves the coordination region. The env stays open. */
void cowbackup_lmdb_detach(cowbackup_lmdb* handle);

/* Frees a message returned through an errmsg argument (NULL is a no-op). */
void cowbackup_free(void* p);

#ifdef __cplusplus
}
#endif

#endif /* COWBACKUP_LMDB_H */
