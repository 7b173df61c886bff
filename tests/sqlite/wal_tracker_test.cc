// WalTracker's rules (vfs/wal_tracker.h), value by value: what a
// connection of this process leaves at each WAL lock transition is
// accepted, anything else that could change the copy is named.
#include "vfs/wal_tracker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

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

// ---- Several processes: trackers sharing one job's marks ----
// Two trackers on one WAL tail stand for the owner's process and a
// participant's (the tail is shared memory there; here, one buffer).

struct SharedTail {
  alignas(8) uint8_t bytes[coord::layout::kOffWalFramePages] = {};
};

TEST(WalTracker, AParticipantsCommitsAndCheckpointsAreOurs) {
  SharedTail tail;
  WalTracker owner, part;
  owner.Begin(kT0, tail.bytes);
  part.Join(tail.bytes);
  part.WriteLocked(kT0, false);
  part.WriteUnlocking({7, 99, 12, 4});  // the participant commits
  owner.WriteLocked({7, 99, 12, 4}, false);  // the owner's next writer sees it as ours
  owner.WriteUnlocking({7, 99, 13, 4});
  part.CheckpointLocked({7, 99, 13, 4});
  part.CheckpointUnlocking({7, 99, 13, 13});  // backfilled past T0: the participant's
  part.WriteLocked({7, 99, 13, 13}, false);
  part.WriteUnlocking({8, 5, 1, 0});  // a restart
  EXPECT_FALSE(owner.failed()) << owner.error().ToString();
  EXPECT_FALSE(part.failed()) << part.error().ToString();
  EXPECT_TRUE(owner.CheckAtEnd({8, 5, 1, 0}).ok()) << owner.error().ToString();
}

TEST(WalTracker, ANonParticipantsCommitIsNamedByWhicheverProcessSeesIt) {
  SharedTail tail;
  WalTracker owner, part;
  owner.Begin(kT0, tail.bytes);
  part.Join(tail.bytes);
  part.WriteLocked({7, 99, 11, 4}, false);  // mxFrame moved, no participant wrote
  EXPECT_TRUE(Mentions(part.error(), "a write bypassed the cowbackup shim")) << part.error().ToString();
  EXPECT_FALSE(owner.failed());  // the participant records it for the owner (FileState)
  EXPECT_FALSE(owner.CheckAtEnd({7, 99, 11, 4}).ok());  // and the end check sees it too
}

TEST(WalTracker, ANonParticipantsCheckpointIsNamedByAParticipant) {
  SharedTail tail;
  WalTracker owner, part;
  owner.Begin(kT0, tail.bytes);
  part.Join(tail.bytes);
  owner.WriteLocked(kT0, false);
  owner.WriteUnlocking({7, 99, 14, 4});
  part.WriteLocked({7, 99, 14, 14}, /*ckpt_held=*/false);  // backfilled past T0, by no participant
  EXPECT_TRUE(Mentions(part.error(), "a checkpoint bypassed the cowbackup shim")) << part.error().ToString();
}

TEST(WalTracker, AMarkLeftHalfWrittenFailsTheJobByName) {
  SharedTail tail;
  WalTracker owner;
  owner.Begin(kT0, tail.bytes);
  // A process died in the middle of writing the checkpoint mark: its
  // sequence word stays odd.
  std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(tail.bytes + coord::layout::kOffWalCkptSeq))
      .fetch_add(1);
  owner.CheckpointLocked(kT0);
  EXPECT_TRUE(Mentions(owner.error(), "died while it updated the shared WAL tracker")) << owner.error().ToString();
}

TEST(WalTail, RoundTripsAndRefusesAShortTail) {
  std::vector<uint8_t> buf(coord::layout::WalTailSize(3) + 8, 0xee);
  WalIndexHeader h;
  h.salt1 = 7;
  h.salt2 = 99;
  h.max_frame = 3;
  h.db_pages = 40;
  WalTracker owner;
  owner.Begin({7, 99, 3, 1}, buf.data());  // the t0 mark
  EncodeWalTail(buf.data(), h, 38, {5, 9, 5});
  WalIndexHeader got;
  uint64_t main_pages = 0;
  std::vector<uint32_t> frames;
  ASSERT_TRUE(DecodeWalTail(buf.data(), buf.size(), 4096, "region", &got, &main_pages, &frames).ok());
  EXPECT_EQ(got.salt1, 7u);
  EXPECT_EQ(got.salt2, 99u);
  EXPECT_EQ(got.max_frame, 3u);
  EXPECT_EQ(got.db_pages, 40u);
  EXPECT_EQ(got.page_size, 4096u);
  EXPECT_EQ(main_pages, 38u);
  EXPECT_EQ(frames, (std::vector<uint32_t>{5, 9, 5}));
  const Status s = DecodeWalTail(buf.data(), coord::layout::WalTailSize(2), 4096, "region", &got, &main_pages, &frames);
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_TRUE(Mentions(s, "mxFrame 3")) << s.ToString();
  owner.End();
}

}  // namespace
}  // namespace cowbackup::sqlite
