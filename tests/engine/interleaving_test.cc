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
// Shared schedules (SharedSchedule, below) play the protocol of a job that
// several processes take part in, parties dying at any step.
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
#include <set>

#include "backup/wal_image_source.h"
#include "copy_job_peer.h"
#include "engine/copy_job.h"
#include "memory_parts.h"
#include "shared_pages_peer.h"
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

// ---------------------------------------------------------------------------
// The protocol of a job several processes take part in (engine/shared_pages.h,
// JobConfig::shared), with the shared state modelled as such.
//
// Parties stand for processes (shared_pages_peer.h): party 0 owns the job
// and runs its copier (CopyJob's shared steps, through CopyJobTestPeer) and
// maybe a writer thread; parties 1..3 run one or two writer threads each.
// A writer is a state machine over SharedPages' own steps
// (SharedPagesTestPeer), in WriteThrough's order: claim page by page (on a
// busy page it waits, and may move again once the word changed, its holder
// died, or the job stopped being current), preserve, publish; then its
// write lands. All the parties share is the page-state area and the peer
// table, as processes share the coordination region.
//
// A party may die after any of its steps (seeded): its threads stop where
// they are, and the others see it dead at once, as the byte locks tell
// them. The owner's death leaves the job current for a few more steps (the
// front end's job_current() polls the owner), then not. A seeded fault
// makes one preservation fail.
//
// After every step, while the job is current: a page preserved has its T0
// bytes in the volume; a page copied has them in the copier's hands; a
// page whose bytes differ from T0 is settled (no write landed on a page
// not yet settled). When nobody can move, every party alive is done:
// nobody waits on a dead party forever. A job that finishes holds the T0
// image; it may fail only if a fault was injected, and must finish if its
// owner lives.

struct SharedWriter {
  uint32_t party = 0;
  std::vector<WriteAction> script;
  size_t next = 0;
  enum class Phase { kIdle, kClaim, kWait, kPreserve, kPublish, kApply, kDone } phase = Phase::kIdle;
  PageRange pages;     // the current action's, clipped to T0
  uint64_t pgno = 0;   // the next page to claim
  uint32_t busy = 0;   // kWait: the word of the page it waits on
  std::vector<PageRange> claimed;
};

struct SharedCopier {
  enum class Phase { kNext, kClaim, kRead, kPublish, kWait, kEmit, kFinish, kDone } phase = Phase::kNext;
  CopyJobTestPeer::Segment seg;
  CopyJobTestPeer::SharedCopy sc;
  std::vector<uint32_t> later_words;  // per page of seg: the word of a page left for later
};

const char* PhaseName(SharedWriter::Phase p) {
  static const char* const kNames[] = {"idle", "claim", "wait", "preserve", "publish", "apply", "done"};
  return kNames[int(p)];
}
const char* PhaseName(SharedCopier::Phase p) {
  static const char* const kNames[] = {"next", "claim", "read", "publish", "wait", "emit", "finish", "done"};
  return kNames[int(p)];
}

// Where parties died, over every schedule run: "writer:claim+held", "copier:read", ...
std::set<std::string>& DeathSites() {
  static std::set<std::string> sites;
  return sites;
}

class SharedSchedule {
 public:
  explicit SharedSchedule(uint64_t seed) : rng_(seed) {}

  std::string Run() {
    page_size_ = Pick({16, 64});
    t0_pages_ = Uniform(0, 24);
    std::vector<uint8_t> bytes(t0_pages_ * page_size_);
    for (auto& b : bytes) b = uint8_t(rng_());
    if (Uniform(0, 4) == 0) bytes.resize(bytes.size() + Uniform(1, page_size_ - 1), 0x5a);
    source_ = std::make_unique<MemorySource>(page_size_, bytes);
    t0_image_.assign(bytes.begin(), bytes.begin() + t0_pages_ * page_size_);
    copy_.assign(t0_pages_, {});

    shared_ = std::make_unique<SharedArea>(t0_pages_);
    const uint32_t nparties = uint32_t(Uniform(2, 4));
    for (uint32_t i = 0; i < nparties; i++) {
      parties_.push_back(std::make_unique<TestParty>(shared_.get(), i));
      steps_taken_.push_back(0);
    }
    volume_ = std::make_unique<MemoryVolume>(page_size_);
    volume_->repeat_ok = true;
    if (t0_pages_ > 0 && Uniform(0, 7) == 0) {
      // The first preservation of this page fails (other bytes: "preserved twice").
      fault_ = true;
      volume_->pages[Uniform(0, t0_pages_ - 1)] = std::vector<uint8_t>(page_size_, 0xee);
    }
    sink_ = std::make_unique<MemorySink>(page_size_, t0_pages_);
    JobConfig config;
    config.page_size = page_size_;
    config.t0_pages = t0_pages_;
    config.segment_pages = uint32_t(Uniform(1, 9));
    config.variant = Uniform(0, 1) ? Variant::kOverlayAtEnd : Variant::kSnapshotFirst;
    config.shared = &parties_[kOwner]->pages;
    job_ = std::make_unique<CopyJob>(source_.get(), volume_.get(), sink_.get(), config);
    steps_ = std::make_unique<CopyJobTestPeer>(job_.get());

    for (uint32_t party = 0; party < nparties; party++) {
      const int threads = int(party == kOwner ? Uniform(0, 1) : Uniform(1, 2));
      for (int t = 0; t < threads; t++) {
        SharedWriter w;
        w.party = party;
        const int nops = int(Uniform(1, 5));
        for (int i = 0; i < nops; i++) w.script.push_back(RandomAction());
        writers_.push_back(std::move(w));
      }
    }
    if (Uniform(0, 1) == 0) {
      die_party_ = int(Uniform(0, nparties - 1));
      die_after_ = Uniform(0, 30);
      owner_grace_ = int(Uniform(0, 5));
    }

    // A schedule takes a few hundred steps; one that goes on is a livelock.
    for (int step = 0;; step++) {
      if (step == 20000) return "no end after " + std::to_string(step) + " steps (livelock?)";
      std::vector<int> runnable;
      if (CopierRunnable()) runnable.push_back(-1);
      for (size_t i = 0; i < writers_.size(); i++) {
        if (WriterRunnable(writers_[i])) runnable.push_back(int(i));
      }
      if (runnable.empty()) break;
      const int who = runnable[Uniform(0, runnable.size() - 1)];
      const uint32_t party = who < 0 ? kOwner : writers_[who].party;
      if (trace_) Trace(who);
      std::string err = who < 0 ? StepCopier() : StepWriter(&writers_[who]);
      if (!err.empty()) return "step " + std::to_string(step) + ": " + err;
      if (int(party) == die_party_ && ++steps_taken_[party] > die_after_ && Alive(party)) Die(party);
      if (!Alive(kOwner) && Current() && owner_grace_-- <= 0) table()->current = 0;
      err = Check();
      if (!err.empty()) return "after step " + std::to_string(step) + ": " + err;
    }
    return Outcome();
  }

 private:
  PeerTable* table() const { return shared_->table(); }
  bool Alive(uint32_t party) const { return table()->dead[party].load() == 0; }
  bool Current() const { return table()->current.load() != 0; }
  uint32_t Word(uint64_t pgno) const { return parties_[kOwner]->pages.load(pgno); }

  uint64_t Uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  uint32_t Pick(std::initializer_list<uint32_t> xs) {
    return *(xs.begin() + Uniform(0, xs.size() - 1));
  }

  WriteAction RandomAction() {
    WriteAction a;
    const uint64_t span = (t0_pages_ + 3) * page_size_;
    switch (Uniform(0, 9)) {
      case 0:  // truncate: below T0, mid-page, or above
        a.truncate = true;
        a.offset = Uniform(0, span);
        break;
      case 1:  // whole pages, straddling segments
        a.offset = Uniform(0, t0_pages_ + 1) * page_size_;
        a.len = Uniform(1, 6) * page_size_;
        break;
      default:  // partial pages, anywhere
        a.offset = Uniform(0, span);
        a.len = Uniform(1, 3 * page_size_);
        break;
    }
    return a;
  }

  bool WriterRunnable(const SharedWriter& w) const {
    if (w.phase == SharedWriter::Phase::kDone || !Alive(w.party)) return false;
    if (w.phase != SharedWriter::Phase::kWait) return true;
    // Asleep until the word changes, its holder is gone, or the job ends.
    return Word(w.pgno) != w.busy || !Alive(PartyOf(w.busy)) || !Current();
  }

  bool CopierRunnable() const {
    const SharedCopier& c = copier_;
    if (c.phase == SharedCopier::Phase::kDone || !Alive(kOwner)) return false;
    if (!Current()) return true;
    if (c.phase == SharedCopier::Phase::kWait) {
      for (size_t i = 0; i < c.later_words.size(); i++) {
        const uint32_t w = c.later_words[i];
        if (w != 0 && (Word(c.seg.range.begin + i) != w || !Alive(PartyOf(w)))) return true;
      }
      return false;
    }
    if (c.phase == SharedCopier::Phase::kFinish) {
      // settle_shared waits while a live holder is preserving.
      for (uint64_t p = 0; p < t0_pages_; p++) {
        const uint32_t w = Word(p);
        if (w >= SharedPages::kBusy && Alive(PartyOf(w))) return false;
      }
    }
    return true;
  }

  std::string StepWriter(SharedWriter* w) {
    SharedPagesTestPeer steps(&parties_[w->party]->pages);
    switch (w->phase) {
      case SharedWriter::Phase::kIdle: {
        if (w->next == w->script.size()) {
          w->phase = SharedWriter::Phase::kDone;
          return "";
        }
        const WriteAction& a = w->script[w->next];
        w->pages = a.truncate ? PageRange{a.offset / page_size_, t0_pages_}.clip(t0_pages_)
                              : PageRange::FromBytes(a.offset, a.len, page_size_).clip(t0_pages_);
        w->pgno = w->pages.begin;
        w->claimed.clear();
        // As CopyJob::before_write: once the job is over, writes just land.
        w->phase = Current() && !w->pages.empty() ? SharedWriter::Phase::kClaim
                                                  : SharedWriter::Phase::kApply;
        return "";
      }
      case SharedWriter::Phase::kClaim:
        if (w->pgno == w->pages.end) {
          w->phase = SharedWriter::Phase::kPreserve;
        } else if (steps.TryClaim(w->pgno, &w->busy, &w->claimed) == SharedPagesTestPeer::Claim::kBusy) {
          w->phase = SharedWriter::Phase::kWait;
        } else {
          w->pgno++;
        }
        return "";
      case SharedWriter::Phase::kWait:
        switch (steps.CheckBusy(w->pgno, w->busy)) {
          case SharedPagesTestPeer::Busy::kChanged:
          case SharedPagesTestPeer::Busy::kReset: w->phase = SharedWriter::Phase::kClaim; return "";
          case SharedPagesTestPeer::Busy::kJobOver: w->phase = SharedWriter::Phase::kApply; return "";
          case SharedPagesTestPeer::Busy::kSleep: return "CheckBusy sleeps on a page that changed";
        }
        return "";
      case SharedWriter::Phase::kPreserve: {
        Status s = steps.Preserve(w->claimed, source_.get(), volume_.get(), page_size_);
        if (!s.ok()) {
          parties_[w->party]->fail(s);  // WriteThrough: the job fails, the write lands
          w->phase = SharedWriter::Phase::kApply;
        } else {
          w->phase = SharedWriter::Phase::kPublish;
        }
        return "";
      }
      case SharedWriter::Phase::kPublish:
        steps.Publish(w->claimed);
        w->claimed.clear();
        w->phase = SharedWriter::Phase::kApply;
        return "";
      case SharedWriter::Phase::kApply: {
        const WriteAction& a = w->script[w->next++];
        if (a.truncate) {
          source_->truncate(a.offset);
        } else {
          std::vector<uint8_t> data(a.len);
          for (auto& b : data) b = uint8_t(rng_());
          source_->write(a.offset, data.data(), data.size());
        }
        w->claimed.clear();
        w->phase = SharedWriter::Phase::kIdle;
        return "";
      }
      case SharedWriter::Phase::kDone:
        return "";
    }
    return "";
  }

  // copy_segment_shared's steps, in its order (engine/copy_job.cc).
  std::string StepCopier() {
    SharedCopier& c = copier_;
    Status s;
    switch (c.phase) {
      case SharedCopier::Phase::kNext:
        if (steps_->NextSegment(&c.seg)) {
          steps_->BeginShared(&c.seg, &c.sc);
          c.phase = SharedCopier::Phase::kClaim;
        } else {
          c.phase = SharedCopier::Phase::kFinish;
        }
        return "";
      case SharedCopier::Phase::kClaim:
        s = steps_->ClaimShared(&c.seg, &c.sc);
        if (!s.ok()) return CopierFailed(s);
        c.later_words.assign(c.seg.range.size(), 0);
        for (size_t i = 0; i < c.seg.range.size(); i++) {
          if (c.sc.take[i] == SharedPages::Take::kLater) c.later_words[i] = Word(c.seg.range.begin + i);
        }
        c.phase = SharedCopier::Phase::kRead;
        return "";
      case SharedCopier::Phase::kRead:
        s = steps_->ReadSegment(&c.seg);
        for (size_t i = 0; i < c.seg.range.size(); i++) {
          if (c.seg.from[i] == CopyJobTestPeer::Segment::From::kSkip) continue;
          const uint8_t* page = c.seg.data.data() + i * page_size_;
          copy_[c.seg.range.begin + i].assign(page, page + page_size_);
        }
        if (!s.ok()) return CopierFailed(s);
        c.phase = SharedCopier::Phase::kPublish;
        return "";
      case SharedCopier::Phase::kPublish:
        steps_->PublishShared(&c.seg, &c.sc);
        if (c.sc.later) {
          c.phase = SharedCopier::Phase::kWait;
        } else {
          steps_->EndShared(&c.seg, &c.sc);
          c.phase = SharedCopier::Phase::kEmit;
        }
        return "";
      case SharedCopier::Phase::kWait:
        // WaitForWriters woke: a page left for later changed (or the job
        // ended, which the next claim finds).
        c.phase = SharedCopier::Phase::kClaim;
        return "";
      case SharedCopier::Phase::kEmit:
        s = steps_->EmitSegment(&c.seg);
        if (!s.ok()) return CopierFailed(s);
        c.phase = SharedCopier::Phase::kNext;
        return "";
      case SharedCopier::Phase::kFinish:
        result_ = steps_->Finish();
        if (!result_.ok()) return CopierFailed(result_);
        finished_ = true;
        c.phase = SharedCopier::Phase::kDone;
        return "";
      case SharedCopier::Phase::kDone:
        return "";
    }
    return "";
  }

  // As run(): the job fails, the sink is abandoned.
  std::string CopierFailed(const Status& s) {
    steps_->Abandon(s);
    result_ = job_->status();
    copier_.phase = SharedCopier::Phase::kDone;
    return "";
  }

  void Die(uint32_t party) {
    table()->dead[party] = 1;
    if (party == kOwner && copier_.phase != SharedCopier::Phase::kDone) {
      DeathSites().insert(std::string("copier:") + PhaseName(copier_.phase));
    }
    for (const SharedWriter& w : writers_) {
      if (w.party != party || w.phase == SharedWriter::Phase::kDone) continue;
      DeathSites().insert(std::string("writer:") + PhaseName(w.phase) + (w.claimed.empty() ? "" : "+held"));
    }
    if (trace_) fprintf(stderr, "party %u dies\n", party);
  }

  std::string Check() const {
    if (!Current()) return "";  // writes land unprotected now: nothing to hold
    for (uint64_t p = 0; p < t0_pages_; p++) {
      const uint32_t w = Word(p);
      const std::string page = "page " + std::to_string(p);
      const uint8_t* t0 = t0_image_.data() + p * page_size_;
      if (w == SharedPages::kPreserved) {
        auto it = volume_->pages.find(p);
        if (it == volume_->pages.end() || memcmp(it->second.data(), t0, page_size_) != 0) {
          return page + " is preserved without its T0 bytes in the volume";
        }
      } else if (w == SharedPages::kCopied) {
        if (copy_[p].size() != page_size_ || memcmp(copy_[p].data(), t0, page_size_) != 0) {
          return page + " is copied without its T0 bytes in the copier's hands";
        }
      }
      const std::vector<uint8_t>& now = source_->bytes;
      const bool changed = now.size() < (p + 1) * page_size_ ||
                           memcmp(now.data() + p * page_size_, t0, page_size_) != 0;
      if (changed && !SharedPages::settled(w)) {
        return page + " was written while " + (w == 0 ? "pending" : "busy " + std::to_string(w));
      }
    }
    return "";
  }

  std::string Outcome() const {
    // Nobody can move: everyone alive must be done.
    for (const SharedWriter& w : writers_) {
      if (!Alive(w.party) || w.phase == SharedWriter::Phase::kDone) continue;
      return "stuck: a writer of party " + std::to_string(w.party) + " in phase " + PhaseName(w.phase) +
             " on page " + std::to_string(w.pgno) + " (word " + std::to_string(Word(w.pgno)) + ")";
    }
    if (Alive(kOwner) && copier_.phase != SharedCopier::Phase::kDone) {
      return std::string("stuck: the copier in phase ") + PhaseName(copier_.phase);
    }
    if (!Alive(kOwner)) return "";  // a dead job: nothing to copy
    if (!finished_) {
      if (!fault_) return "the job failed with no fault injected and its owner alive: " + result_.ToString();
      int64_t pid = 0;
      const Status recorded = parties_[kOwner]->pages.Failure(&pid);
      const std::string why = FailureText(parties_[kOwner]->pages);
      if (recorded.ok() || result_.code() != recorded.code() ||
          result_.ToString().find(recorded.message()) == std::string::npos ||
          result_.ToString().find("process " + std::to_string(pid)) == std::string::npos) {
        return "the job failed as \"" + result_.ToString() + "\", not for the recorded failure \"" + why + "\"";
      }
      return "";
    }
    if (sink_->contract_violations) return "sink contract violated";
    if (!sink_->finished) return "sink not finished";
    if (sink_->image != t0_image_) {
      for (uint64_t p = 0; p < t0_pages_; p++) {
        if (memcmp(sink_->image.data() + p * page_size_, t0_image_.data() + p * page_size_, page_size_) != 0) {
          return "page " + std::to_string(p) + " differs from T0";
        }
      }
      return "image differs from T0";
    }
    if (job_->progress().pages_done != t0_pages_) return "pages_done != t0 pages";
    return "";
  }

  void Trace(int who) const {
    if (who < 0) {
      fprintf(stderr, "copier %s seg [%lu,%lu)\n", PhaseName(copier_.phase),
              (unsigned long)copier_.seg.range.begin, (unsigned long)copier_.seg.range.end);
      return;
    }
    const SharedWriter& w = writers_[who];
    fprintf(stderr, "writer %d (party %u) %s pages [%lu,%lu) at %lu\n", who, w.party, PhaseName(w.phase),
            (unsigned long)w.pages.begin, (unsigned long)w.pages.end, (unsigned long)w.pgno);
  }

  const bool trace_ = getenv("COWBACKUP_TRACE") != nullptr;
  std::mt19937_64 rng_;
  uint32_t page_size_ = 0;
  uint64_t t0_pages_ = 0;
  std::vector<uint8_t> t0_image_;
  std::vector<std::vector<uint8_t>> copy_;  // per page: what the copier read last
  std::unique_ptr<MemorySource> source_;
  std::unique_ptr<SharedArea> shared_;
  std::vector<std::unique_ptr<TestParty>> parties_;
  std::vector<uint64_t> steps_taken_;
  std::unique_ptr<MemoryVolume> volume_;
  std::unique_ptr<MemorySink> sink_;
  std::unique_ptr<CopyJob> job_;
  std::unique_ptr<CopyJobTestPeer> steps_;
  std::vector<SharedWriter> writers_;
  SharedCopier copier_;
  Status result_;
  bool finished_ = false, fault_ = false;
  int die_party_ = -1;
  uint64_t die_after_ = 0;
  int owner_grace_ = 0;
};

TEST(Interleaving, EverySharedScheduleCopiesTheT0ImageWhoeverDies) {
  if (const char* one = getenv("COWBACKUP_SEED")) {
    const uint64_t seed = strtoull(one, nullptr, 10);
    EXPECT_EQ(SharedSchedule(seed).Run(), "") << "seed " << seed;
    return;
  }
  const uint64_t n = ScheduleCount() / 4;
  for (uint64_t seed = 1; seed <= n; seed++) {
    const std::string err = SharedSchedule(seed).Run();
    ASSERT_EQ(err, "") << "shared schedule failed; replay with COWBACKUP_SEED=" << seed;
  }
  // The seeds above killed a party at every step of the protocol.
  for (const char* site : {"writer:claim+held", "writer:wait+held", "writer:preserve+held",
                           "writer:publish+held", "writer:apply", "copier:claim", "copier:read",
                           "copier:publish", "copier:wait", "copier:emit", "copier:finish"}) {
    EXPECT_TRUE(DeathSites().count(site)) << "no schedule died at " << site;
  }
}

}  // namespace
}  // namespace cowbackup::test
