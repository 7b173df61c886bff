// The pacer (engine/pacer.h) on a simulated clock: the commit history is
// fed by a model application, so every decision is deterministic.
#include "engine/pacer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace cowbackup {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kT0 = 1'000'000 * kMs;  // an arbitrary start, whole buckets
constexpr uint64_t kMiB = 1 << 20;

// Commits of `took` each, back to back over [from, to).
void Commits(CommitHistory* h, int64_t from, int64_t to, int64_t took) {
  for (int64_t t = from + took; t <= to; t += took) h->Record(t, took);
}

TEST(PacerTest, NoCommitsMeansFullSpeedAndNoProbe) {
  CommitHistory h;
  Pacer p(&h, 0.85, kT0);
  uint64_t bytes = 0;
  for (int64_t t = kT0; t < kT0 + 3000 * kMs; t += 5 * kMs) {
    EXPECT_EQ(p.NextWriteNs(bytes, t), t);
    bytes += kMiB;
  }
  EXPECT_EQ(p.rate_mb(), 0);
  EXPECT_EQ(p.counts().probes, 0u);
  EXPECT_EQ(p.counts().decreases, 0u);
}

TEST(PacerTest, SlowerCommitsCutTheRateAndRecoveredOnesRaiseItUntilItIsLifted) {
  CommitHistory h;
  Commits(&h, kT0 - 1000 * kMs, kT0, 1 * kMs);  // the baseline: 1 ms commits
  Pacer p(&h, 0.85, kT0);
  uint64_t bytes = 0;
  int64_t t = kT0;
  // The copy runs at full speed (1 MiB per ms) while commits take 3 ms:
  // the application keeps a third of its speed.
  for (; t < kT0 + 250 * kMs; t += kMs) {
    if (t % (3 * kMs) == 0) h.Record(t, 3 * kMs);
    if (p.NextWriteNs(bytes, t) <= t) bytes += kMiB;
  }
  Commits(&h, kT0 + 250 * kMs, kT0 + 300 * kMs, 3 * kMs);
  EXPECT_EQ(p.NextWriteNs(bytes, kT0 + 300 * kMs), kT0 + 300 * kMs) << "a write at the cut is due now";
  EXPECT_GT(p.rate_mb(), 0) << "limited";
  EXPECT_EQ(p.counts().decreases, 2u) << "cuts at 100 ms and, once the first could show, 300 ms";
  const double second = p.rate_mb();
  // While commits stay slow the rate keeps falling, one cut per window of
  // two buckets: at 500 and 700 ms, not at 400 or 600.
  Commits(&h, kT0 + 300 * kMs, kT0 + 700 * kMs, 3 * kMs);
  for (int64_t at = kT0 + 400 * kMs; at <= kT0 + 700 * kMs; at += 100 * kMs) p.NextWriteNs(bytes, at);
  EXPECT_EQ(p.counts().decreases, 4u);
  EXPECT_NEAR(p.rate_mb(), second * 0.7 * 0.7, 1e-9);
  // Commits back to 1 ms: the rate climbs, and past twice the copy's own
  // speed the limit is lifted.
  int64_t at = kT0 + 800 * kMs;
  for (int i = 0; i < 200 && p.rate_mb() > 0; i++, at += 100 * kMs) {
    Commits(&h, at - 100 * kMs, at, 1 * kMs);
    p.NextWriteNs(bytes, at);
  }
  EXPECT_EQ(p.rate_mb(), 0) << "lifted after " << p.counts().increases << " raises";
  EXPECT_GT(p.counts().increases, 0u);
}

TEST(PacerTest, PacedWritesAreSpacedByTheRate) {
  CommitHistory h;
  Commits(&h, kT0 - 1000 * kMs, kT0, 1 * kMs);
  Pacer p(&h, 0.85, kT0);
  // A stalled writer (no commit in a window that should hold 200) cuts
  // the rate from the default when the copy's speed is not known yet.
  EXPECT_EQ(p.NextWriteNs(0, kT0 + 50 * kMs), kT0 + 50 * kMs);
  const int64_t cut = kT0 + 300 * kMs;
  EXPECT_EQ(p.NextWriteNs(0, cut), cut);
  ASSERT_GT(p.rate_mb(), 0);
  EXPECT_EQ(p.counts().last_share, 0);
  const double rate = p.rate_mb();
  // 10 MB at `rate` MB/s from the cut.
  const int64_t due = p.NextWriteNs(10'000'000, cut + kMs);
  EXPECT_NEAR(double(due - cut) / 1e9, 10 / rate, 1e-6);
}

TEST(PacerTest, TheRateNeverFallsBelowTheFloor) {
  CommitHistory h;
  Commits(&h, kT0 - 1000 * kMs, kT0, 1 * kMs);
  Pacer p(&h, 0.85, kT0);
  for (int64_t at = kT0 + 100 * kMs; at < kT0 + 9000 * kMs; at += 100 * kMs) p.NextWriteNs(0, at);  // stalled
  EXPECT_EQ(p.rate_mb(), Pacer::kMinRateMb);
  EXPECT_EQ(p.counts().lowest_rate_mb, Pacer::kMinRateMb);
}

TEST(PacerTest, CommitsWithoutABaselinePauseTheCopyForAProbe) {
  CommitHistory h;
  Pacer p(&h, 0.85, kT0);  // nothing committed before the backup
  EXPECT_EQ(p.NextWriteNs(0, kT0 + 150 * kMs), kT0 + 150 * kMs);
  Commits(&h, kT0 + 150 * kMs, kT0 + 300 * kMs, 4 * kMs);  // commits start, slowed by the copy
  const int64_t until = p.NextWriteNs(kMiB, kT0 + 310 * kMs);
  EXPECT_EQ(p.counts().probes, 1u);
  EXPECT_EQ(until, kT0 + 600 * kMs) << "two whole buckets without the copy";
  EXPECT_EQ(p.NextWriteNs(kMiB, kT0 + 450 * kMs), until) << "still probing";
  Commits(&h, kT0 + 400 * kMs, kT0 + 600 * kMs, 1 * kMs);  // alone they take 1 ms
  EXPECT_EQ(p.NextWriteNs(kMiB, until), until);
  // The baseline is the probe's: 4 ms commits now read as a quarter.
  Commits(&h, kT0 + 700 * kMs, kT0 + 900 * kMs, 4 * kMs);
  p.NextWriteNs(2 * kMiB, kT0 + 900 * kMs);
  EXPECT_NEAR(p.counts().last_share, 0.25, 1e-9);
  EXPECT_GT(p.rate_mb(), 0);
}

TEST(PacerTest, CopyingWhileTheApplicationCommitsProbesAgainToFollowItsLoad) {
  CommitHistory h;
  Commits(&h, kT0 - 1000 * kMs, kT0, 1 * kMs);
  Pacer p(&h, 0.85, kT0);
  int64_t at = kT0 + 100 * kMs;
  for (; at < kT0 + Pacer::kReprobeNs + 500 * kMs && p.counts().probes == 0; at += 100 * kMs) {
    Commits(&h, at - 100 * kMs, at, 1 * kMs);
    p.NextWriteNs(0, at);
  }
  EXPECT_EQ(p.counts().probes, 1u);
  EXPECT_GE(at - kT0, Pacer::kReprobeNs);
}

// Closed loop: an application whose commits slow down with the copy's
// speed (1 ms alone, +1 ms per 20 MB/s the copy wrote in the last 100 ms)
// and a copy that can do 200 MB/s. At the target of 85 % the best steady
// rate is 3.5 MB/s; the pacer must keep the application near its share
// without starving the copy.
TEST(PacerTest, ClosedLoopHoldsTheTargetShare) {
  CommitHistory h;
  Commits(&h, kT0 - 1000 * kMs, kT0, 1 * kMs);
  Pacer p(&h, 0.85, kT0);
  constexpr uint64_t kChunk = 256 * 1024;
  constexpr double kFullMbs = 200;
  uint64_t bytes = 0;
  std::vector<std::pair<int64_t, uint64_t>> writes;  // (time, bytes) of each copy write
  int64_t next_copy = kT0, next_commit_start = kT0;
  double share_sum = 0;
  int share_n = 0;
  uint64_t bytes_at_5s = 0;
  for (int64_t t = kT0; t < kT0 + 20'000 * kMs; t += 100'000) {  // 0.1 ms steps
    if (t >= next_copy) {
      const int64_t due = p.NextWriteNs(bytes, t);
      if (due <= t) {
        bytes += kChunk;
        writes.emplace_back(t, kChunk);
        next_copy = t + int64_t(double(kChunk) / (kFullMbs * 1e6) * 1e9);
      } else {
        next_copy = due;
      }
    }
    if (t >= next_commit_start) {
      uint64_t recent = 0;
      for (auto it = writes.rbegin(); it != writes.rend() && it->first > t - 100 * kMs; ++it) recent += it->second;
      const double mbs = double(recent) / 1e6 / 0.1;
      const int64_t took = int64_t(kMs * (1 + mbs / 20));
      h.Record(t + took, took);
      next_commit_start = t + took;
      if (t > kT0 + 5000 * kMs) share_sum += 1.0 / (1 + mbs / 20), share_n++;
    }
    if (t == kT0 + 5000 * kMs) bytes_at_5s = bytes;
  }
  const double share = share_sum / share_n;
  const double mbs = double(bytes - bytes_at_5s) / 1e6 / 15;
  EXPECT_GT(share, 0.80) << "the application kept " << share << " at " << mbs << " MB/s";
  EXPECT_GT(mbs, 1.5) << "the copy starved: " << mbs << " MB/s (the best is 3.5), share " << share;
  EXPECT_GT(p.counts().decreases, 0u);
}

}  // namespace
}  // namespace cowbackup
