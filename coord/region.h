// The coordination region: the small file beside a database that every
// process writing it through cowbackup maps, so that one backup job can be
// shared by all of them (docs/REGION.md is the specification: layout, who
// touches what under which lock, invariants, recovery rules).
//
// USING
//   std::unique_ptr<coord::Region> region;
//   Status s = coord::Region::Attach(coord::RegionPathForSqlite(db_path), db_fd, &region);
//   // Not OK: no region. The caller keeps a private zero word and carries
//   // on; its writes are a non-participant's (docs/REGION.md, "The write
//   // path"). The Status names the file and what is wrong with it.
//
//   if (region->load_armed() != 0) { ... slow path: region->ReadJob(&job) ... }
//
//   // The process that runs a backup:
//   coord::Job dead;
//   s = region->ClaimJob(volume_path, page_state_bytes, &dead);  // dead.state == kDead:
//   ...                                                          // remove its volume
//   s = region->Arm(t0_facts);   // at the T0 instant: writers everywhere see armed
//   ...
//   s = region->Finish();
//
// Liveness is by OFD byte locks on the region file, which the kernel drops
// when a process dies: a participant is alive while it holds its slot's
// byte, a job's owner while it holds the owner byte. Pids are recorded for
// `status` only.
//
// THREAD SAFETY: every method may be called from any thread; the calls that
// touch shared state take this Region's mutex and the region's meta lock
// (held for microseconds; waited for at most layout::kMetaLockWaitMs).
// load_armed() takes nothing: one acquire load.
//
// FORK: a child shares the parent's open file description, and so its
// locks. It must call ForgetAfterFork() on every inherited Region (before
// anything else touches it) and Attach anew to take part.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "coord/region_format.h"
#include "cowbackup/status.h"
#include "engine/mutex.h"

namespace cowbackup::coord {

// The region's name for a database (docs/REGION.md, "Where it lives").
std::string RegionPathForSqlite(const std::string& db_path);
// `env_path` as given to mdb_env_open; `no_subdir` if opened MDB_NOSUBDIR.
std::string RegionPathForLmdb(const std::string& env_path, bool no_subdir);

// An attached process, as `status` shows it.
struct Participant {
  uint32_t slot = 0;
  int64_t pid = 0;
  int64_t pid_start_unix_s = 0;
  uint64_t attached_unix_us = 0;
  bool self = false;           // this Region
  bool writes_unseen = false;  // attached with AttachOptions::writes_unseen
};

// How Attach treats what it finds. The defaults are a database opener's;
// `status` attaches with both false, so that looking never changes what
// it looks at beyond the recovery rules every participant applies.
struct AttachOptions {
  // Make the region if there is none. False: NotFound, nothing created.
  bool create = true;
  // As the first opener, rebuild a region that is not valid for this
  // database (R1). False: refuse it by name, as when others are attached,
  // and leave the file as it is.
  bool rebuild = true;
  // This process has the database open in a way whose writes cannot be
  // seen (LMDB's MDB_WRITEMAP writes through the map). It takes a slot so
  // that `status` lists it and a backup refuses to start while it is
  // there, instead of failing later at one of its commits; it never takes
  // part (its slot's state is 2, docs/REGION.md "Slot table").
  bool writes_unseen = false;
};

// A job's progress, from the header of its per-page state area
// (layout::kOffPs*): counts any participant may be advancing.
struct JobProgress {
  uint64_t pages = 0;      // T0 pages
  uint64_t preserved = 0;  // pre-images preserved so far
  uint64_t done = 0;       // pages handed to the destination
};

class Region {
 public:
  // Opens or creates the region at `path` for the database open at
  // `db_fd` (whose owner, mode and inode it must match), takes part in the
  // dead-man switch (recovering the region if this is its first opener),
  // maps its fixed part and takes a slot. With `options` (AttachOptions),
  // only an existing, valid region is attached to.
  static Status Attach(const std::string& path, int db_fd, std::unique_ptr<Region>* out);
  // The same for the database whose fstat is `db` (a front end that must
  // not open and close a descriptor of the database: closing one drops
  // every POSIX lock the process holds on it, SQLite's included).
  static Status Attach(const std::string& path, int db_fd, const AttachOptions& options,
                       std::unique_ptr<Region>* out);
  static Status Attach(const std::string& path, const struct stat& db, const AttachOptions& options,
                       std::unique_ptr<Region>* out);
  // Detaches: a job this Region owns and has not finished is left dead,
  // the slot is freed, the mapping and descriptor closed.
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  const std::string& path() const { return path_; }
  uint32_t slot() const { return slot_; }
  uint64_t generation() const { return generation_; }
  // What this attach did as the region's first opener: "" for a region it
  // made or found clean, else e.g. "rebuilt: ...: format version 2 (this
  // build reads 1)" or "job 7 (pid 1234) marked dead".
  const std::string& recovery() const { return recovery_; }

  // The write path's word (layout::kOffArmed): 0 when no job is armed.
  // The commit history every attached process records into (a private one
  // until mapped, and after ForgetAfterFork). Lives as long as this Region.
  CommitHistory* commit_history() { return &commits_; }
  uint64_t load_armed() const noexcept {
    return std::atomic_ref<uint64_t>(*armed_).load(std::memory_order_acquire);
  }
  // Sets the failed bit of the job whose word this caller saw (`seen`,
  // non-zero), with a compare-and-swap, so no later job is failed by it.
  // False if the word changed meanwhile (that job is over).
  bool FailArmedJob(uint64_t seen) noexcept;

  // The writer gate (layout::kOffWriterGate): 0, or the busy word of the
  // party waiting for the database's writer lock; touched only through
  // std::atomic_ref, and waited on with a futex (engine/futex.h). A
  // private zero while not mapped. The front end's protocol
  // (docs/REGION.md, "Writer gate").
  uint32_t* writer_gate() const noexcept { return gate_; }
  // The gate's protocol, for every front end. A backup about to wait for
  // the writer lock: CloseWriterGate() (true if this call set the word; if
  // another party holds it, the backup waits without it), then, once it
  // has had the lock and released it, OpenWriterGate() (clears the word if
  // it is this slot's, wakes the waiters). A writer, before it asks for the
  // writer lock: BeforeWriterLock(), one acquire load while the gate is
  // open or this process's own.
  bool CloseWriterGate() noexcept;
  void OpenWriterGate() noexcept;
  void BeforeWriterLock() noexcept {
    const uint32_t w = std::atomic_ref<uint32_t>(*gate_).load(std::memory_order_acquire);
    if (w != 0 && w != BusyWord(false)) [[unlikely]] WaitAtWriterGate(w);
  }
  static constexpr int kWriterGateMaxWaitMs = 250;
  // SQLite's checkpoint holder (layout::kOffSqliteCkptHolder): 0, or the
  // busy word of the attached process whose connection holds the WAL
  // checkpoint lock. Through std::atomic_ref; a private zero while not
  // mapped (docs/REGION.md, "SQLite checkpoint holder").
  uint32_t* sqlite_ckpt_holder() const noexcept { return ckpt_holder_; }
  // True if the party of busy word `w` (a writer's: BusyWord(false)) has
  // detached or died: its slot lock is free, or held by a later process.
  // Takes no lock, like HolderGone.
  bool PartyGone(uint32_t w);

  // The processes attached now (lock held), this one included.
  Status Participants(std::vector<Participant>* out);
  // The job section, after applying the recovery rules R3, R4 and R6: a
  // job whose owner died is returned (and left) dead, a damaged section
  // is reset if no one owns it. Not OK: the section could not be read or
  // was damaged (Corruption, named; reported once if it was reset).
  Status ReadJob(Job* out);
  // Claims the one job of this database for this Region, in state arming,
  // with a per-page state area of `page_state_size` bytes reserved beyond
  // the fixed part. Busy if a job runs with a live owner. A dead job
  // found in the section is replaced and returned in *replaced_dead
  // (state kDead; else kNone): the caller removes its volume.
  // Before it claims, it waits (at most kDrainWaitMs) until no thread of a
  // live participant is still inside the previous job (Enter..Leave), so
  // nobody touches the page-state area it is about to reuse.
  // *claimed, if given, receives the job as written.
  Status ClaimJob(const std::string& volume_path, uint64_t page_state_size, Job* replaced_dead,
                  Job* claimed = nullptr);
  // At T0: records the T0 facts, state running, and arms the word.
  Status Arm(const std::string& t0);
  // Disarms the word, state done, gives up ownership. Ends ownership even
  // when it returns an error (the job is then found dead, R4).
  Status Finish();
  bool owns_job();
  // Reads the header of `job`'s per-page state area from the file (pread:
  // the area is not mapped by a process that only looks), checked against
  // the file's size and the area's own bounds, the bad field named.
  // NotFound: the job has no area (page_state_size 0), or the file no
  // longer holds it (a first opener cut the file back after the job
  // ended). Counters torn by a concurrent update are read again.
  Status ReadProgress(const Job& job, JobProgress* out);

  // ---- Taking part in a running job (docs/REGION.md, "Taking part") ----
  // A writer's bracket around its work for the job whose word it loaded
  // (`seen`, non-zero): counts this slot in, then checks the word is still
  // `seen`. False (and not counted in) if it changed. The count is what
  // ClaimJob waits to drain before the page-state area is reused; a dead
  // process's count is ignored with its slot.
  bool Enter(uint64_t seen) noexcept;
  // A participant joining the job whose word it saw (`seen`, without the
  // failed bit), inside Enter: the job section, if it is still that job
  // and running. False if it ended, or (then it fails the job) if the
  // section could not be read within kJoinWaitMs.
  bool ReadRunningJob(uint64_t seen, Job* out);
  static constexpr int kJoinWaitMs = 1000;
  void Leave() noexcept;
  // After this process's job was disarmed (Finish): waits, at most
  // kDrainWaitMs, until no thread of this process is inside. True if none is.
  bool AwaitOwnLeave();
  // This slot's busy word for the page-state area (engine/shared_pages.h):
  // kBusy, bit 30 for the copier, bits 8..29 the slot's tag (from its
  // attach time, so a later process in the same slot differs), bits 0..7
  // the slot.
  uint32_t BusyWord(bool copier) const;
  // True if the party of busy word `w` is gone: its slot is free or taken
  // by a later process, or (a writer) no thread of it is inside a job; for
  // the copier, the job's owner lock is free. Takes no lock: byte locks
  // are tested, never waited for, so a stuck lock_meta holds no writer.
  bool HolderGone(uint32_t w, uint32_t owner_slot);
  // True while the job's owner lock is held (by this Region or another).
  bool OwnerAlive();

  // A job's page-state area, mapped shared.
  class Area {
   public:
    Area(uint8_t* data, uint64_t size) : data_(data), size_(size) {}
    ~Area();
    Area(const Area&) = delete;
    Area& operator=(const Area&) = delete;
    uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }

   private:
    uint8_t* const data_;
    const uint64_t size_;
  };
  // Maps `job`'s area; Corruption (named) if the file is shorter than the
  // section says (invariant 6) or the job has none.
  Status MapArea(const Job& job, std::unique_ptr<Area>* out);

  // In a forked child only: drops the inherited mapping and descriptor
  // without touching anything shared (they are the parent's). Afterwards
  // load_armed() reads a private zero and the destructor does nothing.
  void ForgetAfterFork();

 private:
  class MetaLock;
  explicit Region(std::string path);

  Status OpenFile(const struct stat& db);
  Status TakeInitLock(const struct stat& db);
  Status CheckHeader(const struct stat& db, RegionHeader* out);
  Status RecoverAsFirstOpener(const struct stat& db);
  Status Map();
  Status TakeSlot();

  // One byte lock, not waited for: OK with *got false if held elsewhere.
  Status TryLock(uint64_t byte, short type, bool* got);
  void Unlock(uint64_t byte);
  // Whether a description other than ours holds a lock on `byte`.
  Status HeldElsewhere(uint64_t byte, bool* held);

  Status LoadJobLocked(Job* out) REQUIRES(mu_);
  void StoreJobLocked(const Job& job) REQUIRES(mu_);
  // R3, R4, R6 (docs/REGION.md). Not OK: the section is refused; *damage
  // says what was reset, if anything was.
  Status ResolveJobLocked(Job* out, Status* damage) REQUIRES(mu_);
  void MarkDeadLocked(Job* job) REQUIRES(mu_);
  Status EndJobLocked(JobState final_state, bool meta_locked) REQUIRES(mu_);
  std::atomic_ref<uint32_t> Inside(uint32_t slot) const {
    return std::atomic_ref<uint32_t>(
        *reinterpret_cast<uint32_t*>(map_ + layout::kOffSlots + slot * layout::kSlotSize + layout::kOffSlotInside));
  }
  // ClaimJob's wait for every live slot's Inside count to reach 0.
  Status DrainLocked() REQUIRES(mu_);
  // BeforeWriterLock's wait: until the word is no longer `w`, at most
  // kWriterGateMaxWaitMs, clearing it if its party is gone.
  void WaitAtWriterGate(uint32_t w) noexcept;
  // seq_cst, not release: a disarm is the store half of Enter's Dekker pair
  // with DrainLocked, so it must not pass DrainLocked's loads of the counts.
  void StoreArmed(uint64_t v) { std::atomic_ref<uint64_t>(*armed_).store(v, std::memory_order_seq_cst); }

  const std::string path_;
  AttachOptions options_;
  int fd_ = -1;
  uint8_t* map_ = nullptr;
  uint64_t zero_ = 0;           // the word before mapping and after ForgetAfterFork
  uint64_t* armed_ = &zero_;
  uint32_t zero_gate_ = 0;      // writer_gate() before mapping and after ForgetAfterFork
  CommitHistory commits_;       // bound to the mapping's, its own before and after
  uint32_t* gate_ = &zero_gate_;
  uint32_t zero_ckpt_holder_ = 0;  // sqlite_ckpt_holder() before mapping and after ForgetAfterFork
  uint32_t* ckpt_holder_ = &zero_ckpt_holder_;
  uint32_t slot_ = 0;
  uint32_t tag_ = 0;            // BusyWord's bits 8..29 for slot_
  bool attached_ = false;       // holds slot_
  uint64_t generation_ = 0;
  std::string recovery_;

  Mutex mu_;
  bool owns_job_ GUARDED_BY(mu_) = false;
  Job owned_ GUARDED_BY(mu_);   // the owned job, as this owner last wrote it
  std::unique_ptr<uint8_t[]> scratch_ GUARDED_BY(mu_);  // private copy of the job section
};

}  // namespace cowbackup::coord
