// WalImageSource: a WAL-mode database as a full checkpoint would leave it,
// read without running one. This is what a WAL backup copies.
//
//   page p (0-based; SQLite's page p+1), for p < page_count():
//     the WAL has a committed frame for it  ->  the newest such frame's page
//                                               (read from the -wal file)
//     else p < main_pages                   ->  the main file's page p
//     else                                  ->  zeros
//
// page_count() is the last commit frame's database size, or main_pages if
// the WAL holds no commit. That is SQLite's checkpoint exactly: it copies
// the newest frame <= mxFrame of every page up to that size into the main
// file and then truncates (or extends, with zeros) the file to it.
//
// The WAL state is fixed when the source is made (a WalScan); the two
// files are read later, so they must still hold that state's bytes when
// read: the main file's pages below main_pages that the WAL does not
// replace, and the committed frames. In a live backup the copy-on-write
// engine guarantees both: the job's hooks on the two files are armed with
// main_route() and wal_route(), which report a write to either file as a
// write to the image pages it could change, so those pages are preserved
// before it lands (docs/SQLITE.md, "WAL mode"):
//
//   main file page p     image page p, unless T0's WAL replaces it (then
//                        the image does not read that page of the file)
//   -wal bytes [o, o+n)  each image page whose newest T0 frame they
//                        overlap (a restart writing over T0's frames); a
//                        truncate, each such frame it cuts
//
// Each frame read is still checked to carry T0's salts and page number,
// so a restart that overwrote one unseen is an error, not a wrong page:
// Incomplete, as a read past a truncated file's end (also the error when
// the frame is past the end of the -wal file), which an overlay_at_end
// copier's live read expects (the page's pre-image was preserved before
// the restart wrote over it, or the job fails); for any other reader it
// means a write bypassed the shim, and its message says so.
//
// Thread-safety: read() may be called concurrently, as the engine does;
// `main` and `wal` must allow that (Source's contract).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backup/wal_format.h"
#include "engine/page_range.h"
#include "engine/source.h"
#include "engine/write_hook.h"

namespace cowbackup::sqlite {

class WalImageSource final : public Source {
 public:
  // `main` reads the database file and `main_pages` is its size in pages
  // in the WAL state `scan` describes; `wal` reads the -wal file that was
  // scanned. Neither is owned; both outlive the source. InvalidArgument if
  // the WAL's page size is not main's while the WAL holds a commit.
  static Status Make(Source* main, uint64_t main_pages, Source* wal, WalScan scan,
                     std::unique_ptr<WalImageSource>* out);

  WalImageSource(const WalImageSource&) = delete;
  WalImageSource& operator=(const WalImageSource&) = delete;

  // Exactly `len` bytes of the image at `offset`, which may straddle pages;
  // a read past page_count() pages is an error (Incomplete), as for a file.
  Status read(uint64_t offset, uint8_t* buf, size_t len) override;
  uint32_t page_size() const override { return main_->page_size(); }
  const std::string& name() const override { return main_->name(); }

  // The image's size in pages.
  uint64_t page_count() const { return page_count_; }
  const WalScan& scan() const { return scan_; }

  // The two files a WAL database's writers change.
  enum class File : uint8_t { kMain, kWal };
  // Calls `each` with the runs of image pages, in ascending order, that a
  // write of [offset, offset + len) to `file` could change (a truncate to
  // `offset`: len UINT64_MAX - offset). See the file comment.
  void PagesChangedBy(File file, uint64_t offset, uint64_t len,
                      const std::function<void(PageRange)>& each) const;

  // The routes for the job's hooks on the main file and on the -wal file.
  WriteRouter* main_route() { return &main_route_; }
  WriteRouter* wal_route() { return &wal_route_; }

 private:
  class Route final : public WriteRouter {
   public:
    Route(const WalImageSource& image, File file) : image_(image), file_(file) {}
    void before_write(CopyJob& job, uint64_t offset, uint64_t len) noexcept override;
    void before_truncate(CopyJob& job, uint64_t new_size) noexcept override;

   private:
    const WalImageSource& image_;
    const File file_;
  };

  WalImageSource(Source* main, uint64_t main_pages, Source* wal, WalScan scan);
  // One page's part [in_page, in_page + len) from the WAL's frame `frame`.
  Status ReadFrame(uint32_t frame, uint32_t pgno, size_t in_page, uint8_t* buf, size_t len);

  Source* const main_;
  const uint64_t main_pages_;
  Source* const wal_;
  const WalScan scan_;
  const uint64_t page_count_;
  // For each frame 1..max_frame (index frame - 1): its page number if it
  // is that page's newest committed frame (the one the image reads), else 0.
  std::vector<uint32_t> newest_of_frame_;
  Route main_route_{*this, File::kMain};
  Route wal_route_{*this, File::kWal};
};

}  // namespace cowbackup::sqlite
