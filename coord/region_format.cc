#include "coord/region_format.h"

#include <bit>
#include <cstring>

#include "engine/checksum.h"
#include "engine/encoding.h"
#include "engine/sync_point.h"

namespace cowbackup::coord {

using namespace layout;

static_assert(std::endian::native == std::endian::little,
              "the armed word is a host-order atomic; the layout is little-endian");

namespace {
const char kWhat[] = "coordination region: ";

Status Bad(const std::string& what, const std::string& path) {
  return Status::Corruption(kWhat + what, path);
}

// "name N (version 1 has M)" when a constant field differs.
std::string Expected(const char* name, uint64_t got, uint64_t want) {
  return std::string(name) + " " + std::to_string(got) + " (version 1 has " + std::to_string(want) + ")";
}
}  // namespace

void EncodeHeader(const RegionHeader& h, uint8_t* region) {
  uint8_t p[kHeaderSize] = {};
  memcpy(p + kOffMagic, kMagic, sizeof kMagic);
  EncodeFixed32(p + kOffVersion, kFormatVersion);
  EncodeFixed32(p + kOffHeaderSize, kHeaderSize);
  EncodeFixed32(p + kOffPageSize, kRegionPageSize);
  EncodeFixed32(p + kOffSlotCount, kSlotCount);
  EncodeFixed32(p + kOffFixedSize, kFixedSize);
  EncodeFixed64(p + kOffGeneration, h.generation);
  EncodeFixed64(p + kOffDbDev, h.db_dev);
  EncodeFixed64(p + kOffDbIno, h.db_ino);
  memcpy(region, p, kOffHeaderChecksum);
  COWBACKUP_SYNC_POINT("region:header:before-checksum");
  EncodeFixed64(region + kOffHeaderChecksum, Checksum::Of(p, kOffHeaderChecksum));
}

Status DecodeHeader(const uint8_t* p, const std::string& path, RegionHeader* out) {
  if (memcmp(p + kOffMagic, kMagic, sizeof kMagic) != 0) return Bad("bad magic (not a coordination region)", path);
  const uint32_t version = DecodeFixed32(p + kOffVersion);
  if (version != kFormatVersion) {
    return Status::NotSupported(kWhat + std::string("format version ") + std::to_string(version) +
                                    " (this build reads " + std::to_string(kFormatVersion) + ")",
                                path);
  }
  if (DecodeFixed64(p + kOffHeaderChecksum) != Checksum::Of(p, kOffHeaderChecksum)) {
    return Bad("bad header checksum", path);
  }
  const struct {
    const char* name;
    size_t offset;
    uint32_t want;
  } kConstants[] = {{"header_size", kOffHeaderSize, kHeaderSize},
                    {"region_page_size", kOffPageSize, kRegionPageSize},
                    {"slot_count", kOffSlotCount, kSlotCount},
                    {"fixed_size", kOffFixedSize, kFixedSize},
                    {"reserved", kOffHeaderReserved, 0}};
  for (const auto& c : kConstants) {
    const uint32_t got = DecodeFixed32(p + c.offset);
    if (got != c.want) return Bad(Expected(c.name, got, c.want), path);
  }
  out->generation = DecodeFixed64(p + kOffGeneration);
  out->db_dev = DecodeFixed64(p + kOffDbDev);
  out->db_ino = DecodeFixed64(p + kOffDbIno);
  return Status::OK();
}

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kNone: return "none";
    case JobState::kArming: return "arming";
    case JobState::kRunning: return "running";
    case JobState::kDone: return "done";
    case JobState::kDead: return "dead";
  }
  return "?";
}

namespace {
// The field rules of docs/REGION.md, "Job section"; "" if `job` keeps them.
std::string JobProblem(const Job& job) {
  if (uint32_t(job.state) > uint32_t(JobState::kDead)) {
    return "job_state " + std::to_string(uint32_t(job.state)) + " out of range";
  }
  if (job.t0.size() > kMaxT0Len) return "t0_len " + std::to_string(job.t0.size()) + " over " + std::to_string(kMaxT0Len);
  if (job.volume_path.size() > kMaxVolumePathLen) {
    return "volume_path_len " + std::to_string(job.volume_path.size()) + " over " + std::to_string(kMaxVolumePathLen);
  }
  if (job.state == JobState::kNone) {
    const bool zero = job.owner_slot == 0 && job.job_id == 0 && job.owner_pid == 0 &&
                      job.owner_start_unix_s == 0 && job.claimed_unix_us == 0 &&
                      job.page_state_offset == 0 && job.page_state_size == 0 && job.t0.empty() &&
                      job.volume_path.empty();
    return zero ? "" : "a field is set in state none";
  }
  if (job.job_id == 0 || job.job_id > kMaxJobId) return "job_id " + std::to_string(job.job_id) + " out of range";
  if (job.owner_slot >= kSlotCount) return "owner_slot " + std::to_string(job.owner_slot) + " out of range";
  if (job.volume_path.empty() || job.volume_path[0] != '/' ||
      job.volume_path.find('\0') != std::string::npos) {
    return "volume path is not an absolute path";
  }
  const uint64_t off = job.page_state_offset, size = job.page_state_size;
  const bool none = off == 0 && size == 0;
  if (!none && (off < kFixedSize || off % kRegionPageSize != 0 || off > kMaxPageStateSize ||
                size > kMaxPageStateSize)) {
    return "page_state_offset " + std::to_string(off) + " / page_state_size " + std::to_string(size) +
           " out of range";
  }
  return "";
}

// The section's fixed fields, checksummed first, then T0 and the path.
uint64_t JobChecksum(const uint8_t* fields, const std::string& t0, const std::string& path) {
  Checksum c;
  c.update(fields, kJobFieldsSize);
  c.update(t0.data(), t0.size());
  c.update(path.data(), path.size());
  return c.digest();
}
}  // namespace

Status CheckJob(const Job& job, const std::string& path) {
  const std::string problem = JobProblem(job);
  return problem.empty() ? Status::OK() : Status::InvalidArgument(kWhat + problem, path);
}

void EncodeJob(const Job& job, uint8_t* region) {
  uint8_t f[kJobFieldsSize] = {};
  auto at = [&f](size_t region_offset) { return f + (region_offset - kOffJob); };
  EncodeFixed32(at(kOffJobState), uint32_t(job.state));
  EncodeFixed32(at(kOffOwnerSlot), job.owner_slot);
  EncodeFixed64(at(kOffJobId), job.job_id);
  EncodeFixed64(at(kOffOwnerPid), uint64_t(job.owner_pid));
  EncodeFixed64(at(kOffOwnerStart), uint64_t(job.owner_start_unix_s));
  EncodeFixed64(at(kOffClaimed), job.claimed_unix_us);
  EncodeFixed64(at(kOffPageStateOffset), job.page_state_offset);
  EncodeFixed64(at(kOffPageStateSize), job.page_state_size);
  EncodeFixed32(at(kOffT0Len), uint32_t(job.t0.size()));
  EncodeFixed32(at(kOffVolumePathLen), uint32_t(job.volume_path.size()));
  memcpy(region + kOffJob, f, sizeof f);
  memcpy(region + kOffT0, job.t0.data(), job.t0.size());
  memcpy(region + kOffVolumePath, job.volume_path.data(), job.volume_path.size());
  COWBACKUP_SYNC_POINT("region:job:before-checksum");
  EncodeFixed64(region + kOffJobChecksum, JobChecksum(f, job.t0, job.volume_path));
}

Status DecodeJob(const uint8_t* region, const std::string& path, Job* out) {
  const uint8_t* p = region;
  const uint32_t t0_len = DecodeFixed32(p + kOffT0Len);
  const uint32_t path_len = DecodeFixed32(p + kOffVolumePathLen);
  // Lengths bound what the checksum reads: check them before it.
  if (t0_len > kMaxT0Len) return Bad("t0_len " + std::to_string(t0_len) + " over " + std::to_string(kMaxT0Len), path);
  if (path_len > kMaxVolumePathLen) {
    return Bad("volume_path_len " + std::to_string(path_len) + " over " + std::to_string(kMaxVolumePathLen), path);
  }
  Job job;
  job.t0.assign(reinterpret_cast<const char*>(p + kOffT0), t0_len);
  job.volume_path.assign(reinterpret_cast<const char*>(p + kOffVolumePath), path_len);
  if (DecodeFixed64(p + kOffJobChecksum) != JobChecksum(p + kOffJob, job.t0, job.volume_path)) {
    return Bad("bad job section checksum", path);
  }
  job.state = JobState(DecodeFixed32(p + kOffJobState));
  job.owner_slot = DecodeFixed32(p + kOffOwnerSlot);
  job.job_id = DecodeFixed64(p + kOffJobId);
  job.owner_pid = int64_t(DecodeFixed64(p + kOffOwnerPid));
  job.owner_start_unix_s = int64_t(DecodeFixed64(p + kOffOwnerStart));
  job.claimed_unix_us = DecodeFixed64(p + kOffClaimed);
  job.page_state_offset = DecodeFixed64(p + kOffPageStateOffset);
  job.page_state_size = DecodeFixed64(p + kOffPageStateSize);
  const std::string problem = JobProblem(job);
  if (!problem.empty()) return Bad(problem, path);
  *out = std::move(job);
  return Status::OK();
}

void EncodeSlot(const SlotRecord& s, uint32_t slot, uint8_t* region) {
  uint8_t* p = region + kOffSlots + size_t(slot) * kSlotSize;
  EncodeFixed32(p + kOffSlotState, s.state);
  EncodeFixed32(p + kOffSlotInside, 0);  // no thread of a new or departed slot is inside
  EncodeFixed64(p + kOffSlotPid, uint64_t(s.pid));
  EncodeFixed64(p + kOffSlotPidStart, uint64_t(s.pid_start_unix_s));
  EncodeFixed64(p + kOffSlotAttached, s.attached_unix_us);
}

SlotRecord DecodeSlot(const uint8_t* region, uint32_t slot) {
  const uint8_t* p = region + kOffSlots + size_t(slot) * kSlotSize;
  SlotRecord s;
  s.state = DecodeFixed32(p + kOffSlotState);
  s.pid = int64_t(DecodeFixed64(p + kOffSlotPid));
  s.pid_start_unix_s = int64_t(DecodeFixed64(p + kOffSlotPidStart));
  s.attached_unix_us = DecodeFixed64(p + kOffSlotAttached);
  return s;
}

}  // namespace cowbackup::coord
