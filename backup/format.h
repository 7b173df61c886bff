// The cowbackup archive format, version 1. docs/FORMAT.md is the prose
// specification with a worked example; this header is the single source of
// the numbers, and tests/format_test.cc checks that the two agree.
//
//   archive := header record* trailer
//
//   header (64 + meta_len bytes)
//     0   8  magic "COWBACK\0"
//     8   4  format_version        (1)
//     12  4  header_size           (64 + meta_len)
//     16  4  source_kind           (0 raw, 1 sqlite, 2 lmdb)
//     20  4  page_size             (512 .. 65536, a power of two)
//     24  8  page_count            (pages at T0)
//     32  4  archive_flags         (none defined in version 1: must be 0)
//     36  4  meta_len              (0 .. 4096)
//     40  8  created_unix_us       (when the job was armed: T0)
//     48  8  reserved              (0)
//     56  meta_len  metadata       ("key=value\n" lines, each key once;
//                                   written as plain UTF-8, see MetaLine)
//     56+meta_len 8  header_checksum  XXH3-64 of every byte before it
//
//   record (32 + payload_len bytes): control data around every page
//     0   1  type        (1 page, 2 overlay, 0x7f trailer)
//     1   1  flags       (bit 0 compressed, bit 1 encrypted: reserved, a
//                         version 1 reader refuses any flag bit by name)
//     2   2  reserved    (0)
//     4   4  payload_len (page_size for page and overlay, 48 for trailer)
//     8   8  pgno        (page number; page_count for the trailer)
//     16  payload_len    payload
//     +0  8  checksum    XXH3-64 of the 16 header bytes and the payload
//     +8  8  pgno again
//
//   trailer payload (48 bytes)
//     0   8  page_records      8   8  overlay_records
//     16  8  preserved_pages   24  8  records_end (offset of the trailer)
//     32  8  digest: XXH3-64 over the checksum fields (8 bytes LE each)
//            of every page and overlay record, in file order
//     40  8  finished_unix_us
//
// Integers are little-endian and encoded field by field. A page record
// carries a page's T0 content; an overlay record (variant kOverlayAtEnd)
// replaces an earlier page record of the same page. Every page in
// [0, page_count) has exactly one page record. An archive that ends before
// a valid trailer is incomplete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cowbackup/status.h"

namespace cowbackup::format {

inline constexpr char kMagic[8] = {'C', 'O', 'W', 'B', 'A', 'C', 'K', '\0'};
inline constexpr uint32_t kFormatVersion = 1;

inline constexpr size_t kHeaderFixedSize = 56;  // before metadata
inline constexpr size_t kHeaderChecksumSize = 8;
inline constexpr size_t kMaxMetaLen = 4096;
inline constexpr size_t kMaxHeaderSize = kHeaderFixedSize + kMaxMetaLen + kHeaderChecksumSize;

inline constexpr size_t kRecordHeaderSize = 16;
inline constexpr size_t kRecordTrailerSize = 16;
inline constexpr size_t kRecordOverhead = kRecordHeaderSize + kRecordTrailerSize;
inline constexpr size_t kTrailerPayloadSize = 48;

inline constexpr uint32_t kMinPageSize = 512;
inline constexpr uint32_t kMaxPageSize = 65536;

// Header field offsets.
inline constexpr size_t kOffMagic = 0, kOffVersion = 8, kOffHeaderSize = 12, kOffSourceKind = 16,
                        kOffPageSize = 20, kOffPageCount = 24, kOffArchiveFlags = 32,
                        kOffMetaLen = 36, kOffCreated = 40, kOffReserved = 48, kOffMeta = 56;
static_assert(kOffMeta == kHeaderFixedSize);

// Record field offsets (relative to the record start / payload end).
inline constexpr size_t kOffType = 0, kOffFlags = 1, kOffRecReserved = 2, kOffPayloadLen = 4,
                        kOffPgno = 8;
static_assert(kOffPgno + 8 == kRecordHeaderSize);

// Trailer payload offsets.
inline constexpr size_t kOffPageRecords = 0, kOffOverlayRecords = 8, kOffPreserved = 16,
                        kOffRecordsEnd = 24, kOffDigest = 32, kOffFinished = 40;
static_assert(kOffFinished + 8 == kTrailerPayloadSize);

enum class SourceKind : uint32_t { kRaw = 0, kSqlite = 1, kLmdb = 2 };
const char* SourceKindName(SourceKind kind);

enum class RecordType : uint8_t { kPage = 1, kOverlay = 2, kTrailer = 0x7f };

// Record flag bits. Version 1 writes none; they are named so a reader can
// refuse them by name until the compression and encryption issue lands.
inline constexpr uint8_t kFlagCompressed = 1 << 0;
inline constexpr uint8_t kFlagEncrypted = 1 << 1;
inline constexpr uint8_t kKnownRecordFlags = 0;  // accepted by this reader

struct Header {
  uint32_t version = kFormatVersion;
  SourceKind source_kind = SourceKind::kRaw;
  uint32_t page_size = 0;
  uint64_t page_count = 0;
  uint32_t archive_flags = 0;
  uint64_t created_unix_us = 0;
  std::string metadata;  // "key=value\n" lines

  size_t encoded_size() const { return kHeaderFixedSize + metadata.size() + kHeaderChecksumSize; }
  // Names the first bad field ("page_size 1000 is not a power of two").
  Status Validate() const;
  // The metadata's (key, value) pairs in order, as stored (escaped; see
  // MetaLine). A line without '=' is a key with an empty value; empty lines
  // are skipped. Validate() refuses a key that appears twice.
  std::vector<std::pair<std::string, std::string>> meta_pairs() const;
  // Value of `key` in metadata as stored, or "" if absent.
  std::string meta(const std::string& key) const;
};

struct Trailer {
  uint64_t page_records = 0;
  uint64_t overlay_records = 0;
  uint64_t preserved_pages = 0;
  uint64_t records_end = 0;
  uint64_t digest = 0;
  uint64_t finished_unix_us = 0;
};

// Encoding. `out` must have encoded_size() / kRecordHeaderSize / ... bytes.
void EncodeHeader(const Header& h, uint8_t* out);
// Decodes and checks a full header (its size is known from the first 16
// bytes: see HeaderSizeFromPrefix).
Status DecodeHeader(const uint8_t* in, size_t len, Header* h);
// From the first 16 bytes: magic, version and the total header size, each
// checked before anything trusts them.
Status HeaderSizeFromPrefix(const uint8_t* prefix16, size_t* header_size);

void EncodeRecordHeader(RecordType type, uint8_t flags, uint32_t payload_len, uint64_t pgno,
                        uint8_t* out);
uint64_t RecordChecksum(const uint8_t* header16, const uint8_t* payload, size_t payload_len);
void EncodeTrailerPayload(const Trailer& t, uint8_t* out);
void DecodeTrailerPayload(const uint8_t* in, Trailer* t);

// One "key=value\n" metadata line. Key and value may hold any bytes (a
// database path may): they are written with EscapeText (backup/text.h), a
// key's '=' as "\x3d", so the line is plain UTF-8 and can be decoded
// exactly (docs/FORMAT.md, Metadata).
std::string MetaLine(const std::string& key, const std::string& value);

// The metadata a writer stores from MetaLine lines: each line in order that
// still fits in kMaxMetaLen (one that does not, such as a very long
// escaped path, is left out). InvalidArgument if a line is not plain text
// ending in a newline, which MetaLine's lines always are.
Status FitMetadata(const std::string& lines, std::string* metadata);

}  // namespace cowbackup::format
