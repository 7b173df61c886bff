// Synthetic SQLite -wal files and -shm headers for tests, and re-sealing of
// real ones (log_test.cc's FixChecksum in spirit: change a field, re-seal,
// and the checks behind the checksum are reached).
//
//   WalBuilder w(4096);                   // header: little-endian checksums
//   w.Frame(1, 'a');                      // page 1, not a commit
//   w.Frame(2, 'b', /*db_pages=*/2);      // page 2, commit: 2 pages
//   ScanWal(w.bytes.data(), w.bytes.size(), &scan);
//   ResealWal(&real_wal, /*big_endian=*/true, scan.valid_frames);
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backup/wal_format.h"

namespace cowbackup::test {

using WalBytes = std::vector<uint8_t>;

class WalBuilder {
 public:
  explicit WalBuilder(uint32_t page_size, bool big_endian = false, uint32_t salt1 = 0x11223344,
                      uint32_t salt2 = 0x55667788, uint32_t checkpoint_seq = 0)
      : page_size_(page_size) {
    header_.magic = big_endian ? sqlite::kWalMagicBigEndian : sqlite::kWalMagicLittleEndian;
    header_.format_version = sqlite::kWalFormatVersion;
    header_.page_size = page_size;
    header_.checkpoint_seq = checkpoint_seq;
    header_.salt1 = salt1;
    header_.salt2 = salt2;
    bytes.resize(sqlite::kWalHeaderSize);
    sqlite::EncodeWalHeader(header_, bytes.data());
    header_.checksum = sqlite::ExtendWalChecksum({}, big_endian, bytes.data(), sqlite::kWalChecksum1Offset);
    sqlite::EncodeWalHeader(header_, bytes.data());
    running_ = header_.checksum;
  }

  // Appends a frame of page `pgno` filled with `fill`; db_pages != 0 makes
  // it a commit. The checksum chain is always right; the salts are the
  // header's unless given.
  void Frame(uint32_t pgno, uint8_t fill, uint32_t db_pages = 0) {
    FrameWith(pgno, std::vector<uint8_t>(page_size_, fill), db_pages, header_.salt1, header_.salt2);
  }
  void FrameWith(uint32_t pgno, const std::vector<uint8_t>& page, uint32_t db_pages, uint32_t salt1,
                 uint32_t salt2) {
    sqlite::WalFrameHeader f;
    f.pgno = pgno;
    f.db_pages = db_pages;
    f.salt1 = salt1;
    f.salt2 = salt2;
    uint8_t h[sqlite::kWalFrameHeaderSize];
    sqlite::EncodeWalFrameHeader(f, h);
    const bool be = header_.big_endian_checksums();
    running_ = sqlite::ExtendWalChecksum(running_, be, h, sqlite::kWalFrameChecksummedBytes);
    running_ = sqlite::ExtendWalChecksum(running_, be, page.data(), page_size_);
    f.checksum = running_;
    sqlite::EncodeWalFrameHeader(f, h);
    bytes.insert(bytes.end(), h, h + sizeof h);
    bytes.insert(bytes.end(), page.begin(), page.end());
  }
  const sqlite::WalHeader& header() const { return header_; }

  WalBytes bytes;

 private:
  const uint32_t page_size_;
  sqlite::WalHeader header_;
  sqlite::WalChecksum running_;
};

// Recomputes the header checksum (switching the magic to `big_endian`
// checksums) and the cumulative checksum of frames 1..frames, keeping every
// other field; frames past `frames` are left as they are.
inline void ResealWal(WalBytes* wal, bool big_endian, uint32_t frames) {
  sqlite::WalHeader h;
  sqlite::DecodeWalHeader(wal->data(), &h);
  h.magic = big_endian ? sqlite::kWalMagicBigEndian : sqlite::kWalMagicLittleEndian;
  sqlite::EncodeWalHeader(h, wal->data());
  h.checksum = sqlite::ExtendWalChecksum({}, big_endian, wal->data(), sqlite::kWalChecksum1Offset);
  sqlite::EncodeWalHeader(h, wal->data());
  sqlite::WalChecksum running = h.checksum;
  for (uint32_t i = 1; i <= frames; ++i) {
    uint8_t* frame = wal->data() + sqlite::WalFrameOffset(i, h.page_size);
    sqlite::WalFrameHeader f;
    sqlite::DecodeWalFrameHeader(frame, &f);
    running = sqlite::ExtendWalChecksum(running, big_endian, frame, sqlite::kWalFrameChecksummedBytes);
    running = sqlite::ExtendWalChecksum(running, big_endian, frame + sqlite::kWalFrameHeaderSize, h.page_size);
    f.checksum = running;
    sqlite::EncodeWalFrameHeader(f, frame);
  }
}

// Host-order u32 and u16 at `p`, as the -shm file holds them.
inline void PutHost32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
inline void PutHost16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }
inline uint32_t GetHost32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

// Re-seals both copies of a wal-index header after a test changed copy 0:
// its checksum is recomputed and copy 1 made equal to it.
inline void ResealWalIndexHeader(uint8_t* shm) {
  const sqlite::WalChecksum c = sqlite::ExtendWalChecksum(
      {}, std::endian::native == std::endian::big, shm, sqlite::kWiChecksumOffset);
  PutHost32(shm + sqlite::kWiChecksumOffset, c.s0);
  PutHost32(shm + sqlite::kWiChecksumOffset + 4, c.s1);
  memcpy(shm + sqlite::kWalIndexHdrSize, shm, sqlite::kWalIndexHdrSize);
}

}  // namespace cowbackup::test
