// cowbackup backup SOURCE ARCHIVE: a hot backup from this process.
//
// SOURCE is a SQLite database file or an LMDB environment directory (one
// holding data.mdb); the front ends do the work (include/cowbackup/
// sqlite.hpp, include/cowbackup/lmdb.hpp) with the same engine and format
// as the SQLite extension and the LMDB wrapper.
//
// WHAT IT GUARANTEES. This process opens the database through cowbackup,
// so it attaches to the database's coordination region (docs/REGION.md)
// and its job is shared with every process that did the same: their writes
// preserve pre-images for it (docs/DESIGN.md, "Writers in several
// processes"). So:
//   - T0 is taken under the database's own begin-time lock (SQLite: a SHARED
//     lock, or the WAL write lock; LMDB: the writer mutex in lock.mdb), so
//     the copy starts from a committed state;
//   - a commit by a process that does not take part is detected (SQLite:
//     the file change counter, or the wal-index; LMDB: the meta pages'
//     txnids) and fails the backup with a message that says so; nothing is
//     published (SQLite: rollback-journal and WAL modes alike).
// So the result is a correct copy of T0 or an error (docs/CLI.md names the
// one case neither is promised: a non-participant's rolled-back spill).
//
// Publishing. The front end writes the archive as every backup does
// (backup/output.h: "<ARCHIVE>.cowtmp-<pid>-...", renamed into place once
// every check passed, stale temporaries of dead processes swept first).
// ARCHIVE "-" streams to standard output: the archive is built in a private
// temporary directory (--snapshot-dir, else $TMPDIR) and copied out after
// the checks, because a stream cannot be taken back once sent.
//
// Interrupts. The first SIGINT/SIGTERM/SIGHUP cancels the backup and lets
// it remove what it made (temporary archive, snapshot volume) by the usual
// path; further signals do not cut that cleanup short.
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "backup/options.h"
#include "backup/output.h"
#include "cowbackup/lmdb.hpp"
#include "cowbackup/sqlite.hpp"
#include "engine/posix_file.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/progress_bar.h"
#include "tools/source_kind.h"

namespace cowbackup::cli {

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(50);

// Copies the finished temporary archive to standard output.
Status StreamOut(const std::string& temp) {
  int fd = ::open(temp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open", temp, errno);
  std::vector<uint8_t> buf(1 << 20);
  Status s;
  for (;;) {
    if (Interrupted()) {
      s = Status::Cancelled("backup cancelled");
      break;
    }
    size_t got = 0;
    s = ReadUpTo(fd, buf.data(), buf.size(), &got, temp);
    if (!s.ok() || got == 0) break;
    s = WriteFull(STDOUT_FILENO, buf.data(), got, "<stdout>");
    if (!s.ok() || got < buf.size()) break;
  }
  ::close(fd);
  if (s.ok()) {
    struct stat st;
    if (::fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode)) s = FsyncFd(STDOUT_FILENO, "<stdout>");
  }
  return s;
}

struct Outcome {
  Summary summary;
  uint64_t lmdb_txnid = 0;
};

// The job's progress in bytes of the source, for the bar.
void Show(ProgressBar* bar, const Progress& p, uint32_t page_size) {
  bar->set_total(p.pages_total * page_size);
  bar->update(p.pages_done * page_size);
}

Status BackupSqlite(const std::string& source, const std::string& dest, const BackupOptions& options,
                    ProgressBar* bar, Outcome* out) {
  Status s = sqlite::RegisterVfs(/*make_default=*/false);
  if (!s.ok()) return s;
  sqlite3* db = nullptr;
  // Read-only: the tool never changes the database it copies.
  const int rc = sqlite3_open_v2(source.c_str(), &db, SQLITE_OPEN_READONLY, sqlite::kVfsName);
  if (rc != SQLITE_OK) {
    s = Status::InvalidArgument(std::string("open: ") + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)),
                                source);
    sqlite3_close(db);
    return s;
  }
  uint64_t id = 0;
  s = sqlite::StartBackup(db, "main", dest, options, &id);
  if (s.ok()) {
    OnInterrupt cancel([id] {
      (void)sqlite::CancelBackup(id);
      return false;  // the job removes its own temporaries; main reports
    });
    if (Interrupted()) (void)sqlite::CancelBackup(id);  // while it started
    for (;;) {
      sqlite::JobInfo info;
      if (!sqlite::GetJob(id, &info).ok() || info.summary.state != JobState::kRunning) break;
      Show(bar, info.summary.progress, info.summary.page_size);
      std::this_thread::sleep_for(kPollInterval);
    }
    s = sqlite::WaitBackup(id, &out->summary);
  }
  sqlite3_close(db);
  return s;
}

Status BackupLmdb(const std::string& source, const std::string& dest, const BackupOptions& options,
                  ProgressBar* bar, Outcome* out) {
  std::unique_ptr<lmdb::Env> env;
  // A backup takes LMDB's writer lock for its begin-time instant, so the
  // env is opened read-write; this process still writes nothing:
  // existing_only refuses a data.mdb that is not already an LMDB data file
  // (LMDB would initialize an empty one) before LMDB opens it.
  lmdb::EnvOptions env_options;
  env_options.existing_only = true;
  Status s = lmdb::Env::Open(source, env_options, &env);
  if (!s.ok()) return s;
  // This process takes part in the environment's coordination region like
  // every process writing it through cowbackup: their writes preserve
  // pre-images for this job, and a commit by one that does not take part
  // fails it (the library's end check, under the writer lock).
  std::unique_ptr<lmdb::BackupTask> task;
  s = env->start_backup(dest, options, &task);
  if (!s.ok()) return s;
  lmdb::BackupResult result;
  {
    lmdb::BackupTask* t = task.get();
    OnInterrupt cancel([t] {
      t->cancel();
      return false;
    });
    if (Interrupted()) t->cancel();
    while (!task->done()) {
      Show(bar, task->progress(), task->summary().page_size);
      std::this_thread::sleep_for(kPollInterval);
    }
    s = task->wait(&result);
  }
  out->summary = result.summary;
  out->lmdb_txnid = result.txnid;
  return s;
}

}  // namespace

int RunBackup(const std::vector<std::string>& args) {
  CommonFlags flags;
  std::string source, archive, format = "archive", snapshot_dir;
  uint32_t segment_pages = kDefaultSegmentPages;
  double max_rate_mb = 0;
  double pace = 0;
  uint32_t busy_timeout_ms = 5000;
  bool force = false, overwrite = false;
  CommandLine cl(
      "backup", "backup [options] SOURCE ARCHIVE",
      "Takes a begin-time-consistent backup of SOURCE, a SQLite database file or\n"
      "an LMDB environment directory (holding data.mdb), with the same engine and\n"
      "archive format as the SQLite extension and the LMDB wrapper. ARCHIVE '-'\n"
      "streams the archive to standard output (it is built in a temporary file\n"
      "first, and the report goes to stderr).\n"
      "\n"
      "What it guarantees: the copy is SOURCE as it was when the backup began.\n"
      "Processes that opened the database through cowbackup (the SQLite\n"
      "extension or C++ API, the LMDB library) take part in the backup and keep\n"
      "writing. A commit by a process that did not is detected, and the backup\n"
      "fails saying so, with nothing published (SQLite: rollback-journal and WAL\n"
      "modes alike). `cowbackup status SOURCE` shows who is attached.",
      "  cowbackup backup app.db nightly.cbk\n"
      "  cowbackup backup --format plain app.db copy.db     # a ready-to-open database\n"
      "  cowbackup backup /var/lib/app/env env.cbk          # LMDB environment directory\n"
      "  cowbackup backup --max-rate-mb 50 --force app.db nightly.cbk\n"
      "  cowbackup backup app.db - | ssh host 'cat > /backups/app.cbk'");
  cl.options().add_options()
      ("format", po::value<std::string>(&format)->value_name("archive|plain"),
       "archive (default): the framed archive; plain: a ready-to-open database file")
      ("segment-pages", po::value<uint32_t>(&segment_pages)->value_name("N"),
       "pages the copier reads at a time (default 256)")
      ("max-rate-mb", po::value<double>(&max_rate_mb)->value_name("MB/s"),
       "limit destination writes to this many MB/s (0.001 .. 1000000; default 0: no limit)")
      ("pace", po::value<double>(&pace)->value_name("SHARE"),
       "pace the copy by the commits of the processes writing the database, keeping them at this share "
       "of its speed (0.05 .. 1; default 0: off)")
      ("snapshot-dir", po::value<std::string>(&snapshot_dir)->value_name("DIR"),
       "where pre-images (and a streamed archive) are kept while the copy runs "
       "(default: beside ARCHIVE, or $TMPDIR when streaming)")
      ("busy-timeout-ms", po::value<uint32_t>(&busy_timeout_ms)->value_name("MS"),
       "how long to wait for the begin-time lock (default 5000)")
      ("force,f", po::bool_switch(&force), "replace an existing ARCHIVE")
      ("overwrite", po::bool_switch(&overwrite), "the same as --force");
  cl.add_common(&flags);
  cl.positional("SOURCE", &source);
  cl.positional("ARCHIVE", &archive);
  int exit_code = kExitOk;
  if (!cl.Parse(args, &exit_code)) return exit_code;
  force = force || overwrite;

  BackupOptions options;
  if (format == "archive") {
    options.format = BackupOptions::Format::kArchive;
  } else if (format == "plain") {
    options.format = BackupOptions::Format::kPlain;
  } else {
    PrintUsageError("backup", "--format must be 'archive' or 'plain', not '" + format + "'");
    return kExitUsage;
  }
  const bool streaming = archive == "-";
  options.segment_pages = segment_pages;
  options.max_rate_mb = max_rate_mb;
  options.pace = pace;
  options.snapshot_dir = snapshot_dir;
  options.busy_timeout_ms = busy_timeout_ms;
  options.overwrite = force;
  // The limits every front end shares, named as flags ("option --max-rate-mb: ...").
  if (Status v = ValidateBackupOptions(options, streaming, OptionSpelling::kFlag); !v.ok()) {
    PrintUsageError("backup", v.message());
    return kExitUsage;
  }

  const auto start = std::chrono::steady_clock::now();
  SourceKind kind = SourceKind::kSqlite;
  Outcome outcome;
  Status s = DetectSource(source, &kind);
  if (s.ok() && kind == SourceKind::kLmdbDataFile) {
    s = Status::NotSupported(
        "source is the data file of an LMDB environment opened MDB_NOSUBDIR, which backup does not "
        "take yet",
        source);
  }
  // Where the front end writes: ARCHIVE itself, or, when streaming, a file
  // in a private directory that is copied out once every check passed.
  std::string dest = archive, temp_dir;
  if (s.ok() && !streaming) {
    s = CheckOutputPath(archive, force, "--force");
  } else if (s.ok()) {
    const char* t = getenv("TMPDIR");
    std::string tmpl = (snapshot_dir.empty() ? std::string(t && *t ? t : "/tmp") : snapshot_dir) +
                       "/cowbackup-stream-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      s = Status::FromErrno("create temporary directory", ParentDir(tmpl), errno);
    } else {
      temp_dir = tmpl;
      dest = temp_dir + "/stream.cbk";
    }
  }
  if (s.ok()) {
    // Until the front end's own cancel takes over: note the interrupt, and
    // wind down (the backup is cancelled as soon as it has started).
    OnInterrupt wind_down([] { return false; });
    ProgressBar bar("backup", ProgressBar::Enabled(flags.progress, flags.quiet));
    bar.start(0);
    s = kind == SourceKind::kSqlite ? BackupSqlite(source, dest, options, &bar, &outcome)
                              : BackupLmdb(source, dest, options, &bar, &outcome);
    bar.finish(s.ok());
    if (s.ok() && streaming) s = StreamOut(dest);
    if (!temp_dir.empty()) RemoveTree(temp_dir);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const Progress& p = outcome.summary.progress;
  const char* kind_name = kind == SourceKind::kSqlite ? "sqlite" : "lmdb";
  // Errors name the destination, not the temporary it was built under.
  const std::string error = s.ok() ? "" : streaming ? Describe(s) : NameDestination(Describe(s), archive);
  // With ARCHIVE '-' stdout carries the archive: reports go to stderr.
  FILE* report = streaming ? stderr : stdout;
  if (flags.json) {
    JsonObject o;
    o.add("source", source).add("archive", archive).add("kind", kind_name)
        .add("format", format).add("ok", s.ok()).add("state", s.ok() ? "done" : StateWord(s))
        .add_or_null("error", error)
        .add("page_size", outcome.summary.page_size).add("pages", p.pages_done)
        .add("pages_total", p.pages_total).add("preserved_pages", p.pages_preserved)
        .add("bytes", p.bytes_written).add("seconds", seconds)
        .add("max_write_wait_us", p.max_write_wait_us).add("begin_lock_us", outcome.summary.begin_lock_us)
        .add("pace_min_mb", p.pace_min_mb);
    if (kind == SourceKind::kLmdbEnv && s.ok()) o.add("lmdb_txnid", outcome.lmdb_txnid);
    fprintf(report, "%s\n", o.str().c_str());
    fflush(report);
  }
  if (!s.ok()) {
    PrintError("backup", error);
    return kExitFailure;
  }
  if (!flags.json && !flags.quiet) {
    char counts[160];
    snprintf(counts, sizeof counts,
             ": %llu pages of %u bytes, %llu pre-images preserved, %s written in %.2f s",
             static_cast<unsigned long long>(p.pages_done), outcome.summary.page_size,
             static_cast<unsigned long long>(p.pages_preserved),
             ProgressBar::Bytes(double(p.bytes_written)).c_str(), seconds);
    PrintLine(report, std::string("backed up ") + kind_name + " " + source + " to " +
                          (streaming ? "standard output" : archive) + counts);
  }
  return kExitOk;
}

}  // namespace cowbackup::cli
