// XXH3-64 (Debian's libxxhash), the checksum of every record we write.
#pragma once

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <cstddef>
#include <cstdint>

namespace cowbackup {

class Checksum {
 public:
  Checksum() { XXH3_64bits_reset(&state_); }
  void update(const void* data, size_t len) { XXH3_64bits_update(&state_, data, len); }
  uint64_t digest() const { return XXH3_64bits_digest(&state_); }
  static uint64_t Of(const void* data, size_t len) { return XXH3_64bits(data, len); }

 private:
  XXH3_state_t state_;
};

}  // namespace cowbackup
