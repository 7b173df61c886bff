/* A process that writes an LMDB environment with Debian's liblmdb.so alone,
 * not through the cowbackup LMDB library: a writer that takes no part in
 * backups (lmdb_multiprocess_test.cc).
 *
 *   plain_lmdb_writer ENVDIR COMMITS [MAPSIZE]
 *
 * Commits COMMITS transactions, each putting "foreign/<n>", then exits 0.
 * Any LMDB error: a message on stderr, exit 1. Ends by itself (alarm). */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char* what, int rc) {
  fprintf(stderr, "plain_lmdb_writer: %s: %s\n", what, mdb_strerror(rc));
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: plain_lmdb_writer ENVDIR COMMITS [MAPSIZE]\n");
    return 2;
  }
  alarm(120);
  const long commits = atol(argv[2]);
  const size_t map_size = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : 0;
  MDB_env* env = NULL;
  int rc = mdb_env_create(&env);
  if (rc != 0) return fail("mdb_env_create", rc);
  if (map_size > 0 && (rc = mdb_env_set_mapsize(env, map_size)) != 0) return fail("mdb_env_set_mapsize", rc);
  if ((rc = mdb_env_open(env, argv[1], 0, 0600)) != 0) return fail("mdb_env_open", rc);
  for (long i = 0; i < commits; i++) {
    MDB_txn* txn = NULL;
    MDB_dbi dbi;
    char key[64], value[256];
    snprintf(key, sizeof key, "foreign/%ld/%ld", (long)getpid(), i);
    memset(value, 'f', sizeof value);
    MDB_val k = {strlen(key), key}, v = {sizeof value, value};
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0) return fail("mdb_txn_begin", rc);
    if ((rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0) return fail("mdb_dbi_open", rc);
    if ((rc = mdb_put(txn, dbi, &k, &v, 0)) != 0) return fail("mdb_put", rc);
    if ((rc = mdb_txn_commit(txn)) != 0) return fail("mdb_txn_commit", rc);
  }
  mdb_env_close(env);
  return 0;
}
