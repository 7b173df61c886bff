// SQLite's write-ahead log, decoded by the book: the -wal file
// (fileformat2.html section 4, "The Write-Ahead Log") and the header of the
// wal-index in -shm (4.5, "WAL-Index Format"). SQLite's src/wal.c is the
// reference implementation; nothing here is copied from it.
//
// USING. ScanWal() reads a -wal file the way WAL recovery does and says what
// is committed in it: the last commit frame (mxFrame), the database size
// that frame records, the salts, and for each page its newest committed
// frame. WalImageSource (backup/wal_image_source.h) turns that into the
// database image a full checkpoint would produce. ParseWalIndexHeader()
// decodes the 136-byte header at the start of -shm with walIndexTryHdr's
// rule; CopyWalIndexHeader() takes those bytes out of a live mapping.
//
// The -wal file:
//
//   header (32 bytes, big-endian u32s)
//     0  magic            0x377f0682: checksums over little-endian words
//                         0x377f0683: checksums over big-endian words
//     4  format version   3007000
//     8  page size        512 .. 65536, a power of two (65536 stored as is)
//    12  checkpoint seq   incremented by every WAL restart
//    16  salt-1           incremented by every WAL restart
//    20  salt-2           re-randomised by every WAL restart
//    24  checksum-1 }     over bytes [0, 24) of the header
//    28  checksum-2 }
//   frame i (i = 1, 2, ...) at 32 + (i-1) * (24 + page size)
//     0  page number      1-based; 0 is never valid
//     4  db size          after the commit, in pages, for a commit frame;
//                         0 for every other frame
//     8  salt-1, 12 salt-2  copies of the header's
//    16  checksum-1, 20 checksum-2: cumulative, seeded with the header's
//                         checksum and extended over this frame's bytes
//                         [0, 8) and its page
//    24  the page         (page size bytes)
//
// A frame is valid when its salts equal the header's, its page number is
// not 0, and its checksum matches; recovery stops at the first frame that
// is not. Frames up to the last valid commit frame are committed. So a
// crash mid-append (a torn or half-written frame), a previous generation's
// frames left past a restart (the WAL is rewritten from offset 32, not
// truncated) and a rolled-back transaction's spilled frames are all past
// the end of what is committed.
//
// The wal-index header (first 136 bytes of -shm; host byte order, since
// -shm never leaves the machine): two copies of WalIndexHdr, written copy 1
// first, then copy 0, read copy 0 first, then copy 1; equal copies with a
// good checksum are a consistent header.
//
//      0 / 48  iVersion (3007000)       4 / 52  unused
//      8 / 56  iChange                 12 / 60  isInit (u8), bigEndCksum (u8)
//     14 / 62  szPage (u16, 1 = 65536) 16 / 64  mxFrame
//     20 / 68  nPage                   24 / 72  aFrameCksum[2]
//     32 / 80  aSalt[2]: the WAL header's salt bytes, copied as they are
//     40 / 88  aCksum[2]: over bytes [0, 40) of the copy, host-order words
//     96  nBackfill   100 aReadMark[5]   120 aLock[8]: the byte locks
//    128  nBackfillAttempted            132 unused
//
// After the header, the wal-index holds each frame's page number, in
// 32 KiB regions (xShmMap's unit): frames 1..4062 in region 0 after the
// 136-byte header, then 4096 frames per region from its first byte (each
// array followed by a hash table, which is not read here). Host order.
// Entries up to mxFrame are what SQLite's readers trust for committed
// frames; WalIndexFrameSlot() says where frame i's entry is, and
// WalScanFromIndex() turns them into the same WalScan recovery gives.
//
// LIMITATIONS. Legacy WAL only (format 3007000): SQLite's wal2 branch
// (3021000) is refused as SQLite 3.40 refuses it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cowbackup/status.h"
#include "engine/source.h"

namespace cowbackup::sqlite {

// ---- The -wal file header ----
inline constexpr uint32_t kWalMagicLittleEndian = 0x377f0682;
inline constexpr uint32_t kWalMagicBigEndian = 0x377f0683;
inline constexpr uint32_t kWalFormatVersion = 3007000;

inline constexpr size_t kWalMagicOffset = 0, kWalVersionOffset = 4, kWalPageSizeOffset = 8,
                        kWalCheckpointSeqOffset = 12, kWalSalt1Offset = 16, kWalSalt2Offset = 20,
                        kWalChecksum1Offset = 24, kWalChecksum2Offset = 28;
inline constexpr size_t kWalHeaderSize = 32;
static_assert(kWalHeaderSize == kWalChecksum2Offset + 4);

// ---- A frame header ----
inline constexpr size_t kWalFramePgnoOffset = 0, kWalFrameDbPagesOffset = 4, kWalFrameSalt1Offset = 8,
                        kWalFrameSalt2Offset = 12, kWalFrameChecksum1Offset = 16,
                        kWalFrameChecksum2Offset = 20;
inline constexpr size_t kWalFrameHeaderSize = 24;
static_assert(kWalFrameHeaderSize == kWalFrameChecksum2Offset + 4);
// The checksummed part of a frame header: page number and db size.
inline constexpr size_t kWalFrameChecksummedBytes = 8;
static_assert(kWalFrameChecksummedBytes == kWalFrameSalt1Offset);

// Byte offset of frame `frame` (1-based) in the -wal file.
inline uint64_t WalFrameOffset(uint32_t frame, uint32_t page_size) {
  return kWalHeaderSize + uint64_t(frame - 1) * (kWalFrameHeaderSize + page_size);
}

// ---- The WAL checksum ----
// Two 32-bit sums over the input read as 32-bit words x[0..n), taken in
// pairs: s0 += x[i] + s1; s1 += x[i+1] + s0 (Fibonacci-weighted, so the
// order of the words counts). Unsigned arithmetic wraps.
struct WalChecksum {
  uint32_t s0 = 0;
  uint32_t s1 = 0;
  bool operator==(const WalChecksum&) const = default;
};
// Extends `sum` over `len` bytes (a multiple of 8), read as big-endian
// words if `big_endian_words`, else little-endian. The -wal file's magic
// says which (0x377f0683 big); the wal-index header's own checksum uses
// the host's order.
WalChecksum ExtendWalChecksum(WalChecksum sum, bool big_endian_words, const uint8_t* data, size_t len);

struct WalHeader {
  uint32_t magic = 0;
  uint32_t format_version = 0;
  uint32_t page_size = 0;
  uint32_t checkpoint_seq = 0;
  uint32_t salt1 = 0;
  uint32_t salt2 = 0;
  WalChecksum checksum;  // as stored
  bool big_endian_checksums() const { return (magic & 1) != 0; }
};
// Field by field, no checks. EncodeWalHeader writes `h` as it is (the
// stored checksum too); tests seal a header with ExtendWalChecksum.
void DecodeWalHeader(const uint8_t* p, WalHeader* h);
void EncodeWalHeader(const WalHeader& h, uint8_t* p);
// Decodes and checks the first kWalHeaderSize bytes of `buf` in the order
// recovery does, naming the first bad field: Corruption for a short
// buffer, the magic, the page size or the header checksum (SQLite then
// treats the whole WAL as empty); NotSupported for a format version other
// than 3007000 (SQLite then refuses to open the database).
Status ParseWalHeader(const uint8_t* buf, size_t len, const std::string& where, WalHeader* h);

struct WalFrameHeader {
  uint32_t pgno = 0;
  uint32_t db_pages = 0;  // commit frames only: the database size after the commit
  uint32_t salt1 = 0;
  uint32_t salt2 = 0;
  WalChecksum checksum;
  bool commit() const { return db_pages != 0; }
};
void DecodeWalFrameHeader(const uint8_t* p, WalFrameHeader* f);
void EncodeWalFrameHeader(const WalFrameHeader& f, uint8_t* p);

// ---- Recovery: what is committed in a -wal file ----

// Where and why a scan stopped. Recovery treats every reason alike (the
// frame and all after it are not in the WAL); the reason is for messages
// and tests.
enum class WalScanEnd : uint8_t {
  kNoHeader,          // no valid header: SQLite treats the WAL as empty
  kEndOfFile,         // every frame in the file was valid
  kTornFrame,         // the file ends inside frame end_frame
  kSaltMismatch,      // frame end_frame carries other salts (an older generation)
  kZeroPage,          // frame end_frame names page 0
  kChecksumMismatch,  // the checksum chain breaks at frame end_frame
  kFrameLimit,        // frame end_frame is past the caller's limit
};
const char* WalScanEndName(WalScanEnd end);

// One page's newest committed frame.
struct WalPageFrame {
  uint32_t pgno = 0;   // 1-based, as SQLite numbers pages
  uint32_t frame = 0;  // 1-based
};

struct WalScan {
  WalHeader header;              // meaningful when header_valid
  bool header_valid = false;
  std::string header_problem;    // why not, when !header_valid and the file had a header

  uint32_t max_frame = 0;        // mxFrame: the last commit frame, 0 if none
  uint32_t db_pages = 0;         // that frame's db size (0 if none)
  WalChecksum max_frame_checksum;  // the cumulative checksum at max_frame, {0, 0} if
                                   // none: the wal-index's aFrameCksum after recovery
  uint32_t valid_frames = 0;     // frames that passed, committed or not (>= max_frame)
  WalScanEnd end = WalScanEnd::kNoHeader;
  uint32_t end_frame = 0;        // the first frame not taken (see WalScanEnd)

  // For each page with a frame <= max_frame, the newest such frame; sorted
  // by pgno, each page once. Pages past db_pages are listed too (a later
  // commit shrank the database); a checkpoint skips them.
  std::vector<WalPageFrame> pages;

  // The newest committed frame of `pgno`, 0 if the WAL has none.
  uint32_t FrameOf(uint32_t pgno) const;
  uint32_t page_size() const { return header.page_size; }
};

// Reads the -wal file through `wal` (its first `wal_size` bytes) as WAL
// recovery does and fills `out`. A missing, short or invalid header is an
// empty WAL (header_valid false), as SQLite treats it; only an unknown
// format version and read errors fail. With `frame_limit` > 0 no frame past
// it is read: given the wal-index's mxFrame, the scan then ends at it and
// its result can be checked against the index.
Status ScanWal(Source& wal, uint64_t wal_size, WalScan* out, uint32_t frame_limit = 0);
// The same over bytes in memory.
Status ScanWal(const uint8_t* data, size_t len, WalScan* out, uint32_t frame_limit = 0);

// ---- The wal-index header (the first 136 bytes of -shm) ----
inline constexpr uint32_t kWalIndexVersion = 3007000;
// Offsets inside one copy of WalIndexHdr; copy 0 is at 0, copy 1 at 48.
inline constexpr size_t kWiVersionOffset = 0, kWiChangeOffset = 8, kWiIsInitOffset = 12,
                        kWiBigEndCksumOffset = 13, kWiPageSizeOffset = 14, kWiMaxFrameOffset = 16,
                        kWiDbPagesOffset = 20, kWiFrameChecksumOffset = 24, kWiSaltOffset = 32,
                        kWiChecksumOffset = 40;
inline constexpr size_t kWalIndexHdrSize = 48;  // one copy
static_assert(kWalIndexHdrSize == kWiChecksumOffset + 8);
// WalCkptInfo, after the two copies (offsets from the start of -shm).
inline constexpr size_t kWalCkptInfoOffset = 2 * kWalIndexHdrSize;
inline constexpr size_t kWiBackfillOffset = 96, kWiReadMarkOffset = 100, kWiLockOffset = 120,
                        kWiBackfillAttemptedOffset = 128;
inline constexpr int kWalReadMarks = 5;
inline constexpr int kShmLocks = 8;  // SQLITE_SHM_NLOCK: the byte locks at kWiLockOffset
inline constexpr size_t kWalIndexHeaderSize = 136;
static_assert(kWiBackfillOffset == kWalCkptInfoOffset);
static_assert(kWiLockOffset == kWiReadMarkOffset + 4 * kWalReadMarks);
static_assert(kWiBackfillAttemptedOffset == kWiLockOffset + kShmLocks);
static_assert(kWalIndexHeaderSize == kWiBackfillAttemptedOffset + 8);
// xShmLock slots (wal.c's names): the lock a writer holds for a whole
// write transaction, the checkpointer's, recovery's, and the read marks'.
inline constexpr int kWalWriteLock = 0, kWalCkptLock = 1, kWalRecoverLock = 2, kWalReadLock0 = 3;
inline constexpr uint32_t kWalReadMarkNotUsed = 0xffffffff;

struct WalIndexHeader {
  uint32_t version = 0;
  uint32_t change = 0;  // iChange: moves with every write transaction
  bool initialized = false;
  bool big_endian_checksums = false;
  uint32_t page_size = 0;  // decoded: szPage 1 means 65536
  uint32_t max_frame = 0;  // mxFrame
  uint32_t db_pages = 0;   // nPage
  WalChecksum frame_checksum;  // aFrameCksum: the checksum at max_frame
  uint32_t salt1 = 0;      // the WAL header's salt-1 and salt-2, as integers
  uint32_t salt2 = 0;
  WalChecksum checksum;    // aCksum, as stored
  // WalCkptInfo. Not covered by the checksum, and written outside the
  // header's protocol: a WAL restart publishes mxFrame 0 before it resets
  // nBackfill, so nBackfill > max_frame can be seen for an instant.
  uint32_t backfilled = 0;  // nBackfill
  uint32_t read_marks[kWalReadMarks] = {};
  uint32_t backfill_attempted = 0;
};
// Decodes the header from its first kWalIndexHeaderSize bytes with
// walIndexTryHdr's rule: Busy if the two copies differ (a writer is halfway
// through updating it: read again); Corruption naming the field if it is
// not initialised, its checksum does not match or its page size is not
// one; NotSupported for a version other than 3007000. The lock bytes
// [120, 128) are not looked at.
Status ParseWalIndexHeader(const uint8_t* buf, size_t len, const std::string& where, WalIndexHeader* h);
// ---- The wal-index page-number arrays (after the header) ----
inline constexpr uint32_t kWalIndexRegionSize = 32768;  // WALINDEX_PGSZ
inline constexpr uint32_t kWalIndexFramesPerRegion = 4096;  // HASHTABLE_NPAGE
inline constexpr uint32_t kWalIndexFramesInRegion0 =
    kWalIndexFramesPerRegion - uint32_t(kWalIndexHeaderSize / 4);  // 4062
// Frame `frame` (1-based): its region, and the byte offset of its page
// number in that region.
struct WalIndexSlot {
  uint32_t region = 0;
  uint32_t offset = 0;
};
WalIndexSlot WalIndexFrameSlot(uint32_t frame);
// The WalScan that recovery would give for the WAL the header `h`
// describes, from the page numbers of frames 1..h.max_frame
// (`frame_pages[i]` is frame i+1's). header.magic and checkpoint_seq are
// not in the wal-index and stay 0; end is kFrameLimit.
WalScan WalScanFromIndex(const WalIndexHeader& h, const std::vector<uint32_t>& frame_pages);

// Copies the header out of a live -shm mapping (`shm`: the start of region
// 0, 4-byte aligned) as walIndexTryHdr reads it: copy 0, a full memory
// barrier, copy 1, then the checkpoint info; never the lock bytes (left 0
// in `out`: some systems' locks are mandatory). Word by word with relaxed
// atomic loads, so a concurrent writer is a torn copy, not a data race.
void CopyWalIndexHeader(const void* shm, uint8_t out[kWalIndexHeaderSize]);

}  // namespace cowbackup::sqlite
