#include "tools/cli.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "backup/output.h"
#include "backup/text.h"
#include "engine/posix_file.h"

namespace cowbackup::cli {

CommandLine::CommandLine(std::string command, std::string usage, std::string about,
                         std::string examples, std::string notes)
    : command_(std::move(command)),
      usage_(std::move(usage)),
      about_(std::move(about)),
      examples_(std::move(examples)),
      notes_(std::move(notes)) {
  options_.add_options()("help,h", "show this help and exit");
}

void CommandLine::add_common(CommonFlags* flags) {
  options_.add_options()
      ("json", po::bool_switch(&flags->json), "print the result as one JSON object on stdout")
      ("quiet,q", po::bool_switch(&flags->quiet), "print nothing but errors")
      ("progress", po::bool_switch(&flags->progress),
       "show the progress bar even when stderr is not a terminal");
}

void CommandLine::positional(const std::string& name, std::string* target) {
  positionals_.emplace_back(name, target);
}

std::string CommandLine::Help() const {
  std::ostringstream out;
  out << "Usage: cowbackup " << usage_ << "\n\n" << about_ << "\n\n" << options_ << "\n";
  out << "Examples:\n" << examples_ << "\n\n";
  if (!notes_.empty()) out << notes_ << "\n\n";
  out << "Exit status: 0 ok, 1 a failure was found or the operation failed, 2 usage error.\n";
  return out.str();
}

bool CommandLine::Parse(const std::vector<std::string>& args, int* exit_code) {
  po::options_description all;
  all.add(options_);
  po::options_description hidden;
  po::positional_options_description pos;
  for (auto& [name, target] : positionals_) {
    hidden.add_options()(name.c_str(), po::value<std::string>(target));
    pos.add(name.c_str(), 1);
  }
  all.add(hidden);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    PrintUsageError(command_, e.what());
    *exit_code = kExitUsage;
    return false;
  }
  if (vm.count("help")) {
    std::cout << Help();
    *exit_code = kExitOk;
    return false;
  }
  for (auto& [name, target] : positionals_) {
    if (!vm.count(name)) {
      PrintUsageError(command_, "missing argument " + name);
      *exit_code = kExitUsage;
      return false;
    }
    if (target->empty()) {
      PrintUsageError(command_, "empty argument " + name);
      *exit_code = kExitUsage;
      return false;
    }
  }
  return true;
}

void PrintError(const std::string& command, const std::string& message) {
  std::cout.flush();
  // TerminalSafe also keeps it one line, whatever a message holds.
  PrintLine(stderr, "cowbackup: " + (command.empty() ? "" : command + ": ") + message);
}

void PrintLine(FILE* out, const std::string& text) {
  fprintf(out, "%s\n", TerminalSafe(text).c_str());
}

std::string Describe(const Status& s) {
  const std::string& m = s.message();
  if (s.IsIncomplete() && m.rfind("archive ", 0) == 0) return "incomplete archive: " + m.substr(8);
  return m;
}

std::string NameDestination(std::string message, const std::string& dest) {
  const size_t at = message.find(dest + kTempInfix);
  const size_t colon = at == std::string::npos ? at : message.find(':', at);
  if (colon != std::string::npos) message.replace(at, colon - at, dest);
  return message;
}

void PrintUsageError(const std::string& command, const std::string& message) {
  PrintError(command, message);
  fprintf(stderr, "Try 'cowbackup %s--help'.\n", command.empty() ? "" : (command + " ").c_str());
}

void PrintJson(const JsonObject& object) {
  std::cout << object.str() << std::endl;
}

const char* StateWord(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk: return "ok";
    case Status::Code::kIncomplete: return "incomplete";
    case Status::Code::kCorruption: return "corrupt";
    case Status::Code::kNotSupported: return "unsupported";
    case Status::Code::kNoSpace: return "no space";
    case Status::Code::kCancelled: return "cancelled";
    default: return "error";
  }
}

uint64_t RegularFileSize(const std::string& path) {
  struct stat st;
  if (path == "-" || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  return uint64_t(st.st_size);
}

std::string FormatUnixMicros(uint64_t unix_us) {
  const time_t secs = time_t(unix_us / 1000000);
  struct tm tm;
  if (gmtime_r(&secs, &tm) == nullptr) return "?";
  char buf[64];
  const size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof(buf) - n, ".%06uZ", unsigned(unix_us % 1000000));
  return buf;
}

// ---- Interrupts ----

namespace {

std::mutex g_interrupt_mu;
std::function<bool()> g_interrupt_action;  // GUARDED_BY(g_interrupt_mu)
int g_signals_seen = 0;                    // GUARDED_BY(g_interrupt_mu)
std::atomic<bool> g_interrupted{false};

void InterruptThread(sigset_t set) {
  bool winding_down = false;  // the first signal's action left main to clean up
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    g_interrupted.store(true);
    std::function<bool()> action;
    {
      std::lock_guard<std::mutex> lock(g_interrupt_mu);
      if (++g_signals_seen == 1) action = g_interrupt_action;
    }
    if (winding_down) {
      fprintf(stderr, "\ncowbackup: still removing what the interrupted operation made "
                      "(SIGKILL stops at once and leaves it to the next run)\n");
      continue;
    }
    // The action (cancelling, removing temporaries) runs unlocked and at
    // most once; signals that arrive meanwhile wait in the set.
    if (action && !action()) {
      winding_down = true;
      continue;
    }
    fprintf(stderr, "\ncowbackup: interrupted (%s)\n", strsignal(sig));
    _exit(128 + sig);
  }
}

}  // namespace

void InstallInterruptHandling() {
  // A closed stdout pipe is an EPIPE error with a message, not a silent death.
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // inherited by every later thread
  std::thread(InterruptThread, set).detach();
}

OnInterrupt::OnInterrupt(std::function<bool()> action) {
  std::lock_guard<std::mutex> lock(g_interrupt_mu);
  previous_ = std::move(g_interrupt_action);
  g_interrupt_action = std::move(action);
}

OnInterrupt::~OnInterrupt() {
  std::lock_guard<std::mutex> lock(g_interrupt_mu);
  g_interrupt_action = std::move(previous_);
}

bool Interrupted() { return g_interrupted.load(); }

void RemoveOwnTemporaries(const std::string& dest_given) {
  std::string dest = dest_given;
  while (dest.size() > 1 && dest.back() == '/') dest.pop_back();
  const std::string dir = ParentDir(dest);
  const std::string prefix = BaseName(dest) + kTempInfix + std::to_string(::getpid()) + "-";
  for (const std::string& name : ListDir(dir)) {
    if (name.rfind(prefix, 0) == 0) RemoveTree(dir + "/" + name);
  }
}

}  // namespace cowbackup::cli
