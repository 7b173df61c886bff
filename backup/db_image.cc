#include "backup/db_image.h"

#include <cstring>

#include "engine/encoding.h"

namespace cowbackup {

namespace {
constexpr char kSqliteHeaderString[16] = "SQLite format 3";  // with its NUL: 16 bytes
}  // namespace

Status sqlite::ParseDbHeader(const uint8_t* buf, size_t len, const std::string& path, DbHeader* h) {
  if (len < kDbHeaderSize || memcmp(buf, kSqliteHeaderString, 16) != 0) {
    return Status::Corruption("not a SQLite database (bad header)", path);
  }
  uint32_t ps = (uint32_t(buf[16]) << 8) | buf[17];
  if (ps == 1) ps = 65536;
  if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0) {
    return Status::Corruption("bad page size " + std::to_string(ps) + " in the database header", path);
  }
  h->page_size = ps;
  h->write_version = buf[18];
  h->read_version = buf[19];
  h->change_counter = DecodeBig32(buf + 24);
  h->header_pages = DecodeBig32(buf + 28);
  h->schema_cookie = DecodeBig32(buf + 40);
  return Status::OK();
}

void lmdb::DecodeMetaPage(const uint8_t* page, MetaPage* meta) {
  meta->page_flags = DecodeFixed16(page + kPageFlagsOffset);
  meta->magic = DecodeFixed32(page + kMetaMagicOffset);
  meta->version = DecodeFixed32(page + kMetaVersionOffset);
  meta->map_size = DecodeFixed64(page + kMetaMapSizeOffset);
  meta->page_size = DecodeFixed32(page + kMetaPageSizeOffset);
  meta->last_pgno = DecodeFixed64(page + kMetaLastPgnoOffset);
  meta->txnid = DecodeFixed64(page + kMetaTxnidOffset);
}

Status lmdb::NewestMeta(const uint8_t* pages, uint32_t page_size, const std::string& where,
                        MetaPage* newest, int* which) {
  if (page_size < kMetaEnd) return Status::InvalidArgument("lmdb: page size too small for a meta page", where);
  MetaPage m[2];
  DecodeMetaPage(pages, &m[0]);
  DecodeMetaPage(pages + page_size, &m[1]);
  int pick = -1;
  for (int i = 0; i < 2; ++i) {
    if (m[i].valid() && (pick < 0 || m[i].txnid > m[pick].txnid)) pick = i;
  }
  if (pick < 0) return Status::Corruption("lmdb: no valid meta page", where);
  *newest = m[pick];
  if (which) *which = pick;
  return Status::OK();
}

Status CheckImageKind(format::SourceKind kind, uint32_t page_size, uint64_t page_count,
                      const uint8_t* page0, const uint8_t* page1, const std::string& where) {
  if (kind == format::SourceKind::kSqlite && page_count > 0) {
    sqlite::DbHeader h;
    Status s = page_size >= sqlite::kDbHeaderSize ? sqlite::ParseDbHeader(page0, page_size, where, &h)
                                                  : Status::Corruption("page size too small", where);
    if (!s.ok()) {
      return Status::Corruption("the archive says SQLite, but its page 1 is " + s.message(), where);
    }
    if (h.page_size != page_size) {
      return Status::Corruption("the archive says SQLite pages of " + std::to_string(page_size) +
                                    " bytes, but its page 1 says " + std::to_string(h.page_size),
                                where);
    }
  }
  if (kind == format::SourceKind::kLmdb) {
    if (page_count < 2) {
      return Status::Corruption("the archive says LMDB, but it holds " + std::to_string(page_count) +
                                    " page(s): an environment has two meta pages",
                                where);
    }
    lmdb::MetaPage m[2];
    if (page_size >= lmdb::kMetaEnd) {
      lmdb::DecodeMetaPage(page0, &m[0]);
      lmdb::DecodeMetaPage(page1, &m[1]);
    }
    bool ok = false;
    for (const lmdb::MetaPage& meta : m) ok = ok || (meta.valid() && meta.page_size == page_size);
    if (!ok) {
      return Status::Corruption("the archive says LMDB, but neither page 0 nor page 1 is a valid "
                                "meta page for its page size",
                                where);
    }
  }
  return Status::OK();
}

}  // namespace cowbackup
