#include "backup/restore.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cstring>
#include <memory>
#include <vector>

#include "backup/archive_reader.h"
#include "backup/archive_writer.h"
#include "backup/output.h"
#include "engine/posix_file.h"

namespace cowbackup {

namespace {

constexpr uint64_t kProgressEvery = 8 << 20;

// Reads every record after the header; `apply` (may be null) receives
// pages and overlays.
Status ReadAll(ArchiveReader* reader, ArchiveReport* report, const ReadProgress& progress,
               const std::function<Status(const ArchiveReader::Record&)>& apply) {
  report->header = reader->header();
  Status s;
  uint64_t next_progress = kProgressEvery;
  for (;;) {
    ArchiveReader::Record rec;
    bool done = false;
    s = reader->Next(&rec, &done);
    if (!s.ok()) return s;
    if (done) break;
    if (apply) {
      s = apply(rec);
      if (!s.ok()) return s;
    }
    if (progress && reader->offset() >= next_progress) {
      progress(reader->offset());
      next_progress = reader->offset() + kProgressEvery;
    }
  }
  report->trailer = reader->trailer();
  report->complete = true;
  report->archive_bytes = reader->offset();
  if (progress) progress(reader->offset());
  return Status::OK();
}

// An LMDB environment directory `out` may be replaced only if it is a real
// directory (not a symlink) holding nothing but an environment's regular
// files, none of them in use: a mistyped OUT never empties an unrelated
// directory, and a live environment is never swapped out from under its
// processes.
Status CheckEnvDir(const std::string& out, bool force) {
  struct stat st;
  if (::lstat(out.c_str(), &st) != 0) return Status::OK();
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("output exists and is not a directory", out);
  }
  if (!force) return Status::InvalidArgument("output exists (use --force to replace it)", out);
  for (const std::string& name : ListDir(out)) {
    const std::string path = out + "/" + name;
    if (name != "data.mdb" && name != "lock.mdb") {
      return Status::InvalidArgument("output directory holds '" + name +
                                         "', not only an LMDB environment; not replacing it",
                                     out);
    }
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Status::InvalidArgument(std::string("output's ") + name + " is " + FileKind(st.st_mode) +
                                         "; only an environment of regular files is replaced",
                                     out);
    }
    const int fd = OpenRegular(path, O_RDONLY | O_NONBLOCK);
    const bool live = fd >= 0 && FileSharing(fd) == Sharing::kOpenElsewhere;
    if (fd >= 0) ::close(fd);
    if (live) {
      return Status::InvalidArgument("output's " + name + " is open in a process: the environment is "
                                         "in use, and cowbackup never replaces a live database",
                                     out);
    }
  }
  return Status::OK();
}

// OUT as the user may type it: "env/" names the directory "env". Refuses
// what no restore can write.
Status NormalizeOut(const std::string& given, bool lmdb, std::string* out) {
  if (given == "-") {
    return Status::InvalidArgument(
        "output \"-\" (standard output) is not supported: a restore writes a database file (an "
        "LMDB environment directory), give its path");
  }
  *out = given;
  while (out->size() > 1 && out->back() == '/') out->pop_back();
  if (!lmdb && *out != given) {
    return Status::InvalidArgument("output ends with '/', but this archive restores to a file", given);
  }
  if (out->empty()) return Status::InvalidArgument("output path is empty");
  return Status::OK();
}

}  // namespace

Status VerifyArchive(const std::string& archive, ArchiveReport* report,
                     const ReadProgress& progress) {
  std::unique_ptr<ArchiveReader> reader;
  Status s = ArchiveReader::Open(archive, &reader);
  if (s.ok()) s = reader->ReadHeader();
  if (!s.ok() && !reader) return s;  // nothing opened: nothing to report
  ArchiveReport local;
  if (!report) report = &local;
  report->header = reader->header();
  if (s.ok()) s = ReadAll(reader.get(), report, progress, nullptr);
  report->archive_bytes = reader->offset();
  return s;
}

Status RestoreArchive(const std::string& archive, const std::string& out_given, bool force,
                      ArchiveReport* report, const ReadProgress& progress) {
  ArchiveReport local;
  if (!report) report = &local;
  std::unique_ptr<ArchiveReader> reader;
  Status s = ArchiveReader::Open(archive, &reader);
  if (s.ok()) s = reader->ReadHeader();
  if (!s.ok()) return s;
  const format::Header& h = reader->header();
  const bool lmdb = h.source_kind == format::SourceKind::kLmdb;
  std::string out;
  s = NormalizeOut(out_given, lmdb, &out);
  if (s.ok()) s = lmdb ? CheckEnvDir(out, force) : CheckOutputPath(out, force, "--force", "output");
  if (!s.ok()) return s;
  // What a killed restore to `out` left (its temporary file, or its
  // temporary environment directory) goes now, as backups do for theirs.
  (void)AtomicFile::RemoveStale(out);

  // An LMDB archive restores to a directory holding data.mdb, built under a
  // temporary directory name and renamed into place.
  std::string image_path = out, temp_dir;
  if (lmdb) {
    if (MakeTemp(out, CreatePrivateDir, &temp_dir) != 0) return Status::FromErrno("mkdir", temp_dir, errno);
    image_path = temp_dir + "/data.mdb";
  }
  std::unique_ptr<AtomicFile> file;
  // A SQLite (or raw: it may be one) image is checked for a -wal or
  // -journal beside OUT that SQLite would apply to it.
  s = AtomicFile::Create(image_path, !lmdb && force, &file,
                         lmdb ? Contents::kOther : Contents::kSqliteImage);
  if (s.ok()) s = file->Reserve(h.page_count * h.page_size);
  if (s.ok()) {
    // The same sink a plain-format backup writes through.
    ImageWriter image(h.page_size, h.page_count, std::move(file));
    s = ReadAll(reader.get(), report, progress, [&](const ArchiveReader::Record& rec) {
      return rec.type == format::RecordType::kOverlay ? image.put_overlay(rec.pgno, rec.payload)
                                                      : image.put_run(rec.pgno, rec.payload, 1);
    });
    if (s.ok()) s = image.finish(Progress{});
    if (!s.ok()) image.abandon();
  }
  if (lmdb) {
    // AtomicFile::commit synced temp_dir, so its data.mdb entry is durable.
    if (s.ok()) {
      s = PublishDirectory(temp_dir, out);
    } else {
      RemoveFlatDir(temp_dir);
    }
  }
  return s;
}

}  // namespace cowbackup
