// Parses the options_json argument of cowbackup()/cowbackup_start() into
// BackupOptions, strictly: unknown keys, duplicate keys, wrong types and
// out-of-range numbers are errors that name the key. The JSON itself is
// read by SQLite's own json_each(), on a private in-memory connection, so
// the calling connection runs no nested statement.
//
//   {"format": "archive"|"plain", "variant": "snapshot_first"|"overlay_at_end",
//    "segment_pages": 1..1048576, "max_rate_mb": 0 or 0.001..1e6,
//    "snapshot_dir": "...", "overwrite": true|false,
//    "busy_timeout_ms": 0..86400000, "hot_first": true|false,
//    "yield_to_commits": true|false}
// The numeric limits and their messages are the one validator's
// (backup/options.h), shared with the C++ APIs and the CLI.
#pragma once

#include <string>

#include "cowbackup/job.h"

namespace cowbackup::sql {

// False with *error set ("option segment_pages: must be an integer between
// 1 and 1048576") on any problem.
bool ParseOptionsJson(const std::string& json, BackupOptions* options, std::string* error);

}  // namespace cowbackup::sql
