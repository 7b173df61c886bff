// cowbackup verify [--deep] ARCHIVE: is the archive whole and undamaged?
//
// Plain verify reads every record (checksum, page number repeated after
// the payload, each page 0..N-1 exactly once) and the trailer (counts,
// digest). --deep restores into a fresh temporary directory instead (which
// checks all of the above on the way) and then asks the database engine:
// PRAGMA integrity_check for SQLite, a cursor walk of every database for
// LMDB. The temporary copy is removed in every case, on interrupt too.
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>

#include "backup/restore.h"
#include "engine/posix_file.h"
#include "tools/archive_report.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/deep_check.h"
#include "tools/progress_bar.h"

namespace cowbackup::cli {

namespace {

// Restores into a new directory under `temp_root` and runs the engine's own
// check on the copy.
Status DeepVerify(const std::string& archive, const std::string& temp_root, ArchiveReport* report,
                  DeepResult* deep, ProgressBar* bar) {
  std::string tmpl = temp_root + "/cowbackup-verify-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Status::FromErrno("create temporary directory", temp_root, errno);
  }
  const std::string dir = tmpl;
  OnInterrupt cleanup([dir] {
    RemoveTree(dir);
    return true;
  });
  const std::string copy = dir + "/restored";
  Status s = RestoreArchive(archive, copy, false, report, [bar](uint64_t n) { bar->update(n); });
  if (s.ok()) {
    switch (report->header.source_kind) {
      case format::SourceKind::kSqlite: s = CheckSqliteDatabase(copy, deep); break;
      case format::SourceKind::kLmdb: s = CheckLmdbEnvironment(copy, deep); break;
      default:
        s = Status::NotSupported(
            std::string("--deep has no check for source kind '") +
                format::SourceKindName(report->header.source_kind) + "' (only sqlite and lmdb)",
            archive);
    }
    if (!s.ok() && !s.IsNotSupported()) s = Status::Corruption(s.message(), archive);
  }
  RemoveTree(dir);
  return s;
}

}  // namespace

int RunVerify(const std::vector<std::string>& args) {
  CommonFlags flags;
  std::string archive;
  bool deep = false;
  std::string temp_dir;
  CommandLine cl("verify", "verify [options] ARCHIVE",
                 "Checks an archive: every record's checksum and page number, that every\n"
                 "page 0..N-1 is present exactly once, and the trailer's counts and digest.\n"
                 "With --deep it also restores the archive into a temporary directory and\n"
                 "lets the database engine check the copy: SQLite's PRAGMA integrity_check,\n"
                 "or for LMDB a full cursor walk of every database. The first problem is\n"
                 "named by byte offset and page. Exit status 0 only when everything holds.\n"
                 "ARCHIVE may be '-' for standard input.",
                 "  cowbackup verify nightly.cbk\n"
                 "  cowbackup verify --deep --json nightly.cbk\n"
                 "  cowbackup verify --deep --temp-dir /var/tmp big.cbk\n"
                 "  cowbackup backup app.db - | cowbackup verify -");
  cl.options().add_options()
      ("deep", po::bool_switch(&deep),
       "also restore to a temporary directory and run the database's own check")
      ("temp-dir", po::value<std::string>(&temp_dir)->value_name("DIR"),
       "where --deep restores (default: $TMPDIR, else /tmp); needs room for the database");
  cl.add_common(&flags);
  cl.positional("ARCHIVE", &archive);
  int exit_code = kExitOk;
  if (!cl.Parse(args, &exit_code)) return exit_code;
  if (temp_dir.empty()) {
    const char* t = getenv("TMPDIR");
    temp_dir = t && *t ? t : "/tmp";
  }

  const auto start = std::chrono::steady_clock::now();
  ProgressBar bar("verify", ProgressBar::Enabled(flags.progress, flags.quiet));
  bar.start(RegularFileSize(archive));
  ArchiveReport report;
  DeepResult deep_result;
  Status s = deep ? DeepVerify(archive, temp_dir, &report, &deep_result, &bar)
                  : VerifyArchive(archive, &report, [&bar](uint64_t n) { bar.update(n); });
  bar.finish(s.ok());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool have_header = report.header.page_size != 0;

  if (flags.json) {
    JsonObject o;
    o.add("archive", archive).add("ok", s.ok()).add("state", StateWord(s))
        .add_or_null("error", s.ok() ? "" : Describe(s));
    if (have_header) {
      o.add("header", HeaderJson(report.header));
    } else {
      o.add_null("header");
    }
    if (report.complete) {
      o.add("trailer", TrailerJson(report.trailer));
    } else {
      o.add_null("trailer");
    }
    if (deep && !deep_result.check.empty()) {
      JsonObject d;
      d.add("check", deep_result.check).add("ok", s.ok());
      if (deep_result.check == "lmdb cursor walk") {
        d.add("databases", deep_result.databases).add("entries", deep_result.entries);
      }
      o.add("deep", d);
    } else {
      o.add_null("deep");
    }
    o.add("archive_bytes", report.archive_bytes).add("seconds", seconds);
    PrintJson(o);
  }
  if (!s.ok()) {
    PrintError("verify", Describe(s));
    return kExitFailure;
  }
  if (!flags.json && !flags.quiet) {
    std::string line = archive + ": ok (" + HeaderSummary(report.header) + ", " +
                       std::to_string(report.trailer.overlay_records) + " overlay records; " +
                       "checksums, completeness and trailer digest verified";
    if (deep) {
      line += "; " + deep_result.check + " ok";
      if (deep_result.check == "lmdb cursor walk") {
        line += ": " + std::to_string(deep_result.databases) + " databases, " +
                std::to_string(deep_result.entries) + " entries";
      }
    }
    PrintLine(stdout, line + ")");
  }
  return kExitOk;
}

}  // namespace cowbackup::cli
