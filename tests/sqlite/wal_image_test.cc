// The WAL format pieces (backup/wal_format.h, backup/wal_image_source.h)
// against the real SQLite (Debian's libsqlite3, the plain unix VFS; no
// cowbackup code runs inside SQLite here).
//
// A WAL database is built with the library, and at chosen moments its main
// file and -wal file are copied aside (never -shm). The image
// WalImageSource makes of the copy must be byte-identical to the main file
// SQLite itself leaves after opening the same copy (recovery rebuilds the
// wal-index from the -wal file) and checkpointing it. Stages: growth,
// pages rewritten many times, shrinking by incremental vacuum and by
// VACUUM, a rolled-back transaction that spilled frames, a transaction
// still open, a WAL restart that leaves the previous generation's frames
// behind; then damaged WALs (torn, flipped, garbage, empty, the commit
// marker gone, big-endian checksums, an unknown version). Page sizes 512,
// 4096 and 65536. Finally the wal-index header of a live -shm against
// the scan of its -wal.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <random>

#include "backup/db_image.h"
#include "backup/wal_format.h"
#include "backup/wal_image_source.h"
#include "engine/encoding.h"
#include "engine/memory_parts.h"
#include "sqlite/sqlite_test_util.h"
#include "test_util/wal.h"

namespace cowbackup::testing {
namespace {

using Bytes = std::vector<uint8_t>;
using sqlite::WalScan;
using sqlite::WalScanEnd;

// The bytes of a database's main and -wal files at one moment.
struct WalCopy {
  Bytes main;
  Bytes wal;
};

WalCopy Take(const std::string& path) {
  return {ReadFile<Bytes>(path), ReadFile<Bytes>(path + "-wal")};
}

// What SQLite makes of a copy: the main file after recovery and a full
// checkpoint, the WAL's frame count as the checkpoint reported it, and the
// copy's integrity_check.
struct SqliteResult {
  std::string error;  // non-empty if SQLite refused the copy
  Bytes image;
  int64_t log_frames = -1;
  std::string integrity;
};

// PRAGMA wal_checkpoint(mode): its row (busy, log, checkpointed), or the
// error in *error.
struct CheckpointRow {
  int64_t busy = -1, log = -1, checkpointed = -1;
};
CheckpointRow Checkpoint(sqlite3* db, const std::string& mode, std::string* error) {
  CheckpointRow row;
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, ("PRAGMA wal_checkpoint(" + mode + ")").c_str(), -1, &st, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    row.busy = sqlite3_column_int64(st, 0);
    row.log = sqlite3_column_int64(st, 1);
    row.checkpointed = sqlite3_column_int64(st, 2);
    error->clear();
  } else {
    *error = sqlite3_errmsg(db);
  }
  sqlite3_finalize(st);
  return row;
}

SqliteResult SqliteCheckpoint(const WalCopy& copy) {
  TempDir dir("cowbackup-wal-ckpt");
  const std::string path = dir / "c.db";
  WriteFile(path, copy.main);
  WriteFile(path + "-wal", copy.wal);
  SqliteResult r;
  sqlite3* db = Open(path);
  // PASSIVE, with no reader, backfills every committed frame and truncates
  // the main file to the last commit's size; it reports mxFrame as "log".
  // TRUNCATE then empties the WAL (and would report 0 frames).
  const CheckpointRow passive = Checkpoint(db, "PASSIVE", &r.error);
  if (r.error.empty()) {
    r.log_frames = passive.log;
    EXPECT_EQ(passive.busy, 0);
    EXPECT_EQ(passive.checkpointed, passive.log);
    EXPECT_EQ(Checkpoint(db, "TRUNCATE", &r.error).busy, 0);
  }
  if (r.error.empty()) r.integrity = Query(db, "PRAGMA integrity_check", &r.error);
  sqlite3_close(db);
  if (r.error.empty()) r.image = ReadFile<Bytes>(path);
  return r;
}

// What WalImageSource makes of a copy.
struct OurResult {
  Status status;
  WalScan scan;
  Bytes image;
};

OurResult OurImage(const WalCopy& copy) {
  OurResult r;
  sqlite::DbHeader h;
  r.status = sqlite::ParseDbHeader(copy.main.data(), copy.main.size(), "main", &h);
  if (!r.status.ok()) return r;
  test::MemorySource main(h.page_size, copy.main);
  test::MemorySource wal(0, copy.wal);
  r.status = sqlite::ScanWal(wal, copy.wal.size(), &r.scan);
  if (!r.status.ok()) return r;
  std::unique_ptr<sqlite::WalImageSource> src;
  r.status = sqlite::WalImageSource::Make(&main, copy.main.size() / h.page_size, &wal, r.scan, &src);
  if (!r.status.ok()) return r;
  r.image.resize(src->page_count() * h.page_size);
  r.status = src->read(0, r.image.data(), r.image.size());
  return r;
}

// The first page at which two images differ, for messages.
std::string FirstDifference(const Bytes& a, const Bytes& b, uint32_t page_size) {
  if (a.size() != b.size()) {
    return "sizes " + std::to_string(a.size()) + " and " + std::to_string(b.size());
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return "page " + std::to_string(i / page_size + 1) + " byte " + std::to_string(i % page_size);
  }
  return "none";
}

// Checks that our image of `copy` is SQLite's; returns our scan.
WalScan ExpectSameAsSqlite(const WalCopy& copy, uint32_t page_size, const std::string& stage) {
  SCOPED_TRACE(stage);
  const SqliteResult want = SqliteCheckpoint(copy);
  EXPECT_EQ(want.error, "");
  EXPECT_EQ(want.integrity, "ok");
  const OurResult got = OurImage(copy);
  EXPECT_TRUE(got.status.ok()) << got.status.ToString();
  EXPECT_EQ(int64_t(got.scan.max_frame), want.log_frames);
  EXPECT_TRUE(got.image == want.image) << "first difference: "
                                       << FirstDifference(got.image, want.image, page_size);
  return got.scan;
}

class WalImageTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    ps_ = GetParam();
    path_ = dir_ / "w.db";
    db_ = Open(path_);
    ASSERT_EQ(Exec(db_, "PRAGMA page_size=" + std::to_string(ps_) + "; PRAGMA auto_vacuum=INCREMENTAL"), "");
    ASSERT_EQ(Query(db_, "PRAGMA journal_mode=WAL"), "wal");
    ASSERT_EQ(Exec(db_, "PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"), "");
    ASSERT_EQ(QueryInt(db_, "PRAGMA page_size"), int64_t(ps_));
  }
  void TearDown() override { sqlite3_close(db_); }

  // Inserts rows [first, first + n) of `bytes` random bytes in one transaction.
  void Insert(int first, int n, int bytes) {
    ASSERT_EQ(Exec(db_, "WITH RECURSIVE c(i) AS (SELECT " + std::to_string(first) +
                            " UNION ALL SELECT i+1 FROM c WHERE i < " + std::to_string(first + n - 1) +
                            ") INSERT INTO t SELECT i, randomblob(" + std::to_string(bytes) + ") FROM c"),
              "");
  }
  WalScan Check(const std::string& stage) { return ExpectSameAsSqlite(Take(path_), ps_, stage); }
  // A WAL with several commits, pages rewritten, for the damage tests.
  WalCopy SeveralCommits() {
    Insert(1, 40, int(ps_ / 4));
    for (int round = 0; round < 4; ++round) {
      EXPECT_EQ(Exec(db_, "UPDATE t SET v = randomblob(length(v)) WHERE id % 4 = " + std::to_string(round)), "");
    }
    return Take(path_);
  }

  TempDir dir_;
  std::string path_;
  sqlite3* db_ = nullptr;
  uint32_t ps_ = 0;
};

TEST_P(WalImageTest, ImageIsSqlitesCheckpointAtEveryStage) {
  Check("created");
  for (int i = 0; i < 5; ++i) Insert(1 + 20 * i, 20, int(ps_ / 3));
  WalScan scan = Check("five inserts");
  EXPECT_GE(scan.max_frame, 5u);

  // Pages rewritten many times: the newest committed frame must win.
  for (int round = 0; round < 6; ++round) {
    ASSERT_EQ(Exec(db_, "UPDATE t SET v = randomblob(length(v)) WHERE id % 3 = " + std::to_string(round % 3)), "");
  }
  scan = Check("rewrites");
  EXPECT_LT(scan.pages.size(), scan.max_frame) << "no page was rewritten";

  // Growth, with overflow pages.
  const uint32_t before_growth = scan.db_pages;
  Insert(1000, 10, int(2 * ps_));
  scan = Check("growth");
  EXPECT_GT(scan.db_pages, before_growth);

  // Shrinking through incremental vacuum: the commit frame's size drops.
  const uint32_t before_shrink = scan.db_pages;
  ASSERT_EQ(Exec(db_, "DELETE FROM t WHERE id >= 1000; PRAGMA incremental_vacuum"), "");
  scan = Check("incremental vacuum");
  EXPECT_LT(scan.db_pages, before_shrink);

  // A transaction that spilled frames into the WAL and rolled back: valid
  // frames past the last commit.
  ASSERT_EQ(Exec(db_, "PRAGMA cache_size=10; BEGIN"), "");
  Insert(2000, 60, int(ps_ / 2));
  ASSERT_EQ(Exec(db_, "ROLLBACK"), "");
  scan = Check("rolled back after a spill");
  EXPECT_GT(scan.valid_frames, scan.max_frame) << "the transaction did not spill";

  // The same, copied while the transaction is still open.
  ASSERT_EQ(Exec(db_, "BEGIN"), "");
  Insert(3000, 60, int(ps_ / 2));
  scan = Check("transaction open");
  EXPECT_GT(scan.valid_frames, scan.max_frame);
  ASSERT_EQ(Exec(db_, "ROLLBACK; PRAGMA cache_size=-2000"), "");

  // VACUUM in WAL mode rewrites the database through the WAL and shrinks it.
  const uint32_t before_vacuum = scan.db_pages;
  ASSERT_EQ(Exec(db_, "DELETE FROM t WHERE id % 2 = 0; VACUUM"), "");
  scan = Check("vacuum");
  EXPECT_LT(scan.db_pages, before_vacuum);

  // A WAL restart: a full checkpoint, then a small transaction starts the
  // WAL again from frame 1 with new salts; the old generation's frames
  // remain after it and must not count.
  const WalScan old_generation = scan;
  std::string error;
  ASSERT_EQ(Checkpoint(db_, "PASSIVE", &error).busy, 0) << error;
  ASSERT_EQ(Exec(db_, "UPDATE t SET v = randomblob(length(v)) WHERE id = 1"), "");
  WalCopy copy = Take(path_);
  scan = ExpectSameAsSqlite(copy, ps_, "restarted");
  EXPECT_EQ(scan.header.checkpoint_seq, old_generation.header.checkpoint_seq + 1);
  EXPECT_EQ(scan.header.salt1, old_generation.header.salt1 + 1);
  EXPECT_LT(scan.max_frame, old_generation.max_frame);
  EXPECT_EQ(scan.end, WalScanEnd::kSaltMismatch) << sqlite::WalScanEndName(scan.end);
  EXPECT_EQ(scan.end_frame, scan.max_frame + 1);

  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Exec(db_, "UPDATE t SET v = randomblob(length(v)) WHERE id % 5 = " + std::to_string(i)), "");
  }
  scan = Check("after the restart");
  EXPECT_EQ(scan.header.salt1, old_generation.header.salt1 + 1);

  // The main file now holds the checkpointed database: a commit that
  // shrinks below it must cut the image (the checkpoint truncates), one
  // that grows past it must extend it.
  ASSERT_EQ(Exec(db_, "DELETE FROM t WHERE id > 20; PRAGMA incremental_vacuum"), "");
  copy = Take(path_);
  scan = ExpectSameAsSqlite(copy, ps_, "shrunk below the main file");
  EXPECT_LT(scan.db_pages, copy.main.size() / ps_);
  Insert(5000, 10, int(3 * ps_));
  copy = Take(path_);
  scan = ExpectSameAsSqlite(copy, ps_, "grown past the main file");
  EXPECT_GT(scan.db_pages, copy.main.size() / ps_);
}

TEST_P(WalImageTest, DamagedWalsAgreeWithSqlite) {
  const WalCopy base = SeveralCommits();
  const WalScan full = ExpectSameAsSqlite(base, ps_, "undamaged");
  ASSERT_GE(full.max_frame, 4u);
  ASSERT_EQ(full.valid_frames, full.max_frame);
  const size_t frame_size = sqlite::kWalFrameHeaderSize + ps_;

  // A torn last frame: the last transaction is lost.
  for (size_t cut : {size_t(1), frame_size / 2, frame_size - 1}) {
    WalCopy c = base;
    c.wal.resize(c.wal.size() - cut);
    const WalScan scan = ExpectSameAsSqlite(c, ps_, "torn by " + std::to_string(cut));
    EXPECT_EQ(scan.end, WalScanEnd::kTornFrame);
    EXPECT_LT(scan.max_frame, full.max_frame);
  }

  // A flipped byte in a frame's page, or in its salt: that frame and all
  // after it are not committed.
  const uint32_t k = full.max_frame / 2 + 1;
  for (size_t at : {sqlite::kWalFrameHeaderSize + 7, size_t(sqlite::kWalFrameSalt1Offset)}) {
    WalCopy c = base;
    c.wal[sqlite::WalFrameOffset(k, ps_) + at] ^= 0x20;
    const WalScan scan = ExpectSameAsSqlite(c, ps_, "flipped at " + std::to_string(at));
    EXPECT_EQ(scan.end_frame, k);
    EXPECT_EQ(scan.end, at == sqlite::kWalFrameSalt1Offset ? WalScanEnd::kSaltMismatch
                                                         : WalScanEnd::kChecksumMismatch);
    EXPECT_LT(scan.max_frame, k);
  }

  // Garbage and an empty file: the main file as it is.
  std::mt19937 rng(11);
  for (Bytes wal : {Bytes(base.wal.size()), Bytes{}}) {
    for (auto& b : wal) b = uint8_t(rng());
    WalCopy c{base.main, wal};
    const WalScan scan = ExpectSameAsSqlite(c, ps_, "garbage or empty, " + std::to_string(wal.size()));
    EXPECT_FALSE(scan.header_valid);
    EXPECT_EQ(OurImage(c).image, base.main);
  }

  // The last commit frame's marker gone (re-sealed): the frames of the
  // last transaction are valid but not committed.
  {
    WalCopy c = base;
    EncodeBig32(c.wal.data() + sqlite::WalFrameOffset(full.max_frame, ps_) + sqlite::kWalFrameDbPagesOffset, 0);
    test::ResealWal(&c.wal, false, full.valid_frames);
    const WalScan scan = ExpectSameAsSqlite(c, ps_, "last commit marker cleared");
    EXPECT_EQ(scan.valid_frames, full.valid_frames);
    EXPECT_LT(scan.max_frame, full.max_frame);
  }

  // Big-endian checksums (magic 0x377f0683): SQLite reads the re-sealed
  // file as the same WAL, so our big-endian checksum is SQLite's.
  {
    WalCopy c = base;
    test::ResealWal(&c.wal, true, full.valid_frames);
    const WalScan scan = ExpectSameAsSqlite(c, ps_, "big-endian checksums");
    EXPECT_TRUE(scan.header.big_endian_checksums());
    EXPECT_EQ(scan.max_frame, full.max_frame);
    EXPECT_EQ(OurImage(c).image, OurImage(base).image);
  }

  // A format version SQLite 3.40 does not know: it refuses the database;
  // so does the scan.
  {
    WalCopy c = base;
    EncodeBig32(c.wal.data() + sqlite::kWalVersionOffset, 3021000);
    test::ResealWal(&c.wal, false, full.valid_frames);
    EXPECT_NE(SqliteCheckpoint(c).error, "");
    const OurResult got = OurImage(c);
    EXPECT_TRUE(got.status.IsNotSupported()) << got.status.ToString();
  }
}

// The wal-index header of a live -shm (the unix VFS maps the file, so its
// bytes are the shared memory) says what the scan of the -wal says.
TEST_P(WalImageTest, LiveWalIndexHeaderAgreesWithTheScan) {
  SeveralCommits();
  auto check = [&](const std::string& stage) {
    SCOPED_TRACE(stage);
    const Bytes shm = ReadFile<Bytes>(path_ + "-shm");
    ASSERT_GE(shm.size(), sqlite::kWalIndexHeaderSize);
    sqlite::WalIndexHeader h;
    Status s = sqlite::ParseWalIndexHeader(shm.data(), shm.size(), "-shm", &h);
    ASSERT_TRUE(s.ok()) << s.ToString();
    // Through a mapping of our own, as the live code will read it.
    const int fd = ::open((path_ + "-shm").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    void* map = ::mmap(nullptr, sqlite::kWalIndexHeaderSize, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    ASSERT_NE(map, MAP_FAILED);
    uint8_t copied[sqlite::kWalIndexHeaderSize];
    sqlite::CopyWalIndexHeader(map, copied);
    ::munmap(map, sqlite::kWalIndexHeaderSize);
    sqlite::WalIndexHeader hm;
    ASSERT_TRUE(sqlite::ParseWalIndexHeader(copied, sizeof copied, "-shm", &hm).ok());
    EXPECT_EQ(hm.max_frame, h.max_frame);
    EXPECT_EQ(hm.backfilled, h.backfilled);

    const Bytes wal = ReadFile<Bytes>(path_ + "-wal");
    WalScan scan;
    ASSERT_TRUE(sqlite::ScanWal(wal.data(), wal.size(), &scan).ok());
    EXPECT_EQ(h.max_frame, scan.max_frame);
    EXPECT_EQ(h.db_pages, scan.db_pages);
    EXPECT_EQ(h.page_size, ps_);
    EXPECT_EQ(h.salt1, scan.header.salt1);
    EXPECT_EQ(h.salt2, scan.header.salt2);
    EXPECT_EQ(h.frame_checksum, scan.max_frame_checksum);
    EXPECT_EQ(h.big_endian_checksums, scan.header.big_endian_checksums());

    // A copy caught mid-update, or one whose checksum fails, is refused.
    Bytes torn = shm;
    test::PutHost32(&torn[sqlite::kWalIndexHdrSize + sqlite::kWiMaxFrameOffset], h.max_frame + 1);
    EXPECT_TRUE(sqlite::ParseWalIndexHeader(torn.data(), torn.size(), "-shm", &h).IsBusy());
    test::PutHost32(&torn[sqlite::kWiMaxFrameOffset], h.max_frame + 1);
    EXPECT_TRUE(sqlite::ParseWalIndexHeader(torn.data(), torn.size(), "-shm", &h).IsCorruption());
  };
  check("after commits");
  sqlite::WalIndexHeader h;
  Bytes shm = ReadFile<Bytes>(path_ + "-shm");
  ASSERT_TRUE(sqlite::ParseWalIndexHeader(shm.data(), shm.size(), "-shm", &h).ok());
  EXPECT_EQ(h.backfilled, 0u);
  const uint32_t salt1 = h.salt1;

  std::string error;
  ASSERT_EQ(Checkpoint(db_, "PASSIVE", &error).busy, 0) << error;
  shm = ReadFile<Bytes>(path_ + "-shm");
  ASSERT_TRUE(sqlite::ParseWalIndexHeader(shm.data(), shm.size(), "-shm", &h).ok());
  EXPECT_GT(h.max_frame, 0u);
  EXPECT_EQ(h.backfilled, h.max_frame);

  ASSERT_EQ(Exec(db_, "UPDATE t SET v = randomblob(length(v)) WHERE id = 1"), "");  // restarts
  check("after a restart");
  shm = ReadFile<Bytes>(path_ + "-shm");
  ASSERT_TRUE(sqlite::ParseWalIndexHeader(shm.data(), shm.size(), "-shm", &h).ok());
  EXPECT_EQ(h.salt1, salt1 + 1);
  EXPECT_EQ(h.backfilled, 0u);
}

// The live backup takes T0's committed frames from the wal-index's
// page-number arrays (FileState::ReadWalFramePages): they must give what
// recovery gives from the -wal file, across the region boundaries (frames
// 4062 and 4063, 8158 and 8159).
TEST_P(WalImageTest, WalIndexPageNumbersGiveTheScan) {
  if (ps_ > 4096) GTEST_SKIP() << "8200 frames of 64 KiB: too slow for the suite";
  int next = 1;
  auto compare = [&](const std::string& stage) {
    SCOPED_TRACE(stage);
    const Bytes shm = ReadFile<Bytes>(path_ + "-shm");
    sqlite::WalIndexHeader h;
    ASSERT_TRUE(sqlite::ParseWalIndexHeader(shm.data(), shm.size(), "-shm", &h).ok());
    std::vector<uint32_t> frame_pages(h.max_frame);
    for (uint32_t f = 1; f <= h.max_frame; f++) {
      const sqlite::WalIndexSlot slot = sqlite::WalIndexFrameSlot(f);
      const size_t at = size_t(slot.region) * sqlite::kWalIndexRegionSize + slot.offset;
      ASSERT_LE(at + 4, shm.size()) << "frame " << f;
      memcpy(&frame_pages[f - 1], &shm[at], 4);  // host order, like the rest of -shm
    }
    const WalScan index = sqlite::WalScanFromIndex(h, frame_pages);
    const Bytes wal = ReadFile<Bytes>(path_ + "-wal");
    WalScan scan;
    ASSERT_TRUE(sqlite::ScanWal(wal.data(), wal.size(), &scan, h.max_frame).ok());
    EXPECT_EQ(index.max_frame, scan.max_frame);
    EXPECT_EQ(index.db_pages, scan.db_pages);
    EXPECT_EQ(index.header.salt1, scan.header.salt1);
    EXPECT_EQ(index.header.salt2, scan.header.salt2);
    ASSERT_EQ(index.pages.size(), scan.pages.size());
    for (size_t i = 0; i < scan.pages.size(); i++) {
      ASSERT_EQ(index.pages[i].pgno, scan.pages[i].pgno) << i;
      ASSERT_EQ(index.pages[i].frame, scan.pages[i].frame) << "page " << scan.pages[i].pgno;
    }
  };
  // Many small transactions: each commit frame rewrites a few pages.
  ASSERT_EQ(Exec(db_, "PRAGMA synchronous=OFF"), "");
  while (true) {
    Insert(next, 50, 40);
    next += 50;
    const Bytes shm = ReadFile<Bytes>(path_ + "-shm");
    sqlite::WalIndexHeader h;
    ASSERT_TRUE(sqlite::ParseWalIndexHeader(shm.data(), shm.size(), "-shm", &h).ok());
    if (h.max_frame > 2 * sqlite::kWalIndexFramesPerRegion + sqlite::kWalIndexFramesInRegion0 + 10) break;
  }
  compare("three regions");
  std::string error;
  ASSERT_EQ(Checkpoint(db_, "PASSIVE", &error).busy, 0) << error;
  ASSERT_EQ(Exec(db_, "UPDATE t SET v = randomblob(40) WHERE id % 7 = 0"), "");  // restarts
  compare("after a restart, over the old generation's frames");
}

INSTANTIATE_TEST_SUITE_P(PageSizes, WalImageTest, ::testing::Values(512u, 4096u, 65536u),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return "page" + std::to_string(info.param);
                         });

}  // namespace
}  // namespace cowbackup::testing
