// The deterministic interleaving harness: the heart of the engine's tests.
//
// One thread plays the copier and several writers by calling CopyJob's step
// functions (claim, preserve, publish, read, emit, ...; through
// CopyJobTestPeer) in an order drawn from a seeded RNG. A writer's own data
// write lands only after its before_write steps complete, as in a real
// front end. After every step the job's invariants (engine/copy_job.h)
// must hold; whatever the order, the sink must end up holding exactly the
// T0 image. Every failure prints the seed; COWBACKUP_SEED=<seed> replays
// one schedule.
//
// Schedules cover: writes that straddle segment boundaries, partial-page
// writes, writes past T0 (file growth), truncates (also below and back
// above T0), both variants, the hot-first reordering, copy requests added
// at the front while the job runs, and several writers contending (FIFO).
//
// WAL schedules (RunWal) copy a SQLite WAL database's image instead
// (backup/wal_image_source.h): a random main file and -wal file (committed
// frames, frames past the last commit, several pages replaced more than
// once), writers writing and truncating either file, each write routed to
// the image pages it could change (PagesChangedBy, as the hooks' routes do)
// and claimed run by run before it lands.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <random>

#include "backup/wal_image_source.h"
#include "copy_job_peer.h"
#include "engine/copy_job.h"
#include "memory_parts.h"
#include "test_util/long_run.h"
#include "test_util/wal.h"

namespace cowbackup::test {
namespace {

struct WriteAction {
  bool truncate = false;
  bool wal = false;  // WAL schedules: to the -wal file, not the main file
  uint64_t offset = 0, len = 0;  // write: bytes; truncate: offset = new size
};

// A writer as a state machine over CopyJob's steps.
struct WriterActor {
  std::vector<WriteAction> script;
  size_t next = 0;
  std::vector<PageRange> runs;  // the image pages the current action changes, claimed in turn
  size_t run = 0;
  enum class Phase { kIdle, kClaiming, kPreserve, kPublish, kApply, kDone } phase = Phase::kIdle;
  std::unique_ptr<CopyJobTestPeer::WriteOp> op;
};

struct CopierActor {
  enum class Phase { kNext, kClaim, kRead, kPublish, kEmit, kFinish, kDone } phase = Phase::kNext;
  CopyJobTestPeer::Segment seg;
};

class Schedule {
 public:
  explicit Schedule(uint64_t seed) : seed_(seed), rng_(seed) {}

  // Runs one schedule; returns "" on success, else what went wrong.
  std::string Run(std::optional<Variant> force_variant = std::nullopt,
                  std::vector<uint8_t>* image_out = nullptr) {
    page_size_ = Pick({16, 64, 512});
    const uint64_t pages = Uniform(0, 40);
    std::vector<uint8_t> bytes(pages * page_size_);
    for (auto& b : bytes) b = uint8_t(rng_());
    // Sometimes the file has a partial page at the end; T0 covers whole pages.
    if (Uniform(0, 4) == 0) bytes.resize(bytes.size() + Uniform(1, page_size_ - 1), 0x5a);
    source_ = std::make_unique<MemorySource>(page_size_, bytes);
    t0_pages_ = pages;
    t0_image_.assign(bytes.begin(), bytes.begin() + pages * page_size_);
    return RunJob(source_.get(), force_variant, image_out);
  }

  // A WAL database: the main file and the -wal file are written, the job
  // copies the image of the two.
  std::string RunWal() {
    page_size_ = Pick({512, 1024});
    const uint64_t main_pages = Uniform(0, 30);
    std::vector<uint8_t> bytes(main_pages * page_size_);
    for (auto& b : bytes) b = uint8_t(rng_());
    source_ = std::make_unique<MemorySource>(page_size_, bytes);
    WalBuilder wal(page_size_, Uniform(0, 1) == 1, uint32_t(rng_()), uint32_t(rng_()));
    const uint64_t frames = Uniform(0, 40);
    for (uint64_t i = 0; i < frames; i++) {
      std::vector<uint8_t> page(page_size_);
      for (auto& b : page) b = uint8_t(rng_());
      const uint32_t commit = Uniform(0, 3) == 0 ? uint32_t(Uniform(1, main_pages + 6)) : 0;
      wal.FrameWith(uint32_t(Uniform(1, main_pages + 6)), page, commit, wal.header().salt1, wal.header().salt2);
    }
    wal_ = std::make_unique<MemorySource>(page_size_, wal.bytes);
    sqlite::WalScan scan;
    Status s = sqlite::ScanWal(wal.bytes.data(), wal.bytes.size(), &scan);
    if (s.ok()) s = sqlite::WalImageSource::Make(source_.get(), main_pages, wal_.get(), scan, &image_);
    if (!s.ok()) return "setup: " + s.ToString();
    t0_pages_ = image_->page_count();
    t0_image_.resize(t0_pages_ * page_size_);
    s = image_->read(0, t0_image_.data(), t0_image_.size());
    if (!s.ok()) return "T0 image: " + s.ToString();
    return RunJob(image_.get(), std::nullopt, nullptr);
  }

 private:
  std::string RunJob(Source* source, std::optional<Variant> force_variant,
                     std::vector<uint8_t>* image_out) {
    JobConfig config;
    config.page_size = page_size_;
    config.t0_pages = t0_pages_;
    config.segment_pages = uint32_t(Uniform(1, 9));
    config.variant = force_variant ? *force_variant
                                   : (Uniform(0, 1) ? Variant::kOverlayAtEnd : Variant::kSnapshotFirst);
    config.hot_first = Uniform(0, 2) == 0;
    volume_ = std::make_unique<MemoryVolume>(page_size_);
    sink_ = std::make_unique<MemorySink>(page_size_, t0_pages_);
    job_ = std::make_unique<CopyJob>(source, volume_.get(), sink_.get(), config);
    steps_ = std::make_unique<CopyJobTestPeer>(job_.get());

    const int nwriters = int(Uniform(1, 4));
    writers_.clear();
    writers_.resize(nwriters);
    for (auto& w : writers_) {
      const int nops = int(Uniform(1, 7));
      for (int i = 0; i < nops; i++) w.script.push_back(RandomAction());
    }

    for (int step = 0; step < 200000; step++) {
      std::vector<int> runnable;
      if (copier_.phase != CopierActor::Phase::kDone) runnable.push_back(-1);
      for (int i = 0; i < nwriters; i++) {
        if (writers_[i].phase != WriterActor::Phase::kDone) runnable.push_back(i);
      }
      if (runnable.empty()) break;
      const int who = runnable[Uniform(0, runnable.size() - 1)];
      if (trace_) Trace(who);
      std::string err = who < 0 ? StepCopier() : StepWriter(&writers_[who]);
      if (!err.empty()) return err;
      err = steps_->InvariantViolation();
      if (!err.empty()) return "after step " + std::to_string(step) + ": " + err;
      // Now and then, ask for a range at the front of the queue (reordering
      // and extension while the job runs).
      if (Uniform(0, 60) == 0 && t0_pages_ > 0) {
        const uint64_t a = Uniform(0, t0_pages_ - 1);
        job_->enqueue({a, a + Uniform(1, 6)}, /*front=*/true);
      }
    }
    if (copier_.phase != CopierActor::Phase::kDone) return "copier did not finish (livelock?)";
    for (auto& w : writers_) {
      if (w.phase != WriterActor::Phase::kDone) return "a writer did not finish (deadlock?)";
    }
    if (sink_->contract_violations) return "sink contract violated";
    if (!sink_->finished) return "sink not finished";
    if (!volume_->removed) {
      // run() removes the volume; the steps alone do not. Nothing to check.
    }
    if (sink_->image != t0_image_) {
      for (uint64_t p = 0; p < t0_pages_; p++) {
        if (memcmp(sink_->image.data() + p * page_size_, t0_image_.data() + p * page_size_,
                   page_size_) != 0) {
          return "page " + std::to_string(p) + " differs from T0";
        }
      }
      return "image differs from T0";
    }
    const Progress pr = job_->progress();
    if (pr.pages_done != t0_pages_) return "pages_done != t0 pages";
    if (pr.pages_preserved != volume_->pages.size()) return "pages_preserved miscounted";
    if (image_out) *image_out = sink_->image;
    return "";
  }

  uint64_t Uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  uint32_t Pick(std::initializer_list<uint32_t> xs) {
    return *(xs.begin() + Uniform(0, xs.size() - 1));
  }

  WriteAction RandomAction() {
    if (image_ && Uniform(0, 1) == 0) {
      // The -wal file: a restart's frames over old ones, or a truncate.
      WriteAction a;
      a.wal = true;
      const uint64_t frame = sqlite::kWalFrameHeaderSize + page_size_;
      const uint64_t span = wal_->bytes.size() + frame;
      a.truncate = Uniform(0, 5) == 0;
      a.offset = Uniform(0, span);
      a.len = Uniform(0, 1) ? frame : Uniform(1, 2 * frame);
      return a;
    }
    WriteAction a;
    const uint64_t span = (t0_pages_ + 3) * page_size_;
    switch (Uniform(0, 9)) {
      case 0:  // truncate: below T0, mid-page, or above
        a.truncate = true;
        a.offset = Uniform(0, span);
        break;
      case 1:  // whole pages, possibly many, straddling segments
        a.offset = Uniform(0, t0_pages_ + 1) * page_size_;
        a.len = Uniform(1, 10) * page_size_;
        break;
      case 2:  // growth past T0
        a.offset = t0_pages_ * page_size_ + Uniform(0, 2 * page_size_);
        a.len = Uniform(1, 2 * page_size_);
        break;
      default:  // partial pages, anywhere
        a.offset = Uniform(0, span);
        a.len = Uniform(1, 3 * page_size_);
        break;
    }
    return a;
  }

  std::string StepWriter(WriterActor* w) {
    switch (w->phase) {
      case WriterActor::Phase::kIdle: {
        if (w->next == w->script.size()) {
          w->phase = WriterActor::Phase::kDone;
          return "";
        }
        const WriteAction& a = w->script[w->next];
        // What before_write/before_truncate compute before claiming; in a
        // WAL schedule, for each run the route reports.
        w->runs.clear();
        w->run = 0;
        if (image_) {
          image_->PagesChangedBy(a.wal ? sqlite::WalImageSource::File::kWal
                                       : sqlite::WalImageSource::File::kMain,
                                 a.offset, a.truncate ? UINT64_MAX - a.offset : a.len,
                                 [&](PageRange r) { w->runs.push_back(r.clip(t0_pages_)); });
        } else {
          w->runs.push_back(a.truncate ? PageRange{a.offset / page_size_, t0_pages_}.clip(t0_pages_)
                                       : PageRange::FromBytes(a.offset, a.len, page_size_).clip(t0_pages_));
        }
        w->phase = WriterActor::Phase::kClaiming;
        return NextRun(w);
      }
      case WriterActor::Phase::kClaiming:
        if (steps_->ClaimWrite(w->op.get())) {
          w->phase = WriterActor::Phase::kPreserve;
          if (w->op->claimed.empty()) return NextRun(w);
        }
        return "";
      case WriterActor::Phase::kPreserve:
        steps_->Preserve(w->op.get());
        w->phase = WriterActor::Phase::kPublish;
        return job_->failed() ? "job failed in preserve: " + job_->status().ToString() : "";
      case WriterActor::Phase::kPublish:
        steps_->PublishPreserved(w->op.get());
        return NextRun(w);
      case WriterActor::Phase::kApply: {
        const WriteAction& a = w->script[w->next++];
        MemorySource* file = a.wal ? wal_.get() : source_.get();
        if (a.truncate) {
          file->truncate(a.offset);
        } else {
          std::vector<uint8_t> data(a.len);
          for (auto& b : data) b = uint8_t(rng_());
          file->write(a.offset, data.data(), data.size());
        }
        w->phase = WriterActor::Phase::kIdle;
        return "";
      }
      case WriterActor::Phase::kDone:
        return "";
    }
    return "";
  }

  // The writer's next run to claim, or its data write once none is left.
  std::string NextRun(WriterActor* w) {
    if (w->run == w->runs.size()) {
      w->phase = WriterActor::Phase::kApply;
      return "";
    }
    w->op = std::make_unique<CopyJobTestPeer::WriteOp>();
    w->op->pages = w->runs[w->run++];
    w->phase = WriterActor::Phase::kClaiming;
    return "";
  }

  std::string StepCopier() {
    CopierActor& c = copier_;
    Status s;
    switch (c.phase) {
      case CopierActor::Phase::kNext:
        c.phase = steps_->NextSegment(&c.seg) ? CopierActor::Phase::kClaim
                                                   : CopierActor::Phase::kFinish;
        return "";
      case CopierActor::Phase::kClaim:
        if (steps_->ClaimSegment(&c.seg)) c.phase = CopierActor::Phase::kRead;
        return "";
      case CopierActor::Phase::kRead:
        s = steps_->ReadSegment(&c.seg);
        c.phase = CopierActor::Phase::kPublish;
        break;
      case CopierActor::Phase::kPublish:
        steps_->PublishSegment(&c.seg);
        c.phase = CopierActor::Phase::kEmit;
        return "";
      case CopierActor::Phase::kEmit:
        s = steps_->EmitSegment(&c.seg);
        c.phase = CopierActor::Phase::kNext;
        break;
      case CopierActor::Phase::kFinish:
        if (!steps_->QueueDrained()) {  // a front enqueue arrived meanwhile
          c.phase = CopierActor::Phase::kNext;
          return "";
        }
        s = steps_->Finish();
        if (s.IsBusy()) return "";  // a writer is still preserving: try later
        c.phase = CopierActor::Phase::kDone;
        break;
      case CopierActor::Phase::kDone:
        return "";
    }
    return s.ok() ? "" : "copier step failed: " + s.ToString();
  }

  void Trace(int who) {
    if (who < 0) {
      fprintf(stderr, "copier phase %d seg [%lu,%lu)\n", int(copier_.phase),
              (unsigned long)copier_.seg.range.begin, (unsigned long)copier_.seg.range.end);
      return;
    }
    const WriterActor& w = writers_[who];
    const WriteAction* a = w.next < w.script.size() ? &w.script[w.next] : nullptr;
    fprintf(stderr, "writer %d phase %d %s%s off %lu len %lu pages [%lu,%lu)\n", who, int(w.phase),
            a && a->wal ? "wal " : "", a && a->truncate ? "truncate" : "write", a ? (unsigned long)a->offset : 0ul,
            a ? (unsigned long)a->len : 0ul, w.op ? (unsigned long)w.op->pages.begin : 0ul,
            w.op ? (unsigned long)w.op->pages.end : 0ul);
  }

  const uint64_t seed_;
  const bool trace_ = getenv("COWBACKUP_TRACE") != nullptr;
  std::mt19937_64 rng_;
  uint32_t page_size_ = 0;
  uint64_t t0_pages_ = 0;
  std::vector<uint8_t> t0_image_;
  std::unique_ptr<MemorySource> source_;  // the file, or a WAL database's main file
  std::unique_ptr<MemorySource> wal_;     // WAL schedules: the -wal file
  std::unique_ptr<sqlite::WalImageSource> image_;  // WAL schedules: what the job copies
  std::unique_ptr<MemoryVolume> volume_;
  std::unique_ptr<MemorySink> sink_;
  std::unique_ptr<CopyJob> job_;
  std::unique_ptr<CopyJobTestPeer> steps_;
  std::vector<WriterActor> writers_;
  CopierActor copier_;
};

uint64_t ScheduleCount() {
  if (const char* s = getenv("COWBACKUP_SCHEDULES")) return strtoull(s, nullptr, 10);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer builds re-run the suite for memory errors, not coverage:
  // the normal build explores 50,000 schedules.
  return LongRun() ? 200000 : 12000;
#else
  return LongRun() ? 1000000 : 50000;
#endif
}

TEST(Interleaving, EveryScheduleCopiesTheT0Image) {
  if (const char* one = getenv("COWBACKUP_SEED")) {
    const uint64_t seed = strtoull(one, nullptr, 10);
    EXPECT_EQ(Schedule(seed).Run(), "") << "seed " << seed;
    return;
  }
  const uint64_t n = ScheduleCount();
  for (uint64_t seed = 1; seed <= n; seed++) {
    const std::string err = Schedule(seed).Run();
    ASSERT_EQ(err, "") << "schedule failed; replay with COWBACKUP_SEED=" << seed;
  }
}

TEST(Interleaving, EveryWalScheduleCopiesTheT0Image) {
  if (const char* one = getenv("COWBACKUP_SEED")) {
    const uint64_t seed = strtoull(one, nullptr, 10);
    EXPECT_EQ(Schedule(seed).RunWal(), "") << "seed " << seed;
    return;
  }
  const uint64_t n = ScheduleCount() / 5;
  for (uint64_t seed = 1; seed <= n; seed++) {
    const std::string err = Schedule(seed).RunWal();
    ASSERT_EQ(err, "") << "WAL schedule failed; replay with COWBACKUP_SEED=" << seed;
  }
}

// The two variants must give byte-identical images for the same schedule.
TEST(Interleaving, BothVariantsGiveIdenticalImages) {
  for (uint64_t seed = 1; seed <= 2000; seed++) {
    std::vector<uint8_t> a, b;
    ASSERT_EQ(Schedule(seed).Run(Variant::kSnapshotFirst, &a), "") << "seed " << seed;
    ASSERT_EQ(Schedule(seed).Run(Variant::kOverlayAtEnd, &b), "") << "seed " << seed;
    ASSERT_EQ(a, b) << "variants differ; seed " << seed;
  }
}

}  // namespace
}  // namespace cowbackup::test
