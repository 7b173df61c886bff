// ProgressBar: one self-redrawing line on stderr with percentage, bytes,
// rate and ETA:
//
//   restore [##########..........]  52%  52.0 MiB / 100.0 MiB  210.3 MiB/s  ETA 0:01
//
// Nothing is drawn for the first second (COWBACKUP_PROGRESS_DELAY_MS
// overrides it, for tests), so quick commands stay silent. The caller
// decides whether to draw at all: on a terminal by default, elsewhere only
// with --progress (see Enabled()).
//
// Thread-safety: update() and set_total() from any thread (relaxed
// atomics); a ticker thread redraws every 200 ms; start() and finish() from
// the owning thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace cowbackup::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, bool enabled);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Starts the clock (and the ticker when enabled). `total` 0 = unknown.
  void start(uint64_t total);
  void set_total(uint64_t total) { total_.store(total, std::memory_order_relaxed); }
  void update(uint64_t done) { done_.store(done, std::memory_order_relaxed); }
  // Stops the ticker. If the bar was (or by now would be) visible, draws the
  // final state and ends the line, so what follows starts on a fresh line.
  void finish(bool ok);

  // Draw when --progress, or when stderr is a terminal and not --quiet.
  static bool Enabled(bool progress_flag, bool quiet);
  // "52.0 MiB" and friends.
  static std::string Bytes(double bytes);

 private:
  void Tick();
  void Draw(bool final);
  bool Due() const;

  const std::string label_;
  const bool enabled_;
  std::chrono::milliseconds delay_{1000};
  std::chrono::steady_clock::time_point started_;
  std::atomic<uint64_t> total_{0};
  std::atomic<uint64_t> done_{0};
  bool drawn_ = false;  // touched by the ticker, then (after join) by finish()
  bool finished_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread ticker_;
};

}  // namespace cowbackup::cli
