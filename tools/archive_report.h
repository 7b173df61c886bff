// How the reporting subcommands describe an archive's header and trailer,
// as text lines and as JSON members, so info, verify and restore agree.
#pragma once

#include <string>

#include "backup/format.h"
#include "tools/json.h"

namespace cowbackup::cli {

// {"format_version", "source_kind", "page_size", "page_count",
//  "database_bytes", "created_unix_us", "created", "metadata": {...}};
// metadata holds h.meta_pairs(), the same keys and values `info` lists.
JsonObject HeaderJson(const format::Header& h);
// {"page_records", "overlay_records", "preserved_pages", "records_end",
//  "digest" (16 hex digits), "finished_unix_us", "finished"}
JsonObject TrailerJson(const format::Trailer& t);

// "sqlite, 12 pages of 4096 bytes (48.0 KiB)"
std::string HeaderSummary(const format::Header& h);

}  // namespace cowbackup::cli
