// cowbackup restore ARCHIVE OUT: an archive back into a database.
//
// RestoreArchive (backup/restore.h) does the work: every record is checked
// as it is applied, the image is built under a temporary name, fsynced and
// renamed, so OUT never holds a partial database. This file adds what an
// operator needs around it: --force, refusing to replace the archive
// itself, removal of the temporary on interrupt, progress and a report.
// What OUT may be (never a
// symlink, device or FIFO, never a live database, an LMDB directory only
// if it holds just an environment) is RestoreArchive's to decide.
#include <errno.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>

#include "backup/restore.h"
#include "tools/archive_report.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/progress_bar.h"

namespace cowbackup::cli {

namespace {

// The one check RestoreArchive does not make, because it is about the
// command line rather than the archive (what OUT may be is the library's).
Status CheckNotArchive(const std::string& archive, const std::string& out) {
  struct stat out_st, in_st;
  if (archive != "-" && ::stat(out.c_str(), &out_st) == 0 && ::stat(archive.c_str(), &in_st) == 0 &&
      in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino) {
    return Status::InvalidArgument("output is the archive itself", out);
  }
  return Status::OK();
}

}  // namespace

int RunRestore(const std::vector<std::string>& args) {
  CommonFlags flags;
  std::string archive, out;
  bool force = false;
  CommandLine cl("restore", "restore [options] ARCHIVE OUT",
                 "Turns an archive into a database: a SQLite archive becomes the database\n"
                 "file OUT, an LMDB archive becomes the environment directory OUT holding\n"
                 "data.mdb. Every record is checked on the way; the copy is written under a\n"
                 "temporary name beside OUT, fsynced and renamed, so OUT never holds a\n"
                 "partial database, and on any problem nothing is left behind. An existing\n"
                 "OUT is refused unless --force. ARCHIVE may be '-' for standard input.",
                 "  cowbackup restore nightly.cbk restored.db\n"
                 "  cowbackup restore --force nightly.cbk /srv/app/app.db\n"
                 "  cowbackup restore env.cbk restored-env/    # LMDB: a directory with data.mdb\n"
                 "  ssh host cat /backups/app.cbk | cowbackup restore - app.db");
  cl.options().add_options()
      ("force,f", po::bool_switch(&force),
       "replace an existing OUT (a directory only if it holds just data.mdb and lock.mdb)");
  cl.add_common(&flags);
  cl.positional("ARCHIVE", &archive);
  cl.positional("OUT", &out);
  int exit_code = kExitOk;
  if (!cl.Parse(args, &exit_code)) return exit_code;

  const auto start = std::chrono::steady_clock::now();
  Status s = CheckNotArchive(archive, out);
  ArchiveReport report;
  if (s.ok()) {
    OnInterrupt cleanup([out] {
      RemoveOwnTemporaries(out);
      return true;
    });
    ProgressBar bar("restore", ProgressBar::Enabled(flags.progress, flags.quiet));
    bar.start(RegularFileSize(archive));
    s = RestoreArchive(archive, out, force, &report, [&bar](uint64_t n) { bar.update(n); });
    bar.finish(s.ok());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const format::Header& h = report.header;
  if (flags.json) {
    JsonObject o;
    o.add("archive", archive).add("output", out).add("ok", s.ok()).add("state", StateWord(s))
        .add_or_null("error", s.ok() ? "" : NameDestination(Describe(s), out));
    if (s.ok()) {
      o.add("source_kind", format::SourceKindName(h.source_kind))
          .add("output_kind", h.source_kind == format::SourceKind::kLmdb ? "directory" : "file")
          .add("page_size", h.page_size).add("page_count", h.page_count)
          .add("database_bytes", h.page_count * h.page_size)
          .add("overlay_records", report.trailer.overlay_records)
          .add("archive_bytes", report.archive_bytes);
    }
    o.add("seconds", seconds);
    PrintJson(o);
  }
  if (!s.ok()) {
    PrintError("restore", NameDestination(Describe(s), out));
    return kExitFailure;
  }
  if (!flags.json && !flags.quiet) {
    const bool lmdb = h.source_kind == format::SourceKind::kLmdb;
    char took[32];
    snprintf(took, sizeof took, " (%.2f s)", seconds);
    PrintLine(stdout, "restored " + HeaderSummary(h) + " to " + out + (lmdb ? "/data.mdb" : "") + took);
  }
  return kExitOk;
}

}  // namespace cowbackup::cli
