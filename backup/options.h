// The one check of BackupOptions, with the one set of limits, for every
// front end: the SQL functions (sql/json_options.cc, before anything
// runs), the C++ APIs (BackupJob::Prepare, under include/cowbackup/*.hpp)
// and the CLI (tools/cmd_backup.cc). Errors name the option as the user
// wrote it: "option max_rate_mb: ..." for SQL and C++ (the JSON key is the
// BackupOptions field), "option --max-rate-mb: ..." for the CLI.
#pragma once

#include <cstdint>
#include <string>

#include "cowbackup/job.h"
#include "cowbackup/status.h"

namespace cowbackup {

inline constexpr uint32_t kMinSegmentPages = 1;
inline constexpr uint32_t kMaxSegmentPages = 1u << 20;
inline constexpr uint32_t kMaxBusyTimeoutMs = 86400000;  // a day
// 0 means no limit. Below the minimum (1 KB/s) a backup would take longer
// than anyone waits, and a rate such as 1e-300 overflows the throttle's
// clock into no throttle at all: refused rather than run otherwise than
// asked. Above the maximum (1 TB/s) no destination is held back anyway.
inline constexpr double kMinRateMb = 0.001;
inline constexpr double kMaxRateMb = 1e6;

// How an error spells an option's name.
enum class OptionSpelling {
  kField,  // the BackupOptions field and SQL JSON key: max_rate_mb
  kFlag,   // the command-line flag: --max-rate-mb
};

// `field` ("max_rate_mb") as `spelling` writes it.
std::string OptionName(const char* field, OptionSpelling spelling);

// One numeric option before it is narrowed into its field (SQL reads a
// 64-bit integer; a value past uint32 must be refused, not wrapped).
// `field` is "segment_pages", "busy_timeout_ms" or "max_rate_mb".
// InvalidArgument "option <name>: must be ..." when out of range.
Status ValidateBackupOption(const char* field, double value, OptionSpelling spelling);

// Every option of `o`; `streaming` is an archive written to a descriptor
// (the plain format needs a file). The first bad option is named.
Status ValidateBackupOptions(const BackupOptions& o, bool streaming,
                             OptionSpelling spelling = OptionSpelling::kField);

}  // namespace cowbackup
