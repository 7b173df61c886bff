// A synthetic database for engine-level fault and crash tests: a file of
// self-checking pages, a pread Source over it, and writer threads that
// report every write through a WriteHook before it lands, as a front end
// does.
//
// Page layout (every write is whole pages, so a page is always one of its
// writes; a torn page can only come from a write that never returned):
//
//   0   8  magic "COWPAGE1"
//   8   8  pgno
//   16  8  writer
//   24  8  seq        (0 = the initial content; then 1, 2, ... per page)
//   32  .. fill       (bytes derived from pgno and seq)
//   -8  8  xxh3-64 of every byte before it
//
// Writer w owns the pages [w * P / W, (w + 1) * P / W) and is the only one
// to write them, so each writer keeps an exact model (the last seq of each
// page it owns) without locks, and the file can be checked against it.
//
// Begin time: Quiesce() waits until no write is between before_write and
// the end of its pwrite, and holds writers off while a callback runs (arm
// the hook and take the T0 model there), like the SQLite shim's SHARED lock.
//
// A watchdog aborts the process (printing the caller's context: seed and
// fault trace) if any writer stays inside one write longer than the limit:
// the engine must never block the application.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cowbackup/status.h"
#include "engine/posix_file.h"
#include "engine/file_source.h"
#include "engine/source.h"
#include "engine/write_hook.h"
#include "test_util/files.h"
#include "test_util/long_run.h"

namespace cowbackup::faults {

// Scratch directories (removed by RemoveTree, engine/posix_file.h, as ListDir
// lists them), whole files and COWBACKUP_LONG, as every test directory has them.
using test::LongRun;
using test::MakeTempDir;
using test::ReadFile;

inline constexpr char kPageMagic[8] = {'C', 'O', 'W', 'P', 'A', 'G', 'E', '1'};

void StampPage(uint8_t* page, uint32_t page_size, uint64_t pgno, uint64_t writer, uint64_t seq);
// True if `page` is intact and belongs to `pgno`; *seq gets its seq.
bool CheckPage(const uint8_t* page, uint32_t page_size, uint64_t pgno, uint64_t* seq);

struct WorkloadOptions {
  uint32_t page_size = 4096;
  uint64_t pages = 512;
  int writers = 4;
  uint32_t max_run_pages = 4;  // pages per write: 1..max_run_pages
  // Split some writes into two pwrites (each reported to the hook first)
  // at a mid-page offset: partial-page writes.
  bool partial_writes = true;
  uint64_t seed = 1;
  // Pause between a writer's writes, microseconds (0 = none).
  uint32_t pause_us = 50;
  // Watchdog limit for one write, milliseconds.
  uint32_t stall_limit_ms = 20000;
};

class PageWorkload {
 public:
  // Called after each write returned (whole write landed): writer, first
  // page, page count, the seq the pages now hold.
  using CommitFn = std::function<void(int writer, uint64_t pgno, uint64_t count, uint64_t seq)>;

  PageWorkload(int fd, std::string path, WriteHook* hook, const WorkloadOptions& options);
  ~PageWorkload();  // stops the writers
  PageWorkload(const PageWorkload&) = delete;
  PageWorkload& operator=(const PageWorkload&) = delete;

  // Writes every page with seq 0 (no hook involved).
  Status InitFile();
  void set_on_commit(CommitFn fn) { on_commit_ = std::move(fn); }
  // What the watchdog prints before it aborts.
  void set_context(std::function<std::string()> fn);

  void Start();
  void Stop();
  // Runs `fn` while no write is in flight and none may start.
  void Quiesce(const std::function<void()>& fn);
  // The model: seq of every page (call while quiesced or stopped).
  std::vector<uint64_t> Model() const;
  uint64_t writes_done() const { return writes_.load(std::memory_order_relaxed); }
  // Longest single write (hook + pwrite), microseconds.
  uint64_t longest_write_us() const { return longest_us_.load(std::memory_order_relaxed); }
  // Compares the file with the model; "" if equal, else what differs.
  std::string CheckFile() const;
  // Every page of `image` (pages * page_size bytes) holds seq `model[p]`.
  static std::string CheckImage(const std::vector<uint8_t>& image, uint32_t page_size,
                                const std::vector<uint64_t>& model);

  Source* source() { return &source_; }
  int fd() const { return fd_; }

 private:
  struct Writer;
  void WriterLoop(Writer* w);
  void WatchdogLoop();

  const int fd_;
  const std::string path_;
  WriteHook* const hook_;
  const WorkloadOptions options_;
  FileSource source_;
  CommitFn on_commit_;
  std::vector<std::unique_ptr<Writer>> writers_;
  std::vector<uint64_t> model_;  // each element written by its owner only
  std::atomic<bool> stop_{false};
  std::atomic<bool> pausing_{false};
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> longest_us_{0};
  std::thread watchdog_;
  std::mutex context_mu_;
  std::function<std::string()> context_;  // GUARDED_BY(context_mu_)
};

// Under a sanitizer, tests scale their loops down by this factor.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr int kSanitizerSlowdown = 4;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
inline constexpr int kSanitizerSlowdown = 4;
#else
inline constexpr int kSanitizerSlowdown = 1;
#endif
#else
inline constexpr int kSanitizerSlowdown = 1;
#endif

}  // namespace cowbackup::faults
