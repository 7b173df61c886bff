#include "backup/wal_format.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cstdio>
#include <cstring>

#include "engine/encoding.h"

namespace cowbackup::sqlite {

namespace {

constexpr bool kHostBigEndian = std::endian::native == std::endian::big;

// The -shm file is in the host's byte order (it never leaves the machine).
uint32_t DecodeHost32(const uint8_t* p) { return kHostBigEndian ? DecodeBig32(p) : DecodeFixed32(p); }
uint16_t DecodeHost16(const uint8_t* p) {
  return kHostBigEndian ? uint16_t((p[0] << 8) | p[1]) : DecodeFixed16(p);
}

bool ValidPageSize(uint32_t n) { return n >= 512 && n <= 65536 && (n & (n - 1)) == 0; }

std::string Hex32(uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string ChecksumText(WalChecksum c) { return Hex32(c.s0) + " " + Hex32(c.s1); }

// Reads whole frames in runs of about this many bytes.
constexpr size_t kScanChunkBytes = 1 << 20;

// A Source over bytes in memory, for ScanWal(data, len).
class ByteSource final : public Source {
 public:
  ByteSource(const uint8_t* data, size_t len) : data_(data), len_(len) {}
  Status read(uint64_t offset, uint8_t* buf, size_t len) override {
    if (offset > len_ || len > len_ - offset) {
      return Status::Incomplete("read past the end of the WAL bytes", "offset " + std::to_string(offset));
    }
    memcpy(buf, data_ + offset, len);
    return Status::OK();
  }
  uint32_t page_size() const override { return 0; }
  const std::string& name() const override { return name_; }

 private:
  const uint8_t* const data_;
  const size_t len_;
  const std::string name_ = "WAL bytes";
};

}  // namespace

WalChecksum ExtendWalChecksum(WalChecksum sum, bool big_endian_words, const uint8_t* data, size_t len) {
  assert(len % 8 == 0);
  uint32_t s0 = sum.s0, s1 = sum.s1;
  if (big_endian_words) {
    for (size_t i = 0; i + 8 <= len; i += 8) {
      s0 += DecodeBig32(data + i) + s1;
      s1 += DecodeBig32(data + i + 4) + s0;
    }
  } else {
    for (size_t i = 0; i + 8 <= len; i += 8) {
      s0 += DecodeFixed32(data + i) + s1;
      s1 += DecodeFixed32(data + i + 4) + s0;
    }
  }
  return WalChecksum{s0, s1};
}

void DecodeWalHeader(const uint8_t* p, WalHeader* h) {
  h->magic = DecodeBig32(p + kWalMagicOffset);
  h->format_version = DecodeBig32(p + kWalVersionOffset);
  h->page_size = DecodeBig32(p + kWalPageSizeOffset);
  h->checkpoint_seq = DecodeBig32(p + kWalCheckpointSeqOffset);
  h->salt1 = DecodeBig32(p + kWalSalt1Offset);
  h->salt2 = DecodeBig32(p + kWalSalt2Offset);
  h->checksum.s0 = DecodeBig32(p + kWalChecksum1Offset);
  h->checksum.s1 = DecodeBig32(p + kWalChecksum2Offset);
}

void EncodeWalHeader(const WalHeader& h, uint8_t* p) {
  EncodeBig32(p + kWalMagicOffset, h.magic);
  EncodeBig32(p + kWalVersionOffset, h.format_version);
  EncodeBig32(p + kWalPageSizeOffset, h.page_size);
  EncodeBig32(p + kWalCheckpointSeqOffset, h.checkpoint_seq);
  EncodeBig32(p + kWalSalt1Offset, h.salt1);
  EncodeBig32(p + kWalSalt2Offset, h.salt2);
  EncodeBig32(p + kWalChecksum1Offset, h.checksum.s0);
  EncodeBig32(p + kWalChecksum2Offset, h.checksum.s1);
}

Status ParseWalHeader(const uint8_t* buf, size_t len, const std::string& where, WalHeader* h) {
  if (len < kWalHeaderSize) {
    return Status::Corruption("WAL header: " + std::to_string(len) + " bytes, shorter than " +
                                  std::to_string(kWalHeaderSize),
                              where);
  }
  DecodeWalHeader(buf, h);
  if ((h->magic & ~1u) != kWalMagicLittleEndian) {
    return Status::Corruption("WAL header: bad magic " + Hex32(h->magic) + " (expected " +
                                  Hex32(kWalMagicLittleEndian) + " or " + Hex32(kWalMagicBigEndian) + ")",
                              where);
  }
  if (!ValidPageSize(h->page_size)) {
    return Status::Corruption("WAL header: bad page size " + std::to_string(h->page_size) +
                                  " (expected a power of two from 512 to 65536)",
                              where);
  }
  const WalChecksum sum = ExtendWalChecksum({}, h->big_endian_checksums(), buf, kWalChecksum1Offset);
  if (sum != h->checksum) {
    return Status::Corruption("WAL header: checksum mismatch (stored " + ChecksumText(h->checksum) +
                                  ", computed " + ChecksumText(sum) + ")",
                              where);
  }
  if (h->format_version != kWalFormatVersion) {
    return Status::NotSupported("WAL header: format version " + std::to_string(h->format_version) +
                                    " is not supported (expected " + std::to_string(kWalFormatVersion) +
                                    ")",
                                where);
  }
  return Status::OK();
}

void DecodeWalFrameHeader(const uint8_t* p, WalFrameHeader* f) {
  f->pgno = DecodeBig32(p + kWalFramePgnoOffset);
  f->db_pages = DecodeBig32(p + kWalFrameDbPagesOffset);
  f->salt1 = DecodeBig32(p + kWalFrameSalt1Offset);
  f->salt2 = DecodeBig32(p + kWalFrameSalt2Offset);
  f->checksum.s0 = DecodeBig32(p + kWalFrameChecksum1Offset);
  f->checksum.s1 = DecodeBig32(p + kWalFrameChecksum2Offset);
}

void EncodeWalFrameHeader(const WalFrameHeader& f, uint8_t* p) {
  EncodeBig32(p + kWalFramePgnoOffset, f.pgno);
  EncodeBig32(p + kWalFrameDbPagesOffset, f.db_pages);
  EncodeBig32(p + kWalFrameSalt1Offset, f.salt1);
  EncodeBig32(p + kWalFrameSalt2Offset, f.salt2);
  EncodeBig32(p + kWalFrameChecksum1Offset, f.checksum.s0);
  EncodeBig32(p + kWalFrameChecksum2Offset, f.checksum.s1);
}

const char* WalScanEndName(WalScanEnd end) {
  switch (end) {
    case WalScanEnd::kNoHeader: return "no valid header";
    case WalScanEnd::kEndOfFile: return "end of file";
    case WalScanEnd::kTornFrame: return "torn frame";
    case WalScanEnd::kSaltMismatch: return "salt mismatch";
    case WalScanEnd::kZeroPage: return "page number 0";
    case WalScanEnd::kChecksumMismatch: return "checksum mismatch";
    case WalScanEnd::kFrameLimit: return "frame limit";
  }
  return "?";
}

uint32_t WalScan::FrameOf(uint32_t pgno) const {
  auto it = std::lower_bound(pages.begin(), pages.end(), pgno,
                             [](const WalPageFrame& pf, uint32_t p) { return pf.pgno < p; });
  return it != pages.end() && it->pgno == pgno ? it->frame : 0;
}

namespace {

// Checks one frame against the header and the running checksum, as
// recovery does: salts first, then the page number, then the checksum
// (which extends `running` only when the frame is valid).
WalScanEnd CheckFrame(const WalHeader& h, const uint8_t* frame, WalChecksum* running, WalFrameHeader* f) {
  DecodeWalFrameHeader(frame, f);
  if (f->salt1 != h.salt1 || f->salt2 != h.salt2) return WalScanEnd::kSaltMismatch;
  if (f->pgno == 0) return WalScanEnd::kZeroPage;
  WalChecksum sum = ExtendWalChecksum(*running, h.big_endian_checksums(), frame, kWalFrameChecksummedBytes);
  sum = ExtendWalChecksum(sum, h.big_endian_checksums(), frame + kWalFrameHeaderSize, h.page_size);
  if (sum != f->checksum) return WalScanEnd::kChecksumMismatch;
  *running = sum;
  return WalScanEnd::kEndOfFile;  // valid
}

// The newest frame <= max_frame of each page, sorted by page number.
std::vector<WalPageFrame> NewestFrames(const std::vector<uint32_t>& frame_pgno, uint32_t max_frame) {
  std::vector<WalPageFrame> all;
  all.reserve(max_frame);
  for (uint32_t frame = 1; frame <= max_frame; ++frame) all.push_back({frame_pgno[frame - 1], frame});
  std::stable_sort(all.begin(), all.end(),
                   [](const WalPageFrame& a, const WalPageFrame& b) { return a.pgno < b.pgno; });
  std::vector<WalPageFrame> newest;
  for (const WalPageFrame& pf : all) {
    if (!newest.empty() && newest.back().pgno == pf.pgno) {
      newest.back().frame = pf.frame;  // frames ascend within a page: the later wins
    } else {
      newest.push_back(pf);
    }
  }
  return newest;
}

}  // namespace

Status ScanWal(Source& wal, uint64_t wal_size, WalScan* out, uint32_t frame_limit) {
  *out = WalScan{};
  // Recovery reads nothing from a file of no more than a header's size.
  if (wal_size <= kWalHeaderSize) return Status::OK();
  uint8_t hbuf[kWalHeaderSize];
  Status s = wal.read(0, hbuf, sizeof hbuf);
  if (!s.ok()) return s;
  s = ParseWalHeader(hbuf, sizeof hbuf, wal.name(), &out->header);
  if (s.IsNotSupported()) return s;
  if (!s.ok()) {
    out->header_problem = s.message();
    return Status::OK();
  }
  out->header_valid = true;
  const WalHeader& h = out->header;

  const uint64_t frame_size = kWalFrameHeaderSize + h.page_size;
  const uint64_t whole_frames = std::min<uint64_t>((wal_size - kWalHeaderSize) / frame_size, UINT32_MAX - 1);
  const bool torn = (wal_size - kWalHeaderSize) % frame_size != 0;
  const bool limited = frame_limit > 0 && frame_limit < whole_frames;
  const uint32_t last = limited ? frame_limit : uint32_t(whole_frames);

  std::vector<uint32_t> frame_pgno;  // page number of each valid frame
  frame_pgno.reserve(last);
  const uint32_t chunk_frames = uint32_t(std::max<uint64_t>(1, kScanChunkBytes / frame_size));
  std::vector<uint8_t> buf(std::min<uint64_t>(chunk_frames, std::max<uint32_t>(last, 1)) * frame_size);
  WalChecksum running = h.checksum;
  WalScanEnd end = WalScanEnd::kEndOfFile;
  uint32_t frame = 1;
  while (frame <= last && end == WalScanEnd::kEndOfFile) {
    const uint32_t n = std::min(chunk_frames, last - frame + 1);
    s = wal.read(WalFrameOffset(frame, h.page_size), buf.data(), n * frame_size);
    if (!s.ok()) return s;
    for (uint32_t i = 0; i < n; ++i, ++frame) {
      WalFrameHeader f;
      end = CheckFrame(h, buf.data() + i * frame_size, &running, &f);
      if (end != WalScanEnd::kEndOfFile) break;
      frame_pgno.push_back(f.pgno);
      out->valid_frames = frame;
      if (f.commit()) {
        out->max_frame = frame;
        out->db_pages = f.db_pages;
        out->max_frame_checksum = running;
      }
    }
  }
  if (end == WalScanEnd::kEndOfFile) {
    if (limited) {
      end = WalScanEnd::kFrameLimit;
    } else if (torn) {
      end = WalScanEnd::kTornFrame;
    }
  }
  out->end = end;
  out->end_frame = frame;
  out->pages = NewestFrames(frame_pgno, out->max_frame);
  return Status::OK();
}

Status ScanWal(const uint8_t* data, size_t len, WalScan* out, uint32_t frame_limit) {
  ByteSource source(data, len);
  return ScanWal(source, len, out, frame_limit);
}

Status ParseWalIndexHeader(const uint8_t* buf, size_t len, const std::string& where, WalIndexHeader* h) {
  if (len < kWalIndexHeaderSize) {
    return Status::Corruption("wal-index header: " + std::to_string(len) + " bytes, shorter than " +
                                  std::to_string(kWalIndexHeaderSize),
                              where);
  }
  if (memcmp(buf, buf + kWalIndexHdrSize, kWalIndexHdrSize) != 0) {
    return Status::Busy("wal-index header: its two copies differ (a writer is updating it; read it again)",
                        where);
  }
  const uint8_t* c = buf;  // copy 0, equal to copy 1
  *h = WalIndexHeader{};
  h->version = DecodeHost32(c + kWiVersionOffset);
  h->change = DecodeHost32(c + kWiChangeOffset);
  h->initialized = c[kWiIsInitOffset] != 0;
  h->big_endian_checksums = c[kWiBigEndCksumOffset] != 0;
  const uint16_t sz = DecodeHost16(c + kWiPageSizeOffset);
  h->page_size = (sz & 0xfe00u) + ((sz & 1u) << 16);  // 1 stands for 65536
  h->max_frame = DecodeHost32(c + kWiMaxFrameOffset);
  h->db_pages = DecodeHost32(c + kWiDbPagesOffset);
  h->frame_checksum.s0 = DecodeHost32(c + kWiFrameChecksumOffset);
  h->frame_checksum.s1 = DecodeHost32(c + kWiFrameChecksumOffset + 4);
  // aSalt holds the WAL header's salt bytes as they are: big-endian.
  h->salt1 = DecodeBig32(c + kWiSaltOffset);
  h->salt2 = DecodeBig32(c + kWiSaltOffset + 4);
  h->checksum.s0 = DecodeHost32(c + kWiChecksumOffset);
  h->checksum.s1 = DecodeHost32(c + kWiChecksumOffset + 4);
  h->backfilled = DecodeHost32(buf + kWiBackfillOffset);
  for (int i = 0; i < kWalReadMarks; ++i) h->read_marks[i] = DecodeHost32(buf + kWiReadMarkOffset + 4 * i);
  h->backfill_attempted = DecodeHost32(buf + kWiBackfillAttemptedOffset);

  if (!h->initialized) {
    return Status::Corruption("wal-index header: isInit is 0 (not initialised: the next connection "
                              "rebuilds it from the WAL)",
                              where);
  }
  const WalChecksum sum = ExtendWalChecksum({}, kHostBigEndian, c, kWiChecksumOffset);
  if (sum != h->checksum) {
    return Status::Corruption("wal-index header: checksum mismatch (stored " + ChecksumText(h->checksum) +
                                  ", computed " + ChecksumText(sum) + ")",
                              where);
  }
  if (h->version != kWalIndexVersion) {
    return Status::NotSupported("wal-index header: version " + std::to_string(h->version) +
                                    " is not supported (expected " + std::to_string(kWalIndexVersion) + ")",
                                where);
  }
  // szPage is the page size, or 1 for 65536. Recovery of a WAL without a
  // commit leaves it 0; any commit sets it.
  const bool sz_ok = sz == 1 || (sz >= 512 && (sz & (sz - 1)) == 0) || (sz == 0 && h->max_frame == 0);
  if (!sz_ok) {
    return Status::Corruption("wal-index header: bad szPage " + std::to_string(sz), where);
  }
  return Status::OK();
}

namespace {
void CopyWords(const uint32_t* src, uint8_t* dst, size_t words) {
  for (size_t i = 0; i < words; ++i) {
    const uint32_t w = __atomic_load_n(src + i, __ATOMIC_RELAXED);
    memcpy(dst + 4 * i, &w, 4);  // host order in, host order out
  }
}
}  // namespace

void CopyWalIndexHeader(const void* shm, uint8_t out[kWalIndexHeaderSize]) {
  const auto* w = static_cast<const uint32_t*>(shm);
  memset(out, 0, kWalIndexHeaderSize);
  CopyWords(w, out, kWalIndexHdrSize / 4);  // copy 0 first: the writer writes it last
  std::atomic_thread_fence(std::memory_order_seq_cst);
  CopyWords(w + kWalIndexHdrSize / 4, out + kWalIndexHdrSize, kWalIndexHdrSize / 4);
  CopyWords(w + kWiBackfillOffset / 4, out + kWiBackfillOffset, (kWiLockOffset - kWiBackfillOffset) / 4);
  CopyWords(w + kWiBackfillAttemptedOffset / 4, out + kWiBackfillAttemptedOffset,
            (kWalIndexHeaderSize - kWiBackfillAttemptedOffset) / 4);
}

WalIndexSlot WalIndexFrameSlot(uint32_t frame) {
  if (frame <= kWalIndexFramesInRegion0) {
    return {0, uint32_t(kWalIndexHeaderSize + 4 * (frame - 1))};
  }
  const uint32_t i = frame - kWalIndexFramesInRegion0 - 1;
  return {1 + i / kWalIndexFramesPerRegion, 4 * (i % kWalIndexFramesPerRegion)};
}

WalScan WalScanFromIndex(const WalIndexHeader& h, const std::vector<uint32_t>& frame_pages) {
  WalScan scan;
  scan.header.format_version = kWalFormatVersion;
  scan.header.page_size = h.page_size;
  scan.header.salt1 = h.salt1;
  scan.header.salt2 = h.salt2;
  scan.header_valid = true;
  scan.max_frame = h.max_frame;
  scan.db_pages = h.max_frame > 0 ? h.db_pages : 0;
  scan.max_frame_checksum = h.frame_checksum;
  scan.valid_frames = h.max_frame;
  scan.end = WalScanEnd::kFrameLimit;
  scan.end_frame = h.max_frame + 1;
  const uint32_t n = std::min<uint32_t>(h.max_frame, uint32_t(frame_pages.size()));
  std::vector<WalPageFrame> all;
  all.reserve(n);
  for (uint32_t f = 1; f <= n; f++) {
    if (frame_pages[f - 1] != 0) all.push_back({frame_pages[f - 1], f});
  }
  // By page, newest frame last; keep the newest of each page.
  std::stable_sort(all.begin(), all.end(),
                   [](const WalPageFrame& a, const WalPageFrame& b) { return a.pgno < b.pgno; });
  for (size_t i = 0; i < all.size(); i++) {
    if (i + 1 < all.size() && all[i + 1].pgno == all[i].pgno) continue;
    scan.pages.push_back(all[i]);
  }
  return scan;
}

}  // namespace cowbackup::sqlite
