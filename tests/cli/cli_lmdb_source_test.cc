// A backup never writes its source (issue 10, item 5): `cowbackup backup
// DIR` refuses a DIR whose data.mdb is not an LMDB data file before
// anything opens it read-write (LMDB initializes an empty data.mdb: it grew
// from 0 to 8192 bytes), and leaves the directory exactly as it was: the
// file's size, mtime and bytes, no lock.mdb, no archive or temporary.
#include <sys/stat.h>
#include <sys/types.h>

#include "tests/cli/cli_harness.h"

namespace cowbackup::clitest {
namespace {

// What a refused backup must leave unchanged about one path (not followed).
struct Snapshot {
  bool exists = false;
  mode_t mode = 0;
  off_t size = 0;
  struct timespec mtime {};
  ino_t ino = 0;
  std::string bytes;  // regular files only

  static Snapshot Of(const std::string& path) {
    Snapshot s;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return s;
    s.exists = true;
    s.mode = st.st_mode;
    s.size = st.st_size;
    s.mtime = st.st_mtim;
    s.ino = st.st_ino;
    if (S_ISREG(st.st_mode)) s.bytes = ReadFile(path);
    return s;
  }
  bool operator==(const Snapshot& o) const {
    return exists == o.exists && mode == o.mode && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec && ino == o.ino && bytes == o.bytes;
  }
};

class LmdbSourceTest : public CliTest {
 protected:
  // Runs `cowbackup backup env env.cbk` (bounded by `timeout`: a FIFO
  // must not block it) and checks it was refused with `message`, left
  // `watched` (data.mdb, and a link's target) unchanged, and made nothing.
  void ExpectRefused(const std::string& message, const std::vector<std::string>& watched) {
    std::vector<Snapshot> before;
    for (const auto& p : watched) before.push_back(Snapshot::Of(p));
    const std::vector<std::string> env_before = Entries("env"), top_before = Entries();
    Result r = Shell("timeout 60 " + Sh(Binary()) + " backup " + Sh(Path("env")) + " " +
                     Sh(Path("env.cbk")));
    EXPECT_NE(r.code, 124) << "the backup blocked";
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(Path("env/data.mdb")), std::string::npos) << "names the file: " << r.err;
    EXPECT_EQ(r.err_lines(), 1u) << r.err;
    for (size_t i = 0; i < watched.size(); i++) {
      EXPECT_TRUE(Snapshot::Of(watched[i]) == before[i]) << watched[i] << " changed";
    }
    EXPECT_EQ(Entries("env"), env_before) << "something was created in the environment";
    EXPECT_EQ(Entries(), top_before) << "an archive or temporary was left";
  }
  void MakeEnvDir() { ASSERT_EQ(mkdir(Path("env").c_str(), 0700), 0); }
};

TEST_F(LmdbSourceTest, EmptyDataFileIsRefusedNotInitialized) {
  MakeEnvDir();
  WriteFile(Path("env/data.mdb"), "");
  ExpectRefused("data.mdb is empty, not an LMDB environment", {Path("env/data.mdb")});
}

TEST_F(LmdbSourceTest, TextFileIsRefused) {
  MakeEnvDir();
  std::string text;
  for (int i = 0; i < 1000; i++) text += "this is a text file, not an LMDB environment\n";
  WriteFile(Path("env/data.mdb"), text);
  ExpectRefused("data.mdb is not an LMDB data file: page 0 is not an LMDB meta page",
                {Path("env/data.mdb")});
}

TEST_F(LmdbSourceTest, FileShorterThanAMetaPageIsRefused) {
  MakeEnvDir();
  WriteFile(Path("env/data.mdb"), "LMDB?");
  ExpectRefused("too short for an LMDB meta page", {Path("env/data.mdb")});
}

TEST_F(LmdbSourceTest, TruncatedToOnePageIsRefused) {
  const uint32_t psize = MakeLmdbEnv(Path("whole"), 100, 100);
  MakeEnvDir();
  WriteFile(Path("env/data.mdb"), ReadFile(Path("whole/data.mdb")).substr(0, psize));
  ExpectRefused("data.mdb is truncated: " + std::to_string(psize) + " bytes, less than its two meta pages",
                {Path("env/data.mdb")});
}

TEST_F(LmdbSourceTest, DamagedSecondMetaPageIsRefused) {
  const uint32_t psize = MakeLmdbEnv(Path("whole"), 100, 100);
  MakeEnvDir();
  std::string bytes = ReadFile(Path("whole/data.mdb"));
  bytes[psize + 16] ^= 0x5a;  // meta page 1's magic
  WriteFile(Path("env/data.mdb"), bytes);
  ExpectRefused("data.mdb: not an LMDB data file: page 1 is not an LMDB meta page",
                {Path("env/data.mdb")});
}

TEST_F(LmdbSourceTest, FifoIsRefusedWithoutBlocking) {
  MakeEnvDir();
  ASSERT_EQ(mkfifo(Path("env/data.mdb").c_str(), 0600), 0);
  ExpectRefused("data.mdb is a FIFO, not an LMDB data file", {Path("env/data.mdb")});
}

// A data.mdb that is a symbolic link is refused, wherever it points: the
// environment is the directory's own file (LMDB's own tools follow links,
// but a backup run as root must not be steered into a file elsewhere).
TEST_F(LmdbSourceTest, SymbolicLinkIsRefusedAndItsTargetUntouched) {
  MakeEnvDir();
  WriteFile(Path("victim"), "");  // empty: LMDB would initialize it
  ASSERT_EQ(symlink(Path("victim").c_str(), Path("env/data.mdb").c_str()), 0);
  ExpectRefused("data.mdb is a symbolic link", {Path("env/data.mdb"), Path("victim")});
  // The same for a link to a valid environment's data file.
  MakeLmdbEnv(Path("other"), 10, 10);
  ASSERT_EQ(unlink(Path("env/data.mdb").c_str()), 0);
  ASSERT_EQ(symlink(Path("other/data.mdb").c_str(), Path("env/data.mdb").c_str()), 0);
  ExpectRefused("data.mdb is a symbolic link", {Path("env/data.mdb"), Path("other/data.mdb")});
}

// The accepted case changes nothing in data.mdb either. lock.mdb, when
// missing, is created, as LMDB's readers (mdb_stat, mdb_dump) create it.
TEST_F(LmdbSourceTest, ValidEnvironmentIsBackedUpWithoutChangingItsDataFile) {
  MakeLmdbEnv(Path("env"), 300, 300);
  ASSERT_EQ(unlink(Path("env/lock.mdb").c_str()), 0);
  const Snapshot before = Snapshot::Of(Path("env/data.mdb"));
  Result r = Shell("timeout 120 " + Sh(Binary()) + " backup " + Sh(Path("env")) + " " +
                   Sh(Path("env.cbk")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Snapshot::Of(Path("env/data.mdb")) == before) << "data.mdb changed";
  EXPECT_TRUE(Exists(Path("env/lock.mdb")));
  EXPECT_TRUE(Exists(Path("env.cbk")));
}

}  // namespace
}  // namespace cowbackup::clitest
