// cowbackup: options, progress and summary shared by every front end
// (SQLite extension, LMDB wrapper, command-line tool).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "cowbackup/status.h"

namespace cowbackup {

// How the copier deals with pages that writers overwrite before it got there.
enum class Variant : uint8_t {
  // The copier takes a preserved page from the snapshot volume instead of the
  // source; every page is written to the destination once, already at T0.
  kSnapshotFirst = 0,
  // The copier copies live pages straight through; preserved pre-images are
  // written after all pages and replace them (overlay records). The restored
  // file is byte-identical to kSnapshotFirst's.
  kOverlayAtEnd = 1,
};

// The default segment size, in pages. Chosen by bench/engine_bench
// (BM_CopyThroughput/segment_pages and BM_WriterStall): 256 pages of 4 KiB
// reach full copy throughput while a writer that collides with the copier
// waits for at most one 1 MiB read.
inline constexpr uint32_t kDefaultSegmentPages = 256;

// Every front end (SQL, these C++ APIs, the CLI) refuses values outside the
// ranges noted, with InvalidArgument naming the option.
struct BackupOptions {
  enum class Format : uint8_t { kArchive, kPlain };
  Format format = Format::kArchive;
  Variant variant = Variant::kSnapshotFirst;
  uint32_t segment_pages = kDefaultSegmentPages;  // 1 .. 1048576
  // Destination throttle in MB/s (1e6 bytes): 0 = none, else 0.001 .. 1e6.
  double max_rate_mb = 0;
  std::string snapshot_dir;   // where the snapshot volume lives; "" = beside dest
  bool overwrite = false;     // replace an existing destination
  uint32_t busy_timeout_ms = 5000;  // how long to try for the begin-time lock; <= 86400000
  bool hot_first = false;     // copy segments writers are hitting first
  // Hold each destination write while an application commit of this
  // process is in its I/O phase (at most 10 ms at a time): the application
  // keeps more of its throughput on a disk it shares with the destination,
  // for a longer backup. Writers in other processes are not seen. (SQLite
  // in WAL mode: while a connection holds the WAL write lock, i.e. for
  // its whole write transaction.)
  bool yield_to_commits = false;
  // Automatic pacing (engine/pacer.h): the share of its commit speed the
  // application keeps while the copy runs, 0.05 .. 1; 0 = off. The copy
  // watches the commits to the database of every process attached to its
  // coordination region (this process's alone without one), and adjusts its own
  // speed to hold that share, at full speed while nothing commits. With
  // max_rate_mb too, the lower of the two limits applies.
  double pace = 0;
  // Called on the copier thread once every page is copied, just before the
  // destination is published; a non-OK status fails the backup instead and
  // nothing is published. The command-line tool checks there that no other
  // process committed to an LMDB environment while it copied. May be empty.
  std::function<Status()> before_publish;
};

// Counters a front end shows while a job runs. A consistent-enough snapshot
// of relaxed atomics: each value is exact, the set is not taken atomically.
struct Progress {
  uint64_t pages_total = 0;      // pages at T0
  uint64_t pages_done = 0;       // pages whose T0 content reached the sink
  uint64_t pages_preserved = 0;  // pre-images saved to the snapshot volume
  uint64_t bytes_written = 0;    // bytes handed to the destination
  // The longest time one application write waited inside the backup's
  // hook (preserving pre-images, or held while the copier read its page):
  // the stall cowbackup itself added to that write.
  uint64_t max_write_wait_us = 0;
  // Time the copier held its destination writes while the application
  // committed (BackupOptions::yield_to_commits).
  uint64_t yield_ms = 0;
  // Automatic pacing (BackupOptions::pace): its limit now, and the lowest
  // it set, in MB/s; 0 = the copy runs (ran) at full speed.
  double pace_mb = 0;
  double pace_min_mb = 0;
};

enum class JobState : uint8_t { kRunning, kDone, kFailed, kCancelled };
const char* JobStateName(JobState state);

// What a finished job reports (SQL cowbackup() returns it as JSON).
struct Summary {
  JobState state = JobState::kRunning;
  Progress progress;
  uint32_t page_size = 0;
  double seconds = 0;
  // How long the begin-time lock was held, the only moment a backup holds
  // writers off (SQLite: SHARED in rollback mode, the WAL write lock in
  // WAL mode; LMDB: the writer mutex). 0 if T0 was never taken.
  uint64_t begin_lock_us = 0;
  std::string error;  // empty unless failed or cancelled
};

}  // namespace cowbackup
