// CpuBurners: threads that keep the cores busy while alive, standing in
// for the machine's other work in tests that must hold under CPU load.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace cowbackup::test {

class CpuBurners {
 public:
  explicit CpuBurners(int n) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        uint64_t x = 1;
        while (!stop_.load(std::memory_order_relaxed)) {
          for (int j = 0; j < 10000; ++j) x = x * 6364136223846793005ull + 1442695040888963407ull;
        }
        sink_.fetch_add(x, std::memory_order_relaxed);
      });
    }
  }
  ~CpuBurners() {
    stop_.store(true);
    for (auto& t : threads_) t.join();
  }
  CpuBurners(const CpuBurners&) = delete;
  CpuBurners& operator=(const CpuBurners&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> sink_{0};
  std::vector<std::thread> threads_;
};

}  // namespace cowbackup::test
