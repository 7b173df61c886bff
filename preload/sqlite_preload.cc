// libcowbackup_preload.so, SQLite half: the cowbackup VFS becomes the
// default of a program's own SQLite before the program opens its first
// database, with no change to the program (docs/PRELOAD.md).
//
// MECHANISM
//   This library links no SQLite. It defines sqlite3_open, sqlite3_open_v2
//   and sqlite3_open16; preloaded, those definitions come before the
//   program's libsqlite3.so.0 in every lookup, whether the program linked
//   SQLite at start (the sqlite3 shell) or dlopens it later (Python's
//   _sqlite3, loaded RTLD_LOCAL on `import sqlite3`). On the process's first
//   call, before forwarding it:
//
//     1. find the real function: dlsym(RTLD_NEXT) sees a libsqlite3 of the
//        global scope; one loaded RTLD_LOCAL is found through the calling
//        object's own handle (its dependencies), then by its soname;
//     2. dlopen the extension, cowbackup.so in this library's directory. Its
//        DT_NEEDED libsqlite3.so.0 is the program's copy, already loaded
//        (the loader matches the soname), so the extension's VFS and
//        auto-extension land in the SQLite the program uses; if they are
//        not the same library (the program's SQLite has another name) we
//        say so on stderr and do nothing;
//     3. open ":memory:" with the real sqlite3_open_v2, call the extension's
//        entry sqlite3_cowbackup_init on it (registers the VFS as the
//        default and its functions as an auto-extension: what loading the
//        extension does), close it.
//   Then every call forwards; the cost is one acquire load per open.
//
//   A program that loads the extension itself afterwards gets the same
//   object back if it names the same file; a copy at another path finds
//   the VFS registered and hands its entry to the first copy
//   (sql/extension.cc): one shim either way.
//
//   Not covered: a program whose SQLite is linked statically (its calls
//   never reach these definitions; the CLI's non-participant checks catch
//   its writes during a backup); a database opened with an explicit VFS
//   name; a setuid program (the loader ignores LD_PRELOAD).
//
// Nothing here allocates through C++ or throws; messages are fixed-size.
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include <atomic>

#include "preload/real_symbol.h"

namespace cowbackup::preload {
namespace {

using OpenV2Fn = int (*)(const char*, sqlite3**, int, const char*);
using OpenFn = int (*)(const char*, sqlite3**);
using Open16Fn = int (*)(const void*, sqlite3**);
using CloseFn = int (*)(sqlite3*);
using FreeFn = void (*)(void*);
using EntryFn = int (*)(sqlite3*, char**, const sqlite3_api_routines*);

void Say(const char* what, const char* detail) {
  fprintf(stderr, "cowbackup preload: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

constexpr const char* kSoname = "libsqlite3.so.0";

void* SqliteSymbol(const char* name, const void* caller) { return RealSymbol(name, caller, kSoname); }

std::atomic<OpenV2Fn> g_open_v2{nullptr};
std::atomic<OpenFn> g_open{nullptr};
std::atomic<Open16Fn> g_open16{nullptr};

// The extension's path: cowbackup.so beside this library.
bool ExtensionPath(char* out, size_t cap) {
  Dl_info info;
  if (dladdr(reinterpret_cast<const void*>(&Say), &info) == 0 || info.dli_fname == nullptr) return false;
  const char* slash = strrchr(info.dli_fname, '/');
  const int dir = slash ? int(slash - info.dli_fname) : 1;
  const int n = snprintf(out, cap, "%.*s/cowbackup.so", dir, slash ? info.dli_fname : ".");
  return n > 0 && size_t(n) < cap;
}

// Steps 2 and 3 of the file comment. Failures are said once and leave the
// program as it was: its databases are then not covered, which a backup
// reports (the non-participant checks).
void InstallShim(const void* caller) {
  const auto real_open = reinterpret_cast<OpenV2Fn>(SqliteSymbol("sqlite3_open_v2", caller));
  const auto real_close = reinterpret_cast<CloseFn>(SqliteSymbol("sqlite3_close", caller));
  const auto real_free = reinterpret_cast<FreeFn>(SqliteSymbol("sqlite3_free", caller));
  if (real_open == nullptr || real_close == nullptr || real_free == nullptr) {
    Say("cannot find the program's SQLite; its databases are not covered", nullptr);
    return;
  }
  // A program that registered cowbackup's VFS itself (the C++ API) is
  // covered already: one shim.
  const auto vfs_find = reinterpret_cast<sqlite3_vfs* (*)(const char*)>(SqliteSymbol("sqlite3_vfs_find", caller));
  if (vfs_find != nullptr && vfs_find("cowbackup") != nullptr) return;
  char path[PATH_MAX];
  if (!ExtensionPath(path, sizeof path)) {
    Say("cannot locate cowbackup.so beside the preload library", nullptr);
    return;
  }
  void* ext = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (ext == nullptr) {
    Say("cannot load the extension; databases are not covered", dlerror());
    return;
  }
  // The extension's SQLite must be the program's (the same loaded object).
  if (ObjectOf(dlsym(ext, "sqlite3_open_v2")) != ObjectOf(reinterpret_cast<void*>(real_open))) {
    Say("the program's SQLite is not the system libsqlite3.so.0; its databases are not covered",
        nullptr);
    dlclose(ext);
    return;
  }
  const auto entry = reinterpret_cast<EntryFn>(dlsym(ext, "sqlite3_cowbackup_init"));
  sqlite3* db = nullptr;
  if (entry == nullptr ||
      real_open(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    Say("cannot start the extension; databases are not covered", nullptr);
    real_close(db);
    return;
  }
  char* err = nullptr;
  const int rc = entry(db, &err, nullptr);
  if (rc != SQLITE_OK && rc != SQLITE_OK_LOAD_PERMANENTLY) {
    Say("the extension did not load; databases are not covered", err ? err : "no message");
  }
  real_free(err);
  real_close(db);
  // The extension stays loaded for the life of the process.
}

pthread_mutex_t g_install_mu = PTHREAD_MUTEX_INITIALIZER;
std::atomic<bool> g_installed{false};
// Set while this thread installs: the :memory: open inside, and any open the
// extension makes, forward directly.
thread_local bool t_installing = false;

inline void EnsureShim(const void* caller) {
  if (g_installed.load(std::memory_order_acquire) || t_installing) return;
  pthread_mutex_lock(&g_install_mu);
  if (!g_installed.load(std::memory_order_relaxed)) {
    t_installing = true;
    InstallShim(caller);
    t_installing = false;
    g_installed.store(true, std::memory_order_release);
  }
  pthread_mutex_unlock(&g_install_mu);
}

int NoSqlite(sqlite3** db) {
  Say("sqlite3_open called but no SQLite library found", nullptr);
  if (db) *db = nullptr;
  return SQLITE_ERROR;
}

}  // namespace
}  // namespace cowbackup::preload

using namespace cowbackup::preload;

extern "C" {

__attribute__((visibility("default"))) int sqlite3_open_v2(const char* filename, sqlite3** db,
                                                           int flags, const char* vfs) {
  const void* caller = __builtin_return_address(0);
  const OpenV2Fn real = Real(&g_open_v2, "sqlite3_open_v2", caller, kSoname);
  if (real == nullptr) return NoSqlite(db);
  EnsureShim(caller);
  return real(filename, db, flags, vfs);
}

__attribute__((visibility("default"))) int sqlite3_open(const char* filename, sqlite3** db) {
  const void* caller = __builtin_return_address(0);
  const OpenFn real = Real(&g_open, "sqlite3_open", caller, kSoname);
  if (real == nullptr) return NoSqlite(db);
  EnsureShim(caller);
  return real(filename, db);
}

__attribute__((visibility("default"))) int sqlite3_open16(const void* filename, sqlite3** db) {
  const void* caller = __builtin_return_address(0);
  const Open16Fn real = Real(&g_open16, "sqlite3_open16", caller, kSoname);
  if (real == nullptr) return NoSqlite(db);
  EnsureShim(caller);
  return real(filename, db);
}

}  // extern "C"
