#include "faults/page_workload.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "engine/checksum.h"
#include "engine/encoding.h"
#include "engine/posix_file.h"

namespace cowbackup::faults {

namespace {

uint64_t NowNanos() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

}  // namespace

void StampPage(uint8_t* page, uint32_t page_size, uint64_t pgno, uint64_t writer, uint64_t seq) {
  memcpy(page, kPageMagic, 8);
  EncodeFixed64(page + 8, pgno);
  EncodeFixed64(page + 16, writer);
  EncodeFixed64(page + 24, seq);
  uint64_t x = pgno * 0x9e3779b97f4a7c15ull ^ (seq + 1) * 0xc2b2ae3d27d4eb4full;
  for (uint32_t i = 32; i + 8 < page_size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    EncodeFixed64(page + i, x);
  }
  EncodeFixed64(page + page_size - 8, Checksum::Of(page, page_size - 8));
}

bool CheckPage(const uint8_t* page, uint32_t page_size, uint64_t pgno, uint64_t* seq) {
  if (memcmp(page, kPageMagic, 8) != 0) return false;
  if (DecodeFixed64(page + page_size - 8) != Checksum::Of(page, page_size - 8)) return false;
  if (DecodeFixed64(page + 8) != pgno) return false;
  *seq = DecodeFixed64(page + 24);
  return true;
}


// ---------------------------------------------------------------------------

struct PageWorkload::Writer {
  int id = 0;
  uint64_t first = 0, end = 0;  // owned pages [first, end)
  std::mutex mu;                // held for the whole of one write
  std::atomic<uint64_t> entered_ns{0};  // 0 = not inside a write
  std::thread thread;
};

PageWorkload::PageWorkload(int fd, std::string path, WriteHook* hook, const WorkloadOptions& options)
    : fd_(fd),
      path_(std::move(path)),
      hook_(hook),
      options_(options),
      source_(fd, path_, options.page_size),
      model_(options.pages, 0) {
  for (int w = 0; w < options_.writers; w++) {
    auto writer = std::make_unique<Writer>();
    writer->id = w;
    writer->first = options_.pages * uint64_t(w) / uint64_t(options_.writers);
    writer->end = options_.pages * uint64_t(w + 1) / uint64_t(options_.writers);
    writers_.push_back(std::move(writer));
  }
}

PageWorkload::~PageWorkload() { Stop(); }

void PageWorkload::set_context(std::function<std::string()> fn) {
  std::lock_guard<std::mutex> lock(context_mu_);
  context_ = std::move(fn);
}

Status PageWorkload::InitFile() {
  std::vector<uint8_t> page(options_.page_size);
  for (uint64_t p = 0; p < options_.pages; p++) {
    int owner = 0;
    for (const auto& w : writers_) {
      if (p >= w->first && p < w->end) owner = w->id;
    }
    StampPage(page.data(), options_.page_size, p, uint64_t(owner), 0);
    Status s = PwriteFull(fd_, page.data(), page.size(), p * options_.page_size, path_);
    if (!s.ok()) return s;
  }
  return Status::OK();
}

void PageWorkload::Start() {
  stop_.store(false);
  for (auto& w : writers_) {
    Writer* raw = w.get();
    raw->thread = std::thread([this, raw] { WriterLoop(raw); });
  }
  watchdog_ = std::thread([this] { WatchdogLoop(); });
}

void PageWorkload::Stop() {
  stop_.store(true);
  for (auto& w : writers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  if (watchdog_.joinable()) watchdog_.join();
}

void PageWorkload::Quiesce(const std::function<void()>& fn) {
  pausing_.store(true);
  for (auto& w : writers_) w->mu.lock();
  fn();
  for (auto& w : writers_) w->mu.unlock();
  pausing_.store(false);
}

std::vector<uint64_t> PageWorkload::Model() const { return model_; }

void PageWorkload::WriterLoop(Writer* w) {
  std::mt19937_64 rng(options_.seed * 1000003 + uint64_t(w->id));
  const uint32_t ps = options_.page_size;
  std::vector<uint8_t> buf;
  while (!stop_.load(std::memory_order_relaxed)) {
    while (pausing_.load() && !stop_.load()) std::this_thread::sleep_for(std::chrono::microseconds(20));
    {
      std::lock_guard<std::mutex> lock(w->mu);
      const uint64_t owned = w->end - w->first;
      if (owned == 0) return;
      const uint64_t n = std::min<uint64_t>(1 + rng() % options_.max_run_pages, owned);
      const uint64_t first = w->first + rng() % (owned - n + 1);
      buf.resize(n * ps);
      uint64_t seq = 0;
      for (uint64_t i = 0; i < n; i++) {
        seq = std::max(seq, model_[first + i] + 1);
      }
      for (uint64_t i = 0; i < n; i++) {
        StampPage(buf.data() + i * ps, ps, first + i, uint64_t(w->id), seq);
      }
      const uint64_t offset = first * ps;
      const uint64_t len = n * ps;
      // Split at a mid-page point: two writes, each reported first.
      const uint64_t split = options_.partial_writes && rng() % 2 ? (rng() % len) | 1 : len;
      const uint64_t t0 = NowNanos();
      w->entered_ns.store(t0);
      for (uint64_t at = 0; at < len;) {
        const uint64_t part = at < split ? split - at : len - at;
        hook_->before_write(offset + at, part);
        Status s = PwriteFull(fd_, buf.data() + at, part, offset + at, path_);
        if (!s.ok()) {
          fprintf(stderr, "page workload: application write failed: %s\n", s.ToString().c_str());
          std::abort();
        }
        at += part;
      }
      const uint64_t us = (NowNanos() - t0) / 1000;
      w->entered_ns.store(0);
      uint64_t prev = longest_us_.load(std::memory_order_relaxed);
      while (us > prev && !longest_us_.compare_exchange_weak(prev, us)) {
      }
      for (uint64_t i = 0; i < n; i++) model_[first + i] = seq;
      writes_.fetch_add(1, std::memory_order_relaxed);
      if (on_commit_) on_commit_(w->id, first, n, seq);
    }
    if (options_.pause_us) std::this_thread::sleep_for(std::chrono::microseconds(options_.pause_us));
  }
}

void PageWorkload::WatchdogLoop() {
  const uint64_t limit_ns = uint64_t(options_.stall_limit_ms) * 1000000;
  while (!stop_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const uint64_t now = NowNanos();
    for (const auto& w : writers_) {
      const uint64_t entered = w->entered_ns.load();
      if (entered != 0 && now > entered && now - entered > limit_ns) {
        std::string context;
        {
          std::lock_guard<std::mutex> lock(context_mu_);
          if (context_) context = context_();
        }
        fprintf(stderr,
                "page workload watchdog: writer %d blocked in one write for more than %u ms: "
                "the engine blocked the application\n%s\n",
                w->id, options_.stall_limit_ms, context.c_str());
        fflush(stderr);
        std::abort();
      }
    }
  }
}

std::string PageWorkload::CheckFile() const {
  std::vector<uint8_t> image(options_.pages * options_.page_size);
  Status s = PreadFull(fd_, image.data(), image.size(), 0, path_);
  if (!s.ok()) return s.ToString();
  return CheckImage(image, options_.page_size, model_);
}

std::string PageWorkload::CheckImage(const std::vector<uint8_t>& image, uint32_t page_size,
                                     const std::vector<uint64_t>& model) {
  if (image.size() != model.size() * page_size) {
    return "image holds " + std::to_string(image.size()) + " bytes, expected " +
           std::to_string(model.size() * page_size);
  }
  for (uint64_t p = 0; p < model.size(); p++) {
    uint64_t seq = 0;
    if (!CheckPage(image.data() + p * page_size, page_size, p, &seq)) {
      return "page " + std::to_string(p) + " is torn or misplaced";
    }
    if (seq != model[p]) {
      return "page " + std::to_string(p) + " holds seq " + std::to_string(seq) + ", expected " +
             std::to_string(model[p]);
    }
  }
  return "";
}

}  // namespace cowbackup::faults
