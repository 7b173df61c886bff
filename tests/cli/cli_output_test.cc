// Output a terminal can trust (issue 10, item 6): info, verify and restore
// print archive metadata and paths that may hold escape sequences, CR and
// bytes that are not UTF-8; none of it reaches the terminal raw, in text or
// JSON, reports or error lines. info and info --json show the same keys, and
// an archive that repeats a key is refused by both. (Backups of such paths:
// cli_backup_test.)
#include "tests/backup/inert_text.h"
#include "tests/cli/cli_harness.h"

namespace cowbackup::clitest {
namespace {

using test::InertOnATerminal;
using test::kBadUtf8;
using test::kC1Csi;
using test::kEraseSeq;
using test::kQuerySeq;
using test::kTitleSeq;

class OutputCliTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    db_ = Path("app.db");
    MakeSqliteDb(db_, 50);
  }
  // An archive of app.db whose metadata is `metadata`, stored as is: what a
  // hostile or old writer may have put there.
  std::string Archive(const std::string& name, const std::string& metadata) {
    ArchiveSpec spec;
    spec.metadata = metadata;
    const std::string path = Path(name);
    WriteArchive(path, ReadFile(db_), spec);
    return path;
  }
  // Every stdout and stderr byte is inert, line breaks aside.
  static void ExpectInert(const Result& r) {
    EXPECT_TRUE(InertOnATerminal(r.out, true)) << r.out;
    EXPECT_TRUE(InertOnATerminal(r.err, true)) << r.err;
  }
  std::string db_;
};

TEST_F(OutputCliTest, InfoEscapesHostileMetadataAndShowsTheSameKeysAsJson) {
  const std::string archive = Archive(
      "hostile.cbk", "title=" + kTitleSeq + "\nerase=" + kEraseSeq + "FAKE: all good\nquery=" +
                         kQuerySeq + "\nc1=" + kC1Csi + "\nbad=" + kBadUtf8 + "\n" + kTitleSeq +
                         "=in a key\n");
  Result r = Cow("info " + Sh(archive));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectInert(r);
  const std::string listed =
      "metadata\n"
      "  title=\\x1b]0;pwned\\x07\n"
      "  erase=\\r\\x1b[2KFAKE: all good\n"
      "  query=\\x1b[6n\n"
      "  c1=\\xc2\\x9b\n"
      "  bad=\\xff\\xfe\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82\n"
      "  \\x1b]0;pwned\\x07=in a key\n";
  EXPECT_NE(r.out.find(listed), std::string::npos) << r.out;

  r = Cow("info --json " + Sh(archive));
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectInert(r);
  // The same six keys, in the same order, with their values (bytes that
  // are not UTF-8 become U+FFFD in JSON, which cannot carry them).
  ExpectJson(r.out,
             "list(d['header']['metadata'].items()) == ["
             "('title', '\\x1b]0;pwned\\x07'), ('erase', '\\r\\x1b[2KFAKE: all good'), "
             "('query', '\\x1b[6n'), ('c1', '\\x9b'), ('bad', '\\ufffd' * 9), "
             "('\\x1b]0;pwned\\x07', 'in a key')]");
}

TEST_F(OutputCliTest, ARepeatedMetadataKeyIsCorruptInTextAndJson) {
  const std::string archive = Archive("twice.cbk", "source=a.db\nsource=b.db\n");
  for (const std::string cmd : {"info", "verify"}) {
    Result r = Cow(cmd + " " + Sh(archive));
    EXPECT_EQ(r.code, 1) << cmd;
    EXPECT_EQ(r.out.find("source="), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("metadata key \"source\" appears more than once"), std::string::npos)
        << r.err;
    r = Cow(cmd + " --json " + Sh(archive));
    EXPECT_EQ(r.code, 1) << cmd;
    ExpectJson(r.out, "d['state'] == 'corrupt' and d['header'] is None and "
                      "'appears more than once' in d['error']");
  }
  Result r = Cow("restore " + Sh(archive) + " " + Sh(Path("out.db")));
  EXPECT_EQ(r.code, 1);
  EXPECT_FALSE(Exists(Path("out.db")));
}

TEST_F(OutputCliTest, PathsWithControlCharactersAreEscapedInReportsAndErrors) {
  const std::string odd = kTitleSeq + kEraseSeq + kQuerySeq + kC1Csi + kBadUtf8;
  const std::string shown = "\\x1b]0;pwned\\x07\\r\\x1b[2K\\x1b[6n\\xc2\\x9b"
                            "\\xff\\xfe\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82";
  const std::string archive = Archive("a" + odd + ".cbk", format::MetaLine("source", "x"));

  Result r = Cow("verify " + Sh(archive));
  EXPECT_EQ(r.code, 0) << r.err;
  ExpectInert(r);
  EXPECT_EQ(r.out.rfind(Path("a" + shown + ".cbk: ok ("), 0), 0u) << r.out;

  r = Cow("info " + Sh(archive));
  EXPECT_EQ(r.code, 0) << r.err;
  ExpectInert(r);
  EXPECT_NE(r.out.find("archive" + std::string(10, ' ') + Path("a" + shown + ".cbk\n")),
            std::string::npos)
      << r.out;

  r = Cow("info --json " + Sh(archive));
  ExpectInert(r);
  ExpectJson(r.out, "d['archive'].endswith('/a\\x1b]0;pwned\\x07\\r\\x1b[2K\\x1b[6n\\x9b' + "
                    "'\\ufffd' * 9 + '.cbk')");

  const std::string out = Path("r" + odd + ".db");
  r = Cow("restore " + Sh(archive) + " " + Sh(out));
  EXPECT_EQ(r.code, 0) << r.err;
  ExpectInert(r);
  EXPECT_NE(r.out.find(" to " + Path("r" + shown + ".db (")), std::string::npos) << r.out;
  EXPECT_EQ(ReadFile(out), ReadFile(db_));

  // Error lines: the path is the "where" of the message.
  r = Cow("restore " + Sh(archive) + " " + Sh(out));  // exists, no --force
  EXPECT_EQ(r.code, 1);
  ExpectInert(r);
  EXPECT_NE(r.err.find(Path("r" + shown + ".db")), std::string::npos) << r.err;
  for (const std::string cmd : {"info", "verify", "restore"}) {
    r = Cow(cmd + " " + Sh(Path("missing" + odd)) + (cmd == "restore" ? " " + Sh(Path("x.db")) : ""));
    EXPECT_EQ(r.code, 1) << cmd;
    ExpectInert(r);
    EXPECT_EQ(r.err_lines(), 1u) << r.err;
    EXPECT_NE(r.err.find(Path("missing" + shown)), std::string::npos) << r.err;
  }
  // Usage errors repeat what was typed.
  r = Cow(Sh("nonsense" + odd));
  EXPECT_EQ(r.code, 2);
  ExpectInert(r);
}

}  // namespace
}  // namespace cowbackup::clitest
