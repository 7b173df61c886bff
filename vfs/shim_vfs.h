// The cowbackup shim VFS, modelled on SQLite's ext/misc/cksumvfs.c.
//
// LOADING
//   RegisterShimVfs() (or cowbackup::sqlite::RegisterVfs(), or loading
//   build/cowbackup.so) registers a VFS named "cowbackup" over the VFS that
//   was the default, and makes it the default. Databases opened afterwards
//   go through it; "file:x.db?vfs=cowbackup" selects it explicitly.
//
// IMPLEMENTATION NOTES
//   Our file object begins with sqlite3_file and the parent's file object
//   follows it in the same block (szOsFile = ours + parent's):
//
//     +---------------------+------------------------------------+
//     | ShimFile            | parent sqlite3_file (szOsFile)     |
//     | base | state        |                                    |
//     +---------------------+------------------------------------+
//     ^ pFile               ^ ParentFile(pFile)
//
//   Main database files and their -wal files get a ShimFile (a WAL's
//   FileState is its database's); journals and temp files go straight to
//   the parent's xOpen and never touch our code. Every method forwards;
//   xWrite and xTruncate report to the FileState's WriteHook first (the
//   main file's hook or wal_hook; idle path: one atomic load), and
//   xShmLock reports the WAL write and checkpoint locks. A backup problem fails the
//   job; the write still goes through. Our io_methods version matches the
//   parent file's (three tables, as test_multiplex.c keeps two).
#pragma once

#include <sqlite3.h>

#include "cowbackup/status.h"

namespace cowbackup::sqlite {

class FileState;

// Idempotent; see the file comment.
Status RegisterShimVfs(bool make_default);
// The FileState behind `file` if it is a main database file opened through
// the shim, else nullptr.
FileState* ShimFileState(sqlite3_file* file);
// The parent VFS the shim wraps (nullptr before registration).
sqlite3_vfs* ShimParentVfs();

}  // namespace cowbackup::sqlite
