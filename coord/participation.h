// Participation: one process's part in a job shared through the region
// (docs/DESIGN.md, "Writers in several processes"). It maps the job's
// page-state area and answers the engine's questions about the other
// parties (engine/shared_pages.h, SharedPages::Peers) from the region's
// byte locks and counts.
//
//   // The owner, at its T0 instant, after Region::ClaimJob:
//   Participation::ForOwner(region, claimed_job, t0_pages, &p);
//   CopyJob config.shared = &p->pages();  ...  region->Arm(t0);
//
//   // Any other process, on its first write that sees the job's word:
//   Participation::Join(region, seen_word, job, page_size, &p);
//   if (region->Enter(seen_word)) { p->pages().WriteThrough(...); region->Leave(); }
//
// Thread safety: any thread; SharedPages is lock-free, the region calls
// take their own locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "coord/region.h"
#include "engine/shared_pages.h"
#include "engine/snapshot_volume.h"

namespace cowbackup::coord {

class Participation final : public SharedPages::Peers {
 public:
  // The owner of `job` (just claimed by `region`): maps its area and
  // initialises it for `pages` pages. The area must hold AreaSize(pages).
  static Status ForOwner(Region* region, const Job& job, uint64_t pages,
                         std::unique_ptr<Participation>* out);
  // The owner's T0 in one call: claims the database's one job in `region`
  // (Busy while another process's runs) with a table for `pages` pages,
  // then ForOwner; the claim is given back if that fails. *dead_volume:
  // the volume of a dead job the claim replaced ("" if none), for the
  // caller to remove once its begin-time lock is released.
  // `tail_bytes`: room for the front end's tail after the state words
  // (tail(); a SQLite WAL-mode job's, docs/REGION.md), for the caller to
  // fill before it arms the job (not zeroed).
  static Status Claim(Region* region, const std::string& volume_path, uint64_t pages,
                      std::unique_ptr<Participation>* out, std::string* dead_volume, uint64_t tail_bytes = 0);
  // Another process: joins the running `job` whose word it saw (`seen`),
  // checking the area against the file and opening the job's snapshot
  // volume (regular, this user's, 0600, for `page_size`).
  static Status Join(Region* region, uint64_t seen, const Job& job, uint32_t page_size,
                     std::unique_ptr<Participation>* out);

  SharedPages& pages() { return pages_; }
  // The front end's tail of the area (layout::PageStateTailOffset): its
  // bytes, as many as the area holds past the state words (a joiner
  // checks what it reads against tail_size()).
  uint8_t* tail() const;
  uint64_t tail_size() const;
  SnapshotVolume* volume() { return volume_.get(); }  // null for the owner (its BackupJob's)
  uint64_t seen() const { return seen_; }
  const Job& job() const { return job_; }

  // SharedPages::Peers
  uint32_t busy_word(bool copier) const override { return region_->BusyWord(copier); }
  bool holder_gone(uint32_t w) override { return region_->HolderGone(w, job_.owner_slot); }
  // The word still says this job, not failed; and (checked at most every
  // kPollMs) its owner is alive. A dead owner's job is marked dead here
  // (the region's R4 and R6), which disarms the word for everyone.
  bool job_current() override;
  // OK while the job is current, else why not (SharedPages::LostStatus).
  Status Lost() { return job_current() ? Status::OK() : pages_.LostStatus(); }
  void fail(const Status& why) noexcept override;

 private:
  Participation(Region* region, const Job& job, std::unique_ptr<Region::Area> area, uint64_t pages,
                bool owner);

  Region* const region_;
  const Job job_;
  const uint64_t seen_;
  const bool owner_;
  std::unique_ptr<Region::Area> area_;
  SharedPages pages_;
  std::unique_ptr<FileSnapshotVolume> volume_;
  std::atomic<int64_t> next_owner_check_us_{0};
};

}  // namespace cowbackup::coord
