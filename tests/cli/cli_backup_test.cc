// cowbackup backup: SQLite files and LMDB environments through the real
// front ends, to files, to stdout and in plain format; bad sources and
// destinations; and the promise --help makes: a commit by ANOTHER process
// during the copy fails the backup and publishes nothing.
#include <signal.h>

#include "tests/backup/inert_text.h"
#include "tests/cli/cli_harness.h"

namespace cowbackup::clitest {
namespace {

// A child process that commits to a database until killed, without the
// cowbackup VFS or wrapper: the foreign writer the tool must detect.
class ForeignWriter {
 public:
  static ForeignWriter Sqlite(const std::string& db) {
    return ForeignWriter([db] {
      sqlite3* h = nullptr;
      if (sqlite3_open(db.c_str(), &h) != SQLITE_OK) _exit(3);
      sqlite3_busy_timeout(h, 5000);
      for (;;) {
        sqlite3_exec(h, "INSERT INTO t(v) VALUES (hex(randomblob(150)))", nullptr, nullptr, nullptr);
        usleep(20000);
      }
    });
  }
  static ForeignWriter Lmdb(const std::string& dir) {
    return ForeignWriter([dir] {
      MDB_env* env = nullptr;
      mdb_env_create(&env);
      mdb_env_set_maxdbs(env, 4);
      mdb_env_set_mapsize(env, 64 << 20);
      if (mdb_env_open(env, dir.c_str(), 0, 0600) != 0) _exit(3);
      for (uint64_t i = 0;; i++) {
        MDB_txn* txn = nullptr;
        MDB_dbi dbi;
        if (mdb_txn_begin(env, nullptr, 0, &txn) == 0 && mdb_dbi_open(txn, nullptr, 0, &dbi) == 0) {
          const std::string k = "w" + std::to_string(i), v(300, 'w');
          MDB_val key{k.size(), const_cast<char*>(k.data())}, val{v.size(), const_cast<char*>(v.data())};
          mdb_put(txn, dbi, &key, &val, 0);
          mdb_txn_commit(txn);
        }
        usleep(20000);
      }
    });
  }
  ForeignWriter(ForeignWriter&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  ~ForeignWriter() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

 private:
  template <typename F>
  explicit ForeignWriter(F body) {
    pid_ = fork();
    if (pid_ == 0) body();
  }
  pid_t pid_ = -1;
};

class BackupCliTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    db_ = Path("app.db");
    MakeSqliteDb(db_, 2000);
  }
  std::string db_;
};

TEST_F(BackupCliTest, SqliteArchiveRestoresToTheSameBytes) {
  Result r = Cow("backup " + Sh(db_) + " " + Sh(Path("app.cbk")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("backed up sqlite " + db_ + " to " + Path("app.cbk")), std::string::npos) << r.out;
  r = Cow("verify --deep --temp-dir " + Sh(dir_) + " " + Sh(Path("app.cbk")));
  EXPECT_EQ(r.code, 0) << r.err;
  r = Cow("info --json " + Sh(Path("app.cbk")));
  ExpectJson(r.out, "d['header']['source_kind'] == 'sqlite' and "
                    "d['header']['metadata']['source_path'].endswith('/app.db')");
  r = Cow("restore " + Sh(Path("app.cbk")) + " " + Sh(Path("back.db")));
  ASSERT_EQ(r.code, 0) << r.err;
  // An idle database: the restored copy is the file, byte for byte.
  EXPECT_EQ(ReadFile(Path("back.db")), ReadFile(db_));
  EXPECT_EQ(Entries(), (std::vector<std::string>{"app.cbk", "app.db", "app.db-cowbackup", "back.db"}));
}

TEST_F(BackupCliTest, JsonSummary) {
  Result r = Cow("backup --json " + Sh(db_) + " " + Sh(Path("app.cbk")));
  ASSERT_EQ(r.code, 0) << r.err;
  const uint64_t pages = ReadFile(db_).size() / 4096;
  ExpectJson(r.out, "d['ok'] is True and d['state'] == 'done' and d['kind'] == 'sqlite' and "
                    "d['format'] == 'archive' and d['error'] is None and d['page_size'] == 4096 and "
                    "d['pages'] == " + std::to_string(pages) + " and d['pages_total'] == d['pages'] and "
                    "d['bytes'] == " + std::to_string(ReadFile(Path("app.cbk")).size()));
}

TEST_F(BackupCliTest, PlainFormatIsAReadyToOpenDatabase) {
  Result r = Cow("backup --format plain " + Sh(db_) + " " + Sh(Path("copy.db")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(Path("copy.db")), ReadFile(db_));
  EXPECT_EQ(SqliteCount(Path("copy.db")), 2000);
}

TEST_F(BackupCliTest, StreamsToStandardOutputWithTheReportOnStderr) {
  Result r = Cow("backup --json " + Sh(db_) + " - > " + Sh(Path("s.cbk")), "TMPDIR=" + Sh(dir_) + " ");
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.err, "d['ok'] is True and d['archive'] == '-'");
  EXPECT_EQ(Cow("verify -q " + Sh(Path("s.cbk"))).code, 0);
  // The temporary archive it was built in is gone.
  EXPECT_EQ(Entries(), (std::vector<std::string>{"app.db", "app.db-cowbackup", "s.cbk"}));
  r = Shell(Sh(Binary()) + " backup -q " + Sh(db_) + " - | " + Sh(Binary()) + " restore - " +
            Sh(Path("piped.db")));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(Path("piped.db")), ReadFile(db_));
}

TEST_F(BackupCliTest, StreamToAFullDeviceFailsAndCleansUp) {
  Result r = Cow("backup " + Sh(db_) + " - > /dev/full", "TMPDIR=" + Sh(dir_) + " ");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: backup: write: <stdout>: No space left on device\n");
  EXPECT_EQ(Entries(), (std::vector<std::string>{"app.db", "app.db-cowbackup"}));
}

TEST_F(BackupCliTest, RefusesToOverwriteWithoutForce) {
  WriteFile(Path("app.cbk"), "old");
  Result r = Cow("backup " + Sh(db_) + " " + Sh(Path("app.cbk")));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: backup: destination exists (use --force to replace it): " +
                       Path("app.cbk") + "\n");
  EXPECT_EQ(ReadFile(Path("app.cbk")), "old");
  for (const char* flag : {"--force", "--overwrite"}) {
    r = Cow(std::string("backup ") + flag + " " + Sh(db_) + " " + Sh(Path("app.cbk")));
    EXPECT_EQ(r.code, 0) << flag << r.err;
    EXPECT_EQ(Cow("verify -q " + Sh(Path("app.cbk"))).code, 0);
  }
}

TEST_F(BackupCliTest, BadSourcesAndDestinationsFailWithOneLine) {
  mkdir(Path("empty-dir").c_str(), 0700);
  WriteFile(Path("notes.txt"), "hello, this is not a database\n");
  struct Case {
    std::string args, message;
  };
  const Case cases[] = {
      {Sh(Path("missing.db")) + " x.cbk",
       "open source: " + Path("missing.db") + ": No such file or directory"},
      {Sh(Path("empty-dir")) + " x.cbk",
       "source is a directory without data.mdb: not an LMDB environment: " + Path("empty-dir")},
      {Sh(Path("notes.txt")) + " x.cbk",
       "source is neither a SQLite database nor an LMDB environment: " + Path("notes.txt")},
      {Sh(db_) + " " + Sh(Path("empty-dir")), "destination is a directory: " + Path("empty-dir")},
      {Sh(db_) + " " + Sh(Path("no/such/dir/x.cbk")),
       "destination directory: " + Path("no/such/dir") + ": No such file or directory"},
  };
  for (const Case& c : cases) {
    Result r = Shell("cd " + Sh(dir_) + " && " + Sh(Binary()) + " backup " + c.args);
    EXPECT_EQ(r.code, 1) << c.args;
    EXPECT_EQ(r.err, "cowbackup: backup: " + c.message + "\n");
  }
  EXPECT_EQ(Entries(), (std::vector<std::string>{"app.db", "empty-dir", "notes.txt"}));
}

TEST_F(BackupCliTest, UsageErrors) {
  for (const std::string& args : {"--format zip " + Sh(db_) + " x.cbk",
                                  "--format plain " + Sh(db_) + " -",
                                  "--segment-pages 0 " + Sh(db_) + " x.cbk",
                                  "--max-rate-mb -1 " + Sh(db_) + " x.cbk",
                                  "--segment-pages many " + Sh(db_) + " x.cbk", Sh(db_)}) {
    Result r = Cow("backup " + args);
    EXPECT_EQ(r.code, 2) << args << r.err;
    EXPECT_EQ(r.err.rfind("cowbackup: backup: ", 0), 0u) << r.err;
  }
}

// The limits every front end shares (backup/options.h), named as flags. A
// tiny positive rate such as 1e-300 used to run unthrottled; 2e6 and a
// two-day busy timeout were accepted here but not by SQL.
TEST_F(BackupCliTest, OptionsHaveTheLimitsEveryFrontEndShares) {
  const std::string rate = "option --max-rate-mb: must be 0 (no limit) or between 0.001 and 1000000 (MB/s)";
  const std::pair<std::string, std::string> cases[] = {
      {"--max-rate-mb 1e-300", rate},
      {"--max-rate-mb 0.0009", rate},
      {"--max-rate-mb 2e6", rate},
      {"--segment-pages 1048577", "option --segment-pages: must be an integer between 1 and 1048576"},
      {"--busy-timeout-ms 86400001", "option --busy-timeout-ms: must be an integer between 0 and 86400000"},
      {"--format plain", "option --format: plain needs a file destination, not a stream"},
  };
  for (const auto& [flags, message] : cases) {
    // Refused at once; the timeout turns a regression (0.0009 MB/s runs for
    // a quarter of an hour) into a failure instead of a hang.
    Result r = Shell("timeout 60 " + Sh(Binary()) + " backup " + flags + " " + Sh(db_) + " -");
    EXPECT_EQ(r.code, 2) << flags;
    EXPECT_EQ(r.err, "cowbackup: backup: " + message + "\nTry 'cowbackup backup --help'.\n") << flags;
    EXPECT_EQ(r.out, "") << flags;
  }
  Result r = Cow("backup --max-rate-mb 1000000 --segment-pages 1048576 --busy-timeout-ms 86400000 " +
                 Sh(db_) + " " + Sh(Path("max.cbk")));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Entries(), (std::vector<std::string>{"app.db", "app.db-cowbackup", "max.cbk"}));
}

// A database path with escape sequences and bytes that are not UTF-8 is
// backed up; its report and error lines show it escaped, and the archive
// stores it escaped (docs/FORMAT.md: metadata is plain UTF-8 text).
TEST_F(BackupCliTest, ASourcePathWithControlCharactersIsBackedUpAndShownEscaped) {
  const std::string odd = test::kTitleSeq + test::kEraseSeq + test::kC1Csi + test::kBadUtf8;
  const std::string shown = "\\x1b]0;pwned\\x07\\r\\x1b[2K\\xc2\\x9b"
                            "\\xff\\xfe\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82";
  const std::string db = Path("app" + odd + ".db");
  ASSERT_EQ(::rename(db_.c_str(), db.c_str()), 0);
  Result r = Cow("backup " + Sh(db) + " " + Sh(Path("app.cbk")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(test::InertOnATerminal(r.out, true)) << r.out;
  EXPECT_EQ(r.out.rfind("backed up sqlite " + Path("app" + shown + ".db") + " to ", 0), 0u) << r.out;
  r = Cow("info " + Sh(Path("app.cbk")));
  EXPECT_TRUE(test::InertOnATerminal(r.out, true)) << r.out;
  EXPECT_NE(r.out.find("  source_path=" + Path("app" + shown + ".db\n")), std::string::npos) << r.out;
  r = Cow("info --json " + Sh(Path("app.cbk")));
  ExpectJson(r.out, "d['header']['metadata']['source_path'] == r'" + Path("app" + shown + ".db") + "'");
  r = Cow("restore " + Sh(Path("app.cbk")) + " " + Sh(Path("back.db")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(Path("back.db")), ReadFile(db));

  r = Cow("backup " + Sh(Path("gone" + odd + ".db")) + " " + Sh(Path("x.cbk")));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(test::InertOnATerminal(r.err, true)) << r.err;
  EXPECT_NE(r.err.find(Path("gone" + shown + ".db")), std::string::npos) << r.err;
}

// Issue 11 item 6: a WAL database whose newest commits are still in the
// -wal file, kept there by a connection of this process that does not write
// during the backup (it holds the database open, so the tool's connection
// cannot checkpoint and delete the WAL as it closes). The archive verifies,
// and the restored file, alone with no -wal beside it, passes
// integrity_check, is still in WAL mode and holds the live rows; so does
// the plain format's copy.
TEST_F(BackupCliTest, WalDatabaseBacksUpVerifiesAndRestores) {
  sqlite3* live = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &live), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(live,
                         "PRAGMA journal_mode=WAL;"
                         "UPDATE t SET v = printf('%0300d', -id) WHERE id % 3 = 0;"
                         "DELETE FROM t WHERE id % 10 = 1;"
                         "INSERT INTO t(v) SELECT printf('new%0297d', id) FROM t WHERE id < 500",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  ASSERT_GT(ReadFile(db_ + "-wal").size(), 32u) << "the commits are not in the WAL";
  const std::string rows = SqliteDump(live);
  Result r = Cow("backup --json " + Sh(db_) + " " + Sh(Path("app.cbk")));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['ok'] is True and d['kind'] == 'sqlite'");
  r = Cow("backup --format plain " + Sh(db_) + " " + Sh(Path("plain.db")));
  ASSERT_EQ(r.code, 0) << r.err;
  r = Cow("verify --deep --temp-dir " + Sh(dir_) + " " + Sh(Path("app.cbk")));
  EXPECT_EQ(r.code, 0) << r.err;
  r = Cow("info --json " + Sh(Path("app.cbk")));
  ExpectJson(r.out, "d['header']['metadata']['sqlite_journal_mode'] == 'wal'");
  r = Cow("restore " + Sh(Path("app.cbk")) + " " + Sh(Path("back.db")));
  ASSERT_EQ(r.code, 0) << r.err;
  for (const std::string& copy : {Path("back.db"), Path("plain.db")}) {
    SCOPED_TRACE(copy);
    EXPECT_FALSE(Exists(copy + "-wal"));
    const std::string bytes = ReadFile(copy);
    ASSERT_GE(bytes.size(), 100u);
    EXPECT_EQ(bytes[18], 2);  // the header says WAL (read and write versions)
    EXPECT_EQ(bytes[19], 2);
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(copy.c_str(), &h), SQLITE_OK);
    EXPECT_EQ(SqliteText(h, "PRAGMA integrity_check"), "ok");
    EXPECT_EQ(SqliteText(h, "PRAGMA journal_mode"), "wal");
    EXPECT_TRUE(SqliteDump(h) == rows) << "the copy's rows are not the live database's";
    sqlite3_close(h);
  }
  EXPECT_EQ(SqliteText(live, "PRAGMA integrity_check"), "ok");
  sqlite3_close(live);
}

// Item 7 for the tool: a commit by another process while it copies fails
// the backup, in either journal mode (WAL: the wal-index moved with no
// connection of the tool writing).
TEST_F(BackupCliTest, ForeignSqliteWriterFailsTheBackupAndPublishesNothing) {
  for (const std::string mode : {"DELETE", "WAL"}) {
    SCOPED_TRACE(mode);
    const std::string db = Path("big-" + mode + ".db"), dest = Path("big-" + mode + ".cbk");
    MakeSqliteDb(db, 12000);  // ~5 MB: 5 s at 1 MB/s
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
    EXPECT_EQ(SqliteText(h, "PRAGMA journal_mode=" + mode), mode == "WAL" ? "wal" : "delete");
    sqlite3_close(h);
    ForeignWriter writer = ForeignWriter::Sqlite(db);
    usleep(100000);
    Result r = Cow("backup --max-rate-mb 1 " + Sh(db) + " " + Sh(dest));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_EQ(r.err_lines(), 1u) << r.err;
    EXPECT_NE(r.err.find("a write bypassed the cowbackup shim during the backup"), std::string::npos)
        << r.err;
    EXPECT_FALSE(Exists(dest));
    for (const std::string& name : Entries()) {
      EXPECT_EQ(name.find(".cowtmp-"), std::string::npos) << name;
      EXPECT_EQ(name.find(".cowsnap"), std::string::npos) << name;
    }
  }
}

TEST_F(BackupCliTest, ProgressBarOnATerminalForABackupLongerThanASecond) {
  MakeSqliteDb(Path("big.db"), 6000);  // ~2.5 MB at 1 MB/s
  const std::string inner = Sh(Binary()) + " backup --max-rate-mb 1 " + Sh(Path("big.db")) + " " +
                            Sh(Path("big.cbk"));
  Result r = Shell("script -qec " + Sh(inner) + " /dev/null");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\rbackup ["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ETA "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("100%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("backed up sqlite"), std::string::npos) << r.out;
}

TEST_F(BackupCliTest, DestinationOnAFullOrReadOnlyFilesystem) {
  if (Shell("unshare -m true").code != 0) GTEST_SKIP() << "unshare -m is not permitted here";
  MakeSqliteDb(Path("big.db"), 3000);  // ~1.2 MB
  mkdir(Path("mnt").c_str(), 0700);
  for (const std::string& opts : {std::string("size=256k"), std::string("ro,size=1m")}) {
    const std::string script = "mount -t tmpfs -o " + opts + " tmpfs " + Sh(Path("mnt")) + " && " +
                               Sh(Binary()) + " backup " + Sh(Path("big.db")) + " " +
                               Sh(Path("mnt/big.cbk")) + "; echo rc=$?; ls -A " + Sh(Path("mnt"));
    Result r = Shell("unshare -m sh -c " + Sh(script));
    EXPECT_EQ(r.out, "rc=1\n") << opts;
    EXPECT_EQ(r.err_lines(), 1u) << r.err;
    EXPECT_NE(r.err.find(opts[0] == 'r' ? "Read-only file system" : "No space left on device"),
              std::string::npos)
        << r.err;
    // The message names the destination, not a temporary name.
    EXPECT_EQ(r.err.find(".cowtmp-"), std::string::npos) << r.err;
  }
}

TEST_F(BackupCliTest, InterruptCancelsAndLeavesNothing) {
  MakeSqliteDb(Path("big.db"), 6000);  // ~2.5 s at 1 MB/s
  // SIGTERM: a non-interactive shell starts background jobs ignoring SIGINT.
  for (const std::string& dest : {Sh(Path("big.cbk")), std::string("- >/dev/null")}) {
    Result r = Shell("TMPDIR=" + Sh(dir_) + " " + Sh(Binary()) + " backup --max-rate-mb 1 " +
                     Sh(Path("big.db")) + " " + dest +
                     " & pid=$!; sleep 0.5; kill -TERM $pid; wait $pid");
    EXPECT_EQ(r.code, 1) << dest;
    EXPECT_EQ(r.err, "cowbackup: backup: backup cancelled\n") << dest;
    EXPECT_EQ(Entries(), (std::vector<std::string>{"app.db", "big.db", "big.db-cowbackup"})) << dest;
  }
}

// ---- LMDB ----

TEST_F(BackupCliTest, LmdbEnvironmentRoundTrip) {
  MakeLmdbEnv(Path("env"), 300, 500);
  Result r = Cow("backup --json " + Sh(Path("env")) + " " + Sh(Path("env.cbk")));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['ok'] is True and d['kind'] == 'lmdb' and d['lmdb_txnid'] >= 1");
  r = Cow("verify --deep --json --temp-dir " + Sh(dir_) + " " + Sh(Path("env.cbk")));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['deep']['databases'] == 3 and d['deep']['entries'] == 1302");
  r = Cow("restore " + Sh(Path("env.cbk")) + " " + Sh(Path("restored")));
  ASSERT_EQ(r.code, 0) << r.err;
  Result stat = Shell("mdb_stat -a " + Sh(Path("restored")));
  EXPECT_EQ(stat.code, 0) << stat.err;
  EXPECT_NE(stat.out.find("Status of alpha"), std::string::npos) << stat.out;
}

TEST_F(BackupCliTest, LmdbDataFileInsteadOfTheDirectoryIsExplained) {
  MakeLmdbEnv(Path("env"), 10, 10);
  Result r = Cow("backup " + Sh(Path("env/data.mdb")) + " " + Sh(Path("env.cbk")));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: backup: source is an LMDB data file: give its environment directory: " +
                       Path("env/data.mdb") + "\n");
}

TEST_F(BackupCliTest, LmdbNoSubdirDataFileIsNamedAndRefused) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_open(env, Path("flat.mdb").c_str(), MDB_NOSUBDIR, 0600), 0);
  mdb_env_close(env);
  Result r = Cow("backup " + Sh(Path("flat.mdb")) + " " + Sh(Path("flat.cbk")));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: backup: source is the data file of an LMDB environment opened MDB_NOSUBDIR, "
                   "which backup does not take yet: " + Path("flat.mdb") + "\n");
  EXPECT_FALSE(Exists(Path("flat.cbk")));
}

TEST_F(BackupCliTest, ForeignLmdbWriterFailsTheBackupAndPublishesNothing) {
  MakeLmdbEnv(Path("env"), 8000, 4000);  // several MB: seconds at 1 MB/s
  ForeignWriter writer = ForeignWriter::Lmdb(Path("env"));
  usleep(100000);
  Result r = Cow("backup --max-rate-mb 1 " + Sh(Path("env")) + " " + Sh(Path("env.cbk")));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.err_lines(), 1u) << r.err;
  EXPECT_NE(r.err.find("another process committed to the environment during the backup"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(Exists(Path("env.cbk")));
  for (const std::string& name : Entries()) EXPECT_EQ(name.find(".cowtmp-"), std::string::npos) << name;
}

}  // namespace
}  // namespace cowbackup::clitest
