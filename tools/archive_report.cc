#include "tools/archive_report.h"

#include <cstdio>

#include "tools/cli.h"
#include "tools/progress_bar.h"

namespace cowbackup::cli {

JsonObject HeaderJson(const format::Header& h) {
  // Every key once: Header::Validate refuses an archive that repeats one.
  JsonObject meta;
  for (const auto& [key, value] : h.meta_pairs()) meta.add(key, value);
  JsonObject o;
  o.add("format_version", h.version)
      .add("source_kind", format::SourceKindName(h.source_kind))
      .add("page_size", h.page_size)
      .add("page_count", h.page_count)
      .add("database_bytes", h.page_count * h.page_size)
      .add("created_unix_us", h.created_unix_us)
      .add("created", FormatUnixMicros(h.created_unix_us))
      .add("metadata", meta);
  return o;
}

JsonObject TrailerJson(const format::Trailer& t) {
  char digest[24];
  snprintf(digest, sizeof(digest), "%016llx", static_cast<unsigned long long>(t.digest));
  JsonObject o;
  o.add("page_records", t.page_records)
      .add("overlay_records", t.overlay_records)
      .add("preserved_pages", t.preserved_pages)
      .add("records_end", t.records_end)
      .add("digest", std::string(digest))
      .add("finished_unix_us", t.finished_unix_us)
      .add("finished", FormatUnixMicros(t.finished_unix_us));
  return o;
}

std::string HeaderSummary(const format::Header& h) {
  return std::string(format::SourceKindName(h.source_kind)) + ", " + std::to_string(h.page_count) +
         " pages of " + std::to_string(h.page_size) + " bytes (" +
         ProgressBar::Bytes(double(h.page_count * h.page_size)) + ")";
}

}  // namespace cowbackup::cli
