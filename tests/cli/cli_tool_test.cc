// build/cowbackup as a Unix tool: --help/--version, usage errors and exit
// codes, help and docs/CLI.md agreeing, the progress bar on a terminal only,
// and destinations on a full or read-only filesystem.
#include <regex>
#include <set>

#include "tests/cli/cli_harness.h"

namespace cowbackup::clitest {
namespace {

// The subcommands `cowbackup --help` lists (lines "  name  ARGS  summary").
std::vector<std::string> ListedCommands(const std::string& help) {
  std::vector<std::string> names;
  const size_t start = help.find("Commands:\n");
  const size_t end = help.find("\n\n", start);
  std::istringstream in(help.substr(start + 10, end - start - 10));
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string name;
    words >> name;
    if (!name.empty()) names.push_back(name);
  }
  return names;
}

using ToolCliTest = CliTest;

TEST_F(ToolCliTest, VersionAndHelp) {
  Result r = Cow("--version");
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(std::regex_search(r.out, std::regex("^cowbackup [0-9]+\\.[0-9]+\\.[0-9]+ ")));
  r = Cow("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.err, "");
  const std::vector<std::string> commands = ListedCommands(r.out);
  for (const char* c : {"restore", "verify", "info"}) {
    EXPECT_NE(std::find(commands.begin(), commands.end(), c), commands.end()) << c << r.out;
  }
  for (const std::string& c : commands) {
    for (const std::string& form : {c + " --help", c + " -h", "help " + c}) {
      Result h = Cow(form);
      EXPECT_EQ(h.code, 0) << form;
      EXPECT_EQ(h.out.rfind("Usage: cowbackup " + c + " ", 0), 0u) << h.out;
      EXPECT_NE(h.out.find("Examples:\n  cowbackup " + c + " "), std::string::npos) << h.out;
      EXPECT_NE(h.out.find("Exit status: 0 ok, 1 "), std::string::npos);
    }
  }
}

TEST_F(ToolCliTest, UsageErrorsExitTwoWithOneLineAndAHint) {
  struct Case {
    std::string args, first_line;
  };
  const Case cases[] = {
      {"", "Usage: cowbackup COMMAND"},
      {"frobnicate", "cowbackup: unknown command 'frobnicate'"},
      {"--frobnicate", "cowbackup: unknown option '--frobnicate'"},
      {"verify", "cowbackup: verify: missing argument ARCHIVE"},
      {"verify --nope x.cbk", "cowbackup: verify: unrecognised option '--nope'"},
      {"verify a.cbk b.cbk", "cowbackup: verify: too many positional options have been specified"},
      {"restore a.cbk", "cowbackup: restore: missing argument OUT"},
      {"info ''", "cowbackup: info: empty argument ARCHIVE"},
      {"verify --temp-dir", "cowbackup: verify: the required argument for option '--temp-dir'"},
  };
  for (const Case& c : cases) {
    Result r = Cow(c.args);
    EXPECT_EQ(r.code, 2) << c.args;
    EXPECT_EQ(r.out, "") << c.args;
    EXPECT_EQ(r.err.rfind(c.first_line, 0), 0u) << c.args << "\n" << r.err;
    if (!c.args.empty()) {
      EXPECT_EQ(r.err_lines(), 2u) << r.err;
      EXPECT_NE(r.err.find("\nTry 'cowbackup "), std::string::npos) << r.err;
    }
  }
}

TEST_F(ToolCliTest, HelpAndDocsAgree) {
  const std::string docs = ReadFile(SourceDir() + "/docs/CLI.md");
  ASSERT_FALSE(docs.empty()) << "docs/CLI.md is missing";
  const std::vector<std::string> commands = ListedCommands(Cow("--help").out);
  ASSERT_FALSE(commands.empty());
  for (const std::string& c : commands) {
    EXPECT_NE(docs.find("cowbackup " + c + " "), std::string::npos) << "docs lack an example of " << c;
    EXPECT_NE(docs.find("### cowbackup " + c), std::string::npos) << "docs lack a section for " << c;
    // Every option the command takes is documented.
    const std::string help = Cow(c + " --help").out;
    std::set<std::string> options;
    const std::regex option("--[a-z][a-z-]+");
    for (auto it = std::sregex_iterator(help.begin(), help.end(), option); it != std::sregex_iterator(); ++it) {
      options.insert(it->str());
    }
    for (const std::string& o : options) {
      EXPECT_NE(docs.find(o), std::string::npos) << c << " " << o << " is not in docs/CLI.md";
    }
  }
  // And the docs name no command the tool does not have.
  const std::regex doc_command("### cowbackup ([a-z]+)");
  for (auto it = std::sregex_iterator(docs.begin(), docs.end(), doc_command); it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[1].str();
    EXPECT_NE(std::find(commands.begin(), commands.end(), name), commands.end())
        << "docs/CLI.md documents '" << name << "', which --help does not list";
  }
}

// The README shows `cowbackup --help` verbatim and an example of every
// command, so the two cannot drift apart.
TEST_F(ToolCliTest, ReadmeShowsTheHelpVerbatim) {
  const std::string readme = ReadFile(SourceDir() + "/README.md");
  ASSERT_FALSE(readme.empty()) << "README.md is missing";
  const std::string help = Cow("--help").out;
  EXPECT_NE(readme.find("$ build/cowbackup --help\n" + help), std::string::npos)
      << "README.md's copy of --help differs from the tool's";
  for (const std::string& c : ListedCommands(help)) {
    EXPECT_NE(readme.find("build/cowbackup " + c + " "), std::string::npos)
        << "README.md lacks an example of " << c;
  }
}

// ---- progress bar ----

class ProgressCliTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    MakeSqliteDb(Path("app.db"), 3000);
    WriteArchive(Path("app.cbk"), ReadFile(Path("app.db")));
  }
  // Runs under a pseudo-terminal (script(1)); returns what the terminal saw.
  Result UnderPty(const std::string& args, const std::string& env) {
    const std::string inner = env + Sh(Binary()) + " " + args;
    return Shell("script -qec " + Sh(inner) + " /dev/null");
  }
};

TEST_F(ProgressCliTest, ShownOnATerminal) {
  // A zero delay stands in for an operation longer than a second.
  Result r = UnderPty("verify " + Sh(Path("app.cbk")), "COWBACKUP_PROGRESS_DELAY_MS=0 ");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("\rverify ["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("100%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(": ok ("), std::string::npos) << r.out;
  r = UnderPty("restore " + Sh(Path("app.cbk")) + " " + Sh(Path("out.db")), "COWBACKUP_PROGRESS_DELAY_MS=0 ");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\rrestore ["), std::string::npos) << r.out;
}

TEST_F(ProgressCliTest, NotShownForAQuickCommandOrWithQuiet) {
  // The default delay: a small archive verifies well under a second.
  Result r = UnderPty("verify " + Sh(Path("app.cbk")), "");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find('\r' + std::string("verify [")), std::string::npos) << r.out;
  r = UnderPty("verify --quiet " + Sh(Path("app.cbk")), "COWBACKUP_PROGRESS_DELAY_MS=0 ");
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "");
}

TEST_F(ProgressCliTest, AbsentOffATerminalUnlessAskedFor) {
  Result r = Cow("verify " + Sh(Path("app.cbk")), "COWBACKUP_PROGRESS_DELAY_MS=0 ");
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out.find('\r'), std::string::npos);
  r = Cow("verify --progress " + Sh(Path("app.cbk")), "COWBACKUP_PROGRESS_DELAY_MS=0 ");
  ASSERT_EQ(r.code, 0);
  EXPECT_NE(r.err.find("\rverify ["), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("100%"), std::string::npos) << r.err;
  // --json keeps stdout one JSON object even with the bar on.
  r = Cow("verify --json --progress " + Sh(Path("app.cbk")), "COWBACKUP_PROGRESS_DELAY_MS=0 ");
  ASSERT_EQ(r.code, 0);
  ExpectJson(r.out, "d['ok'] is True");
}

// ---- destinations that cannot take the output ----

// Runs `script` (shell text) in a private mount namespace with a tmpfs of
// `size` at `mnt`, so nothing outlives the command. Skips when the sandbox
// has no mount namespaces (not root).
class FilesystemCliTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    if (Shell("unshare -m true").code != 0) GTEST_SKIP() << "unshare -m is not permitted here";
    MakeSqliteDb(Path("app.db"), 3000);  // ~1.2 MB
    WriteArchive(Path("app.cbk"), ReadFile(Path("app.db")));
    mkdir(Path("mnt").c_str(), 0700);
  }
  Result InNamespace(const std::string& mount_options, const std::string& script) {
    const std::string mnt = Sh(Path("mnt"));
    return Shell("unshare -m sh -c " +
                 Sh("mount -t tmpfs -o " + mount_options + " tmpfs " + mnt + " && " + script));
  }
};

TEST_F(FilesystemCliTest, RestoreOntoAFullFilesystemFailsAndLeavesNothing) {
  // The listing runs inside the namespace, after the failed restore.
  Result r = InNamespace("size=256k", Sh(Binary()) + " restore " + Sh(Path("app.cbk")) + " " +
                                          Sh(Path("mnt/out.db")) + "; echo rc=$?; ls -A " +
                                          Sh(Path("mnt")));
  EXPECT_EQ(r.out, "rc=1\n");
  EXPECT_EQ(r.err_lines(), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("cowbackup: restore: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  // Found before writing (the space is reserved first); names OUT, not the
  // temporary, which is gone.
  EXPECT_NE(r.err.find("reserve"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(Path("mnt/out.db") + ": "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(".cowtmp-"), std::string::npos) << r.err;
}

TEST_F(FilesystemCliTest, LmdbRestoreOntoAFullFilesystemFailsAndLeavesNothing) {
  MakeLmdbEnv(Path("env"), 2000, 2000);
  ArchiveSpec spec;
  spec.kind = format::SourceKind::kLmdb;
  spec.page_size = 4096;
  WriteArchive(Path("env.cbk"), ReadFile(Path("env/data.mdb")), spec);
  Result r = InNamespace("size=256k", Sh(Binary()) + " restore " + Sh(Path("env.cbk")) + " " +
                                          Sh(Path("mnt/env")) + "; echo rc=$?; ls -A " +
                                          Sh(Path("mnt")));
  EXPECT_EQ(r.out, "rc=1\n");
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(Path("mnt/env") + ": "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(".cowtmp-"), std::string::npos) << r.err;
}

TEST_F(FilesystemCliTest, RestoreOntoAReadOnlyFilesystemFailsClearly) {
  Result r = InNamespace("ro,size=1m", Sh(Binary()) + " restore " + Sh(Path("app.cbk")) + " " +
                                           Sh(Path("mnt/out.db")) + "; echo rc=$?; ls -A " +
                                           Sh(Path("mnt")));
  EXPECT_EQ(r.out, "rc=1\n");
  EXPECT_EQ(r.err_lines(), 1u) << r.err;
  EXPECT_NE(r.err.find("Read-only file system"), std::string::npos) << r.err;
}

TEST_F(FilesystemCliTest, VerifyDeepWithAFullTempDirFailsClearly) {
  Result r = InNamespace("size=256k", Sh(Binary()) + " verify --deep --temp-dir " + Sh(Path("mnt")) +
                                          " " + Sh(Path("app.cbk")) + "; echo rc=$?; ls -A " +
                                          Sh(Path("mnt")));
  EXPECT_EQ(r.out, "rc=1\n");
  EXPECT_EQ(r.err_lines(), 1u) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cowbackup::clitest
