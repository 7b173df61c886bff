#include "engine/pacer.h"

#include <algorithm>

namespace cowbackup {

namespace {
constexpr int64_t kBucketNs = CommitHistory::kBucketNs;
constexpr int64_t kWindowNs = 2 * kBucketNs;  // what one decision looks at
constexpr int64_t kSecondNs = 1'000'000'000;
}  // namespace

Pacer::Pacer(const CommitHistory* history, double target_share, int64_t now_ns)
    : history_(history), target_(std::clamp(target_share, 0.01, 1.0)) {
  const CommitHistory::Sum before = history_->Between(now_ns - kSecondNs, now_ns);
  if (before.commits > 0) {
    base_ns_ = double(before.ns) / double(before.commits);
    base_per_window_ = double(before.commits) * kWindowNs / kSecondNs;
  }
  decided_epoch_ = now_ns / kBucketNs;
  anchor_ns_ = free_since_ns_ = now_ns;
  next_probe_ns_ = now_ns + kReprobeNs;
}

int64_t Pacer::NextWriteNs(uint64_t bytes_written, int64_t now_ns) {
  if (probe_until_ns_ != 0) {
    if (now_ns < probe_until_ns_) return probe_until_ns_;
    // The probe's two buckets had no copy in them: the application alone.
    const CommitHistory::Sum alone = history_->Between(probe_from_ns_, probe_until_ns_);
    if (alone.commits > 0) {
      base_ns_ = double(alone.ns) / double(alone.commits);
      base_per_window_ = double(alone.commits);
    }
    probe_until_ns_ = 0;
    next_probe_ns_ = now_ns + kReprobeNs;
    decided_epoch_ = now_ns / kBucketNs + 1;  // the next decision sees the copy again
    SetRate(rate_mb_, bytes_written, now_ns);  // the pause is not owed
  }
  const int64_t epoch = now_ns / kBucketNs;
  if (epoch > decided_epoch_) {
    decided_epoch_ = epoch;
    Decide(bytes_written, now_ns);
    if (probe_until_ns_ != 0) return probe_until_ns_;
  }
  if (rate_mb_ <= 0) return now_ns;
  const double owed_s = double(bytes_written - anchor_bytes_) / (rate_mb_ * 1e6);
  return std::max(now_ns, anchor_ns_ + int64_t(owed_s * 1e9));
}

void Pacer::Decide(uint64_t bytes_written, int64_t now_ns) {
  if (rate_mb_ <= 0 && now_ns - free_since_ns_ >= kBucketNs) {
    const double mb_s = double(bytes_written - free_since_bytes_) / 1e6 / (double(now_ns - free_since_ns_) / 1e9);
    full_speed_mb_ = std::max(full_speed_mb_, mb_s);
  }
  const int64_t end = now_ns / kBucketNs * kBucketNs;
  const CommitHistory::Sum w = history_->Between(end - kWindowNs, end);
  if (base_ns_ == 0) {
    if (w.commits > 0) StartProbe(now_ns);  // commits appeared: measure them alone first
    return;
  }
  if (now_ns >= next_probe_ns_ && (rate_mb_ > 0 || w.commits > 0)) {
    StartProbe(now_ns);
    return;
  }
  double share = 1;
  if (w.commits > 0) {
    share = base_ns_ / (double(w.ns) / double(w.commits));
  } else if (base_per_window_ >= 2) {
    share = 0;  // commits were due and none ended: a writer is stalled
  }
  counts_.last_share = std::min(share, 1.0);
  if (share < target_) {
    if (now_ns < hold_until_ns_) return;  // the last cut has not shown yet
    const double from = rate_mb_ > 0 ? rate_mb_ : full_speed_mb_ > 0 ? full_speed_mb_ : 100;
    SetRate(std::max(kMinRateMb, from * 0.7), bytes_written, now_ns);
    hold_until_ns_ = now_ns + kWindowNs;
    counts_.decreases++;
  } else if (rate_mb_ > 0) {
    const double next = rate_mb_ * 1.1 + 1;
    SetRate(full_speed_mb_ > 0 && next > 2 * full_speed_mb_ ? 0 : next, bytes_written, now_ns);
    counts_.increases++;
  }
}

void Pacer::SetRate(double mb, uint64_t bytes_written, int64_t now_ns) {
  if (mb > 0 && (counts_.lowest_rate_mb == 0 || mb < counts_.lowest_rate_mb)) counts_.lowest_rate_mb = mb;
  if (mb <= 0) {  // the copy's own speed is measured from here
    free_since_ns_ = now_ns;
    free_since_bytes_ = bytes_written;
  }
  rate_mb_ = mb;
  anchor_ns_ = now_ns;
  anchor_bytes_ = bytes_written;
}

void Pacer::StartProbe(int64_t now_ns) {
  probe_from_ns_ = (now_ns / kBucketNs + 1) * kBucketNs;
  probe_until_ns_ = probe_from_ns_ + kWindowNs;
  counts_.probes++;
}

}  // namespace cowbackup
