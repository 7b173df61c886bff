// Fault injection for the engine's three interfaces and the archive output:
// forwarding wrappers in the spirit of LevelDB's EnvWrapper and RocksDB's
// FaultInjectionTestFS, with SQLite test_vfs.c's countdown (tvfsInjectFault).
//
// USING
//   FaultInjector inj(seed);
//   inj.Arm({FaultKind::kNoSpace, /*nth=*/7, /*persistent=*/false, kOpPut});
//   FaultySnapshotVolume volume(&real_volume, &inj, "volume");
//   CopyJob job(&source, &volume, &sink, config);   // 7th put() fails
//   ... if (HasFailure()) puts(inj.Trace().c_str());
//
// A wrapper forwards every call; a call whose op is in the spec's mask is
// counted (1-based, across every wrapper sharing the injector), and the
// nth counted call fails (once), or every call from the nth on
// (persistent). Sweep nth upward until fired() stays 0: then every error
// path of that target has run. ArmRandom() instead fails each counted call
// with probability 1/one_in, decided by a hash of (seed, call number) so a
// seed names the same failing calls in every run.
//
// Each fault is recorded (call number, target, op, offset or page, thread);
// Trace() prints them with the seed and the spec, for a failing test.
//
// What a fault does, per kind:
//   kNoSpace   the call fails at once with ENOSPC  -> Status::kNoSpace
//   kIOError   the call fails at once with EIO     -> Status::kIOError
//   kShort     a short transfer, as the real code would see it:
//              a write forwards its first half, then fails with ENOSPC
//              (a short pwrite on a regular file means the disk filled);
//              a source read fills half the buffer, then reports the end
//              of file (Status::kIncomplete, as PreadFull does); a volume
//              read reports a short record (Status::kCorruption, as
//              FileSnapshotVolume::get does).
//
// Thread-safety: an injector and every wrapper may be used from any number
// of threads (Source::read and SnapshotVolume::put run concurrently).
// Arm()/Disarm() while no wrapped call is in flight.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backup/output.h"
#include "cowbackup/status.h"
#include "engine/sink.h"
#include "engine/snapshot_volume.h"
#include "engine/source.h"

namespace cowbackup::faults {

enum class FaultKind : uint8_t { kNoSpace, kIOError, kShort };
const char* FaultKindName(FaultKind kind);

// The calls a spec can count, one bit each.
enum Op : uint32_t {
  kOpSourceRead = 1u << 0,
  kOpPut = 1u << 2,         // SnapshotVolume::put
  kOpGet = 1u << 3,         // SnapshotVolume::get
  kOpPutRun = 1u << 4,      // Sink::put_run
  kOpPutOverlay = 1u << 5,  // Sink::put_overlay
  kOpFinish = 1u << 6,      // Sink::finish
  kOpAppend = 1u << 7,      // ByteOutput::append
  kOpCommit = 1u << 8,      // ByteOutput::commit
  kOpAll = ~0u,
};
const char* OpName(Op op);
// True for the ops that write (a short transfer is then a disk-full).
bool IsWriteOp(Op op);

struct FaultSpec {
  FaultKind kind = FaultKind::kIOError;
  uint64_t nth = 0;         // 1-based; 0 = never fire
  bool persistent = false;  // fail every counted call from the nth on
  uint32_t ops = kOpAll;    // which calls count
  std::string ToString() const;
};

struct FaultEvent {
  uint64_t call = 0;  // counted-call number
  Op op = kOpAll;
  FaultKind kind = FaultKind::kIOError;
  std::string target;  // the wrapper's name
  uint64_t where = 0;  // offset (source, output) or page number
  std::thread::id thread;
};

class FaultInjector {
 public:
  explicit FaultInjector(uint64_t seed = 0) : seed_(seed) {}
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  // Resets the count and the record, then arms the countdown.
  void Arm(const FaultSpec& spec);
  // Random mode: each counted call fails with probability 1/one_in.
  void ArmRandom(FaultKind kind, uint32_t one_in, uint32_t ops);
  void Disarm();

  // For wrappers: counts the call if `op` is in the mask and says whether
  // it must fail, recording the event. *kind gets the fault's kind.
  bool ShouldFail(Op op, const std::string& target, uint64_t where, FaultKind* kind);

  uint64_t seed() const { return seed_; }
  uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  uint64_t fired() const { return fired_.load(std::memory_order_relaxed); }
  std::vector<FaultEvent> events() const;
  // "seed 42, spec kNoSpace nth=7 once ops=put; 1 call(s) counted; fired:
  //  #7 volume put at 12 (thread 0x...)"
  std::string Trace() const;

 private:
  const uint64_t seed_;
  mutable std::mutex mu_;
  FaultSpec spec_;             // GUARDED_BY(mu_) for writes; read under mu_
  uint32_t random_one_in_ = 0; // GUARDED_BY(mu_); 0 = countdown mode
  std::vector<FaultEvent> events_;  // GUARDED_BY(mu_)
  std::atomic<bool> armed_{false};
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> fired_{0};
};

// The status a fault of `kind` on `op` produces: "what: where: strerror".
Status FaultStatus(FaultKind kind, Op op, const std::string& what, const std::string& where);

// ---------------------------------------------------------------------------
// Wrappers. Each forwards to `base`, which it owns only when built from a
// unique_ptr. `name` appears in fault messages and the trace.

class FaultySource final : public Source {
 public:
  FaultySource(Source* base, FaultInjector* inj) : base_(base), inj_(inj) {}
  Status read(uint64_t offset, uint8_t* buf, size_t len) override;
  uint32_t page_size() const override { return base_->page_size(); }
  const std::string& name() const override { return base_->name(); }

 private:
  Source* const base_;
  FaultInjector* const inj_;
};

class FaultySnapshotVolume final : public SnapshotVolume {
 public:
  FaultySnapshotVolume(SnapshotVolume* base, FaultInjector* inj, std::string name,
                       uint32_t page_size)
      : base_(base), inj_(inj), name_(std::move(name)), page_size_(page_size) {}
  FaultySnapshotVolume(std::unique_ptr<SnapshotVolume> base, FaultInjector* inj,
                       std::string name, uint32_t page_size)
      : owned_(std::move(base)), base_(owned_.get()), inj_(inj), name_(std::move(name)),
        page_size_(page_size) {}
  Status put(uint64_t pgno, const uint8_t* page) override;
  Status get(uint64_t pgno, uint8_t* page) override;
  void remove() noexcept override;
  bool removed() const { return removed_.load(); }

 private:
  std::unique_ptr<SnapshotVolume> owned_;
  SnapshotVolume* const base_;
  FaultInjector* const inj_;
  const std::string name_;
  const uint32_t page_size_;
  std::atomic<bool> removed_{false};
};

class FaultySink final : public Sink {
 public:
  FaultySink(Sink* base, FaultInjector* inj, std::string name, uint32_t page_size)
      : base_(base), inj_(inj), name_(std::move(name)), page_size_(page_size) {}
  FaultySink(std::unique_ptr<Sink> base, FaultInjector* inj, std::string name, uint32_t page_size)
      : owned_(std::move(base)), base_(owned_.get()), inj_(inj), name_(std::move(name)),
        page_size_(page_size) {}
  Status put_run(uint64_t first_pgno, const uint8_t* pages, size_t count) override;
  Status put_overlay(uint64_t pgno, const uint8_t* page) override;
  Status finish(const Progress& final) override;
  void abandon() noexcept override;
  uint64_t bytes_written() const override { return base_->bytes_written(); }
  bool abandoned() const { return abandoned_.load(); }

 private:
  std::unique_ptr<Sink> owned_;
  Sink* const base_;
  FaultInjector* const inj_;
  const std::string name_;
  const uint32_t page_size_;
  std::atomic<bool> abandoned_{false};
};

class FaultyByteOutput final : public ByteOutput {
 public:
  FaultyByteOutput(std::unique_ptr<ByteOutput> base, FaultInjector* inj)
      : base_(std::move(base)), inj_(inj) {}
  Status append(const uint8_t* data, size_t len) override;
  Status commit() override;
  void abandon() noexcept override { base_->abandon(); }
  const std::string& name() const override { return base_->name(); }

 private:
  std::unique_ptr<ByteOutput> base_;
  FaultInjector* const inj_;
  uint64_t offset_ = 0;  // bytes appended, for the trace
};

}  // namespace cowbackup::faults
