// Destinations that never look complete unless they are.
//
// AtomicFile writes under a temporary name beside the destination
// ("<dest>.cowtmp-<pid>-<random>", mode 0600, created O_EXCL|O_NOFOLLOW,
// a fresh name tried while one is taken) and publishes with fsync, rename,
// fsync of the directory, as checkpoint_impl.cc does. abandon() unlinks the
// temporary. Every write goes through the descriptor that created the
// temporary, or one reopened from it (ReopenFd), never through its name. It writes with direct I/O where the filesystem allows it (see
// kDirectChunk). A StreamOutput writes to an already open descriptor (a pipe,
// stdout): it cannot be taken back, so an unfinished stream simply has no
// trailer and every reader calls it incomplete.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cowbackup/status.h"
#include "engine/aligned_buffer.h"

namespace cowbackup {

// Sequential byte output used by the archive writer.
class ByteOutput {
 public:
  virtual ~ByteOutput() = default;
  virtual Status append(const uint8_t* data, size_t len) = 0;
  // Durable and visible at the destination.
  virtual Status commit() = 0;
  virtual void abandon() noexcept = 0;
  virtual const std::string& name() const = 0;
};

inline constexpr const char* kTempInfix = ".cowtmp-";

// Makes a new temporary beside `dest` with `make` (posix_file.h's
// CreateExclusiveFile or CreatePrivateDir): "<dest>.cowtmp-<pid>-<random>",
// which RemoveStale recognises once this process is gone. Returns make's
// result; *path is the name.
int MakeTemp(const std::string& dest, int (*make)(const char*), std::string* path);

// Temporaries in `dir` (MakeTemp's names) whose process no longer runs:
// those of the destination named `base` ("<base>.cowtmp-<pid>-..."), or of
// any destination if `base` is empty. Looks with lstat only, never opens or
// follows anything, and lists only regular files and directories owned by
// this user. AtomicFile::RemoveStale removes them; `status` shows them.
std::vector<std::string> ListStaleTemporaries(const std::string& dir, const std::string& base);

// Whether `dest` may be written: absent, or (only with `overwrite`) a
// regular file that is not a database open elsewhere. A symlink (dangling
// or not), a directory, a FIFO, a device or a socket is refused, never
// followed or replaced. `option` names the overwrite option as the user
// gave it ("overwrite", "--force") in the message; `noun` what dest is to
// the user ("destination", "output").
Status CheckOutputPath(const std::string& dest, bool overwrite, const char* option = "overwrite",
                       const char* noun = "destination");

// What a destination is going to hold, for the checks that depend on it.
enum class Contents {
  kOther,        // an archive; an LMDB data file (see CheckSqliteSidecars)
  kSqliteImage,  // a database image SQLite may open (plain backup, restore)
};

// Whether a SQLite database may be published at `dest` as far as the files
// SQLite looks for beside it are concerned. SQLite applies two of them to
// a database when it opens it, and cannot tell that they belong to another
// one (whatever was at `dest` before, or a file someone planted):
//  1. "<dest>-wal": whenever it exists beside a non-empty database, SQLite
//     opens the database in WAL mode, whatever its header says (pager.c,
//     pagerOpenWalIfPresent), and WAL recovery takes every frame whose
//     salts and checksums agree with the log's own header; nothing ties
//     them to the database. Checked by hand on Debian's 3.40.1: a restore
//     beside another database's -wal opened as that other database's
//     schema, and integrity_check said "ok".
//  2. "<dest>-journal": hot (rolled back into the database, which is also
//     truncated to the journal's original size) when its first byte is not
//     zero and no connection holds RESERVED (pager.c, hasHotJournal).
// So either is refused if it exists as anything (a symlink, dangling or
// not, a FIFO, a directory...) except a regular file SQLite ignores: an
// empty one (a -wal with no frames recovers nothing; an empty -journal is
// never hot; journal_mode=TRUNCATE leaves one), or a -journal whose first
// byte is zero (journal_mode=PERSIST leaves one) -- and then only if no
// process has it open, since a live database's connection may be about to
// fill it. "<dest>-shm" is harmless: the first connection to open it when
// no process holds its dead-man-switch lock truncates it and rebuilds the
// wal-index from the -wal (os_unix.c, unixLockSharedMemory; wal.c,
// walIndexRecover), and without a -wal there is nothing to rebuild from.
// Nothing is ever removed: the files are not ours (the message says so).
// LMDB has no analogue: lock.mdb holds no data and is reinitialised by the
// first process to open the environment (mdb.c, mdb_env_setup_locks).
Status CheckSqliteSidecars(const std::string& dest);

class AtomicFile final : public ByteOutput {
 public:
  // Refuses what CheckOutputPath refuses, and for a kSqliteImage what
  // CheckSqliteSidecars refuses, before anything is created; commit()
  // checks the sidecars again just before the rename. Fails early on an
  // unwritable directory, so a job never starts when it could not finish.
  static Status Create(const std::string& dest, bool overwrite, std::unique_ptr<AtomicFile>* out,
                       Contents contents = Contents::kOther);
  ~AtomicFile() override;  // abandons unless committed

  Status append(const uint8_t* data, size_t len) override;
  Status pwrite(const uint8_t* data, size_t len, uint64_t offset);
  Status truncate(uint64_t size);
  // Sets `bytes` of disk aside for the file (fallocate, keeping its size),
  // so a destination that cannot hold the copy fails at once, not near the
  // end of a long backup. Skipped where the file system cannot; commit()
  // gives back what was not written.
  Status Reserve(uint64_t bytes);
  Status commit() override;
  void abandon() noexcept override;
  const std::string& name() const override { return dest_; }
  const std::string& temp_path() const { return temp_; }

  // Removes temporaries of `dest` left by processes that no longer run
  // (files, and a restore's temporary LMDB environment directories);
  // returns their paths. What ListStaleTemporaries lists, and nothing else.
  static std::vector<std::string> RemoveStale(const std::string& dest);

  // Writes are staged in an aligned buffer and go to the device with
  // O_DIRECT (a second descriptor of the temporary), kDirectChunk at a time,
  // like RocksDB's use_direct_io_for_flush_and_compaction: there are no
  // dirty pages of ours for the application's fsyncs to queue behind (on
  // this machine class a commit's worst stall under a 1 GiB copy fell from
  // 130-300 ms to about 5 ms), and the copy does not evict the application's
  // page cache. Bytes outside whole kIoAlign blocks, and every write on
  // a filesystem without O_DIRECT, go through the page cache.
  static constexpr size_t kDirectChunk = 1 << 20;
  // Buffered writes start writeback every kSyncChunk bytes and await it one
  // chunk behind (RocksDB's bytes_per_sync): dirty pages stay bounded and
  // the final fsync is small.
  static constexpr uint64_t kSyncChunk = 8 << 20;
  // A replaced destination is freed this much per journal commit.
  static constexpr uint64_t kTrimStep = 64 << 20;

  // Whether writes currently go through O_DIRECT (for tests).
  bool direct() const { return direct_fd_ >= 0; }
  // Turns direct I/O off (tests compare both paths; AtomicFile does it
  // itself when the filesystem refuses an O_DIRECT write).
  void DisableDirect();

 private:
  AtomicFile(std::string dest, std::string temp, int fd, int direct_fd, bool overwrite,
             Contents contents);
  Status Stage(const uint8_t* data, size_t len, uint64_t offset);
  Status Drain(bool all);
  Status WriteBuffered(const uint8_t* data, size_t len, uint64_t offset);
  Status WriteDirect(const uint8_t* data, size_t len, uint64_t offset);
  static void TrimAndClose(int fd);
  const std::string dest_;
  const std::string temp_;
  int fd_;
  int direct_fd_;  // O_DIRECT descriptor of temp_, or -1
  const bool overwrite_;
  const Contents contents_;
  // stage_[i] holds file offset stage_base_ + i (stage_base_ is aligned);
  // the valid bytes are [stage_begin_, stage_end_).
  IoBuffer stage_;
  uint64_t stage_base_ = 0;
  size_t stage_begin_ = 0, stage_end_ = 0;
  uint64_t append_offset_ = 0;
  uint64_t unsynced_ = 0;       // bytes written since the last writeback kick
  uint64_t synced_upto_ = 0;    // file offset writeback was started up to
  bool reserved_ = false;  // Reserve() allocated beyond the end of file
  bool done_ = false;
};

class StreamOutput final : public ByteOutput {
 public:
  // Does not take ownership of `fd`.
  StreamOutput(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  Status append(const uint8_t* data, size_t len) override;
  Status commit() override;  // fsync if a regular file; nothing for a pipe
  void abandon() noexcept override {}
  const std::string& name() const override { return name_; }

 private:
  const int fd_;
  const std::string name_;
};

// True if `path` exists (any type).
bool PathExists(const std::string& path);

// Renames `temp_dir`, whose entries are already durable, to `dest` (absent,
// or a real directory: never a symlink), as
// AtomicFile::commit does for a file: a directory at `dest` is swapped out
// in one step where the file system can (RENAME_EXCHANGE), else moved aside
// first; the parent directory is fsynced; only then is the replaced
// directory removed (flat), since until then a power loss may bring it back.
// If that fsync fails it is kept, and the error says where. On a failed
// rename `temp_dir` is removed.
Status PublishDirectory(const std::string& temp_dir, const std::string& dest);

}  // namespace cowbackup
