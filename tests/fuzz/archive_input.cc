#include "fuzz/archive_input.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "backup/archive_reader.h"
#include "backup/restore.h"
#include "engine/posix_file.h"

namespace cowbackup::fuzz {

namespace {

[[noreturn]] void Die(const std::string& why) {
  fprintf(stderr, "archive input: %s\n", why.c_str());
  fflush(stderr);
  abort();
}

// Reads every record; the number of records is bounded by the input size
// (each takes at least 32 bytes), so a loop that does not end is a bug.
Status ReadThrough(ArchiveReader* reader, size_t input_size) {
  Status s = reader->ReadHeader();
  if (!s.ok()) return s;
  const uint64_t max_records = input_size / 32 + 1;
  for (uint64_t n = 0;; n++) {
    if (n > max_records) Die("reader returned more records than the input can hold");
    ArchiveReader::Record rec;
    bool done = false;
    s = reader->Next(&rec, &done);
    if (!s.ok() || done) return s;
    if (rec.payload_len != reader->header().page_size) Die("record payload_len != page_size");
    if (rec.pgno >= reader->header().page_count) Die("record pgno beyond page_count");
    if (reader->offset() > input_size) Die("reader offset beyond the input");
  }
}

Status ReadFromPipe(const uint8_t* data, size_t size) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) Die("pipe");
  // The whole input fits in the pipe, so no second thread is needed.
  ::fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
  if (!WriteFull(fds[1], data, size, "<pipe>").ok()) Die("pipe write");
  ::close(fds[1]);
  ArchiveReader reader(fds[0], "<pipe>", true);
  return ReadThrough(&reader, size);
}

}  // namespace

void CheckArchiveInput(const uint8_t* data, size_t size, const std::string& scratch) {
  if (size > (1u << 20)) return;  // the pipe must hold it all
  int mfd = ::memfd_create("archive", MFD_CLOEXEC);
  if (mfd < 0) Die("memfd_create");
  if (!WriteFull(mfd, data, size, "<memfd>").ok()) Die("memfd write");
  const std::string path = "/proc/self/fd/" + std::to_string(mfd);

  std::unique_ptr<ArchiveReader> file_reader;
  Status from_file = ArchiveReader::Open(path, &file_reader);
  if (!from_file.ok()) Die("open memfd: " + from_file.ToString());
  from_file = ReadThrough(file_reader.get(), size);
  file_reader.reset();
  const Status from_pipe = ReadFromPipe(data, size);
  if (from_file.ok() != from_pipe.ok()) {
    Die("file and pipe readers disagree: " + from_file.ToString() + " / " + from_pipe.ToString());
  }

  ArchiveReport report;
  const Status verified = VerifyArchive(path, &report);
  if (verified.ok() != from_file.ok()) {
    Die("verify and the reader disagree: " + verified.ToString() + " / " + from_file.ToString());
  }
  if (verified.ok() != report.complete) Die("verify ok but report not complete (or the reverse)");

  const std::string out = scratch + "/out";
  const Status restored = RestoreArchive(path, out, false);
  if (restored.ok() != verified.ok()) {
    Die("restore and verify disagree: " + restored.ToString() + " / " + verified.ToString());
  }
  const std::vector<std::string> left = ListDir(scratch);
  if (restored.ok()) {
    if (left != std::vector<std::string>{"out"}) Die("restore wrote beside OUT in " + scratch);
    struct stat st;
    if (::stat(out.c_str(), &st) != 0) Die("restore reported success without OUT");
    const uint64_t want = report.header.page_count * report.header.page_size;
    if (S_ISREG(st.st_mode) && uint64_t(st.st_size) != want) Die("restored file has the wrong size");
  } else if (!left.empty()) {
    Die("a failed restore left " + left.front() + " in " + scratch);
  }
  RemoveTree(out);  // all the scratch directory can hold (checked above)
  ::close(mfd);
}

}  // namespace cowbackup::fuzz
