#include "backup/options.h"

#include <cmath>
#include <cstring>

namespace cowbackup {

namespace {

Status Bad(const char* field, OptionSpelling spelling, const std::string& what) {
  return Status::InvalidArgument("option " + OptionName(field, spelling) + ": " + what);
}

bool IntegerIn(double v, double lo, double hi) {
  return v >= lo && v <= hi && v == std::floor(v);  // false for NaN
}

}  // namespace

std::string OptionName(const char* field, OptionSpelling spelling) {
  std::string name = field;
  if (spelling == OptionSpelling::kFlag) {
    for (char& c : name) c = c == '_' ? '-' : c;
    name = "--" + name;
  }
  return name;
}

Status ValidateBackupOption(const char* field, double value, OptionSpelling spelling) {
  if (strcmp(field, "segment_pages") == 0) {
    if (!IntegerIn(value, kMinSegmentPages, kMaxSegmentPages)) {
      return Bad(field, spelling, "must be an integer between " + std::to_string(kMinSegmentPages) +
                                      " and " + std::to_string(kMaxSegmentPages));
    }
  } else if (strcmp(field, "busy_timeout_ms") == 0) {
    if (!IntegerIn(value, 0, kMaxBusyTimeoutMs)) {
      return Bad(field, spelling,
                 "must be an integer between 0 and " + std::to_string(kMaxBusyTimeoutMs));
    }
  } else if (strcmp(field, "max_rate_mb") == 0) {
    if (value != 0 && !(value >= kMinRateMb && value <= kMaxRateMb)) {
      return Bad(field, spelling, "must be 0 (no limit) or between 0.001 and 1000000 (MB/s)");
    }
  } else if (strcmp(field, "pace") == 0) {
    if (value != 0 && !(value >= 0.05 && value <= 1)) {
      return Bad(field, spelling, "must be 0 (off) or a share between 0.05 and 1");
    }
  } else {
    return Status::InvalidArgument(std::string("option ") + field + " is not a numeric option");
  }
  return Status::OK();
}

Status ValidateBackupOptions(const BackupOptions& o, bool streaming, OptionSpelling spelling) {
  Status s = ValidateBackupOption("segment_pages", o.segment_pages, spelling);
  if (s.ok()) s = ValidateBackupOption("max_rate_mb", o.max_rate_mb, spelling);
  if (s.ok()) s = ValidateBackupOption("busy_timeout_ms", o.busy_timeout_ms, spelling);
  if (s.ok()) s = ValidateBackupOption("pace", o.pace, spelling);
  if (s.ok() && streaming && o.format == BackupOptions::Format::kPlain) {
    s = Bad("format", spelling, "plain needs a file destination, not a stream");
  }
  return s;
}

}  // namespace cowbackup
