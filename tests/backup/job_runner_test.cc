// JobRunner (backup/job_runner.h): the job lifecycle the SQLite and LMDB
// front ends share. A BackupJob over an in-memory source, past T0, run on
// the runner's thread or the caller's; sync points hold the copier inside
// its copy so that "cancel while running" and "destroy while running" are
// states a test can stand in, not timings.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backup/backup_job.h"
#include "backup/job_runner.h"
#include "backup/no_new_threads.h"
#include "backup/restore.h"
#include "engine/memory_parts.h"
#include "engine/sync_point.h"
#include "engine/write_hook.h"
#include "test_util/files.h"
#include "test_util/sync_points.h"

namespace cowbackup::test {
namespace {

constexpr uint32_t kPageSize = 4096;
constexpr uint64_t kPages = 64;

std::vector<uint8_t> Image() {
  std::vector<uint8_t> v(kPageSize * kPages);
  std::mt19937_64 rng(7);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

// What on_finished saw, when it ran.
struct Ending {
  std::mutex mu;
  int calls = 0;
  Status status;
  Summary summary;
  std::thread::id thread;
  bool runner_done = true;                // done() then: must be false
  JobState runner_state = JobState::kDone;  // summary().state then: kRunning
  bool hook_armed = true;
  std::vector<std::string> files;         // the directory then
};

class JobRunnerTest : public ::testing::Test {
 protected:
  JobRunnerTest() : source_(kPageSize, Image()) {}

  // A job past T0 over `t0_pages` pages, as a front end hands it over.
  std::unique_ptr<BackupJob> BegunJob(uint64_t t0_pages = kPages) {
    BackupParams p;
    p.dest = (dir_ / "x.cbk");
    p.options.segment_pages = 8;
    p.source_name = "memory";
    std::unique_ptr<BackupJob> job;
    Status s = BackupJob::Prepare(&source_, p, &job);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return nullptr;
    s = job->Begin(t0_pages, "", &hook_);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return job;
  }

  // A runner over BegunJob() whose on_finished records into ending_.
  std::unique_ptr<JobRunner> MakeRunner(uint64_t t0_pages = kPages) {
    auto runner = std::make_unique<JobRunner>(
        BegunJob(t0_pages), [this](const Status& status, const Summary& summary) {
          std::lock_guard<std::mutex> lock(ending_.mu);
          ending_.calls++;
          ending_.status = status;
          ending_.summary = summary;
          ending_.thread = std::this_thread::get_id();
          ending_.runner_done = runner_->done();
          ending_.runner_state = runner_->summary().state;
          ending_.hook_armed = hook_.armed();
          ending_.files = Files();
        });
    runner_ = runner.get();
    return runner;
  }

  std::vector<std::string> Files() const {
    auto names = dir_.list();
    std::sort(names.begin(), names.end());
    return names;
  }

  TempDir dir_;
  MemorySource source_;
  WriteHook hook_;
  Ending ending_;
  JobRunner* runner_ = nullptr;  // the one MakeRunner made, for on_finished
};

TEST_F(JobRunnerTest, RunsOnItsThreadAndEndsBeforeWaitersHear) {
  auto runner = MakeRunner();
  ASSERT_TRUE(runner->Start().ok());
  Summary summary;
  Status s = runner->Wait(&summary);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(summary.state, JobState::kDone);
  EXPECT_EQ(summary.progress.pages_done, kPages);
  EXPECT_EQ(summary.page_size, kPageSize);
  EXPECT_TRUE(runner->done());
  // on_finished ran once, on the copier thread, after the hook was disarmed
  // and the archive published (no snapshot volume left), and before anyone
  // could hear that the job ended.
  std::lock_guard<std::mutex> lock(ending_.mu);
  EXPECT_EQ(ending_.calls, 1);
  EXPECT_TRUE(ending_.status.ok());
  EXPECT_EQ(ending_.summary.state, JobState::kDone);
  EXPECT_NE(ending_.thread, std::this_thread::get_id());
  EXPECT_FALSE(ending_.runner_done);
  EXPECT_EQ(ending_.runner_state, JobState::kRunning);
  EXPECT_FALSE(ending_.hook_armed);
  EXPECT_EQ(ending_.files, std::vector<std::string>{"x.cbk"});
  ASSERT_TRUE(RestoreArchive((dir_ / "x.cbk"), (dir_ / "restored"), false).ok());
  EXPECT_EQ(ReadFile<Bytes>(dir_ / "restored"), source_.bytes);
}

TEST_F(JobRunnerTest, RunHereEndsOnTheCallingThread) {
  auto runner = MakeRunner();
  Status s = runner->RunHere();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(runner->done());
  EXPECT_EQ(runner->summary().state, JobState::kDone);
  std::lock_guard<std::mutex> lock(ending_.mu);
  EXPECT_EQ(ending_.calls, 1);
  EXPECT_EQ(ending_.thread, std::this_thread::get_id());
  EXPECT_FALSE(ending_.runner_done);
}

TEST_F(JobRunnerTest, SummaryIsRunningUntilDoneThenFinal) {
  auto runner = MakeRunner();
  // Before Start(): running, T0 known, nothing copied.
  EXPECT_FALSE(runner->done());
  EXPECT_EQ(runner->summary().state, JobState::kRunning);
  EXPECT_EQ(runner->progress().pages_total, kPages);
  EXPECT_EQ(runner->progress().pages_done, 0u);
  {
    ParkAt park("CopyJob::copy:claimed");
    ASSERT_TRUE(runner->Start().ok());
    park.WaitUntilParked();
    EXPECT_FALSE(runner->done());
    EXPECT_EQ(runner->summary().state, JobState::kRunning);
    EXPECT_LT(runner->progress().pages_done, kPages);
    park.Release();
    ASSERT_TRUE(runner->Wait().ok());
  }
  // on_finished still saw it running; now it is final, and stays so.
  {
    std::lock_guard<std::mutex> lock(ending_.mu);
    EXPECT_EQ(ending_.runner_state, JobState::kRunning);
  }
  const Summary done = runner->summary();
  EXPECT_EQ(done.state, JobState::kDone);
  EXPECT_EQ(done.error, "");
  EXPECT_EQ(done.progress.pages_done, kPages);
  EXPECT_EQ(runner->progress().pages_done, kPages);
  const Summary again = runner->summary();
  EXPECT_EQ(again.seconds, done.seconds);
}

TEST_F(JobRunnerTest, AFailedJobEndsFailedWithItsError) {
  auto runner = MakeRunner(kPages + 8);  // T0 past the source's end: reads fail
  ASSERT_TRUE(runner->Start().ok());
  Summary summary;
  Status s = runner->Wait(&summary);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(s.IsCancelled()) << s.ToString();
  EXPECT_EQ(summary.state, JobState::kFailed);
  EXPECT_EQ(summary.error, s.ToString());
  EXPECT_EQ(runner->summary().state, JobState::kFailed);
  EXPECT_EQ(Files(), std::vector<std::string>{});
}

TEST_F(JobRunnerTest, WaitAfterDoneAndASecondWaitGiveTheSameOutcome) {
  auto runner = MakeRunner();
  ASSERT_TRUE(runner->Start().ok());
  Summary first, second;
  EXPECT_TRUE(runner->Wait(&first).ok());
  ASSERT_TRUE(runner->done());
  EXPECT_TRUE(runner->Wait(&second).ok());  // after the end: at once
  EXPECT_EQ(first.state, JobState::kDone);
  EXPECT_EQ(second.state, JobState::kDone);
  EXPECT_EQ(first.seconds, second.seconds);
  EXPECT_EQ(first.progress.bytes_written, second.progress.bytes_written);
  EXPECT_TRUE(runner->Wait().ok());  // without a summary
}

TEST_F(JobRunnerTest, SeveralWaitersAllHearTheEnd) {
  auto runner = MakeRunner();
  ParkAt park("CopyJob::copy:claimed");
  ASSERT_TRUE(runner->Start().ok());
  park.WaitUntilParked();
  std::vector<Status> results(3);
  std::vector<JobState> states(3, JobState::kRunning);
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; i++) {
    waiters.emplace_back([&, i] {
      Summary summary;
      results[i] = runner->Wait(&summary);
      states[i] = summary.state;
    });
  }
  park.Release();
  for (auto& t : waiters) t.join();
  for (int i = 0; i < 3; i++) {
    EXPECT_TRUE(results[i].ok()) << results[i].ToString();
    EXPECT_EQ(states[i], JobState::kDone);
  }
}

TEST_F(JobRunnerTest, CancelBeforeStartEndsCancelledLeavingNothing) {
  auto runner = MakeRunner();
  runner->Cancel();
  ASSERT_TRUE(runner->Start().ok());
  Summary summary;
  Status s = runner->Wait(&summary);
  EXPECT_TRUE(s.IsCancelled()) << s.ToString();
  EXPECT_EQ(summary.state, JobState::kCancelled);
  EXPECT_NE(summary.error, "");
  EXPECT_EQ(Files(), std::vector<std::string>{});
  EXPECT_FALSE(hook_.armed());
  std::lock_guard<std::mutex> lock(ending_.mu);
  EXPECT_EQ(ending_.calls, 1);
  EXPECT_TRUE(ending_.status.IsCancelled());
}

TEST_F(JobRunnerTest, CancelWhileRunningEndsCancelledLeavingNothing) {
  auto runner = MakeRunner();
  ParkAt park("CopyJob::copy:claimed");
  ASSERT_TRUE(runner->Start().ok());
  park.WaitUntilParked();
  runner->Cancel();
  EXPECT_FALSE(runner->done());
  park.Release();
  Summary summary;
  Status s = runner->Wait(&summary);
  EXPECT_TRUE(s.IsCancelled()) << s.ToString();
  EXPECT_EQ(summary.state, JobState::kCancelled);
  EXPECT_LT(summary.progress.pages_done, kPages);
  EXPECT_EQ(Files(), std::vector<std::string>{});
  EXPECT_FALSE(hook_.armed());
}

TEST_F(JobRunnerTest, CancelAfterDoneChangesNothing) {
  auto runner = MakeRunner();
  ASSERT_TRUE(runner->Start().ok());
  ASSERT_TRUE(runner->Wait().ok());
  runner->Cancel();
  runner->CancelAndWait();
  Summary summary;
  EXPECT_TRUE(runner->Wait(&summary).ok());
  EXPECT_EQ(summary.state, JobState::kDone);
  EXPECT_EQ(runner->summary().state, JobState::kDone);
  EXPECT_EQ(Files(), std::vector<std::string>{"x.cbk"});
  std::lock_guard<std::mutex> lock(ending_.mu);
  EXPECT_EQ(ending_.calls, 1);
}

// The copier stays parked inside its copy until the destructor has
// cancelled: the destructor must then wait for the copier to end.
TEST_F(JobRunnerTest, DestroyingARunningRunnerCancelsAndWaitsForItsThread) {
  auto runner = MakeRunner();
  ParkAt park("CopyJob::copy:claimed", "JobRunner::CancelAndWait:waiting");
  ASSERT_TRUE(runner->Start().ok());
  park.WaitUntilParked();
  runner.reset();
  std::lock_guard<std::mutex> lock(ending_.mu);
  EXPECT_EQ(ending_.calls, 1);
  EXPECT_TRUE(ending_.status.IsCancelled()) << ending_.status.ToString();
  EXPECT_EQ(Files(), std::vector<std::string>{});
  EXPECT_FALSE(hook_.armed());
}

TEST_F(JobRunnerTest, DestroyingAnUnstartedRunnerRemovesItsOutputs) {
  auto runner = MakeRunner();
  EXPECT_TRUE(hook_.armed());
  EXPECT_FALSE(Files().empty());  // the temporary archive and the volume
  runner->CancelAndWait();  // never started: returns at once
  EXPECT_TRUE(hook_.armed());
  runner.reset();
  EXPECT_FALSE(hook_.armed());
  EXPECT_EQ(Files(), std::vector<std::string>{});
  std::lock_guard<std::mutex> lock(ending_.mu);
  EXPECT_EQ(ending_.calls, 0);
}

TEST_F(JobRunnerTest, WithoutAThreadTheJobEndsCancelledOnTheCaller) {
  auto runner = MakeRunner();
  Status s;
  {
    NoNewThreads no_threads;
    s = runner->Start();
  }
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("start backup thread"), std::string::npos) << s.ToString();
  EXPECT_TRUE(runner->done());
  Summary summary;
  EXPECT_TRUE(runner->Wait(&summary).IsCancelled());
  EXPECT_EQ(summary.state, JobState::kCancelled);
  EXPECT_EQ(Files(), std::vector<std::string>{});
  EXPECT_FALSE(hook_.armed());
  std::lock_guard<std::mutex> lock(ending_.mu);
  EXPECT_EQ(ending_.calls, 1);
  EXPECT_EQ(ending_.thread, std::this_thread::get_id());
}

}  // namespace
}  // namespace cowbackup::test
