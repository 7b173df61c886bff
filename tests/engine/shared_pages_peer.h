// Test doubles and step access for SharedPages (engine/shared_pages.h).
//
//   SharedArea area(pages);                 // MAP_SHARED|MAP_ANONYMOUS: survives fork
//   TestParty copier(&area, kOwner);        // a party: its Peers and its SharedPages
//   TestParty writer(&area, 1);
//   writer.pages.WriteThrough(...);
//   area.table()->dead[1] = 1;              // "the kernel says party 1 died"
//
// A party stands for a process: its threads share its busy words (one as a
// writer, one as the copier), as threads of one process share a region
// slot. Everything the parties share (the page-state area and the table of
// who is dead, whether the job is current, the failures) lives in one
// shared anonymous mapping, so forked children take part as they would
// through the coordination region.
//
// SharedPagesTestPeer gives the deterministic interleaving harness a
// writer's steps (SharedPages is a friend), one atomic decision each.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "engine/shared_pages.h"

namespace cowbackup {

class SharedPagesTestPeer {
 public:
  using Claim = SharedPages::Claim;
  using Busy = SharedPages::Busy;
  explicit SharedPagesTestPeer(SharedPages* pages) : pages_(pages) {}
  Claim TryClaim(uint64_t pgno, uint32_t* busy, std::vector<PageRange>* claimed) {
    return pages_->TryClaim(pgno, pages_->peers()->busy_word(false), busy, claimed);
  }
  Busy CheckBusy(uint64_t pgno, uint32_t w) { return pages_->CheckBusy(pgno, w); }
  Status Preserve(const std::vector<PageRange>& claimed, Source* source, SnapshotVolume* volume,
                  uint32_t page_size) {
    return pages_->Preserve(claimed, source, volume, page_size);
  }
  void Publish(const std::vector<PageRange>& claimed) { pages_->Publish(claimed); }
  uint32_t wake_seq() const {
    return pages_->u32(SharedPages::kOffWakeSeq).load(std::memory_order_acquire);
  }

 private:
  SharedPages* const pages_;
};

namespace test {

inline constexpr uint32_t kMaxParties = 64;
inline constexpr uint32_t kOwner = 0;  // the party whose copier runs the job
inline constexpr uint32_t kCopierBit = 0x40000000u;

// What the parties share beside the page-state area.
struct PeerTable {
  std::atomic<uint32_t> current{1};  // the job is current (not ended, failed or dead)
  std::atomic<uint32_t> dead[kMaxParties] = {};
  std::atomic<uint32_t> fails{0};                // Peers::fail() calls
  std::atomic<uint64_t> job_current_calls{0};    // polls, for "bounded" checks
  std::atomic<uint64_t> scratch[16] = {};        // for a test's own counters across fork
};
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free);

// The table and the page-state area for `pages` pages, in one shared
// anonymous mapping (inherited by fork), the area page-aligned after the table.
class SharedArea {
 public:
  explicit SharedArea(uint64_t pages) : pages_(pages) {
    size_ = kAreaOffset + SharedPages::AreaSize(pages);
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) abort();
    base_ = static_cast<uint8_t*>(p);
    new (base_) PeerTable();
    SharedPages::Init(area(), pages);
  }
  ~SharedArea() { ::munmap(base_, size_); }
  SharedArea(const SharedArea&) = delete;
  SharedArea& operator=(const SharedArea&) = delete;

  PeerTable* table() const { return reinterpret_cast<PeerTable*>(base_); }
  uint8_t* area() const { return base_ + kAreaOffset; }
  uint64_t pages() const { return pages_; }

 private:
  static constexpr size_t kAreaOffset = 4096;
  static_assert(sizeof(PeerTable) <= kAreaOffset);
  const uint64_t pages_;
  size_t size_ = 0;
  uint8_t* base_ = nullptr;
};

inline uint32_t PartyOf(uint32_t busy_word) { return busy_word & 0xff; }

// One party: the Peers a front end would give, over the shared table.
class TestParty final : public SharedPages::Peers {
 public:
  TestParty(SharedArea* shared, uint32_t party)
      : table_(shared->table()), party_(party), pages(shared->area(), shared->pages(), this) {}

  uint32_t busy_word(bool copier) const override {
    return SharedPages::kBusy | (copier ? kCopierBit : 0) | party_;
  }
  // Dead, as the region's byte locks would say (the test sets it).
  bool holder_gone(uint32_t w) override {
    const uint32_t holder = PartyOf(w);
    return holder >= kMaxParties || table_->dead[holder].load(std::memory_order_acquire) != 0;
  }
  bool job_current() override {
    table_->job_current_calls.fetch_add(1, std::memory_order_relaxed);
    return table_->current.load(std::memory_order_acquire) != 0;
  }
  // As coord::Participation, in its order: the first reason is recorded,
  // then the job is failed for everyone.
  void fail(const Status& why) noexcept override {
    table_->fails.fetch_add(1, std::memory_order_relaxed);
    pages.RecordFailure(why, ::getpid());
    table_->current.store(0, std::memory_order_release);
  }

  uint32_t party() const { return party_; }

 private:
  PeerTable* const table_;
  const uint32_t party_;

 public:
  SharedPages pages;
};

}  // namespace test
// The recorded failure as one line: "<message> (pid N)", or "" if none.
inline std::string FailureText(const SharedPages& pages) {
  int64_t pid = 0;
  const Status why = pages.Failure(&pid);
  return why.ok() ? std::string() : why.message() + " (pid " + std::to_string(pid) + ")";
}

}  // namespace cowbackup
