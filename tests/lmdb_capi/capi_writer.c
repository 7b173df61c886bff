/* A C program that writes an LMDB environment with plain mdb_* calls and
 * takes part in backups through the C API (lmdb_capi_test.cc):
 *
 *   capi_writer ENVDIR READYFILE STOPFILE
 *
 * Attaches, then commits transactions n = 1, 2, ... (each puts "count" = n
 * and "key%03d" (n % 500) = "value-<n>"), creates READYFILE after 1000 of
 * them, and stops once STOPFILE exists. Exits 0, or 1 with a message. */
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cowbackup/lmdb.h"

static int fail(const char* what, int rc) {
  fprintf(stderr, "capi_writer: %s: %s\n", what, mdb_strerror(rc));
  return 1;
}

static int put(MDB_txn* txn, MDB_dbi dbi, const char* key, const char* value) {
  MDB_val k = {strlen(key), (void*)key}, v = {strlen(value), (void*)value};
  return mdb_put(txn, dbi, &k, &v, 0);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: capi_writer ENVDIR READYFILE STOPFILE\n");
    return 2;
  }
  alarm(300);
  MDB_env* env = NULL;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_mapsize(env, (size_t)1 << 28);
  if (rc == 0) rc = mdb_env_open(env, argv[1], 0, 0644);
  if (rc != 0) return fail("open", rc);
  cowbackup_lmdb* cb = NULL;
  char* err = NULL;
  if (cowbackup_lmdb_attach(env, &cb, &err) != COWBACKUP_OK) {
    fprintf(stderr, "capi_writer: %s\n", err);
    return 1;
  }
  for (long n = 1; access(argv[3], F_OK) != 0; n++) {
    char key[32], count[32], value[64];
    snprintf(key, sizeof key, "key%03ld", n % 500);
    snprintf(count, sizeof count, "%ld", n);
    snprintf(value, sizeof value, "value-%ld", n);
    MDB_txn* txn = NULL;
    MDB_dbi dbi;
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0) return fail("mdb_txn_begin", rc);
    if ((rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0) return fail("mdb_dbi_open", rc);
    if ((rc = put(txn, dbi, "count", count)) != 0 || (rc = put(txn, dbi, key, value)) != 0) {
      return fail("mdb_put", rc);
    }
    if ((rc = mdb_txn_commit(txn)) != 0) return fail("mdb_txn_commit", rc);
    if (n == 1000) close(open(argv[2], O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  }
  cowbackup_lmdb_detach(cb);
  mdb_env_close(env);
  return 0;
}
