#include "backup/archive_writer.h"


#include <cassert>
#include <chrono>
#include <cstring>

#include "engine/checksum.h"
#include "engine/clock.h"
#include "engine/encoding.h"

namespace cowbackup {

namespace {
constexpr size_t kBufferSize = 1 << 20;
}  // namespace

ArchiveWriter::ArchiveWriter(const format::Header& header, std::unique_ptr<ByteOutput> out)
    : header_(header), out_(std::move(out)) {
  buf_.reserve(kBufferSize + format::kMaxPageSize + format::kRecordOverhead);
  buf_.resize(header_.encoded_size());
  format::EncodeHeader(header_, buf_.data());
  offset_ = buf_.size();
}

ArchiveWriter::~ArchiveWriter() {
  if (!finished_) abandon();
}

Status ArchiveWriter::flush(bool all) {
  const size_t n = all ? buf_.size() : buf_.size() / kIoAlign * kIoAlign;
  if (n == 0) return Status::OK();
  Status s = out_->append(buf_.data(), n);
  buf_.erase(buf_.begin(), buf_.begin() + long(n));  // keeps < kIoAlign bytes
  return s;
}

Status ArchiveWriter::put_record(format::RecordType type, uint64_t pgno, const uint8_t* payload,
                                 size_t len) {
  const size_t at = buf_.size();
  buf_.resize(at + format::kRecordOverhead + len);
  uint8_t* rec = buf_.data() + at;
  format::EncodeRecordHeader(type, 0, uint32_t(len), pgno, rec);
  memcpy(rec + format::kRecordHeaderSize, payload, len);
  const uint64_t sum = format::RecordChecksum(rec, payload, len);
  uint8_t* tail = rec + format::kRecordHeaderSize + len;
  EncodeFixed64(tail, sum);
  EncodeFixed64(tail + 8, pgno);
  if (type != format::RecordType::kTrailer) digest_.update(tail, 8);
  offset_ += format::kRecordOverhead + len;
  bytes_.store(offset_, std::memory_order_relaxed);
  return buf_.size() >= kBufferSize ? flush(/*all=*/false) : Status::OK();
}

Status ArchiveWriter::put_run(uint64_t first_pgno, const uint8_t* pages, size_t count) {
  for (size_t i = 0; i < count; i++) {
    assert(first_pgno + i < header_.page_count);
    Status s = put_record(format::RecordType::kPage, first_pgno + i,
                          pages + i * header_.page_size, header_.page_size);
    if (!s.ok()) return s;
    page_records_++;
  }
  return Status::OK();
}

Status ArchiveWriter::put_overlay(uint64_t pgno, const uint8_t* page) {
  overlay_records_++;
  return put_record(format::RecordType::kOverlay, pgno, page, header_.page_size);
}

Status ArchiveWriter::finish(const Progress& final) {
  if (page_records_ != header_.page_count) {
    return Status::InvalidArgument("archive writer: " + std::to_string(page_records_) +
                                   " page records for " + std::to_string(header_.page_count) +
                                   " pages");
  }
  format::Trailer t;
  t.page_records = page_records_;
  t.overlay_records = overlay_records_;
  t.preserved_pages = final.pages_preserved;
  t.records_end = offset_;
  t.digest = digest_.digest();
  t.finished_unix_us = NowUnixMicros();
  uint8_t payload[format::kTrailerPayloadSize];
  format::EncodeTrailerPayload(t, payload);
  Status s = put_record(format::RecordType::kTrailer, header_.page_count, payload, sizeof(payload));
  if (s.ok()) s = flush(/*all=*/true);
  if (s.ok()) s = out_->commit();
  if (s.ok()) finished_ = true;
  return s;
}

void ArchiveWriter::abandon() noexcept {
  finished_ = true;
  buf_.clear();
  out_->abandon();
}

ImageWriter::ImageWriter(uint32_t page_size, uint64_t page_count, std::unique_ptr<AtomicFile> out)
    : page_size_(page_size), page_count_(page_count), out_(std::move(out)) {}

Status ImageWriter::put_run(uint64_t first_pgno, const uint8_t* pages, size_t count) {
  const size_t len = count * page_size_;
  Status s = out_->pwrite(pages, len, first_pgno * page_size_);
  if (s.ok()) bytes_.fetch_add(len, std::memory_order_relaxed);
  return s;
}

Status ImageWriter::put_overlay(uint64_t pgno, const uint8_t* page) {
  return put_run(pgno, page, 1);
}

Status ImageWriter::finish(const Progress&) {
  Status s = out_->truncate(page_count_ * page_size_);
  return s.ok() ? out_->commit() : s;
}

}  // namespace cowbackup
