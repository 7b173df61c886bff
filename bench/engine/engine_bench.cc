// Engine micro-benchmarks (Google Benchmark).
//
//   BM_IdleWriteCheck        cost of the interception check, no job armed
//   BM_IdleWriteCheckRegion  the same through a coordination region's word
//   BM_CopyThroughput/S      copy of a page-cached file to a discarding
//                            sink, S pages per segment
//   BM_ArchiveThroughput     the same through the archive writer (framing,
//                            XXH3) to /dev/null
//   BM_WriterStall/S         a writer's before_write latency (max, p99)
//                            while the copier runs with S-page segments
//   BM_JobMemory10GiB        peak RSS of a job over a 10 GiB source
//
// COWBACKUP_BENCH_MB sets the source size (default 1024).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

#include "backup/archive_writer.h"
#include "coord/region.h"
#include "engine/copy_job.h"
#include "engine/file_source.h"
#include "engine/write_hook.h"

namespace cowbackup {
namespace {

constexpr uint32_t kPageSize = 4096;

class NullSink final : public Sink {
 public:
  Status put_run(uint64_t, const uint8_t*, size_t count) override {
    bytes_ += count * kPageSize;
    return Status::OK();
  }
  Status put_overlay(uint64_t, const uint8_t*) override { return Status::OK(); }
  Status finish(const Progress&) override { return Status::OK(); }
  void abandon() noexcept override {}
  uint64_t bytes_written() const override { return bytes_; }

 private:
  std::atomic<uint64_t> bytes_{0};
};

std::string TempDir() {
  const char* t = getenv("TMPDIR");
  return t && *t ? t : "/tmp";
}

uint64_t SourceBytes() {
  const char* mb = getenv("COWBACKUP_BENCH_MB");
  return (mb ? strtoull(mb, nullptr, 10) : 1024) << 20;
}

// A file of random pages, written once and kept in the page cache.
struct CachedFile {
  std::string path;
  int fd = -1;
  uint64_t bytes = 0;
  // A sparse file goes to /dev/shm when there is one: reading holes there
  // costs what reading cached pages costs, not a filesystem's hole walk.
  explicit CachedFile(uint64_t size, bool sparse = false) : bytes(size) {
    const std::string dir = sparse && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : TempDir();
    path = dir + "/cowbackup-bench-" + std::to_string(getpid()) + (sparse ? "-sparse" : "") + ".db";
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (sparse) {
      if (ftruncate(fd, off_t(size)) != 0) abort();
      return;
    }
    std::vector<uint8_t> chunk(1 << 20);
    std::mt19937_64 rng(1);
    for (auto& b : chunk) b = uint8_t(rng());
    for (uint64_t off = 0; off < size; off += chunk.size()) {
      if (pwrite(fd, chunk.data(), chunk.size(), off_t(off)) != ssize_t(chunk.size())) abort();
    }
  }
  ~CachedFile() {
    close(fd);
    unlink(path.c_str());
  }
};

CachedFile& SharedFile() {
  static CachedFile file(SourceBytes());
  return file;
}

// A job over the whole of `file`.
JobConfig WholeFile(const CachedFile& file, uint32_t segment_pages = kDefaultSegmentPages) {
  JobConfig c;
  c.page_size = kPageSize;
  c.t0_pages = file.bytes / kPageSize;
  c.segment_pages = segment_pages;
  return c;
}

std::unique_ptr<FileSnapshotVolume> NewVolume() {
  static int n = 0;
  std::unique_ptr<FileSnapshotVolume> v;
  const std::string path = TempDir() + "/cowbackup-bench-" + std::to_string(getpid()) + "-" +
                           std::to_string(n++) + ".cowsnap";
  if (!FileSnapshotVolume::Create(path, kPageSize, "bench", &v).ok()) abort();
  return v;
}

void BM_IdleWriteCheck(benchmark::State& state) {
  WriteHook hook;
  uint64_t offset = 0;
  for (auto _ : state) {
    hook.before_write(offset, kPageSize);
    offset += kPageSize;
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_IdleWriteCheck);

// The same check as the shim makes it when the database has a coordination
// region (vfs/file_state.h, BeforeWrite): one acquire load of the region's
// armed word, mapped shared. Beside BM_IdleWriteCheck: the region costs the
// idle path nothing more.
void BM_IdleWriteCheckRegion(benchmark::State& state) {
  const std::string db = TempDir() + "/cowbackup-bench-region-" + std::to_string(getpid()) + ".db";
  const int fd = ::open(db.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  struct stat st;
  std::unique_ptr<coord::Region> region;
  if (fd < 0 || ::fstat(fd, &st) != 0 ||
      !coord::Region::Attach(coord::RegionPathForSqlite(db), st, coord::AttachOptions(), &region).ok()) {
    state.SkipWithError("cannot attach a region");
    return;
  }
  WriteHook hook;  // the local job's hook, reached only when the word is armed
  uint64_t offset = 0;
  for (auto _ : state) {
    if (region->load_armed() != 0) hook.before_write(offset, kPageSize);
    offset += kPageSize;
    benchmark::ClobberMemory();
  }
  region.reset();
  ::close(fd);
  ::unlink(db.c_str());
  ::unlink(coord::RegionPathForSqlite(db).c_str());
}
BENCHMARK(BM_IdleWriteCheckRegion);

void BM_CopyThroughput(benchmark::State& state) {
  CachedFile& file = SharedFile();
  FileSource source(file.fd, file.path, kPageSize);
  for (auto _ : state) {
    auto volume = NewVolume();
    NullSink sink;
    const JobConfig c = WholeFile(file, uint32_t(state.range(0)));
    CopyJob job(&source, volume.get(), &sink, c);
    if (!job.run().ok()) state.SkipWithError("copy failed");
  }
  state.SetBytesProcessed(int64_t(state.iterations() * file.bytes));
}
BENCHMARK(BM_CopyThroughput)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ArchiveThroughput(benchmark::State& state) {
  CachedFile& file = SharedFile();
  FileSource source(file.fd, file.path, kPageSize);
  int devnull = open("/dev/null", O_WRONLY);
  for (auto _ : state) {
    auto volume = NewVolume();
    format::Header h;
    h.page_size = kPageSize;
    h.page_count = file.bytes / kPageSize;
    ArchiveWriter sink(h, std::make_unique<StreamOutput>(devnull, "/dev/null"));
    const JobConfig c = WholeFile(file);
    CopyJob job(&source, volume.get(), &sink, c);
    if (!job.run().ok()) state.SkipWithError("copy failed");
  }
  close(devnull);
  state.SetBytesProcessed(int64_t(state.iterations() * file.bytes));
}
BENCHMARK(BM_ArchiveThroughput)->Unit(benchmark::kMillisecond)->UseRealTime();

// A writer doing random page writes through the hook while the copier
// runs: how long does before_write hold it? Larger segments mean longer
// holds when the writer hits the segment being read.
void BM_WriterStall(benchmark::State& state) {
  CachedFile& file = SharedFile();
  FileSource source(file.fd, file.path, kPageSize);
  std::vector<double> lat_us;
  for (auto _ : state) {
    auto volume = NewVolume();
    NullSink sink;
    const JobConfig c = WholeFile(file, uint32_t(state.range(0)));
    CopyJob job(&source, volume.get(), &sink, c);
    WriteHook hook;
    if (!hook.arm(&job).ok()) abort();
    std::atomic<bool> done{false};
    std::thread writer([&] {
      std::mt19937_64 rng(7);
      while (!done.load(std::memory_order_relaxed)) {
        const uint64_t pg = rng() % c.t0_pages;
        const auto t = std::chrono::steady_clock::now();
        hook.before_write(pg * kPageSize, kPageSize);
        lat_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t).count());
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    });
    if (!job.run().ok()) state.SkipWithError("copy failed");
    done = true;
    writer.join();
    hook.disarm();
  }
  std::sort(lat_us.begin(), lat_us.end());
  if (!lat_us.empty()) {
    state.counters["writes"] = double(lat_us.size());
    state.counters["p99_us"] = lat_us[lat_us.size() * 99 / 100];
    state.counters["max_us"] = lat_us.back();
  }
  state.SetBytesProcessed(int64_t(state.iterations() * file.bytes));
}
BENCHMARK(BM_WriterStall)->Arg(16)->Arg(256)->Arg(4096)->Iterations(1)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// A job over a 10 GiB (sparse) source, copied for real: its memory is a few
// bitmaps and one segment buffer, not a structure per page.
void BM_JobMemory10GiB(benchmark::State& state) {
  CachedFile file(uint64_t{10} << 30, /*sparse=*/true);
  FileSource source(file.fd, file.path, kPageSize);
  size_t state_bytes = 0;
  for (auto _ : state) {
    auto volume = NewVolume();
    NullSink sink;
    const JobConfig c = WholeFile(file);
    CopyJob job(&source, volume.get(), &sink, c);
    state_bytes = job.state_memory_bytes();
    if (!job.run().ok()) state.SkipWithError("copy failed");
  }
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  state.counters["bitmaps_MiB"] = double(state_bytes) / (1 << 20);
  state.counters["peak_rss_MiB"] = double(ru.ru_maxrss) / 1024;
  state.SetBytesProcessed(int64_t(state.iterations() * file.bytes));
}
BENCHMARK(BM_JobMemory10GiB)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace cowbackup

BENCHMARK_MAIN();
