#include "coord/participation.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace cowbackup::coord {

Participation::Participation(Region* region, const Job& job, std::unique_ptr<Region::Area> area,
                             uint64_t pages, bool owner)
    : region_(region),
      job_(job),
      seen_(ArmedValue(job.job_id)),
      owner_(owner),
      area_(std::move(area)),
      pages_(area_->data(), pages, this) {}

Status Participation::ForOwner(Region* region, const Job& job, uint64_t pages,
                               std::unique_ptr<Participation>* out) {
  std::unique_ptr<Region::Area> area;
  Status s = region->MapArea(job, &area);
  if (!s.ok()) return s;
  if (area->size() < SharedPages::AreaSize(pages)) {
    return Status::InvalidArgument("page-state area of " + std::to_string(area->size()) +
                                       " bytes for " + std::to_string(pages) + " pages",
                                   region->path());
  }
  SharedPages::Init(area->data(), pages);
  out->reset(new Participation(region, job, std::move(area), pages, /*owner=*/true));
  return Status::OK();
}

Status Participation::Claim(Region* region, const std::string& volume_path, uint64_t pages,
                            std::unique_ptr<Participation>* out, std::string* dead_volume,
                            uint64_t tail_bytes) {
  const uint64_t area = (layout::PageStateTailOffset(pages) + tail_bytes + 4095) / 4096 * 4096;
  Job dead, claimed;
  Status s = region->ClaimJob(volume_path, area, &dead, &claimed);
  if (!s.ok()) return s;
  *dead_volume = dead.volume_path;
  s = ForOwner(region, claimed, pages, out);
  if (!s.ok()) (void)region->Finish();
  return s;
}

Status Participation::Join(Region* region, uint64_t seen, const Job& job, uint32_t page_size,
                           std::unique_ptr<Participation>* out) {
  if ((seen & ~layout::kFailedBit) != ArmedValue(job.job_id) || job.state != JobState::kRunning) {
    return Status::Busy("the job changed while joining it", region->path());
  }
  std::unique_ptr<Region::Area> area;
  Status s = region->MapArea(job, &area);
  if (!s.ok()) return s;
  // The page count is the owner's, in shared memory: checked against the
  // area before anything is indexed by it.
  uint64_t pages = 0;
  memcpy(&pages, area->data() + SharedPages::kOffPages, sizeof pages);
  if (area->size() < SharedPages::kHeaderSize || pages > (area->size() - SharedPages::kHeaderSize) / 4) {
    return Status::Corruption("the page-state area of job " + std::to_string(job.job_id) + " says " +
                                  std::to_string(pages) + " pages, more than its " +
                                  std::to_string(area->size()) + " bytes hold",
                              region->path());
  }
  std::unique_ptr<FileSnapshotVolume> volume;
  s = FileSnapshotVolume::OpenShared(job.volume_path, page_size, &volume);
  if (!s.ok()) return s;
  out->reset(new Participation(region, job, std::move(area), pages, /*owner=*/false));
  (*out)->volume_ = std::move(volume);
  return Status::OK();
}

uint8_t* Participation::tail() const {
  return area_->data() + std::min(layout::PageStateTailOffset(pages_.pages()), area_->size());
}

uint64_t Participation::tail_size() const {
  const uint64_t at = layout::PageStateTailOffset(pages_.pages());
  return at < area_->size() ? area_->size() - at : 0;
}

bool Participation::job_current() {
  if (region_->load_armed() != seen_) return false;
  if (owner_) return true;
  // An interval: the steady clock (engine/clock.h), or a step of the wall
  // clock back would stop the owner checks for as long.
  const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  if (now < next_owner_check_us_.load(std::memory_order_relaxed)) return true;
  next_owner_check_us_.store(now + SharedPages::kPollMs * 1000, std::memory_order_relaxed);
  if (region_->OwnerAlive()) return true;
  Job j;
  (void)region_->ReadJob(&j);  // R4 marks it dead, R6 disarms the word
  return false;
}

void Participation::fail(const Status& why) noexcept {
  pages_.RecordFailure(why, ::getpid());  // the reason first: whoever sees the bit reads it
  region_->FailArmedJob(seen_);
  pages_.Wake();  // waiters woken before the bit was set look again now
}

}  // namespace cowbackup::coord
