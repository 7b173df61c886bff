// `cowbackup status SOURCE` (issue 12, item 7) against real processes: a
// forked child attaches to the database's coordination region (and claims
// and arms a job, and is killed), and the built tool, a process of its own,
// reports what it finds. Status never creates a region, never rebuilds one
// it refuses, and names the file when it refuses one.
#include <signal.h>

#include <regex>

#include "coord/region.h"
#include "engine/checksum.h"
#include "engine/snapshot_volume.h"
#include "tests/cli/cli_harness.h"
#include "test_util/processes.h"

namespace cowbackup::clitest {
namespace {

using coord::Job;
using coord::JobState;
using coord::Region;
using test::Pipe;
using test::Spawn;
using test::Wait;
namespace layout = coord::layout;

// The fields a child's job reports, read back from the region's bytes.
Job JobInRegion(const std::string& region) {
  const std::string bytes = ReadFile(region);
  Job j;
  EXPECT_GE(bytes.size(), layout::kFixedSize);
  if (bytes.size() < layout::kFixedSize) return j;
  Status s = coord::DecodeJob(reinterpret_cast<const uint8_t*>(bytes.data()), region, &j);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return j;
}

class StatusCliTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    db_ = Path("app.db");
    MakeSqliteDb(db_, 20);
    region_ = coord::RegionPathForSqlite(db_);
  }
  void TearDown() override {
    for (pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      Wait(pid);
    }
  }

  // A child attached to `region` for the database file `db` until `hold_`
  // closes; with `volume`, it also claims a job with a one-page state area
  // whose header says 100 pages, 7 preserved, 42 done, creates the job's
  // snapshot volume there, and arms. Returns once it is all done.
  pid_t StartParticipant(const std::string& region, const std::string& db, const std::string& volume = "") {
    Pipe ready;
    const pid_t child = Spawn([&] {
      const int db_fd = ::open(db.c_str(), O_RDONLY | O_CLOEXEC);
      std::unique_ptr<Region> r;
      if (db_fd < 0 || !Region::Attach(region, db_fd, &r).ok()) return 1;
      if (!volume.empty()) {
        Job dead;
        std::unique_ptr<FileSnapshotVolume> v;
        if (!r->ClaimJob(volume, 4096, &dead).ok() || !FileSnapshotVolume::Create(volume, 4096, db, &v).ok()) return 2;
        Job j;
        if (!r->ReadJob(&j).ok()) return 3;
        const int fd = ::open(region.c_str(), O_WRONLY | O_CLOEXEC);
        uint8_t h[24];
        EncodeFixed64(h, 100);
        EncodeFixed64(h + 8, 7);
        EncodeFixed64(h + 16, 42);
        if (fd < 0 || ::pwrite(fd, h, sizeof h, off_t(j.page_state_offset + layout::kOffPsPages)) != 24) return 4;
        ::close(fd);
        if (!r->Arm("t0").ok()) return 5;
        v.release();  // its file stays: the volume of a job that may die
      }
      ready.Tell();
      hold_.CloseWrite();
      hold_.Hear();
      return 0;
    });
    children_.push_back(child);
    ready.CloseWrite();
    EXPECT_TRUE(ready.Hear()) << "the child failed to attach, claim or arm";
    return child;
  }
  void Kill(pid_t child) {
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    ASSERT_TRUE(WIFSIGNALED(Wait(child)));
    children_.erase(std::find(children_.begin(), children_.end(), child));
  }

  // The row `key` of status's text report ("" if absent).
  static std::string Row(const std::string& out, const std::string& key) {
    std::smatch m;
    if (!std::regex_search(out, m, std::regex("(^|\n)" + key + " +([^\n]*)"))) return "";
    return m[2].str();
  }

  std::string db_, region_;
  Pipe hold_;
  std::vector<pid_t> children_;
};

TEST_F(StatusCliTest, ADatabaseNoOneOpenedHasNoRegionAndStatusMakesNone) {
  Result r = Cow("status " + Sh(db_));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(Row(r.out, "kind"), "sqlite");
  EXPECT_EQ(Row(r.out, "region"), region_);
  EXPECT_EQ(Row(r.out, "region_exists"), "no: no process has opened it through cowbackup");
  EXPECT_EQ(Row(r.out, "stale_files"), "none");
  r = Cow("status --json " + Sh(db_));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['region'] == " + Sh(region_) + " and d['region_exists'] is False and d['processes'] == [] "
                    "and d['job'] is None and d['stale_files'] == [] and d['ok'] is True and d['error'] is None");
  EXPECT_EQ(Entries(), std::vector<std::string>{"app.db"}) << "nothing created";

  // The same for an LMDB environment, and for one opened MDB_NOSUBDIR.
  MakeLmdbEnv(Path("env"), 5, 5);
  r = Cow("status " + Sh(Path("env")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Row(r.out, "kind"), "lmdb");
  EXPECT_EQ(Row(r.out, "region"), Path("env/cowbackup-region"));
  EXPECT_EQ(Row(r.out, "region_exists"), "no: no process has opened it through cowbackup");
  EXPECT_FALSE(Exists(Path("env/cowbackup-region")));
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_open(env, Path("flat.mdb").c_str(), MDB_NOSUBDIR, 0600), 0);
  mdb_env_close(env);
  r = Cow("status --json " + Sh(Path("flat.mdb")));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['kind'] == 'lmdb' and d['region'] == " + Sh(Path("flat.mdb-cowbackup")) +
                        " and d['region_exists'] is False");
  EXPECT_FALSE(Exists(Path("flat.mdb-cowbackup")));
}

TEST_F(StatusCliTest, ShowsAnotherProcessAttachedWithItsArmedJob) {
  const std::string volume = Path("app.cbk.1-1.cowsnap");
  const pid_t child = StartParticipant(region_, db_, volume);
  const Job job = JobInRegion(region_);
  ASSERT_EQ(job.state, JobState::kRunning);
  ASSERT_EQ(job.owner_pid, child);
  const std::string child_pid = std::to_string(child), id = std::to_string(job.job_id);

  Result r = Cow("status " + Sh(db_));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Row(r.out, "region_exists").rfind("yes (generation ", 0), 0u) << r.out;
  EXPECT_EQ(Row(r.out, "processes"), "2 attached") << r.out;
  EXPECT_TRUE(std::regex_search(Row(r.out, "  pid " + child_pid),
                                std::regex("^slot 0, since [0-9-]+T[0-9:.]+Z$")))
      << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\n  pid [0-9]+ +slot 1, since [^\n]+ \\(this command\\)\n")))
      << r.out;
  EXPECT_EQ(Row(r.out, "job"), "running");
  EXPECT_EQ(Row(r.out, "job_id"), id);
  EXPECT_EQ(Row(r.out, "owner_pid"), child_pid + " (slot 0)");
  EXPECT_EQ(Row(r.out, "volume"), volume);
  EXPECT_EQ(Row(r.out, "pages"), "100");
  EXPECT_EQ(Row(r.out, "preserved"), "7");
  EXPECT_EQ(Row(r.out, "done"), "42");
  EXPECT_EQ(Row(r.out, "stale_files"), "none") << "a live job's volume is not stale";

  r = Cow("status --json " + Sh(db_));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['source'] == " + Sh(db_) + " and d['kind'] == 'sqlite' and d['database'] == " + Sh(db_));
  ExpectJson(r.out, "d['region'] == " + Sh(region_) + " and d['region_exists'] is True and d['generation'] >= 1");
  ExpectJson(r.out, "d['recovery'] is None and d['ok'] is True and d['error'] is None");
  ExpectJson(r.out, "len(d['processes']) == 2");
  ExpectJson(r.out, "d['processes'][0]['pid'] == " + child_pid +
                        " and d['processes'][0]['slot'] == 0 and d['processes'][0]['self'] is False");
  ExpectJson(r.out, "d['processes'][1]['slot'] == 1 and d['processes'][1]['self'] is True and "
                    "d['processes'][1]['pid'] not in (" + child_pid + ", " + std::to_string(::getpid()) + ")");
  ExpectJson(r.out, "all(p['since_unix_us'] > 1.6e15 and __import__('re').fullmatch("
                    "r'\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{6}Z', p['since']) for p in d['processes'])");
  ExpectJson(r.out, "d['job']['state'] == 'running' and d['job']['id'] == '" + id + "' and d['job']['owner_pid'] == " +
                        child_pid + " and d['job']['owner_slot'] == 0");
  ExpectJson(r.out, "d['job']['claimed_unix_us'] == " + std::to_string(job.claimed_unix_us) +
                        " and d['job']['claimed'].endswith('Z') and d['job']['volume_path'] == " + Sh(volume));
  ExpectJson(r.out, "d['job']['progress'] == {'pages': 100, 'preserved': 7, 'done': 42}");
  ExpectJson(r.out, "d['stale_files'] == []");

  // Status took part for a moment and left: the child still runs its job.
  const Job after = JobInRegion(region_);
  EXPECT_EQ(after.state, JobState::kRunning);
  EXPECT_EQ(after.job_id, job.job_id);
  r = Cow("status " + Sh(db_));
  EXPECT_EQ(Row(r.out, "processes"), "2 attached") << "status's slot was freed and taken again";
}

TEST_F(StatusCliTest, AKilledOwnersJobIsDeadAndItsVolumeAndTemporariesAreListed) {
  const std::string volume = Path("app.cbk.1-1.cowsnap");
  const pid_t child = StartParticipant(region_, db_, volume);
  const Job job = JobInRegion(region_);
  Kill(child);
  const std::string dead = std::to_string(child);
  // Leftovers of dead processes beside the database, and look-alikes that
  // are not regular files of ours: never listed, opened or followed.
  WriteFile(Path("app.db.cowtmp-" + dead + "-1"), "half a restore");
  ASSERT_EQ(mkfifo(Path("fifo.cowtmp-" + dead + "-2").c_str(), 0600), 0);
  ASSERT_EQ(symlink(Path("app.db").c_str(), Path("link.cowtmp-" + dead + "-3").c_str()), 0);
  ASSERT_EQ(mkfifo(Path("other." + dead + "-4.cowsnap").c_str(), 0600), 0);
  ASSERT_EQ(symlink(volume.c_str(), Path("link." + dead + "-5.cowsnap").c_str()), 0);

  Result r = Cow("status " + Sh(db_));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Row(r.out, "processes"), "1 attached") << r.out;
  EXPECT_EQ(Row(r.out, "recovered"), "job " + std::to_string(job.job_id) + " (pid " + dead + ") marked dead")
      << "status was the region's first opener (R1)\n" << r.out;
  EXPECT_EQ(Row(r.out, "job"), "dead");
  EXPECT_EQ(Row(r.out, "owner_pid"), dead + " (slot 0)");
  EXPECT_EQ(Row(r.out, "progress"), "none (its per-page state area is no longer in the region)");
  EXPECT_EQ(Row(r.out, "stale_files"), "2") << r.out;
  EXPECT_NE(r.out.find("\n  " + volume + "  (snapshot volume of dead job " + std::to_string(job.job_id) + " (pid " +
                       dead + "))\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\n  " + Path("app.db.cowtmp-" + dead + "-1") + "  (temporary output; its process is gone)\n"),
            std::string::npos)
      << r.out;

  r = Cow("status --json " + Sh(db_));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['job']['state'] == 'dead' and d['job']['owner_pid'] == " + dead + " and d['job']['id'] == '" +
                        std::to_string(job.job_id) + "' and d['job']['volume_path'] == " + Sh(volume));
  ExpectJson(r.out, "d['job']['progress'] is None");  // its area went with the first opener (R1)
  ExpectJson(r.out, "sorted(f['path'] for f in d['stale_files']) == sorted([" + Sh(volume) + ", " +
                        Sh(Path("app.db.cowtmp-" + dead + "-1")) + "])");
  ExpectJson(r.out, "[f['what'] for f in d['stale_files'] if f['path'] == " + Sh(volume) +
                        "] == ['snapshot volume of dead job " + std::to_string(job.job_id) + " (pid " + dead + ")']");
  ExpectJson(r.out, "len(d['processes']) == 1 and d['processes'][0]['self'] is True and d['ok'] is True");
  // Listed, never removed: the next backup's sweep does that.
  EXPECT_TRUE(Exists(volume));
  EXPECT_TRUE(Exists(Path("app.db.cowtmp-" + dead + "-1")));
}

TEST_F(StatusCliTest, AnLmdbEnvironmentsParticipantIsShown) {
  MakeLmdbEnv(Path("env"), 5, 5);
  const std::string region = coord::RegionPathForLmdb(Path("env"), false);
  const pid_t child = StartParticipant(region, Path("env/data.mdb"));
  Result r = Cow("status --json " + Sh(Path("env") + "/"));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['kind'] == 'lmdb' and d['region'] == " + Sh(region) + " and d['database'] == " +
                        Sh(Path("env/data.mdb")));
  ExpectJson(r.out, "[p['pid'] for p in d['processes'] if not p['self']] == [" + std::to_string(child) +
                        "] and d['job'] is None");
}

// ---- Refused regions: exit 1, the file named, the file left as it was ----

TEST_F(StatusCliTest, ASymlinkAtTheRegionsNameIsRefusedAndNotFollowed) {
  ASSERT_EQ(symlink(Path("target").c_str(), region_.c_str()), 0);
  Result r = Cow("status " + Sh(db_));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "cowbackup: status: coordination region: is a symbolic link; only a regular file is used: " +
                       region_ + "\n");
  EXPECT_FALSE(Exists(Path("target"))) << "followed";
  r = Cow("status --json " + Sh(db_));
  EXPECT_EQ(r.code, 1);
  ExpectJson(r.out, "d['ok'] is False and d['region_exists'] is True and d['error'].endswith(" + Sh(region_) + ")");
  EXPECT_EQ(r.err_lines(), 1u) << r.err;
}

TEST_F(StatusCliTest, ARegionOfAnotherVersionIsRefusedAndNotRebuilt) {
  {
    const int db_fd = ::open(db_.c_str(), O_RDONLY | O_CLOEXEC);
    std::unique_ptr<Region> made;
    ASSERT_TRUE(Region::Attach(region_, db_fd, &made).ok());
    ::close(db_fd);
  }
  std::string bytes = ReadFile(region_);
  ASSERT_EQ(bytes.size(), layout::kFixedSize);
  auto* p = reinterpret_cast<uint8_t*>(bytes.data());
  EncodeFixed32(p + layout::kOffVersion, 2);
  EncodeFixed64(p + layout::kOffHeaderChecksum, Checksum::Of(p, layout::kOffHeaderChecksum));
  WriteFile(region_, bytes);
  ASSERT_EQ(::chmod(region_.c_str(), 0600), 0);

  Result r = Cow("status " + Sh(db_));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: status: coordination region: format version 2 (this build reads 1): " + region_ + "\n");
  EXPECT_EQ(ReadFile(region_), bytes) << "no one else was attached, yet status rebuilt nothing";

  // Writable by others: refused by name too.
  ASSERT_EQ(::chmod(region_.c_str(), 0666), 0);
  r = Cow("status " + Sh(db_));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("is writable by group or others (mode 0666)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(region_), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cowbackup::clitest
