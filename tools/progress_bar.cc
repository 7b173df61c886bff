#include "tools/progress_bar.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "backup/text.h"

namespace cowbackup::cli {

namespace {

constexpr auto kTickInterval = std::chrono::milliseconds(200);

int TerminalColumns() {
  struct winsize ws;
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40) return ws.ws_col;
  return 80;
}

std::string Duration(double seconds) {
  if (!(seconds >= 0) || seconds > 359999) return "--:--";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  } else {
    snprintf(buf, sizeof(buf), "%ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

void WriteAll(const std::string& text) {
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::write(STDERR_FILENO, text.data() + off, text.size() - off);
    if (n <= 0) return;  // a progress line is not worth an error
    off += size_t(n);
  }
}

}  // namespace

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(TerminalSafe(label)), enabled_(enabled) {
  if (const char* d = getenv("COWBACKUP_PROGRESS_DELAY_MS")) {
    delay_ = std::chrono::milliseconds(std::strtol(d, nullptr, 10));
  }
}

ProgressBar::~ProgressBar() {
  if (!finished_) finish(false);
}

bool ProgressBar::Enabled(bool progress_flag, bool quiet) {
  return progress_flag || (!quiet && ::isatty(STDERR_FILENO));
}

std::string ProgressBar::Bytes(double bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    u++;
  }
  char buf[32];
  snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[u]);
  return buf;
}

void ProgressBar::start(uint64_t total) {
  total_.store(total, std::memory_order_relaxed);
  started_ = std::chrono::steady_clock::now();
  if (enabled_) ticker_ = std::thread([this] { Tick(); });
}

bool ProgressBar::Due() const {
  return std::chrono::steady_clock::now() - started_ >= delay_;
}

void ProgressBar::Tick() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, kTickInterval, [this] { return stop_; })) {
    if (Due()) Draw(false);
  }
}

void ProgressBar::finish(bool ok) {
  if (finished_) return;
  finished_ = true;
  if (ticker_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    ticker_.join();
  }
  if (!enabled_) return;
  if (ok && Due()) {
    if (total_.load(std::memory_order_relaxed) == 0) total_.store(done_.load());
    done_.store(std::max(done_.load(), total_.load()));
    Draw(true);
  }
  if (drawn_) WriteAll("\n");
}

void ProgressBar::Draw(bool final) {
  const uint64_t total = total_.load(std::memory_order_relaxed);
  const uint64_t done = std::min(done_.load(std::memory_order_relaxed), total ? total : UINT64_MAX);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  const double rate = elapsed > 0 ? double(done) / elapsed : 0;

  std::string tail;
  char buf[64];
  if (total > 0) {
    snprintf(buf, sizeof(buf), "%3d%%  ", int(100.0 * double(done) / double(total)));
    tail = buf + Bytes(double(done)) + " / " + Bytes(double(total));
  } else {
    tail = Bytes(double(done));
  }
  tail += "  " + Bytes(rate) + "/s";
  if (final) {
    tail += "  " + Duration(elapsed);
  } else if (total > 0) {
    tail += "  ETA " + (rate > 0 ? Duration(double(total - done) / rate) : std::string("--:--"));
  }

  std::string line = "\r" + label_ + " ";
  const int room = TerminalColumns() - 1 - int(label_.size()) - 1 - int(tail.size()) - 3;
  if (total > 0 && room >= 10) {
    const int width = std::min(room, 40);
    const int filled = int(double(width) * double(done) / double(total));
    line += "[" + std::string(size_t(filled), '#') + std::string(size_t(width - filled), '.') + "] ";
  }
  line += tail;
  // Pad over whatever a longer previous line left behind.
  const int cols = TerminalColumns() - 1;
  if (int(line.size()) - 1 < cols) line += std::string(size_t(cols - (int(line.size()) - 1)), ' ');
  WriteAll(line);
  drawn_ = true;
}

}  // namespace cowbackup::cli
