// The coordination region's layout, version 1. docs/REGION.md is the prose
// specification (protocol, invariants, recovery rules); this header is the
// single source of its numbers, and tests/coord/region_spec_test.cc checks
// the two agree.
//
//   0      header (64)                 8192   slot table: 256 x 32
//   128    armed word (atomic u64)     16384  end of the fixed part;
//   192    writer gate (atomic u32)           page-state area beyond
//   256    lock bytes init/meta/owner
//   512    lock bytes, one per slot
//   1024   job section (72)
//   2048   T0 facts (<= 2048)
//   4096   snapshot-volume path (<= 4095)
//
// Integers are little-endian, encoded field by field; the armed word is an
// atomic in host byte order (a little-endian host is asserted). Everything
// here reads untrusted bytes: Decode* bound every field and name the bad one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cowbackup/status.h"
#include "engine/commit_signal.h"
#include "engine/shared_pages.h"

namespace cowbackup::coord::layout {

inline constexpr char kMagic[8] = {'C', 'O', 'W', 'B', 'R', 'E', 'G', '\0'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kHeaderSize = 64;
inline constexpr uint32_t kRegionPageSize = 4096;
inline constexpr uint32_t kSlotCount = 256;
inline constexpr uint32_t kFixedSize = 4 * kRegionPageSize;

// Header. magic, format_version and kLockInit keep their offsets in every
// version (docs/REGION.md, Header).
inline constexpr size_t kOffMagic = 0, kOffVersion = 8, kOffHeaderSize = 12, kOffPageSize = 16,
                        kOffSlotCount = 20, kOffFixedSize = 24, kOffHeaderReserved = 28,
                        kOffGeneration = 32, kOffDbDev = 40, kOffDbIno = 48,
                        kOffHeaderChecksum = 56;
static_assert(kOffHeaderChecksum + 8 == kHeaderSize);

// The armed word: 0, or job_id << kJobIdShift | kArmedBit (| kFailedBit).
inline constexpr size_t kOffArmed = 128;
inline constexpr uint64_t kArmedBit = 1, kFailedBit = 2;
inline constexpr int kJobIdShift = 2;
inline constexpr uint64_t kMaxJobId = (uint64_t(1) << 62) - 1;
static_assert(kOffArmed % 64 == 0 && kOffArmed >= kHeaderSize);

// The writer gate (u32 atomic, alone in its cache line): 0, or the busy
// word (Region::BusyWord(false)) of a party waiting for the database's
// writer lock to take a T0 or an end check; attached writers hold their
// next write transaction for it, bounded (docs/REGION.md, "Writer gate").
inline constexpr size_t kOffWriterGate = 192;
static_assert(kOffWriterGate % 64 == 0 && kOffWriterGate >= kOffArmed + 64);

// SQLite's checkpoint holder (u32 atomic, alone in its cache line): 0, or
// the busy word (Region::BusyWord(false)) of the attached process one of
// whose connections holds SQLite's WAL checkpoint lock; written only by
// that lock's holder (docs/REGION.md, "SQLite checkpoint holder").
inline constexpr size_t kOffSqliteCkptHolder = 1536;

// Lock bytes (OFD locks; the bytes are never read or written).
inline constexpr uint64_t kLockInit = 256, kLockMeta = 257, kLockOwner = 258, kLockSlot0 = 512;
static_assert(kLockInit >= kOffWriterGate + 64 && kLockSlot0 + kSlotCount <= 1024);

// The commit history (engine/commit_signal.h, CommitHistory): every
// attached process's commits per 100 ms, which automatic pacing reads
// (docs/REGION.md, "Commit history"). In the bytes after the slot locks,
// which no lock uses.
inline constexpr size_t kOffCommitHistory = 768;
static_assert(kOffCommitHistory >= kLockSlot0 + kSlotCount &&
              kOffCommitHistory + CommitHistory::kSize <= 1024);

// Job section.
inline constexpr size_t kOffJobState = 1024, kOffOwnerSlot = 1028, kOffJobId = 1032,
                        kOffOwnerPid = 1040, kOffOwnerStart = 1048, kOffClaimed = 1056,
                        kOffPageStateOffset = 1064, kOffPageStateSize = 1072, kOffT0Len = 1080,
                        kOffVolumePathLen = 1084, kOffJobChecksum = 1088;
inline constexpr size_t kOffJob = kOffJobState, kJobFieldsSize = kOffJobChecksum - kOffJob;
inline constexpr size_t kOffT0 = 2048, kMaxT0Len = 2048;
inline constexpr size_t kOffVolumePath = 4096, kMaxVolumePathLen = 4095;
inline constexpr uint64_t kMaxPageStateSize = uint64_t(1) << 40;
static_assert(kOffJobChecksum + 8 <= kOffT0 && kOffT0 + kMaxT0Len <= kOffVolumePath);
static_assert(kOffSqliteCkptHolder % 64 == 0 && kOffSqliteCkptHolder >= kOffJobChecksum + 8 &&
              kOffSqliteCkptHolder + 64 <= kOffT0);

// Slot table: slot i at kOffSlots + i * kSlotSize.
inline constexpr size_t kOffSlots = 8192, kSlotSize = 32;
inline constexpr size_t kOffSlotState = 0, kOffSlotInside = 4, kOffSlotPid = 8,
                        kOffSlotPidStart = 16, kOffSlotAttached = 24;
static_assert(kOffVolumePath + kMaxVolumePathLen < kOffSlots);
static_assert(kOffSlots + kSlotCount * kSlotSize == kFixedSize);

// Waits for a lock byte held by someone else, polled (docs/REGION.md).
inline constexpr int kMetaLockWaitMs = 100, kInitLockWaitMs = 1000;
// How long ClaimJob waits for threads still inside the previous job.
inline constexpr int kDrainWaitMs = 50;
// Busy words of the page-state area (Region::BusyWord).
inline constexpr uint32_t kBusyBit = 0x80000000u, kBusyCopierBit = 0x40000000u, kTagMask = 0x3fffff;
inline constexpr int kTagShift = 8;

}  // namespace cowbackup::coord::layout

namespace cowbackup::coord {

// The region's names (docs/REGION.md, "Where it lives"): "<db>-cowbackup"
// beside a SQLite database or an MDB_NOSUBDIR data file, "cowbackup-region"
// in an LMDB environment's directory. Output checks refuse both.
inline constexpr char kRegionSuffix[] = "-cowbackup";
inline constexpr char kLmdbRegionName[] = "cowbackup-region";

inline uint64_t ArmedValue(uint64_t job_id) {
  return (job_id << layout::kJobIdShift) | layout::kArmedBit;
}
inline uint64_t ArmedJobId(uint64_t armed) { return armed >> layout::kJobIdShift; }

// What the header says besides its constants.
struct RegionHeader {
  uint64_t generation = 0;
  uint64_t db_dev = 0;
  uint64_t db_ino = 0;
};
// Writes the 64 header bytes at `region`, checksum last.
void EncodeHeader(const RegionHeader& h, uint8_t* region);
// Checks magic, version (NotSupported if another), every constant field and
// the checksum of the header at `region`; `path` names the file in errors.
Status DecodeHeader(const uint8_t* region, const std::string& path, RegionHeader* out);

enum class JobState : uint32_t { kNone = 0, kArming = 1, kRunning = 2, kDone = 3, kDead = 4 };
const char* JobStateName(JobState s);

// The job section with its T0 facts and volume path.
struct Job {
  JobState state = JobState::kNone;
  uint32_t owner_slot = 0;
  uint64_t job_id = 0;
  int64_t owner_pid = 0;
  int64_t owner_start_unix_s = 0;
  uint64_t claimed_unix_us = 0;
  uint64_t page_state_offset = 0;
  uint64_t page_state_size = 0;
  std::string t0;           // opaque T0 facts, at most kMaxT0Len bytes
  std::string volume_path;  // absolute, no NUL, at most kMaxVolumePathLen
};
// Writes the section, T0 facts and path into `region`, checksum last (a
// sync point sits before it, so a kill there leaves a damaged section).
// The caller has checked `job` (DecodeJob's rules).
void EncodeJob(const Job& job, uint8_t* region);
// Reads the section from `region` (the caller's private copy of the fixed
// part): checksum first, then each field, naming the bad one.
Status DecodeJob(const uint8_t* region, const std::string& path, Job* out);
// The field rules alone, for a job about to be written.
Status CheckJob(const Job& job, const std::string& path);

struct SlotRecord {
  // 0 free, 1 attached, 2 attached but its writes cannot be seen
  // (AttachOptions::writes_unseen: an LMDB env opened with MDB_WRITEMAP)
  uint32_t state = 0;
  int64_t pid = 0;
  int64_t pid_start_unix_s = 0;
  uint64_t attached_unix_us = 0;
};
void EncodeSlot(const SlotRecord& s, uint32_t slot, uint8_t* region);
SlotRecord DecodeSlot(const uint8_t* region, uint32_t slot);  // informational: not checked

}  // namespace cowbackup::coord

namespace cowbackup::coord::layout {

// The per-page state area, at a job's page_state_offset, is the engine's
// shared page table (engine/shared_pages.h holds its layout): what
// `status` reads of it. Counters are u64 atomics in host order
// (little-endian, as asserted). The area is
// round_up(kPageStateHeaderSize + 4 * pages, 4096) bytes.
inline constexpr size_t kPageStateHeaderSize = SharedPages::kHeaderSize;
inline constexpr size_t kOffPsPages = SharedPages::kOffPages, kOffPsPreserved = SharedPages::kOffPreserved,
                        kOffPsDone = SharedPages::kOffDone;
inline constexpr size_t kPageStateWordSize = 4;

// The front end's tail of the area, after the state words, at
// PageStateTailOffset(pages); as long as the front end's job needs.
inline uint64_t PageStateTailOffset(uint64_t pages) { return (SharedPages::AreaSize(pages) + 7) / 8 * 8; }

// A SQLite WAL-mode job's tail (docs/REGION.md, "SQLite WAL tail"): the
// wal-index marks the shared foreign-writer tracker compares (each mark
// four u32: salt-1, salt-2, mxFrame, nBackfill; the two that change behind
// a sequence word), T0's sizes, and the page number of each T0 frame
// 1..mxFrame. u32/u64 atomics in host order, like the rest of the area.
inline constexpr size_t kOffWalT0Mark = 0, kOffWalHeaderSeq = 16, kOffWalHeaderMark = 20,
                        kOffWalCkptSeq = 36, kOffWalCkptMark = 40, kOffWalDbPages = 56,
                        kOffWalReserved = 60, kOffWalMainPages = 64, kOffWalFramePages = 72;
inline constexpr size_t kWalMarkSize = 16;
inline uint64_t WalTailSize(uint32_t max_frame) { return kOffWalFramePages + 4 * uint64_t(max_frame); }

}  // namespace cowbackup::coord::layout
