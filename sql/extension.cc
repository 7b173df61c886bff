// build/cowbackup.so: hot, begin-time-consistent backups of live SQLite
// databases from SQL.
//
// LOADING
//   sqlite3 shell:  .load build/cowbackup        then  .open app.db
//   Python:         conn.enable_load_extension(True)
//                   conn.load_extension("build/cowbackup")
//   Loading registers the VFS "cowbackup" over the default VFS and makes it
//   the default, so databases opened *afterwards* go through it (or name it:
//   file:app.db?vfs=cowbackup). The functions below are registered on the
//   loading connection and, through sqlite3_auto_extension, on every later
//   one. The extension stays loaded (SQLITE_OK_LOAD_PERMANENTLY); loading it
//   again is harmless. A copy at another path (the preload library loaded
//   one, the program loads its own) hands its loading to the copy that
//   registered the VFS: one shim per process.
//
// USING
//   SELECT cowbackup(dest [, schema [, options_json]]);   -- JSON summary
//   SELECT cowbackup_start(dest [, schema [, options_json]]);  -- job id
//   SELECT cowbackup_wait(id);    -- summary once the job ends
//   SELECT cowbackup_cancel(id);
//   SELECT * FROM cowbackup_jobs;
//   Options: see sql/json_options.h. Every function is SQLITE_DIRECTONLY:
//   a schema, trigger or view cannot call it.
//
// LIMITATIONS
//   Rollback-journal modes only; WAL databases get an error. The connection
//   that loads the extension was opened before the shim existed: back up
//   through a connection opened afterwards.
#include <dlfcn.h>
#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>

#include "backup/text.h"
#include "cowbackup/sqlite.hpp"
#include "sql/jobs_vtab.h"
#include "sql/json_options.h"

namespace {

using cowbackup::BackupOptions;
using cowbackup::Status;
using cowbackup::Summary;

// Messages name paths, which may hold any bytes: SQLite expects UTF-8 and
// the sqlite3 shell prints the text to a terminal, so it goes out escaped.
void ResultError(sqlite3_context* ctx, const std::string& msg) {
  const std::string text = cowbackup::TerminalSafe("cowbackup: " + msg);
  sqlite3_result_error(ctx, text.data(), int(text.size()));
}

// A text argument with no NUL inside; false with the error already set.
bool TextArg(sqlite3_context* ctx, sqlite3_value* v, const char* name, std::string* out) {
  if (sqlite3_value_type(v) != SQLITE_TEXT) {
    ResultError(ctx, std::string(name) + " must be text");
    return false;
  }
  const char* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
  const int n = sqlite3_value_bytes(v);
  if (p == nullptr) {
    sqlite3_result_error_nomem(ctx);
    return false;
  }
  if (int(strlen(p)) != n) {
    ResultError(ctx, std::string(name) + " contains a NUL byte");
    return false;
  }
  out->assign(p, size_t(n));
  return true;
}

// (dest [, schema [, options_json]]) shared by cowbackup and cowbackup_start.
bool BackupArgs(sqlite3_context* ctx, int argc, sqlite3_value** argv, std::string* dest,
                std::string* schema, BackupOptions* options) {
  if (!TextArg(ctx, argv[0], "dest_path", dest)) return false;
  *schema = "main";
  if (argc >= 2 && sqlite3_value_type(argv[1]) != SQLITE_NULL &&
      !TextArg(ctx, argv[1], "schema", schema)) {
    return false;
  }
  if (argc >= 3 && sqlite3_value_type(argv[2]) != SQLITE_NULL) {
    std::string json, error;
    if (!TextArg(ctx, argv[2], "options_json", &json)) return false;
    if (!cowbackup::sql::ParseOptionsJson(json, options, &error)) {
      ResultError(ctx, error);
      return false;
    }
  }
  return true;
}

bool JobIdArg(sqlite3_context* ctx, sqlite3_value* v, uint64_t* id) {
  if (sqlite3_value_type(v) != SQLITE_INTEGER || sqlite3_value_int64(v) <= 0) {
    ResultError(ctx, "job id must be a positive integer (from cowbackup_start)");
    return false;
  }
  *id = uint64_t(sqlite3_value_int64(v));
  return true;
}

void ResultSummary(sqlite3_context* ctx, const Status& s, const Summary& summary, uint64_t id) {
  if (!s.ok()) {
    ResultError(ctx, std::string("backup ") + cowbackup::JobStateName(summary.state) + ": " +
                         s.ToString());
    return;
  }
  const std::string json = cowbackup::sqlite::SummaryJson(summary, id);
  sqlite3_result_text(ctx, json.data(), int(json.size()), SQLITE_TRANSIENT);
}

// Every function body runs inside this: no exception crosses into SQLite.
template <typename Fn>
void Guarded(sqlite3_context* ctx, Fn&& fn) {
  try {
    fn();
  } catch (const std::bad_alloc&) {
    sqlite3_result_error_nomem(ctx);
  } catch (const std::exception& e) {
    ResultError(ctx, std::string("internal error: ") + e.what());
  } catch (...) {
    ResultError(ctx, "internal error");
  }
}

void CowbackupFunc(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  Guarded(ctx, [&] {
    std::string dest, schema;
    BackupOptions options;
    if (!BackupArgs(ctx, argc, argv, &dest, &schema, &options)) return;
    Summary summary;
    uint64_t id = 0;
    // Copies on this thread. This statement (SELECT with no FROM) holds no
    // read transaction on the database; Backup() refuses if one is open.
    Status s = cowbackup::sqlite::Backup(sqlite3_context_db_handle(ctx), schema, dest, options,
                                         &summary, &id);
    if (!s.ok() && id == 0) {
      ResultError(ctx, s.ToString());
      return;
    }
    ResultSummary(ctx, s, summary, id);
  });
}

void StartFunc(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  Guarded(ctx, [&] {
    std::string dest, schema;
    BackupOptions options;
    if (!BackupArgs(ctx, argc, argv, &dest, &schema, &options)) return;
    uint64_t id = 0;
    Status s = cowbackup::sqlite::StartBackup(sqlite3_context_db_handle(ctx), schema, dest,
                                              options, &id);
    if (!s.ok()) {
      ResultError(ctx, s.ToString());
      return;
    }
    sqlite3_result_int64(ctx, sqlite3_int64(id));
  });
}

void WaitFunc(sqlite3_context* ctx, int, sqlite3_value** argv) {
  Guarded(ctx, [&] {
    uint64_t id = 0;
    if (!JobIdArg(ctx, argv[0], &id)) return;
    Summary summary;
    Status s = cowbackup::sqlite::WaitBackup(id, &summary);
    if (s.code() == Status::Code::kNotFound && summary.state == cowbackup::JobState::kRunning) {
      ResultError(ctx, s.ToString());
      return;
    }
    ResultSummary(ctx, s, summary, id);
  });
}

void CancelFunc(sqlite3_context* ctx, int, sqlite3_value** argv) {
  Guarded(ctx, [&] {
    uint64_t id = 0;
    if (!JobIdArg(ctx, argv[0], &id)) return;
    Status s = cowbackup::sqlite::CancelBackup(id);
    if (!s.ok()) {
      ResultError(ctx, s.ToString());
      return;
    }
    sqlite3_result_int(ctx, 1);
  });
}

struct FunctionDef {
  const char* name;
  int argc;  // -1: 1..3, checked below
  void (*fn)(sqlite3_context*, int, sqlite3_value**);
};

// Registers the functions and the jobs table on one connection. Also the
// auto-extension for later connections: it must return SQLITE_OK (an
// auto-extension returning anything else fails sqlite3_open).
int RegisterFunctions(sqlite3* db, char** err, const sqlite3_api_routines*) {
  const int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  const FunctionDef defs[] = {
      {"cowbackup", 1, CowbackupFunc},       {"cowbackup", 2, CowbackupFunc},
      {"cowbackup", 3, CowbackupFunc},       {"cowbackup_start", 1, StartFunc},
      {"cowbackup_start", 2, StartFunc},     {"cowbackup_start", 3, StartFunc},
      {"cowbackup_wait", 1, WaitFunc},       {"cowbackup_cancel", 1, CancelFunc},
  };
  for (const FunctionDef& d : defs) {
    const int rc = sqlite3_create_function_v2(db, d.name, d.argc, flags, nullptr, d.fn, nullptr,
                                              nullptr, nullptr);
    if (rc != SQLITE_OK) {
      if (err) *err = sqlite3_mprintf("cowbackup: cannot register %s: %s", d.name, sqlite3_errstr(rc));
      return rc;
    }
  }
  const int rc = cowbackup::sql::RegisterJobsTable(db);
  if (rc != SQLITE_OK && err) *err = sqlite3_mprintf("cowbackup: cannot register cowbackup_jobs");
  return rc;
}

int AutoRegister(sqlite3* db, char** err, const sqlite3_api_routines* api) {
  return RegisterFunctions(db, err, api);
}

std::mutex g_load_mu;
bool g_loaded = false;  // GUARDED_BY(g_load_mu)

using EntryFn = int (*)(sqlite3*, char**, const sqlite3_api_routines*);

// Another copy of this extension (another path: the preload library loaded
// one, the program loads its own) registered the "cowbackup" VFS first: its
// entry point, found through the object that holds the VFS's xOpen, or
// nullptr. Loading through that entry leaves the process one shim.
EntryFn FirstCopyEntry(EntryFn self) {
  sqlite3_vfs* vfs = sqlite3_vfs_find("cowbackup");
  Dl_info info;
  if (vfs == nullptr || dladdr(reinterpret_cast<void*>(vfs->xOpen), &info) == 0 ||
      info.dli_fname == nullptr) {
    return nullptr;
  }
  void* h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (h == nullptr) return nullptr;
  const auto entry = reinterpret_cast<EntryFn>(dlsym(h, "sqlite3_cowbackup_init"));
  dlclose(h);  // it stays loaded: its VFS is registered
  return entry == self ? nullptr : entry;
}

}  // namespace

// The entry point SQLite derives from the file name cowbackup.so.
extern "C" __attribute__((visibility("default"))) int sqlite3_cowbackup_init(
    sqlite3* db, char** err, const sqlite3_api_routines* api) {
  try {
    std::unique_lock<std::mutex> lock(g_load_mu);
    if (!g_loaded) {
      if (const EntryFn first = FirstCopyEntry(&sqlite3_cowbackup_init)) {
        lock.unlock();
        return first(db, err, api);
      }
      Status s = cowbackup::sqlite::RegisterVfs(/*make_default=*/true);
      if (!s.ok()) {
        if (err) *err = sqlite3_mprintf("cowbackup: %s", s.ToString().c_str());
        return SQLITE_ERROR;
      }
      const int rc = sqlite3_auto_extension(reinterpret_cast<void (*)(void)>(AutoRegister));
      if (rc != SQLITE_OK) {
        if (err) *err = sqlite3_mprintf("cowbackup: sqlite3_auto_extension failed");
        return rc;
      }
      g_loaded = true;
    }
    const int rc = RegisterFunctions(db, err, api);
    return rc == SQLITE_OK ? SQLITE_OK_LOAD_PERMANENTLY : rc;
  } catch (...) {
    if (err) *err = sqlite3_mprintf("cowbackup: out of memory while loading");
    return SQLITE_NOMEM;
  }
}
