// What the two database kinds look like on disk, as far as cowbackup needs
// to know: the header of a SQLite database file and LMDB's meta pages. The
// front ends read their begin-time facts with these decoders; restore uses
// them to check that an image is the kind its archive says it is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "backup/format.h"
#include "cowbackup/status.h"

namespace cowbackup {

namespace sqlite {

// The first 100 bytes of a SQLite database (fileformat2.html, 1.3).
struct DbHeader {
  uint32_t page_size = 0;       // 0 if the file is empty
  uint32_t change_counter = 0;  // offset 24
  uint32_t schema_cookie = 0;   // offset 40
  uint32_t header_pages = 0;    // offset 28, "in-header database size"
  uint8_t write_version = 0;    // offset 18: 1 rollback, 2 WAL
  uint8_t read_version = 0;     // offset 19
  bool wal() const { return write_version == 2 || read_version == 2; }
};
inline constexpr size_t kDbHeaderSize = 100;
// Parses the header; Corruption if it is not a SQLite database header.
Status ParseDbHeader(const uint8_t* buf, size_t len, const std::string& path, DbHeader* h);

}  // namespace sqlite

namespace lmdb {

// One meta page as LMDB 0.9.24 lays it out (mdb.c, MDB_meta after the
// 16-byte page header; x86-64 sizes):
//
//   page offset  0  MDB_page header (pgno 8, pad 2, flags 2, lower/upper 4)
//               16  mm_magic u32 (0xBEEFC0DE)   20 mm_version u32 (1)
//               24  mm_address                  32 mm_mapsize
//               40  mm_dbs[2], 48 bytes each (FREE_DBI then MAIN_DBI;
//                   mm_psize is mm_dbs[0].md_pad)
//              136  mm_last_pg                 144 mm_txnid
//
// mdb_env_write_meta rewrites [32, 152) of the page with the older txnid.
inline constexpr uint32_t kMetaMagic = 0xBEEFC0DEu, kMetaVersion = 1;
inline constexpr uint16_t kPageMetaFlag = 0x08;  // P_META
inline constexpr size_t kPageFlagsOffset = 10, kMetaMagicOffset = 16, kMetaVersionOffset = 20,
                        kMetaMapSizeOffset = 32, kMetaPageSizeOffset = 40,
                        kMetaLastPgnoOffset = 136, kMetaTxnidOffset = 144, kMetaEnd = 152;

struct MetaPage {
  uint16_t page_flags = 0;  // of the page header; meta pages have P_META
  uint32_t magic = 0;
  uint32_t version = 0;
  uint64_t map_size = 0;
  uint32_t page_size = 0;
  uint64_t last_pgno = 0;
  uint64_t txnid = 0;
  bool valid() const { return magic == kMetaMagic && version == kMetaVersion; }
};

void DecodeMetaPage(const uint8_t* page, MetaPage* meta);
// The newest valid of meta pages 0 and 1 (`pages` holds both, each
// `page_size` bytes): the one LMDB opens with. Corruption naming `where`
// if neither is valid.
Status NewestMeta(const uint8_t* pages, uint32_t page_size, const std::string& where,
                  MetaPage* newest, int* which = nullptr);

}  // namespace lmdb

// Checks that an image whose first pages are `page0` and `page1` (either
// null past page_count) is a database of `kind`: a SQLite image starts
// with SQLite's header naming `page_size`, an LMDB image has a valid meta
// page naming it. An empty image (no pages) passes. kRaw passes.
Status CheckImageKind(format::SourceKind kind, uint32_t page_size, uint64_t page_count,
                      const uint8_t* page0, const uint8_t* page1, const std::string& where);

}  // namespace cowbackup
