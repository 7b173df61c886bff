#include "backup/format.h"

#include <cstring>
#include <set>
#include <string_view>

#include "backup/text.h"
#include "engine/checksum.h"
#include "engine/encoding.h"

namespace cowbackup::format {

const char* SourceKindName(SourceKind kind) {
  switch (kind) {
    case SourceKind::kRaw: return "raw";
    case SourceKind::kSqlite: return "sqlite";
    case SourceKind::kLmdb: return "lmdb";
  }
  return "unknown";
}

Status Header::Validate() const {
  if (version != kFormatVersion) {
    return Status::NotSupported("format_version " + std::to_string(version) +
                                " is not supported (this build reads version " +
                                std::to_string(kFormatVersion) + ")");
  }
  const uint32_t kind = static_cast<uint32_t>(source_kind);
  if (kind > static_cast<uint32_t>(SourceKind::kLmdb)) {
    return Status::NotSupported("source_kind " + std::to_string(kind) + " is unknown");
  }
  if (page_size < kMinPageSize || page_size > kMaxPageSize || (page_size & (page_size - 1))) {
    return Status::Corruption("page_size " + std::to_string(page_size) +
                              " is not a power of two in 512..65536");
  }
  if (archive_flags != 0) {
    return Status::NotSupported("archive_flags 0x" + std::to_string(archive_flags) +
                                " has unknown bits");
  }
  if (metadata.size() > kMaxMetaLen) {
    return Status::Corruption("meta_len " + std::to_string(metadata.size()) + " exceeds 4096");
  }
  if (metadata.find('\0') != std::string::npos) {
    return Status::Corruption("metadata holds a NUL byte");
  }
  // Readers would disagree on a repeated key (a JSON object keeps one value,
  // a text listing shows both), so the format allows each key once.
  std::set<std::string> keys;
  for (const auto& [key, value] : meta_pairs()) {
    if (!keys.insert(key).second) {
      return Status::Corruption("metadata key \"" + TerminalSafe(key) +
                                "\" appears more than once");
    }
  }
  // page_count * page_size must be a representable file size.
  if (page_count > (uint64_t{1} << 62) / page_size) {
    return Status::Corruption("page_count " + std::to_string(page_count) + " is too large");
  }
  return Status::OK();
}

std::vector<std::pair<std::string, std::string>> Header::meta_pairs() const {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t pos = 0;
  while (pos < metadata.size()) {
    size_t eol = metadata.find('\n', pos);
    if (eol == std::string::npos) eol = metadata.size();
    const std::string_view line = std::string_view(metadata).substr(pos, eol - pos);
    const size_t eq = line.find('=');
    if (!line.empty()) {
      pairs.emplace_back(line.substr(0, eq), eq == line.npos ? "" : line.substr(eq + 1));
    }
    pos = eol + 1;
  }
  return pairs;
}

std::string Header::meta(const std::string& key) const {
  for (auto& [k, value] : meta_pairs()) {
    if (k == key) return value;
  }
  return {};
}

std::string MetaLine(const std::string& key, const std::string& value) {
  return EscapeText(key, "=") + "=" + EscapeText(value) + "\n";
}

Status FitMetadata(const std::string& lines, std::string* metadata) {
  metadata->clear();
  size_t pos = 0;
  while (pos < lines.size()) {
    const size_t eol = lines.find('\n', pos);
    if (eol == std::string::npos || !IsPlainText(std::string_view(lines).substr(pos, eol - pos))) {
      return Status::InvalidArgument("metadata line is not plain UTF-8 text ending in a newline");
    }
    const size_t len = eol + 1 - pos;
    if (metadata->size() + len <= kMaxMetaLen) metadata->append(lines, pos, len);
    pos = eol + 1;
  }
  return Status::OK();
}

void EncodeHeader(const Header& h, uint8_t* out) {
  memset(out, 0, h.encoded_size());
  memcpy(out + kOffMagic, kMagic, sizeof(kMagic));
  EncodeFixed32(out + kOffVersion, h.version);
  EncodeFixed32(out + kOffHeaderSize, uint32_t(h.encoded_size()));
  EncodeFixed32(out + kOffSourceKind, static_cast<uint32_t>(h.source_kind));
  EncodeFixed32(out + kOffPageSize, h.page_size);
  EncodeFixed64(out + kOffPageCount, h.page_count);
  EncodeFixed32(out + kOffArchiveFlags, h.archive_flags);
  EncodeFixed32(out + kOffMetaLen, uint32_t(h.metadata.size()));
  EncodeFixed64(out + kOffCreated, h.created_unix_us);
  EncodeFixed64(out + kOffReserved, 0);
  memcpy(out + kOffMeta, h.metadata.data(), h.metadata.size());
  const size_t sum_at = kHeaderFixedSize + h.metadata.size();
  EncodeFixed64(out + sum_at, Checksum::Of(out, sum_at));
}

Status HeaderSizeFromPrefix(const uint8_t* p, size_t* header_size) {
  if (memcmp(p + kOffMagic, kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption("not a cowbackup archive (bad magic)");
  }
  const uint32_t version = DecodeFixed32(p + kOffVersion);
  if (version != kFormatVersion) {
    return Status::NotSupported("format_version " + std::to_string(version) +
                                " is not supported (this build reads version " +
                                std::to_string(kFormatVersion) + ")");
  }
  const uint32_t size = DecodeFixed32(p + kOffHeaderSize);
  if (size < kHeaderFixedSize + kHeaderChecksumSize || size > kMaxHeaderSize) {
    return Status::Corruption("header_size " + std::to_string(size) + " is out of range");
  }
  *header_size = size;
  return Status::OK();
}

Status DecodeHeader(const uint8_t* in, size_t len, Header* h) {
  size_t size = 0;
  Status s = HeaderSizeFromPrefix(in, &size);
  if (!s.ok()) return s;
  if (len != size) return Status::Corruption("header_size does not match the header read");
  const uint32_t meta_len = DecodeFixed32(in + kOffMetaLen);
  if (meta_len > kMaxMetaLen || kHeaderFixedSize + meta_len + kHeaderChecksumSize != size) {
    return Status::Corruption("meta_len " + std::to_string(meta_len) +
                              " does not match header_size");
  }
  const size_t sum_at = kHeaderFixedSize + meta_len;
  if (DecodeFixed64(in + sum_at) != Checksum::Of(in, sum_at)) {
    return Status::Corruption("bad header checksum");
  }
  // Decoded aside: *h is left as it was unless every field checks out, so a
  // report never shows a header that was refused.
  Header d;
  d.version = DecodeFixed32(in + kOffVersion);
  d.source_kind = static_cast<SourceKind>(DecodeFixed32(in + kOffSourceKind));
  d.page_size = DecodeFixed32(in + kOffPageSize);
  d.page_count = DecodeFixed64(in + kOffPageCount);
  d.archive_flags = DecodeFixed32(in + kOffArchiveFlags);
  d.created_unix_us = DecodeFixed64(in + kOffCreated);
  d.metadata.assign(reinterpret_cast<const char*>(in + kOffMeta), meta_len);
  if (DecodeFixed64(in + kOffReserved) != 0) return Status::Corruption("reserved header field is not 0");
  s = d.Validate();
  if (s.ok()) *h = std::move(d);
  return s;
}

void EncodeRecordHeader(RecordType type, uint8_t flags, uint32_t payload_len, uint64_t pgno,
                        uint8_t* out) {
  out[kOffType] = static_cast<uint8_t>(type);
  out[kOffFlags] = flags;
  EncodeFixed16(out + kOffRecReserved, 0);
  EncodeFixed32(out + kOffPayloadLen, payload_len);
  EncodeFixed64(out + kOffPgno, pgno);
}

uint64_t RecordChecksum(const uint8_t* header16, const uint8_t* payload, size_t payload_len) {
  Checksum sum;
  sum.update(header16, kRecordHeaderSize);
  sum.update(payload, payload_len);
  return sum.digest();
}

void EncodeTrailerPayload(const Trailer& t, uint8_t* out) {
  EncodeFixed64(out + kOffPageRecords, t.page_records);
  EncodeFixed64(out + kOffOverlayRecords, t.overlay_records);
  EncodeFixed64(out + kOffPreserved, t.preserved_pages);
  EncodeFixed64(out + kOffRecordsEnd, t.records_end);
  EncodeFixed64(out + kOffDigest, t.digest);
  EncodeFixed64(out + kOffFinished, t.finished_unix_us);
}

void DecodeTrailerPayload(const uint8_t* in, Trailer* t) {
  t->page_records = DecodeFixed64(in + kOffPageRecords);
  t->overlay_records = DecodeFixed64(in + kOffOverlayRecords);
  t->preserved_pages = DecodeFixed64(in + kOffPreserved);
  t->records_end = DecodeFixed64(in + kOffRecordsEnd);
  t->digest = DecodeFixed64(in + kOffDigest);
  t->finished_unix_us = DecodeFixed64(in + kOffFinished);
}

}  // namespace cowbackup::format
