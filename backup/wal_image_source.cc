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
  const uint64_t at = WalFrameOffset(frame, ps);
  // The frame header, then the part of the page asked for straight into
  // `buf`: no allocation per frame (a segment of WAL pages is read frame by
  // frame). Between the two reads a restart may write the frame; as for
  // one read, which is not atomic either, the engine only keeps such a
  // page if no writer changed it (snapshot_first holds it busy; a restart
  // preserves it first for overlay_at_end).
  uint8_t head[kWalFrameHeaderSize];
  Status s = wal_->read(at, head, sizeof head);
  if (s.ok()) s = wal_->read(at + kWalFrameHeaderSize + in_page, buf, len);
  // A frame gone or written over. The job's routes preserve every image
  // page before this process truncates or restarts over its frame, and
  // the copier then reads the pre-image, except an overlay_at_end copier,
  // which reads live and overlays pre-images at the end: so Incomplete, as
  // for a page a truncate cut off, which that copier tolerates for a
  // preserved page (finish() fails if it was not). Any other reader that
  // gets here met a write that bypassed the shim; the message says so.
  auto bypassed = [&](const std::string& what) {
    return Status::Incomplete(
        "a write bypassed the cowbackup shim during the backup (WAL frame " + std::to_string(frame) +
            what +
            ": another process, or a connection not opened through the cowbackup VFS, restarted or "
            "truncated the WAL)",
        wal_->name());
  };
  if (s.IsIncomplete()) return bypassed(" of the WAL state being copied is past the end of the -wal file");
  if (!s.ok()) return s;
  WalFrameHeader h;
  DecodeWalFrameHeader(head, &h);
  if (h.pgno != pgno || h.salt1 != scan_.header.salt1 || h.salt2 != scan_.header.salt2) {
    return bypassed(" no longer holds page " + std::to_string(pgno) + " of the WAL state being copied");
  }
  return Status::OK();
}

// ---- Routes ----

void WalImageSource::PagesChangedBy(File file, uint64_t offset, uint64_t len,
                                    const std::function<void(PageRange)>& each) const {
  if (len == 0) return;
  const uint64_t ps = page_size();
  const uint64_t last_byte = len > UINT64_MAX - offset ? UINT64_MAX : offset + len - 1;
  if (file == File::kMain) {
    // The file's pages are the image's, except those T0's WAL replaces.
    const uint64_t end = std::min(last_byte / ps + 1, page_count_);
    auto it = std::lower_bound(scan_.pages.begin(), scan_.pages.end(), offset / ps + 1,
                               [](const WalPageFrame& pf, uint64_t pgno) { return pf.pgno < pgno; });
    for (uint64_t p = offset / ps; p < end; ++it) {  // p is 0-based: SQLite's page p + 1
      const uint64_t replaced = it == scan_.pages.end() ? end : std::min<uint64_t>(it->pgno - 1, end);
      if (replaced > p) each({p, replaced});
      p = replaced + 1;
      if (it == scan_.pages.end()) break;
    }
    return;
  }
  // The -wal file: the frames the bytes overlap (none in its header), and
  // of those the ones the image reads.
  if (last_byte < kWalHeaderSize) return;
  const uint64_t frame_bytes = kWalFrameHeaderSize + ps;
  const uint64_t first = offset < kWalHeaderSize ? 1 : (offset - kWalHeaderSize) / frame_bytes + 1;
  const uint64_t last = std::min<uint64_t>((last_byte - kWalHeaderSize) / frame_bytes + 1,
                                           newest_of_frame_.size());
  for (uint64_t f = first; f <= last; f++) {
    const uint32_t pgno = newest_of_frame_[f - 1];
    if (pgno != 0 && pgno <= page_count_) each({pgno - 1, pgno});
  }
}

void WalImageSource::Route::before_write(CopyJob& job, uint64_t offset, uint64_t len) noexcept {
  const uint64_t ps = image_.page_size();
  image_.PagesChangedBy(file_, offset, len,
                        [&](PageRange r) { job.before_write(r.begin * ps, r.size() * ps); });
}

void WalImageSource::Route::before_truncate(CopyJob& job, uint64_t new_size) noexcept {
  before_write(job, new_size, UINT64_MAX - new_size);
}

}  // namespace cowbackup::sqlite
