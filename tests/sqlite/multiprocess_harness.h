// Real processes for the multi-process SQLite tests (issue 12): writer
// processes (Debian's /usr/bin/python3 with build/cowbackup.so loaded,
// tests/sqlite/mp_writer.py, and the embedded API, tests/sqlite/mp_writer.cc;
// same protocol, described in mp_writer.cc), the command-line tool as a
// process of its own, and the committed-prefix window across processes
// (those two, and the protocol's driver: test_util/mp_harness.h).
//
//   Writer w(db, 1, {WriterKind::kPython});
//   ASSERT_TRUE(w.WaitCommits(10));
//   Cli backup = RunCli({"backup", "--json", db, dest}, dir);   // its own process
//   const Window win = CommitWindow(AllCommits({&w}), backup.t_call, backup.t_return);
//   w.Stop();
//
// Times are CLOCK_MONOTONIC nanoseconds in every process (steady_clock
// here, clock_gettime in mp_writer.cc, time.monotonic_ns() in python).
// An instrumented build/cowbackup.so cannot load into Debian's python3, so
// sanitizer builds run C++ writers where python ones were asked for
// (kPythonUsable).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sqlite/sqlite_test_util.h"
#include "test_util/mp_harness.h"

namespace cowbackup::testing::mp {

using namespace ::cowbackup::test::mp;  // NOLINT: the harness is this namespace's vocabulary

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kPythonUsable = false;
#else
inline constexpr bool kPythonUsable = true;
#endif

// The longest a writer may hold SQLite's write lock while cowbackup deals
// with a party gone bad (a killed process, a damaged region). Generous: the
// design's target for such a wait is 100 ms, and the tests print what they
// measured; scaled in sanitizer builds, where one 2.6 s hold was seen on a
// loaded machine with no cowbackup wait in it (the job's max_write_wait_us
// was 100).
inline constexpr int64_t kHoldBoundNs = 2'000'000'000LL * kScale;

inline std::string SourceDir() {
  const char* d = getenv("COWBACKUP_SOURCE_DIR");
  return d && *d ? d : ".";
}

enum class WriterKind { kPython, kCpp };

struct WriterSpec {
  WriterKind kind = WriterKind::kCpp;
  bool participant = true;       // through the shim (python: the extension loaded)
  std::string mode = "commit";   // or "spill"
  std::string journal = "delete";
  std::string kill_point;        // C++ only: mp_writer's KILL_POINT / KILL_AT
  long kill_at = 0;
  bool preload = false;          // under LD_PRELOAD=build/libcowbackup_preload.so
  std::string extension;         // python participant: the .so to load, if not build/cowbackup
};

// A writer process (mp_writer.py or mp_writer.cc) on `db`.
class Writer : public WriterProcess {
 public:
  Writer(const std::string& db, int id, WriterSpec spec) : WriterProcess(Argv(db, id, &spec), id, KindName(spec)) {
    kind_ = spec.kind;
  }
  WriterKind kind() const { return kind_; }

 private:
  static std::vector<std::string> Argv(const std::string& db, int id, WriterSpec* spec) {
    if (spec->kind == WriterKind::kPython && !kPythonUsable) spec->kind = WriterKind::kCpp;
    std::vector<std::string> argv;
    if (spec->kind == WriterKind::kPython) {
      argv = {"/usr/bin/python3", SourceDir() + "/tests/sqlite/mp_writer.py",
              !spec->participant ? "-" : spec->extension.empty() ? BuildDir() + "/cowbackup" : spec->extension};
    } else {
      argv = {BuildDir() + "/tests/sqlite/mp_writer", spec->participant ? "shim" : "unix"};
    }
    argv.insert(argv.end(), {db, std::to_string(id), spec->mode, spec->journal});
    if (spec->preload) {
      argv.insert(argv.begin(), {"/usr/bin/env", "LD_PRELOAD=" + BuildDir() + "/libcowbackup_preload.so"});
    }
    if (!spec->kill_point.empty()) {
      EXPECT_EQ(spec->kind, WriterKind::kCpp);
      argv.insert(argv.end(), {spec->kill_point, std::to_string(spec->kill_at)});
    }
    return argv;
  }
  static std::string KindName(const WriterSpec& spec) {
    return spec.kind == WriterKind::kPython && kPythonUsable ? "python" : "c++";
  }
  WriterKind kind_ = WriterKind::kCpp;
};

// The database file a destination holds: a plain copy is one; an archive is
// restored beside it by the CLI. "" (after a failure) if it cannot be.
inline std::string RestoreWithCli(const std::string& dest, bool plain, const std::string& dir) {
  if (plain) return dest;
  const std::string restored = dest + ".restored.db";
  const Cli r = RunCli({"restore", "--force", "--quiet", dest, restored}, dir);
  EXPECT_TRUE(r.ok()) << "restore " << dest << ": " << r.err;
  return r.ok() ? restored : "";
}

// The committed-prefix database: CreateWorkload's tables, `filler_rows`
// rows of ~3 KB (one page each), made through the plain unix VFS.
inline void MakeWorkloadDb(const std::string& path, int filler_rows, const std::string& journal = "delete") {
  sqlite3* db = Open(path, "unix");
  if (journal == "wal") {
    EXPECT_EQ(Query(db, "PRAGMA journal_mode = WAL"), "wal");
  }
  CreateWorkload(db, filler_rows, 3000);
  EXPECT_EQ(sqlite3_close(db), SQLITE_OK);
}

}  // namespace cowbackup::testing::mp
