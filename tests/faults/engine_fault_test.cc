// Engine-level fault sweeps: for each fault kind x target x nth (swept
// upward until the fault no longer fires), a backup runs under live writer
// threads over a file of self-checking pages, and:
//   1. a job hit by a fault fails with a status naming the cause and the
//      file (ENOSPC -> kNoSpace, "No space left on device"; EIO -> kIOError,
//      "Input/output error"; a short read -> kIncomplete / kCorruption);
//   2. every application write completes (a watchdog aborts if a writer is
//      held) and the file holds exactly what the writers wrote;
//   3. nothing is at the destination, and neither the temporary archive nor
//      the snapshot volume is left in the directory;
//   4. the last run of each sweep (nothing fired) yields an archive that
//      verifies and restores to exactly the T0 image.
// The seed is printed with the fault trace when a check fails; set
// COWBACKUP_FAULT_SEED to rerun one.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "backup/archive_writer.h"
#include "backup/backup_job.h"
#include "backup/output.h"
#include "backup/restore.h"
#include "engine/copy_job.h"
#include "engine/write_hook.h"
#include "faults/fault_injection.h"
#include "faults/page_workload.h"

namespace cowbackup::faults {
namespace {

struct Target {
  const char* name;
  Op op;
};

const Target kTargets[] = {
    {"SourceRead", kOpSourceRead}, {"VolumePut", kOpPut},   {"VolumeGet", kOpGet},
    {"SinkPutRun", kOpPutRun},     {"SinkOverlay", kOpPutOverlay}, {"SinkFinish", kOpFinish},
    {"OutputAppend", kOpAppend},   {"OutputCommit", kOpCommit},
};

struct Case {
  Target target;
  FaultKind kind;
  bool persistent;
  Variant variant;
};

std::string CaseName(const Case& c) {
  std::string name = c.target.name;
  name += c.kind == FaultKind::kNoSpace ? "_NoSpace" : c.kind == FaultKind::kIOError ? "_EIO" : "_Short";
  name += c.persistent ? "_FromThenOn" : "_Once";
  name += c.variant == Variant::kSnapshotFirst ? "_SnapshotFirst" : "_OverlayAtEnd";
  return name;
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (const Variant v : {Variant::kSnapshotFirst, Variant::kOverlayAtEnd}) {
    for (const Target& t : kTargets) {
      // Overlays exist only in kOverlayAtEnd.
      if (t.op == kOpPutOverlay && v != Variant::kOverlayAtEnd) continue;
      for (const FaultKind k : {FaultKind::kNoSpace, FaultKind::kIOError, FaultKind::kShort}) {
        cases.push_back({t, k, false, v});
      }
      // From-then-on faults: one kind is enough per target and variant; the
      // difference is what happens after the first one fires.
      cases.push_back({t, FaultKind::kIOError, true, v});
    }
  }
  return cases;
}

// The code and the text a fault must produce.
void ExpectCause(const Status& s, FaultKind kind, Op op, const std::string& where) {
  switch (kind) {
    case FaultKind::kNoSpace:
      EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
      EXPECT_NE(s.ToString().find("No space left on device"), std::string::npos) << s.ToString();
      break;
    case FaultKind::kIOError:
      EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
      EXPECT_NE(s.ToString().find("Input/output error"), std::string::npos) << s.ToString();
      break;
    case FaultKind::kShort:
      if (IsWriteOp(op)) {
        EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
        EXPECT_NE(s.ToString().find("No space left on device"), std::string::npos) << s.ToString();
      } else if (op == kOpGet) {
        EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
        EXPECT_NE(s.ToString().find("short record"), std::string::npos) << s.ToString();
      } else {
        EXPECT_EQ(s.code(), Status::Code::kIncomplete) << s.ToString();
        EXPECT_NE(s.ToString().find("unexpected end of file"), std::string::npos) << s.ToString();
      }
      break;
  }
  EXPECT_NE(s.ToString().find(where), std::string::npos)
      << "the error does not name " << where << ": " << s.ToString();
}

uint64_t BaseSeed() {
  const char* v = getenv("COWBACKUP_FAULT_SEED");
  return v && *v ? strtoull(v, nullptr, 10) : 20240601;
}

struct Totals {
  uint64_t runs = 0, faults = 0, writes = 0;
};
Totals g_totals;

class EngineFaultTest : public ::testing::TestWithParam<Case> {
 protected:
  // One backup with the fault armed at `nth`. Returns the number of faults
  // that fired (0 ends the sweep).
  uint64_t RunOnce(uint64_t nth, uint64_t seed);
};

uint64_t EngineFaultTest::RunOnce(uint64_t nth, uint64_t seed) {
  const Case& c = GetParam();
  const std::string dir = MakeTempDir("cowbackup-fault");
  const std::string db = dir + "/db";
  const std::string dest = dir + "/backup.cow";
  const std::string volume_path = dir + "/backup.cow.1" + kVolumeSuffix;
  const std::string restored = dir + "/restored";

  WorkloadOptions wo;
  wo.page_size = 4096;
  wo.pages = 288;  // 1.1 MiB: the archive writer flushes more than once
  wo.writers = 4;
  wo.seed = seed;
  wo.pause_us = 20;
  int fd = ::open(db.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  EXPECT_GE(fd, 0);
  WriteHook hook;
  FaultInjector inj(seed);
  PageWorkload workload(fd, db, &hook, wo);
  EXPECT_TRUE(workload.InitFile().ok());
  workload.set_context([&] { return "seed " + std::to_string(seed) + ", case " + CaseName(c) +
                                    "\n" + inj.Trace(); });

  std::unique_ptr<FileSnapshotVolume> volume;
  EXPECT_TRUE(FileSnapshotVolume::Create(volume_path, wo.page_size, db, &volume).ok());
  std::unique_ptr<AtomicFile> file;
  EXPECT_TRUE(AtomicFile::Create(dest, false, &file).ok());
  const std::string temp_path = file->temp_path();
  format::Header header;
  header.page_size = wo.page_size;
  header.page_count = wo.pages;
  ArchiveWriter writer(header, std::make_unique<FaultyByteOutput>(std::move(file), &inj));
  FaultySource source(workload.source(), &inj);
  FaultySnapshotVolume fvolume(volume.get(), &inj, volume_path, wo.page_size);
  FaultySink sink(&writer, &inj, dest, wo.page_size);

  JobConfig config;
  config.page_size = wo.page_size;
  config.t0_pages = wo.pages;
  config.segment_pages = 16;
  config.variant = c.variant;
  config.max_rate_mb = 150;  // ~8 ms: writers collide with the copier
  CopyJob job(&source, &fvolume, &sink, config);
  inj.Arm({c.kind, nth, c.persistent, c.target.op});

  workload.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::vector<uint64_t> t0;
  workload.Quiesce([&] {
    EXPECT_TRUE(hook.arm(&job).ok());
    t0 = workload.Model();
  });
  const Status s = job.run();
  hook.disarm();
  // Writers go on after the job: a few more writes each, promptly.
  const uint64_t after = workload.writes_done();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (workload.writes_done() < after + 8 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_GE(workload.writes_done(), after + 8) << "writers stopped making progress after the job";
  workload.Stop();
  const uint64_t fired = inj.fired();

  // 2. Every application write landed, and nothing else changed the file.
  EXPECT_EQ(workload.CheckFile(), "");
  EXPECT_TRUE(fvolume.removed()) << "the job did not remove its snapshot volume";
  const std::vector<std::string> names = ListDir(dir);
  if (!s.ok()) {
    // 1. A failed job names the cause: the first fault that fired.
    const std::vector<FaultEvent> events = inj.events();
    EXPECT_FALSE(events.empty()) << "the job failed without a fault: " << s.ToString();
    if (!events.empty()) {
      const Op op = events.front().op;
      const std::string where = op == kOpSourceRead ? db : op == kOpPut || op == kOpGet ? volume_path : dest;
      ExpectCause(s, c.kind, op, where);
    }
    EXPECT_TRUE(sink.abandoned()) << "the job did not abandon its sink";
    // 3. Nothing at the destination, no temporaries.
    EXPECT_EQ(names, std::vector<std::string>{"db"}) << "left behind in " << dir;
  } else {
    // 4. A job that succeeds gives exactly the T0 image, whether nothing
    // fired or the engine rode out the fault (kOverlayAtEnd re-reads a
    // short source read page by page: a truncate may have cut it).
    if (fired > 0) {
      EXPECT_TRUE(c.kind == FaultKind::kShort && c.target.op == kOpSourceRead &&
                  c.variant == Variant::kOverlayAtEnd)
          << "a fault fired but the job reported success";
    }
    ArchiveReport report;
    const Status v = VerifyArchive(dest, &report);
    EXPECT_TRUE(v.ok()) << v.ToString();
    Status r = RestoreArchive(dest, restored, false);
    EXPECT_TRUE(r.ok()) << r.ToString();
    std::vector<uint8_t> image;
    EXPECT_TRUE(ReadFile(restored, &image));
    EXPECT_EQ(PageWorkload::CheckImage(image, wo.page_size, t0), "");
    EXPECT_FALSE(PathExists(temp_path));
    EXPECT_FALSE(PathExists(volume_path));
  }
  if (HasFailure()) {
    fprintf(stderr, "case %s nth %llu seed %llu\n%s\n", CaseName(c).c_str(),
            static_cast<unsigned long long>(nth), static_cast<unsigned long long>(seed),
            inj.Trace().c_str());
  }
  g_totals.runs++;
  g_totals.faults += fired;
  g_totals.writes += workload.writes_done();
  ::close(fd);
  RemoveTree(dir);
  return fired;
}

TEST_P(EngineFaultTest, JobFailsCleanlyAndWritersNeverNotice) {
  const uint64_t seed = BaseSeed() + std::hash<std::string>{}(CaseName(GetParam())) % 100000;
  // Sweep nth upward until the fault no longer fires. Every nth up to 32
  // (the first segments, the first preservations, every finish step);
  // past that, writers make each nth a different moment anyway, so a
  // stride keeps CI short (COWBACKUP_LONG=1: every nth). Sanitizer builds
  // stride wider still.
  const uint64_t kMaxNth = 5000;
  const uint64_t stride = LongRun() ? 1 : 3 * kSanitizerSlowdown;
  uint64_t nth = 1;
  for (; nth <= kMaxNth; nth += nth < 32 && kSanitizerSlowdown == 1 ? 1 : stride) {
    if (RunOnce(nth, seed + nth) == 0) break;
    if (HasFailure()) return;
  }
  EXPECT_LE(nth, kMaxNth) << "the fault kept firing; the sweep did not end";
}

INSTANTIATE_TEST_SUITE_P(Sweep, EngineFaultTest, ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return CaseName(info.param);
                         });

// BackupJob (Prepare / Begin / Run) over a source that fails: the job's own
// temporary archive and snapshot volume are removed, nothing is published,
// and the summary says why.
TEST(BackupJobFaultTest, SourceFaultLeavesNothingBehind) {
  for (const FaultKind kind : {FaultKind::kNoSpace, FaultKind::kIOError, FaultKind::kShort}) {
    for (uint64_t nth = 1;; nth += nth < 16 || LongRun() ? 1 : 3 * kSanitizerSlowdown) {
      const std::string dir = MakeTempDir("cowbackup-fault");
      const std::string db = dir + "/db";
      WorkloadOptions wo;
      wo.pages = 256;
      wo.seed = nth;
      int fd = ::open(db.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      ASSERT_GE(fd, 0);
      WriteHook hook;
      FaultInjector inj(nth);
      PageWorkload workload(fd, db, &hook, wo);
      ASSERT_TRUE(workload.InitFile().ok());
      FaultySource source(workload.source(), &inj);
      BackupParams params;
      params.dest = dir + "/backup.cow";
      params.source_name = db;
      params.options.segment_pages = 16;
      params.options.max_rate_mb = 200;
      std::unique_ptr<BackupJob> job;
      ASSERT_TRUE(BackupJob::Prepare(&source, params, &job).ok());
      inj.Arm({kind, nth, false, kOpSourceRead});
      workload.Start();
      workload.Quiesce([&] { ASSERT_TRUE(job->Begin(wo.pages, "", &hook).ok()); });
      const Status s = job->Run();
      workload.Stop();
      EXPECT_EQ(workload.CheckFile(), "");
      const Summary summary = job->summary();
      if (inj.fired() == 0) {
        EXPECT_TRUE(s.ok()) << s.ToString();
        EXPECT_EQ(summary.state, JobState::kDone);
        ArchiveReport report;
        EXPECT_TRUE(VerifyArchive(params.dest, &report).ok());
      } else {
        EXPECT_FALSE(s.ok());
        EXPECT_EQ(summary.state, JobState::kFailed);
        EXPECT_EQ(summary.error, s.ToString());
        EXPECT_NE(summary.error.find(db), std::string::npos) << summary.error;
        EXPECT_EQ(ListDir(dir), std::vector<std::string>{"db"});
      }
      if (HasFailure()) fprintf(stderr, "nth %llu\n%s\n", (unsigned long long)nth, inj.Trace().c_str());
      g_totals.runs++;
      g_totals.faults += inj.fired();
      const bool done = inj.fired() == 0;
      job.reset();
      ::close(fd);
      RemoveTree(dir);
      if (done || HasFailure()) break;
      ASSERT_LT(nth, 5000u);
    }
  }
}

// The figures for the closing note: backups run, faults injected.
class Summarize : public ::testing::Environment {
 public:
  void TearDown() override {
    fprintf(stderr, "engine fault sweeps: %llu backups, %llu faults injected, %llu application writes\n",
            static_cast<unsigned long long>(g_totals.runs),
            static_cast<unsigned long long>(g_totals.faults),
            static_cast<unsigned long long>(g_totals.writes));
  }
};
const auto* const kSummarize = ::testing::AddGlobalTestEnvironment(new Summarize);

}  // namespace
}  // namespace cowbackup::faults
