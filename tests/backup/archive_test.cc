// The archive format end to end: the spec's tables against format.h, round
// trips through files and pipes, every single-byte flip and every
// truncation detected, errors that name offset and page, nothing left
// behind by a failed restore, and BackupJob's publication rules.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "image_kind.h"
#include "backup/archive_reader.h"
#include "backup/archive_writer.h"
#include "backup/backup_job.h"
#include "backup/format.h"
#include "backup/memory_output.h"
#include "backup/output.h"
#include "backup/restore.h"
#include "engine/checksum.h"
#include "engine/encoding.h"
#include "engine/file_source.h"
#include "engine/posix_file.h"
#include "test_util/files.h"

namespace cowbackup::test {
namespace {


std::vector<uint8_t> Pages(uint32_t page_size, uint64_t count, uint64_t seed) {
  std::vector<uint8_t> v(page_size * count);
  std::mt19937_64 rng(seed);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

// Pages whose first two are LMDB meta pages naming `page_size`, as
// restore requires of an LMDB archive's image (backup/db_image.h).
std::vector<uint8_t> LmdbPages(uint32_t page_size, uint64_t count, uint64_t seed) {
  std::vector<uint8_t> v = Pages(page_size, count, seed);
  for (uint64_t m = 0; m < 2; m++) {
    test::StampImageKind(format::SourceKind::kLmdb, page_size, m, v.data() + m * page_size);
  }
  return v;
}

// A pid no process has: a reaped child's.
pid_t DeadPid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  return pid;
}

// An archive of `image`, optionally with overlays (pgno -> new content
// written as page, the original as overlay, as kOverlayAtEnd does).
std::vector<uint8_t> MakeArchive(const std::vector<uint8_t>& image, uint32_t page_size,
                                 const std::string& metadata = "",
                                 format::SourceKind kind = format::SourceKind::kRaw,
                                 const std::vector<uint64_t>& overlay_pages = {}) {
  std::vector<uint8_t> bytes;
  format::Header h;
  h.source_kind = kind;
  h.page_size = page_size;
  h.page_count = image.size() / page_size;
  h.created_unix_us = 1700000000000000;
  h.metadata = metadata;
  ArchiveWriter w(h, std::make_unique<MemoryOutput>(&bytes));
  std::vector<uint8_t> live = image;
  for (uint64_t p : overlay_pages) live[p * page_size] ^= 0xff;
  EXPECT_TRUE(w.put_run(0, live.data(), h.page_count).ok());
  for (uint64_t p : overlay_pages) EXPECT_TRUE(w.put_overlay(p, image.data() + p * page_size).ok());
  Progress pr;
  EXPECT_TRUE(w.finish(pr).ok());
  return bytes;
}

// Re-seals a record's checksum after a test edits it, so the checks behind
// the CRC are reached (FixChecksum in log_test.cc).
void FixRecordChecksum(std::vector<uint8_t>* a, size_t record_offset, uint32_t payload_len) {
  uint8_t* rec = a->data() + record_offset;
  EncodeFixed64(rec + format::kRecordHeaderSize + payload_len,
                format::RecordChecksum(rec, rec + format::kRecordHeaderSize, payload_len));
}
void FixHeaderChecksum(std::vector<uint8_t>* a) {
  const uint32_t meta_len = DecodeFixed32(a->data() + format::kOffMetaLen);
  const size_t at = format::kHeaderFixedSize + meta_len;
  EncodeFixed64(a->data() + at, Checksum::Of(a->data(), at));
}

class ArchiveTest : public ::testing::Test {
 protected:
  Status Verify(const std::vector<uint8_t>& bytes, ArchiveReport* report = nullptr) {
    WriteFile(path_, bytes);
    return VerifyArchive(path_, report);
  }
  TempDir dir_;
  std::string path_ = dir_ / "a.cbk";
};

// ---- AtomicFile: direct I/O staging ------------------------------------------

// Random appends and pwrites (runs that continue, jumps back for overlays,
// offsets and lengths off the block grid, some larger than a chunk) give
// the same file through the O_DIRECT staging, through the page cache, and
// when direct I/O is turned off half way.
TEST(AtomicFileTest, DirectStagingWritesExactlyWhatWasWritten) {
  for (int mode = 0; mode < 3; mode++) {
    SCOPED_TRACE("mode " + std::to_string(mode));
    TempDir dir;
    const std::string dest = dir / "out";
    std::unique_ptr<AtomicFile> f;
    ASSERT_TRUE(AtomicFile::Create(dest, false, &f).ok());
    if (mode == 0) {
      EXPECT_TRUE(f->direct()) << "this filesystem has O_DIRECT; the test expects it";
    }
    if (mode == 1) f->DisableDirect();
    std::mt19937_64 rng(42 + mode);
    std::vector<uint8_t> model;
    uint64_t append_at = 0, next = 0;
    for (int op = 0; op < 400; op++) {
      if (mode == 2 && op == 200) f->DisableDirect();
      // Whole aligned blocks from an aligned buffer (an engine segment, an
      // archive block) take the no-copy path.
      const bool blocks = rng() % 4 == 0;
      size_t len = rng() % 8 == 0 ? 1 + rng() % (3 * AtomicFile::kDirectChunk) : 1 + rng() % 9000;
      if (blocks) len = (len / kIoAlign + 1) * kIoAlign;
      IoBuffer data(len);
      for (auto& b : data) b = uint8_t(rng());
      uint64_t at;
      if (blocks || rng() % 4 == 0) {
        at = model.empty() ? 0 : rng() % model.size();  // back over earlier bytes
        if (blocks) at = at / kIoAlign * kIoAlign;
        ASSERT_TRUE(f->pwrite(data.data(), len, at).ok());
      } else if (rng() % 2 == 0) {
        at = next;  // continues the last write
        ASSERT_TRUE(f->pwrite(data.data(), len, at).ok());
      } else {
        at = append_at;
        ASSERT_TRUE(f->append(data.data(), len).ok());
        append_at += len;
      }
      next = at + len;
      if (model.size() < next) model.resize(next);
      std::copy(data.begin(), data.end(), model.begin() + long(at));
    }
    ASSERT_TRUE(f->commit().ok());
    EXPECT_TRUE(ReadFile<Bytes>(dest) == model) << "the file differs from what was written";
  }
}

// Overwriting keeps the replaced file under a temporary name and shrinks it
// in steps before removing it. Another hard link to it, or the target of a
// symlink at the destination, must come through untouched.
TEST(AtomicFileTest, OverwriteRemovesTheOldCopyButNeverAnotherNameOfIt) {
  TempDir dir;
  const std::vector<uint8_t> old_bytes(3 * AtomicFile::kTrimStep / 2, 0xab);
  const std::vector<uint8_t> new_bytes(5000, 0xcd);
  auto overwrite = [&](const std::string& dest) {
    std::unique_ptr<AtomicFile> f;
    ASSERT_TRUE(AtomicFile::Create(dest, true, &f).ok());
    ASSERT_TRUE(f->append(new_bytes.data(), new_bytes.size()).ok());
    ASSERT_TRUE(f->commit().ok());
    EXPECT_TRUE(ReadFile<Bytes>(dest) == new_bytes);
  };
  // Sole name: replaced and gone, nothing left beside it.
  WriteFile(dir / "a", old_bytes);
  overwrite(dir / "a");
  EXPECT_EQ(dir.list(), std::vector<std::string>{"a"});
  // A second hard link keeps the old bytes whole.
  WriteFile(dir / "b", old_bytes);
  ASSERT_EQ(::link((dir / "b").c_str(), (dir / "b.link").c_str()), 0);
  overwrite(dir / "b");
  EXPECT_TRUE(ReadFile<Bytes>(dir / "b.link") == old_bytes) << "another name of the old file was cut";
  // A symlink at the destination is refused, not replaced nor followed:
  // cowbackup replaces only regular files (README, promise 5).
  WriteFile(dir / "target", old_bytes);
  ASSERT_EQ(::symlink((dir / "target").c_str(), (dir / "c").c_str()), 0);
  std::unique_ptr<AtomicFile> f;
  Status s = AtomicFile::Create(dir / "c", true, &f);
  EXPECT_NE(s.ToString().find("symbolic link"), std::string::npos) << s.ToString();
  EXPECT_TRUE(ReadFile<Bytes>(dir / "target") == old_bytes) << "the symlink's target was cut";
  struct stat lst;
  ASSERT_EQ(::lstat((dir / "c").c_str(), &lst), 0);
  EXPECT_TRUE(S_ISLNK(lst.st_mode));
  // A reader of the old copy (an open descriptor, no name left) keeps it
  // whole: the old file is shrunk only when nobody else has it open.
  WriteFile(dir / "d", old_bytes);
  const int reader = ::open((dir / "d").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  overwrite(dir / "d");
  struct stat rst;
  ASSERT_EQ(::fstat(reader, &rst), 0);
  EXPECT_EQ(uint64_t(rst.st_size), old_bytes.size()) << "a reader's copy was cut";
  ::close(reader);
  auto names = dir.list();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "b.link", "c", "d", "target"}));
}

// ---- The spec and the header agree -----------------------------------------

std::map<std::string, std::pair<uint64_t, std::string>> SpecTable(const std::string& heading) {
  const char* src = getenv("COWBACKUP_SOURCE_DIR");
  std::ifstream in(std::string(src ? src : ".") + "/docs/FORMAT.md");
  std::map<std::string, std::pair<uint64_t, std::string>> rows;
  std::string line;
  bool in_section = false;
  const std::regex row(R"(^\| (\d+) \| (\w+|\d+) \| (\w+) \|)");
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) in_section = line == "## " + heading;
    std::smatch m;
    if (in_section && std::regex_search(line, m, row)) {
      rows[m[3]] = {std::stoull(m[1]), m[2]};
    }
  }
  return rows;
}

TEST(FormatSpec, HeaderTableMatchesFormatH) {
  auto t = SpecTable("Header");
  ASSERT_GE(t.size(), 10u) << "docs/FORMAT.md header table not found";
  EXPECT_EQ(t["magic"].first, format::kOffMagic);
  EXPECT_EQ(t["format_version"].first, format::kOffVersion);
  EXPECT_EQ(t["header_size"].first, format::kOffHeaderSize);
  EXPECT_EQ(t["source_kind"].first, format::kOffSourceKind);
  EXPECT_EQ(t["page_size"].first, format::kOffPageSize);
  EXPECT_EQ(t["page_count"].first, format::kOffPageCount);
  EXPECT_EQ(t["archive_flags"].first, format::kOffArchiveFlags);
  EXPECT_EQ(t["meta_len"].first, format::kOffMetaLen);
  EXPECT_EQ(t["created_unix_us"].first, format::kOffCreated);
  EXPECT_EQ(t["reserved"].first, format::kOffReserved);
  EXPECT_EQ(t["metadata"].first, format::kOffMeta);
  EXPECT_EQ(t["page_count"].second, "8");
}

TEST(FormatSpec, RecordAndTrailerTablesMatchFormatH) {
  auto r = SpecTable("Records");
  ASSERT_GE(r.size(), 5u);
  EXPECT_EQ(r["type"].first, format::kOffType);
  EXPECT_EQ(r["flags"].first, format::kOffFlags);
  EXPECT_EQ(r["payload_len"].first, format::kOffPayloadLen);
  EXPECT_EQ(r["pgno"].first, format::kOffPgno);
  EXPECT_EQ(r["page_records"].first, format::kOffPageRecords);
  EXPECT_EQ(r["overlay_records"].first, format::kOffOverlayRecords);
  EXPECT_EQ(r["preserved_pages"].first, format::kOffPreserved);
  EXPECT_EQ(r["records_end"].first, format::kOffRecordsEnd);
  EXPECT_EQ(r["digest"].first, format::kOffDigest);
  EXPECT_EQ(r["finished_unix_us"].first, format::kOffFinished);
}

TEST(FormatSpec, WorkedExampleHasTheDocumentedLayout) {
  auto bytes = MakeArchive(Pages(512, 2, 1), 512);
  ASSERT_EQ(bytes.size(), 1232u);
  EXPECT_EQ(DecodeFixed32(bytes.data() + format::kOffHeaderSize), 64u);
  EXPECT_EQ(bytes[64], 1);  // page record
  EXPECT_EQ(DecodeFixed64(bytes.data() + 64 + 8), 0u);
  EXPECT_EQ(DecodeFixed64(bytes.data() + 608 + 8), 1u);
  EXPECT_EQ(bytes[1152], 0x7f);  // trailer
  EXPECT_EQ(DecodeFixed64(bytes.data() + 1152 + 16 + format::kOffRecordsEnd), 1152u);
}

// ---- Round trips ---------------------------------------------------------------

TEST_F(ArchiveTest, RoundTripRestoresTheImage) {
  const auto image = Pages(4096, 37, 2);
  auto bytes = MakeArchive(image, 4096, format::MetaLine("source_path", "/x/y.db"));
  ArchiveReport report;
  ASSERT_TRUE(Verify(bytes, &report).ok());
  EXPECT_TRUE(report.complete);
  EXPECT_EQ(report.header.page_count, 37u);
  EXPECT_EQ(report.header.meta("source_path"), "/x/y.db");
  EXPECT_EQ(report.trailer.page_records, 37u);
  ASSERT_TRUE(RestoreArchive(path_, dir_ / "out.db", false).ok());
  EXPECT_EQ(ReadFile<Bytes>(dir_ / "out.db"), image);
  struct stat st;
  ASSERT_EQ(stat((dir_ / "out.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ArchiveTest, OverlaysReplaceEarlierPages) {
  const auto image = Pages(512, 9, 3);
  auto bytes = MakeArchive(image, 512, "", format::SourceKind::kRaw, {0, 4, 8});
  ArchiveReport report;
  ASSERT_TRUE(Verify(bytes, &report).ok());
  EXPECT_EQ(report.trailer.overlay_records, 3u);
  ASSERT_TRUE(RestoreArchive(path_, dir_ / "out.db", false).ok());
  EXPECT_EQ(ReadFile<Bytes>(dir_ / "out.db"), image);
}

TEST_F(ArchiveTest, LmdbArchiveRestoresToADirectoryWithDataMdb) {
  const auto image = LmdbPages(4096, 5, 4);
  WriteFile(path_, MakeArchive(image, 4096, "", format::SourceKind::kLmdb));
  ASSERT_TRUE(RestoreArchive(path_, dir_ / "env", false).ok());
  EXPECT_EQ(ReadFile<Bytes>(dir_ / "env/data.mdb"), image);
  // Existing output: refused without force, replaced with it.
  Status s = RestoreArchive(path_, dir_ / "env", false);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  ASSERT_TRUE(RestoreArchive(path_, dir_ / "env", true).ok());
  EXPECT_EQ(ReadFile<Bytes>(dir_ / "env/data.mdb"), image);
  EXPECT_EQ(dir_.list().size(), 2u);  // a.cbk and env, no temporaries
}

// A restore killed mid-way leaves its temporary (a file, or for LMDB a
// directory); the next restore to the same OUT removes it, and never one
// whose owner still runs.
TEST_F(ArchiveTest, RestoreRemovesWhatAKilledRestoreLeft) {
  const std::string dead = std::to_string(DeadPid());
  const std::string live = std::to_string(getppid());
  const auto image = LmdbPages(4096, 5, 4);
  const std::string lmdb_archive = dir_ / "env.cbk";
  WriteFile(path_, MakeArchive(image, 4096));
  WriteFile(lmdb_archive, MakeArchive(image, 4096, "", format::SourceKind::kLmdb));
  const std::string out = dir_ / "out.db", env = dir_ / "env";
  const std::string stale_file = out + kTempInfix + dead + "-0";
  const std::string live_file = out + kTempInfix + live + "-0";
  const std::string stale_env = env + kTempInfix + dead + "-d0";
  const std::string stale_old_env = env + kTempInfix + dead + "-old";
  WriteFile(stale_file, {1});
  WriteFile(live_file, {1});
  for (const std::string& d : {stale_env, stale_old_env}) {
    ASSERT_EQ(mkdir(d.c_str(), 0700), 0);
    WriteFile(d + "/data.mdb", image);
  }
  ASSERT_TRUE(RestoreArchive(path_, out, false).ok());
  ASSERT_TRUE(RestoreArchive(lmdb_archive, env, false).ok());
  for (const std::string& p : {stale_file, stale_env, stale_old_env}) EXPECT_FALSE(PathExists(p)) << p;
  EXPECT_TRUE(PathExists(live_file));
  EXPECT_EQ(ReadFile<Bytes>(env + "/data.mdb"), image);
}

TEST_F(ArchiveTest, StreamsThroughAPipe) {
  const auto image = Pages(1024, 300, 5);  // > pipe buffer: reader and writer interleave
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::thread writer([&] {
    format::Header h;
    h.page_size = 1024;
    h.page_count = 300;
    ArchiveWriter w(h, std::make_unique<StreamOutput>(fds[1], "pipe"));
    EXPECT_TRUE(w.put_run(0, image.data(), 300).ok());
    EXPECT_TRUE(w.finish(Progress{}).ok());
    close(fds[1]);
  });
  ArchiveReader reader(fds[0], "pipe", true);
  ASSERT_TRUE(reader.ReadHeader().ok());
  std::vector<uint8_t> out(image.size());
  for (;;) {
    ArchiveReader::Record rec;
    bool done = false;
    Status s = reader.Next(&rec, &done);
    ASSERT_TRUE(s.ok()) << s.ToString();
    if (done) break;
    memcpy(out.data() + rec.pgno * 1024, rec.payload, rec.payload_len);
  }
  writer.join();
  EXPECT_EQ(out, image);
}

// ---- Damage ----------------------------------------------------------------------

TEST_F(ArchiveTest, EverySingleByteFlipIsDetected) {
  const auto good = MakeArchive(Pages(512, 3, 6), 512, format::MetaLine("k", "v"),
                                format::SourceKind::kRaw, {1});
  ASSERT_TRUE(Verify(good).ok());
  for (size_t i = 0; i < good.size(); i++) {
    for (uint8_t mask : {0x01, 0x80}) {
      auto bad = good;
      bad[i] ^= mask;
      Status s = Verify(bad);
      ASSERT_FALSE(s.ok()) << "flip of bit mask " << int(mask) << " at offset " << i << " not detected";
    }
  }
}

TEST_F(ArchiveTest, EveryTruncationIsIncomplete) {
  const auto good = MakeArchive(Pages(512, 3, 7), 512);
  for (size_t len = 0; len < good.size(); len++) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + len);
    Status s = Verify(cut);
    ASSERT_FALSE(s.ok()) << "truncation at " << len << " not detected";
    if (len >= 8) {
      ASSERT_TRUE(s.IsIncomplete()) << "truncation at " << len << ": " << s.ToString();
    }
  }
}

TEST_F(ArchiveTest, TruncationAtARecordBoundaryNamesTheOffset) {
  auto good = MakeArchive(Pages(512, 3, 8), 512);
  // Keep the header and two records; point the file-size check away by
  // streaming through a pipe-like read: verify a file of exactly that size.
  const size_t boundary = 64 + 2 * 544;
  std::vector<uint8_t> cut(good.begin(), good.begin() + boundary);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], cut.data(), cut.size()), ssize_t(cut.size()));
  close(fds[1]);
  ArchiveReader reader(fds[0], "pipe", true);
  ASSERT_TRUE(reader.ReadHeader().ok());
  Status s;
  for (;;) {
    ArchiveReader::Record rec;
    bool done = false;
    s = reader.Next(&rec, &done);
    if (!s.ok() || done) break;
  }
  EXPECT_TRUE(s.IsIncomplete()) << s.ToString();
  EXPECT_NE(s.ToString().find("ends before its trailer"), std::string::npos) << s.ToString();
  EXPECT_NE(s.ToString().find("offset 1152"), std::string::npos) << s.ToString();
}

TEST_F(ArchiveTest, BadChecksumNamesOffsetAndPage) {
  auto bad = MakeArchive(Pages(512, 3, 9), 512);
  bad[608 + 16 + 100] ^= 0x40;  // payload of page 1
  Status s = Verify(bad);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.ToString().find("bad record checksum"), std::string::npos) << s.ToString();
  EXPECT_NE(s.ToString().find("offset 608, page 1"), std::string::npos) << s.ToString();
}

TEST_F(ArchiveTest, FutureVersionIsRefusedByName) {
  auto a = MakeArchive(Pages(512, 1, 10), 512);
  EncodeFixed32(a.data() + format::kOffVersion, 2);
  FixHeaderChecksum(&a);
  Status s = Verify(a);
  EXPECT_TRUE(s.IsNotSupported()) << s.ToString();
  EXPECT_NE(s.ToString().find("format_version 2"), std::string::npos) << s.ToString();
}

TEST_F(ArchiveTest, UnknownRecordFlagIsRefusedByName) {
  auto a = MakeArchive(Pages(512, 2, 11), 512);
  a[64 + format::kOffFlags] = format::kFlagCompressed;
  FixRecordChecksum(&a, 64, 512);
  Status s = Verify(a);
  EXPECT_TRUE(s.IsNotSupported()) << s.ToString();
  EXPECT_NE(s.ToString().find("compressed"), std::string::npos) << s.ToString();
  a[64 + format::kOffFlags] = format::kFlagEncrypted;
  FixRecordChecksum(&a, 64, 512);
  s = Verify(a);
  EXPECT_NE(s.ToString().find("encrypted"), std::string::npos) << s.ToString();
}

TEST_F(ArchiveTest, ResealedDuplicatePageIsCorrupt) {
  auto a = MakeArchive(Pages(512, 2, 12), 512);
  EncodeFixed64(a.data() + 608 + format::kOffPgno, 0);  // page 1 claims to be page 0
  EncodeFixed64(a.data() + 608 + 16 + 512 + 8, 0);
  FixRecordChecksum(&a, 608, 512);
  Status s = Verify(a);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.ToString().find("page stored twice"), std::string::npos) << s.ToString();
}

TEST_F(ArchiveTest, HugeLengthFieldsAreBoundedNotAllocated) {
  auto a = MakeArchive(Pages(512, 2, 13), 512);
  // A resealed header claiming 2^40 pages: the file cannot hold them.
  auto b = a;
  EncodeFixed64(b.data() + format::kOffPageCount, uint64_t{1} << 40);
  FixHeaderChecksum(&b);
  Status s = Verify(b);
  EXPECT_TRUE(s.IsIncomplete()) << s.ToString();
  // A record claiming a 4 GiB payload is refused before reading it.
  auto c = a;
  EncodeFixed32(c.data() + 64 + format::kOffPayloadLen, 0xffffffff);
  s = Verify(c);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.ToString().find("exceeds page_size"), std::string::npos);
}

TEST_F(ArchiveTest, FailedRestoreLeavesNothingBehind) {
  auto bad = MakeArchive(Pages(512, 4, 14), 512);
  bad[bad.size() - 30] ^= 1;  // the trailer
  WriteFile(path_, bad);
  Status s = RestoreArchive(path_, dir_ / "out.db", false);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(dir_.list(), std::vector<std::string>{"a.cbk"});
  WriteFile(path_, MakeArchive(Pages(512, 4, 15), 512, "", format::SourceKind::kLmdb));
  auto cut = ReadFile<Bytes>(path_);
  cut.resize(cut.size() - 1);
  WriteFile(path_, cut);
  s = RestoreArchive(path_, dir_ / "env", false);
  EXPECT_TRUE(s.IsIncomplete()) << s.ToString();
  EXPECT_EQ(dir_.list(), std::vector<std::string>{"a.cbk"});
}

TEST_F(ArchiveTest, NotAnArchiveSaysSo) {
  Status s = Verify(std::vector<uint8_t>(100, 'x'));
  EXPECT_NE(s.ToString().find("not a cowbackup archive"), std::string::npos) << s.ToString();
  s = VerifyArchive(dir_.path(), nullptr);
  EXPECT_NE(s.ToString().find("directory"), std::string::npos) << s.ToString();
  s = VerifyArchive(dir_ / "missing", nullptr);
  EXPECT_NE(s.ToString().find("No such file"), std::string::npos) << s.ToString();
}

// ---- BackupJob: publication and cleanup ------------------------------------------

class BackupJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = Pages(4096, 64, 20);
    WriteFile(db_, image_);
    fd_ = open(db_.c_str(), O_RDWR);
    source_ = std::make_unique<FileSource>(fd_, db_, 4096);
  }
  void TearDown() override { close(fd_); }
  Status Backup(const std::string& dest, BackupOptions options, std::unique_ptr<BackupJob>* out) {
    BackupParams p;
    p.dest = dest;
    p.options = options;
    p.source_name = db_;
    Status s = BackupJob::Prepare(source_.get(), p, out);
    if (!s.ok()) return s;
    s = (*out)->Begin(64, format::MetaLine("source_path", db_), &hook_);
    if (!s.ok()) return s;
    return (*out)->Run();
  }
  TempDir dir_;
  std::string db_ = dir_ / "db";
  std::vector<uint8_t> image_;
  int fd_ = -1;
  std::unique_ptr<FileSource> source_;
  WriteHook hook_;
};

TEST_F(BackupJobTest, ArchiveAndPlainFormatsRestoreTheSameBytes) {
  std::unique_ptr<BackupJob> job;
  ASSERT_TRUE(Backup(dir_ / "x.cbk", {}, &job).ok());
  EXPECT_EQ(job->summary().state, JobState::kDone);
  EXPECT_EQ(job->summary().progress.pages_done, 64u);
  ASSERT_TRUE(RestoreArchive(dir_ / "x.cbk", dir_ / "restored", false).ok());
  EXPECT_EQ(ReadFile<Bytes>(dir_ / "restored"), image_);
  BackupOptions plain;
  plain.format = BackupOptions::Format::kPlain;
  ASSERT_TRUE(Backup(dir_ / "plain.db", plain, &job).ok());
  EXPECT_EQ(ReadFile<Bytes>(dir_ / "plain.db"), image_);
  // Nothing else in the directory: no temporaries, no snapshot volumes.
  auto names = dir_.list();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"db", "plain.db", "restored", "x.cbk"}));
}

TEST_F(BackupJobTest, ExistingDestinationNeedsOverwrite) {
  WriteFile(dir_ / "x.cbk", {1, 2, 3});
  std::unique_ptr<BackupJob> job;
  Status s = Backup(dir_ / "x.cbk", {}, &job);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(ReadFile<Bytes>(dir_ / "x.cbk"), (std::vector<uint8_t>{1, 2, 3}));
  BackupOptions o;
  o.overwrite = true;
  ASSERT_TRUE(Backup(dir_ / "x.cbk", o, &job).ok());
  EXPECT_TRUE(VerifyArchive(dir_ / "x.cbk", nullptr).ok());
}

TEST_F(BackupJobTest, CancelledJobLeavesNothingAtTheDestination) {
  BackupParams p;
  p.dest = dir_ / "x.cbk";
  p.options.max_rate_mb = 0.05;  // slow enough to cancel mid-way
  p.options.segment_pages = 1;
  p.source_name = db_;
  std::unique_ptr<BackupJob> job;
  ASSERT_TRUE(BackupJob::Prepare(source_.get(), p, &job).ok());
  ASSERT_TRUE(job->Begin(64, "", &hook_).ok());
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    job->cancel();
  });
  Status s = job->Run();
  canceller.join();
  EXPECT_TRUE(s.IsCancelled()) << s.ToString();
  EXPECT_EQ(job->summary().state, JobState::kCancelled);
  EXPECT_EQ(dir_.list(), std::vector<std::string>{"db"});
}

TEST_F(BackupJobTest, StaleTemporariesOfDeadProcessesAreRemoved) {
  const pid_t dead = DeadPid();
  const std::string stale_tmp = dir_ / "x.cbk" + kTempInfix + std::to_string(dead) + "-0";
  WriteFile(stale_tmp, {1});
  // A stale volume: a real volume header rewritten with the dead pid.
  {
    std::unique_ptr<FileSnapshotVolume> v;
    ASSERT_TRUE(FileSnapshotVolume::Create(dir_ / "old.cowsnap", 4096, db_, &v).ok());
    auto bytes = ReadFile<Bytes>(v->path());
    EncodeFixed64(bytes.data() + 16, uint64_t(dead));
    EncodeFixed64(bytes.data() + kVolumeHeaderSize - 8, Checksum::Of(bytes.data(), kVolumeHeaderSize - 8));
    v.reset();  // removes the original
    WriteFile(dir_ / "old.cowsnap", bytes);
  }
  std::unique_ptr<BackupJob> job;
  ASSERT_TRUE(Backup(dir_ / "x.cbk", {}, &job).ok());
  auto removed = job->stale_removed();
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{dir_ / "old.cowsnap", stale_tmp}));
  EXPECT_EQ(dir_.list().size(), 2u);
}

// A process killed between creating its volume and writing the header
// leaves an empty .cowsnap: its name still names the owner. (crash_test
// found this: seed 7028.)
TEST_F(BackupJobTest, AVolumeWithoutHeaderIsStaleWhenTheOwnerNamedInItsNameIsDead) {
  const pid_t dead = DeadPid();
  const std::string stale = dir_ / ("x.cbk." + std::to_string(dead) + "-3.cowsnap");
  const std::string live = dir_ / ("x.cbk." + std::to_string(getppid()) + "-3.cowsnap");
  const std::string unnamed = dir_ / "junk.cowsnap";
  for (const std::string& p : {stale, live, unnamed}) WriteFile(p, {});
  std::unique_ptr<BackupJob> job;
  ASSERT_TRUE(Backup(dir_ / "x.cbk", {}, &job).ok());
  EXPECT_EQ(job->stale_removed(), std::vector<std::string>{stale});
  EXPECT_TRUE(PathExists(live));
  EXPECT_TRUE(PathExists(unnamed));
}

// A pid can be reused by a newer process: a stale volume whose header names
// a live pid is still stale if that process started after the volume was
// made. (A live owner's files are never touched.)
TEST_F(BackupJobTest, AReusedPidDoesNotKeepStaleFilesAlive) {
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  EXPECT_TRUE(OwnerMayBeAlive(child, time(nullptr)));
  EXPECT_FALSE(OwnerMayBeAlive(child, time(nullptr) - 3600)) << "a newer process, not the owner";
  std::unique_ptr<FileSnapshotVolume> v;
  ASSERT_TRUE(FileSnapshotVolume::Create(dir_ / "old.cowsnap", 4096, db_, &v).ok());
  auto bytes = ReadFile<Bytes>(v->path());
  v.reset();
  EncodeFixed64(bytes.data() + 16, uint64_t(child));
  EncodeFixed64(bytes.data() + 24, DecodeFixed64(bytes.data() + 24) - 3600ull * 1000000);
  EncodeFixed64(bytes.data() + kVolumeHeaderSize - 8, Checksum::Of(bytes.data(), kVolumeHeaderSize - 8));
  WriteFile(dir_ / "old.cowsnap", bytes);
  // The same header with a creation time after the child started: kept.
  EncodeFixed64(bytes.data() + 24, DecodeFixed64(bytes.data() + 24) + 7200ull * 1000000);
  EncodeFixed64(bytes.data() + kVolumeHeaderSize - 8, Checksum::Of(bytes.data(), kVolumeHeaderSize - 8));
  WriteFile(dir_ / "live.cowsnap", bytes);
  std::unique_ptr<BackupJob> job;
  ASSERT_TRUE(Backup(dir_ / "x.cbk", {}, &job).ok());
  EXPECT_EQ(job->stale_removed(), std::vector<std::string>{dir_ / "old.cowsnap"});
  EXPECT_TRUE(PathExists(dir_ / "live.cowsnap"));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

}  // namespace
}  // namespace cowbackup::test
