#include "backup/wal_image_source.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/copy_job.h"

namespace cowbackup::sqlite {

Status WalImageSource::Make(Source* main, uint64_t main_pages, Source* wal, WalScan scan,
                            std::unique_ptr<WalImageSource>* out) {
  const uint32_t ps = main->page_size();
  if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0) {
    return Status::InvalidArgument("WAL image: bad page size " + std::to_string(ps), main->name());
  }
  if (scan.max_frame > 0 && scan.page_size() != ps) {
    return Status::InvalidArgument("WAL image: the WAL's page size " + std::to_string(scan.page_size()) +
                                       " is not the database's " + std::to_string(ps),
                                   main->name());
  }
  out->reset(new WalImageSource(main, main_pages, wal, std::move(scan)));
  return Status::OK();
}

WalImageSource::WalImageSource(Source* main, uint64_t main_pages, Source* wal, WalScan scan)
    : main_(main),
      main_pages_(main_pages),
      wal_(wal),
      scan_(std::move(scan)),
      page_count_(scan_.max_frame > 0 ? scan_.db_pages : main_pages),
      newest_of_frame_(scan_.max_frame, 0) {
  for (const WalPageFrame& pf : scan_.pages) {
    if (pf.frame >= 1 && pf.frame <= scan_.max_frame) newest_of_frame_[pf.frame - 1] = pf.pgno;
  }
}

Status WalImageSource::read(uint64_t offset, uint8_t* buf, size_t len) {
  const uint64_t ps = page_size();
  const uint64_t image_bytes = page_count_ * ps;
  if (offset > image_bytes || len > image_bytes - offset) {
    return Status::Incomplete("read past the end of the WAL image (" + std::to_string(page_count_) +
                                  " pages)",
                              name() + ", offset " + std::to_string(offset));
  }
  const std::vector<WalPageFrame>& frames = scan_.pages;
  while (len > 0) {
    const uint64_t p = offset / ps;  // 0-based; SQLite's page p + 1
    const size_t in_page = size_t(offset % ps);
    // The first page at or after p that the WAL replaces.
    auto it = std::lower_bound(frames.begin(), frames.end(), p + 1,
                               [](const WalPageFrame& pf, uint64_t pgno) { return pf.pgno < pgno; });
    const uint64_t next_wal_page = it == frames.end() ? UINT64_MAX : uint64_t(it->pgno) - 1;
    size_t n;
    if (next_wal_page == p) {
      n = std::min<uint64_t>(len, ps - in_page);
      Status s = ReadFrame(it->frame, it->pgno, in_page, buf, n);
      if (!s.ok()) return s;
    } else if (p < main_pages_) {
      // A run of main-file pages: one read.
      const uint64_t run_end = std::min(next_wal_page, main_pages_) * ps;
      n = std::min<uint64_t>(len, run_end - offset);
      Status s = main_->read(offset, buf, n);
      if (!s.ok()) return s;
    } else {
      // Past the main file and never written to the WAL: the checkpoint
      // extends the file with zeros (SQLite's pending-byte page, for one).
      const uint64_t run_end = std::min(next_wal_page, page_count_) * ps;
      n = std::min<uint64_t>(len, run_end - offset);
      memset(buf, 0, n);
    }
    offset += n;
    buf += n;
    len -= n;
  }
  return Status::OK();
}

Status WalImageSource::ReadFrame(uint32_t frame, uint32_t pgno, size_t in_page, uint8_t* buf, size_t len) {
  const uint32_t ps = page_size();
  std::vector<uint8_t> f(kWalFrameHeaderSize + ps);
  Status s = wal_->read(WalFrameOffset(frame, ps), f.data(), f.size());
  if (!s.ok()) return s;
  WalFrameHeader h;
  DecodeWalFrameHeader(f.data(), &h);
  if (h.pgno != pgno || h.salt1 != scan_.header.salt1 || h.salt2 != scan_.header.salt2) {
    // Incomplete, as a read past a truncation: kOverlayAtEnd reads live
    // pages without holding writers off, and a restart may overwrite a
    // frame the -wal route has just preserved; the engine then takes the
    // page from its overlay, and fails the job if it was not preserved.
    return Status::Incomplete("WAL frame " + std::to_string(frame) + " no longer holds page " +
                                  std::to_string(pgno) +
                                  " of the WAL state being copied (the WAL was restarted over it)",
                              wal_->name());
  }
  memcpy(buf, f.data() + kWalFrameHeaderSize + in_page, len);
  return Status::OK();
}

// ---- Routes ----

void WalImageSource::MainRoute::Report(CopyJob& job, uint64_t first, uint64_t end) const noexcept {
  const uint64_t ps = image_.page_size();
  end = std::min(end, image_.page_count_);
  const std::vector<WalPageFrame>& frames = image_.scan_.pages;
  auto it = std::lower_bound(frames.begin(), frames.end(), first + 1,
                             [](const WalPageFrame& pf, uint64_t pgno) { return pf.pgno < pgno; });
  // Runs of pages between the ones the WAL replaces (0-based p is pgno p + 1).
  for (uint64_t p = first; p < end;) {
    const uint64_t replaced = it == frames.end() ? end : std::min<uint64_t>(it->pgno - 1, end);
    if (replaced > p) job.before_write(p * ps, (replaced - p) * ps);
    p = replaced + 1;
    if (it != frames.end()) ++it;
  }
}

void WalImageSource::MainRoute::before_write(CopyJob& job, uint64_t offset, uint64_t len) noexcept {
  if (len == 0) return;
  const uint64_t ps = image_.page_size();
  Report(job, offset / ps, (offset + len + ps - 1) / ps);
}

void WalImageSource::MainRoute::before_truncate(CopyJob& job, uint64_t new_size) noexcept {
  // As CopyJob::before_truncate: the page holding the new end and all after.
  Report(job, new_size / image_.page_size(), UINT64_MAX);
}

void WalImageSource::WalRoute::Report(CopyJob& job, uint64_t first, uint64_t last) const noexcept {
  const uint64_t ps = image_.page_size();
  last = std::min<uint64_t>(last, image_.newest_of_frame_.size());
  for (uint64_t f = std::max<uint64_t>(first, 1); f <= last; f++) {
    const uint32_t pgno = image_.newest_of_frame_[f - 1];
    if (pgno != 0) job.before_write((pgno - 1) * ps, ps);
  }
}

void WalImageSource::WalRoute::before_write(CopyJob& job, uint64_t offset, uint64_t len) noexcept {
  const uint64_t frame_bytes = kWalFrameHeaderSize + image_.page_size();
  const uint64_t end = offset + len;  // exclusive
  if (len == 0 || end <= kWalHeaderSize) return;  // the WAL header: no page
  const uint64_t first = offset < kWalHeaderSize ? 1 : (offset - kWalHeaderSize) / frame_bytes + 1;
  Report(job, first, (end - 1 - kWalHeaderSize) / frame_bytes + 1);
}

void WalImageSource::WalRoute::before_truncate(CopyJob& job, uint64_t new_size) noexcept {
  const uint64_t frame_bytes = kWalFrameHeaderSize + image_.page_size();
  // Every frame that does not end at or before the new size.
  const uint64_t first = new_size <= kWalHeaderSize ? 1 : (new_size - kWalHeaderSize) / frame_bytes + 1;
  Report(job, first, UINT64_MAX);
}

}  // namespace cowbackup::sqlite
