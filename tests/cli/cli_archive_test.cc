// build/cowbackup info, verify and restore, driven as a user would: real
// SQLite databases and LMDB environments archived with the engine, then
// every good and bad input of issue 5 item 3, exit codes and --json.
#include "tests/cli/cli_harness.h"

namespace cowbackup::clitest {
namespace {

class ArchiveCliTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    db_ = Path("app.db");
    MakeSqliteDb(db_, 400);
    image_ = ReadFile(db_);
    archive_ = Path("app.cbk");
    WriteArchive(archive_, image_);
    pages_ = image_.size() / 4096;
  }
  std::string db_, image_, archive_;
  uint64_t pages_ = 0;
};

// ---- info ----

TEST_F(ArchiveCliTest, InfoShowsHeaderMetadataCountsAndSizes) {
  Result r = Cow("info " + Sh(archive_));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("state            complete"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("source_kind      sqlite"), std::string::npos);
  EXPECT_NE(r.out.find("page_size        4096"), std::string::npos);
  EXPECT_NE(r.out.find("page_count       " + std::to_string(pages_)), std::string::npos);
  EXPECT_NE(r.out.find("created          2023-11-14T22:13:20.123456Z"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  source=test.db\n  tool=cli_test\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("archive_bytes    " + std::to_string(ReadFile(archive_).size())),
            std::string::npos);
}

TEST_F(ArchiveCliTest, InfoJsonIsOneObjectWithEveryField) {
  Result r = Cow("info --json " + Sh(archive_));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string n = std::to_string(pages_);
  ExpectJson(r.out,
             "d['state'] == 'complete' and d['complete'] is True and d['error'] is None and "
             "d['header']['format_version'] == 1 and d['header']['source_kind'] == 'sqlite' and "
             "d['header']['page_size'] == 4096 and d['header']['page_count'] == " + n +
             " and d['header']['database_bytes'] == " + std::to_string(image_.size()) +
             " and d['header']['created_unix_us'] == 1700000000123456 and "
             "d['header']['metadata'] == {'source': 'test.db', 'tool': 'cli_test'} and "
             "d['trailer']['page_records'] == " + n +
             " and d['trailer']['overlay_records'] == 0 and len(d['trailer']['digest']) == 16 and "
             "d['page_records'] == " + n + " and d['archive_bytes'] == " +
             std::to_string(ReadFile(archive_).size()));
}

TEST_F(ArchiveCliTest, InfoOnTruncatedArchiveShowsHeaderAndSaysIncomplete) {
  const std::string bytes = ReadFile(archive_);
  const std::string cut = Path("cut.cbk");
  // Cut mid-way through page 3's record; read through a pipe so the early
  // size check cannot catch it first.
  WriteFile(cut, bytes.substr(0, RecordOffset(bytes, 3, 4096) + 100));
  Result r = Shell("cat " + Sh(cut) + " | " + Sh(Binary()) + " info -");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("source_kind      sqlite"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("state            incomplete"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("page_records     3 (read before the problem)"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "cowbackup: info: incomplete archive: ends inside a record: <stdin>: offset " +
                       std::to_string(RecordOffset(bytes, 3, 4096)) + ", page 3\n");

  r = Cow("info --json " + Sh(cut));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err_lines(), 1u) << r.err;
  ExpectJson(r.out,
             "d['state'] == 'incomplete' and d['complete'] is False and 'pages' in d['error'] and "
             "d['header']['page_size'] == 4096 and d['trailer'] is None");
}

TEST_F(ArchiveCliTest, InfoOnCorruptArchiveSaysCorrupt) {
  std::string bytes = ReadFile(archive_);
  bytes[RecordOffset(bytes, 1, 4096) + 40] ^= 1;
  WriteFile(archive_, bytes);
  Result r = Cow("info --json " + Sh(archive_));
  EXPECT_EQ(r.code, 1);
  ExpectJson(r.out, "d['state'] == 'corrupt' and 'page 1' in d['error'] and d['page_records'] == 1");
}

// ---- verify ----

TEST_F(ArchiveCliTest, VerifyAcceptsAGoodArchive) {
  Result r = Cow("verify " + Sh(archive_));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find(": ok (sqlite, " + std::to_string(pages_) + " pages of 4096 bytes"),
            std::string::npos)
      << r.out;
  r = Cow("verify --quiet " + Sh(archive_));
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out + r.err, "");
  r = Cow("verify --json " + Sh(archive_));
  EXPECT_EQ(r.code, 0);
  ExpectJson(r.out, "d['ok'] is True and d['state'] == 'ok' and d['error'] is None and "
                    "d['deep'] is None and d['header']['page_count'] == " + std::to_string(pages_));
}

TEST_F(ArchiveCliTest, VerifyNamesOffsetAndPageOfABadRecord) {
  std::string bytes = ReadFile(archive_);
  const uint64_t at = RecordOffset(bytes, 2, 4096);
  bytes[at + 16 + 1000] ^= 0x40;  // inside page 2's payload
  WriteFile(archive_, bytes);
  Result r = Cow("verify " + Sh(archive_));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "cowbackup: verify: corrupt archive: bad record checksum: " + archive_ +
                       ": offset " + std::to_string(at) + ", page 2\n");
  r = Cow("verify --json " + Sh(archive_));
  EXPECT_EQ(r.code, 1);
  ExpectJson(r.out, "d['ok'] is False and d['state'] == 'corrupt' and "
                    "d['error'].endswith('offset " + std::to_string(at) + ", page 2')");
}

TEST_F(ArchiveCliTest, VerifyReportsTruncationAsIncompleteAtEveryCut) {
  const std::string bytes = ReadFile(archive_);
  const std::string cut = Path("cut.cbk");
  // Header, mid-header, a record boundary, mid-record, just before the end.
  for (size_t len : {size_t(0), size_t(10), size_t(40), size_t(RecordOffset(bytes, 1, 4096)),
                     size_t(RecordOffset(bytes, 1, 4096) + 7), bytes.size() - 1}) {
    WriteFile(cut, bytes.substr(0, len));
    Result r = Cow("verify --json " + Sh(cut));
    EXPECT_EQ(r.code, 1) << len;
    EXPECT_EQ(r.err_lines(), 1u) << len << r.err;
    ExpectJson(r.out, "d['ok'] is False and d['state'] == 'incomplete' and "
                      "d['error'].startswith('incomplete archive: ')");
    EXPECT_EQ(r.err.rfind("cowbackup: verify: incomplete archive: ", 0), 0u) << r.err;
  }
}

TEST_F(ArchiveCliTest, VerifyRefusesAFutureFormatVersionByName) {
  std::string bytes = ReadFile(archive_);
  EncodeFixed32(reinterpret_cast<uint8_t*>(bytes.data()) + format::kOffVersion, 2);
  WriteFile(archive_, bytes);
  for (const char* cmd : {"verify ", "info ", "restore --force "}) {
    Result r = Cow(cmd + Sh(archive_) + (cmd[0] == 'r' ? " " + Sh(Path("out.db")) : ""));
    EXPECT_EQ(r.code, 1) << cmd;
    EXPECT_NE(r.err.find("format_version 2 is not supported (this build reads version 1): " + archive_),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.err_lines(), 1u) << r.err;
  }
  EXPECT_FALSE(Exists(Path("out.db")));
}

TEST_F(ArchiveCliTest, VerifyRejectsThingsThatAreNotArchives) {
  Result r = Cow("verify " + Sh(db_));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: verify: not a cowbackup archive (bad magic): " + db_ + "\n");
  r = Cow("verify " + Sh(dir_));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: verify: is a directory, not an archive: " + dir_ + "\n");
  r = Cow("verify " + Sh(Path("missing.cbk")));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: verify: open: " + Path("missing.cbk") + ": No such file or directory\n");
  r = Cow("verify --json " + Sh(Path("missing.cbk")));
  EXPECT_EQ(r.code, 1);
  ExpectJson(r.out, "d['ok'] is False and d['header'] is None");
}

TEST_F(ArchiveCliTest, VerifyReadsStandardInput) {
  Result r = Shell("cat " + Sh(archive_) + " | " + Sh(Binary()) + " verify -");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("-: ok"), std::string::npos) << r.out;
}

TEST_F(ArchiveCliTest, VerifyDeepRunsSqliteIntegrityCheck) {
  Result r = Cow("verify --deep --json " + Sh(archive_), "TMPDIR=" + Sh(dir_) + " ");
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['ok'] is True and d['deep']['check'] == 'sqlite integrity_check' and "
                    "d['deep']['ok'] is True");
  // The temporary copy is gone.
  EXPECT_EQ(Entries(), (std::vector<std::string>{"app.cbk", "app.db"}));
  r = Cow("verify --deep " + Sh(archive_) + " --temp-dir " + Sh(dir_));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("sqlite integrity_check ok"), std::string::npos) << r.out;
}

TEST_F(ArchiveCliTest, VerifyDeepFindsDamageTheChecksumsCannotSee) {
  // A database damaged before it was archived: every record checksum is
  // right, only SQLite can tell.
  std::string damaged = image_;
  for (size_t i = 4096 * 2 + 100; i < 4096 * 3; i++) damaged[i] = char(0x5a);
  WriteArchive(archive_, damaged);
  Result r = Cow("verify " + Sh(archive_));
  EXPECT_EQ(r.code, 0) << r.err;
  r = Cow("verify --deep --temp-dir " + Sh(dir_) + " " + Sh(archive_));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err_lines(), 1u) << r.err;
  EXPECT_NE(r.err.find("cowbackup: verify: sqlite integrity_check"), std::string::npos) << r.err;
  EXPECT_EQ(Entries(), (std::vector<std::string>{"app.cbk", "app.db"}));
}

TEST_F(ArchiveCliTest, VerifyDeepOnTheWrongKindFailsClearly) {
  // A raw archive has no engine to ask.
  ArchiveSpec raw;
  raw.kind = format::SourceKind::kRaw;
  WriteArchive(Path("raw.cbk"), image_, raw);
  Result r = Cow("verify --deep --temp-dir " + Sh(dir_) + " " + Sh(Path("raw.cbk")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--deep has no check for source kind 'raw'"), std::string::npos) << r.err;
  // An archive labelled sqlite holding something else.
  WriteArchive(Path("junk.cbk"), std::string(8192, 'j'));
  r = Cow("verify --deep --temp-dir " + Sh(dir_) + " " + Sh(Path("junk.cbk")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the archive says SQLite, but its page 1 is not a SQLite database"),
            std::string::npos)
      << r.err;
  // An archive labelled lmdb holding a SQLite database.
  ArchiveSpec lmdb;
  lmdb.kind = format::SourceKind::kLmdb;
  WriteArchive(Path("sqlite-as-lmdb.cbk"), image_, lmdb);
  r = Cow("verify --deep --temp-dir " + Sh(dir_) + " " + Sh(Path("sqlite-as-lmdb.cbk")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cowbackup: verify: the archive says LMDB, but neither page 0 nor page 1"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err_lines(), 1u);
}

// ---- restore ----

TEST_F(ArchiveCliTest, RestoreRebuildsTheSqliteFileByteForByte) {
  Result r = Cow("restore " + Sh(archive_) + " " + Sh(Path("out.db")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("restored sqlite, " + std::to_string(pages_) + " pages"), std::string::npos);
  EXPECT_EQ(ReadFile(Path("out.db")), image_);
  EXPECT_EQ(SqliteCount(Path("out.db")), 400);
  struct stat st;
  ASSERT_EQ(stat(Path("out.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ArchiveCliTest, RestoreAppliesOverlayRecords) {
  // Page records hold live content; overlays hold the T0 pre-images.
  std::string live = image_;
  ArchiveSpec spec;
  for (uint64_t pgno : {1u, 3u}) {
    spec.overlays[pgno] = image_.substr(pgno * 4096, 4096);
    for (size_t i = 0; i < 4096; i++) live[pgno * 4096 + i] = char(i);
  }
  WriteArchive(archive_, live, spec);
  Result r = Cow("restore --json " + Sh(archive_) + " " + Sh(Path("out.db")));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['ok'] is True and d['overlay_records'] == 2 and d['output_kind'] == 'file'");
  EXPECT_EQ(ReadFile(Path("out.db")), image_);
}

TEST_F(ArchiveCliTest, RestoreRefusesToOverwriteWithoutForce) {
  WriteFile(Path("out.db"), "precious");
  Result r = Cow("restore " + Sh(archive_) + " " + Sh(Path("out.db")));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: restore: output exists (use --force to replace it): " +
                       Path("out.db") + "\n");
  EXPECT_EQ(ReadFile(Path("out.db")), "precious");
  r = Cow("restore --force " + Sh(archive_) + " " + Sh(Path("out.db")));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(Path("out.db")), image_);
}

TEST_F(ArchiveCliTest, RestoreRefusesToReplaceTheArchiveItself) {
  Result r = Cow("restore --force " + Sh(archive_) + " " + Sh(archive_));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: restore: output is the archive itself: " + archive_ + "\n");
  EXPECT_EQ(Cow("verify -q " + Sh(archive_)).code, 0);
}

TEST_F(ArchiveCliTest, RestoreReadsStandardInput) {
  Result r = Shell("cat " + Sh(archive_) + " | " + Sh(Binary()) + " restore - " + Sh(Path("out.db")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(Path("out.db")), image_);
}

TEST_F(ArchiveCliTest, RestoreOfABadArchiveLeavesNothingBehind) {
  std::string bytes = ReadFile(archive_);
  const std::string corrupt = bytes;
  std::string flipped = bytes;
  flipped[RecordOffset(bytes, pages_ - 1, 4096) + 20] ^= 1;  // the last page
  WriteFile(Path("bad.cbk"), flipped);
  WriteFile(Path("cut.cbk"), bytes.substr(0, bytes.size() - 30));
  for (const char* in : {"bad.cbk", "cut.cbk"}) {
    Result r = Cow("restore " + Sh(Path(in)) + " " + Sh(Path("out.db")));
    EXPECT_EQ(r.code, 1) << in;
    EXPECT_EQ(r.err_lines(), 1u) << r.err;
    EXPECT_EQ(Entries(), (std::vector<std::string>{"app.cbk", "app.db", "bad.cbk", "cut.cbk"})) << in;
  }
  // Through a pipe the cut is only found at the end, after every page was
  // written to the temporary file: still nothing left.
  Result r = Shell("cat " + Sh(Path("cut.cbk")) + " | " + Sh(Binary()) + " restore - " +
                   Sh(Path("out.db")));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("cowbackup: restore: incomplete archive: ends inside a record: <stdin>: "
                        "offset ", 0), 0u) << r.err;
  EXPECT_EQ(Entries(), (std::vector<std::string>{"app.cbk", "app.db", "bad.cbk", "cut.cbk"}));
}

TEST_F(ArchiveCliTest, RestoreOfSqliteArchiveOntoADirectoryFails) {
  mkdir(Path("d").c_str(), 0700);
  Result r = Cow("restore --force " + Sh(archive_) + " " + Sh(Path("d")));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "cowbackup: restore: output is a directory: " + Path("d") + "\n");
}

TEST_F(ArchiveCliTest, RestoreOfAMissingOrDirectoryArchiveFails) {
  Result r = Cow("restore " + Sh(Path("none.cbk")) + " " + Sh(Path("out.db")));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err_lines(), 1u);
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos);
  r = Cow("restore " + Sh(dir_) + " " + Sh(Path("out.db")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("is a directory, not an archive"), std::string::npos);
  EXPECT_FALSE(Exists(Path("out.db")));
}

// ---- LMDB ----

class LmdbCliTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    page_size_ = MakeLmdbEnv(Path("env"), 300, 500);
    image_ = ReadFile(Path("env/data.mdb"));
    ASSERT_EQ(image_.size() % page_size_, 0u);
    spec_.kind = format::SourceKind::kLmdb;
    spec_.page_size = page_size_;
    WriteArchive(Path("env.cbk"), image_, spec_);
  }
  uint32_t page_size_ = 0;
  std::string image_;
  ArchiveSpec spec_;
};

TEST_F(LmdbCliTest, RestoreBuildsAnEnvironmentDirectory) {
  Result r = Cow("restore --json " + Sh(Path("env.cbk")) + " " + Sh(Path("restored")));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectJson(r.out, "d['ok'] is True and d['source_kind'] == 'lmdb' and d['output_kind'] == 'directory'");
  EXPECT_EQ(ReadFile(Path("restored/data.mdb")), image_);
  EXPECT_EQ(Entries("restored"), (std::vector<std::string>{"data.mdb"}));
  // Replacing an environment needs --force, and then works.
  r = Cow("restore " + Sh(Path("env.cbk")) + " " + Sh(Path("restored")));
  EXPECT_EQ(r.code, 1);
  r = Cow("restore -f " + Sh(Path("env.cbk")) + " " + Sh(Path("restored")));
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(LmdbCliTest, RestoreOntoAnExistingFileFails) {
  WriteFile(Path("file"), "keep");
  for (const char* force : {"", "--force "}) {
    Result r = Cow(std::string("restore ") + force + Sh(Path("env.cbk")) + " " + Sh(Path("file")));
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "cowbackup: restore: output exists and is not a directory: " + Path("file") + "\n");
    EXPECT_EQ(ReadFile(Path("file")), "keep");
  }
}

TEST_F(LmdbCliTest, ForceNeverEmptiesADirectoryThatIsNotAnEnvironment) {
  mkdir(Path("home").c_str(), 0700);
  WriteFile(Path("home/notes.txt"), "mine");
  Result r = Cow("restore --force " + Sh(Path("env.cbk")) + " " + Sh(Path("home")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("holds 'notes.txt', not only an LMDB environment"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(Path("home/notes.txt")), "mine");
}

TEST_F(LmdbCliTest, VerifyDeepWalksEveryDatabase) {
  Result r = Cow("verify --deep --json --temp-dir " + Sh(dir_) + " " + Sh(Path("env.cbk")));
  ASSERT_EQ(r.code, 0) << r.err;
  // main: 300 items + 2 named-database records; alpha and beta: 500 each.
  ExpectJson(r.out, "d['ok'] is True and d['deep']['check'] == 'lmdb cursor walk' and "
                    "d['deep']['databases'] == 3 and d['deep']['entries'] == 302 + 1000");
  r = Cow("verify --deep --temp-dir " + Sh(dir_) + " " + Sh(Path("env.cbk")));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("lmdb cursor walk ok: 3 databases, 1302 entries"), std::string::npos) << r.out;
  EXPECT_EQ(Entries(), (std::vector<std::string>{"env", "env.cbk"}));
}

TEST_F(LmdbCliTest, VerifyDeepReportsADamagedEnvironmentWithoutCrashing) {
  // Garble every page past the two meta pages: the checksums still hold,
  // the B-trees do not.
  std::string damaged = image_;
  for (size_t i = 2 * page_size_; i < damaged.size(); i++) damaged[i] = char(i * 131 + 7);
  WriteArchive(Path("bad.cbk"), damaged, spec_);
  Result r = Cow("verify --deep --temp-dir " + Sh(dir_) + " " + Sh(Path("bad.cbk")));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.err_lines(), 1u) << r.err;
  EXPECT_NE(r.err.find("cowbackup: verify: lmdb "), std::string::npos) << r.err;
  EXPECT_EQ(Entries(), (std::vector<std::string>{"bad.cbk", "env", "env.cbk"}));
}

}  // namespace
}  // namespace cowbackup::clitest
