// Helpers shared by the LMDB wrapper tests: running Debian's lmdb-utils,
// restoring archives, and the invariant workload. Scratch directories and
// whole files: test_util/files.h.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "backup/restore.h"
#include "cowbackup/lmdb.hpp"
#include "test_util/files.h"

namespace cowbackup::lmdb::testing {

using test::ReadFile;
using test::TempDir;

#define ASSERT_OK(expr)                                   \
  do {                                                    \
    const ::cowbackup::Status _s = (expr);                \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                   \
  do {                                                    \
    const ::cowbackup::Status _s = (expr);                \
    EXPECT_TRUE(_s.ok()) << #expr << ": " << _s.ToString(); \
  } while (0)

inline EnvOptions EnvOpts(unsigned flags, uint64_t map_size, unsigned max_dbs = 0) {
  EnvOptions o;
  o.flags = flags;
  o.map_size = map_size;
  o.max_dbs = max_dbs;
  return o;
}
inline BackupOptions Throttled(double mb_per_s) {
  BackupOptions o;
  o.max_rate_mb = mb_per_s;
  return o;
}
inline BackupOptions PlainFormat() {
  BackupOptions o;
  o.format = BackupOptions::Format::kPlain;
  return o;
}

inline bool IsNotFound(const Status& s) { return s.code() == Status::Code::kNotFound; }

// Sanitizer builds run slower: scale workloads down.
inline bool UnderSanitizer() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#else
  return false;
#endif
}

// Runs a shell command; returns its exit status and stdout.
inline int Shell(const std::string& cmd, std::string* out = nullptr) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  const int rc = pclose(p);
  if (out) *out = std::move(text);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline uint64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
}

// Restores `archive` into the directory `out` (data.mdb inside).
inline Status RestoreTo(const std::string& archive, const std::string& out) {
  ArchiveReport report;
  return RestoreArchive(archive, out, /*force=*/false, &report);
}

// The invariant workload: the "counter" key holds K and keys seq/1..seq/K
// exist, each written by the transaction that set the counter to its
// number. A committed state always satisfies it; a torn one would not.
inline std::string SeqKey(uint64_t n) {
  char buf[32];
  snprintf(buf, sizeof buf, "seq/%012llu", (unsigned long long)n);
  return buf;
}

inline std::string SeqValue(uint64_t n, size_t len) {
  std::string v(len, '\0');
  uint64_t x = n * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < len; ++i) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    v[i] = char('a' + x % 26);
  }
  return v;
}

// Appends transaction number counter+1 (with `filler` extra puts of
// `value_len` bytes to spread writes over the tree). Returns the new K.
// *locked_ns (if given) gets the CLOCK_MONOTONIC time at which the write
// txn held the writer lock.
inline Status CommitNext(Env& env, const Dbi& dbi, size_t value_len, int filler, uint64_t* k,
                         uint64_t filler_space = 1000, int64_t* locked_ns = nullptr) {
  Txn txn;
  Status s = Txn::Begin(env, &txn);
  if (!s.ok()) return s;
  if (locked_ns != nullptr) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *locked_ns = int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  }
  std::string_view cur;
  uint64_t counter = 0;
  s = txn.get(dbi, "counter", &cur);
  if (s.ok()) counter = std::stoull(std::string(cur));
  else if (!IsNotFound(s)) return s;
  const uint64_t next = counter + 1;
  s = txn.put(dbi, SeqKey(next), SeqValue(next, value_len));
  for (int i = 0; s.ok() && i < filler; ++i) {
    const uint64_t f = (next * 7919 + uint64_t(i) * 104729) % filler_space;
    s = txn.put(dbi, "fill/" + std::to_string(f), SeqValue(next + uint64_t(i), value_len));
  }
  if (s.ok()) s = txn.put(dbi, "counter", std::to_string(next));
  if (s.ok()) s = txn.commit();
  if (s.ok()) *k = next;
  return s;
}

inline Status ReadCounter(Env& env, const Dbi& dbi, uint64_t* k) {
  Txn txn;
  Status s = Txn::Begin(env, &txn, /*read_only=*/true);
  if (!s.ok()) return s;
  std::string_view v;
  s = txn.get(dbi, "counter", &v);
  if (IsNotFound(s)) {
    *k = 0;
    return Status::OK();
  }
  if (s.ok()) *k = std::stoull(std::string(v));
  return s;
}

// Walks the whole main database with a cursor and checks the invariant.
// *k gets the counter.
inline void CheckInvariant(Env& env, size_t value_len, uint64_t* k) {
  Txn txn;
  ASSERT_OK(Txn::Begin(env, &txn, true));
  Dbi dbi;
  ASSERT_OK(Dbi::Open(txn, nullptr, 0, &dbi));
  std::string_view v;
  uint64_t counter = 0;
  Status s = txn.get(dbi, "counter", &v);
  if (s.ok()) counter = std::stoull(std::string(v));
  else ASSERT_TRUE(IsNotFound(s)) << s.ToString();
  Cursor c;
  ASSERT_OK(Cursor::Open(txn, dbi, &c));
  std::string_view key, val;
  uint64_t seen = 0, entries = 0;
  for (s = c.first(&key, &val); s.ok(); s = c.next(&key, &val)) {
    ++entries;
    if (key.substr(0, 4) != "seq/") continue;
    ++seen;
    ASSERT_EQ(key, SeqKey(seen)) << "gap in the sequence log";
    ASSERT_EQ(val, SeqValue(seen, value_len)) << "bad value at " << key;
  }
  ASSERT_TRUE(IsNotFound(s)) << s.ToString();
  ASSERT_EQ(seen, counter) << "counter and log disagree";
  DbStat st;
  ASSERT_OK(txn.stat(dbi, &st));
  ASSERT_EQ(st.entries, entries);
  *k = counter;
}

}  // namespace cowbackup::lmdb::testing
