// Participation (coord/participation.h): a job's owner and the processes
// that take part in it, through the region and the job's page-state area.
// Real processes (fork): a participant preserves pages into the owner's
// snapshot volume through a FileSource over a real file and the owner sees
// them; a participant refuses a volume that is not a private file of its
// user, an area that is shorter than the section says or that claims more
// pages than it holds; the owner's death ends the job for a participant
// within one poll, and a participant's failure reaches the owner by name.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "coord/participation.h"
#include "coord/region_test_util.h"
#include "engine/file_source.h"
#include "engine/shared_pages.h"
#include "engine/snapshot_volume.h"

namespace cowbackup::coord::test {
namespace {

using cowbackup::test::ReadFile;
using cowbackup::test::WriteFile;

constexpr uint32_t kPageSize = 4096;
constexpr uint64_t kPages = 8;

bool Contains(const Status& s, const std::string& text) { return s.ToString().find(text) != std::string::npos; }

// The area ClaimJob reserves for `pages` (whole region pages).
uint64_t AreaBytes(uint64_t pages) {
  return (SharedPages::AreaSize(pages) + kRegionPageSize - 1) / kRegionPageSize * kRegionPageSize;
}

// Page `pgno` of the data file as first written.
std::string PageImage(uint64_t pgno) { return std::string(kPageSize, char('A' + pgno)); }

class ParticipationTest : public RegionFixture {
 protected:
  void SetUp() override {
    RegionFixture::SetUp();
    data_ = dir_ / "data";
    std::string image;
    for (uint64_t p = 0; p < kPages; p++) image += PageImage(p);
    WriteFile(data_, image);
    volume_path_ = dir_ / "job.cowsnap";
  }

  // This process owns a job for kPages pages whose volume it creates at
  // volume_path_: claims, makes its Participation, arms.
  void Own(Region* r) {
    ASSERT_TRUE(FileSnapshotVolume::Create(volume_path_, kPageSize, data_, &volume_).ok());
    Own(r, volume_path_);
  }
  void Own(Region* r, const std::string& volume_path) {
    Job dead;
    Status s = r->ClaimJob(volume_path, AreaBytes(kPages), &dead, &job_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = Participation::ForOwner(r, job_, kPages, &mine_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(r->Arm("t0").ok());
    seen_ = r->load_armed();
    ASSERT_EQ(seen_, ArmedValue(job_.job_id));
  }

  // Joins the running job as `r` sees it: the write path's slow path.
  Status Join(Region* r, std::unique_ptr<Participation>* p, uint32_t page_size = kPageSize) {
    Job j;
    const uint64_t seen = r->load_armed();
    Status s = r->ReadJob(&j);
    if (!s.ok()) return s;
    return Participation::Join(r, seen, j, page_size, p);
  }

  std::string data_, volume_path_;
  std::unique_ptr<FileSnapshotVolume> volume_;  // the owner's
  std::unique_ptr<Participation> mine_;         // the owner's
  Job job_;
  uint64_t seen_ = 0;
};

// ---- Preserving through a participant -----------------------------------

TEST_F(ParticipationTest, ParticipantPreservesPagesTheOwnerFindsInItsVolume) {
  auto owner = Attach();
  ASSERT_NO_FATAL_FAILURE(Own(owner.get()));
  EXPECT_EQ(mine_->volume(), nullptr) << "the owner's volume is its job's";
  EXPECT_TRUE(mine_->job_current());
  const pid_t child = Spawn([&] {
    owner->ForgetAfterFork();
    std::unique_ptr<Region> r;
    std::unique_ptr<Participation> p;
    if (!Region::Attach(region_, db_fd_, &r).ok()) return 1;
    const uint64_t seen = r->load_armed();
    if (!Join(r.get(), &p).ok() || p->volume() == nullptr || p->pages().pages() != kPages) return 2;
    if (!p->job_current()) return 3;
    const int fd = ::open(data_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return 4;
    FileSource source(fd, data_, kPageSize);
    if (!r->Enter(seen)) return 5;
    p->pages().WriteThrough({2, 5}, &source, p->volume(), kPageSize);
    // The write lands only now.
    const std::string x(3 * kPageSize, 'X');
    if (::pwrite(fd, x.data(), x.size(), 2 * kPageSize) != ssize_t(x.size())) return 6;
    r->Leave();
    return p->job_current() ? 0 : 7;
  });
  const int status = Wait(child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0);

  for (uint64_t p = 0; p < kPages; p++) {
    EXPECT_EQ(mine_->pages().load(p), p >= 2 && p < 5 ? SharedPages::kPreserved : SharedPages::kPending)
        << "page " << p;
  }
  EXPECT_EQ(mine_->pages().preserved(), 3u);
  EXPECT_EQ(ReadFile(data_).substr(2 * kPageSize, kPageSize), std::string(kPageSize, 'X')) << "the write landed";
  std::string page(kPageSize, '\0');
  for (uint64_t p = 2; p < 5; p++) {
    ASSERT_TRUE(volume_->get(p, reinterpret_cast<uint8_t*>(page.data())).ok()) << p;
    EXPECT_TRUE(page == PageImage(p)) << "page " << p << " is its T0 image";
  }
  EXPECT_TRUE(mine_->pages().Failure().ok());
  EXPECT_TRUE(mine_->job_current());
  EXPECT_EQ(owner->load_armed(), seen_) << "not failed";
  ASSERT_TRUE(owner->Finish().ok());
}

TEST_F(ParticipationTest, ThreadsOfOneParticipantShareItsParticipation) {
  // TSan's part: one Participation and Region used by several threads.
  auto owner = Attach();
  auto writer = Attach();
  ASSERT_NO_FATAL_FAILURE(Own(owner.get()));
  std::unique_ptr<Participation> p;
  ASSERT_TRUE(Join(writer.get(), &p).ok());
  const int fd = ::open(data_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  FileSource source(fd, data_, kPageSize);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; i++) {
        if (!p->job_current()) errors.fetch_add(1);
        if (!writer->Enter(seen_)) {
          errors.fetch_add(1);
          continue;
        }
        p->pages().WriteThrough({t, t + 4}, &source, p->volume(), kPageSize);  // overlapping
        writer->Leave();
      }
    });
  }
  for (auto& t : threads) t.join();
  ::close(fd);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(InsideCount(writer->slot()), 0u);
  EXPECT_EQ(mine_->pages().preserved(), 7u) << "each page once";
  std::string page(kPageSize, '\0');
  for (uint64_t pg = 0; pg < 7; pg++) {
    EXPECT_EQ(mine_->pages().load(pg), SharedPages::kPreserved) << pg;
    ASSERT_TRUE(volume_->get(pg, reinterpret_cast<uint8_t*>(page.data())).ok());
    EXPECT_TRUE(page == PageImage(pg)) << pg;
  }
  EXPECT_EQ(mine_->pages().load(7), SharedPages::kPending);
  ASSERT_TRUE(owner->Finish().ok());
}

// ---- What a participant refuses -------------------------------------------

TEST_F(ParticipationTest, JoinRefusesAVolumeThatIsNotAPrivateFileOfThisUser) {
  auto owner = Attach();
  auto writer = Attach();
  std::unique_ptr<FileSnapshotVolume> real;
  ASSERT_TRUE(FileSnapshotVolume::Create(dir_ / "real.cowsnap", kPageSize, data_, &real).ok());
  std::unique_ptr<FileSnapshotVolume> open_mode, foreign;
  ASSERT_TRUE(FileSnapshotVolume::Create(dir_ / "0644.cowsnap", kPageSize, data_, &open_mode).ok());
  ASSERT_EQ(::chmod((dir_ / "0644.cowsnap").c_str(), 0644), 0);
  ASSERT_EQ(::symlink((dir_ / "real.cowsnap").c_str(), (dir_ / "link.cowsnap").c_str()), 0);
  ASSERT_EQ(::mkfifo((dir_ / "fifo.cowsnap").c_str(), 0600), 0);
  const bool root = ::geteuid() == 0;
  if (root) {
    ASSERT_TRUE(FileSnapshotVolume::Create(dir_ / "foreign.cowsnap", kPageSize, data_, &foreign).ok());
    ASSERT_EQ(::chown((dir_ / "foreign.cowsnap").c_str(), 65534, 65534), 0);
  }
  const struct {
    std::string name;
    uint32_t page_size;
    const char* why;  // "" if the join must succeed
  } cases[] = {
      {"real.cowsnap", kPageSize, ""},
      {"link.cowsnap", kPageSize, "is a symbolic link; only a regular file is used"},
      {"fifo.cowsnap", kPageSize, "is a FIFO; only a regular file is used"},
      {"0644.cowsnap", kPageSize, "mode 0600"},
      {"foreign.cowsnap", kPageSize, "owner"},
      {"real.cowsnap", 2 * kPageSize, "page size 4096, the job's is 8192"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name + " for page size " + std::to_string(c.page_size));
    if (c.name == "foreign.cowsnap" && !root) {
      printf("skipped: another user's volume (needs root)\n");
      continue;
    }
    ASSERT_NO_FATAL_FAILURE(Own(owner.get(), dir_ / c.name));
    std::unique_ptr<Participation> p;
    Status s = Join(writer.get(), &p, c.page_size);
    if (*c.why == '\0') {
      EXPECT_TRUE(s.ok()) << s.ToString();
      EXPECT_NE(p, nullptr);
    } else {
      EXPECT_FALSE(s.ok());
      EXPECT_EQ(p, nullptr);
      EXPECT_TRUE(Contains(s, dir_ / c.name)) << "names the file: " << s.ToString();
      EXPECT_TRUE(Contains(s, c.why)) << s.ToString();
    }
    p.reset();
    mine_.reset();
    ASSERT_TRUE(owner->Finish().ok());
  }
  EXPECT_EQ(ReadFile(dir_ / "real.cowsnap").size(), kVolumeHeaderSize) << "nothing written through the link";
}

TEST_F(ParticipationTest, MapAreaRefusesARegionTruncatedBelowTheArea) {
  auto owner = Attach();
  auto other = Attach();
  constexpr uint64_t kManyPages = 3800;  // an area of 4 region pages
  Job dead, job;
  ASSERT_TRUE(owner->ClaimJob(volume_path_, AreaBytes(kManyPages), &dead, &job).ok());
  ASSERT_EQ(job.page_state_size, 4 * kRegionPageSize);
  const uint64_t end = job.page_state_offset + job.page_state_size;
  const int fd = ::open(region_.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  for (const uint64_t size : {end - 1, end - kRegionPageSize, uint64_t(kFixedSize)}) {
    SCOPED_TRACE("file of " + std::to_string(size) + " bytes");
    ASSERT_EQ(::ftruncate(fd, off_t(size)), 0);
    std::unique_ptr<Region::Area> area;
    Status s = other->MapArea(job, &area);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_TRUE(Contains(s, region_)) << s.ToString();
    EXPECT_TRUE(Contains(s, "is " + std::to_string(size) + " bytes")) << s.ToString();
    EXPECT_EQ(area, nullptr);
    std::unique_ptr<Participation> p;
    EXPECT_TRUE(Participation::ForOwner(owner.get(), job, kManyPages, &p).IsCorruption());
    EXPECT_EQ(p, nullptr);
  }
  ASSERT_EQ(::ftruncate(fd, off_t(end)), 0);
  ::close(fd);
  std::unique_ptr<Region::Area> area;
  Status s = other->MapArea(job, &area);
  ASSERT_TRUE(s.ok()) << "a file that just holds the area: " << s.ToString();
  EXPECT_EQ(area->size(), job.page_state_size);
  std::unique_ptr<Participation> p;
  EXPECT_TRUE(Participation::ForOwner(owner.get(), job, kManyPages + 1000, &p).IsInvalidArgument())
      << "more pages than the area holds";
  ASSERT_TRUE(owner->Finish().ok());
}

TEST_F(ParticipationTest, JoinRefusesAnAreaThatClaimsMorePagesThanItHolds) {
  auto owner = Attach();
  auto writer = Attach();
  ASSERT_NO_FATAL_FAILURE(Own(owner.get()));
  const uint64_t fit = (job_.page_state_size - SharedPages::kHeaderSize) / 4;
  const size_t at = job_.page_state_offset + SharedPages::kOffPages;
  for (const uint64_t pages : {fit, fit + 1, uint64_t(1) << 62, ~uint64_t(0)}) {
    SCOPED_TRACE(std::to_string(pages) + " pages");
    Write(at, &pages, sizeof pages);  // host order, as the area's atomics
    std::unique_ptr<Participation> p;
    Status s = Join(writer.get(), &p);
    if (pages == fit) {
      ASSERT_TRUE(s.ok()) << "the most the area holds: " << s.ToString();
      EXPECT_EQ(p->pages().pages(), fit);
    } else {
      EXPECT_TRUE(s.IsCorruption()) << s.ToString();
      EXPECT_TRUE(Contains(s, "says " + std::to_string(pages) + " pages, more than its " +
                                  std::to_string(job_.page_state_size) + " bytes hold"))
          << s.ToString();
      EXPECT_TRUE(Contains(s, region_)) << s.ToString();
      EXPECT_EQ(p, nullptr);
    }
  }
  ASSERT_TRUE(owner->Finish().ok());
}

// ---- The owner's death, a participant's failure -----------------------------

TEST_F(ParticipationTest, OwnerKilledEndsTheJobForAParticipantWithinOnePoll) {
  Pipe ready, hold;
  const pid_t child = Spawn([&] {
    std::unique_ptr<Region> r;
    if (!Region::Attach(region_, db_fd_, &r).ok()) return 1;
    Own(r.get());
    if (::testing::Test::HasFailure()) return 2;
    // The copier holds page 0 when it dies.
    std::vector<SharedPages::Take> take;
    mine_->pages().ClaimForCopy({0, 1}, false, &take);
    if (take[0] != SharedPages::Take::kSource) return 3;
    ready.Tell();
    hold.CloseWrite();
    hold.Hear();
    return 0;
  });
  ready.CloseWrite();
  ASSERT_TRUE(ready.Hear());
  auto r = Attach();
  std::unique_ptr<Participation> p;
  Status s = Join(r.get(), &p);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const uint64_t seen = r->load_armed();
  EXPECT_GE(p->pages().load(0), SharedPages::kBusy);
  EXPECT_TRUE(p->job_current()) << "checks the owner: alive";

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_TRUE(WIFSIGNALED(Wait(child)));
  // A write to the page the dead copier held goes on.
  const int fd = ::open(data_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  FileSource source(fd, data_, kPageSize);
  ASSERT_TRUE(r->Enter(seen)) << "no one has looked yet";
  p->pages().WriteThrough({0, 2}, &source, p->volume(), kPageSize);
  r->Leave();
  ::close(fd);
  // The owner was last checked before the kill: once kPollMs has passed
  // since then, the next call checks again and finds it dead.
  std::this_thread::sleep_for(std::chrono::milliseconds(SharedPages::kPollMs + 1));
  EXPECT_FALSE(p->job_current());
  // job_current itself marked the job dead (R4) and disarmed the word (R6):
  // nothing else has read the section since the owner died.
  EXPECT_EQ(Get32(kOffJobState), uint32_t(JobState::kDead));
  EXPECT_EQ(Get64(kOffArmed), 0u);
  EXPECT_FALSE(p->job_current());
  EXPECT_FALSE(r->Enter(seen));
  Job j, dead;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDead);
  EXPECT_EQ(j.owner_pid, child);
  p.reset();
  s = r->ClaimJob(dir_ / "next.cowsnap", AreaBytes(kPages), &dead);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(dead.volume_path, volume_path_) << "handed back for cleanup";
  ASSERT_TRUE(r->Finish().ok());
}

TEST_F(ParticipationTest, ParticipantsFailureFailsTheJobAndNamesItsPid) {
  auto owner = Attach();
  ASSERT_NO_FATAL_FAILURE(Own(owner.get()));
  const pid_t child = Spawn([&] {
    owner->ForgetAfterFork();
    std::unique_ptr<Region> r;
    std::unique_ptr<Participation> p;
    if (!Region::Attach(region_, db_fd_, &r).ok() || !Join(r.get(), &p).ok()) return 1;
    p->fail(Status::IOError("cannot preserve page 3", "/some/volume"));
    return p->job_current() ? 2 : 0;
  });
  const int status = Wait(child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(owner->load_armed(), seen_ | kFailedBit);
  EXPECT_FALSE(mine_->job_current());
  int64_t pid = 0;
  const Status why = mine_->pages().Failure(&pid);
  EXPECT_EQ(why.code(), Status::Code::kIOError) << why.ToString();
  EXPECT_NE(why.message().find("cannot preserve page 3"), std::string::npos) << why.ToString();
  EXPECT_EQ(pid, child);
  ASSERT_TRUE(owner->Finish().ok());
  EXPECT_EQ(owner->load_armed(), 0u);
}

TEST_F(ParticipationTest, AStuckMetaLockDoesNotHoldAWriterOnADeadWritersPage) {
  // Page 3 is held by a writer that died (slot 9, whose lock no one
  // holds), and lock_meta is held by a process that never lets go (stopped
  // mid-call, or hostile). The owner lives. Whether page 3's holder is gone
  // is told by byte locks and the slot's count, without lock_meta: the
  // writer must go on.
  auto owner = Attach();
  ASSERT_NO_FATAL_FAILURE(Own(owner.get()));
  const uint32_t dead_writer = kBusyBit | (5u << kTagShift) | 9u;
  Write(job_.page_state_offset + SharedPages::kHeaderSize + 3 * 4, &dead_writer, 4);
  ASSERT_EQ(mine_->pages().load(3), dead_writer);
  Pipe joined, go;
  const pid_t child = Spawn([&] {
    owner->ForgetAfterFork();
    ::alarm(20);  // a writer held here fails the test instead of hanging it
    std::unique_ptr<Region> r;
    std::unique_ptr<Participation> p;
    if (!Region::Attach(region_, db_fd_, &r).ok() || !Join(r.get(), &p).ok()) return 1;  // both take lock_meta
    joined.Tell();
    go.CloseWrite();
    if (!go.Hear()) return 2;
    const int fd = ::open(data_.c_str(), O_RDONLY | O_CLOEXEC);
    FileSource source(fd, data_, kPageSize);
    if (!r->Enter(seen_)) return 3;
    p->pages().WriteThrough({2, 5}, &source, p->volume(), kPageSize);
    r->Leave();
    return 0;
  });
  joined.CloseWrite();
  ASSERT_TRUE(joined.Hear());
  ByteHolder stuck(region_, kLockMeta, F_WRLCK);
  go.Tell();
  const int status = Wait(child);
  EXPECT_FALSE(WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) << "the writer was held";
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(mine_->pages().load(3), SharedPages::kPreserved) << "the dead writer's claim was reset and taken";
  EXPECT_EQ(mine_->pages().preserved(), 3u);
  std::string page(kPageSize, '\0');
  ASSERT_TRUE(volume_->get(3, reinterpret_cast<uint8_t*>(page.data())).ok());
  EXPECT_TRUE(page == PageImage(3));
  EXPECT_TRUE(mine_->job_current());
}

// ---- Region abuse with a job armed ----------------------------------------

// A running job planted by no Region: owner fields of a live unrelated
// process (pid 1), an area, an armed word, and no one holding lock_owner.
class PlantedJobTest : public ParticipationTest {
 protected:
  Job Plant() {
    Job j;
    j.state = JobState::kRunning;
    j.job_id = 4242;
    j.owner_slot = 7;
    j.owner_pid = 1;
    j.owner_start_unix_s = ProcessStartUnix(1);
    j.page_state_offset = kFixedSize;
    j.page_state_size = AreaBytes(kPages);
    j.volume_path = volume_path_;
    PlantJob(j);
    const int fd = ::open(region_.c_str(), O_RDWR | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::ftruncate(fd, off_t(kFixedSize + j.page_state_size)), 0);
    ::close(fd);
    std::string area(j.page_state_size, '\0');
    SharedPages::Init(reinterpret_cast<uint8_t*>(area.data()), kPages);
    // Page 0 held by the planted owner's copier.
    const uint32_t copier = kBusyBit | kBusyCopierBit | (5u << kTagShift) | j.owner_slot;
    memcpy(area.data() + SharedPages::kHeaderSize, &copier, 4);
    Write(kFixedSize, area.data(), area.size());
    Put64(kOffArmed, ArmedValue(j.job_id));
    return j;
  }
};

TEST_F(PlantedJobTest, ReadJobMarksItDeadAndDisarms) {
  auto r = Attach();
  const Job planted = Plant();
  const uint64_t seen = r->load_armed();
  ASSERT_EQ(seen, ArmedValue(planted.job_id));
  EXPECT_FALSE(r->OwnerAlive()) << "pid 1 lives, but holds no lock of ours";
  Job j;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDead);
  EXPECT_EQ(j.owner_pid, 1);
  EXPECT_EQ(r->load_armed(), 0u);
  EXPECT_FALSE(r->Enter(seen));
  std::unique_ptr<Participation> p;
  EXPECT_TRUE(Participation::Join(r.get(), seen, j, kPageSize, &p).IsBusy()) << "not a running job";
  Job dead;
  ASSERT_TRUE(r->ClaimJob(dir_ / "next.cowsnap", 0, &dead).ok());
  EXPECT_EQ(dead.job_id, planted.job_id);
  ASSERT_TRUE(r->Finish().ok());
}

TEST_F(PlantedJobTest, AWriterThatJoinedItIsNeverHeldByIt) {
  std::unique_ptr<FileSnapshotVolume> volume;
  ASSERT_TRUE(FileSnapshotVolume::Create(volume_path_, kPageSize, data_, &volume).ok());
  auto r = Attach();
  const Job planted = Plant();
  const uint64_t seen = r->load_armed();
  // Joined with the section as read (a writer that looked while an owner
  // seemed alive); its first wait is on the planted copier's page 0.
  std::unique_ptr<Participation> p;
  Status s = Participation::Join(r.get(), seen, planted, kPageSize, &p);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const int fd = ::open(data_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  FileSource source(fd, data_, kPageSize);
  ASSERT_TRUE(r->Enter(seen));
  p->pages().WriteThrough({0, 1}, &source, p->volume(), kPageSize);  // returns: the test's point
  r->Leave();
  ::close(fd);
  EXPECT_FALSE(p->job_current());
  EXPECT_EQ(r->load_armed(), 0u);
  Job j;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDead);
}

}  // namespace
}  // namespace cowbackup::coord::test
