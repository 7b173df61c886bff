#include "backup/restore.h"

#include <errno.h>
#include <sys/stat.h>

#include <memory>

#include "backup/archive_reader.h"
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

Status CheckOut(const std::string& out, bool want_dir, bool force) {
  struct stat st;
  if (::stat(out.c_str(), &st) != 0) return Status::OK();
  if (!want_dir && S_ISDIR(st.st_mode)) return Status::InvalidArgument("output is a directory", out);
  if (want_dir && !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("output exists and is not a directory", out);
  }
  if (!force) return Status::InvalidArgument("output exists (use --force to replace it)", out);
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

Status RestoreArchive(const std::string& archive, const std::string& out, bool force,
                      ArchiveReport* report, const ReadProgress& progress) {
  ArchiveReport local;
  if (!report) report = &local;
  std::unique_ptr<ArchiveReader> reader;
  Status s = ArchiveReader::Open(archive, &reader);
  if (s.ok()) s = reader->ReadHeader();
  if (!s.ok()) return s;
  const format::Header& h = reader->header();
  const bool lmdb = h.source_kind == format::SourceKind::kLmdb;
  s = CheckOut(out, lmdb, force);
  if (!s.ok()) return s;
  // What a killed restore to `out` left (its temporary file, or its
  // temporary environment directory) goes now, as backups do for theirs.
  (void)AtomicFile::RemoveStale(out);

  // An LMDB archive restores to a directory holding data.mdb, built under a
  // temporary directory name and renamed into place.
  std::string image_path = out, temp_dir;
  if (lmdb) {
    temp_dir = TempName(out);
    if (::mkdir(temp_dir.c_str(), 0700) != 0) return Status::FromErrno("mkdir", temp_dir, errno);
    image_path = temp_dir + "/data.mdb";
  }
  std::unique_ptr<AtomicFile> file;
  s = AtomicFile::Create(image_path, !lmdb && force, &file);
  if (s.ok()) s = file->Reserve(h.page_count * h.page_size);
  if (s.ok()) {
    AtomicFile* f = file.get();
    const uint64_t page_size = h.page_size;
    s = ReadAll(reader.get(), report, progress, [&](const ArchiveReader::Record& rec) {
      return f->pwrite(rec.payload, rec.payload_len, rec.pgno * page_size);
    });
    if (s.ok()) s = f->truncate(h.page_count * page_size);
    if (s.ok()) s = f->commit();
    if (!s.ok()) f->abandon();
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
