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
// engine guarantees the first; protecting T0's frames from a WAL restart
// is the live WAL work (docs/SQLITE.md, "WAL mode"). Each frame read is
// checked to still carry T0's salts and page number, so a restart that
// overwrote one is an error, not a wrong page.
//
// Thread-safety: read() may be called concurrently, as the engine does;
// `main` and `wal` must allow that (Source's contract).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backup/wal_format.h"
#include "engine/source.h"

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

 private:
  WalImageSource(Source* main, uint64_t main_pages, Source* wal, WalScan scan);
  // One page's part [in_page, in_page + len) from the WAL's frame `frame`.
  Status ReadFrame(uint32_t frame, uint32_t pgno, size_t in_page, uint8_t* buf, size_t len);

  Source* const main_;
  const uint64_t main_pages_;
  Source* const wal_;
  const WalScan scan_;
  const uint64_t page_count_;
};

}  // namespace cowbackup::sqlite
