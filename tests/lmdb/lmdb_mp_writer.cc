// A writer process on an LMDB environment through the cowbackup LMDB
// library, for the multi-process tests (issue 12): the LMDB twin of
// tests/sqlite/mp_writer.cc, driven through test_util/mp_harness.h.
//
//   lmdb_mp_writer ENVDIR ID sync|nosync [KILL_POINT KILL_AT]
//
// Opens the env (it must take part: Env::coordination() OK, else exit 4),
// says "R PID", and commits the workload of lmdb_mp_harness.h on a thread
// of its own (CommitNext: the counter read inside the write txn gives the
// global sequence) until told to stop, reporting each commit as
// "C SEQ T_BEGIN T_LOCKED T_END" (before Txn::Begin, once it returned
// holding the writer lock, after the commit returned). "nosync" opens with
// MDB_NOSYNC|MDB_NOMETASYNC (the meta page then goes through LMDB's main
// descriptor, not its O_DSYNC one). Meanwhile it reads commands:
//   backup DEST FORMAT VARIANT MAX_RATE_MB SEGMENT_PAGES
//       Env::backup on this process's Env, its writer thread committing on;
//       "B T_CALL T_RETURN ok {"lmdb_txnid": T, "preserved_pages": P,
//       "max_write_wait_us": W}" or "B T_CALL T_RETURN error MESSAGE"
//   stop
//       "S", exit 0
// KILL_POINT NAME and KILL_AT K: the process stops itself (SIGSTOP) at the
// K-th time the engine sync point NAME is reached on the writer thread, so
// the test can SIGKILL it exactly there ("CopyJob::preserve:read": holding
// pages it claimed in another process's job, and LMDB's writer mutex).
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "cowbackup/lmdb.hpp"
#include "test_util/mp_writer_io.h"
#include "lmdb_mp_harness.h"

namespace {

namespace cl = cowbackup::lmdb;
using cowbackup::Status;

constexpr uint64_t kMaxCommits = 2000000;  // ~600 MB of seq/ keys: far inside the 4 GiB map

using namespace cowbackup::test::mp_writer;

void Committer(cl::Env* env, const cl::Dbi& dbi) {
  for (uint64_t n = 0; n < kMaxCommits && !g_stop.load(); n++) {
    const int64_t t_begin = NowNs();
    int64_t t_locked = 0;
    uint64_t seq = 0;
    const Status s = cl::testing::CommitNext(*env, dbi, cl::testing::kValueLen, cl::testing::kFiller, &seq,
                                             cl::testing::kFillSpace, &t_locked);
    const int64_t t_end = NowNs();
    if (!s.ok()) {
      Say("E " + OneLine(s.ToString()));
      usleep(10000);
      continue;
    }
    Say("C " + std::to_string(seq) + " " + std::to_string(t_begin) + " " + std::to_string(t_locked) + " " +
        std::to_string(t_end));
    usleep(500);  // other work of the application; the backups get the CPU too
  }
}

// "backup DEST FORMAT VARIANT MAX_RATE_MB SEGMENT_PAGES".
void RunBackup(cl::Env* env, std::istringstream& args) {
  std::string dest, format, variant;
  double max_rate = 0;
  uint32_t segment_pages = 0;
  args >> dest >> format >> variant >> max_rate >> segment_pages;
  cowbackup::BackupOptions options;
  options.overwrite = true;
  options.format = format == "plain" ? cowbackup::BackupOptions::Format::kPlain
                                     : cowbackup::BackupOptions::Format::kArchive;
  options.variant = variant == "overlay_at_end" ? cowbackup::Variant::kOverlayAtEnd
                                                : cowbackup::Variant::kSnapshotFirst;
  options.max_rate_mb = max_rate;
  if (segment_pages > 0) options.segment_pages = segment_pages;
  cl::BackupResult r;
  const int64_t t_call = NowNs();
  const Status s = env->backup(dest, options, &r);
  const int64_t t_return = NowNs();
  const cowbackup::Progress& p = r.summary.progress;
  Say("B " + std::to_string(t_call) + " " + std::to_string(t_return) +
      (s.ok() ? " ok {\"lmdb_txnid\": " + std::to_string(r.txnid) + ", \"preserved_pages\": " +
                    std::to_string(p.pages_preserved) + ", \"max_write_wait_us\": " +
                    std::to_string(p.max_write_wait_us) + "}"
              : " error " + OneLine(s.ToString())));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 6) {
    std::cerr << "usage: lmdb_mp_writer ENVDIR ID sync|nosync [KILL_POINT KILL_AT]\n";
    return 2;
  }
  alarm(900);  // never outlive a broken test (ctest's timeout)
  const std::string path = argv[1];
  const bool durable = strcmp(argv[3], "sync") == 0;
  if (argc == 6) StopAt(argv[4], argv[5]);
  std::unique_ptr<cl::Env> env;
  Status s = cl::Env::Open(path, cl::testing::EnvOpts(durable ? 0 : cl::kNoSync | cl::kNoMetaSync,
                                                      cl::testing::kMapSize),
                           &env);
  if (s.ok()) s = env->coordination();
  cl::Dbi dbi;
  if (s.ok()) {
    // The main database, opened in a read txn: no txnid is spent on it.
    cl::Txn txn;
    s = cl::Txn::Begin(*env, &txn, /*read_only=*/true);
    if (s.ok()) s = cl::Dbi::Open(txn, nullptr, 0, &dbi);
    if (s.ok()) s = txn.commit();
  }
  if (!s.ok()) {
    std::cerr << "lmdb_mp_writer: " << path << ": " << s.ToString() << "\n";
    return 4;
  }
  Say("R " + std::to_string(getpid()));
  std::thread writer([&] {
    t_writer = true;
    Committer(env.get(), dbi);
  });
  for (std::string line; std::getline(std::cin, line);) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    if (command == "stop") break;
    if (command == "backup") RunBackup(env.get(), in);
  }
  g_stop = true;
  writer.join();
  env.reset();
  Say("S");
  return 0;
}
