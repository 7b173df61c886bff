// The command-line tool against what a hostile local user or an unlucky
// operator leaves in its way (issue 10): FIFOs, devices and sockets under
// destination or stale-looking names, symlinks, a kill -9 mid-backup, a
// second interrupt during cleanup, and paths as people type them. Every
// command runs under `timeout`, so a tool that blocks on a FIFO fails the
// test instead of hanging it.
#include <signal.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>

#include <functional>
#include <thread>

#include "tests/cli/cli_harness.h"

namespace cowbackup::clitest {
namespace {

// A pid no process has: a reaped child's.
pid_t DeadPid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  return pid;
}

class HostileCliTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    db_ = Path("app.db");
    MakeSqliteDb(db_, 200);
  }
  // `cowbackup ARGS`, killed after 60 s: a blocked tool fails, never hangs.
  Result Run(const std::string& args) { return Shell("timeout 60 " + Sh(Binary()) + " " + args); }

  // Special files, each made in the test directory (never a system path).
  void MakeFifo(const std::string& path) { ASSERT_EQ(mkfifo(path.c_str(), 0600), 0) << path; }
  bool MakeDevice(const std::string& path) {  // a null device; needs CAP_MKNOD
    return mknod(path.c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0;
  }
  void MakeSocket(const std::string& path) {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    ASSERT_LT(path.size(), sizeof addr.sun_path);
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << path;
    close(fd);  // the socket file stays
  }
  mode_t TypeOf(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0 ? st.st_mode & S_IFMT : 0;
  }
  // The special files a test can make here: name -> type.
  std::vector<std::pair<std::string, mode_t>> MakeSpecials(const std::string& prefix) {
    std::vector<std::pair<std::string, mode_t>> made;
    MakeFifo(Path(prefix + "fifo"));
    made.push_back({Path(prefix + "fifo"), S_IFIFO});
    MakeSocket(Path(prefix + "sock"));
    made.push_back({Path(prefix + "sock"), S_IFSOCK});
    if (MakeDevice(Path(prefix + "dev"))) made.push_back({Path(prefix + "dev"), S_IFCHR});
    return made;
  }
  bool AnyNamed(const std::string& needle) {
    for (const std::string& name : Entries()) {
      if (name.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  std::string db_;
};

// Item 2: a FIFO (or device, or socket) planted under the names the stale
// sweeps look at is neither opened nor removed; the backup goes on.
TEST_F(HostileCliTest, StaleSweepsSkipWhatIsNotARegularFileOfOurs) {
  const std::string dead = std::to_string(DeadPid());
  const std::vector<std::string> planted = {
      Path("x.cbk.cowtmp-" + dead + "-0"),          // a temporary of x.cbk
      Path("x.cbk." + dead + "-1.cowsnap"),         // a snapshot volume of x.cbk
      Path("restored.db.cowtmp-" + dead + "-7")};   // a restore's temporary
  for (const std::string& p : planted) MakeFifo(p);
  const std::string dev = Path("x.cbk." + dead + "-2.cowsnap");
  const bool have_dev = MakeDevice(dev);
  Result r = Run("backup " + Sh(db_) + " " + Sh(Path("x.cbk")));
  ASSERT_EQ(r.code, 0) << r.err;
  r = Run("restore " + Sh(Path("x.cbk")) + " " + Sh(Path("restored.db")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(SqliteCount(Path("restored.db")), 200);
  for (const std::string& p : planted) EXPECT_EQ(TypeOf(p), S_IFIFO) << p;
  if (have_dev) {
    EXPECT_EQ(TypeOf(dev), S_IFCHR);
  }
}

// Item 2: --force onto a FIFO, a device or a socket is refused by name, and
// the node is left as it was; for backup and restore, file and plain.
TEST_F(HostileCliTest, ForceNeverReplacesASpecialFile) {
  ASSERT_EQ(Run("backup " + Sh(db_) + " " + Sh(Path("a.cbk"))).code, 0);
  for (const auto& [path, type] : MakeSpecials("target-")) {
    for (const std::string& cmd :
         {"backup --force " + Sh(db_) + " " + Sh(path),
          "backup --force --format plain " + Sh(db_) + " " + Sh(path),
          "restore --force " + Sh(Path("a.cbk")) + " " + Sh(path)}) {
      Result r = Run(cmd);
      EXPECT_EQ(r.code, 1) << cmd << "\n" << r.err;
      EXPECT_NE(r.err.find("only a regular file is ever replaced"), std::string::npos) << cmd << "\n" << r.err;
      EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
      EXPECT_EQ(TypeOf(path), type) << cmd;
    }
  }
  EXPECT_FALSE(AnyNamed(".cowtmp-"));
  EXPECT_FALSE(AnyNamed(".cowsnap"));
}

// Item 2: an LMDB environment directory is replaced only if its data.mdb
// (and lock.mdb) are regular files; nothing is left behind otherwise.
TEST_F(HostileCliTest, RestoreNeverReplacesAnEnvironmentWhoseFilesAreSpecial) {
  MakeLmdbEnv(Path("env"), 50, 20);
  ASSERT_EQ(Run("backup " + Sh(Path("env")) + " " + Sh(Path("env.cbk"))).code, 0);
  ASSERT_EQ(mkdir(Path("target").c_str(), 0700), 0);
  MakeFifo(Path("target/data.mdb"));
  Result r = Run("restore --force " + Sh(Path("env.cbk")) + " " + Sh(Path("target")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("data.mdb is a FIFO"), std::string::npos) << r.err;
  EXPECT_EQ(TypeOf(Path("target/data.mdb")), S_IFIFO);
  // A symlink as the directory itself: refused, its target untouched.
  ASSERT_EQ(mkdir(Path("elsewhere").c_str(), 0700), 0);
  WriteFile(Path("elsewhere/data.mdb"), "precious");
  ASSERT_EQ(symlink(Path("elsewhere").c_str(), Path("link").c_str()), 0);
  r = Run("restore --force " + Sh(Path("env.cbk")) + " " + Sh(Path("link")));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(ReadFile(Path("elsewhere/data.mdb")), "precious");
  EXPECT_EQ(TypeOf(Path("link")), S_IFLNK);
  EXPECT_FALSE(AnyNamed(".cowtmp-"));
}

// Item 1 (through the tool) and item 7: a symlink destination, dangling or
// not, is refused before anything is copied; the target is never written.
TEST_F(HostileCliTest, SymlinkDestinationsAreRefusedBeforeTheCopy) {
  WriteFile(Path("victim"), "precious");
  ASSERT_EQ(symlink(Path("victim").c_str(), Path("to-victim").c_str()), 0);
  ASSERT_EQ(symlink(Path("nowhere").c_str(), Path("dangling").c_str()), 0);
  for (const std::string& dest : {Path("to-victim"), Path("dangling")}) {
    for (const std::string& force : {std::string(""), std::string("--force ")}) {
      Result r = Run("backup " + force + Sh(db_) + " " + Sh(dest));
      EXPECT_EQ(r.code, 1) << dest;
      EXPECT_EQ(r.err, "cowbackup: backup: destination is a symbolic link; cowbackup never writes "
                       "through or replaces one: give the path it points to: " + dest + "\n");
    }
  }
  EXPECT_EQ(ReadFile(Path("victim")), "precious");
  EXPECT_FALSE(Exists(Path("nowhere")));
  EXPECT_FALSE(AnyNamed(".cowtmp-"));
  EXPECT_FALSE(AnyNamed(".cowsnap"));
}

// Item 3 for the tool: a database open in another process is never the
// destination of --force (a live database is never replaced).
TEST_F(HostileCliTest, ForceNeverReplacesALiveDatabase) {
  MakeSqliteDb(Path("live.db"), 10);
  ASSERT_EQ(Run("backup " + Sh(db_) + " " + Sh(Path("a.cbk"))).code, 0);
  const pid_t holder = fork();
  if (holder == 0) {
    sqlite3* h = nullptr;
    sqlite3_open(Path("live.db").c_str(), &h);
    sqlite3_exec(h, "SELECT count(*) FROM t", nullptr, nullptr, nullptr);  // opens the file
    pause();
    _exit(0);
  }
  // The holder has the file open once its read ran; poll for that.
  const std::string fd_dir = "/proc/" + std::to_string(holder) + "/fd";
  for (int i = 0; i < 500; i++) {
    Result ls = Shell("ls -l " + Sh(fd_dir));
    if (ls.out.find("live.db") != std::string::npos) break;
    usleep(10000);
  }
  for (const std::string& cmd : {"backup --force --format plain " + Sh(db_) + " " + Sh(Path("live.db")),
                                 "restore --force " + Sh(Path("a.cbk")) + " " + Sh(Path("live.db"))}) {
    Result r = Run(cmd);
    EXPECT_EQ(r.code, 1) << cmd;
    EXPECT_NE(r.err.find("never replaces a live database"), std::string::npos) << cmd << "\n" << r.err;
  }
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  EXPECT_EQ(SqliteCount(Path("live.db")), 10);
  // Nobody has it open now: --force replaces it.
  Result r = Run("restore --force " + Sh(Path("a.cbk")) + " " + Sh(Path("live.db")));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(SqliteCount(Path("live.db")), 200);
}

// Item 4: after kill -9 of a backup, the next backup to the same
// destination removes the dead process's temporary archive and volume. In
// WAL mode too (issue 11, item 6), with commits in the -wal kept there by a
// connection of this process (the next backup also starts from the
// wal-index the killed one left).
TEST_F(HostileCliTest, TheNextBackupRemovesWhatAKilledOneLeft) {
  MakeSqliteDb(Path("big.db"), 6000);  // ~2.5 s at 1 MB/s
  for (const std::string mode : {"DELETE", "WAL"}) {
    sqlite3* live = nullptr;
    ASSERT_EQ(sqlite3_open(Path("big.db").c_str(), &live), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(live,
                           ("PRAGMA journal_mode=" + mode +
                            "; UPDATE t SET v = printf('%0300d', -id) WHERE id % 5 = 0")
                               .c_str(),
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    for (const std::string format : {"archive", "plain"}) {
      SCOPED_TRACE(mode + " " + format);
      const std::string dest = Path("big-" + mode + "." + format);
      Result r = Shell(Sh(Binary()) + " backup --max-rate-mb 1 --format " + format + " " +
                       Sh(Path("big.db")) + " " + Sh(dest) +
                       " & pid=$!; for i in $(seq 200); do ls " + Sh(dir_) +
                       " | grep -q cowsnap && break; sleep 0.05; done; sleep 0.3; kill -KILL $pid; wait $pid");
      EXPECT_EQ(r.code, 128 + SIGKILL) << r.err;
      ASSERT_TRUE(AnyNamed("big-" + mode + "." + format + ".cowtmp-"))
          << "the kill came too late to test anything";
      ASSERT_TRUE(AnyNamed(".cowsnap"));
      r = Run("backup --force --format " + format + " " + Sh(Path("big.db")) + " " + Sh(dest));
      ASSERT_EQ(r.code, 0) << r.err;
      EXPECT_FALSE(AnyNamed(".cowtmp-"));
      EXPECT_FALSE(AnyNamed(".cowsnap"));
    }
    sqlite3_close(live);
  }
}

// Item 4: a second SIGTERM while the first one's cleanup runs does not cut
// it short: neither the temporary archive nor the snapshot volume stays.
TEST_F(HostileCliTest, ASecondInterruptDoesNotCutTheCleanupShort) {
  MakeSqliteDb(Path("big.db"), 6000);
  for (int round = 0; round < 3; round++) {
    Result r = Shell(Sh(Binary()) + " backup --max-rate-mb 1 " + Sh(Path("big.db")) + " " +
                     Sh(Path("big.cbk")) +
                     " & pid=$!; for i in $(seq 200); do ls " + Sh(dir_) +
                     " | grep -q cowsnap && break; sleep 0.05; done; sleep 0.2;"
                     " kill -TERM $pid; kill -TERM $pid; kill -TERM $pid; wait $pid");
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("backup cancelled"), std::string::npos) << r.err;
    EXPECT_EQ(Entries(), (std::vector<std::string>{"app.db", "big.db", "big.db-cowbackup"})) << "round " << round;
  }
}

// Item 7: OUT as people type it.
TEST_F(HostileCliTest, RestorePathsAsUsersTypeThem) {
  MakeLmdbEnv(Path("env"), 50, 20);
  ASSERT_EQ(Run("backup " + Sh(Path("env")) + " " + Sh(Path("env.cbk"))).code, 0);
  ASSERT_EQ(Run("backup " + Sh(db_) + " " + Sh(Path("a.cbk"))).code, 0);
  // A trailing slash names the environment directory (the help's example).
  Result r = Run("restore " + Sh(Path("env.cbk")) + " " + Sh(Path("restored-env/")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Exists(Path("restored-env/data.mdb")));
  r = Run("restore --force " + Sh(Path("env.cbk")) + " " + Sh(Path("restored-env/")));
  EXPECT_EQ(r.code, 0) << r.err;
  // ...but not a SQLite database file.
  r = Run("restore " + Sh(Path("a.cbk")) + " " + Sh(Path("db/")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("ends with '/', but this archive restores to a file"), std::string::npos) << r.err;
  // '-' is refused clearly, and no file named '-' appears.
  r = Shell("cd " + Sh(dir_) + " && timeout 60 " + Sh(Binary()) + " restore a.cbk -");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("standard output) is not supported"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(Path("-")));
  // Errors name the option the user has: --force.
  r = Run("restore " + Sh(Path("a.cbk")) + " " + Sh(db_));
  EXPECT_NE(r.err.find("use --force"), std::string::npos) << r.err;
  r = Run("backup " + Sh(db_) + " " + Sh(Path("a.cbk")));
  EXPECT_NE(r.err.find("use --force"), std::string::npos) << r.err;
  EXPECT_FALSE(AnyNamed(".cowtmp-"));
}

// Item 7: an archive whose pages contradict its kind is refused, not
// restored as a non-database with exit 0.
TEST_F(HostileCliTest, RestoreRefusesAnImageOfTheWrongKind) {
  ArchiveSpec sqlite_spec;
  WriteArchive(Path("junk.cbk"), std::string(8192, 'j'), sqlite_spec);
  Result r = Run("restore " + Sh(Path("junk.cbk")) + " " + Sh(Path("out.db")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the archive says SQLite, but its page 1 is not a SQLite database"),
            std::string::npos)
      << r.err;
  ArchiveSpec lmdb_spec;
  lmdb_spec.kind = format::SourceKind::kLmdb;
  WriteArchive(Path("junk-env.cbk"), std::string(8192, 'j'), lmdb_spec);
  r = Run("restore " + Sh(Path("junk-env.cbk")) + " " + Sh(Path("env")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the archive says LMDB, but neither page 0 nor page 1"), std::string::npos) << r.err;
  EXPECT_EQ(Entries(), (std::vector<std::string>{"app.db", "junk-env.cbk", "junk.cbk"}));
}

// ---- A -wal or -journal beside a SQLite copy ------------------------------
// SQLite applies "<OUT>-wal" and a hot "<OUT>-journal" to the database at
// OUT when it opens it, whichever database they came from; a copy is never
// published beside one (backup/output.h, CheckSqliteSidecars).

class SidecarCliTest : public HostileCliTest {
 protected:
  // Runs `script` in Debian's sqlite3 shell on `db`; the shell then kills
  // itself (SIGKILL), so nothing is checkpointed or rolled back: the files
  // a crashed application leaves.
  void CrashShell(const std::string& db, const std::string& script) {
    WriteFile(Path("script.sql"), script + "\n.system kill -9 $PPID\n");
    // "; exit": the subshell waits for the shell itself, so the "Killed"
    // it reports goes to the captured stderr.
    Result r = Shell("/usr/bin/sqlite3 " + Sh(db) + " <" + Sh(Path("script.sql")) + "; exit $?");
    ASSERT_EQ(r.code, 128 + SIGKILL) << r.err;
    unlink(Path("script.sql").c_str());
  }
  // other.db-wal: committed frames of another database (a table "other").
  void MakeForeignWal() {
    CrashShell(Path("other.db"),
               "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
               "CREATE TABLE other(x); INSERT INTO other VALUES('from another database');");
    ASSERT_GT(ReadFile(Path("other.db-wal")).size(), 32u);
  }
  // hot.db-journal: the hot journal of a writer killed mid-transaction
  // (a tiny cache makes it spill, so the journal is synced and the
  // database already half-written).
  void MakeHotJournal() {
    CrashShell(Path("hot.db"),
               "CREATE TABLE j(id INTEGER PRIMARY KEY, v TEXT);"
               "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<300)"
               "  INSERT INTO j SELECT i, printf('%0300d', i) FROM c;"
               "PRAGMA cache_size=2; BEGIN; UPDATE j SET v = printf('%0300d', -id);");
    const std::string journal = ReadFile(Path("hot.db-journal"));
    ASSERT_FALSE(journal.empty());
    ASSERT_NE(journal[0], 0) << "not hot";
  }
  // The shell opens `db` read-write (rolling back or recovering what is
  // beside it), checks it and closes it (checkpointing a WAL into it).
  std::string OpenWithShell(const std::string& db) {
    return Shell("/usr/bin/sqlite3 " + Sh(db) + " 'PRAGMA integrity_check; SELECT count(*) FROM t;'").out;
  }
};

// The fixture is the danger it claims: each file, put beside a good copy,
// changes what SQLite reads there (the WAL's frames replace the schema:
// no table t, and integrity_check still says ok; the journal is rolled
// back into the file). The old code published beside them, exit 0.
TEST_F(SidecarCliTest, ForeignWalAndHotJournalChangeTheDatabaseBesideThem) {
  MakeForeignWal();
  MakeHotJournal();
  ASSERT_EQ(Run("backup " + Sh(db_) + " " + Sh(Path("a.cbk"))).code, 0);
  ASSERT_EQ(Run("restore " + Sh(Path("a.cbk")) + " " + Sh(Path("good.db"))).code, 0);
  EXPECT_EQ(OpenWithShell(Path("good.db")), "ok\n200\n");
  for (const std::string& side : {Path("other.db-wal"), Path("hot.db-journal")}) {
    const std::string suffix = side.substr(side.rfind('-'));
    ASSERT_EQ(Shell("cp " + Sh(Path("good.db")) + " " + Sh(Path("probe.db")) + " && cp " + Sh(side) + " " +
                    Sh(Path("probe.db") + suffix)).code, 0);
    EXPECT_NE(OpenWithShell(Path("probe.db")), "ok\n200\n") << "SQLite applied nothing from " << side;
    Shell("rm -f " + Sh(Path("probe.db")) + "*");
  }
}

// Restore, plain backup and restore --force over a stopped database: each
// is refused by name before anything is written, OUT is left as it was, the
// file beside it is untouched (never removed: it is not ours), and no
// temporary is left.
TEST_F(SidecarCliTest, ASqliteCopyIsNeverPublishedBesideAWalOrJournal) {
  MakeForeignWal();
  MakeHotJournal();
  ASSERT_EQ(Run("backup " + Sh(db_) + " " + Sh(Path("a.cbk"))).code, 0);
  const std::string out = Path("out.db");
  const struct {
    std::string name, suffix;
    std::function<void(const std::string&)> make;
  } sidecars[] = {
      {"another database's -wal", "-wal",
       [&](const std::string& p) { ASSERT_EQ(Shell("cp " + Sh(Path("other.db-wal")) + " " + Sh(p)).code, 0); }},
      {"a hot journal", "-journal",
       [&](const std::string& p) { ASSERT_EQ(Shell("cp " + Sh(Path("hot.db-journal")) + " " + Sh(p)).code, 0); }},
      {"a symlink to a -wal", "-wal",
       [&](const std::string& p) { ASSERT_EQ(symlink(Path("other.db-wal").c_str(), p.c_str()), 0); }},
      {"a dangling symlink", "-journal",
       [&](const std::string& p) { ASSERT_EQ(symlink(Path("nowhere").c_str(), p.c_str()), 0); }},
      {"a FIFO", "-wal", [&](const std::string& p) { MakeFifo(p); }},
  };
  const std::vector<std::string> commands = {
      "restore " + Sh(Path("a.cbk")) + " " + Sh(out),
      "backup --format plain " + Sh(db_) + " " + Sh(out),
      "restore --force " + Sh(Path("a.cbk")) + " " + Sh(out),
      "backup --force --format plain " + Sh(db_) + " " + Sh(out)};
  for (const auto& side : sidecars) {
    for (const std::string& cmd : commands) {
      SCOPED_TRACE(side.name + ": " + cmd);
      const bool force = cmd.find("--force") != std::string::npos;
      // With --force, OUT is a stopped database (the one the file beside
      // it may really belong to).
      if (force) {
        ASSERT_EQ(Shell("cp " + Sh(Path("other.db")) + " " + Sh(out)).code, 0);
      }
      const std::string before = ReadFile(out), path = out + side.suffix;
      side.make(path);
      const mode_t type = TypeOf(path);
      const std::string link = type == S_IFLNK ? Shell("readlink " + Sh(path)).out : "";
      const std::string bytes = type == S_IFREG ? ReadFile(path) : "";
      Result r = Run(cmd);
      EXPECT_EQ(r.code, 1) << r.err;
      EXPECT_NE(r.err.find("SQLite would"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("remove it if it belongs to no live database: " + path), std::string::npos) << r.err;
      EXPECT_EQ(Exists(out), force);
      EXPECT_TRUE(ReadFile(out) == before) << "OUT was changed";
      EXPECT_EQ(TypeOf(path), type);
      if (type == S_IFLNK) {
        EXPECT_EQ(Shell("readlink " + Sh(path)).out, link);
      }
      if (type == S_IFREG) {
        EXPECT_TRUE(ReadFile(path) == bytes) << "the file beside OUT was changed";
      }
      EXPECT_FALSE(AnyNamed(".cowtmp-"));
      EXPECT_FALSE(AnyNamed(".cowsnap"));
      Shell("rm -f " + Sh(out) + " " + Sh(path));
    }
  }
  // An archive is not a database: what lies beside it does not matter.
  ASSERT_EQ(Shell("cp " + Sh(Path("other.db-wal")) + " " + Sh(Path("b.cbk-wal"))).code, 0);
  Result r = Run("backup " + Sh(db_) + " " + Sh(Path("b.cbk")));
  EXPECT_EQ(r.code, 0) << r.err;
}

// What SQLite ignores is no reason to refuse: an empty -wal or -journal
// (journal_mode=TRUNCATE leaves one), and a journal whose header
// journal_mode=PERSIST zeroed. The copy opens as itself.
TEST_F(SidecarCliTest, SidecarsSqliteIgnoresDoNotStopACopy) {
  ASSERT_EQ(Shell("/usr/bin/sqlite3 " + Sh(Path("p.db")) +
                  " 'PRAGMA journal_mode=PERSIST; CREATE TABLE p(x); INSERT INTO p VALUES(1);'").code, 0);
  const std::string persisted = ReadFile(Path("p.db-journal"));
  ASSERT_FALSE(persisted.empty());
  ASSERT_EQ(persisted[0], 0);
  ASSERT_EQ(Run("backup " + Sh(db_) + " " + Sh(Path("a.cbk"))).code, 0);
  const std::string out = Path("out.db");
  for (const std::string& cmd : {"restore " + Sh(Path("a.cbk")) + " " + Sh(out),
                                 "backup --format plain " + Sh(db_) + " " + Sh(out)}) {
    for (const std::string& contents : {std::string(), persisted}) {
      SCOPED_TRACE(cmd + (contents.empty() ? ": empty" : ": PERSIST journal"));
      if (contents.empty()) WriteFile(out + "-wal", "");
      WriteFile(out + "-journal", contents);
      Result r = Run(cmd);
      EXPECT_EQ(r.code, 0) << r.err;
      EXPECT_EQ(OpenWithShell(out), "ok\n200\n");
      Shell("rm -f " + Sh(out) + "*");
    }
  }
}

}  // namespace
}  // namespace cowbackup::clitest
