// Test archives hold made-up pages; restore and verify require an image's
// first pages to be the kind its header names (backup/db_image.h,
// CheckImageKind). StampImageKind makes page `pgno` of a made-up image
// begin as that kind's would: SQLite's header on page 0, an LMDB meta page
// on pages 0 and 1. Other pages, and kRaw, are left as they are.
#pragma once

#include <cstdint>
#include <cstring>

#include "backup/db_image.h"
#include "backup/format.h"
#include "engine/encoding.h"

namespace cowbackup::test {

inline void StampImageKind(format::SourceKind kind, uint32_t page_size, uint64_t pgno, uint8_t* page) {
  if (kind == format::SourceKind::kSqlite && pgno == 0) {
    memcpy(page, "SQLite format 3", 16);
    const uint32_t field = page_size == 65536 ? 1 : page_size;
    page[16] = uint8_t(field >> 8);
    page[17] = uint8_t(field);
  } else if (kind == format::SourceKind::kLmdb && pgno < 2) {
    EncodeFixed32(page + lmdb::kMetaMagicOffset, 0xBEEFC0DE);
    EncodeFixed32(page + lmdb::kMetaVersionOffset, 1);
    EncodeFixed32(page + lmdb::kMetaPageSizeOffset, page_size);
  }
}

}  // namespace cowbackup::test
