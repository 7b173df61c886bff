// The database file being backed up, as the engine sees it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cowbackup/status.h"

namespace cowbackup {

// Thread-safety: read() is called concurrently from the copier and from
// writers preserving pre-images; implementations use pread-style calls.
class Source {
 public:
  virtual ~Source() = default;
  // Reads exactly `len` bytes at `offset`. Fewer bytes available (the file
  // is shorter) is an error: the engine never reads past the T0 end of file
  // unless something truncated the file behind its back.
  virtual Status read(uint64_t offset, uint8_t* buf, size_t len) = 0;
  virtual uint32_t page_size() const = 0;
  // For messages: the path or name of the source.
  virtual const std::string& name() const = 0;
};

}  // namespace cowbackup
