// build/cowbackup: the command-line tool.
//
//   cowbackup backup  SOURCE ARCHIVE   hot backup of a SQLite db / LMDB env
//   cowbackup status  SOURCE           processes, shared job, stale files
//   cowbackup restore ARCHIVE OUT      archive -> database file / LMDB dir
//   cowbackup verify  ARCHIVE          records, completeness, digest (--deep)
//   cowbackup info    ARCHIVE          header, metadata, counts, sizes
//
// docs/CLI.md documents it; tests/cli/ drives the built binary. This file
// only dispatches: each subcommand lives in tools/cmd_<name>.cc.
//
// The binary stays a PIE executable: the SQLite extension is
// build/cowbackup.so beside it, and `.load build/cowbackup` in the sqlite3
// shell first tries dlopen("build/cowbackup"), which must fail for us.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "backup/format.h"
#include "tools/cli.h"
#include "tools/commands.h"

namespace {

using cowbackup::cli::kExitFailure;
using cowbackup::cli::kExitOk;
using cowbackup::cli::kExitUsage;

struct Subcommand {
  const char* name;
  const char* args;
  const char* summary;
  int (*run)(const std::vector<std::string>&);
};

constexpr Subcommand kSubcommands[] = {
#ifdef COWBACKUP_CLI_BACKUP
    {"backup", "SOURCE ARCHIVE", "hot backup of a SQLite database or an LMDB environment",
     cowbackup::cli::RunBackup},
#endif
    {"status", "SOURCE", "attached processes, the shared backup job, stale files",
     cowbackup::cli::RunStatus},
    {"restore", "ARCHIVE OUT", "turn an archive into a database file or LMDB directory",
     cowbackup::cli::RunRestore},
    {"verify", "ARCHIVE", "check every record, completeness and digest (--deep: the db too)",
     cowbackup::cli::RunVerify},
    {"info", "ARCHIVE", "show header, metadata, record counts and sizes",
     cowbackup::cli::RunInfo},
};

void PrintHelp(FILE* out) {
  fprintf(out,
          "Usage: cowbackup COMMAND [options] ARGS...\n"
          "       cowbackup --version | --help\n"
          "\n"
          "Hot, begin-time-consistent backups of SQLite databases and LMDB\n"
          "environments, and the tools to check and restore their archives.\n"
          "\n"
          "Commands:\n");
  for (const Subcommand& c : kSubcommands) {
    fprintf(out, "  %-8s %-15s %s\n", c.name, c.args, c.summary);
  }
  fprintf(out,
          "\n"
          "Every command takes --help (options and examples), --json (one JSON\n"
          "object on stdout), --quiet and --progress. ARCHIVE may be '-' for\n"
          "standard input or output.\n"
          "\n"
          "Examples:\n"
          "  cowbackup backup app.db nightly.cbk\n"
          "  cowbackup verify --deep nightly.cbk\n"
          "  cowbackup info --json nightly.cbk\n"
          "  cowbackup restore nightly.cbk restored.db\n"
          "  cowbackup status app.db\n"
          "\n"
          "Exit status: 0 ok, 1 a failure was found or the operation failed,\n"
          "2 usage error.\n");
}

}  // namespace

int main(int argc, char** argv) {
  cowbackup::cli::InstallInterruptHandling();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    PrintHelp(stderr);
    return kExitUsage;
  }
  const std::string first = args[0];
  if (first == "help" && args.size() > 1) args = {args[1], "--help"};  // help CMD
  if (first == "--help" || first == "-h" || (first == "help" && args.size() == 1)) {
    PrintHelp(stdout);
    return kExitOk;
  }
  if (first == "--version" || first == "-V") {
    printf("cowbackup %s (archive format version %u)\n", COWBACKUP_VERSION,
           cowbackup::format::kFormatVersion);
    return kExitOk;
  }
  for (const Subcommand& c : kSubcommands) {
    if (args[0] == c.name) {
      try {
        return c.run(std::vector<std::string>(args.begin() + 1, args.end()));
      } catch (const std::exception& e) {
        // Nothing should get here; if something does, one line, not a crash.
        cowbackup::cli::PrintError(c.name, std::string("internal error: ") + e.what());
        return kExitFailure;
      }
    }
  }
  cowbackup::cli::PrintUsageError("", first[0] == '-' ? "unknown option '" + first + "'"
                                                      : "unknown command '" + args[0] + "'");
  return kExitUsage;
}
