// cowbackup status SOURCE: the processes taking part in backups of one
// database, the job they share, and what a dead job left behind.
//
// SOURCE is what backup takes (tools/source_kind.h). Its coordination
// region (docs/REGION.md, "Where it lives") is
//   SQLite: "<db>-cowbackup", <db> being the full pathname SQLite's default
//           VFS makes of SOURCE (xFullPathname, symlinks resolved): the
//           name the shim is given in xOpen;
//   LMDB:   "<env>/cowbackup-region", or "<data>-cowbackup" for the data
//           file of an environment opened MDB_NOSUBDIR.
//
// LOOKING WITHOUT CHANGING. A database no process has opened through
// cowbackup has no region, and status leaves it so: it attaches only to an
// existing region, and never rebuilds one it cannot use (another version,
// damaged, another database's, a symlink, wrong owner): that is an error
// naming the file, exit status 1 (coord::AttachOptions).
//
// Attached, status is a participant for a moment (listed as "this
// command") and, reading the job, applies the recovery rules every
// participant applies (R3, R4, R6): a job whose owner died is shown, and
// left, dead. Alone, it is the region's first opener (R1), which marks a
// job that was running dead and gives back its per-page state area.
//
// STALE FILES. A dead job's snapshot volume if it still exists, and, in the
// directory holding the database (an environment directory's parent), the
// temporaries and this database's snapshot volumes whose processes are
// gone, by the rules the sweeps use (ListStaleTemporaries,
// ListStaleVolumes): nothing but a regular file of this user is opened,
// nothing is followed, nothing is removed. Temporaries of an archive kept
// elsewhere are swept by the next backup to it, not shown here.
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backup/backup_job.h"
#include "backup/output.h"
#include "coord/region.h"
#include "engine/posix_file.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/source_kind.h"

namespace cowbackup::cli {

namespace {

// Where a database's region and stale files are.
struct Location {
  const char* kind = "sqlite";
  std::string database;  // the file the region belongs to (by device and inode)
  std::string region;
  std::string dir;  // looked in for stale files
};

Status SqliteFullPath(const std::string& source, std::string* out) {
  sqlite3_vfs* vfs = sqlite3_vfs_find(nullptr);
  if (vfs == nullptr) return Status::IOError("resolve the database's path: SQLite has no default VFS", source);
  std::string buf(size_t(vfs->mxPathname) + 1, '\0');
  const int rc = vfs->xFullPathname(vfs, source.c_str(), int(buf.size()), buf.data());
  if ((rc & 0xff) != SQLITE_OK) {
    return Status::IOError(std::string("resolve the database's path: ") + sqlite3_errstr(rc), source);
  }
  buf.resize(strlen(buf.c_str()));
  *out = buf;
  return Status::OK();
}

Status Locate(const std::string& source, SourceKind kind, Location* out) {
  switch (kind) {
    case SourceKind::kSqlite: {
      Status s = SqliteFullPath(source, &out->database);
      if (!s.ok()) return s;
      out->region = coord::RegionPathForSqlite(out->database);
      out->dir = ParentDir(out->database);
      return Status::OK();
    }
    case SourceKind::kLmdbEnv: {
      std::string env = source;
      while (env.size() > 1 && env.back() == '/') env.pop_back();
      out->kind = "lmdb";
      out->database = env + "/data.mdb";
      out->region = coord::RegionPathForLmdb(env, /*no_subdir=*/false);
      out->dir = ParentDir(env);
      return Status::OK();
    }
    case SourceKind::kLmdbDataFile:
      out->kind = "lmdb";
      out->database = source;
      out->region = coord::RegionPathForLmdb(source, /*no_subdir=*/true);
      out->dir = ParentDir(source);
      return Status::OK();
  }
  return Status::InvalidArgument("unknown source kind", source);
}

bool SameFile(const std::string& a, const struct stat& b) {
  struct stat st;
  return ::stat(a.c_str(), &st) == 0 && st.st_dev == b.st_dev && st.st_ino == b.st_ino;
}

struct StaleFile {
  std::string path, what;
};

// What status found. A region that is absent leaves `region_exists` false
// and is no error; `error` is set once something could not be read.
struct Report {
  Location where;
  bool region_exists = false;
  uint64_t generation = 0;
  std::string recovery;
  std::vector<coord::Participant> processes;
  coord::Job job;  // state kNone: no job
  bool have_progress = false;
  coord::JobProgress progress;
  std::string progress_note;  // why there is no progress, if there is none
  std::vector<StaleFile> stale;
};

bool Live(coord::JobState s) { return s == coord::JobState::kArming || s == coord::JobState::kRunning; }

// Attaches, lists the participants and reads the job and its progress.
Status ReadRegion(int db_fd, Report* r) {
  coord::AttachOptions look_only;
  look_only.create = false;
  look_only.rebuild = false;
  std::unique_ptr<coord::Region> region;
  Status s = coord::Region::Attach(r->where.region, db_fd, look_only, &region);
  if (s.code() == Status::Code::kNotFound) return Status::OK();
  r->region_exists = true;  // refused or not, something is at the name
  if (!s.ok()) return s;
  r->generation = region->generation();
  r->recovery = region->recovery();
  s = region->Participants(&r->processes);
  if (s.ok()) s = region->ReadJob(&r->job);
  if (!s.ok() || r->job.state == coord::JobState::kNone) return s;
  Status p = region->ReadProgress(r->job, &r->progress);
  r->have_progress = p.ok();
  if (p.code() == Status::Code::kNotFound) {
    r->progress_note = r->job.page_state_size == 0 ? "none (the job keeps no per-page state)"
                                                   : "none (its per-page state area is no longer in the region)";
  } else if (!p.ok()) {
    r->progress_note = "unknown: " + p.message();
  }
  // A live job's area must be there and sound (invariant 6); an ended
  // job's may be gone, which is no fault.
  if (!p.ok() && Live(r->job.state) && p.IsCorruption()) return p;
  return Status::OK();
}

void FindStale(const struct stat& db, Report* r) {
  const coord::Job& j = r->job;
  if (j.state == coord::JobState::kDead && !j.volume_path.empty() && PathExists(j.volume_path)) {
    r->stale.push_back({j.volume_path, "snapshot volume of dead job " + std::to_string(j.job_id) + " (pid " +
                                           std::to_string(j.owner_pid) + ")"});
  }
  const std::string database = r->where.database;
  const auto ours = [&](const std::string& name) { return name == database || SameFile(name, db); };
  for (const std::string& p : ListStaleVolumes(r->where.dir, ours)) {
    if (p == j.volume_path) continue;  // listed above
    r->stale.push_back({p, "snapshot volume of this database; its process is gone"});
  }
  for (const std::string& p : ListStaleTemporaries(r->where.dir, "")) {
    r->stale.push_back({p, "temporary output; its process is gone"});
  }
}

void PrintText(const std::string& source, const Report& r) {
  const auto row = [](const std::string& key, const std::string& value) {
    char name[24];
    snprintf(name, sizeof name, "%-16s ", key.c_str());
    PrintLine(stdout, name + value);
  };
  row("source", source);
  row("kind", r.where.kind);
  row("database", r.where.database);
  row("region", r.where.region);
  if (!r.region_exists) {
    row("region_exists", "no: no process has opened it through cowbackup");
  } else {
    row("region_exists", "yes (generation " + std::to_string(r.generation) + ")");
    if (!r.recovery.empty()) row("recovered", r.recovery);
    row("processes", std::to_string(r.processes.size()) + " attached");
    for (const coord::Participant& p : r.processes) {
      row("  pid " + std::to_string(p.pid), "slot " + std::to_string(p.slot) + ", since " +
                                                  FormatUnixMicros(p.attached_unix_us) +
                                                  (p.self ? " (this command)" : "") +
                                                  (p.writes_unseen ? ", writes unseen (MDB_WRITEMAP): "
                                                                     "no backup can start while it is open"
                                                                   : ""));
    }
    const coord::Job& j = r.job;
    row("job", coord::JobStateName(j.state));
    if (j.state != coord::JobState::kNone) {
      row("job_id", std::to_string(j.job_id));
      row("owner_pid", std::to_string(j.owner_pid) + " (slot " + std::to_string(j.owner_slot) + ")");
      row("claimed", FormatUnixMicros(j.claimed_unix_us));
      row("volume", j.volume_path);
      if (r.have_progress) {
        row("pages", std::to_string(r.progress.pages));
        row("preserved", std::to_string(r.progress.preserved));
        row("done", std::to_string(r.progress.done));
      } else {
        row("progress", r.progress_note);
      }
    }
  }
  row("stale_files", r.stale.empty() ? "none" : std::to_string(r.stale.size()));
  for (const StaleFile& f : r.stale) PrintLine(stdout, "  " + f.path + "  (" + f.what + ")");
}

JsonObject ToJson(const std::string& source, const Report& r, const Status& s) {
  JsonObject o;
  o.add("source", source).add("kind", r.where.kind).add_or_null("database", r.where.database)
      .add_or_null("region", r.where.region).add("region_exists", r.region_exists);
  const bool read = r.region_exists && s.ok();
  if (read) {
    o.add("generation", r.generation).add_or_null("recovery", r.recovery);
  } else {
    o.add_null("generation").add_null("recovery");
  }
  std::vector<JsonObject> processes;
  for (const coord::Participant& p : r.processes) {
    processes.push_back(JsonObject().add("pid", uint64_t(p.pid)).add("slot", p.slot)
                            .add("since_unix_us", p.attached_unix_us).add("since", FormatUnixMicros(p.attached_unix_us))
                            .add("self", p.self).add("writes_unseen", p.writes_unseen));
  }
  o.add("processes", processes);
  const coord::Job& j = r.job;
  if (j.state == coord::JobState::kNone) {
    o.add_null("job");
  } else {
    JsonObject job;
    job.add("state", coord::JobStateName(j.state)).add("id", std::to_string(j.job_id)).add("owner_pid", uint64_t(j.owner_pid))
        .add("owner_slot", j.owner_slot).add("claimed_unix_us", j.claimed_unix_us)
        .add("claimed", FormatUnixMicros(j.claimed_unix_us)).add("volume_path", j.volume_path);
    if (r.have_progress) {
      job.add("progress", JsonObject().add("pages", r.progress.pages).add("preserved", r.progress.preserved)
                              .add("done", r.progress.done));
    } else {
      job.add_null("progress");
    }
    o.add("job", job);
  }
  std::vector<JsonObject> stale;
  for (const StaleFile& f : r.stale) stale.push_back(JsonObject().add("path", f.path).add("what", f.what));
  o.add("stale_files", stale);
  o.add("ok", s.ok()).add_or_null("error", s.ok() ? "" : Describe(s));
  return o;
}

}  // namespace

int RunStatus(const std::vector<std::string>& args) {
  CommonFlags flags;
  std::string source;
  CommandLine cl("status", "status [options] SOURCE",
                 "Shows who takes part in backups of SOURCE (a SQLite database file, an\n"
                 "LMDB environment directory, or the data file of an environment opened\n"
                 "MDB_NOSUBDIR): the processes that opened it through cowbackup and share\n"
                 "its coordination region (pid, since when), the backup job they share\n"
                 "(state, owner, progress, preserved pages), and stale files: a dead job's\n"
                 "snapshot volume, and temporaries beside the database whose processes are\n"
                 "gone (the next backup removes them).\n"
                 "\n"
                 "It never creates the region: a database no process has opened through\n"
                 "cowbackup has none, and that is no error. A region it cannot use (another\n"
                 "format version, damaged, a symlink, another owner) is an error naming the\n"
                 "file (exit status 1), and is left as it is.",
                 "  cowbackup status app.db\n"
                 "  cowbackup status --json /var/lib/app/env");
  cl.add_common(&flags);
  cl.positional("SOURCE", &source);
  int exit_code = kExitOk;
  if (!cl.Parse(args, &exit_code)) return exit_code;

  Report r;
  SourceKind kind = SourceKind::kSqlite;
  Status s = DetectSource(source, &kind);
  if (s.ok()) s = Locate(source, kind, &r.where);
  // O_PATH: the region needs only the database's identity and owner
  // (fstat), and this opens nothing that could block or have effects.
  const int db_fd = s.ok() ? ::open(r.where.database.c_str(), O_PATH | O_CLOEXEC) : -1;
  struct stat db = {};
  if (s.ok() && (db_fd < 0 || ::fstat(db_fd, &db) != 0)) {
    s = Status::FromErrno("open the database", r.where.database, errno);
  } else if (s.ok() && !S_ISREG(db.st_mode)) {
    s = Status::InvalidArgument(std::string("the database is ") + FileKind(db.st_mode) + ", not a regular file",
                                r.where.database);
  }
  if (s.ok()) s = ReadRegion(db_fd, &r);
  if (db_fd >= 0) ::close(db_fd);
  if (s.ok()) FindStale(db, &r);

  if (flags.json) {
    PrintJson(ToJson(source, r, s));
  } else if (!flags.quiet && s.ok()) {
    PrintText(source, r);
  }
  if (!s.ok()) {
    PrintError("status", Describe(s));
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace cowbackup::cli
