/* A hot backup from a C program that keeps its plain mdb_* code and adds
 * three calls of the C API (cowbackup/lmdb.h):
 *
 *   lmdb_c_example ENVDIR ARCHIVE
 *
 * Opens (creating) the environment ENVDIR with mdb_env_open, attaches it,
 * keeps a writer thread committing, backs it up to ARCHIVE while the
 * writer runs, and prints which committed transaction the backup holds:
 *
 *   backup: txnid T commit N pages P preserved Q during D
 *
 * Transaction n (n = 1, 2, ...) puts "count" = n and "key%05d" (n % 2000)
 * = value(n) (below), so the state after commit N is known: the test
 * (lmdb_c_check.sh) restores ARCHIVE and compares it, read by mdb_dump,
 * with that state. D is how many commits the writer made while the backup
 * ran; Q how many pages they changed before the backup had copied them. */
#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cowbackup/lmdb.h>

enum { kSlots = 2000, kMaxCommits = 1000000 };

static MDB_env* env;
static MDB_dbi dbi;
static volatile int stop;               /* set by main, read by the writer */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long commits;                    /* under mu */
static uint64_t* txnid_of;              /* txnid_of[n]: txnid of commit n, under mu */

static void value_of(long n, char* buf, size_t size) {
  snprintf(buf, size, "value-%08ld-%.80s", n,
           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

static int put(MDB_txn* txn, const char* key, const char* value) {
  MDB_val k = {strlen(key), (void*)key}, v = {strlen(value), (void*)value};
  return mdb_put(txn, dbi, &k, &v, 0);
}

/* Commits transactions 1, 2, ... until main says stop. */
static void* writer(void* arg) {
  (void)arg;
  for (long n = 1; !stop && n < kMaxCommits; n++) {
    char key[32], count[32], value[128];
    snprintf(key, sizeof key, "key%05ld", n % kSlots);
    snprintf(count, sizeof count, "%ld", n);
    value_of(n, value, sizeof value);
    MDB_txn* txn = NULL;
    int rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc == 0) rc = put(txn, "count", count);
    if (rc == 0) rc = put(txn, key, value);
    const uint64_t id = txn ? (uint64_t)mdb_txn_id(txn) : 0;
    if (rc == 0) {
      rc = mdb_txn_commit(txn);
    } else if (txn) {
      mdb_txn_abort(txn);
    }
    if (rc != 0) {
      fprintf(stderr, "lmdb_c_example: commit %ld: %s\n", n, mdb_strerror(rc));
      exit(1);
    }
    pthread_mutex_lock(&mu);
    txnid_of[n] = id;
    commits = n;
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

static long commits_now(void) {
  pthread_mutex_lock(&mu);
  const long n = commits;
  pthread_mutex_unlock(&mu);
  return n;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s ENVDIR ARCHIVE\n", argv[0]);
    return 2;
  }
  txnid_of = calloc(kMaxCommits, sizeof *txnid_of);
  mkdir(argv[1], 0755);
  /* 1. The program's own LMDB code, unchanged. */
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_mapsize(env, (size_t)1 << 30);
  if (rc == 0) rc = mdb_env_open(env, argv[1], 0, 0644);
  if (rc != 0) {
    fprintf(stderr, "lmdb_c_example: open %s: %s\n", argv[1], mdb_strerror(rc));
    return 1;
  }
  MDB_txn* txn = NULL;
  if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 || (rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0 ||
      (rc = mdb_txn_commit(txn)) != 0) {
    fprintf(stderr, "lmdb_c_example: main database: %s\n", mdb_strerror(rc));
    return 1;
  }

  /* 2. Attach, right after mdb_env_open. */
  cowbackup_lmdb* cb = NULL;
  char* err = NULL;
  if (cowbackup_lmdb_attach(env, &cb, &err) != COWBACKUP_OK) {
    fprintf(stderr, "lmdb_c_example: %s\n", err);
    cowbackup_free(err);
    return 1;
  }

  pthread_t thread;
  pthread_create(&thread, NULL, writer, NULL);
  while (commits_now() < kSlots) {  /* every slot written once: pages to copy first */
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
  }

  /* 3. A backup while the writer commits: throttled, in small segments,
   * so that it takes a while and the writer changes pages it has yet to
   * copy (a real program would keep the defaults). */
  cowbackup_lmdb_options options;
  cowbackup_lmdb_options_init(&options);
  options.max_rate_mb = 1;
  options.segment_pages = 4;
  options.overwrite = 1;
  cowbackup_lmdb_result result;
  const long before = commits_now();
  const int code = cowbackup_lmdb_backup(cb, argv[2], &options, &result, &err);
  const long after = commits_now();
  stop = 1;
  pthread_join(thread, NULL);
  if (code != COWBACKUP_OK) {
    fprintf(stderr, "lmdb_c_example: backup: %s\n", err);
    cowbackup_free(err);
    return 1;
  }

  /* The commit whose txnid the backup's T0 meta page carries. */
  long n_at_t0 = -1;
  for (long n = 1; n <= commits_now(); n++) {
    if (txnid_of[n] == result.txnid) n_at_t0 = n;
  }
  printf("backup: txnid %llu commit %ld pages %llu preserved %llu during %ld\n",
         (unsigned long long)result.txnid, n_at_t0, (unsigned long long)result.pages,
         (unsigned long long)result.pages_preserved, after - before);

  /* 4. Detach before mdb_env_close. */
  cowbackup_lmdb_detach(cb);
  mdb_env_close(env);
  free(txnid_of);
  return n_at_t0 > 0 ? 0 : 1;
}
