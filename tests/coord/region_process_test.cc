// The coordination region across real processes (fork): a participant or a
// job owner killed with SIGKILL is seen dead the moment waitpid returns it
// (by its lock, with no waiting and no timeout), its slot is reclaimed, a
// live pid proves nothing, an unrelated close() drops no lock, and a forked
// child must forget an inherited Region. Then the protocol itself: a child
// runs attach, finding a dead job, claim, arm, finish, and detach while
// owning, and is killed at the k-th sync point for k = 1, 2, ... until it
// finishes; after every kill the region must satisfy docs/REGION.md's
// invariants and the next job must work. This fork-based sweep is the
// region's deterministic model: each run is one schedule, every step a
// party can die at is a sync point, and each is taken.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>

#include "coord/region_test_util.h"
#include "engine/sync_point.h"
#include "test_util/processes.h"

namespace cowbackup::coord::test {
namespace {

using RegionProcessTest = RegionFixture;

// ---- Deaths ------------------------------------------------------------

TEST_F(RegionProcessTest, KilledParticipantsSlotIsFreeAtOnceAndReclaimed) {
  auto parent = Attach();
  Pipe ready, hold;
  const pid_t child = Spawn([&] {
    std::unique_ptr<Region> r;
    if (!Region::Attach(region_, db_fd_, &r).ok()) return 1;
    ready.Tell();
    hold.CloseWrite();
    hold.Hear();  // until killed
    return 0;
  });
  ready.CloseWrite();
  ASSERT_TRUE(ready.Hear());
  std::vector<Participant> ps;
  ASSERT_TRUE(parent->Participants(&ps).ok());
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[1].pid, child);
  EXPECT_EQ(ps[1].slot, 1u);
  EXPECT_FALSE(ps[1].self);

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_TRUE(WIFSIGNALED(Wait(child)));
  // No waiting: the kernel dropped the child's locks before waitpid returned.
  ASSERT_TRUE(parent->Participants(&ps).ok());
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_TRUE(ps[0].self);
  EXPECT_EQ(ps[0].pid, ::getpid());
  // The dead child's record still says attached; the next attach takes it.
  EXPECT_EQ(Get64(kOffSlots + kSlotSize + kOffSlotPid), uint64_t(child));
  auto next = Attach();
  EXPECT_EQ(next->slot(), 1u);
  EXPECT_EQ(Get64(kOffSlots + kSlotSize + kOffSlotPid), uint64_t(::getpid()));
}

TEST_F(RegionProcessTest, LivePidWithoutItsLockIsDead) {
  // pid reuse, faked: slot 1's record names a live process (this one, with
  // its true start time), but no one holds slot 1's lock.
  auto parent = Attach();
  SlotRecord rec{1, ::getpid(), ProcessStartUnix(::getpid()), 1};
  std::string buf(kFixedSize, '\0');
  EncodeSlot(rec, 1, reinterpret_cast<uint8_t*>(buf.data()));
  Write(kOffSlots + kSlotSize, buf.data() + kOffSlots + kSlotSize, kSlotSize);
  std::vector<Participant> ps;
  ASSERT_TRUE(parent->Participants(&ps).ok());
  EXPECT_EQ(ps.size(), 1u) << "a pid is not a participant";
  const pid_t child = Spawn([&] {
    std::unique_ptr<Region> r;
    return Region::Attach(region_, db_fd_, &r).ok() && r->slot() == 1 ? 0 : 1;
  });
  const int status = Wait(child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "another process reclaims slot 1";
}

TEST_F(RegionProcessTest, KilledOwnersJobIsDeadAtOnce) {
  auto parent = Attach();
  Pipe ready, hold;
  const std::string volume = dir_ / "child.cowsnap";
  const pid_t child = Spawn([&] {
    std::unique_ptr<Region> r;
    Job dead;
    if (!Region::Attach(region_, db_fd_, &r).ok() || !r->ClaimJob(volume, 4096, &dead).ok() ||
        !r->Arm("child-t0").ok()) {
      return 1;
    }
    ready.Tell();
    hold.CloseWrite();
    hold.Hear();
    return 0;
  });
  ready.CloseWrite();
  ASSERT_TRUE(ready.Hear());
  Job j, dead;
  ASSERT_TRUE(parent->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kRunning);
  EXPECT_EQ(j.owner_pid, child);
  EXPECT_EQ(parent->load_armed(), ArmedValue(j.job_id)) << "armed by another process";
  EXPECT_TRUE(parent->ClaimJob(dir_ / "p.cowsnap", 0, &dead).IsBusy());

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_TRUE(WIFSIGNALED(Wait(child)));
  EXPECT_NE(parent->load_armed(), 0u) << "until someone looks: the write path's slow path does";
  ASSERT_TRUE(parent->ReadJob(&j).ok());
  EXPECT_EQ(j.state, JobState::kDead);
  EXPECT_EQ(parent->load_armed(), 0u);
  ASSERT_TRUE(parent->ClaimJob(dir_ / "p.cowsnap", 0, &dead).ok());
  EXPECT_EQ(dead.state, JobState::kDead);
  EXPECT_EQ(dead.volume_path, volume);
  EXPECT_EQ(dead.t0, "child-t0");
  EXPECT_EQ(dead.owner_pid, child);
  ASSERT_TRUE(parent->Finish().ok());
}

TEST_F(RegionProcessTest, AnUnrelatedCloseDropsNoLock) {
  // POSIX fcntl locks would all go here (os_unix.c, "Posix Advisory
  // Locking"): any code in the process that opens and closes the file.
  auto owner = Attach();
  Job dead;
  ASSERT_TRUE(owner->ClaimJob("/v", 0, &dead).ok());
  ASSERT_TRUE(owner->Arm("").ok());
  const int fd = ::open(region_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ::close(fd);
  const pid_t child = Spawn([&] {
    std::unique_ptr<Region> r;
    Job j;
    std::vector<Participant> ps;
    if (!Region::Attach(region_, db_fd_, &r).ok() || !r->ReadJob(&j).ok() || !r->Participants(&ps).ok()) return 1;
    if (j.state != JobState::kRunning) return 2;  // the owner lock went
    if (ps.size() != 2) return 3;                 // the owner's slot lock went
    return 0;
  });
  const int status = Wait(child);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  ASSERT_TRUE(owner->Finish().ok());
}

// X attaches and claims, forks G, and is killed while G lives on. With
// `forget`, G drops the inherited Region first.
void KillParentOfForkedChild(const std::string& region, int db_fd, bool forget, JobState* seen,
                             size_t* participants) {
  Pipe ready, hold;
  const pid_t x = Spawn([&] {
    std::unique_ptr<Region> r;
    Job dead;
    if (!Region::Attach(region, db_fd, &r).ok() || !r->ClaimJob("/v", 0, &dead).ok()) return 1;
    const pid_t g = ::fork();
    if (g == 0) {
      if (forget) r->ForgetAfterFork();
      r.release();  // never destroyed here: it is the parent's
      ready.Tell();
      hold.CloseWrite();
      hold.Hear();
      ::_exit(0);
    }
    hold.CloseWrite();
    hold.Hear();
    return 0;
  });
  ready.CloseWrite();
  ASSERT_TRUE(ready.Hear());
  ASSERT_EQ(::kill(x, SIGKILL), 0);
  ASSERT_TRUE(WIFSIGNALED(Wait(x)));
  std::unique_ptr<Region> r;
  ASSERT_TRUE(Region::Attach(region, db_fd, &r).ok());
  Job j;
  ASSERT_TRUE(r->ReadJob(&j).ok());
  *seen = j.state;
  std::vector<Participant> ps;
  ASSERT_TRUE(r->Participants(&ps).ok());
  *participants = ps.size();
  hold.CloseWrite();  // G (orphaned, reaped by init) exits
}

TEST_F(RegionProcessTest, ForkedChildThatForgetsKeepsNothingAlive) {
  JobState seen;
  size_t participants;
  KillParentOfForkedChild(region_, db_fd_, true, &seen, &participants);
  EXPECT_EQ(seen, JobState::kDead);
  EXPECT_EQ(participants, 1u);
}

TEST_F(RegionProcessTest, ForkedChildThatKeepsAnInheritedRegionKeepsItsParentAlive) {
  // Why ForgetAfterFork exists: the child shares the description, and so
  // the dead parent's locks.
  JobState seen;
  size_t participants;
  KillParentOfForkedChild(region_, db_fd_, false, &seen, &participants);
  EXPECT_EQ(seen, JobState::kArming);
  EXPECT_EQ(participants, 2u);
}

// ---- Taking part: inside counts and busy words ---------------------------

bool Contains(const Status& s, const std::string& text) { return s.ToString().find(text) != std::string::npos; }

TEST_F(RegionProcessTest, ClaimWaitsForALiveParticipantInsideThePreviousJob) {
  auto owner = Attach();
  Job dead;
  ASSERT_TRUE(owner->ClaimJob(dir_ / "v1", 0, &dead).ok());
  ASSERT_TRUE(owner->Arm("").ok());
  const uint64_t seen = owner->load_armed();
  Pipe ready, leave, left;
  const pid_t child = Spawn([&] {
    owner->ForgetAfterFork();
    std::unique_ptr<Region> r;
    if (!Region::Attach(region_, db_fd_, &r).ok() || !r->Enter(seen)) return 1;
    ready.Send(r->slot());
    leave.CloseWrite();
    if (!leave.Hear()) return 2;
    r->Leave();
    left.Tell();
    leave.Hear();  // attached until the parent is done
    return 0;
  });
  ready.CloseWrite();
  left.CloseWrite();
  leave.CloseRead();
  uint64_t slot = 0;
  ASSERT_TRUE(ready.Receive(&slot));
  EXPECT_EQ(InsideCount(slot), 1u);
  ASSERT_TRUE(owner->Finish().ok());

  const auto start = std::chrono::steady_clock::now();
  Status s = owner->ClaimJob(dir_ / "v2", 4096, &dead);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(kDrainWaitMs))
      << "it waits out its bound before giving up";
  EXPECT_TRUE(Contains(s, "slot " + std::to_string(slot) + ", pid " + std::to_string(child))) << s.ToString();
  EXPECT_TRUE(Contains(s, region_)) << s.ToString();
  EXPECT_FALSE(owner->owns_job());
  EXPECT_EQ(owner->load_armed(), 0u);

  leave.Tell();
  ASSERT_TRUE(left.Hear());
  s = owner->ClaimJob(dir_ / "v2", 4096, &dead);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(owner->Finish().ok());
  leave.CloseWrite();
  const int status = Wait(child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(RegionProcessTest, ParticipantKilledInsideDoesNotHoldUpTheNextClaim) {
  auto owner = Attach();
  Job dead;
  ASSERT_TRUE(owner->ClaimJob(dir_ / "v1", 0, &dead).ok());
  ASSERT_TRUE(owner->Arm("").ok());
  const uint64_t seen = owner->load_armed();
  Pipe ready, hold;
  const pid_t child = Spawn([&] {
    owner->ForgetAfterFork();
    std::unique_ptr<Region> r;
    if (!Region::Attach(region_, db_fd_, &r).ok() || !r->Enter(seen) || !r->Enter(seen)) return 1;
    ready.Send(r->slot());
    hold.CloseWrite();
    hold.Hear();
    return 0;
  });
  ready.CloseWrite();
  uint64_t slot = 0;
  ASSERT_TRUE(ready.Receive(&slot));
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_TRUE(WIFSIGNALED(Wait(child)));
  EXPECT_EQ(InsideCount(slot), 2u) << "a dead process's count stays in its record";
  ASSERT_TRUE(owner->Finish().ok());
  Status s = owner->ClaimJob(dir_ / "v2", 0, &dead);
  ASSERT_TRUE(s.ok()) << "a dead slot's count is not waited for: " << s.ToString();
  ASSERT_TRUE(owner->Arm("").ok());
  const uint64_t seen2 = owner->load_armed();

  // The next process in that slot starts at 0, and its own count works.
  Pipe ready2, hold2;
  const pid_t next = Spawn([&] {
    owner->ForgetAfterFork();
    std::unique_ptr<Region> r;
    if (!Region::Attach(region_, db_fd_, &r).ok()) return 1;
    ready2.Send(r->slot());
    hold2.CloseWrite();
    if (!hold2.Hear() || !r->Enter(seen2)) return 2;
    ready2.Send(r->slot());
    hold2.Hear();
    return 0;
  });
  ready2.CloseWrite();
  uint64_t slot2 = 0;
  ASSERT_TRUE(ready2.Receive(&slot2));
  EXPECT_EQ(slot2, slot) << "the dead child's slot is reclaimed";
  EXPECT_EQ(InsideCount(slot2), 0u);
  hold2.Tell();
  ASSERT_TRUE(ready2.Receive(&slot2));
  EXPECT_EQ(InsideCount(slot2), 1u);
  hold2.CloseWrite();
  EXPECT_TRUE(WIFEXITED(Wait(next)));
  EXPECT_EQ(InsideCount(slot2), 0u) << "a detached slot's record is cleared";
  ASSERT_TRUE(owner->Finish().ok());
}

// The child's commands in the busy-word tests.
constexpr uint64_t kCmdLeave = 1, kCmdEnter = 2;

TEST_F(RegionProcessTest, WritersBusyWordIsGoneWhenItsHolderIsDeadOutsideOrReplaced) {
  auto owner = Attach();
  Job dead, job;
  ASSERT_TRUE(owner->ClaimJob(dir_ / "v", 4096, &dead, &job).ok());
  ASSERT_TRUE(owner->Arm("").ok());
  const uint64_t seen = owner->load_armed();
  EXPECT_FALSE(owner->HolderGone(owner->BusyWord(false), job.owner_slot)) << "this Region's own word";

  Pipe words, cmd, ack;
  const pid_t child = Spawn([&] {
    owner->ForgetAfterFork();
    words.CloseRead();
    cmd.CloseWrite();
    std::unique_ptr<Region> r;
    if (!Region::Attach(region_, db_fd_, &r).ok() || !r->Enter(seen)) return 1;
    words.Send(r->BusyWord(false));
    uint64_t c;
    while (cmd.Receive(&c)) {
      if (c == kCmdLeave) r->Leave();
      if (c == kCmdEnter && !r->Enter(seen)) return 2;
      ack.Tell();
    }
    return 0;
  });
  words.CloseWrite();
  cmd.CloseRead();
  ack.CloseWrite();
  uint64_t w = 0;
  ASSERT_TRUE(words.Receive(&w));
  EXPECT_NE(w & kBusyBit, 0u);
  EXPECT_EQ(w & kBusyCopierBit, 0u);
  const uint32_t slot = uint32_t(w & 0xff);
  EXPECT_NE(slot, owner->slot());

  EXPECT_FALSE(owner->HolderGone(uint32_t(w), job.owner_slot)) << "alive and inside";
  cmd.Send(kCmdLeave);
  ASSERT_TRUE(ack.Hear());
  EXPECT_TRUE(owner->HolderGone(uint32_t(w), job.owner_slot)) << "alive, but no thread of it is inside";
  EXPECT_FALSE(owner->PartyGone(uint32_t(w))) << "alive: the party is there, inside or not";
  cmd.Send(kCmdEnter);
  ASSERT_TRUE(ack.Hear());
  EXPECT_FALSE(owner->HolderGone(uint32_t(w), job.owner_slot)) << "inside again";
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_TRUE(WIFSIGNALED(Wait(child)));
  EXPECT_TRUE(owner->HolderGone(uint32_t(w), job.owner_slot)) << "killed while inside";
  EXPECT_TRUE(owner->PartyGone(uint32_t(w))) << "killed";

  // Another process takes the slot and goes inside: the old word is still
  // gone (its tag is the dead process's), the new one is not.
  Pipe words2, hold;
  const pid_t next = Spawn([&] {
    owner->ForgetAfterFork();
    words2.CloseRead();
    std::unique_ptr<Region> r;
    if (!Region::Attach(region_, db_fd_, &r).ok() || !r->Enter(seen)) return 1;
    words2.Send(r->BusyWord(false));
    hold.CloseWrite();
    hold.Hear();
    return 0;
  });
  words2.CloseWrite();
  uint64_t w2 = 0;
  ASSERT_TRUE(words2.Receive(&w2));
  EXPECT_EQ(w2 & 0xff, slot) << "the same slot";
  ASSERT_NE(w2, w) << "a later process in the slot has another tag";
  EXPECT_TRUE(owner->HolderGone(uint32_t(w), job.owner_slot)) << "the slot's new process is not the holder";
  EXPECT_FALSE(owner->HolderGone(uint32_t(w2), job.owner_slot));
  EXPECT_TRUE(owner->PartyGone(uint32_t(w))) << "the slot's new process is another party";
  EXPECT_FALSE(owner->PartyGone(uint32_t(w2)));
  EXPECT_FALSE(owner->PartyGone(owner->BusyWord(false))) << "this Region itself";
  hold.CloseWrite();
  EXPECT_TRUE(WIFEXITED(Wait(next)));
  ASSERT_TRUE(owner->Finish().ok());
}

TEST_F(RegionProcessTest, CopiersBusyWordIsGoneWhenTheOwnerDies) {
  Pipe words, hold;
  const pid_t child = Spawn([&] {
    words.CloseRead();
    std::unique_ptr<Region> r;
    Job dead;
    if (!Region::Attach(region_, db_fd_, &r).ok() || !r->ClaimJob(dir_ / "v", 4096, &dead).ok() ||
        !r->Arm("").ok()) {
      return 1;
    }
    words.Send(r->BusyWord(true));
    hold.CloseWrite();
    hold.Hear();
    return 0;
  });
  words.CloseWrite();
  uint64_t w = 0;
  ASSERT_TRUE(words.Receive(&w));
  auto p = Attach();
  Job job;
  ASSERT_TRUE(p->ReadJob(&job).ok());
  ASSERT_EQ(job.state, JobState::kRunning);
  EXPECT_NE(w & kBusyCopierBit, 0u);
  EXPECT_EQ(w & 0xff, job.owner_slot);
  EXPECT_TRUE(p->OwnerAlive());
  EXPECT_FALSE(p->HolderGone(uint32_t(w), job.owner_slot)) << "the owner is alive";
  EXPECT_TRUE(p->HolderGone(uint32_t(w), job.owner_slot + 1)) << "a copier word from another slot than the owner's";
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_TRUE(WIFSIGNALED(Wait(child)));
  EXPECT_FALSE(p->OwnerAlive());
  EXPECT_TRUE(p->HolderGone(uint32_t(w), job.owner_slot)) << "the owner died";
}

// ---- The kill sweep -------------------------------------------------------

// Where the sweep's child starts.
enum class Start {
  kParentAttached,     // this process stays attached: the child is never first
  kNoRegion,           // no file: the child makes it
  kOrphanJobNoOneHere, // a valid region, a running job whose owner died, no one attached
};

class KillSweepTest : public RegionFixture {
 protected:
  // The child's whole protocol. Exit codes > 0 name the failed step.
  int ChildProtocol() {
    std::unique_ptr<Region> a;
    if (!Region::Attach(region_, db_fd_, &a).ok()) return 10;
    // A job that dies: a grandchild claims, arms and is killed.
    const pid_t g = ::fork();
    if (g == 0) {
      a->ForgetAfterFork();
      sync::SetCallback(nullptr);
      ::_exit(OrphanAJob());
    }
    const int status = Wait(g);
    if (!WIFSIGNALED(status)) return 11;
    Job j, dead;
    if (!a->ReadJob(&j).ok() || j.state != JobState::kDead) return 12;  // R4
    if (!a->ClaimJob("/sweep/child1.cowsnap", 8192, &dead).ok() || dead.state != JobState::kDead) return 13;
    if (!a->Arm("t0-1").ok() || !a->Finish().ok()) return 14;
    if (!a->ClaimJob("/sweep/child2.cowsnap", 0, &dead).ok() || !a->Arm("t0-2").ok()) return 15;
    a.reset();  // detach while owning: left dead
    return 0;
  }

  // Attaches, claims, arms, dies (SIGKILL). Exit code only on failure.
  int OrphanAJob() {
    std::unique_ptr<Region> b;
    Job dead;
    if (!Region::Attach(region_, db_fd_, &b).ok() || !b->ClaimJob("/sweep/orphan.cowsnap", 4096, &dead).ok() ||
        !b->Arm("orphan").ok()) {
      return 20;
    }
    ::raise(SIGKILL);
    return 21;
  }

  void Prepare(Start start) {
    if (start == Start::kNoRegion) ::unlink(region_.c_str());
    if (start == Start::kOrphanJobNoOneHere) {
      const pid_t g = Spawn([&] { return OrphanAJob(); });
      ASSERT_TRUE(WIFSIGNALED(Wait(g)));
    }
  }

  // docs/REGION.md's invariants, right after the child died (no waiting),
  // then the next job works.
  void CheckAfterDeath(Region* attached, const std::string& where) {
    SCOPED_TRACE(where);
    std::unique_ptr<Region> own;
    Region* p = attached;
    if (p == nullptr) {
      Status s = Region::Attach(region_, db_fd_, &own);  // the first opener: R1
      ASSERT_TRUE(s.ok()) << s.ToString();
      p = own.get();
    }
    std::vector<Participant> ps;
    ASSERT_TRUE(p->Participants(&ps).ok());
    ASSERT_EQ(ps.size(), 1u) << "the dead child's slot is free at once (invariant 4)";
    Job j;
    Status s = p->ReadJob(&j);
    if (!s.ok()) {
      EXPECT_TRUE(s.IsCorruption()) << s.ToString();  // killed mid-write: R3, reported once
      ASSERT_TRUE(p->ReadJob(&j).ok());
    }
    EXPECT_NE(j.state, JobState::kArming) << "no live owner (invariant 2)";
    EXPECT_NE(j.state, JobState::kRunning);
    EXPECT_EQ(p->load_armed(), 0u) << "invariant 1";
    std::unique_ptr<Region> q;
    s = Region::Attach(region_, db_fd_, &q);
    ASSERT_TRUE(s.ok()) << "a second participant is never refused: " << s.ToString();
    Job dead;
    ASSERT_TRUE(p->ClaimJob("/sweep/parent.cowsnap", 4096, &dead).ok());
    ASSERT_TRUE(p->Arm("p").ok());
    EXPECT_EQ(q->load_armed() & ~kFailedBit, p->load_armed() & ~kFailedBit);
    EXPECT_NE(q->load_armed(), 0u);
    ASSERT_TRUE(p->Finish().ok());
    EXPECT_EQ(q->load_armed(), 0u);
  }

  // Kills the child at its k-th sync point for k = 1, 2, ... until it runs
  // to the end; returns the points it was killed at.
  std::set<std::string> Sweep(Start start) {
    std::set<std::string> killed_at;
    std::unique_ptr<Region> parent;
    if (start == Start::kParentAttached) parent = Attach();
    for (int k = 1;; k++) {
      Prepare(start);
      Pipe names;
      const pid_t child = Spawn([&] {
        names.CloseRead();
        int hits = 0;
        const int fd = names.write_fd();
        sync::SetCallback([&hits, k, fd](const char* name) {
          if (++hits != k) return;
          (void)!::write(fd, name, strlen(name));
          ::raise(SIGKILL);
        });
        return ChildProtocol();
      });
      names.CloseWrite();
      const std::string name = names.ReadAll();
      const int status = Wait(child);
      if (WIFEXITED(status)) {
        printf("sweep: the child ran to the end after %d kills at %zu distinct points\n", k - 1, killed_at.size());
        EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's protocol failed at step " << WEXITSTATUS(status);
        EXPECT_EQ(name, "");
        CheckAfterDeath(parent.get(), "after a run to the end");
        break;
      }
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
      killed_at.insert(name);
      CheckAfterDeath(parent.get(), "killed at sync point " + std::to_string(k) + ", " + name);
      if (HasFatalFailure() || k > 200) break;
    }
    return killed_at;
  }

  static void ExpectCovered(const std::set<std::string>& got, const std::set<std::string>& want) {
    for (const std::string& name : want) EXPECT_TRUE(got.count(name)) << "never killed at " << name;
  }

  // Points every run passes once attached.
  const std::set<std::string> kProtocolPoints = {
      "region:attach:init-locked", "region:attach:slot-locked", "region:attach:attached",
      "region:dead:marked",        "region:job:before-checksum", "region:claim:owner-locked",
      "region:claim:claimed",      "region:arm:running",         "region:arm:armed",
      "region:end:disarmed",       "region:end:stored",          "region:detach:slot-cleared"};
};

TEST_F(KillSweepTest, ParentAttached) { ExpectCovered(Sweep(Start::kParentAttached), kProtocolPoints); }

TEST_F(KillSweepTest, ChildMakesTheRegion) {
  auto got = Sweep(Start::kNoRegion);
  ExpectCovered(got, kProtocolPoints);
  ExpectCovered(got, {"region:recover:emptied", "region:header:before-checksum"});
}

TEST_F(KillSweepTest, ChildIsFirstOpenerOverAnOrphanedJob) {
  auto got = Sweep(Start::kOrphanJobNoOneHere);
  ExpectCovered(got, kProtocolPoints);
  ExpectCovered(got, {"region:header:before-checksum"});
}

}  // namespace
}  // namespace cowbackup::coord::test
