// docs/REGION.md and coord/region_format.h agree (every table row's offset
// and size), and the decoders refuse each bad field by name.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <string>

#include "coord/region.h"
#include "coord/region_format.h"
#include "engine/checksum.h"
#include "engine/encoding.h"

namespace cowbackup::coord {
namespace {

using namespace layout;

// Rows "| offset | size | field |" of the table under "### <heading>".
std::map<std::string, std::pair<uint64_t, uint64_t>> SpecTable(const std::string& heading) {
  const char* src = getenv("COWBACKUP_SOURCE_DIR");
  std::ifstream in(std::string(src ? src : ".") + "/docs/REGION.md");
  std::map<std::string, std::pair<uint64_t, uint64_t>> rows;
  std::string line;
  bool in_section = false;
  const std::regex row(R"(^\| (\d+) \| (\d+) \| (\w+) \|)");
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) in_section = line == "### " + heading;
    std::smatch m;
    if (in_section && std::regex_search(line, m, row)) rows[m[3]] = {std::stoull(m[1]), std::stoull(m[2])};
  }
  return rows;
}

using Row = std::pair<uint64_t, uint64_t>;

TEST(RegionSpec, HeaderTableMatchesRegionFormatH) {
  auto t = SpecTable("Header");
  ASSERT_EQ(t.size(), 11u) << "docs/REGION.md header table not found";
  EXPECT_EQ(t["magic"], Row(kOffMagic, 8));
  EXPECT_EQ(t["format_version"], Row(kOffVersion, 4));
  EXPECT_EQ(t["header_size"], Row(kOffHeaderSize, 4));
  EXPECT_EQ(t["region_page_size"], Row(kOffPageSize, 4));
  EXPECT_EQ(t["slot_count"], Row(kOffSlotCount, 4));
  EXPECT_EQ(t["fixed_size"], Row(kOffFixedSize, 4));
  EXPECT_EQ(t["reserved"], Row(kOffHeaderReserved, 4));
  EXPECT_EQ(t["generation"], Row(kOffGeneration, 8));
  EXPECT_EQ(t["db_dev"], Row(kOffDbDev, 8));
  EXPECT_EQ(t["db_ino"], Row(kOffDbIno, 8));
  EXPECT_EQ(t["header_checksum"], Row(kOffHeaderChecksum, 8));
}

TEST(RegionSpec, ArmedWordAndLockTablesMatch) {
  auto a = SpecTable("Armed word");
  EXPECT_EQ(a["armed"], Row(kOffArmed, 8));
  auto g = SpecTable("Writer gate");
  EXPECT_EQ(g["writer_gate"], Row(kOffWriterGate, 4));
  auto c = SpecTable("Commit history");
  EXPECT_EQ(c["commit_history"], Row(kOffCommitHistory, CommitHistory::kSize));
  auto l = SpecTable("Lock bytes");
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l["lock_init"], Row(kLockInit, 1));
  EXPECT_EQ(l["lock_meta"], Row(kLockMeta, 1));
  EXPECT_EQ(l["lock_owner"], Row(kLockOwner, 1));
  EXPECT_EQ(l["lock_slots"], Row(kLockSlot0, kSlotCount));
}

TEST(RegionSpec, JobSectionTableMatches) {
  auto t = SpecTable("Job section");
  ASSERT_EQ(t.size(), 11u);
  EXPECT_EQ(t["job_state"], Row(kOffJobState, 4));
  EXPECT_EQ(t["owner_slot"], Row(kOffOwnerSlot, 4));
  EXPECT_EQ(t["job_id"], Row(kOffJobId, 8));
  EXPECT_EQ(t["owner_pid"], Row(kOffOwnerPid, 8));
  EXPECT_EQ(t["owner_start_unix_s"], Row(kOffOwnerStart, 8));
  EXPECT_EQ(t["claimed_unix_us"], Row(kOffClaimed, 8));
  EXPECT_EQ(t["page_state_offset"], Row(kOffPageStateOffset, 8));
  EXPECT_EQ(t["page_state_size"], Row(kOffPageStateSize, 8));
  EXPECT_EQ(t["t0_len"], Row(kOffT0Len, 4));
  EXPECT_EQ(t["volume_path_len"], Row(kOffVolumePathLen, 4));
  EXPECT_EQ(t["job_checksum"], Row(kOffJobChecksum, 8));
}

TEST(RegionSpec, SlotTableMatches) {
  auto t = SpecTable("Slot table");
  ASSERT_EQ(t.size(), 5u);
  EXPECT_EQ(t["slot_state"], Row(kOffSlotState, 4));
  EXPECT_EQ(t["slot_inside"], Row(kOffSlotInside, 4));
  EXPECT_EQ(t["pid"], Row(kOffSlotPid, 8));
  EXPECT_EQ(t["pid_start_unix_s"], Row(kOffSlotPidStart, 8));
  EXPECT_EQ(t["attached_unix_us"], Row(kOffSlotAttached, 8));
}

TEST(RegionSpec, PageStateAreaTableMatches) {
  auto t = SpecTable("Page-state area header");
  ASSERT_EQ(t.size(), 12u);
  EXPECT_EQ(t["wake_seq"], Row(SharedPages::kOffWakeSeq, 4));
  EXPECT_EQ(t["waiters"], Row(SharedPages::kOffWaiters, 4));
  EXPECT_EQ(t["counter"], Row(SharedPages::kOffCounter, 4));
  EXPECT_EQ(t["fail_code"], Row(SharedPages::kOffFailCode, 4));
  EXPECT_EQ(t["pages"], Row(SharedPages::kOffPages, 8));
  EXPECT_EQ(t["preserved"], Row(SharedPages::kOffPreserved, 8));
  EXPECT_EQ(t["done"], Row(SharedPages::kOffDone, 8));
  EXPECT_EQ(t["max_wait_ns"], Row(SharedPages::kOffMaxWait, 8));
  EXPECT_EQ(t["fail_claim"], Row(SharedPages::kOffFailClaim, 4));
  EXPECT_EQ(t["fail_len"], Row(SharedPages::kOffFailLen, 4));
  EXPECT_EQ(t["fail_pid"], Row(SharedPages::kOffFailPid, 8));
  EXPECT_EQ(t["fail_msg"], Row(SharedPages::kOffFailMsg, SharedPages::kMaxFailMsg));
  EXPECT_EQ(SharedPages::kOffFailMsg + SharedPages::kMaxFailMsg, SharedPages::kHeaderSize);  // the words follow
}

TEST(RegionSpec, SqliteCheckpointHolderAndWalTailTablesMatch) {
  auto h = SpecTable("SQLite checkpoint holder");
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h["ckpt_holder"], Row(kOffSqliteCkptHolder, 4));
  auto t = SpecTable("SQLite WAL tail");
  ASSERT_EQ(t.size(), 9u);
  EXPECT_EQ(t["t0_mark"], Row(kOffWalT0Mark, kWalMarkSize));
  EXPECT_EQ(t["header_seq"], Row(kOffWalHeaderSeq, 4));
  EXPECT_EQ(t["header_mark"], Row(kOffWalHeaderMark, kWalMarkSize));
  EXPECT_EQ(t["ckpt_seq"], Row(kOffWalCkptSeq, 4));
  EXPECT_EQ(t["ckpt_mark"], Row(kOffWalCkptMark, kWalMarkSize));
  EXPECT_EQ(t["db_pages"], Row(kOffWalDbPages, 4));
  EXPECT_EQ(t["reserved"], Row(kOffWalReserved, 4));
  EXPECT_EQ(t["main_pages"], Row(kOffWalMainPages, 8));
  EXPECT_EQ(t["frame_pages"], Row(kOffWalFramePages, 0));  // 4 x mxFrame
  EXPECT_EQ(WalTailSize(3), kOffWalFramePages + 12);
  // The tail starts 8-aligned after the state words.
  EXPECT_EQ(PageStateTailOffset(1), SharedPages::kHeaderSize + 8);
  EXPECT_EQ(PageStateTailOffset(2), SharedPages::kHeaderSize + 8);
}

TEST(RegionSpec, FileNames) {
  EXPECT_EQ(RegionPathForSqlite("/srv/app.db"), "/srv/app.db-cowbackup");
  EXPECT_EQ(RegionPathForLmdb("/srv/env", false), "/srv/env/cowbackup-region");
  EXPECT_EQ(RegionPathForLmdb("/srv/data", true), "/srv/data-cowbackup");
}

// ---- Decoding untrusted bytes -------------------------------------------

class DecodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EncodeHeader(RegionHeader{3, 7, 9}, r_);
    job_.state = JobState::kRunning;
    job_.owner_slot = 4;
    job_.job_id = 12345;
    job_.owner_pid = 77;
    job_.page_state_offset = kFixedSize;
    job_.page_state_size = 4096;
    job_.t0 = "mxFrame=12";
    job_.volume_path = "/b/x.cowsnap";
    EncodeJob(job_, r_);
  }
  void ResealHeader() { EncodeFixed64(r_ + kOffHeaderChecksum, Checksum::Of(r_, kOffHeaderChecksum)); }
  void ResealJob() {
    Checksum c;
    c.update(r_ + kOffJob, kJobFieldsSize);
    c.update(r_ + kOffT0, DecodeFixed32(r_ + kOffT0Len));
    c.update(r_ + kOffVolumePath, DecodeFixed32(r_ + kOffVolumePathLen));
    EncodeFixed64(r_ + kOffJobChecksum, c.digest());
  }
  std::string HeaderError() {
    RegionHeader h;
    return DecodeHeader(r_, "R", &h).ToString();
  }
  std::string JobError() {
    Job j;
    return DecodeJob(r_, "R", &j).ToString();
  }

  uint8_t r_[kFixedSize] = {};
  Job job_;
};

TEST_F(DecodeTest, RoundTrips) {
  RegionHeader h;
  ASSERT_TRUE(DecodeHeader(r_, "R", &h).ok());
  EXPECT_EQ(h.generation, 3u);
  EXPECT_EQ(h.db_dev, 7u);
  EXPECT_EQ(h.db_ino, 9u);
  Job j;
  ASSERT_TRUE(DecodeJob(r_, "R", &j).ok());
  EXPECT_EQ(j.state, JobState::kRunning);
  EXPECT_EQ(j.job_id, 12345u);
  EXPECT_EQ(j.t0, "mxFrame=12");
  EXPECT_EQ(j.volume_path, "/b/x.cowsnap");
  EXPECT_EQ(j.page_state_offset, kFixedSize);
}

TEST_F(DecodeTest, HeaderFieldsAreNamed) {
  EncodeFixed32(r_ + kOffVersion, 2);
  EXPECT_EQ(HeaderError(), "coordination region: format version 2 (this build reads 1): R");
  EncodeFixed32(r_ + kOffVersion, 1);
  EncodeFixed64(r_ + kOffGeneration, 4);  // no reseal
  EXPECT_EQ(HeaderError(), "coordination region: bad header checksum: R");
  const struct {
    size_t offset;
    uint32_t value;
    const char* text;
  } cases[] = {{kOffHeaderSize, 65, "header_size 65 (version 1 has 64)"},
               {kOffPageSize, 8192, "region_page_size 8192 (version 1 has 4096)"},
               {kOffSlotCount, 0, "slot_count 0 (version 1 has 256)"},
               {kOffFixedSize, 4096, "fixed_size 4096 (version 1 has 16384)"},
               {kOffHeaderReserved, 1, "reserved 1 (version 1 has 0)"}};
  for (const auto& c : cases) {
    SetUp();
    EncodeFixed32(r_ + c.offset, c.value);
    ResealHeader();
    EXPECT_EQ(HeaderError(), std::string("coordination region: ") + c.text + ": R");
  }
  r_[0] = 'X';
  EXPECT_EQ(HeaderError(), "coordination region: bad magic (not a coordination region): R");
}

TEST_F(DecodeTest, JobFieldsAreNamed) {
  const struct {
    size_t offset;
    int width;
    uint64_t value;
    const char* text;
  } cases[] = {
      {kOffJobState, 4, 9, "job_state 9 out of range"},
      {kOffOwnerSlot, 4, 256, "owner_slot 256 out of range"},
      {kOffJobId, 8, 0, "job_id 0 out of range"},
      {kOffJobId, 8, kMaxJobId + 1, "job_id 4611686018427387904 out of range"},
      {kOffT0Len, 4, kMaxT0Len + 1, "t0_len 2049 over 2048"},
      {kOffVolumePathLen, 4, kMaxVolumePathLen + 1, "volume_path_len 4096 over 4095"},
      {kOffPageStateOffset, 8, kFixedSize + 1, "page_state_offset 16385 / page_state_size 4096 out of range"},
      {kOffPageStateOffset, 8, 4096, "page_state_offset 4096 / page_state_size 4096 out of range"},
      {kOffPageStateSize, 8, kMaxPageStateSize + 1,
       "page_state_offset 16384 / page_state_size 1099511627777 out of range"},
  };
  for (const auto& c : cases) {
    SetUp();
    c.width == 4 ? EncodeFixed32(r_ + c.offset, uint32_t(c.value)) : EncodeFixed64(r_ + c.offset, c.value);
    ResealJob();
    EXPECT_EQ(JobError(), std::string("coordination region: ") + c.text + ": R") << c.text;
  }
  SetUp();
  r_[kOffVolumePath] = 'b';  // "b/x.cowsnap": relative
  ResealJob();
  EXPECT_EQ(JobError(), "coordination region: volume path is not an absolute path: R");
  SetUp();
  r_[kOffVolumePath + 3] = '\0';
  ResealJob();
  EXPECT_EQ(JobError(), "coordination region: volume path is not an absolute path: R");
  SetUp();
  r_[kOffT0] ^= 1;  // no reseal
  EXPECT_EQ(JobError(), "coordination region: bad job section checksum: R");
  SetUp();
  EncodeJob(Job(), r_);
  EncodeFixed64(r_ + kOffOwnerPid, 5);
  ResealJob();
  EXPECT_EQ(JobError(), "coordination region: a field is set in state none: R");
}

TEST_F(DecodeTest, AllZeroSectionIsDamagedNotEmpty) {
  // A fresh file of zeros does not pass for "no job": the empty section is
  // sealed like any other.
  uint8_t zero[kFixedSize] = {};
  Job j;
  EXPECT_TRUE(DecodeJob(zero, "R", &j).IsCorruption());
}

}  // namespace
}  // namespace cowbackup::coord
