// ArchiveReader: decodes an archive from a sequential input (file, pipe,
// stdin) as a state machine: header -> records -> trailer -> end.
//
// Nothing is trusted before its checksum passes, and no length field is
// used before it is bounded (payload_len by page_size, metadata by 4 KiB),
// so a hostile archive cannot make it allocate without bound or loop.
// Errors name the byte offset and page of the first bad record:
//   "corrupt archive: bad record checksum: offset 8232, page 2"
// An input that ends before the trailer is Status::Incomplete.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backup/format.h"
#include "engine/checksum.h"
#include "engine/sparse_bitmap.h"

namespace cowbackup {

class ArchiveReader {
 public:
  struct Record {
    format::RecordType type;
    uint64_t pgno = 0;
    uint64_t offset = 0;            // where the record starts
    const uint8_t* payload = nullptr;  // valid until the next call
    size_t payload_len = 0;
  };

  // Opens a file ("-" reads standard input).
  static Status Open(const std::string& path, std::unique_ptr<ArchiveReader>* out);
  // Reads from `fd` (not owned); `name` is used in messages.
  ArchiveReader(int fd, std::string name, bool owns_fd);
  ~ArchiveReader();

  // The first call. Validates every header field.
  Status ReadHeader();
  const format::Header& header() const { return header_; }
  uint64_t header_size() const { return header_size_; }

  // Next page or overlay record; *done = true once the trailer has been read
  // and checked (counts, digest, every page present exactly once) and the
  // image's first pages are the kind the header names (CheckImageKind).
  Status Next(Record* rec, bool* done);
  const format::Trailer& trailer() const { return trailer_; }
  uint64_t offset() const { return offset_; }  // bytes consumed

 private:
  enum class State { kHeader, kRecords, kDone, kError };
  // Makes `n` bytes from the read position contiguous in buf_; *avail says
  // how many there are (fewer only at end of input).
  Status Peek(size_t n, const uint8_t** p, size_t* avail);
  void Skip(size_t n);
  Status Fail(Status s);
  Status CheckTrailer(const Record& rec);
  std::string Where(uint64_t offset, uint64_t pgno) const;

  const int fd_;
  const std::string name_;
  const bool owns_fd_;
  State state_ = State::kHeader;
  format::Header header_;
  uint64_t header_size_ = 0;
  format::Trailer trailer_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0, len_ = 0;  // unread bytes are buf_[pos_, len_)
  bool eof_ = false;
  size_t read_chunk_ = size_t{1} << 20;  // smaller for small files
  uint64_t offset_ = 0;
  uint64_t page_records_ = 0;
  uint64_t overlay_records_ = 0;
  SparseBitmap seen_;
  std::vector<uint8_t> first_pages_;  // pages 0 and 1 as the records leave them
  Checksum digest_;  // over record checksums, file order
};

}  // namespace cowbackup
