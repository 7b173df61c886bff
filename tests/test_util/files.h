// Scratch directories and whole files for tests: the one copy that every
// test directory uses (engine, backup, sqlite, lmdb, cli, faults).
//
//   TempDir dir;                                // $TMPDIR/cowbackup-test-XXXXXX, 0700
//   WriteFile(dir / "a.db", bytes);             // std::string or std::vector<uint8_t>
//   std::string text = ReadFile(dir / "a.db");  // "" if it cannot be read
//   Bytes image = ReadFile<Bytes>(dir / "a.db");
//   std::string env = dir.subdir("env");        // made, for an LMDB environment
//
// The directory and everything in it is removed when the TempDir goes,
// unless COWBACKUP_KEEP_TMP is set. Files are read and written through stdio, whose calls
// the --wrap'ed syscalls of the fault tests (power_loss_test,
// direct_io_fault_test, sqlite_fault_test) do not see.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "engine/posix_file.h"

namespace cowbackup::test {

using Bytes = std::vector<uint8_t>;

// A fresh directory $TMPDIR/<prefix>-XXXXXX ($TMPDIR unset: /tmp). Aborts
// if it cannot be made: no test can run without it, and none may run in "".
// The caller removes it (RemoveTree, engine/posix_file.h); TempDir does that.
inline std::string MakeTempDir(const std::string& prefix) {
  const char* tmp = getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  if (!mkdtemp(templ.data())) {
    fprintf(stderr, "mkdtemp %s: %s\n", templ.c_str(), strerror(errno));
    abort();
  }
  return templ;
}

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "cowbackup-test") : path_(MakeTempDir(prefix)) {}
  ~TempDir() {
    if (!getenv("COWBACKUP_KEEP_TMP")) RemoveTree(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // The path of `name` inside the directory.
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  // Makes the subdirectory `name` (0700) and returns its path.
  std::string subdir(const std::string& name) const {
    const std::string p = *this / name;
    EXPECT_TRUE(::mkdir(p.c_str(), 0700) == 0 || errno == EEXIST) << p << ": " << strerror(errno);
    return p;
  }
  // Names in the directory, in no order (for "nothing left behind" checks).
  std::vector<std::string> list() const { return ListDir(path_); }

 private:
  const std::string path_;
};

// Reads the whole file at `path` into *out (std::string or Bytes); false if
// it cannot be opened or read.
template <typename Container>
bool ReadFile(const std::string& path, Container* out) {
  out->clear();
  FILE* f = fopen(path.c_str(), "rbe");
  if (f == nullptr) return false;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out->insert(out->end(), buf, buf + n);
  const bool ok = !ferror(f);
  fclose(f);
  return ok;
}

// The whole file at `path`, empty if it cannot be read.
template <typename Container = std::string>
Container ReadFile(const std::string& path) {
  Container out;
  ReadFile(path, &out);
  return out;
}

// Creates or replaces the file at `path` with `data`; a failure fails the
// test. One overload takes text, the other bytes ({1, 2, 3} too).
template <typename Text, typename = std::enable_if_t<std::is_convertible_v<const Text&, std::string_view>>>
void WriteFile(const std::string& path, const Text& data) {
  const std::string_view s = data;
  FILE* f = fopen(path.c_str(), "wbe");
  bool ok = f != nullptr && (s.empty() || fwrite(s.data(), 1, s.size(), f) == s.size());
  if (f != nullptr && fclose(f) != 0) ok = false;
  EXPECT_TRUE(ok) << "cannot write " << path << ": " << strerror(errno);
}
inline void WriteFile(const std::string& path, const Bytes& data) {
  WriteFile(path, std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
}

// The build directory (ctest sets COWBACKUP_BUILD_DIR): the programs the
// tests run, build/cowbackup and the test helpers, are found there.
inline std::string BuildDir() {
  const char* d = getenv("COWBACKUP_BUILD_DIR");
  return d && *d ? d : "build";
}

}  // namespace cowbackup::test
