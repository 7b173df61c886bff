/* Linked with liblmdb.so ahead of cowbackup::lmdb (tests/lmdb_capi/
 * CMakeLists.txt): opens ENVDIR with mdb_* and tries to attach it.
 * Prints the attach's code and message; exits 0. */
#include <lmdb.h>
#include <stdio.h>

#include "cowbackup/lmdb.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  MDB_env* env = NULL;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_open(env, argv[1], 0, 0644);
  if (rc != 0) {
    fprintf(stderr, "capi_wrong_link: %s\n", mdb_strerror(rc));
    return 1;
  }
  cowbackup_lmdb* cb = NULL;
  char* err = NULL;
  const int code = cowbackup_lmdb_attach(env, &cb, &err);
  printf("attach: %d %s\n", code, err ? err : "");
  cowbackup_free(err);
  cowbackup_lmdb_detach(cb);
  mdb_env_close(env);
  return 0;
}
