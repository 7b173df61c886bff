// SharedPages (engine/shared_pages.h) and CopyJob in shared mode.
//
// Unit cases drive one rule each with parties of a test Peers
// (shared_pages_peer.h): claim and publish, waiting on the copier, the
// copier leaving a writer's page for later, overlay mode, a dead writer's
// or copier's claim, a failed preservation, the recorded failure, and a
// job that stops being current while someone waits.
//
// The torture runs CopyJob in shared mode against a real file written by
// writer threads of this process and by forked writer processes, each
// taking part through its own SharedPages over one MAP_SHARED area and the
// job's FileSnapshotVolume opened by path; the archive must equal the T0
// image. Its kill variant stops a writer process at a sync point while it
// holds claims (SIGSTOP), SIGKILLs it, and marks it dead: the job still
// completes with the T0 image, the dead holder's pages reset.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "engine/copy_job.h"
#include "engine/file_source.h"
#include "engine/shared_pages.h"
#include "engine/snapshot_volume.h"
#include "engine/sync_point.h"
#include "memory_parts.h"
#include "shared_pages_peer.h"
#include "test_util/files.h"
#include "test_util/sync_points.h"
#include "test_util/wait_for.h"

namespace cowbackup::test {
namespace {

using namespace std::chrono_literals;
using Take = SharedPages::Take;

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

// Counts the hits of one sync point; a test waits for the nth (a minute at
// most: a protocol that never gets there fails instead of hanging).
class PointCounter {
 public:
  explicit PointCounter(std::string point) : point_(std::move(point)) {
    sync::SetCallback([this](const char* name) {
      if (point_ != name) return;
      std::lock_guard<std::mutex> lock(mu_);
      hits_++;
      cv_.notify_all();
    });
  }
  ~PointCounter() { sync::SetCallback(nullptr); }
  [[nodiscard]] bool WaitFor(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 60s, [&] { return hits_ >= n; });
  }

 private:
  const std::string point_;
  std::mutex mu_;
  std::condition_variable cv_;
  int hits_ = 0;
};

class SharedPagesTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kPageSize = 64;
  static constexpr uint64_t kPages = 16;

  SharedPagesTest()
      : shared_(kPages),
        t0_(RandomBytes(kPages * kPageSize, 7)),
        source_(kPageSize, t0_),
        volume_(kPageSize),
        copier_(&shared_, kOwner),
        writer_(&shared_, 1),
        other_(&shared_, 2) {
    volume_.repeat_ok = true;
  }

  void Write(TestParty& party, PageRange pages) {
    party.pages.WriteThrough(pages, &source_, &volume_, kPageSize);
  }
  uint32_t Word(uint64_t pgno) { return copier_.pages.load(pgno); }
  std::vector<uint8_t> T0Page(uint64_t pgno) {
    return {t0_.begin() + pgno * kPageSize, t0_.begin() + (pgno + 1) * kPageSize};
  }
  // The volume holds exactly T0's bytes for `pgno`.
  bool VolumeHoldsT0(uint64_t pgno) {
    auto it = volume_.pages.find(pgno);
    return it != volume_.pages.end() && it->second == T0Page(pgno);
  }
  PeerTable* table() { return shared_.table(); }

  SyncPointGuard guard_;
  SharedArea shared_;
  const std::vector<uint8_t> t0_;
  MemorySource source_;
  MemoryVolume volume_;
  TestParty copier_, writer_, other_;
};

TEST_F(SharedPagesTest, WriterClaimsPreservesAndPublishes) {
  Write(writer_, {2, 5});
  for (uint64_t p = 0; p < kPages; p++) {
    EXPECT_EQ(Word(p), (p >= 2 && p < 5) ? SharedPages::kPreserved : SharedPages::kPending) << p;
  }
  for (uint64_t p : {2, 3, 4}) EXPECT_TRUE(VolumeHoldsT0(p)) << p;
  EXPECT_EQ(source_.reads, 1u) << "one run, one read";
  EXPECT_EQ(copier_.pages.preserved(), 3u);
  // Settled pages are skipped: only page 1 is new.
  Write(other_, {1, 4});
  EXPECT_EQ(Word(1), SharedPages::kPreserved);
  EXPECT_EQ(copier_.pages.preserved(), 4u);
  EXPECT_EQ(volume_.pages.size(), 4u);
  // Past T0: clipped, the last page only.
  Write(other_, {kPages - 1, kPages + 5});
  EXPECT_EQ(Word(kPages - 1), SharedPages::kPreserved);
  EXPECT_EQ(volume_.pages.size(), 5u);
  EXPECT_EQ(table()->fails.load(), 0u);
  EXPECT_EQ(FailureText(copier_.pages), "");
}

// A writer reaching a page the copier is reading waits until the copier
// publishes it, and then has nothing to preserve.
TEST_F(SharedPagesTest, WriterWaitsWhileTheCopierReadsItsPage) {
  std::vector<Take> take;
  copier_.pages.ClaimForCopy({0, 8}, /*overlay=*/false, &take);
  for (uint64_t p = 0; p < 8; p++) {
    EXPECT_EQ(take[p], Take::kSource);
    EXPECT_EQ(Word(p), copier_.busy_word(true));
  }
  PointCounter waits("SharedPages::wait");
  std::atomic<bool> done{false};
  std::thread w([&] {
    Write(writer_, {3, 4});
    done = true;
  });
  ASSERT_TRUE(waits.WaitFor(1)) << "the writer never waited";
  EXPECT_FALSE(done.load()) << "a writer went past the copier's claim";
  copier_.pages.PublishCopied({0, 8}, false, take);
  w.join();
  EXPECT_EQ(Word(3), SharedPages::kCopied);
  EXPECT_TRUE(volume_.pages.empty()) << "a copied page needs no pre-image";
}

// The copier never waits while it holds claims: a page a writer holds is
// left for later, and taken from the volume once the writer published it.
TEST_F(SharedPagesTest, CopierLeavesAWritersPageForLaterThenTakesItFromTheVolume) {
  ParkAt preserving("CopyJob::preserve:read");
  std::thread w([&] { Write(writer_, {3, 5}); });
  preserving.WaitUntilParked();  // pages 3 and 4 claimed, not yet read
  std::vector<Take> take;
  copier_.pages.ClaimForCopy({0, 8}, false, &take);
  for (uint64_t p = 0; p < 8; p++) {
    const bool held = p == 3 || p == 4;
    EXPECT_EQ(take[p], held ? Take::kLater : Take::kSource) << p;
    EXPECT_EQ(Word(p), held ? writer_.busy_word(false) : copier_.busy_word(true)) << p;
  }
  copier_.pages.PublishCopied({0, 8}, false, take);
  EXPECT_FALSE(copier_.pages.NoneBusy());
  preserving.Release();
  w.join();
  EXPECT_TRUE(copier_.pages.WaitForWriters({0, 8}));
  copier_.pages.ClaimForCopy({0, 8}, false, &take);
  for (uint64_t p = 0; p < 8; p++) {
    EXPECT_EQ(take[p], (p == 3 || p == 4) ? Take::kVolume : Take::kSkip) << p;
  }
  std::vector<uint8_t> page(kPageSize);
  ASSERT_TRUE(volume_.get(3, page.data()).ok());
  EXPECT_EQ(page, T0Page(3));
  EXPECT_TRUE(copier_.pages.NoneBusy());
}

// kOverlayAtEnd claims nothing; it publishes copied only the pages still
// pending, so a page a writer took stays the writer's (overlaid at the end).
TEST_F(SharedPagesTest, OverlayCopierClaimsNothingAndPublishesOnlyPendingPages) {
  std::vector<Take> take;
  copier_.pages.ClaimForCopy({0, 8}, /*overlay=*/true, &take);
  for (uint64_t p = 0; p < 8; p++) {
    EXPECT_EQ(take[p], Take::kSource);
    EXPECT_EQ(Word(p), SharedPages::kPending) << "overlay claimed page " << p;
  }
  Write(writer_, {2, 3});  // no wait: nothing is busy
  ParkAt preserving("CopyJob::preserve:read");
  std::thread w([&] { Write(other_, {5, 6}); });
  preserving.WaitUntilParked();
  copier_.pages.PublishCopied({0, 8}, true, take);
  EXPECT_EQ(Word(2), SharedPages::kPreserved);
  EXPECT_EQ(Word(5), other_.busy_word(false)) << "a page being preserved became copied";
  for (uint64_t p : {0, 1, 3, 4, 6, 7}) EXPECT_EQ(Word(p), SharedPages::kCopied) << p;
  // A busy page is read anyway, never left for later, in overlay mode.
  copier_.pages.ClaimForCopy({5, 6}, true, &take);
  EXPECT_EQ(take[0], Take::kSource);
  preserving.Release();
  w.join();
  EXPECT_EQ(Word(5), SharedPages::kPreserved);
  EXPECT_TRUE(VolumeHoldsT0(2));
  EXPECT_TRUE(VolumeHoldsT0(5));
}

// A writer that died holding claims (here: after claiming and preserving,
// before publishing) never wrote: its pages go back to pending, and the next
// party claims them, a writer to preserve, the copier to read.
TEST_F(SharedPagesTest, DeadWritersClaimIsResetAndClaimedByAnother) {
  TestParty dead(&shared_, 3);
  SharedPagesTestPeer steps(&dead.pages);
  std::vector<PageRange> claimed;
  uint32_t busy = 0;
  for (uint64_t p : {4, 5, 9}) {
    ASSERT_EQ(steps.TryClaim(p, &busy, &claimed), SharedPagesTestPeer::Claim::kClaimed);
  }
  ASSERT_TRUE(steps.Preserve(claimed, &source_, &volume_, kPageSize).ok());
  table()->dead[3] = 1;  // the kernel released its lock
  Write(writer_, {4, 6});
  EXPECT_EQ(Word(4), SharedPages::kPreserved);
  EXPECT_EQ(Word(5), SharedPages::kPreserved);
  EXPECT_TRUE(VolumeHoldsT0(4));
  std::vector<Take> take;
  copier_.pages.ClaimForCopy({8, 10}, false, &take);
  EXPECT_EQ(take[1], Take::kSource);
  EXPECT_EQ(Word(9), copier_.busy_word(true));
  // The copier waiting for writers, and at the end, resets them too.
  for (uint64_t p : {12, 14}) {
    ASSERT_EQ(steps.TryClaim(p, &busy, &claimed), SharedPagesTestPeer::Claim::kClaimed);
  }
  EXPECT_TRUE(copier_.pages.WaitForWriters({12, 13}));
  EXPECT_EQ(Word(12), SharedPages::kPending);
  EXPECT_EQ(Word(14), dead.busy_word(false));
  copier_.pages.PublishCopied({8, 10}, false, take);
  EXPECT_TRUE(copier_.pages.NoneBusy());
  EXPECT_EQ(Word(14), SharedPages::kPending);
  EXPECT_EQ(table()->fails.load(), 0u);
}

// A holder that dies while someone waits for it releases the waiter at the
// next poll, with no wake from anyone.
TEST_F(SharedPagesTest, WaiterOnAHolderThatDiesClaimsThePage) {
  TestParty holder(&shared_, 3);
  SharedPagesTestPeer steps(&holder.pages);
  std::vector<PageRange> claimed;
  uint32_t busy = 0;
  ASSERT_EQ(steps.TryClaim(7, &busy, &claimed), SharedPagesTestPeer::Claim::kClaimed);
  PointCounter waits("SharedPages::wait");
  std::thread w([&] { Write(writer_, {6, 9}); });
  // It waits, and is still waiting after a poll.
  ASSERT_TRUE(waits.WaitFor(2)) << "the writer never waited";
  EXPECT_EQ(Word(6), writer_.busy_word(false)) << "claims below the busy page are kept";
  table()->dead[3] = 1;
  w.join();
  for (uint64_t p : {6, 7, 8}) {
    EXPECT_EQ(Word(p), SharedPages::kPreserved) << p;
    EXPECT_TRUE(VolumeHoldsT0(p)) << p;
  }
}

// The copier died holding claims. Until the front end's job_current() notices
// (it checks the owner at most every kPollMs), holder_gone() already says so:
// a writer resets the claim and preserves. Once the job is not current, a
// writer returns at once, preserving nothing (the job is dead).
TEST_F(SharedPagesTest, DeadCopiersClaimReleasesWriters) {
  std::vector<Take> take;
  copier_.pages.ClaimForCopy({0, 4}, false, &take);
  table()->dead[kOwner] = 1;
  Write(writer_, {1, 2});
  EXPECT_EQ(Word(1), SharedPages::kPreserved);
  EXPECT_TRUE(VolumeHoldsT0(1));
  table()->current = 0;
  Write(writer_, {2, 3});
  EXPECT_EQ(Word(2), copier_.busy_word(true));
  EXPECT_EQ(volume_.pages.count(2), 0u);
}

// A writer waiting on the copier's page when the job stops being current
// (the copier died, or someone failed the job without a wake reaching this
// waiter) returns within one more poll.
TEST_F(SharedPagesTest, JobNoLongerCurrentReleasesAWaiterWithinAPoll) {
  std::vector<Take> take;
  copier_.pages.ClaimForCopy({0, 4}, false, &take);
  PointCounter waits("SharedPages::wait");
  std::atomic<bool> done{false};
  std::thread w([&] {
    Write(writer_, {2, 3});
    done = true;
  });
  ASSERT_TRUE(waits.WaitFor(2)) << "the writer never waited";
  EXPECT_FALSE(done.load());
  table()->current = 0;  // no wake: the waiter must find out by polling
  const uint64_t polls = table()->job_current_calls.load();
  w.join();
  EXPECT_LE(table()->job_current_calls.load() - polls, 2u);
  EXPECT_EQ(Word(2), copier_.busy_word(true));
  EXPECT_TRUE(volume_.pages.empty());
  // The copier waiting for writers finds the job over the same way.
  TestParty holder(&shared_, 3);
  std::vector<PageRange> claimed;
  uint32_t busy = 0;
  SharedPagesTestPeer(&holder.pages).TryClaim(9, &busy, &claimed);
  EXPECT_FALSE(copier_.pages.WaitForWriters({8, 10}));
}

// A preservation that fails fails the job, never the writer: it returns, its
// claims stay (the job is over), and a writer waiting on them is released.
TEST_F(SharedPagesTest, PreservationFailureFailsTheJobNotTheWriter) {
  volume_.pages[3] = std::vector<uint8_t>(kPageSize, 0xee);  // its next put() fails
  Write(writer_, {2, 5});
  EXPECT_EQ(table()->fails.load(), 1u);
  EXPECT_EQ(table()->current.load(), 0u);
  for (uint64_t p : {2, 3, 4}) EXPECT_EQ(Word(p), writer_.busy_word(false)) << p;
  const std::string why = FailureText(copier_.pages);
  EXPECT_NE(why.find("page preserved twice"), std::string::npos) << why;
  EXPECT_NE(why.find("(pid " + std::to_string(getpid()) + ")"), std::string::npos) << why;
  // Another writer on the failed claim does not wait.
  Write(other_, {3, 4});
  EXPECT_EQ(table()->fails.load(), 1u);
  // A source that cannot be read fails it the same way (first reason kept).
  source_.truncate(8 * kPageSize);
  Write(other_, {10, 11});
  EXPECT_EQ(FailureText(copier_.pages), why);
}

// The job's owner reports another party's failure: run() fails with its text.
TEST_F(SharedPagesTest, CopierReportsAnotherPartysFailure) {
  volume_.pages[3] = std::vector<uint8_t>(kPageSize, 0xee);
  MemorySink sink(kPageSize, kPages);
  JobConfig c;
  c.page_size = kPageSize;
  c.t0_pages = kPages;
  c.shared = &copier_.pages;
  CopyJob job(&source_, &volume_, &sink, c);
  Write(writer_, {3, 4});
  Status s = job.run();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find(", taking part in the backup, failed it: "), std::string::npos)
      << s.ToString();
  EXPECT_NE(s.ToString().find("page preserved twice"), std::string::npos) << s.ToString();
  EXPECT_TRUE(sink.abandoned);
}

// The copier reports the failure that ended the shared job, not what
// followed from it: once the job is over, writers stop preserving, and the
// copier's read may come up short (here: a truncate that no longer waits).
TEST_F(SharedPagesTest, CopierReportsTheFailureThatEndedTheJobNotWhatFollowed) {
  MemorySink sink(kPageSize, kPages);
  JobConfig c;
  c.page_size = kPageSize;
  c.t0_pages = kPages;
  c.segment_pages = kPages;
  c.shared = &copier_.pages;
  CopyJob job(&source_, &volume_, &sink, c);
  sync::SetCallback([&](const char* name) {
    if (strcmp(name, "CopyJob::copy:claimed") != 0) return;
    writer_.fail(Status::IOError("the volume's disk died"));
    source_.truncate(4 * kPageSize);
  });
  Status s = job.run();
  sync::SetCallback(nullptr);
  EXPECT_NE(s.ToString().find("the volume's disk died"), std::string::npos) << s.ToString();
  EXPECT_TRUE(sink.abandoned);
}

// A copier read that fails publishes nothing: no page is settled without
// its T0 bytes somewhere. Its claims stay (the job is over), and hold
// nobody: a writer finds the job failed.
TEST_F(SharedPagesTest, ACopierReadThatFailsPublishesNothing) {
  MemorySink sink(kPageSize, kPages);
  JobConfig c;
  c.page_size = kPageSize;
  c.t0_pages = kPages;
  c.segment_pages = kPages;
  c.shared = &copier_.pages;
  CopyJob job(&source_, &volume_, &sink, c);
  source_.truncate(8 * kPageSize);  // behind the engine's back
  Status s = job.run();
  EXPECT_FALSE(s.ok());
  for (uint64_t p = 0; p < kPages; p++) EXPECT_NE(Word(p), SharedPages::kCopied) << p;
  EXPECT_EQ(table()->current.load(), 0u);
  Write(writer_, {3, 4});
  EXPECT_EQ(Word(3), copier_.busy_word(true));
}

// A writer whose claim is large (a truncate) preserves it in bounded reads.
TEST_F(SharedPagesTest, APreservationReadsInBoundedChunks) {
  const uint64_t pages = 3 * SharedPages::kPreserveChunkPages + 5;
  SharedArea area(pages);
  TestParty party(&area, 1);
  const std::vector<uint8_t> t0 = RandomBytes(pages * kPageSize, 3);
  MemorySource source(kPageSize, t0);
  MemoryVolume volume(kPageSize);
  party.pages.WriteThrough({0, pages}, &source, &volume, kPageSize);
  EXPECT_EQ(source.reads, 4u);
  ASSERT_EQ(volume.pages.size(), pages);
  for (uint64_t p = 0; p < pages; p++) {
    ASSERT_EQ(memcmp(volume.pages[p].data(), t0.data() + p * kPageSize, kPageSize), 0) << p;
    ASSERT_EQ(party.pages.load(p), SharedPages::kPreserved) << p;
  }
}

TEST_F(SharedPagesTest, RecordFailureKeepsTheFirstReasonCut) {
  EXPECT_EQ(FailureText(copier_.pages), "");
  const Status first = Status::IOError("disk on fire", "/db");
  copier_.pages.RecordFailure(first, 42);
  EXPECT_EQ(FailureText(copier_.pages), first.ToString() + " (pid 42)");
  writer_.pages.RecordFailure(Status::IOError("second"), 43);
  EXPECT_EQ(FailureText(writer_.pages), first.ToString() + " (pid 42)") << "every party reads one record";
  SharedArea fresh(1);
  SharedPages pages(fresh.area(), 1, &copier_);
  pages.RecordFailure(Status::IOError(std::string(1000, 'x')), 7);
  const std::string why = FailureText(pages);
  EXPECT_EQ(why.size(), SharedPages::kMaxFailMsg + std::string(" (pid 7)").size());
}

// ---------------------------------------------------------------------------
// Torture: writer threads and writer processes against the copier.

struct TortureParams {
  Variant variant;
  uint32_t segment_pages;
  // Kill: a writer process stops at the nth hit of this point, holding
  // claims, and is SIGKILLed there. Null: nobody dies.
  const char* kill_at;
};

std::string ParamName(const ::testing::TestParamInfo<TortureParams>& info) {
  std::string name = info.param.variant == Variant::kSnapshotFirst ? "SnapshotFirst" : "OverlayAtEnd";
  name += "Seg" + std::to_string(info.param.segment_pages);
  if (info.param.kill_at) {
    std::string point = info.param.kill_at;
    point = point.substr(point.find("::") + 2);
    for (char& ch : point) {
      if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
    }
    name += "_KillAt_" + point;
  }
  return name;
}

// Forked children, killed and reaped however the test ends.
class Children {
 public:
  ~Children() {
    for (pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  void Add(pid_t pid) { pids_.push_back(pid); }
  // Reaps `pid`; its wait status.
  int Reap(pid_t pid) {
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    pids_.erase(std::find(pids_.begin(), pids_.end(), pid));
    return st;
  }

 private:
  std::vector<pid_t> pids_;
};

class SharedTortureTest : public ::testing::TestWithParam<TortureParams> {
 protected:
  static constexpr uint32_t kPageSize = 4096;
  static constexpr uint64_t kPages = 512;
  static constexpr uint64_t kVictimPages = 32;  // the last pages: the victim's alone
  static constexpr int kThreads = 2;            // writer threads of the owner
  static constexpr int kChildren = 3;           // writer processes, parties 1..3
  static constexpr uint32_t kVictim = kChildren + 1;
  // PeerTable::scratch slots
  static constexpr int kStop = 0, kWritesBase = 1;  // writes of party i at kWritesBase + i
};

// A write of party `party`: a stamp per 8 bytes (party, sequence, offset),
// so that every write changes what it covers.
std::vector<uint8_t> Stamp(uint32_t party, uint64_t seq, uint64_t offset, size_t len) {
  std::vector<uint8_t> data(len);
  for (size_t i = 0; i < len; i++) {
    const uint64_t v = (uint64_t(party) << 56) ^ (seq << 24) ^ ((offset + i) / 8);
    data[i] = uint8_t(v >> (8 * ((offset + i) % 8)));
  }
  return data;
}

TEST_P(SharedTortureTest, WriterThreadsAndProcessesLeaveTheT0Image) {
  const TortureParams param = GetParam();
  const bool kill = param.kill_at != nullptr;
  const int rounds = kill ? 3 : 2;
  for (int round = 0; round < rounds; round++) {
    const uint64_t seed = uint64_t(round) * 977 + param.segment_pages * 13 + (kill ? 5 : 0) +
                          (param.variant == Variant::kOverlayAtEnd ? 1 : 0);
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    TempDir dir;
    const std::string db = dir / "db";
    WriteFile(db, RandomBytes(kPages * kPageSize, seed));
    const std::vector<uint8_t> t0 = ReadFile<Bytes>(db);
    const int fd = ::open(db.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    SharedArea shared(kPages);
    PeerTable* table = shared.table();
    std::unique_ptr<FileSnapshotVolume> volume;
    ASSERT_TRUE(FileSnapshotVolume::Create(dir / "job.cowsnap", kPageSize, db, &volume).ok());
    int go[2];
    ASSERT_EQ(::pipe(go), 0);
    // Where party `party` writes: everywhere but the victim's pages (some
    // writes past T0), the victim only in its own.
    auto write_span = [&](uint32_t party) -> std::pair<uint64_t, uint64_t> {
      if (party == kVictim) return {(kPages - kVictimPages) * kPageSize, kPages * kPageSize};
      return {0, (kill ? kPages - kVictimPages : kPages + 4) * kPageSize};
    };
    const int victim_hit = int(rng() % 3) + 1;

    // Children first, while this process has one thread.
    Children children;
    std::vector<pid_t> pids;
    const uint32_t nchildren = kill ? kChildren + 1 : kChildren;
    for (uint32_t party = 1; party <= nchildren; party++) {
      const uint64_t child_seed = rng();
      const pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        // The child: no gtest from here on; _exit with a code.
        ::close(go[1]);
        TestParty me(&shared, party);
        std::unique_ptr<FileSnapshotVolume> vol;
        if (!FileSnapshotVolume::OpenShared(dir / "job.cowsnap", kPageSize, &vol).ok()) _exit(2);
        FileSource source(fd, db, kPageSize);
        int hits = 0;
        if (party == kVictim) {
          sync::SetCallback([&](const char* name) {
            if (strcmp(name, param.kill_at) == 0 && ++hits == victim_hit) raise(SIGSTOP);
          });
        }
        char c;
        if (::read(go[0], &c, 1) != 1) _exit(3);
        std::mt19937_64 crng(child_seed);
        const auto [lo, hi] = write_span(party);
        for (uint64_t seq = 1; table->scratch[kStop].load() == 0; seq++) {
          const uint64_t len = 1 + crng() % (2 * kPageSize);
          const uint64_t offset = lo + crng() % (hi - lo - len);
          // As CopyJob::before_write does for the owner's writers.
          if (me.job_current()) {
            me.pages.WriteThrough(PageRange::FromBytes(offset, len, kPageSize), &source, vol.get(),
                                  kPageSize);
          }
          const std::vector<uint8_t> data = Stamp(party, seq, offset, len);
          if (::pwrite(fd, data.data(), len, off_t(offset)) != ssize_t(len)) _exit(4);
          table->scratch[kWritesBase + party].fetch_add(1);
        }
        _exit(0);
      }
      children.Add(pid);
      pids.push_back(pid);
    }
    ::close(go[0]);

    // The owner: the copier and its writer threads, party kOwner.
    TestParty owner(&shared, kOwner);
    FileSource source(fd, db, kPageSize);
    MemorySink sink(kPageSize, kPages);
    JobConfig config;
    config.page_size = kPageSize;
    config.t0_pages = kPages;
    config.segment_pages = param.segment_pages;
    config.variant = param.variant;
    config.shared = &owner.pages;
    CopyJob job(&source, volume.get(), &sink, config);

    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    // However this round ends: the threads stop and are joined (before the
    // children are killed and reaped, declared above).
    struct Joiner {
      std::atomic<bool>* stop;
      PeerTable* table;
      std::vector<std::thread>* threads;
      ~Joiner() {
        *stop = true;
        table->scratch[kStop] = 1;
        for (auto& t : *threads) {
          if (t.joinable()) t.join();
        }
      }
    } joiner{&stop, table, &threads};
    for (int t = 0; t < kThreads; t++) {
      const uint64_t tseed = rng();
      threads.emplace_back([&, t, tseed] {
        std::mt19937_64 trng(tseed);
        const auto [lo, hi] = write_span(kOwner);
        for (uint64_t seq = 1; !stop.load(); seq++) {
          if (t == 0 && !kill && trng() % 200 == 0) {
            // Now and then a truncate (below T0) and the file grows back.
            const uint64_t size = (kPages - 1 - trng() % 40) * kPageSize + trng() % kPageSize;
            job.before_truncate(size);
            ASSERT_EQ(::ftruncate(fd, off_t(size)), 0);
            continue;
          }
          const uint64_t len = 1 + trng() % (3 * kPageSize);
          const uint64_t offset = lo + trng() % (hi - lo - len);
          job.before_write(offset, len);
          const std::vector<uint8_t> data = Stamp(kOwner, seq * kThreads + t, offset, len);
          ASSERT_EQ(::pwrite(fd, data.data(), len, off_t(offset)), ssize_t(len));
          table->scratch[kWritesBase + kOwner].fetch_add(1);
        }
      });
    }
    // The victim's fate, on a thread of its own: stopped holding claims,
    // then killed, then dead as far as the other parties can tell.
    std::mutex mu;
    std::condition_variable cv;
    bool killed = false;
    std::vector<uint64_t> held;
    const uint32_t victim_word = SharedPages::kBusy | kVictim;
    std::string victim_error;
    if (kill) {
      threads.emplace_back([&] {
        const pid_t victim = pids.back();
        int st = 0;
        if (::waitpid(victim, &st, WUNTRACED) != victim || !WIFSTOPPED(st)) {
          victim_error = "the victim did not stop: status " + std::to_string(st);
        }
        for (uint64_t p = 0; p < kPages; p++) {
          if (owner.pages.load(p) == victim_word) held.push_back(p);
        }
        ::kill(victim, SIGKILL);
        st = children.Reap(victim);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
          victim_error += "; not killed: status " + std::to_string(st);
        }
        table->dead[kVictim] = 1;
        std::lock_guard<std::mutex> lock(mu);
        killed = true;
        cv.notify_all();
      });
    }
    for (uint32_t i = 0; i < nchildren; i++) EXPECT_EQ(::write(go[1], "g", 1), 1);
    ::close(go[1]);
    // Make the overlap certain: every party has written (and so preserved)
    // before the copy starts; the victim holds its claims before the copier
    // goes past the first segment; between segments the copier lets writers in.
    auto all_wrote = [&] {
      for (uint32_t party = 0; party <= kChildren; party++) {
        if (table->scratch[kWritesBase + party].load() < 3) return false;
      }
      return true;
    };
    EXPECT_TRUE(WaitFor(all_wrote, std::chrono::steady_clock::now() + 120s)) << "writers never started";
    bool first_segment = true;
    sync::SetCallback([&](const char* name) {
      if (strcmp(name, "CopyJob::copy:published") != 0) return;
      if (first_segment && kill) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return killed; });
      }
      first_segment = false;
      const uint64_t seen = table->scratch[kWritesBase + 1].load();
      for (int i = 0; i < 200 && table->scratch[kWritesBase + 1].load() == seen; i++) {
        std::this_thread::yield();
      }
    });
    Status s = job.run();
    sync::SetCallback(nullptr);
    table->current = 0;  // the owner disarmed the job
    table->scratch[kStop] = 1;
    stop = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(victim_error, "");
    for (uint32_t i = 0; i < kChildren; i++) {
      const int st = children.Reap(pids[i]);
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "child " << i + 1 << " status " << st;
    }
    ::close(fd);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(table->fails.load(), 0u) << FailureText(owner.pages);
    ASSERT_TRUE(sink.finished);
    ASSERT_EQ(sink.contract_violations, 0);
    ASSERT_TRUE(sink.image == t0) << "image differs from T0";
    EXPECT_GT(job.progress().pages_preserved, 0u);
    EXPECT_EQ(job.progress().pages_done, kPages);
    if (kill) {
      EXPECT_FALSE(held.empty()) << "the victim stopped at " << param.kill_at << " holding nothing";
      for (uint64_t p = 0; p < kPages; p++) {
        EXPECT_NE(owner.pages.load(p), victim_word) << "page " << p << " still the dead victim's";
      }
      for (uint64_t p : held) {
        const uint32_t w = owner.pages.load(p);
        EXPECT_TRUE(w == SharedPages::kCopied || w == SharedPages::kPending) << p << ": " << w;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shared, SharedTortureTest,
    ::testing::Values(TortureParams{Variant::kSnapshotFirst, 1, nullptr},
                      TortureParams{Variant::kSnapshotFirst, 16, nullptr},
                      TortureParams{Variant::kOverlayAtEnd, 1, nullptr},
                      TortureParams{Variant::kOverlayAtEnd, 64, nullptr},
                      TortureParams{Variant::kSnapshotFirst, 16, "SharedPages::claimed"},
                      TortureParams{Variant::kSnapshotFirst, 16, "CopyJob::preserve:read"},
                      TortureParams{Variant::kSnapshotFirst, 16, "SharedPages::publish"},
                      TortureParams{Variant::kOverlayAtEnd, 16, "SharedPages::claimed"},
                      TortureParams{Variant::kOverlayAtEnd, 16, "CopyJob::preserve:read"},
                      TortureParams{Variant::kOverlayAtEnd, 16, "SharedPages::publish"}),
    ParamName);

}  // namespace
}  // namespace cowbackup::test
