// Hostile archives, beyond what tests/backup/archive_test.cc checks (single
// byte flips and cuts detected by verify, huge page_count on a file, huge
// payload_len): here every input goes through every reader a user can
// point at it (fuzz/archive_input.h: the reader over a file and over a
// pipe, verify, restore into a scratch directory) and they must agree,
// restore must write nothing but OUT, a failed restore must leave nothing,
// and length fields must not drive allocation even on a stream, where no
// file size bounds page_count. Every input libFuzzer ever found is replayed
// from tests/fuzz/regressions/.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "image_kind.h"
#include "backup/archive_reader.h"
#include "backup/archive_writer.h"
#include "backup/restore.h"
#include "engine/checksum.h"
#include "engine/encoding.h"
#include "engine/posix_file.h"
#include "faults/page_workload.h"
#include "fuzz/archive_input.h"
#include "backup/memory_output.h"

namespace cowbackup::faults {
namespace {

using test::MemoryOutput;

std::vector<uint8_t> MakeArchive(uint64_t pages, bool overlays, format::SourceKind kind,
                                 const std::string& meta = "", uint32_t page_size = 512) {
  std::vector<uint8_t> bytes;
  format::Header h;
  h.source_kind = kind;
  h.page_size = page_size;
  h.page_count = pages;
  h.metadata = meta;
  ArchiveWriter w(h, std::make_unique<MemoryOutput>(&bytes));
  std::vector<uint8_t> page(page_size);
  for (uint64_t p = 0; p < pages; p++) {
    for (uint32_t b = 0; b < page_size; b++) page[b] = uint8_t(p * 7 + b);
    test::StampImageKind(kind, page_size, p, page.data());
    EXPECT_TRUE(w.put_run(p, page.data(), 1).ok());
  }
  if (overlays) {
    page.assign(page_size, 0x5a);
    test::StampImageKind(kind, page_size, 0, page.data());
    EXPECT_TRUE(w.put_overlay(0, page.data()).ok());
  }
  EXPECT_TRUE(w.finish(Progress{}).ok());
  return bytes;
}

void ResealHeader(std::vector<uint8_t>* a) {
  const uint32_t meta_len = DecodeFixed32(a->data() + format::kOffMetaLen);
  const size_t at = format::kHeaderFixedSize + meta_len;
  EncodeFixed64(a->data() + at, Checksum::Of(a->data(), at));
}

// Appends one sealed record (page, overlay or trailer) to `a`.
void AppendRecord(std::vector<uint8_t>* a, format::RecordType type, uint64_t pgno,
                  const std::vector<uint8_t>& payload) {
  const size_t at = a->size();
  a->resize(at + format::kRecordOverhead + payload.size());
  uint8_t* rec = a->data() + at;
  format::EncodeRecordHeader(type, 0, uint32_t(payload.size()), pgno, rec);
  memcpy(rec + format::kRecordHeaderSize, payload.data(), payload.size());
  uint8_t* tail = rec + format::kRecordHeaderSize + payload.size();
  EncodeFixed64(tail, format::RecordChecksum(rec, rec + format::kRecordHeaderSize, payload.size()));
  EncodeFixed64(tail + 8, pgno);
}

long MaxRssKb() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Reads an archive from a pipe, as `cowbackup verify -` does.
Status ReadStream(const std::vector<uint8_t>& bytes) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  std::thread feeder([&] {
    (void)WriteFull(fds[1], bytes.data(), bytes.size(), "<pipe>");
    ::close(fds[1]);
  });
  ArchiveReader reader(fds[0], "<pipe>", true);
  Status s = reader.ReadHeader();
  while (s.ok()) {
    ArchiveReader::Record rec;
    bool done = false;
    s = reader.Next(&rec, &done);
    if (done) break;
  }
  feeder.join();
  return s;
}

class HostileArchiveTest : public ::testing::Test {
 protected:
  // Restore fsyncs; a tmpfs scratch keeps thousands of restores quick.
  void SetUp() override {
    if (::access("/dev/shm", W_OK) == 0) setenv("TMPDIR", "/dev/shm", 1);
    scratch_ = MakeTempDir("cowbackup-hostile");
  }
  void TearDown() override { RemoveTree(scratch_); }
  void Check(const std::vector<uint8_t>& bytes) {
    fuzz::CheckArchiveInput(bytes.data(), bytes.size(), scratch_);
    EXPECT_TRUE(ListDir(scratch_).empty());
  }
  std::string scratch_;
};

TEST_F(HostileArchiveTest, ValidArchivesPassEveryReader) {
  for (const auto kind : {format::SourceKind::kRaw, format::SourceKind::kSqlite,
                          format::SourceKind::kLmdb}) {
    for (const bool overlays : {false, true}) {
      const auto a = MakeArchive(3, overlays, kind, format::MetaLine("source", "../../etc/passwd"));
      // CheckArchiveInput aborts if a reader refuses it; make sure they
      // accept it, so the next tests are about the damage, not the base.
      const std::string path = scratch_ + "/a";
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
      ASSERT_TRUE(WriteFull(fd, a.data(), a.size(), path).ok());
      ::close(fd);
      ASSERT_TRUE(VerifyArchive(path, nullptr).ok());
      ::unlink(path.c_str());
      Check(a);
    }
  }
}

// Every flip of every byte, and every cut, of small archives of both
// variants and an LMDB one (restored as a directory): the four readers
// agree, and restore leaves nothing but OUT (or nothing).
TEST_F(HostileArchiveTest, EveryFlipAndCutGetsTheSameAnswerFromEveryReader) {
  uint64_t inputs = 0;
  for (const bool overlays : {false, true}) {
    const auto kind = overlays ? format::SourceKind::kLmdb : format::SourceKind::kSqlite;
    const auto a = MakeArchive(2, overlays, kind, format::MetaLine("k", "v"));
    for (size_t i = 0; i < a.size(); i += kSanitizerSlowdown) {
      auto b = a;
      b[i] ^= uint8_t(1u << (i % 8));
      Check(b);
      Check(std::vector<uint8_t>(a.begin(), a.begin() + long(i)));
      inputs += 2;
      if (HasFailure()) return;
    }
  }
  fprintf(stderr, "%llu hostile inputs checked\n", static_cast<unsigned long long>(inputs));
}

// On a stream nothing bounds page_count by a file size: a resealed header
// claiming 2^40 pages, then records for pages near 2^40, must cost memory
// by records read, not by page_count, and end as incomplete.
TEST_F(HostileArchiveTest, HugePageCountOnAStreamIsNotAllocated) {
  auto a = MakeArchive(0, false, format::SourceKind::kRaw);
  a.resize(a.size() - (format::kRecordOverhead + format::kTrailerPayloadSize));  // drop trailer
  const uint64_t huge = uint64_t{1} << 40;
  EncodeFixed64(a.data() + format::kOffPageCount, huge);
  ResealHeader(&a);
  const std::vector<uint8_t> page(512, 0x11);
  // Pages spread over the whole range: a dense bitmap would need 128 GiB.
  for (uint64_t i = 0; i < 2000; i++) {
    AppendRecord(&a, format::RecordType::kPage, (huge - 1) - i * (huge / 2000), page);
  }
  const long rss_before = MaxRssKb();
  const Status s = ReadStream(a);
  EXPECT_TRUE(s.IsIncomplete()) << s.ToString();
  EXPECT_LT(MaxRssKb() - rss_before, 256 * 1024) << "KiB of peak RSS for a 1 MiB stream";
  Check(a);
}

// A trailer claiming a huge page count or offset is compared, never used.
TEST_F(HostileArchiveTest, TrailerFieldsAreComparedNotTrusted) {
  auto a = MakeArchive(2, false, format::SourceKind::kRaw);
  const size_t trailer = a.size() - (format::kRecordOverhead + format::kTrailerPayloadSize);
  for (const size_t field : {format::kOffPageRecords, format::kOffOverlayRecords,
                             format::kOffRecordsEnd, format::kOffDigest}) {
    auto b = a;
    EncodeFixed64(b.data() + trailer + format::kRecordHeaderSize + field, ~uint64_t{0});
    EncodeFixed64(b.data() + b.size() - 16,
                  format::RecordChecksum(b.data() + trailer,
                                         b.data() + trailer + format::kRecordHeaderSize,
                                         format::kTrailerPayloadSize));
    const std::string path = scratch_ + "/t";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(WriteFull(fd, b.data(), b.size(), path).ok());
    ::close(fd);
    const Status s = VerifyArchive(path, nullptr);
    EXPECT_TRUE(s.IsCorruption()) << "field " << field << ": " << s.ToString();
    ::unlink(path.c_str());
    Check(b);
  }
}

// Header length fields at their extremes, resealed so the checksum passes
// where it can: refused by name before anything is allocated from them.
TEST_F(HostileArchiveTest, HeaderLengthFieldsAtTheirExtremesAreRefused) {
  const auto a = MakeArchive(1, false, format::SourceKind::kRaw, "k=v\n");
  struct Edit {
    size_t offset;
    uint32_t value;
    const char* expect;
  };
  const Edit edits[] = {
      {format::kOffHeaderSize, 0xffffffff, "header_size"},
      {format::kOffHeaderSize, 8, "header_size"},
      {format::kOffMetaLen, 0xffffffff, "meta_len"},
      {format::kOffMetaLen, 4097, "meta_len"},
      {format::kOffPageSize, 0x80000000, "page_size"},
      {format::kOffPageSize, 0, "page_size"},
  };
  for (const Edit& e : edits) {
    auto b = a;
    EncodeFixed32(b.data() + e.offset, e.value);
    if (e.offset != format::kOffMetaLen) ResealHeader(&b);
    const Status s = ReadStream(b);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.ToString().find(e.expect), std::string::npos)
        << "offset " << e.offset << " = " << e.value << ": " << s.ToString();
    Check(b);
  }
}

// Overlays repeated without end: memory and work grow with the input only,
// and the archive is refused at the trailer (counts differ).
TEST_F(HostileArchiveTest, EndlessOverlaysCostOnlyWhatTheyWeigh) {
  auto a = MakeArchive(1, false, format::SourceKind::kRaw);
  a.resize(a.size() - (format::kRecordOverhead + format::kTrailerPayloadSize));
  const std::vector<uint8_t> page(512, 0x22);
  for (int i = 0; i < 4000; i++) AppendRecord(&a, format::RecordType::kOverlay, 0, page);
  const Status s = ReadStream(a);
  EXPECT_TRUE(s.IsIncomplete()) << s.ToString();
  Check(a);
}

// Every input the fuzzer ever found (tests/fuzz/regressions/*, committed
// when found) is replayed through the same checks.
TEST_F(HostileArchiveTest, FuzzerFindingsStayFixed) {
  const char* src = getenv("COWBACKUP_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "COWBACKUP_SOURCE_DIR is set by CTest";
  const std::string dir = std::string(src) + "/tests/fuzz/regressions";
  size_t replayed = 0;
  for (const std::string& name : ListDir(dir)) {
    if (name == "README.md") continue;
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(ReadFile(dir + "/" + name, &bytes)) << name;
    SCOPED_TRACE(name);
    Check(bytes);
    replayed++;
  }
  fprintf(stderr, "%zu fuzzer findings replayed\n", replayed);
}

}  // namespace
}  // namespace cowbackup::faults
