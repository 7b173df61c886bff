#include "faults/fault_injection.h"

#include <errno.h>

#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>

namespace cowbackup::faults {

namespace {

// splitmix64: the per-call decision of random mode, a pure function of
// (seed, call number) so that a seed names the same failing calls.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string OpsToString(uint32_t ops) {
  if (ops == kOpAll) return "all";
  std::string out;
  for (uint32_t bit = 1; bit != 0 && bit <= kOpCommit; bit <<= 1) {
    if (!(ops & bit)) continue;
    if (!out.empty()) out += "|";
    out += OpName(static_cast<Op>(bit));
  }
  return out;
}

}  // namespace

const char* FaultKindName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kNoSpace: return "ENOSPC";
    case FaultKind::kIOError: return "EIO";
    case FaultKind::kShort: return "short";
  }
  return "?";
}

const char* OpName(Op op) {
  switch (op) {
    case kOpSourceRead: return "source.read";
    case kOpPut: return "volume.put";
    case kOpGet: return "volume.get";
    case kOpPutRun: return "sink.put_run";
    case kOpPutOverlay: return "sink.put_overlay";
    case kOpFinish: return "sink.finish";
    case kOpAppend: return "output.append";
    case kOpCommit: return "output.commit";
    case kOpAll: return "all";
  }
  return "?";
}

bool IsWriteOp(Op op) {
  return op == kOpPut || op == kOpPutRun || op == kOpPutOverlay || op == kOpFinish ||
         op == kOpAppend || op == kOpCommit;
}

std::string FaultSpec::ToString() const {
  char buf[160];
  snprintf(buf, sizeof(buf), "%s nth=%llu %s ops=%s", FaultKindName(kind),
           static_cast<unsigned long long>(nth), persistent ? "from-then-on" : "once",
           OpsToString(ops).c_str());
  return buf;
}

void FaultInjector::Arm(const FaultSpec& spec) {
  std::lock_guard<std::mutex> lock(mu_);
  spec_ = spec;
  random_one_in_ = 0;
  events_.clear();
  calls_.store(0);
  fired_.store(0);
  armed_.store(spec.nth > 0);
}

void FaultInjector::ArmRandom(FaultKind kind, uint32_t one_in, uint32_t ops) {
  std::lock_guard<std::mutex> lock(mu_);
  spec_ = FaultSpec{kind, 0, false, ops};
  random_one_in_ = one_in;
  events_.clear();
  calls_.store(0);
  fired_.store(0);
  armed_.store(one_in > 0);
}

void FaultInjector::Disarm() { armed_.store(false); }

bool FaultInjector::ShouldFail(Op op, const std::string& target, uint64_t where, FaultKind* kind) {
  if (!armed_.load()) return false;
  std::lock_guard<std::mutex> lock(mu_);
  if (!(spec_.ops & op)) return false;
  const uint64_t call = calls_.fetch_add(1) + 1;
  bool fail;
  if (random_one_in_ > 0) {
    fail = Mix(seed_ ^ Mix(call)) % random_one_in_ == 0;
  } else {
    fail = call == spec_.nth || (spec_.persistent && call > spec_.nth);
  }
  if (!fail) return false;
  fired_.fetch_add(1);
  events_.push_back(FaultEvent{call, op, spec_.kind, target, where, std::this_thread::get_id()});
  *kind = spec_.kind;
  return true;
}

std::vector<FaultEvent> FaultInjector::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

std::string FaultInjector::Trace() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::ostringstream out;
  out << "fault injection: seed " << seed_ << ", spec ";
  if (random_one_in_ > 0) {
    out << FaultKindName(spec_.kind) << " random 1/" << random_one_in_ << " ops="
        << OpsToString(spec_.ops);
  } else {
    out << spec_.ToString();
  }
  out << "; " << calls_.load() << " call(s) counted, " << fired_.load() << " fault(s) fired";
  constexpr size_t kShown = 20;
  for (size_t i = 0; i < events_.size() && i < kShown; i++) {
    const FaultEvent& e = events_[i];
    out << "\n  #" << e.call << " " << FaultKindName(e.kind) << " " << OpName(e.op) << " on "
        << e.target << " at " << e.where << " (thread " << e.thread << ")";
  }
  if (events_.size() > kShown) out << "\n  ... " << events_.size() - kShown << " more";
  return out.str();
}

Status FaultStatus(FaultKind kind, Op op, const std::string& what, const std::string& where) {
  switch (kind) {
    case FaultKind::kNoSpace: return Status::FromErrno(what, where, ENOSPC);
    case FaultKind::kIOError: return Status::FromErrno(what, where, EIO);
    case FaultKind::kShort:
      if (IsWriteOp(op)) return Status::FromErrno(what + " (short)", where, ENOSPC);
      if (op == kOpGet) return Status::Corruption("snapshot volume: short record", where);
      return Status::Incomplete("read: unexpected end of file", where);
  }
  return Status::FromErrno(what, where, EIO);
}

// ---------------------------------------------------------------------------

Status FaultySource::read(uint64_t offset, uint8_t* buf, size_t len) {
  FaultKind kind;
  if (inj_->ShouldFail(kOpSourceRead, name(), offset, &kind)) {
    const std::string where = name() + ", offset " + std::to_string(offset);
    if (kind == FaultKind::kShort && len > 1) {
      // The first half arrives, then the file "ends".
      Status s = base_->read(offset, buf, len / 2);
      if (!s.ok()) return s;
      return FaultStatus(kind, kOpSourceRead, "read", name() + ", offset " +
                                                          std::to_string(offset + len / 2));
    }
    return FaultStatus(kind, kOpSourceRead, "read", where);
  }
  return base_->read(offset, buf, len);
}

Status FaultySnapshotVolume::put(uint64_t pgno, const uint8_t* page) {
  FaultKind kind;
  if (inj_->ShouldFail(kOpPut, name_, pgno, &kind)) {
    if (kind == FaultKind::kShort) {
      // Half the page reached the disk: store a torn copy, then fail.
      std::vector<uint8_t> torn(page, page + page_size_);
      memset(torn.data() + page_size_ / 2, 0, page_size_ - page_size_ / 2);
      Status s = base_->put(pgno, torn.data());
      if (!s.ok()) return s;
    }
    return FaultStatus(kind, kOpPut, "snapshot volume write", name_);
  }
  return base_->put(pgno, page);
}

Status FaultySnapshotVolume::get(uint64_t pgno, uint8_t* page) {
  FaultKind kind;
  if (inj_->ShouldFail(kOpGet, name_, pgno, &kind)) {
    return FaultStatus(kind, kOpGet, "snapshot volume read",
                       name_ + ", page " + std::to_string(pgno));
  }
  return base_->get(pgno, page);
}

void FaultySnapshotVolume::remove() noexcept {
  removed_.store(true);
  base_->remove();
}

Status FaultySink::put_run(uint64_t first_pgno, const uint8_t* pages, size_t count) {
  FaultKind kind;
  if (inj_->ShouldFail(kOpPutRun, name_, first_pgno, &kind)) {
    if (kind == FaultKind::kShort && count > 1) {
      Status s = base_->put_run(first_pgno, pages, count / 2);
      if (!s.ok()) return s;
    }
    return FaultStatus(kind, kOpPutRun, "write", name_);
  }
  return base_->put_run(first_pgno, pages, count);
}

Status FaultySink::put_overlay(uint64_t pgno, const uint8_t* page) {
  FaultKind kind;
  if (inj_->ShouldFail(kOpPutOverlay, name_, pgno, &kind)) {
    return FaultStatus(kind, kOpPutOverlay, "write", name_);
  }
  return base_->put_overlay(pgno, page);
}

Status FaultySink::finish(const Progress& final) {
  FaultKind kind;
  if (inj_->ShouldFail(kOpFinish, name_, final.pages_done, &kind)) {
    return FaultStatus(kind, kOpFinish, "finish", name_);
  }
  return base_->finish(final);
}

void FaultySink::abandon() noexcept {
  abandoned_.store(true);
  base_->abandon();
}

Status FaultyByteOutput::append(const uint8_t* data, size_t len) {
  FaultKind kind;
  if (inj_->ShouldFail(kOpAppend, name(), offset_, &kind)) {
    if (kind == FaultKind::kShort && len > 1) {
      Status s = base_->append(data, len / 2);
      if (!s.ok()) return s;
      offset_ += len / 2;
    }
    return FaultStatus(kind, kOpAppend, "write", name());
  }
  Status s = base_->append(data, len);
  if (s.ok()) offset_ += len;
  return s;
}

Status FaultyByteOutput::commit() {
  FaultKind kind;
  if (inj_->ShouldFail(kOpCommit, name(), offset_, &kind)) {
    // fsync is where a full disk or a failing device shows last.
    return FaultStatus(kind, kOpCommit, "fsync", name());
  }
  return base_->commit();
}

}  // namespace cowbackup::faults
