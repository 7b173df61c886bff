// The one options validator (backup/options.h): its limits, how it names
// an option for each front end, and that BackupJob::Prepare, under both C++
// APIs, refuses through it before creating anything. The SQL, C++ API and
// CLI tests check the same limits end to end.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <memory>

#include "backup/backup_job.h"
#include "backup/options.h"
#include "engine/file_source.h"
#include "test_util/files.h"

namespace cowbackup::test {
namespace {

Status Rate(double mb, OptionSpelling spelling = OptionSpelling::kField) {
  BackupOptions o;
  o.max_rate_mb = mb;
  return ValidateBackupOptions(o, false, spelling);
}

TEST(ValidateBackupOptions, DefaultsPass) {
  EXPECT_TRUE(ValidateBackupOptions(BackupOptions{}, false).ok());
  EXPECT_TRUE(ValidateBackupOptions(BackupOptions{}, true).ok());
}

TEST(ValidateBackupOptions, RateIsZeroOrWithinItsLimits) {
  for (double ok : {0.0, 0.001, 1.0, 1e6}) EXPECT_TRUE(Rate(ok).ok()) << ok;
  // 1e-300 used to run unthrottled: the throttle's deadline overflowed.
  for (double bad : {1e-300, 0.0009, -1.0, 1e6 + 1, 1e9, std::nan(""),
                     std::numeric_limits<double>::infinity()}) {
    const Status s = Rate(bad);
    EXPECT_TRUE(s.IsInvalidArgument()) << bad;
    EXPECT_EQ(s.ToString(), "option max_rate_mb: must be 0 (no limit) or between 0.001 and 1000000 (MB/s)");
  }
}

TEST(ValidateBackupOptions, PaceIsOffOrAShare) {
  BackupOptions o;
  for (double ok : {0.0, 0.05, 0.85, 1.0}) {
    o.pace = ok;
    EXPECT_TRUE(ValidateBackupOptions(o, false).ok()) << ok;
  }
  for (double bad : {0.049, -0.5, 1.01, 85.0, std::nan("")}) {
    o.pace = bad;
    EXPECT_EQ(ValidateBackupOptions(o, false, OptionSpelling::kFlag).ToString(),
              "option --pace: must be 0 (off) or a share between 0.05 and 1")
        << bad;
  }
}

TEST(ValidateBackupOptions, IntegerOptionsHaveOneRangeEach) {
  BackupOptions o;
  for (uint32_t n : {0u, (1u << 20) + 1}) {
    o.segment_pages = n;
    EXPECT_EQ(ValidateBackupOptions(o, false).ToString(),
              "option segment_pages: must be an integer between 1 and 1048576");
  }
  o.segment_pages = 1u << 20;
  EXPECT_TRUE(ValidateBackupOptions(o, false).ok());
  o.busy_timeout_ms = 86400001;
  EXPECT_EQ(ValidateBackupOptions(o, false).ToString(),
            "option busy_timeout_ms: must be an integer between 0 and 86400000");
  o.busy_timeout_ms = 86400000;
  EXPECT_TRUE(ValidateBackupOptions(o, false).ok());
  // Before narrowing (SQL reads 64-bit integers): past uint32, fractions.
  EXPECT_FALSE(ValidateBackupOption("segment_pages", 4294967296.0 + 8, OptionSpelling::kField).ok());
  EXPECT_FALSE(ValidateBackupOption("busy_timeout_ms", -1, OptionSpelling::kField).ok());
  EXPECT_FALSE(ValidateBackupOption("busy_timeout_ms", 1.5, OptionSpelling::kField).ok());
}

TEST(ValidateBackupOptions, NamesTheOptionAsTheFrontEndSpellsIt) {
  EXPECT_EQ(Rate(1e-300, OptionSpelling::kFlag).ToString(),
            "option --max-rate-mb: must be 0 (no limit) or between 0.001 and 1000000 (MB/s)");
  BackupOptions o;
  o.busy_timeout_ms = 86400001;
  EXPECT_EQ(ValidateBackupOptions(o, false, OptionSpelling::kFlag).ToString().rfind(
                "option --busy-timeout-ms: ", 0),
            0u);
  o = BackupOptions{};
  o.format = BackupOptions::Format::kPlain;
  EXPECT_TRUE(ValidateBackupOptions(o, false).ok());
  EXPECT_EQ(ValidateBackupOptions(o, true, OptionSpelling::kFlag).ToString(),
            "option --format: plain needs a file destination, not a stream");
}

// BackupJob::Prepare (SQLite's StartBackup/Backup and LMDB's backup/
// start_backup all go through it) refuses before any file exists.
TEST(ValidateBackupOptions, PrepareRefusesBeforeCreatingAnything) {
  TempDir dir;
  const std::string db = (dir / "src.db");
  const int fd = ::open(db.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  FileSource source(fd, db, 4096);
  BackupParams params;
  params.dest = (dir / "out.cbk");
  params.source_name = db;
  for (double rate : {1e-300, 2e6}) {
    params.options.max_rate_mb = rate;
    std::unique_ptr<BackupJob> job;
    const Status s = BackupJob::Prepare(&source, params, &job);
    EXPECT_EQ(s.ToString(), "option max_rate_mb: must be 0 (no limit) or between 0.001 and 1000000 (MB/s)");
    EXPECT_EQ(dir.list(), std::vector<std::string>{"src.db"});
  }
  ::close(fd);
}

}  // namespace
}  // namespace cowbackup::test
