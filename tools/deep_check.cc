#include "tools/deep_check.h"

#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

namespace cowbackup::cli {

Status CheckSqliteDatabase(const std::string& db_path, DeepResult* result) {
  result->check = "sqlite integrity_check";
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  std::vector<std::string> problems;
  std::string error;
  sqlite3_stmt* stmt = nullptr;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      problems.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
    }
  }
  if (rc != SQLITE_DONE) error = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  if (!error.empty()) return Status::Corruption("sqlite integrity_check: " + error);
  if (problems.size() == 1 && problems[0] == "ok") return Status::OK();
  if (problems.empty()) return Status::Corruption("sqlite integrity_check returned nothing");
  std::string first = problems[0];
  for (char& c : first) {
    if (c == '\n') c = ' ';
  }
  return Status::Corruption("sqlite integrity_check found " + std::to_string(problems.size()) +
                            " problem(s), first: " + first);
}

namespace {

// Walks every item of `dbi`, reading each key and data byte so that a page
// outside the map faults here, in the child. Returns an LMDB error code.
int WalkDatabase(MDB_txn* txn, MDB_dbi dbi, uint64_t* entries, std::vector<std::string>* names) {
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(txn, dbi, &cursor);
  if (rc != MDB_SUCCESS) return rc;
  MDB_val key, data;
  uint64_t n = 0;
  volatile unsigned char sink = 0;
  while ((rc = mdb_cursor_get(cursor, &key, &data, MDB_NEXT)) == MDB_SUCCESS) {
    n++;
    for (size_t i = 0; i < key.mv_size; i++) sink = sink ^ static_cast<unsigned char*>(key.mv_data)[i];
    for (size_t i = 0; i < data.mv_size; i++) sink = sink ^ static_cast<unsigned char*>(data.mv_data)[i];
    if (names && key.mv_size > 0 && memchr(key.mv_data, '\0', key.mv_size) == nullptr) {
      names->emplace_back(static_cast<const char*>(key.mv_data), key.mv_size);
    }
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_NOTFOUND) return rc;
  MDB_stat st;
  rc = mdb_stat(txn, dbi, &st);
  if (rc != MDB_SUCCESS) return rc;
  if (st.ms_entries != n) return MDB_CORRUPTED;
  *entries += n;
  return MDB_SUCCESS;
}

// The walk itself, run in the child. Fills `msg` with "ok DBS ENTRIES" or
// "error TEXT".
std::string WalkEnvironment(const std::string& env_dir) {
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  uint64_t databases = 0, entries = 0;
  std::string where = "mdb_env_create";
  int rc = mdb_env_create(&env);
  if (rc == MDB_SUCCESS) where = "mdb_env_set_maxdbs", rc = mdb_env_set_maxdbs(env, 32767);
  if (rc == MDB_SUCCESS) {
    where = "mdb_env_open";
    rc = mdb_env_open(env, env_dir.c_str(), MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
  }
  if (rc == MDB_SUCCESS) where = "mdb_txn_begin", rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
  MDB_dbi main_dbi = 0;
  if (rc == MDB_SUCCESS) where = "mdb_dbi_open", rc = mdb_dbi_open(txn, nullptr, 0, &main_dbi);
  std::vector<std::string> names;
  if (rc == MDB_SUCCESS) where = "walk of the main database", rc = WalkDatabase(txn, main_dbi, &entries, &names);
  if (rc == MDB_SUCCESS) databases = 1;
  for (size_t i = 0; rc == MDB_SUCCESS && i < names.size(); i++) {
    MDB_dbi dbi;
    const int open_rc = mdb_dbi_open(txn, names[i].c_str(), 0, &dbi);
    // A plain item of the main database, not a named database.
    if (open_rc == MDB_INCOMPATIBLE || open_rc == MDB_NOTFOUND) continue;
    where = "walk of database '" + names[i] + "'";
    rc = open_rc == MDB_SUCCESS ? WalkDatabase(txn, dbi, &entries, nullptr) : open_rc;
    if (rc == MDB_SUCCESS) databases++;
  }
  if (txn) mdb_txn_abort(txn);
  if (env) mdb_env_close(env);
  if (rc != MDB_SUCCESS) {
    const char* why = rc == MDB_CORRUPTED && where.rfind("walk", 0) == 0
                          ? "item count differs from mdb_stat"
                          : mdb_strerror(rc);
    return "error " + where + ": " + why;
  }
  return "ok " + std::to_string(databases) + " " + std::to_string(entries);
}

}  // namespace

Status CheckLmdbEnvironment(const std::string& env_dir, DeepResult* result) {
  result->check = "lmdb cursor walk";
  int fds[2];
  if (::pipe(fds) != 0) return Status::FromErrno("pipe", env_dir, errno);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::FromErrno("fork", env_dir, err);
  }
  if (pid == 0) {
    ::close(fds[0]);
    const std::string msg = WalkEnvironment(env_dir);
    size_t off = 0;
    while (off < msg.size()) {
      const ssize_t n = ::write(fds[1], msg.data() + off, msg.size() - off);
      if (n <= 0) break;
      off += size_t(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string msg;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n > 0) {
      msg.append(buf, size_t(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(wstatus)) {
    return Status::Corruption("lmdb cursor walk crashed (signal " + std::to_string(WTERMSIG(wstatus)) +
                              "): the environment is damaged");
  }
  unsigned long long dbs = 0, items = 0;
  if (sscanf(msg.c_str(), "ok %llu %llu", &dbs, &items) == 2) {
    result->databases = dbs;
    result->entries = items;
    return Status::OK();
  }
  if (msg.rfind("error ", 0) == 0) return Status::Corruption("lmdb " + msg.substr(6));
  return Status::Corruption("lmdb cursor walk ended without a result (exit status " +
                            std::to_string(WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1) + ")");
}

}  // namespace cowbackup::cli
