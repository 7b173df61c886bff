// Files a hostile local user can touch (issue 10, items 1 and 2), at the
// library level: a temporary or a snapshot volume swapped for a symlink
// between its creation and its first write (a sync point makes the race
// an ordinary test), names planted in advance, and the sweeps' rule that
// only regular files of this user are ever opened or removed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "backup/output.h"
#include "engine/aligned_buffer.h"
#include "engine/posix_file.h"
#include "engine/snapshot_volume.h"
#include "engine/sync_point.h"
#include "test_util/files.h"
#include "test_util/sync_points.h"

namespace cowbackup::test {
namespace {

// The name in `dir` that contains `infix`, or "".
std::string Find(const TempDir& dir, const std::string& infix) {
  for (const std::string& name : dir.list()) {
    if (name.find(infix) != std::string::npos) return (dir / name);
  }
  return "";
}

// At `point`, moves the file named like `infix` aside and puts a symlink to
// `victim` under its name: what another user who can write the directory
// could do between our create and our first write.
void SwapForSymlinkAt(const char* point, const TempDir& dir, const std::string& infix,
                      const std::string& victim, bool* swapped) {
  sync::SetCallback([&dir, infix, victim, point, swapped](const char* name) {
    if (strcmp(name, point) != 0 || *swapped) return;
    const std::string path = Find(dir, infix);
    if (path.empty()) return;
    ASSERT_EQ(::rename(path.c_str(), (dir / "stolen").c_str()), 0);
    ASSERT_EQ(::symlink(victim.c_str(), path.c_str()), 0);
    *swapped = true;
  });
}

TEST(HostileFilesTest, ATemporarySwappedForASymlinkIsNeverWrittenThrough) {
  for (const bool direct : {true, false}) {
    TempDir dir;
    const std::vector<uint8_t> precious(100, 'p');
    WriteFile((dir / "victim"), precious);
    SyncPointGuard guard;
    bool swapped = false;
    SwapForSymlinkAt("AtomicFile::Create:created", dir, ".cowtmp-", (dir / "victim"), &swapped);
    std::unique_ptr<AtomicFile> f;
    ASSERT_TRUE(AtomicFile::Create((dir / "out"), false, &f).ok());
    sync::SetCallback(nullptr);
    ASSERT_TRUE(swapped);
    if (!direct) f->DisableDirect();
    IoBuffer block(2 * AtomicFile::kDirectChunk);  // aligned: the O_DIRECT path when it is on
    memset(block.data(), 'x', block.size());
    ASSERT_TRUE(f->append(block.data(), block.size()).ok());
    ASSERT_TRUE(f->append(block.data(), 1000).ok());  // and a buffered tail
    Status s = f->commit();
    EXPECT_FALSE(s.ok()) << "a swapped temporary was published";
    EXPECT_NE(s.ToString().find("replaced by another file"), std::string::npos) << s.ToString();
    EXPECT_TRUE(ReadFile<Bytes>((dir / "victim")) == precious) << "root's write went through the symlink";
    EXPECT_FALSE(PathExists((dir / "out")));
    // Everything went to the file we created.
    EXPECT_EQ(ReadFile<Bytes>((dir / "stolen")).size(), block.size() + 1000);
  }
}

TEST(HostileFilesTest, ASnapshotVolumeSwappedForASymlinkIsNeverWrittenThrough) {
  TempDir dir;
  const std::vector<uint8_t> precious(100, 'p');
  WriteFile((dir / "victim"), precious);
  SyncPointGuard guard;
  bool swapped = false;
  SwapForSymlinkAt("FileSnapshotVolume::Create:before_header", dir, ".cowsnap", (dir / "victim"),
                   &swapped);
  std::unique_ptr<FileSnapshotVolume> volume;
  ASSERT_TRUE(FileSnapshotVolume::CreateUnique((dir / "db."), 4096, "db", &volume).ok());
  sync::SetCallback(nullptr);
  ASSERT_TRUE(swapped);
  std::vector<uint8_t> page(4096, 'v'), back(4096);
  ASSERT_TRUE(volume->put(3, page.data()).ok());
  ASSERT_TRUE(volume->get(3, back.data()).ok());
  EXPECT_TRUE(back == page);
  EXPECT_TRUE(ReadFile<Bytes>((dir / "victim")) == precious);
}

// A name taken in advance (planted, or left behind) is never reused: the
// next name is tried.
TEST(HostileFilesTest, ANameTakenInAdvanceIsSkipped) {
  static int calls;
  calls = 0;
  const auto taken_three_times = [](const char* path) {
    if (++calls <= 3) {
      errno = EEXIST;
      return -1;
    }
    return CreateExclusiveFile(path);
  };
  TempDir dir;
  std::string path;
  const int fd = MakeUnique((dir / "x."), ".tmp", taken_three_times, &path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(dir.list(), std::vector<std::string>{BaseName(path)});
  // A planted file under the name AtomicFile would pick is never opened:
  // names are random, and O_EXCL|O_NOFOLLOW refuses an existing one.
  WriteFile((dir / "out.cowtmp-1-0"), {1});
  std::unique_ptr<AtomicFile> f;
  ASSERT_TRUE(AtomicFile::Create((dir / "out"), false, &f).ok());
  EXPECT_NE(f->temp_path(), (dir / "out.cowtmp-1-0"));
  EXPECT_TRUE(ReadFile<Bytes>((dir / "out.cowtmp-1-0")) == std::vector<uint8_t>{1});
}

// OpenRegular opens nothing but a regular file, and never blocks on a FIFO.
TEST(HostileFilesTest, OpenRegularRefusesFifosAndSymlinks) {
  TempDir dir;
  ASSERT_EQ(mkfifo((dir / "fifo").c_str(), 0600), 0);
  WriteFile((dir / "file"), {1, 2});
  ASSERT_EQ(symlink((dir / "file").c_str(), (dir / "link").c_str()), 0);
  EXPECT_EQ(OpenRegular((dir / "fifo"), O_RDONLY), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(OpenRegular((dir / "link"), O_RDONLY), -1);
  EXPECT_EQ(errno, ELOOP);
  const int fd = OpenRegular((dir / "file"), O_RDONLY);
  EXPECT_GE(fd, 0);
  ::close(fd);
}

// RemoveTree removes a symlink inside the tree; it never walks into (and
// empties) the directory the link points to.
TEST(HostileFilesTest, RemoveTreeNeverFollowsALink) {
  TempDir dir;
  ASSERT_EQ(mkdir((dir / "tree").c_str(), 0700), 0);
  ASSERT_EQ(mkdir((dir / "tree/sub").c_str(), 0700), 0);
  ASSERT_EQ(mkdir((dir / "outside").c_str(), 0700), 0);
  WriteFile((dir / "outside/precious"), {7});
  ASSERT_EQ(symlink((dir / "outside").c_str(), (dir / "tree/sub/link").c_str()), 0);
  RemoveTree((dir / "tree"));
  EXPECT_FALSE(PathExists((dir / "tree")));
  EXPECT_TRUE(ReadFile<Bytes>((dir / "outside/precious")) == std::vector<uint8_t>{7});
}

// A destination directory reached through a symlink is still swept: only
// what the sweep removes is never followed, not the directory it lists.
TEST(HostileFilesTest, SweepsWorkInADirectoryReachedThroughASymlink) {
  TempDir dir;
  ASSERT_EQ(mkdir((dir / "real").c_str(), 0700), 0);
  ASSERT_EQ(symlink((dir / "real").c_str(), (dir / "link").c_str()), 0);
  const pid_t dead = [] {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, nullptr, 0);
    return pid;
  }();
  const std::string stale = "out.cowtmp-" + std::to_string(dead) + "-0";
  WriteFile(dir / ("real/" + stale), Bytes{1});
  EXPECT_EQ(AtomicFile::RemoveStale(dir / "link/out"), std::vector<std::string>{dir / ("link/" + stale)});
  EXPECT_FALSE(PathExists(dir / ("real/" + stale)));
}

// The sweeps remove only what this user owns: run as root, a stale-looking
// file of another user (nobody) stays; run as nobody in a directory both
// can write, root's stale-looking file stays.
TEST(HostileFilesTest, SweepsTouchOnlyThisUsersFiles) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make files of another user";
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0777), 0);  // writable by all, no sticky bit
  const pid_t dead = [] {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, nullptr, 0);
    return pid;
  }();
  const std::string nobodys = dir / ("out.cowtmp-" + std::to_string(dead) + "-0");
  const std::string roots = dir / ("out.cowtmp-" + std::to_string(dead) + "-1");
  const auto plant = [&] {
    WriteFile(nobodys, {1});
    WriteFile(roots, {2});
    ASSERT_EQ(chown(nobodys.c_str(), 65534, 65534), 0);
  };
  plant();
  const pid_t child = fork();
  if (child == 0) {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(2);
    const auto removed = AtomicFile::RemoveStale((dir / "out"));
    _exit(removed == std::vector<std::string>{nobodys} ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "nobody's sweep: status " << status;
  EXPECT_TRUE(PathExists(roots)) << "nobody's sweep removed root's file";
  plant();
  EXPECT_EQ(AtomicFile::RemoveStale((dir / "out")), std::vector<std::string>{roots});
  EXPECT_TRUE(PathExists(nobodys)) << "root's sweep removed nobody's file";
}

// ---- A SQLite image is never published beside a -wal or -journal ----------
// SQLite would apply either to the new database (CheckSqliteSidecars); the
// real files, made by Debian's sqlite3 shell, are in cli_hostile_test.

// What is refused: anything under either name except what SQLite ignores
// (an empty file; a journal whose first byte is zero). Nothing is removed.
TEST(HostileFilesTest, SqliteSidecarsAreRefusedUnlessSqliteIgnoresThem) {
  TempDir dir;
  const std::string out = dir / "out.db";
  EXPECT_TRUE(CheckSqliteSidecars(out).ok());
  Bytes zeroed_head(28 + 4096, 0);  // journal_mode=PERSIST zeroes the header
  zeroed_head[100] = 0xd9;
  Bytes hot_head = zeroed_head;
  hot_head[0] = 0xd9;
  const struct {
    const char* suffix;
    Bytes bytes;
    bool refused;
  } cases[] = {{"-wal", {}, false},           {"-journal", {}, false},
               {"-journal", zeroed_head, false}, {"-wal", zeroed_head, true},
               {"-wal", {0x37, 0x7f, 6, 0x82}, true}, {"-journal", hot_head, true},
               {"-shm", hot_head, false}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.suffix) + " of " + std::to_string(c.bytes.size()) + " bytes");
    const std::string path = out + c.suffix;
    WriteFile(path, c.bytes);
    const Status s = CheckSqliteSidecars(out);
    EXPECT_EQ(s.ok(), !c.refused) << s.ToString();
    if (c.refused) {
      EXPECT_NE(s.ToString().find("SQLite would apply it to the new database"), std::string::npos) << s.ToString();
      EXPECT_NE(s.ToString().find("remove it if it belongs to no live database: " + path), std::string::npos)
          << s.ToString();
    }
    EXPECT_TRUE(ReadFile<Bytes>(path) == c.bytes) << "the check changed " << path;
    ASSERT_EQ(::unlink(path.c_str()), 0);
  }
}

TEST(HostileFilesTest, SqliteSidecarsThatAreNotRegularFilesAreRefused) {
  TempDir dir;
  const std::string out = dir / "out.db";
  WriteFile(dir / "target", Bytes{});  // an empty file behind a link is still refused
  for (const char* suffix : {"-wal", "-journal"}) {
    const std::string path = out + suffix;
    const auto expect_refused = [&](const char* kind) {
      const Status s = CheckSqliteSidecars(out);
      EXPECT_FALSE(s.ok()) << kind << " " << suffix;
      EXPECT_EQ(s.ToString().rfind(std::string(kind) + " stands where SQLite looks for", 0), 0u) << s.ToString();
      EXPECT_NE(s.ToString().find(path), std::string::npos) << s.ToString();
    };
    ASSERT_EQ(::symlink((dir / "target").c_str(), path.c_str()), 0);
    expect_refused("a symbolic link");
    ASSERT_EQ(::unlink(path.c_str()), 0);
    ASSERT_EQ(::symlink((dir / "nowhere").c_str(), path.c_str()), 0);  // dangling
    expect_refused("a symbolic link");
    ASSERT_EQ(::unlink(path.c_str()), 0);
    ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);  // never opened: a blocked open would hang here
    expect_refused("a FIFO");
    EXPECT_TRUE(PathExists(path));
    ASSERT_EQ(::unlink(path.c_str()), 0);
    ASSERT_EQ(::mkdir(path.c_str(), 0700), 0);
    expect_refused("a directory");
    ASSERT_EQ(::rmdir(path.c_str()), 0);
  }
}

// An empty -wal that a process has open belongs to a live database whose
// next commit would land in it: refused too.
TEST(HostileFilesTest, AnEmptySqliteSidecarOpenInAProcessIsRefused) {
  TempDir dir;
  const std::string out = dir / "out.db";
  for (const char* suffix : {"-wal", "-journal"}) {
    const std::string path = out + suffix;
    WriteFile(path, Bytes{});
    const int held = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(held, 0);
    const Status s = CheckSqliteSidecars(out);
    ::close(held);
    EXPECT_FALSE(s.ok()) << suffix;
    EXPECT_NE(s.ToString().find("is open in a process, so it belongs to a live database"), std::string::npos)
        << s.ToString();
    EXPECT_TRUE(CheckSqliteSidecars(out).ok()) << "closed, it is harmless";
    ASSERT_EQ(::unlink(path.c_str()), 0);
  }
}

// AtomicFile: a SQLite image is checked before anything is created, and a
// -wal that appears while it is written (planted at the sync point after
// the temporary exists) is seen at commit: nothing is published, the
// temporary goes, the planted file stays. An archive (kOther) is not a
// database: its sidecars do not matter.
TEST(HostileFilesTest, ASqliteImageIsNeverPublishedBesideAWalOrJournal) {
  const Bytes frames = {0x37, 0x7f, 0x06, 0x82, 0, 0x2d, 0xe2, 0x18};
  for (const char* suffix : {"-wal", "-journal"}) {
    SCOPED_TRACE(suffix);
    TempDir dir;
    const std::string out = dir / "out.db", side = out + suffix;
    const Bytes page(4096, 'x');
    WriteFile(side, frames);
    std::unique_ptr<AtomicFile> f;
    Status s = AtomicFile::Create(out, false, &f, Contents::kSqliteImage);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.ToString().find(side), std::string::npos) << s.ToString();
    EXPECT_EQ(dir.list(), std::vector<std::string>{BaseName(side)}) << "a temporary was made";
    ASSERT_EQ(::unlink(side.c_str()), 0);

    SyncPointGuard guard;
    sync::SetCallback([&](const char* name) {
      if (strcmp(name, "AtomicFile::Create:created") == 0) WriteFile(side, frames);
    });
    ASSERT_TRUE(AtomicFile::Create(out, false, &f, Contents::kSqliteImage).ok());
    sync::SetCallback(nullptr);
    ASSERT_TRUE(f->append(page.data(), page.size()).ok());
    s = f->commit();
    EXPECT_FALSE(s.ok()) << "published beside a " << suffix << " that appeared while writing";
    EXPECT_NE(s.ToString().find("SQLite would apply it to the new database"), std::string::npos) << s.ToString();
    f.reset();  // abandons
    EXPECT_FALSE(PathExists(out));
    EXPECT_EQ(dir.list(), std::vector<std::string>{BaseName(side)});
    EXPECT_TRUE(ReadFile<Bytes>(side) == frames);

    ASSERT_TRUE(AtomicFile::Create(dir / "out.cbk", false, &f).ok());
    WriteFile(dir / ("out.cbk" + std::string(suffix)), frames);
    ASSERT_TRUE(f->append(page.data(), page.size()).ok());
    EXPECT_TRUE(f->commit().ok()) << "an archive is not a database";
  }
}

}  // namespace
}  // namespace cowbackup::test
