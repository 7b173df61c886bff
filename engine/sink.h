// Where the copy goes: an archive, a plain image, a test double.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cowbackup/job.h"
#include "cowbackup/status.h"

namespace cowbackup {

// Called by one thread (the copier), in this order:
//   put_run* (each page once) → put_overlay* (kOverlayAtEnd only) → finish
// or abandon() at any point. Pages may arrive in any order (the copy queue
// can be reordered). The sink counts bytes_written() for progress and the
// rate limit; it may be read from other threads.
class Sink {
 public:
  virtual ~Sink() = default;
  // `count` consecutive pages starting at `first_pgno`, page_size each.
  virtual Status put_run(uint64_t first_pgno, const uint8_t* pages, size_t count) = 0;
  // A T0 pre-image that replaces the page put earlier (kOverlayAtEnd).
  virtual Status put_overlay(uint64_t pgno, const uint8_t* page) = 0;
  // All pages are in. Make the destination durable and visible (trailer,
  // fsync, rename, fsync directory). `final` carries the job's counters.
  virtual Status finish(const Progress& final) = 0;
  // Remove whatever was written; the destination path is left untouched.
  virtual void abandon() noexcept = 0;
  virtual uint64_t bytes_written() const = 0;
};

}  // namespace cowbackup
