// WalTracker's rules (vfs/wal_tracker.h), value by value: what a
// connection of this process leaves at each WAL lock transition is
// accepted, anything else that could change the copy is named.
#include "vfs/wal_tracker.h"

#include <gtest/gtest.h>

namespace cowbackup::sqlite {
namespace {

constexpr WalMark kT0{7, 99, 10, 4};  // generation 7/99, mxFrame 10, nBackfill 4

bool Mentions(const Status& s, const char* what) { return s.message().find(what) != std::string::npos; }

TEST(WalTracker, OurCommitsRestartsAndCheckpointsPass) {
  WalTracker t;
  t.Begin(kT0);
  t.WriteLocked(kT0, false);
  t.WriteUnlocking({7, 99, 12, 4});  // a commit
  t.CheckpointLocked({7, 99, 12, 4});
  t.CheckpointUnlocking({7, 99, 12, 12});  // backfilled past T0: ours
  t.WriteLocked({7, 99, 12, 12}, false);
  t.WriteUnlocking({8, 1234, 2, 0});  // a restart and a commit
  t.CheckpointLocked({8, 1234, 2, 0});
  t.CheckpointUnlocking({8, 1234, 2, 2});
  EXPECT_TRUE(t.CheckAtEnd({8, 1234, 2, 2}).ok()) << t.error().ToString();
}

TEST(WalTracker, AForeignCommitIsNamed) {
  WalTracker t;
  t.Begin(kT0);
  t.WriteLocked({7, 99, 11, 4}, false);  // mxFrame moved with no writer of ours
  EXPECT_TRUE(t.failed());
  EXPECT_TRUE(Mentions(t.error(), "a write bypassed the cowbackup shim")) << t.error().ToString();
  EXPECT_TRUE(t.error().IsCorruption());
}

TEST(WalTracker, AForeignRestartIsNamedAtTheEnd) {
  WalTracker t;
  t.Begin(kT0);
  EXPECT_FALSE(t.CheckAtEnd({8, 5, 0, 0}).ok());
  EXPECT_TRUE(Mentions(t.error(), "the wal-index went from generation 7/99, mxFrame 10"));
}

TEST(WalTracker, AForeignCheckpointOfT0FramesIsHarmless) {
  WalTracker t;
  t.Begin(kT0);
  t.CheckpointLocked({7, 99, 10, 10});  // backfilled up to T0's mxFrame: those pages come from the WAL
  EXPECT_FALSE(t.failed()) << t.error().ToString();
  EXPECT_TRUE(t.CheckAtEnd({7, 99, 10, 10}).ok());
}

TEST(WalTracker, AForeignCheckpointPastT0IsNamed) {
  WalTracker t;
  t.Begin(kT0);
  t.WriteLocked(kT0, false);
  t.WriteUnlocking({7, 99, 14, 4});  // our commit after T0
  t.CheckpointLocked({7, 99, 14, 14});  // someone else backfilled it
  EXPECT_TRUE(Mentions(t.error(), "a checkpoint bypassed the cowbackup shim")) << t.error().ToString();
}

TEST(WalTracker, AForeignCheckpointInALaterGenerationIsNamed) {
  WalTracker t;
  t.Begin(kT0);
  t.WriteLocked(kT0, false);
  t.WriteUnlocking({8, 3, 5, 0});  // our restart
  // Before our next write: someone backfilled the new generation. A write
  // lock taken while none of ours checkpoints sees it...
  t.WriteLocked({8, 3, 5, 5}, /*ckpt_held_here=*/false);
  EXPECT_TRUE(Mentions(t.error(), "a checkpoint bypassed")) << t.error().ToString();
}

TEST(WalTracker, AWriteLockTakenWhileWeCheckpointDoesNotJudgeBackfill) {
  WalTracker t;
  t.Begin(kT0);
  t.WriteLocked(kT0, false);
  t.WriteUnlocking({7, 99, 14, 4});
  t.CheckpointLocked({7, 99, 14, 4});
  // Our checkpointer is mid-way (nBackfill moved, not yet recorded) when a
  // writer of ours takes the write lock: not a foreign checkpoint.
  t.WriteLocked({7, 99, 14, 9}, /*ckpt_held_here=*/true);
  EXPECT_FALSE(t.failed()) << t.error().ToString();
  t.WriteUnlocking({7, 99, 16, 9});
  t.CheckpointUnlocking({7, 99, 16, 14});
  EXPECT_TRUE(t.CheckAtEnd({7, 99, 16, 14}).ok()) << t.error().ToString();
}

TEST(WalTracker, TheFirstProblemIsKeptAndBeginClearsIt) {
  WalTracker t;
  t.Begin(kT0);
  t.Fail("the wal-index header could not be read");
  t.WriteLocked({1, 1, 1, 1}, false);
  EXPECT_TRUE(Mentions(t.error(), "could not be read")) << t.error().ToString();
  t.Begin(kT0);
  EXPECT_TRUE(t.error().ok());
  EXPECT_TRUE(t.active());
  t.End();
  EXPECT_FALSE(t.active());
}

}  // namespace
}  // namespace cowbackup::sqlite
