// Restore and verify: the two ways an archive is read back.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "backup/format.h"

namespace cowbackup {

struct ArchiveReport {
  format::Header header;
  format::Trailer trailer;
  bool complete = false;    // a valid trailer was reached
  uint64_t archive_bytes = 0;
};

// Called now and then with bytes read so far (for progress bars).
using ReadProgress = std::function<void(uint64_t bytes_read)>;

// Checks every record's checksum and pgno, that each page 0..N-1 is present
// exactly once, and the trailer's counts and digest. The status names the
// offset and page of the first bad record.
Status VerifyArchive(const std::string& archive, ArchiveReport* report,
                     const ReadProgress& progress = nullptr);

// Writes the database image. A SQLite (or raw) archive becomes the file
// `out`; an LMDB archive becomes the directory `out` holding data.mdb.
// Temp + fsync + rename: on any problem nothing is left at `out`. An
// existing `out` is refused unless `force`.
Status RestoreArchive(const std::string& archive, const std::string& out, bool force,
                      ArchiveReport* report = nullptr, const ReadProgress& progress = nullptr);

}  // namespace cowbackup
