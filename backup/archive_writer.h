// ArchiveWriter: a Sink that frames every page as a record (format.h) and
// streams them to a ByteOutput through a 1 MiB buffer.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "backup/format.h"
#include "backup/output.h"
#include "engine/aligned_buffer.h"
#include "engine/checksum.h"
#include "engine/sink.h"

namespace cowbackup {

class ArchiveWriter final : public Sink {
 public:
  // Writes the header at once (buffered). `header.page_size` and
  // `page_count` must match the job's.
  ArchiveWriter(const format::Header& header, std::unique_ptr<ByteOutput> out);
  ~ArchiveWriter() override;

  Status put_run(uint64_t first_pgno, const uint8_t* pages, size_t count) override;
  Status put_overlay(uint64_t pgno, const uint8_t* page) override;
  Status finish(const Progress& final) override;
  void abandon() noexcept override;
  uint64_t bytes_written() const override { return bytes_.load(std::memory_order_relaxed); }

 private:
  Status put_record(format::RecordType type, uint64_t pgno, const uint8_t* payload, size_t len);
  Status flush(bool all);

  const format::Header header_;
  std::unique_ptr<ByteOutput> out_;
  // Flushed in whole kIoAlign blocks until finish(), so every append lands
  // aligned in memory and in the file: AtomicFile writes it with O_DIRECT
  // as it is.
  IoBuffer buf_;
  uint64_t offset_ = 0;  // bytes encoded so far
  uint64_t page_records_ = 0;
  uint64_t overlay_records_ = 0;
  Checksum digest_;  // over record checksums, file order
  std::atomic<uint64_t> bytes_{0};  // bytes encoded (progress; may be buffered)
  bool finished_ = false;
};

// A Sink that writes a ready-to-open image of the source (SQLite "plain"
// format, the restored data.mdb): pages at pgno * page_size, overlays over
// them, truncated to page_count pages, then published atomically.
class ImageWriter final : public Sink {
 public:
  ImageWriter(uint32_t page_size, uint64_t page_count, std::unique_ptr<AtomicFile> out);
  Status put_run(uint64_t first_pgno, const uint8_t* pages, size_t count) override;
  Status put_overlay(uint64_t pgno, const uint8_t* page) override;
  Status finish(const Progress& final) override;
  void abandon() noexcept override { out_->abandon(); }
  uint64_t bytes_written() const override { return bytes_.load(std::memory_order_relaxed); }

 private:
  const uint32_t page_size_;
  const uint64_t page_count_;
  std::unique_ptr<AtomicFile> out_;
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace cowbackup
