#include "backup/archive_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "backup/db_image.h"
#include "engine/checksum.h"
#include "engine/encoding.h"
#include "engine/posix_file.h"

namespace cowbackup {

namespace {
constexpr size_t kReadChunk = 1 << 20;
}  // namespace

Status ArchiveReader::Open(const std::string& path, std::unique_ptr<ArchiveReader>* out) {
  if (path == "-") {
    out->reset(new ArchiveReader(0, "<stdin>", false));
    return Status::OK();
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("is a directory, not an archive", path);
  }
  out->reset(new ArchiveReader(fd, path, true));
  return Status::OK();
}

ArchiveReader::ArchiveReader(int fd, std::string name, bool owns_fd)
    : fd_(fd), name_(std::move(name)), owns_fd_(owns_fd) {
  // A small file needs no 1 MiB buffer (the fuzzer reads thousands a second).
  struct stat st;
  if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
    read_chunk_ = std::clamp<size_t>(size_t(st.st_size) + 1, 4096, kReadChunk);
  }
}

ArchiveReader::~ArchiveReader() {
  if (owns_fd_) ::close(fd_);
}

std::string ArchiveReader::Where(uint64_t offset, uint64_t pgno) const {
  std::string w = name_ + ": offset " + std::to_string(offset);
  if (pgno != UINT64_MAX) w += ", page " + std::to_string(pgno);
  return w;
}

Status ArchiveReader::Fail(Status s) {
  state_ = State::kError;
  return s;
}

Status ArchiveReader::Peek(size_t n, const uint8_t** p, size_t* avail) {
  if (len_ - pos_ < n && !eof_) {
    // Compact, then read until n bytes are there or the input ends.
    if (pos_ > 0) {
      memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
      len_ -= pos_;
      pos_ = 0;
    }
    const size_t want = std::max(n, read_chunk_);
    if (buf_.size() < want) buf_.resize(want);
    // ReadUpTo returns fewer bytes than asked only at end of input.
    const size_t room = buf_.size() - len_;
    size_t got = 0;
    Status s = ReadUpTo(fd_, buf_.data() + len_, room, &got, name_);
    if (!s.ok()) return s;
    len_ += got;
    if (got < room) eof_ = true;
  }
  *p = buf_.data() + pos_;
  *avail = std::min(n, len_ - pos_);
  return Status::OK();
}

void ArchiveReader::Skip(size_t n) {
  pos_ += n;
  offset_ += n;
}

Status ArchiveReader::ReadHeader() {
  if (state_ != State::kHeader) return Fail(Status::InvalidArgument("ReadHeader called twice"));
  const uint8_t* p;
  size_t avail;
  Status s = Peek(16, &p, &avail);
  if (!s.ok()) return Fail(s);
  if (avail < 16) {
    if (avail >= 8 && memcmp(p, format::kMagic, 8) != 0) {
      return Fail(Status::Corruption("not a cowbackup archive (bad magic)", name_));
    }
    return Fail(Status::Incomplete("archive ends inside its header", name_));
  }
  size_t size = 0;
  s = format::HeaderSizeFromPrefix(p, &size);
  if (!s.ok()) {
    return Fail(s.IsNotSupported() ? Status::NotSupported(s.message(), name_)
                                   : Status::Corruption(s.message(), name_));
  }
  s = Peek(size, &p, &avail);
  if (!s.ok()) return Fail(s);
  if (avail < size) return Fail(Status::Incomplete("archive ends inside its header", name_));
  s = format::DecodeHeader(p, size, &header_);
  if (!s.ok()) {
    return Fail(s.IsNotSupported() ? Status::NotSupported(s.message(), name_)
                                   : Status::Corruption("corrupt archive header: " + s.message(), name_));
  }
  header_size_ = size;
  Skip(size);
  // For a file, a page_count the file cannot hold means it was cut short;
  // saying so now also keeps later allocation bounded by real input.
  struct stat st;
  if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
    const uint64_t body = uint64_t(st.st_size) > size ? uint64_t(st.st_size) - size : 0;
    const uint64_t per_page = header_.page_size + format::kRecordOverhead;
    if (header_.page_count > body / per_page) {
      return Fail(Status::Incomplete("archive is too short for its " +
                                         std::to_string(header_.page_count) + " pages",
                                     name_));
    }
  }
  state_ = State::kRecords;
  return Status::OK();
}

Status ArchiveReader::Next(Record* rec, bool* done) {
  *done = false;
  if (state_ == State::kDone) {
    *done = true;
    return Status::OK();
  }
  if (state_ != State::kRecords) {
    return Status::InvalidArgument(state_ == State::kHeader ? "Next before ReadHeader"
                                                            : "Next after an error");
  }
  const uint64_t at = offset_;
  const uint8_t* p;
  size_t avail;
  Status s = Peek(format::kRecordHeaderSize, &p, &avail);
  if (!s.ok()) return Fail(s);
  if (avail == 0) {
    return Fail(Status::Incomplete("archive ends before its trailer", Where(at, UINT64_MAX)));
  }
  if (avail < format::kRecordHeaderSize) {
    return Fail(Status::Incomplete("archive ends inside a record header", Where(at, UINT64_MAX)));
  }
  const uint64_t pgno = DecodeFixed64(p + format::kOffPgno);
  const uint32_t len = DecodeFixed32(p + format::kOffPayloadLen);
  // Bound the length before reading what it claims.
  const uint32_t max_len = std::max<uint32_t>(header_.page_size, format::kTrailerPayloadSize);
  if (len > max_len) {
    return Fail(Status::Corruption("corrupt archive: payload_len " + std::to_string(len) +
                                       " exceeds page_size",
                                   Where(at, pgno)));
  }
  const size_t total = format::kRecordOverhead + len;
  s = Peek(total, &p, &avail);
  if (!s.ok()) return Fail(s);
  if (avail < total) {
    return Fail(Status::Incomplete("archive ends inside a record", Where(at, pgno)));
  }
  const uint8_t* payload = p + format::kRecordHeaderSize;
  const uint8_t* tail = payload + len;
  if (DecodeFixed64(tail) != format::RecordChecksum(p, payload, len)) {
    return Fail(Status::Corruption("corrupt archive: bad record checksum", Where(at, pgno)));
  }
  if (DecodeFixed64(tail + 8) != pgno) {
    return Fail(Status::Corruption("corrupt archive: page number after payload differs",
                                   Where(at, pgno)));
  }
  // The checksum passed: what remains wrong is a writer we do not know.
  const uint8_t type = p[format::kOffType];
  const uint8_t flags = p[format::kOffFlags];
  if (flags & ~format::kKnownRecordFlags) {
    std::string name = (flags & format::kFlagCompressed)  ? "compressed"
                       : (flags & format::kFlagEncrypted) ? "encrypted"
                                                          : "0x" + std::to_string(flags);
    return Fail(Status::NotSupported("record flag '" + name + "' is not supported by this version",
                                     Where(at, pgno)));
  }
  if (DecodeFixed16(p + format::kOffRecReserved) != 0) {
    return Fail(Status::Corruption("corrupt archive: reserved record field is not 0", Where(at, pgno)));
  }
  rec->offset = at;
  rec->pgno = pgno;
  rec->payload = payload;
  rec->payload_len = len;
  if (type == static_cast<uint8_t>(format::RecordType::kTrailer)) {
    rec->type = format::RecordType::kTrailer;
    s = CheckTrailer(*rec);
    // Every page is in: the image's first pages, as the records leave
    // them, must be the kind the header names.
    if (s.ok()) {
      first_pages_.resize(size_t(header_.page_size) * 2);
      s = CheckImageKind(header_.source_kind, header_.page_size, header_.page_count,
                         first_pages_.data(), first_pages_.data() + header_.page_size, name_);
    }
    if (!s.ok()) return Fail(s);
    Skip(total);
    // Nothing may follow the trailer.
    s = Peek(1, &p, &avail);
    if (!s.ok()) return Fail(s);
    if (avail != 0) {
      return Fail(Status::Corruption("corrupt archive: bytes after the trailer", Where(offset_, UINT64_MAX)));
    }
    state_ = State::kDone;
    *done = true;
    return Status::OK();
  }
  if (type != static_cast<uint8_t>(format::RecordType::kPage) &&
      type != static_cast<uint8_t>(format::RecordType::kOverlay)) {
    return Fail(Status::NotSupported("record type " + std::to_string(type) + " is unknown",
                                     Where(at, pgno)));
  }
  rec->type = static_cast<format::RecordType>(type);
  if (len != header_.page_size) {
    return Fail(Status::Corruption("corrupt archive: payload_len " + std::to_string(len) +
                                       " differs from page_size",
                                   Where(at, pgno)));
  }
  if (pgno >= header_.page_count) {
    return Fail(Status::Corruption("corrupt archive: page number beyond page_count " +
                                       std::to_string(header_.page_count),
                                   Where(at, pgno)));
  }
  if (rec->type == format::RecordType::kPage) {
    if (seen_.test(pgno)) {
      return Fail(Status::Corruption("corrupt archive: page stored twice", Where(at, pgno)));
    }
    seen_.set(pgno);
    page_records_++;
  } else {
    if (!seen_.test(pgno)) {
      return Fail(Status::Corruption("corrupt archive: overlay before its page", Where(at, pgno)));
    }
    overlay_records_++;
  }
  if (pgno < 2) {
    first_pages_.resize(size_t(header_.page_size) * 2);
    memcpy(first_pages_.data() + pgno * header_.page_size, payload, len);
  }
  digest_.update(tail, 8);
  Skip(total);
  return Status::OK();
}

Status ArchiveReader::CheckTrailer(const Record& rec) {
  const std::string where = Where(rec.offset, UINT64_MAX);
  if (rec.payload_len != format::kTrailerPayloadSize || rec.pgno != header_.page_count) {
    return Status::Corruption("corrupt archive: malformed trailer", where);
  }
  format::DecodeTrailerPayload(rec.payload, &trailer_);
  if (page_records_ != header_.page_count) {
    return Status::Corruption("corrupt archive: " + std::to_string(header_.page_count - page_records_) +
                                  " pages missing before the trailer",
                              where);
  }
  if (trailer_.page_records != page_records_ || trailer_.overlay_records != overlay_records_) {
    return Status::Corruption("corrupt archive: trailer record counts differ from the records read",
                              where);
  }
  if (trailer_.records_end != rec.offset) {
    return Status::Corruption("corrupt archive: trailer records_end differs", where);
  }
  if (trailer_.digest != digest_.digest()) {
    return Status::Corruption("corrupt archive: trailer digest differs", where);
  }
  return Status::OK();
}

}  // namespace cowbackup
