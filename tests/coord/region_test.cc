// The coordination region within one process: attach and detach, the job's
// life, permission bits, hostile files at the region's name, and damaged
// regions (docs/REGION.md, "Refusals" and "Recovery rules"). Two Regions in
// one process are two open file descriptions, so their OFD locks conflict
// as two processes' would; a ByteHolder is "some process holds this byte".
// Deaths of real processes: region_process_test.cc.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "coord/region_test_util.h"
#include "engine/sync_point.h"

namespace cowbackup::coord::test {
namespace {

using cowbackup::test::ReadFile;
using cowbackup::test::WriteFile;

bool Contains(const Status& s, const std::string& text) {
  return s.ToString().find(text) != std::string::npos;
}

// ---- Attach and detach --------------------------------------------------

using RegionTest = RegionFixture;

TEST_F(RegionTest, FirstAttachMakesACleanRegion) {
  auto r = Attach();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->recovery(), "") << "a region made fresh recovers nothing";
  EXPECT_EQ(r->generation(), 1u);
  EXPECT_EQ(r->slot(), 0u);
  EXPECT_EQ(r->load_armed(), 0u);
  struct stat st;
  ASSERT_EQ(::stat(region_.c_str(), &st), 0);
  EXPECT_EQ(uint64_t(st.st_size), kFixedSize);
  Job job;
  ASSERT_TRUE(r->ReadJob(&job).ok());
  EXPECT_EQ(job.state, JobState::kNone);
  std::vector<Participant> ps;
  ASSERT_TRUE(r->Participants(&ps).ok());
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0].pid, ::getpid());
  EXPECT_EQ(ps[0].pid_start_unix_s, ProcessStartUnix(::getpid()));
  EXPECT_TRUE(ps[0].self);
}

TEST_F(RegionTest, EachRegionIsAParticipantAndDetachFreesItsSlot) {
  auto a = Attach();
  auto b = Attach();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->generation(), b->generation()) << "the second attach does not take the region over";
  EXPECT_EQ(b->slot(), 1u);
  std::vector<Participant> ps;
  ASSERT_TRUE(a->Participants(&ps).ok());
  EXPECT_EQ(ps.size(), 2u);
  b.reset();
  ASSERT_TRUE(a->Participants(&ps).ok());
  EXPECT_EQ(ps.size(), 1u);
  auto c = Attach();
  EXPECT_EQ(c->slot(), 1u) << "the freed slot is taken again";
  EXPECT_EQ(DecodeFixed32(reinterpret_cast<const uint8_t*>(Read(kOffSlots + kSlotSize + kOffSlotState, 4).data())),
            1u);
}

TEST_F(RegionTest, LastDetachLeavesTheFileAndTheNextFirstOpenerKeepsIt) {
  Attach().reset();
  ASSERT_TRUE(cowbackup::test::ReadFile(region_).size() == kFixedSize) << "never removed";
  auto r = Attach();
  EXPECT_EQ(r->generation(), 2u) << "a first opener takes a valid region over";
  EXPECT_EQ(r->recovery(), "");
}

TEST_F(RegionTest, WriterGateIsSharedAndAFirstOpenerClearsIt) {
  auto a = Attach();
  auto b = Attach();
  ASSERT_TRUE(a && b);
  auto gate = [](const std::unique_ptr<Region>& r) { return std::atomic_ref<uint32_t>(*r->writer_gate()); };
  EXPECT_EQ(gate(a).load(), 0u);
  gate(a).store(a->BusyWord(false));
  EXPECT_EQ(gate(b).load(), a->BusyWord(false)) << "one word, mapped by every participant";
  EXPECT_FALSE(b->PartyGone(gate(b).load()));
  a.reset();
  EXPECT_TRUE(b->PartyGone(gate(b).load())) << "its party detached";
  b.reset();
  auto c = Attach();  // the first opener: a dead party's word is cleared (R1)
  EXPECT_EQ(gate(c).load(), 0u);
}

// Every attached party records its commits into the region's one history
// (automatic pacing reads it); a forked child that forgot the region
// records into a private one until it attaches anew.
TEST_F(RegionTest, CommitHistoryIsSharedByEveryAttachedParty) {
  auto a = Attach();
  auto b = Attach();
  const int64_t bucket = CommitHistory::kBucketNs;
  const int64_t t = 1000 * bucket;  // any whole bucket
  for (int i = 0; i < 3; i++) a->commit_history()->Record(t + i, 5'000'000);
  b->commit_history()->Record(t + 10, 2'000'000);
  const CommitHistory::Sum sum = b->commit_history()->Between(t, t + bucket);
  EXPECT_EQ(sum.commits, 4u);
  EXPECT_EQ(sum.ns, 17'000'000u);
  EXPECT_EQ(Get64(kOffCommitHistory + 16 * (1000 % CommitHistory::kBuckets)), (uint64_t(1000) << 32) | 4)
      << "the layout docs/REGION.md gives";
  // A later bucket that lands on the same slot takes it over.
  a->commit_history()->Record(t + CommitHistory::kBuckets * bucket, 1'000'000);
  EXPECT_EQ(b->commit_history()->Between(t, t + bucket).commits, 0u);

  a->ForgetAfterFork();
  a->commit_history()->Record(t + 20, 1'000'000);
  EXPECT_EQ(a->commit_history()->Between(t, t + bucket).commits, 1u) << "its own again";
  EXPECT_EQ(b->commit_history()->Between(t, t + bucket).commits, 0u) << "not the region's";
}

// A process whose writes cannot be seen (LMDB's MDB_WRITEMAP) attaches as
// such: its slot says so, and every party lists it that way.
TEST_F(RegionTest, AProcessWhoseWritesAreUnseenIsListedAsSuch) {
  auto seen = Attach();
  std::unique_ptr<Region> unseen;
  AttachOptions o;
  o.writes_unseen = true;
  ASSERT_TRUE(Region::Attach(region_, db_fd_, o, &unseen).ok());
  std::vector<Participant> ps;
  ASSERT_TRUE(seen->Participants(&ps).ok());
  ASSERT_EQ(ps.size(), 2u);
  for (const Participant& p : ps) EXPECT_EQ(p.writes_unseen, p.slot == unseen->slot()) << p.slot;
  EXPECT_EQ(DecodeSlot(reinterpret_cast<const uint8_t*>(Read(0, kFixedSize).data()), unseen->slot()).state, 2u);
}

TEST_F(RegionTest, AllSlotsTakenIsBusy) {
  std::vector<std::unique_ptr<Region>> rs;
  for (uint32_t i = 0; i < kSlotCount; i++) {
    rs.push_back(Attach());
    ASSERT_TRUE(rs.back());
  }
  std::unique_ptr<Region> extra;
  Status s = TryAttach(&extra);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_TRUE(Contains(s, "all 256 slots are taken")) << s.ToString();
  EXPECT_TRUE(Contains(s, region_));
}

// ---- The job ------------------------------------------------------------

TEST_F(RegionTest, ClaimArmFinish) {
  auto owner = Attach();
  auto other = Attach();
  Job dead;
  ASSERT_TRUE(owner->ClaimJob(dir_ / "v.cowsnap", 3 * 4096 + 1, &dead).ok());
  EXPECT_EQ(dead.state, JobState::kNone);
  EXPECT_TRUE(owner->owns_job());
  EXPECT_EQ(other->load_armed(), 0u) << "armed only at T0";
  Job j;
  ASSERT_TRUE(other->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kArming);
  EXPECT_EQ(j.volume_path, dir_ / "v.cowsnap");
  EXPECT_EQ(j.owner_pid, ::getpid());
  EXPECT_EQ(j.owner_slot, owner->slot());
  EXPECT_EQ(j.page_state_offset, kFixedSize);
  EXPECT_EQ(j.page_state_size, 3 * 4096 + 1u);
  struct stat st;
  ASSERT_EQ(::stat(region_.c_str(), &st), 0);
  EXPECT_GE(uint64_t(st.st_size), j.page_state_offset + j.page_state_size) << "invariant 6";

  Status busy = other->ClaimJob(dir_ / "w.cowsnap", 0, &dead);
  EXPECT_TRUE(busy.IsBusy()) << busy.ToString();
  EXPECT_TRUE(Contains(busy, "already running")) << busy.ToString();

  ASSERT_TRUE(owner->Arm("salt=1;mxFrame=9").ok());
  EXPECT_EQ(other->load_armed(), ArmedValue(j.job_id)) << "every participant sees it armed";
  ASSERT_TRUE(other->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kRunning);
  EXPECT_EQ(j.t0, "salt=1;mxFrame=9");

  ASSERT_TRUE(owner->Finish().ok());
  EXPECT_FALSE(owner->owns_job());
  EXPECT_EQ(other->load_armed(), 0u);
  ASSERT_TRUE(other->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDone);
  ASSERT_TRUE(other->ClaimJob(dir_ / "w.cowsnap", 0, &dead).ok()) << "the next job, from any participant";
  EXPECT_EQ(dead.state, JobState::kNone) << "a done job needs no cleanup";
  ASSERT_TRUE(other->Finish().ok());
}

TEST_F(RegionTest, ClaimRefusesWhatTheSectionCannotHold) {
  auto r = Attach();
  Job dead;
  EXPECT_TRUE(r->ClaimJob("relative.cowsnap", 0, &dead).IsInvalidArgument());
  EXPECT_TRUE(r->ClaimJob("/" + std::string(kMaxVolumePathLen, 'x'), 0, &dead).IsInvalidArgument());
  EXPECT_TRUE(r->ClaimJob("/v", kMaxPageStateSize + 1, &dead).IsInvalidArgument());
  EXPECT_FALSE(r->owns_job());
  ASSERT_TRUE(r->ClaimJob("/v", 0, &dead).ok());
  EXPECT_TRUE(r->Arm(std::string(kMaxT0Len + 1, 't')).IsInvalidArgument());
  EXPECT_TRUE(r->ClaimJob("/v", 0, &dead).IsInvalidArgument()) << "one job per Region";
  ASSERT_TRUE(r->Arm(std::string(kMaxT0Len, 't')).ok());
  ASSERT_TRUE(r->Finish().ok());
  EXPECT_TRUE(r->Finish().IsInvalidArgument());
  EXPECT_TRUE(r->Arm("x").IsInvalidArgument());
}

TEST_F(RegionTest, OwnerDetachingUnfinishedLeavesTheJobDeadForTheNextClaim) {
  auto owner = Attach();
  auto other = Attach();
  Job dead;
  ASSERT_TRUE(owner->ClaimJob("/b/v1.cowsnap", 0, &dead).ok());
  ASSERT_TRUE(owner->Arm("t0").ok());
  owner.reset();
  EXPECT_EQ(other->load_armed(), 0u);
  Job j;
  ASSERT_TRUE(other->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDead);
  ASSERT_TRUE(other->ClaimJob("/b/v2.cowsnap", 0, &dead).ok());
  EXPECT_EQ(dead.state, JobState::kDead);
  EXPECT_EQ(dead.volume_path, "/b/v1.cowsnap") << "handed back for cleanup";
  EXPECT_EQ(dead.t0, "t0");
}

TEST_F(RegionTest, FailArmedJobFailsOnlyTheJobItSaw) {
  auto owner = Attach();
  auto writer = Attach();
  Job dead;
  ASSERT_TRUE(owner->ClaimJob("/v", 0, &dead).ok());
  ASSERT_TRUE(owner->Arm("").ok());
  const uint64_t seen = writer->load_armed();
  ASSERT_NE(seen, 0u);
  ASSERT_TRUE(owner->Finish().ok());
  ASSERT_TRUE(owner->ClaimJob("/v", 0, &dead).ok());
  ASSERT_TRUE(owner->Arm("").ok());
  EXPECT_FALSE(writer->FailArmedJob(seen)) << "that job is over";
  EXPECT_EQ(owner->load_armed() & kFailedBit, 0u);
  EXPECT_TRUE(writer->FailArmedJob(writer->load_armed()));
  EXPECT_NE(owner->load_armed() & kFailedBit, 0u) << "the owner sees its job failed";
  Job j;
  ASSERT_TRUE(owner->ReadJob(&j).ok());
  EXPECT_NE(owner->load_armed() & kFailedBit, 0u) << "R6 keeps the failed bit";
  ASSERT_TRUE(owner->Finish().ok());
  EXPECT_EQ(owner->load_armed(), 0u);
}

// A writer joining while another party holds lock_meta longer than one
// acquire (100 ms) asks again while the word still names the job: it joins
// once the lock is free, and only past kJoinWaitMs fails the job rather
// than write past it (docs/REGION.md, "Taking part").
TEST_F(RegionTest, JoinAsksAgainWhileTheMetaLockIsBusyAndFailsTheJobOnlyPastItsBound) {
  auto owner = Attach();
  auto writer = Attach();
  Job dead, claimed;
  ASSERT_TRUE(owner->ClaimJob("/v", 0, &dead, &claimed).ok());
  ASSERT_TRUE(owner->Arm("").ok());
  const uint64_t seen = writer->load_armed();

  auto stuck = std::make_unique<ByteHolder>(region_, kLockMeta, F_WRLCK);
  int busy_rounds = 0;
  sync::SetCallback([&](const char* name) {
    if (std::string(name) != "Region::ReadRunningJob:busy") return;
    busy_rounds++;
    stuck.reset();  // the other party lets go after the first busy round
  });
  Job j;
  EXPECT_TRUE(writer->ReadRunningJob(seen, &j)) << "the lock came free within the bound";
  sync::SetCallback(nullptr);
  EXPECT_EQ(busy_rounds, 1);
  EXPECT_EQ(j.job_id, claimed.job_id);
  EXPECT_EQ(owner->load_armed() & kFailedBit, 0u) << "a busy lock alone does not fail the job";

  stuck = std::make_unique<ByteHolder>(region_, kLockMeta, F_WRLCK);  // now held past the bound
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(writer->ReadRunningJob(seen, &j));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(Region::kJoinWaitMs));
  EXPECT_NE(owner->load_armed() & kFailedBit, 0u) << "a write that cannot take part fails the job";
  stuck.reset();
  ASSERT_TRUE(owner->Finish().ok());
}

TEST_F(RegionTest, EnterCountsInOnlyWhileTheWordIsTheOneSeen) {
  auto owner = Attach();
  auto writer = Attach();
  Job dead;
  ASSERT_TRUE(owner->ClaimJob("/v", 0, &dead).ok());
  ASSERT_TRUE(owner->Arm("").ok());
  const uint64_t seen = writer->load_armed();
  const uint32_t slot = writer->slot();
  EXPECT_FALSE(writer->Enter(seen + 4)) << "another job's word";
  EXPECT_EQ(InsideCount(slot), 0u) << "a refused Enter is not counted";
  ASSERT_TRUE(writer->Enter(seen));
  ASSERT_TRUE(writer->Enter(seen));  // a second thread
  EXPECT_EQ(InsideCount(slot), 2u);
  EXPECT_EQ(InsideCount(owner->slot()), 0u) << "counts are per slot";
  writer->Leave();
  writer->Leave();
  EXPECT_EQ(InsideCount(slot), 0u);
  ASSERT_TRUE(writer->FailArmedJob(seen));
  EXPECT_FALSE(writer->Enter(seen)) << "failed since it was seen";
  ASSERT_TRUE(writer->Enter(seen | kFailedBit));
  writer->Leave();
  ASSERT_TRUE(owner->Finish().ok());
  EXPECT_FALSE(writer->Enter(seen | kFailedBit)) << "disarmed";
  EXPECT_EQ(InsideCount(slot), 0u);
  std::unique_ptr<Region> forked = Attach();
  forked->ForgetAfterFork();
  EXPECT_FALSE(forked->Enter(ArmedValue(1))) << "no mapping";
}

TEST_F(RegionTest, ClaimRefusedWhenTheNameNoLongerIsOurFile) {
  auto r = Attach();
  WriteFile(dir_ / "other", std::string(kFixedSize, '\0'));
  ASSERT_EQ(::rename((dir_ / "other").c_str(), region_.c_str()), 0);
  Job dead;
  Status s = r->ClaimJob("/v", 0, &dead);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_TRUE(Contains(s, "no longer the one attached")) << s.ToString();
}

// ---- Permission bits -----------------------------------------------------

TEST_F(RegionTest, PermissionBitsFollowTheDatabaseNeverGroupOrOtherWrite) {
  const struct {
    mode_t db, region;
  } cases[] = {{0600, 0600}, {0640, 0640}, {0644, 0644}, {0664, 0644}, {0666, 0644}, {0750, 0640}, {0400, 0400}};
  for (mode_t umask_value : {mode_t(0), mode_t(077)}) {
    const mode_t old = ::umask(umask_value);
    for (const auto& c : cases) {
      ::unlink(region_.c_str());
      ASSERT_EQ(::fchmod(db_fd_, c.db), 0);
      auto r = Attach();
      ASSERT_TRUE(r);
      struct stat st;
      ASSERT_EQ(::stat(region_.c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 07777, c.region) << std::oct << "db " << c.db << " umask " << umask_value;
      EXPECT_EQ(st.st_uid, ::geteuid());
    }
    ::umask(old);
  }
}

TEST_F(RegionTest, RootGivesTheRegionToTheDatabasesOwner) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  const passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  ASSERT_EQ(::fchown(db_fd_, nobody->pw_uid, nobody->pw_gid), 0);
  auto r = Attach();
  ASSERT_TRUE(r);
  struct stat st;
  ASSERT_EQ(::stat(region_.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody->pw_uid);
  EXPECT_EQ(st.st_gid, nobody->pw_gid);
}

// ---- Hostile files at the region's name ---------------------------------

class HostileRegionTest : public RegionFixture {
 protected:
  // Attach must fail, naming the region, with `text` in its message.
  void ExpectRefused(const std::string& text) {
    std::unique_ptr<Region> r;
    Status s = TryAttach(&r);
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(r);
    EXPECT_TRUE(Contains(s, text)) << s.ToString();
    EXPECT_TRUE(Contains(s, region_)) << s.ToString();
  }
};

TEST_F(HostileRegionTest, SymlinkIsRefusedAndItsTargetUntouched) {
  const std::string target = dir_ / "precious";
  WriteFile(target, "do not overwrite");
  ASSERT_EQ(::symlink(target.c_str(), region_.c_str()), 0);
  ExpectRefused("is a symbolic link");
  EXPECT_EQ(ReadFile(target), "do not overwrite");
}

TEST_F(HostileRegionTest, DanglingSymlinkIsRefusedAndNothingCreated) {
  const std::string target = dir_ / "created-through-link";
  ASSERT_EQ(::symlink(target.c_str(), region_.c_str()), 0);
  ExpectRefused("is a symbolic link");
  struct stat st;
  EXPECT_NE(::lstat(target.c_str(), &st), 0);
}

TEST_F(HostileRegionTest, FifoIsRefusedWithoutBlocking) {
  ASSERT_EQ(::mkfifo(region_.c_str(), 0600), 0);
  ExpectRefused("is a FIFO");  // an open for reading would block forever
}

TEST_F(HostileRegionTest, DirectoryIsRefused) {
  ASSERT_EQ(::mkdir(region_.c_str(), 0700), 0);
  ExpectRefused("is a directory");
}

TEST_F(HostileRegionTest, DeviceIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "mknod needs root";
  ASSERT_EQ(::mknod(region_.c_str(), S_IFCHR | 0600, makedev(1, 3)), 0);  // /dev/null
  ExpectRefused("is a character device");
}

TEST_F(HostileRegionTest, HardLinkIsRefused) {
  const std::string other = dir_ / "someone-elses-file";
  WriteFile(other, "do not overwrite");
  ASSERT_EQ(::chmod(other.c_str(), 0600), 0);
  ASSERT_EQ(::link(other.c_str(), region_.c_str()), 0);
  ExpectRefused("has 2 links");
  EXPECT_EQ(ReadFile(other), "do not overwrite");
}

TEST_F(HostileRegionTest, GroupOrOtherWritableIsRefused) {
  Attach().reset();
  for (mode_t mode : {mode_t(0664), mode_t(0646), mode_t(0620), mode_t(0602)}) {
    ASSERT_EQ(::chmod(region_.c_str(), mode), 0);
    char text[64];
    snprintf(text, sizeof text, "writable by group or others (mode %04o)", unsigned(mode));
    ExpectRefused(text);
  }
  ASSERT_EQ(::chmod(region_.c_str(), 0644), 0);
  EXPECT_TRUE(TryAttach().ok());
}

TEST_F(HostileRegionTest, AnotherOwnerIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  const passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  Attach().reset();
  ASSERT_EQ(::chown(region_.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  ExpectRefused("is owned by uid " + std::to_string(nobody->pw_uid) + ", the database by uid 0");
}

// ---- Damaged regions (R1, R2): refused while held, rebuilt by a first opener

class DamagedRegionTest : public RegionFixture {
 protected:
  void SetUp() override {
    RegionFixture::SetUp();
    Attach().reset();  // a valid region, no one attached
  }
  // With another process attached (lock_init held shared), Attach is
  // refused with `code` and `text`; alone, it rebuilds and says why.
  void ExpectRefusedThenRebuilt(Status::Code code, const std::string& text) {
    {
      ByteHolder attached(region_, kLockInit, F_RDLCK);
      std::unique_ptr<Region> r;
      Status s = TryAttach(&r);
      EXPECT_EQ(s.code(), code) << s.ToString();
      EXPECT_TRUE(Contains(s, text)) << s.ToString();
      EXPECT_TRUE(Contains(s, region_)) << s.ToString();
    }
    auto r = Attach();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->recovery().rfind("rebuilt: ", 0), 0u) << r->recovery();
    EXPECT_TRUE(r->recovery().find(text) != std::string::npos) << r->recovery();
    EXPECT_EQ(r->generation(), 1u);
    Job j;
    EXPECT_TRUE(r->ReadJob(&j).ok());
    EXPECT_EQ(j.state, JobState::kNone);
    EXPECT_EQ(r->load_armed(), 0u);
  }
};

TEST_F(DamagedRegionTest, AnotherVersion) {
  Put32(kOffVersion, 2);
  ResealHeader();
  ExpectRefusedThenRebuilt(Status::Code::kNotSupported, "format version 2 (this build reads 1)");
}

TEST_F(DamagedRegionTest, AnotherVersionOfAnotherSizeIsNamedAsAVersion) {
  Put32(kOffVersion, 7);
  ASSERT_EQ(::truncate(region_.c_str(), 100), 0);
  ExpectRefusedThenRebuilt(Status::Code::kNotSupported, "format version 7");
}

TEST_F(DamagedRegionTest, Truncated) {
  for (off_t size : {off_t(kFixedSize - 1), off_t(100), off_t(5)}) {
    ASSERT_EQ(::truncate(region_.c_str(), size), 0);
    ExpectRefusedThenRebuilt(Status::Code::kCorruption, "truncated to " + std::to_string(size) + " bytes");
  }
}

TEST_F(DamagedRegionTest, Empty) {
  ASSERT_EQ(::truncate(region_.c_str(), 0), 0);
  ByteHolder attached(region_, kLockInit, F_RDLCK);
  Status s = TryAttach();
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_TRUE(Contains(s, "truncated to 0 bytes")) << s.ToString();
}

TEST_F(DamagedRegionTest, Garbage) {
  std::mt19937_64 rng(42);
  std::string junk(kFixedSize, '\0');
  for (char& c : junk) c = char(rng());
  Write(0, junk.data(), junk.size());
  ExpectRefusedThenRebuilt(Status::Code::kCorruption, "bad magic");
}

TEST_F(DamagedRegionTest, BadHeaderChecksum) {
  Put64(kOffGeneration, 99);
  ExpectRefusedThenRebuilt(Status::Code::kCorruption, "bad header checksum");
}

TEST_F(DamagedRegionTest, HeaderFieldOutOfRange) {
  Put32(kOffPageSize, 8192);
  ResealHeader();
  ExpectRefusedThenRebuilt(Status::Code::kCorruption, "region_page_size 8192 (version 1 has 4096)");
}

TEST_F(DamagedRegionTest, AnotherDatabasesRegion) {
  // cp app.db-cowbackup other.db-cowbackup, as `cp app.db* dir/` would.
  const std::string other_db = dir_ / "other.db";
  WriteFile(other_db, "x");
  const std::string copy = RegionPathForSqlite(other_db);
  WriteFile(copy, ReadFile(region_));
  ASSERT_EQ(::chmod(copy.c_str(), 0644), 0);
  region_ = copy;
  ::close(db_fd_);
  db_fd_ = ::open(other_db.c_str(), O_RDWR | O_CLOEXEC);
  ExpectRefusedThenRebuilt(Status::Code::kCorruption, "belongs to another database file");
}

TEST_F(DamagedRegionTest, InitLockHeldExclusiveForeverIsBusyNotAHang) {
  ByteHolder stuck(region_, kLockInit, F_WRLCK);  // a first opener that never finishes
  Status s = TryAttach();
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_TRUE(Contains(s, "initialising it for over 1000 ms")) << s.ToString();
}

// ---- Damaged job sections (R3, R4, R6) ---------------------------------

using JobSectionTest = RegionFixture;

Job RunningJob(uint64_t id, int64_t pid) {
  Job j;
  j.state = JobState::kRunning;
  j.job_id = id;
  j.owner_slot = 3;
  j.owner_pid = pid;
  j.owner_start_unix_s = ProcessStartUnix(pid);
  j.volume_path = "/backups/x.cowsnap";
  return j;
}

TEST_F(JobSectionTest, LiveUnrelatedPidInTheOwnerFieldIsDeadByLock) {
  auto r = Attach();
  // A running job whose recorded owner is a live process (our parent,
  // with its true start time), armed, but whose lock_owner no one holds.
  PlantJob(RunningJob(77, ::getppid()));
  Put64(kOffArmed, ArmedValue(77));
  ASSERT_NE(r->load_armed(), 0u);
  Job j;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDead);
  EXPECT_EQ(j.owner_pid, ::getppid());
  EXPECT_EQ(r->load_armed(), 0u) << "R4 disarms the dead job";
}

TEST_F(JobSectionTest, OwnerSlotHeldByAnotherParticipantDoesNotKeepAJobAlive) {
  auto r = Attach();
  auto live = Attach();  // slot 1 is held by a live participant
  Job planted = RunningJob(78, ::getpid());
  planted.owner_slot = live->slot();
  PlantJob(planted);
  Job j;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDead) << "liveness is lock_owner, not the slot";
}

TEST_F(JobSectionTest, OwnerLockHeldMeansAlive) {
  auto r = Attach();
  PlantJob(RunningJob(79, 1));
  Put64(kOffArmed, ArmedValue(79));
  ByteHolder owner(region_, kLockOwner, F_WRLCK);
  Job j;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kRunning);
  EXPECT_EQ(r->load_armed(), ArmedValue(79));
  Job dead;
  EXPECT_TRUE(r->ClaimJob("/v", 0, &dead).IsBusy());
}

TEST_F(JobSectionTest, DamagedSectionWithoutOwnerIsResetOnce) {
  auto r = Attach();
  const struct {
    size_t offset;
    uint32_t value;
    const char* text;
  } cases[] = {{kOffJobState, 9, "job_state 9 out of range"},
               {kOffOwnerSlot, 300, "owner_slot 300 out of range"},
               {kOffT0Len, 5000, "t0_len 5000 over 2048"},
               {kOffVolumePathLen, 5000, "volume_path_len 5000 over 4095"}};
  for (const auto& c : cases) {
    PlantJob(RunningJob(80, 1));
    Put64(kOffArmed, ArmedValue(80));
    Put32(c.offset, c.value);
    ResealJob();
    Job j;
    Status s = r->ReadJob(&j);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_TRUE(Contains(s, c.text)) << s.ToString();
    EXPECT_TRUE(Contains(s, region_));
    EXPECT_EQ(r->load_armed(), 0u) << c.text;
    ASSERT_TRUE(r->ReadJob(&j).ok()) << "reset: reported once";
    EXPECT_EQ(j.state, JobState::kNone);
  }
  PlantJob(RunningJob(81, 1));
  Put32(kOffVolumePath + 2, 0x41414141);  // no reseal
  Job j, dead;
  EXPECT_TRUE(Contains(r->ReadJob(&j), "bad job section checksum"));
  EXPECT_TRUE(r->ClaimJob("/v", 0, &dead).ok()) << "a claim goes ahead over a reset section";
  EXPECT_EQ(dead.state, JobState::kNone);
  ASSERT_TRUE(r->Finish().ok());
}

TEST_F(JobSectionTest, DamagedSectionWithLiveOwnerIsRefusedAndLeftToIt) {
  auto owner = Attach();
  auto other = Attach();
  Job dead;
  ASSERT_TRUE(owner->ClaimJob("/v", 0, &dead).ok());
  ASSERT_TRUE(owner->Arm("t0").ok());
  Put32(kOffJobState, 9);  // no reseal
  Job j;
  EXPECT_TRUE(other->ReadJob(&j).IsCorruption());
  EXPECT_TRUE(other->ReadJob(&j).IsCorruption()) << "not reset under a live owner";
  EXPECT_FALSE(other->ClaimJob("/w", 0, &dead).ok());
  ASSERT_TRUE(owner->Finish().ok()) << "the owner rewrites its section";
  ASSERT_TRUE(other->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDone);
}

TEST_F(JobSectionTest, StrayArmedWordIsCleared) {
  auto r = Attach();
  Put64(kOffArmed, 0xdeadbeef);
  ASSERT_NE(r->load_armed(), 0u) << "the write path goes slow";
  Job j;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kNone);
  EXPECT_EQ(r->load_armed(), 0u);
}

TEST_F(JobSectionTest, RunningJobWhoseWordWasZeroedIsFailed) {
  auto owner = Attach();
  auto other = Attach();
  Job dead;
  ASSERT_TRUE(owner->ClaimJob("/v", 0, &dead).ok());
  ASSERT_TRUE(owner->Arm("").ok());
  const uint64_t armed = owner->load_armed();
  Put64(kOffArmed, 0);  // a writer in between would have skipped the job
  Job j;
  ASSERT_TRUE(other->ReadJob(&j).ok());
  EXPECT_EQ(owner->load_armed(), armed | kFailedBit);
  ASSERT_TRUE(owner->Finish().ok());
}

TEST_F(JobSectionTest, MetaLockHeldForeverIsBusyNotAHang) {
  auto r = Attach();
  ByteHolder stuck(region_, kLockMeta, F_WRLCK);
  Job j, dead;
  std::vector<Participant> ps;
  Status s = r->ReadJob(&j);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_TRUE(Contains(s, "meta lock was held by another process for over 100 ms")) << s.ToString();
  EXPECT_TRUE(r->ClaimJob("/v", 0, &dead).IsBusy());
  EXPECT_TRUE(r->Participants(&ps).IsBusy());
  EXPECT_TRUE(TryAttach().IsBusy()) << "a slot is taken under lock_meta";
}

TEST_F(JobSectionTest, ForeignHolderOfTheOwnerLockBlocksClaimsNotReads) {
  auto r = Attach();
  ByteHolder squatter(region_, kLockOwner, F_WRLCK);
  Job j, dead;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  Status s = r->ClaimJob("/v", 0, &dead);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_TRUE(Contains(s, "held by a process that owns no job")) << s.ToString();
}

// ---- First opener (R1) on a valid region with leftovers ------------------

TEST_F(RegionTest, FirstOpenerMarksALeftoverJobDeadAndClearsSlots) {
  Attach().reset();
  PlantJob(RunningJob(90, ::getpid()));
  Put64(kOffArmed, ArmedValue(90));
  Put32(kOffSlots + 5 * kSlotSize + kOffSlotState, 1);  // a record with no lock behind it
  Put64(kOffSlots + 5 * kSlotSize + kOffSlotPid, uint64_t(::getpid()));
  ASSERT_EQ(::truncate(region_.c_str(), kFixedSize + 8192), 0);  // a dead job's page-state area
  auto r = Attach();
  EXPECT_EQ(r->recovery(), "job 90 (pid " + std::to_string(::getpid()) + ") marked dead");
  EXPECT_EQ(r->generation(), 2u);
  EXPECT_EQ(r->load_armed(), 0u);
  Job j;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDead);
  EXPECT_EQ(j.volume_path, "/backups/x.cowsnap") << "kept for the next claim's cleanup";
  EXPECT_EQ(Get64(kOffSlots + 5 * kSlotSize + kOffSlotPid), 0u);
  struct stat st;
  ASSERT_EQ(::stat(region_.c_str(), &st), 0);
  EXPECT_EQ(uint64_t(st.st_size), kFixedSize) << "cut back to the fixed part";
}

TEST_F(RegionTest, FirstOpenerResetsADamagedJobSection) {
  Attach().reset();
  Put32(kOffJobState, 2);  // no reseal
  auto r = Attach();
  EXPECT_EQ(r->recovery().rfind("job section reset: ", 0), 0u) << r->recovery();
  Job j;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kNone);
}

// ---- Threads (TSan) -------------------------------------------------------

TEST_F(RegionTest, ThreadsWithTheirOwnRegionsClaimOneAtATime) {
  constexpr int kThreads = 4, kRounds = 100;
  std::atomic<int> owners{0}, jobs{0}, overlaps{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&] {
      std::unique_ptr<Region> r;
      if (!Region::Attach(region_, db_fd_, &r).ok()) {
        overlaps.fetch_add(1000);
        return;
      }
      for (int i = 0; i < kRounds; i++) {
        Job dead;
        if (!r->ClaimJob("/v", 4096, &dead).ok()) continue;  // Busy: another owns it
        if (owners.fetch_add(1) != 0) overlaps.fetch_add(1);
        if (r->load_armed() != 0) overlaps.fetch_add(1);
        // Busy (lock_meta not had within its bound, on a loaded machine)
        // is allowed; any other error is not.
        Status s = r->Arm("t");
        if (!s.ok() && !s.IsBusy()) overlaps.fetch_add(1);
        jobs.fetch_add(1);
        owners.fetch_sub(1);
        s = r->Finish();
        if (!s.ok() && !s.IsBusy()) overlaps.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GT(jobs.load(), 0);
}

TEST_F(RegionTest, ThreadsShareOneRegion) {
  auto r = Attach();
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; t++) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        Job j;
        std::vector<Participant> ps;
        const uint64_t armed = r->load_armed();
        if (armed != 0 && (armed & kArmedBit) == 0) errors.fetch_add(1);
        if (!r->ReadJob(&j).ok() || !r->Participants(&ps).ok() || ps.size() != 1) errors.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 200; i++) {
    Job dead;
    Status s = r->ClaimJob("/v", 0, &dead);
    if (s.ok()) s = r->Arm("t0");
    if (s.ok()) s = r->Finish();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(errors.load(), 0);
}

// ---- Looking without changing: AttachOptions, ReadProgress (`status`) ----

AttachOptions LookOnly() {
  AttachOptions o;
  o.create = false;
  o.rebuild = false;
  return o;
}

TEST_F(RegionTest, AttachWithoutCreateFindsNoRegionAndMakesNone) {
  std::unique_ptr<Region> r;
  Status s = Region::Attach(region_, db_fd_, LookOnly(), &r);
  EXPECT_EQ(s.code(), Status::Code::kNotFound) << s.ToString();
  EXPECT_TRUE(Contains(s, region_)) << s.ToString();
  EXPECT_FALSE(r);
  struct stat st;
  EXPECT_NE(::lstat(region_.c_str(), &st), 0) << "nothing created";
  // An existing region is attached to as usual: a participant like any.
  auto other = Attach();
  ASSERT_TRUE(Region::Attach(region_, db_fd_, LookOnly(), &r).ok());
  std::vector<Participant> ps;
  ASSERT_TRUE(r->Participants(&ps).ok());
  EXPECT_EQ(ps.size(), 2u);
}

TEST_F(RegionTest, AttachWithoutRebuildRefusesAnInvalidRegionAndLeavesItAlone) {
  Attach().reset();
  Put32(kOffVersion, 2);
  ResealHeader();
  const std::string before = ReadFile(region_);
  std::unique_ptr<Region> r;
  // No one else attached: a default attach would rebuild it (R1).
  Status s = Region::Attach(region_, db_fd_, LookOnly(), &r);
  EXPECT_TRUE(s.IsNotSupported()) << s.ToString();
  EXPECT_TRUE(Contains(s, "format version 2 (this build reads 1)")) << s.ToString();
  EXPECT_TRUE(Contains(s, region_)) << s.ToString();
  EXPECT_FALSE(r);
  EXPECT_EQ(ReadFile(region_), before) << "not rebuilt";
  // Garbage after the magic is refused the same way, not rebuilt.
  Put32(kOffVersion, 1);
  Put64(kOffGeneration, 99);
  s = Region::Attach(region_, db_fd_, LookOnly(), &r);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_TRUE(Contains(s, "bad header checksum")) << s.ToString();
  // The lock_init it took as first opener is gone with it.
  auto rebuilt = Attach();
  EXPECT_EQ(rebuilt->recovery().rfind("rebuilt: ", 0), 0u) << rebuilt->recovery();
}

class ProgressTest : public RegionFixture {
 protected:
  // Writes the page-state header a job's engine keeps (layout kOffPs*).
  void PutProgress(const Job& j, uint64_t pages, uint64_t preserved, uint64_t done) {
    Put64(j.page_state_offset + kOffPsPages, pages);
    Put64(j.page_state_offset + kOffPsPreserved, preserved);
    Put64(j.page_state_offset + kOffPsDone, done);
  }
};

TEST_F(ProgressTest, ReadProgressReadsTheAreaHeaderAndChecksItsBounds) {
  auto owner = Attach();
  auto viewer = Attach();
  Job dead, j;
  ASSERT_TRUE(owner->ClaimJob(dir_ / "v.cowsnap", 4096, &dead).ok());
  ASSERT_TRUE(viewer->ReadJob(&j).ok());
  JobProgress p;
  ASSERT_TRUE(viewer->ReadProgress(j, &p).ok());
  EXPECT_EQ(p.pages, 0u) << "zeroed by the claim (posix_fallocate of new space)";
  PutProgress(j, 700, 7, 420);
  ASSERT_TRUE(viewer->ReadProgress(j, &p).ok());
  EXPECT_EQ(p.pages, 700u);
  EXPECT_EQ(p.preserved, 7u);
  EXPECT_EQ(p.done, 420u);

  // Out of range, named: more pages than the area's words, counts beyond pages.
  PutProgress(j, (4096 - kPageStateHeaderSize) / 4 + 1, 0, 0);
  Status s = viewer->ReadProgress(j, &p);
  EXPECT_TRUE(s.IsCorruption() && Contains(s, "pages " + std::to_string((4096 - kPageStateHeaderSize) / 4 + 1) + " does not fit its 4096 bytes")) << s.ToString();
  EXPECT_TRUE(Contains(s, region_)) << s.ToString();
  PutProgress(j, 10, 11, 0);
  s = viewer->ReadProgress(j, &p);
  EXPECT_TRUE(s.IsCorruption() && Contains(s, "preserved 11 exceeds pages 10")) << s.ToString();
  PutProgress(j, 10, 0, 12);
  s = viewer->ReadProgress(j, &p);
  EXPECT_TRUE(s.IsCorruption() && Contains(s, "done 12 exceeds pages 10")) << s.ToString();

  // A job's fields from elsewhere: an area beyond the file is not read.
  Job beyond = j;
  beyond.page_state_size = 1 << 20;
  s = viewer->ReadProgress(beyond, &p);
  EXPECT_EQ(s.code(), Status::Code::kNotFound) << s.ToString();
  EXPECT_TRUE(Contains(s, "beyond the file")) << s.ToString();
  Job inside = j;
  inside.page_state_offset = 0;
  s = viewer->ReadProgress(inside, &p);
  EXPECT_TRUE(s.IsCorruption() && Contains(s, "out of range")) << s.ToString();
  ASSERT_TRUE(owner->Finish().ok());

  // No area at all.
  ASSERT_TRUE(owner->ClaimJob(dir_ / "w.cowsnap", 0, &dead).ok());
  ASSERT_TRUE(viewer->ReadJob(&j).ok());
  s = viewer->ReadProgress(j, &p);
  EXPECT_EQ(s.code(), Status::Code::kNotFound) << s.ToString();
  EXPECT_TRUE(Contains(s, "none (size 0)")) << s.ToString();
  ASSERT_TRUE(owner->Finish().ok());
}

TEST_F(ProgressTest, ReadProgressOfAJobWhoseAreaAFirstOpenerCutIsNotFound) {
  Job j;
  {
    auto owner = Attach();
    Job dead;
    ASSERT_TRUE(owner->ClaimJob(dir_ / "v.cowsnap", 8192, &dead).ok());
    ASSERT_TRUE(owner->ReadJob(&j).ok());
  }  // detached unfinished: dead; the next first opener cuts the file back (R1)
  auto r = Attach();
  Job now;
  ASSERT_TRUE(r->ReadJob(&now).ok());
  EXPECT_EQ(now.state, JobState::kDead);
  JobProgress p;
  Status s = r->ReadProgress(now, &p);
  EXPECT_EQ(s.code(), Status::Code::kNotFound) << s.ToString();
}

}  // namespace
}  // namespace cowbackup::coord::test
