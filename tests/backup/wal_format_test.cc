// SQLite's WAL format pieces (backup/wal_format.h, backup/wal_image_source.h)
// on synthetic files: the spec's offsets, the checksum by hand, each bad
// header field named, what recovery takes from a -wal file and where it
// stops, the wal-index header's read rule, and the checkpointed image. The
// same pieces against files the real SQLite wrote: tests/sqlite/wal_image_test.cc.
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backup/wal_format.h"
#include "backup/wal_image_source.h"
#include "engine/encoding.h"
#include "engine/memory_parts.h"
#include "test_util/wal.h"

namespace cowbackup::test {
namespace {

using sqlite::WalScan;
using sqlite::WalScanEnd;

bool Has(const Status& s, const std::string& text) { return s.message().find(text) != std::string::npos; }

WalScan Scan(const WalBytes& wal, uint32_t frame_limit = 0) {
  WalScan scan;
  Status s = sqlite::ScanWal(wal.data(), wal.size(), &scan, frame_limit);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return scan;
}

// ---- Layout ----

TEST(WalFormat, HeaderFieldsSitAtTheSpecsOffsetsBigEndian) {
  sqlite::WalHeader h;
  h.magic = 0x377f0683;
  h.format_version = 3007000;
  h.page_size = 65536;
  h.checkpoint_seq = 0x01020304;
  h.salt1 = 0x05060708;
  h.salt2 = 0x090a0b0c;
  h.checksum = {0x0d0e0f10, 0x11121314};
  uint8_t b[32];
  sqlite::EncodeWalHeader(h, b);
  const uint8_t want[32] = {0x37, 0x7f, 0x06, 0x83, 0x00, 0x2d, 0xe2, 0x18,  // 3007000
                            0x00, 0x01, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04,  // 65536 as is
                            0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
                            0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14};
  EXPECT_EQ(memcmp(b, want, 32), 0);
  sqlite::WalHeader d;
  sqlite::DecodeWalHeader(b, &d);
  EXPECT_EQ(d.magic, h.magic);
  EXPECT_EQ(d.page_size, 65536u);
  EXPECT_EQ(d.checksum, h.checksum);
  EXPECT_TRUE(d.big_endian_checksums());
}

TEST(WalFormat, FrameHeaderFieldsSitAtTheSpecsOffsetsBigEndian) {
  sqlite::WalFrameHeader f;
  f.pgno = 0x01020304;
  f.db_pages = 0x05060708;
  f.salt1 = 0x090a0b0c;
  f.salt2 = 0x0d0e0f10;
  f.checksum = {0x11121314, 0x15161718};
  uint8_t b[24];
  sqlite::EncodeWalFrameHeader(f, b);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(b[i], i + 1) << i;
  sqlite::WalFrameHeader d;
  sqlite::DecodeWalFrameHeader(b, &d);
  EXPECT_EQ(d.pgno, f.pgno);
  EXPECT_EQ(d.db_pages, f.db_pages);
  EXPECT_TRUE(d.commit());
  EXPECT_EQ(sqlite::WalFrameOffset(1, 4096), 32u);
  EXPECT_EQ(sqlite::WalFrameOffset(3, 512), 32u + 2 * 536);
}

// ---- The checksum ----

TEST(WalChecksum, MatchesTheAlgorithmByHandInEitherByteOrder) {
  // Words 1, 2, 3, 4: s0 = 0+1+0 = 1, s1 = 0+2+1 = 3; s0 = 1+3+3 = 7, s1 = 3+4+7 = 14.
  const uint8_t le[16] = {1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0};
  const uint8_t be[16] = {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
  EXPECT_EQ(sqlite::ExtendWalChecksum({}, false, le, 16), (sqlite::WalChecksum{7, 14}));
  EXPECT_EQ(sqlite::ExtendWalChecksum({}, true, be, 16), (sqlite::WalChecksum{7, 14}));
  // The same bytes read in the other order are other words.
  EXPECT_EQ(sqlite::ExtendWalChecksum({}, true, le, 8), (sqlite::WalChecksum{0x01000000, 0x03000000}));
  // A seed carries on where the first part stopped; sums wrap.
  EXPECT_EQ(sqlite::ExtendWalChecksum(sqlite::ExtendWalChecksum({}, false, le, 8), false, le + 8, 8),
            (sqlite::WalChecksum{7, 14}));
  const uint8_t ff[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(sqlite::ExtendWalChecksum({}, false, ff, 8), (sqlite::WalChecksum{0xffffffff, 0xfffffffe}));
  EXPECT_EQ(sqlite::ExtendWalChecksum({1, 1}, false, ff, 8), (sqlite::WalChecksum{1, 1}));
}

// ---- The header, field by field ----

TEST(WalHeader, ParseNamesEachBadField) {
  for (bool be : {false, true}) {
    WalBuilder w(4096, be);
    sqlite::WalHeader h;
    ASSERT_TRUE(sqlite::ParseWalHeader(w.bytes.data(), 32, "x-wal", &h).ok());
    EXPECT_EQ(h.big_endian_checksums(), be);

    Status s = sqlite::ParseWalHeader(w.bytes.data(), 31, "x-wal", &h);
    EXPECT_TRUE(s.IsCorruption() && Has(s, "shorter than 32") && Has(s, "x-wal")) << s.ToString();

    WalBytes b = w.bytes;
    EncodeBig32(b.data(), 0x377f0684);
    s = sqlite::ParseWalHeader(b.data(), 32, "x-wal", &h);
    EXPECT_TRUE(s.IsCorruption() && Has(s, "bad magic 0x377f0684")) << s.ToString();

    for (uint32_t bad : {0u, 256u, 1000u, 131072u}) {
      b = w.bytes;
      EncodeBig32(b.data() + sqlite::kWalPageSizeOffset, bad);
      ResealWal(&b, be, 0);  // a good checksum: the page size itself is refused
      s = sqlite::ParseWalHeader(b.data(), 32, "x-wal", &h);
      EXPECT_TRUE(s.IsCorruption() && Has(s, "bad page size " + std::to_string(bad))) << s.ToString();
    }

    b = w.bytes;
    b[sqlite::kWalSalt2Offset] ^= 1;
    s = sqlite::ParseWalHeader(b.data(), 32, "x-wal", &h);
    EXPECT_TRUE(s.IsCorruption() && Has(s, "checksum mismatch")) << s.ToString();

    b = w.bytes;
    EncodeBig32(b.data() + sqlite::kWalVersionOffset, 3021000);  // wal2
    ResealWal(&b, be, 0);
    s = sqlite::ParseWalHeader(b.data(), 32, "x-wal", &h);
    EXPECT_TRUE(s.IsNotSupported() && Has(s, "format version 3021000")) << s.ToString();
  }
}

// ---- What recovery takes from a -wal file ----

TEST(WalScan, NewestCommittedFramePerPageAndTheLastCommitsSize) {
  for (bool be : {false, true}) {
    WalBuilder w(512, be);
    w.Frame(1, 'a');
    w.Frame(2, 'b');
    w.Frame(3, 'c', 3);
    w.Frame(2, 'd');
    w.Frame(4, 'e', 4);
    const WalScan scan = Scan(w.bytes);
    EXPECT_TRUE(scan.header_valid);
    EXPECT_EQ(scan.max_frame, 5u);
    EXPECT_EQ(scan.db_pages, 4u);
    EXPECT_EQ(scan.valid_frames, 5u);
    EXPECT_EQ(scan.end, WalScanEnd::kEndOfFile);
    EXPECT_EQ(scan.end_frame, 6u);
    ASSERT_EQ(scan.pages.size(), 4u);
    EXPECT_EQ(scan.FrameOf(1), 1u);
    EXPECT_EQ(scan.FrameOf(2), 4u);
    EXPECT_EQ(scan.FrameOf(3), 3u);
    EXPECT_EQ(scan.FrameOf(4), 5u);
    EXPECT_EQ(scan.FrameOf(5), 0u);
    // The checksum kept is the commit frame's own.
    sqlite::WalFrameHeader f;
    sqlite::DecodeWalFrameHeader(w.bytes.data() + sqlite::WalFrameOffset(5, 512), &f);
    EXPECT_EQ(scan.max_frame_checksum, f.checksum);
  }
}

TEST(WalScan, FramesAfterTheLastCommitAreNotCommitted) {
  WalBuilder w(512);
  w.Frame(1, 'a', 1);
  w.Frame(1, 'b');  // a transaction that spilled and never committed
  w.Frame(2, 'c');
  const WalScan scan = Scan(w.bytes);
  EXPECT_EQ(scan.max_frame, 1u);
  EXPECT_EQ(scan.db_pages, 1u);
  EXPECT_EQ(scan.valid_frames, 3u);
  EXPECT_EQ(scan.FrameOf(1), 1u);
  EXPECT_EQ(scan.FrameOf(2), 0u);
}

TEST(WalScan, AFrameWithOtherSaltsEndsTheWalEvenWithAGoodChecksum) {
  // What a restart leaves: the new generation, then the old one's frames.
  WalBuilder w(512, false, 7, 100);
  w.Frame(1, 'a', 1);
  w.FrameWith(2, WalBytes(512, 'b'), 2, 6, 99);  // the checksum chain is right
  w.Frame(3, 'c', 3);
  const WalScan scan = Scan(w.bytes);
  EXPECT_EQ(scan.end, WalScanEnd::kSaltMismatch);
  EXPECT_EQ(scan.end_frame, 2u);
  EXPECT_EQ(scan.max_frame, 1u);
  EXPECT_EQ(scan.valid_frames, 1u);
  EXPECT_EQ(scan.FrameOf(2), 0u);
}

TEST(WalScan, PageZeroEndsTheWal) {
  WalBuilder w(512);
  w.Frame(1, 'a', 1);
  w.Frame(0, 'b', 2);
  const WalScan scan = Scan(w.bytes);
  EXPECT_EQ(scan.end, WalScanEnd::kZeroPage);
  EXPECT_EQ(scan.end_frame, 2u);
  EXPECT_EQ(scan.max_frame, 1u);
}

TEST(WalScan, AChecksumBreakEndsTheWalThere) {
  WalBuilder w(512);
  w.Frame(1, 'a');
  w.Frame(2, 'b');
  w.Frame(3, 'c', 3);
  w.Frame(1, 'd', 3);
  for (uint32_t broken = 1; broken <= 4; ++broken) {
    for (size_t at : {size_t(0), size_t(5), sqlite::kWalFrameHeaderSize + 100}) {
      WalBytes b = w.bytes;
      b[sqlite::WalFrameOffset(broken, 512) + at] ^= 0x40;
      const WalScan scan = Scan(b);
      EXPECT_EQ(scan.end_frame, broken) << broken << " " << at;
      EXPECT_EQ(scan.valid_frames, broken - 1);
      EXPECT_EQ(scan.max_frame, broken <= 3 ? 0u : 3u);
      EXPECT_EQ(scan.end, WalScanEnd::kChecksumMismatch) << broken << " " << at;
    }
  }
}

TEST(WalScan, ATornLastFrameIsNotRead) {
  WalBuilder w(512);
  w.Frame(1, 'a', 1);
  w.Frame(2, 'b', 2);
  for (size_t cut : {size_t(1), size_t(300), size_t(535)}) {
    WalBytes b(w.bytes.begin(), w.bytes.end() - cut);
    const WalScan scan = Scan(b);
    EXPECT_EQ(scan.end, WalScanEnd::kTornFrame);
    EXPECT_EQ(scan.end_frame, 2u);
    EXPECT_EQ(scan.max_frame, 1u);
    EXPECT_EQ(scan.db_pages, 1u);
  }
}

TEST(WalScan, AFrameLimitStopsThereAndSaysSo) {
  WalBuilder w(512);
  w.Frame(1, 'a', 1);
  w.Frame(2, 'b', 2);
  w.Frame(1, 'c', 2);
  WalScan scan = Scan(w.bytes, 2);
  EXPECT_EQ(scan.end, WalScanEnd::kFrameLimit);
  EXPECT_EQ(scan.end_frame, 3u);
  EXPECT_EQ(scan.max_frame, 2u);
  EXPECT_EQ(scan.FrameOf(1), 1u);
  scan = Scan(w.bytes, 3);  // a limit at the end of the file is no limit
  EXPECT_EQ(scan.end, WalScanEnd::kEndOfFile);
  EXPECT_EQ(scan.FrameOf(1), 3u);
}

TEST(WalScan, NoValidHeaderIsAnEmptyWal) {
  WalBuilder w(512);
  w.Frame(1, 'a', 1);
  WalBytes garbage(2000);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = uint8_t(i * 131 + 7);
  WalBytes bad_cksum = w.bytes;
  bad_cksum[sqlite::kWalSalt1Offset] ^= 1;
  struct Case {
    WalBytes bytes;
    std::string problem;
  };
  for (const Case& c : {Case{{}, ""}, Case{WalBytes(w.bytes.begin(), w.bytes.begin() + 31), ""},
                        Case{WalBytes(w.bytes.begin(), w.bytes.begin() + 32), ""},
                        Case{garbage, "bad magic"}, Case{bad_cksum, "checksum mismatch"}}) {
    const WalScan scan = Scan(c.bytes);
    EXPECT_FALSE(scan.header_valid) << c.bytes.size();
    EXPECT_EQ(scan.end, WalScanEnd::kNoHeader);
    EXPECT_EQ(scan.max_frame, 0u);
    EXPECT_TRUE(scan.pages.empty());
    if (c.problem.empty()) {
      EXPECT_EQ(scan.header_problem, "");
    } else {
      EXPECT_NE(scan.header_problem.find(c.problem), std::string::npos) << scan.header_problem;
    }
  }
}

TEST(WalScan, AnUnknownFormatVersionIsRefused) {
  WalBuilder w(512);
  w.Frame(1, 'a', 1);
  WalBytes b = w.bytes;
  EncodeBig32(b.data() + sqlite::kWalVersionOffset, 3021000);
  ResealWal(&b, false, 1);
  WalScan scan;
  Status s = sqlite::ScanWal(b.data(), b.size(), &scan);
  EXPECT_TRUE(s.IsNotSupported() && Has(s, "format version 3021000")) << s.ToString();
}

TEST(WalScan, ReadsInChunksWithoutLosingTheChainAcrossThem) {
  // 512-byte pages: a chunk is 1956 frames; 5000 frames cross two boundaries.
  WalBuilder w(512);
  for (uint32_t i = 1; i <= 5000; ++i) w.Frame(1 + i % 97, uint8_t(i), i % 10 == 0 ? 97 : 0);
  WalScan scan = Scan(w.bytes);
  EXPECT_EQ(scan.max_frame, 5000u);
  EXPECT_EQ(scan.valid_frames, 5000u);
  EXPECT_EQ(scan.pages.size(), 97u);
  EXPECT_EQ(scan.FrameOf(1 + 5000 % 97), 5000u);
  w.bytes[sqlite::WalFrameOffset(3001, 512) + 100] ^= 1;
  scan = Scan(w.bytes);
  EXPECT_EQ(scan.end, WalScanEnd::kChecksumMismatch);
  EXPECT_EQ(scan.end_frame, 3001u);
  EXPECT_EQ(scan.max_frame, 3000u);
}

TEST(WalScan, AReadErrorIsReturned) {
  class Failing final : public Source {
   public:
    Status read(uint64_t offset, uint8_t*, size_t) override {
      return Status::IOError("read", "wal, offset " + std::to_string(offset));
    }
    uint32_t page_size() const override { return 0; }
    const std::string& name() const override { return name_; }
    std::string name_ = "wal";
  } failing;
  WalScan scan;
  Status s = sqlite::ScanWal(failing, 10000, &scan);
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
}

// ---- The checkpointed image ----

class WalImageTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kPs = 512;
  WalImageTest() : main_(kPs, {}) {
    for (uint8_t p = 0; p < 4; ++p) main_.bytes.insert(main_.bytes.end(), kPs, uint8_t('0' + p));
  }
  std::unique_ptr<sqlite::WalImageSource> Make(const WalBuilder& w) {
    wal_ = std::make_unique<MemorySource>(0, w.bytes);
    WalScan scan = Scan(w.bytes);
    std::unique_ptr<sqlite::WalImageSource> src;
    Status s = sqlite::WalImageSource::Make(&main_, main_.bytes.size() / kPs, wal_.get(), scan, &src);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return src;
  }
  static std::vector<uint8_t> Image(sqlite::WalImageSource* src) {
    std::vector<uint8_t> out(src->page_count() * kPs);
    Status s = src->read(0, out.data(), out.size());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  static std::string Fills(const std::vector<uint8_t>& image) {
    std::string s;
    for (size_t i = 0; i < image.size(); i += kPs) s += image[i] ? char(image[i]) : '.';
    return s;
  }

  MemorySource main_;
  std::unique_ptr<MemorySource> wal_;
};

TEST_F(WalImageTest, PagesComeFromTheNewestCommittedFrameElseTheMainFileElseZeros) {
  WalBuilder w(kPs);
  w.Frame(2, 'a');
  w.Frame(6, 'b', 6);  // grows to 6 pages: page 5 was never written anywhere
  w.Frame(2, 'c', 6);
  w.Frame(3, 'x');     // not committed
  auto src = Make(w);
  ASSERT_TRUE(src);
  EXPECT_EQ(src->page_count(), 6u);
  EXPECT_EQ(Fills(Image(src.get())), "0c23.b");
  // Main-file runs are read whole: [0, 1) and [2, 4).
  EXPECT_EQ(main_.reads, 2u);
}

TEST_F(WalImageTest, ACommitThatShrankTheDatabaseCutsTheImage) {
  WalBuilder w(kPs);
  w.Frame(4, 'a', 4);
  w.Frame(1, 'b', 2);
  auto src = Make(w);
  EXPECT_EQ(src->page_count(), 2u);
  EXPECT_EQ(Fills(Image(src.get())), "b1");
  uint8_t buf[kPs];
  Status s = src->read(2 * kPs, buf, kPs);
  EXPECT_TRUE(s.IsIncomplete()) << s.ToString();
  s = src->read(kPs + 1, buf, kPs);
  EXPECT_TRUE(s.IsIncomplete()) << s.ToString();
}

TEST_F(WalImageTest, NoCommitIsTheMainFileAsItIs) {
  WalBuilder w(kPs);
  w.Frame(1, 'a');
  auto src = Make(w);
  EXPECT_EQ(src->page_count(), 4u);
  EXPECT_EQ(Image(src.get()), main_.bytes);
}

TEST_F(WalImageTest, ReadsMayStraddlePagesAndSources) {
  WalBuilder w(kPs);
  w.Frame(2, 'a', 5);
  auto src = Make(w);
  const std::vector<uint8_t> whole = Image(src.get());
  for (uint64_t offset : {uint64_t(0), uint64_t(kPs - 10), uint64_t(2 * kPs - 1), uint64_t(4 * kPs - 3)}) {
    for (size_t len : {size_t(1), size_t(20), size_t(kPs + 7)}) {
      if (offset + len > whole.size()) continue;
      std::vector<uint8_t> part(len);
      ASSERT_TRUE(src->read(offset, part.data(), len).ok());
      EXPECT_EQ(0, memcmp(part.data(), whole.data() + offset, len)) << offset << " " << len;
    }
  }
}

TEST_F(WalImageTest, AFrameOverwrittenSinceTheScanIsAnErrorNotAWrongPage) {
  WalBuilder w(kPs);
  w.Frame(1, 'a', 4);
  w.Frame(3, 'b', 4);
  auto src = Make(w);
  // A restart rewrites frame 2 with the next generation's salts.
  WalBuilder next(kPs, false, w.header().salt1 + 1, 42);
  next.Frame(2, 'z');
  next.Frame(2, 'z', 4);
  memcpy(wal_->bytes.data() + sqlite::WalFrameOffset(2, kPs),
         next.bytes.data() + sqlite::WalFrameOffset(2, kPs), sqlite::kWalFrameHeaderSize + kPs);
  uint8_t buf[kPs];
  EXPECT_TRUE(src->read(0, buf, kPs).ok());
  Status s = src->read(2 * kPs, buf, kPs);
  EXPECT_TRUE(s.IsIncomplete() && Has(s, "WAL frame 2 no longer holds page 3")) << s.ToString();
}

TEST_F(WalImageTest, APageSizeOtherThanTheDatabasesIsRefused) {
  WalBuilder w(1024);
  w.Frame(1, 'a', 1);
  MemorySource wal(0, w.bytes);
  std::unique_ptr<sqlite::WalImageSource> src;
  Status s = sqlite::WalImageSource::Make(&main_, 4, &wal, Scan(w.bytes), &src);
  EXPECT_TRUE(s.IsInvalidArgument() && Has(s, "page size 1024")) << s.ToString();
  EXPECT_FALSE(src);
}

// ---- The wal-index header ----

// A consistent header as SQLite would publish it.
std::vector<uint8_t> IndexHeader(uint32_t max_frame, uint16_t sz_page) {
  std::vector<uint8_t> b(sqlite::kWalIndexHeaderSize, 0);
  PutHost32(&b[sqlite::kWiVersionOffset], 3007000);
  PutHost32(&b[sqlite::kWiChangeOffset], 9);
  b[sqlite::kWiIsInitOffset] = 1;
  PutHost16(&b[sqlite::kWiPageSizeOffset], sz_page);
  PutHost32(&b[sqlite::kWiMaxFrameOffset], max_frame);
  PutHost32(&b[sqlite::kWiDbPagesOffset], 77);
  PutHost32(&b[sqlite::kWiFrameChecksumOffset], 0xaaaa);
  PutHost32(&b[sqlite::kWiFrameChecksumOffset + 4], 0xbbbb);
  EncodeBig32(&b[sqlite::kWiSaltOffset], 0x11223344);  // the WAL header's bytes
  EncodeBig32(&b[sqlite::kWiSaltOffset + 4], 0x55667788);
  ResealWalIndexHeader(b.data());
  PutHost32(&b[sqlite::kWiBackfillOffset], max_frame / 2);
  for (int i = 0; i < sqlite::kWalReadMarks; ++i) PutHost32(&b[sqlite::kWiReadMarkOffset + 4 * i], 100 + i);
  memset(&b[sqlite::kWiLockOffset], 0xee, sqlite::kShmLocks);
  PutHost32(&b[sqlite::kWiBackfillAttemptedOffset], max_frame);
  return b;
}

TEST(WalIndexHeader, DecodesEveryField) {
  const std::vector<uint8_t> b = IndexHeader(12, 1);
  sqlite::WalIndexHeader h;
  Status s = sqlite::ParseWalIndexHeader(b.data(), b.size(), "x-shm", &h);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(h.version, 3007000u);
  EXPECT_EQ(h.change, 9u);
  EXPECT_TRUE(h.initialized);
  EXPECT_FALSE(h.big_endian_checksums);
  EXPECT_EQ(h.page_size, 65536u);  // szPage 1
  EXPECT_EQ(h.max_frame, 12u);
  EXPECT_EQ(h.db_pages, 77u);
  EXPECT_EQ(h.frame_checksum, (sqlite::WalChecksum{0xaaaa, 0xbbbb}));
  EXPECT_EQ(h.salt1, 0x11223344u);
  EXPECT_EQ(h.salt2, 0x55667788u);
  EXPECT_EQ(h.backfilled, 6u);
  EXPECT_EQ(h.read_marks[4], 104u);
  EXPECT_EQ(h.backfill_attempted, 12u);
  ASSERT_TRUE(sqlite::ParseWalIndexHeader(IndexHeader(3, 4096).data(), 136, "x-shm", &h).ok());
  EXPECT_EQ(h.page_size, 4096u);
}

TEST(WalIndexHeader, RefusesATornOrBadHeaderNamingWhy) {
  sqlite::WalIndexHeader h;
  std::vector<uint8_t> b = IndexHeader(12, 4096);
  b[sqlite::kWalIndexHdrSize + sqlite::kWiMaxFrameOffset] ^= 1;  // copy 1 mid-update
  Status s = sqlite::ParseWalIndexHeader(b.data(), b.size(), "x-shm", &h);
  EXPECT_TRUE(s.IsBusy() && Has(s, "two copies differ")) << s.ToString();

  b = IndexHeader(12, 4096);
  b[sqlite::kWiMaxFrameOffset] ^= 1;  // both copies, checksum not resealed
  b[sqlite::kWalIndexHdrSize + sqlite::kWiMaxFrameOffset] ^= 1;
  s = sqlite::ParseWalIndexHeader(b.data(), b.size(), "x-shm", &h);
  EXPECT_TRUE(s.IsCorruption() && Has(s, "checksum mismatch")) << s.ToString();

  b = IndexHeader(12, 4096);
  b[sqlite::kWiIsInitOffset] = 0;
  ResealWalIndexHeader(b.data());
  s = sqlite::ParseWalIndexHeader(b.data(), b.size(), "x-shm", &h);
  EXPECT_TRUE(s.IsCorruption() && Has(s, "isInit is 0")) << s.ToString();

  b = IndexHeader(12, 4096);
  PutHost32(&b[sqlite::kWiVersionOffset], 3021000);
  ResealWalIndexHeader(b.data());
  s = sqlite::ParseWalIndexHeader(b.data(), b.size(), "x-shm", &h);
  EXPECT_TRUE(s.IsNotSupported() && Has(s, "version 3021000")) << s.ToString();

  b = IndexHeader(12, 1000);
  s = sqlite::ParseWalIndexHeader(b.data(), b.size(), "x-shm", &h);
  EXPECT_TRUE(s.IsCorruption() && Has(s, "bad szPage 1000")) << s.ToString();
  // Recovery of a WAL without a commit leaves szPage 0: that is a header.
  EXPECT_TRUE(sqlite::ParseWalIndexHeader(IndexHeader(0, 0).data(), 136, "x-shm", &h).ok());

  s = sqlite::ParseWalIndexHeader(b.data(), 135, "x-shm", &h);
  EXPECT_TRUE(s.IsCorruption() && Has(s, "shorter than 136")) << s.ToString();
}

TEST(WalIndexHeader, CopyTakesEverythingButTheLockBytes) {
  const std::vector<uint8_t> b = IndexHeader(12, 4096);
  alignas(8) uint8_t region[sqlite::kWalIndexHeaderSize];
  memcpy(region, b.data(), sizeof region);
  uint8_t out[sqlite::kWalIndexHeaderSize];
  sqlite::CopyWalIndexHeader(region, out);
  EXPECT_EQ(0, memcmp(out, b.data(), sqlite::kWiLockOffset));
  for (int i = 0; i < sqlite::kShmLocks; ++i) EXPECT_EQ(out[sqlite::kWiLockOffset + i], 0) << i;
  EXPECT_EQ(0, memcmp(out + sqlite::kWiBackfillAttemptedOffset, b.data() + sqlite::kWiBackfillAttemptedOffset,
                      sqlite::kWalIndexHeaderSize - sqlite::kWiBackfillAttemptedOffset));
}

}  // namespace
}  // namespace cowbackup::test
