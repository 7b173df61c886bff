// CopyJob and WriteHook under real threads: a file source written by
// several writer threads while the copier runs, the FIFO's arrival order,
// failure and cancel releasing held writers, the hook's lifetime rule.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <thread>

#include "engine/copy_job.h"
#include "engine/file_source.h"
#include "engine/sync_point.h"
#include "engine/write_hook.h"
#include "memory_parts.h"
#include "test_util/files.h"
#include "test_util/sync_points.h"

namespace cowbackup::test {
namespace {

using namespace std::chrono_literals;

// A file written by writer threads through a WriteHook, as a front end does:
// hook.before_write(), then pwrite. `begin_lock` plays the storage engine's
// begin-time lock: writers hold it shared, arming takes it exclusive.
class LiveFile {
 public:
  LiveFile(const std::string& path, uint32_t page_size, uint64_t pages, uint64_t seed)
      : path_(path), page_size_(page_size) {
    std::vector<uint8_t> data(page_size * pages);
    std::mt19937_64 rng(seed);
    for (auto& b : data) b = uint8_t(rng());
    WriteFile(path, data);
    fd_ = ::open(path.c_str(), O_RDWR);
  }
  ~LiveFile() { ::close(fd_); }

  void write(uint64_t offset, const std::vector<uint8_t>& data) {
    std::shared_lock<std::shared_mutex> lock(begin_lock);
    hook.before_write(offset, data.size());
    ASSERT_EQ(::pwrite(fd_, data.data(), data.size(), off_t(offset)), ssize_t(data.size()));
  }
  void truncate(uint64_t size) {
    std::shared_lock<std::shared_mutex> lock(begin_lock);
    hook.before_truncate(size);
    ASSERT_EQ(::ftruncate(fd_, off_t(size)), 0);
  }
  int fd() const { return fd_; }

  WriteHook hook;
  std::shared_mutex begin_lock;

 private:
  const std::string path_;
  const uint32_t page_size_;
  int fd_ = -1;
};

struct StressParams {
  Variant variant;
  uint32_t segment_pages;
  bool hot_first;
};

class ConcurrentCopyTest : public ::testing::TestWithParam<StressParams> {};

// Four writers hammer the file (partial pages, straddling writes, growth,
// an occasional truncate) while the copier runs; the sink must hold the T0
// image exactly. Labelled tsan: the ThreadSanitizer build runs it too.
TEST_P(ConcurrentCopyTest, WritersDuringCopyLeaveT0Image) {
  const StressParams param = GetParam();
  TempDir dir;
  constexpr uint32_t kPageSize = 4096;
  constexpr uint64_t kPages = 1500;
  for (uint64_t round = 0; round < 3; round++) {
    const uint64_t seed = round * 1000 + param.segment_pages;
    LiveFile file(dir / ("db" + std::to_string(round)), kPageSize, kPages, seed);
    const std::vector<uint8_t> t0 = ReadFile<Bytes>(dir / ("db" + std::to_string(round)));
    FileSource source(file.fd(), "db", kPageSize);
    std::unique_ptr<FileSnapshotVolume> volume;
    ASSERT_TRUE(FileSnapshotVolume::Create(dir / ("vol" + std::to_string(round) + ".cowsnap"),
                                           kPageSize, "db", &volume)
                    .ok());
    MemorySink sink(kPageSize, kPages);
    JobConfig config;
    config.page_size = kPageSize;
    config.t0_pages = kPages;
    config.segment_pages = param.segment_pages;
    config.variant = param.variant;
    config.hot_first = param.hot_first;
    CopyJob job(&source, volume.get(), &sink, config);

    std::atomic<bool> stop{false};
    std::atomic<uint64_t> writes{0};
    std::vector<std::thread> writers;
    {
      std::unique_lock<std::shared_mutex> t0_lock(file.begin_lock);
      ASSERT_TRUE(file.hook.arm(&job).ok());
      for (int w = 0; w < 4; w++) {
        writers.emplace_back([&, w] {
          std::mt19937_64 rng(seed * 31 + w);
          while (!stop.load()) {
            const uint64_t kind = rng() % 100;
            if (kind == 0 && w == 0) {
              file.truncate((kPages - 1 - rng() % 50) * kPageSize + rng() % kPageSize);
              continue;
            }
            const uint64_t offset = rng() % ((kPages + 20) * kPageSize);
            std::vector<uint8_t> data(1 + rng() % (3 * kPageSize), uint8_t(rng()));
            file.write(offset, data);
            writes++;
          }
        });
      }
    }
    // Make the overlap certain on a loaded machine: writers are running
    // before the copy starts, and the copier lets them in between segments.
    while (writes.load() < 20) std::this_thread::yield();
    SyncPointGuard guard;
    sync::SetCallback([&](const char* name) {
      if (std::string(name) != "CopyJob::copy:published") return;
      const uint64_t seen = writes.load();
      for (int i = 0; i < 1000 && writes.load() == seen; i++) std::this_thread::yield();
    });
    Status s = job.run();
    sync::SetCallback(nullptr);
    stop = true;
    for (auto& t : writers) t.join();
    file.hook.disarm();
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(sink.finished);
    ASSERT_EQ(sink.contract_violations, 0);
    ASSERT_TRUE(sink.image == t0) << "image differs from T0, seed " << seed;
    EXPECT_GT(job.progress().pages_preserved, 0u) << "writers never hit an uncopied page";
    EXPECT_EQ(job.progress().pages_done, kPages);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, ConcurrentCopyTest,
    ::testing::Values(StressParams{Variant::kSnapshotFirst, 1, false},
                      StressParams{Variant::kSnapshotFirst, 16, true},
                      StressParams{Variant::kSnapshotFirst, 256, false},
                      StressParams{Variant::kOverlayAtEnd, 1, false},
                      StressParams{Variant::kOverlayAtEnd, 64, true}));

// Fixture for the ordered tests: a 64-page memory source, one segment.
class OrderedTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kPageSize = 512;
  static constexpr uint64_t kPages = 64;
  OrderedTest()
      : source_(kPageSize, std::vector<uint8_t>(kPageSize * kPages, 7)),
        volume_(kPageSize),
        sink_(kPageSize, kPages) {}
  JobConfig Config() {
    JobConfig c;
    c.page_size = kPageSize;
    c.t0_pages = kPages;
    c.segment_pages = kPages;
    return c;
  }
  MemorySource source_;
  MemoryVolume volume_;
  MemorySink sink_;
  SyncPointGuard guard_;
};

// Writers that hit the segment the copier is reading wait, and are released
// in the order they arrived.
TEST_F(OrderedTest, HeldWritersAreReleasedInArrivalOrder) {
  CopyJob job(&source_, &volume_, &sink_, Config());
  std::mutex mu;
  std::condition_variable cv;
  bool copier_claimed = false, let_copier_go = false;
  int queued = 0;
  std::vector<int> released;
  thread_local int writer_id = -1;
  sync::SetCallback([&](const char* name) {
    const std::string point = name;
    std::unique_lock<std::mutex> lock(mu);
    if (point == "CopyJob::copy:claimed") {
      copier_claimed = true;
      cv.notify_all();
      cv.wait(lock, [&] { return let_copier_go; });
    } else if (point == "CopyJob::before_write:queued") {
      queued++;
      cv.notify_all();
    } else if (point == "CopyJob::before_write:released" && writer_id >= 0) {
      released.push_back(writer_id);
    }
  });
  std::thread copier([&] { EXPECT_TRUE(job.run().ok()); });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return copier_claimed; });
  }
  std::vector<std::thread> writers;
  for (int i = 0; i < 4; i++) {
    writers.emplace_back([&, i] {
      writer_id = i;
      job.before_write(uint64_t(i) * kPageSize, 10);  // pages 0..3: busy
    });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return queued == i + 1; });  // writer i is queued
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    let_copier_go = true;
    cv.notify_all();
  }
  for (auto& t : writers) t.join();
  copier.join();
  EXPECT_EQ(released, (std::vector<int>{0, 1, 2, 3}));
  // Writer 0 waited at least until writers 1..3 had queued behind it.
  EXPECT_GT(job.progress().max_write_wait_us, 0u);
  EXPECT_EQ(volume_.pages.size(), 0u) << "pages read by the copier need no pre-image";
}

// A failure (here: cancel) releases held writers at once, even though the
// copier is still stuck in its read; the job then abandons the sink.
TEST_F(OrderedTest, CancelReleasesHeldWritersAtOnce) {
  CopyJob job(&source_, &volume_, &sink_, Config());
  ParkAt copier_claimed("CopyJob::copy:claimed");
  Status result;
  std::thread copier([&] { result = job.run(); });
  copier_claimed.WaitUntilParked();
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    job.before_write(0, kPageSize);
    writer_done = true;
  });
  // The writer is held (page 0 is being read)...
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(writer_done.load());
  job.cancel();
  writer.join();  // ...and released by the cancel, copier still parked.
  EXPECT_TRUE(writer_done.load());
  copier_claimed.Release();
  copier.join();
  EXPECT_TRUE(result.IsCancelled()) << result.ToString();
  EXPECT_TRUE(sink_.abandoned);
  EXPECT_FALSE(sink_.finished);
  EXPECT_TRUE(volume_.removed);
  // Once failed, before_write returns without doing anything.
  job.before_write(0, kPages * kPageSize);
  EXPECT_EQ(volume_.pages.size(), 0u);
}

// The queue can be extended and reordered while the job runs.
TEST_F(OrderedTest, OpenQueueCopiesWhatIsEnqueuedInAnyOrder) {
  JobConfig c = Config();
  c.open_queue = true;
  c.segment_pages = 4;
  for (uint64_t p = 0; p < kPages; p++) {
    memset(source_.bytes.data() + p * kPageSize, int(p), kPageSize);
  }
  const std::vector<uint8_t> t0 = source_.bytes;
  CopyJob job(&source_, &volume_, &sink_, c);
  std::thread copier([&] { EXPECT_TRUE(job.run().ok()); });
  for (uint64_t p = kPages; p > 0; p -= 8) job.enqueue({p - 8, p}, /*front=*/p % 16 == 0);
  job.enqueue({0, kPages});  // duplicates are skipped
  job.seal();
  copier.join();
  EXPECT_TRUE(sink_.finished);
  EXPECT_EQ(sink_.image, t0);
}

TEST(WriteHookTest, ArmTwiceIsBusyAndIdleHookDoesNothing) {
  MemorySource source(512, std::vector<uint8_t>(512 * 4, 1));
  MemoryVolume volume(512);
  MemorySink sink(512, 4);
  JobConfig c;
  c.page_size = 512;
  c.t0_pages = 4;
  CopyJob a(&source, &volume, &sink, c), b(&source, &volume, &sink, c);
  WriteHook hook;
  hook.before_write(0, 2048);  // idle: nothing happens
  EXPECT_EQ(volume.pages.size(), 0u);
  ASSERT_TRUE(hook.arm(&a).ok());
  Status s = hook.arm(&b);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  hook.before_write(0, 512);
  EXPECT_EQ(volume.pages.size(), 1u);
  hook.disarm();
  hook.before_write(512, 512);
  EXPECT_EQ(volume.pages.size(), 1u);
  EXPECT_TRUE(hook.arm(&b).ok());  // re-armable after disarm
  hook.disarm();
}

// disarm() waits for a writer inside the job, so the job may then be
// destroyed: the lifetime rule of the write path.
TEST(WriteHookTest, DisarmWaitsForWritersInside) {
  MemorySource source(512, std::vector<uint8_t>(512 * 4, 1));
  MemoryVolume volume(512);
  MemorySink sink(512, 4);
  JobConfig c;
  c.page_size = 512;
  c.t0_pages = 4;
  auto job = std::make_unique<CopyJob>(&source, &volume, &sink, c);
  WriteHook hook;
  ASSERT_TRUE(hook.arm(job.get()).ok());
  ParkAt writer_inside("CopyJob::preserve:read");
  std::thread writer([&] { hook.before_write(0, 512); });
  writer_inside.WaitUntilParked();
  std::atomic<bool> disarmed{false};
  std::thread disarmer([&] {
    hook.disarm();
    disarmed = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(disarmed.load()) << "disarm returned while a writer was inside the job";
  writer_inside.Release();
  writer.join();
  disarmer.join();
  EXPECT_TRUE(disarmed.load());
  job.reset();  // safe now
}

// The rate limit is a floor on duration: 2 MB at 10 MB/s takes >= 0.2 s
// (a lower bound only; a slow machine cannot make it fail).
TEST(CopyJobTest, RateLimitHoldsTheCopierBack) {
  constexpr uint32_t kPageSize = 4096;
  constexpr uint64_t kPages = 512;
  MemorySource source(kPageSize, std::vector<uint8_t>(kPageSize * kPages, 3));
  MemoryVolume volume(kPageSize);
  MemorySink sink(kPageSize, kPages);
  JobConfig c;
  c.page_size = kPageSize;
  c.t0_pages = kPages;
  c.segment_pages = 16;
  c.max_rate_mb = 10;
  CopyJob job(&source, &volume, &sink, c);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(job.run().ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 190ms);
}

// Automatic pacing (engine/pacer.h) through the job: with the 10 MB/s
// limit the copy of 4 MB takes >= 0.4 s, so the pacer decides at least
// once (every 100 ms). Commits that take 20 times their pre-backup time
// make it cut the rate, which the progress shows; the copy is complete
// either way. Lower bounds on time only.
TEST(CopyJobTest, PacingCutsTheRateWhenCommitsSlowDownAndNotWithoutCommits) {
  constexpr uint32_t kPageSize = 4096;
  constexpr uint64_t kPages = 1024;
  for (const bool committing : {false, true}) {
    SCOPED_TRACE(committing ? "commits slowed by the copy" : "no commits");
    MemorySource source(kPageSize, std::vector<uint8_t>(kPageSize * kPages, 5));
    MemoryVolume volume(kPageSize);
    MemorySink sink(kPageSize, kPages);
    CommitHistory history;
    const int64_t t0 = SteadyNowNs();
    if (committing) {
      for (int64_t t = t0 - 1'000'000'000; t < t0; t += 1'000'000) history.Record(t, 1'000'000);
    }
    JobConfig c;
    c.page_size = kPageSize;
    c.t0_pages = kPages;
    c.segment_pages = 16;
    c.max_rate_mb = 10;
    c.pace_by = &history;
    c.pace_share = 0.85;
    CopyJob job(&source, &volume, &sink, c);
    std::atomic<bool> stop{false};
    std::thread app([&] {
      while (committing && !stop) {
        std::this_thread::sleep_for(1ms);
        history.Record(SteadyNowNs(), 20'000'000);
      }
    });
    ASSERT_TRUE(job.run().ok());
    stop = true;
    app.join();
    EXPECT_EQ(sink.image, std::vector<uint8_t>(kPageSize * kPages, 5));
    if (committing) {
      EXPECT_GT(job.progress().pace_min_mb, 0) << "the pacer never cut the rate";
    } else {
      EXPECT_EQ(job.progress().pace_min_mb, 0) << "paced with nothing committing";
      EXPECT_EQ(job.progress().pace_mb, 0);
    }
  }
}

// A job that yields to commits_, started while the application is inside
// a commit and held at its first wait (segment 0 read and published, not
// yet written to the sink).
class YieldTest : public OrderedTest {
 protected:
  void StartWhileCommitting(CopyJob* job) {
    commits_.begin();
    copier_ = std::thread([job] { EXPECT_TRUE(job->run().ok()); });
    park_.WaitUntilParked();
  }
  void EndCommitAndFinish() {
    commits_.end();
    park_.Release();
    copier_.join();
  }
  JobConfig YieldConfig() {
    JobConfig c = Config();
    c.segment_pages = 16;
    c.yield_to = &commits_;
    c.max_yield = std::chrono::hours(1);
    return c;
  }
  CommitSignal commits_;
  ParkAt park_{"CopyJob::yield:waiting"};
  std::thread copier_;
};

// Nothing reaches the sink while the application is committing; the copy
// goes on once the commit is over.
TEST_F(YieldTest, SinkWritesWaitForTheCommit) {
  CopyJob job(&source_, &volume_, &sink_, YieldConfig());
  StartWhileCommitting(&job);
  EXPECT_EQ(sink_.bytes, 0u) << "a sink write went ahead of the commit";
  EndCommitAndFinish();
  EXPECT_TRUE(sink_.finished);
  EXPECT_EQ(sink_.image, source_.bytes);
}

// While the copier yields it holds no page: writers anywhere in the file go
// straight on (preserving what they must), and the copy is still T0's.
TEST_F(YieldTest, WritersDoNotWaitForAYieldingCopier) {
  const std::vector<uint8_t> t0 = source_.bytes;
  CopyJob job(&source_, &volume_, &sink_, YieldConfig());
  StartWhileCommitting(&job);
  const std::vector<uint8_t> page(kPageSize, 0xAB);
  for (uint64_t pgno : {0, 5, 40, 63}) {
    job.before_write(pgno * kPageSize, kPageSize);
    source_.write(pgno * kPageSize, page.data(), page.size());
  }
  EndCommitAndFinish();
  EXPECT_EQ(sink_.image, t0);
}

// An application that never leaves its commit cannot stop the copy:
// each wait ends after max_yield.
TEST_F(OrderedTest, YieldingNeverStopsTheCopy) {
  CommitSignal commits;
  commits.begin();  // never ends
  JobConfig c = Config();
  c.segment_pages = 8;
  c.yield_to = &commits;
  c.max_yield = std::chrono::microseconds(100);
  CopyJob job(&source_, &volume_, &sink_, c);
  ASSERT_TRUE(job.run().ok());
  EXPECT_EQ(sink_.image, source_.bytes);
  commits.end();
}

TEST(CopyJobTest, EmptySourceFinishes) {
  MemorySource source(4096, {});
  MemoryVolume volume(4096);
  MemorySink sink(4096, 0);
  JobConfig c;
  c.t0_pages = 0;
  CopyJob job(&source, &volume, &sink, c);
  job.before_write(0, 100);  // growth past T0: nothing to do
  ASSERT_TRUE(job.run().ok());
  EXPECT_TRUE(sink.finished);
}

// A source that shrank behind the engine's back is a failed job, not a
// short copy.
TEST(CopyJobTest, BypassedTruncateFailsTheJob) {
  MemorySource source(512, std::vector<uint8_t>(512 * 8, 1));
  MemoryVolume volume(512);
  MemorySink sink(512, 8);
  JobConfig c;
  c.page_size = 512;
  c.t0_pages = 8;
  CopyJob job(&source, &volume, &sink, c);
  source.truncate(512 * 4);  // not reported
  Status s = job.run();
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(sink.abandoned);
}

}  // namespace
}  // namespace cowbackup::test
