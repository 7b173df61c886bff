// What every cowbackup subcommand shares: exit codes, the option parser
// with --help/--json/--quiet/--progress, error lines, and cleanup of
// temporaries on an interrupt.
//
// Output habits (docs/CLI.md):
//   - results on stdout (one JSON object with --json), nothing with --quiet;
//   - errors on stderr, one line: "cowbackup: <command>: <what>: <where>";
//   - control characters from paths and archives escaped (PrintLine);
//   - exit 0 ok, 1 a failure found or the operation failed, 2 usage.
#pragma once

#include <boost/program_options.hpp>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "cowbackup/status.h"
#include "tools/json.h"

namespace cowbackup::cli {

namespace po = boost::program_options;

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct CommonFlags {
  bool json = false;
  bool quiet = false;
  bool progress = false;
};

// One subcommand's command line. Positional arguments are all required.
class CommandLine {
 public:
  // `usage`: "restore [options] ARCHIVE OUT"; `about`: a paragraph;
  // `examples`: lines, each a command; `notes`: optional closing text.
  CommandLine(std::string command, std::string usage, std::string about, std::string examples,
              std::string notes = {});
  po::options_description& options() { return options_; }
  // Adds --json, --quiet, --progress (all reporting commands have them).
  void add_common(CommonFlags* flags);
  void positional(const std::string& name, std::string* target);

  // Parses `args` (after the subcommand name). Returns true to go on; false
  // with *exit_code set when done: --help printed (0) or a usage error (2).
  bool Parse(const std::vector<std::string>& args, int* exit_code);
  std::string Help() const;
  const std::string& command() const { return command_; }

 private:
  const std::string command_, usage_, about_, examples_, notes_;
  po::options_description options_{"Options"};
  std::vector<std::pair<std::string, std::string*>> positionals_;
};

// "cowbackup: <command>: <message>" on stderr, through PrintLine.
void PrintError(const std::string& command, const std::string& message);
// `text` and a newline on `out`, through TerminalSafe (backup/text.h): every
// text line the tool prints may hold a path or archive metadata, and their
// control characters must not reach the terminal.
void PrintLine(FILE* out, const std::string& text);
// A status as the error line shows it: an incomplete archive says so first
// ("incomplete archive: ends inside a record: x.cbk: offset 8232, page 2").
std::string Describe(const Status& s);
// `message` with the temporary a failed operation named ("<dest>.cowtmp-...:
// ...") named as `dest`: the user knows the destination, and the temporary
// is gone by the time they read it.
std::string NameDestination(std::string message, const std::string& dest);
// A usage error: the line above plus "Try 'cowbackup <command> --help'."
void PrintUsageError(const std::string& command, const std::string& message);
void PrintJson(const JsonObject& object);
// The state word reports use for a status: "ok", "incomplete", "corrupt",
// "unsupported", "no space", "error".
const char* StateWord(const Status& s);

// The size of a regular file, 0 for anything else (a pipe, stdin).
uint64_t RegularFileSize(const std::string& path);
// ISO 8601 UTC, microseconds: "2024-11-25T02:52:00.123456Z".
std::string FormatUnixMicros(uint64_t unix_us);

// Interrupts (SIGINT, SIGTERM, SIGHUP) are taken on a thread of their own.
// While an OnInterrupt is alive its action (the innermost one's) runs there
// on the first signal; if it returns true the process exits with
// 128+signal, else the main thread is expected to wind down (a cancelled
// backup removing what it made) and later signals do not cut that short.
// With no OnInterrupt alive, a signal exits at once.
// Call once at the start of main(), before any thread exists.
void InstallInterruptHandling();
// True once an interrupt arrived (for loops that should stop early).
bool Interrupted();
class OnInterrupt {
 public:
  explicit OnInterrupt(std::function<bool()> action);
  ~OnInterrupt();
  OnInterrupt(const OnInterrupt&) = delete;
  OnInterrupt& operator=(const OnInterrupt&) = delete;

 private:
  std::function<bool()> previous_;  // restored on destruction: guards nest
};
// Removes what this process left under a temporary name for `dest`
// ("<dest>.cowtmp-<pid>-..."; files, or directories of files; `dest` may
// end in '/').
void RemoveOwnTemporaries(const std::string& dest);

}  // namespace cowbackup::cli
