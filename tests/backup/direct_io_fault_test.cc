// Faults on AtomicFile's O_DIRECT writes, injected beneath it: this binary
// is linked with --wrap=pwrite, so every pwrite the library makes passes
// through __wrap_pwrite, which fails the next write to an O_DIRECT
// descriptor the way a kernel would (EINVAL for an alignment the device
// refuses, EIO, ENOSPC, or a short write). Checked:
//   - EINVAL and short writes fall back to the page cache; the file is
//     still exactly what was written;
//   - EIO and ENOSPC fail the write with a status naming the cause and the
//     temporary, and abandon() leaves nothing behind.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>

#include "backup/output.h"
#include "test_util/files.h"

namespace {
std::atomic<int> g_fail_errno{0};      // errno for the next direct write; -1: short write
}  // namespace

extern "C" ssize_t __real_pwrite(int fd, const void* buf, size_t len, off_t offset);
extern "C" ssize_t __wrap_pwrite(int fd, const void* buf, size_t len, off_t offset) {
  const int flags = ::fcntl(fd, F_GETFL);
  const int fail = flags >= 0 && (flags & O_DIRECT) ? g_fail_errno.exchange(0) : 0;
  if (fail > 0) {
    errno = fail;
    return -1;
  }
  if (fail < 0 && len > cowbackup::kIoAlign) len = cowbackup::kIoAlign;  // short
  return __real_pwrite(fd, buf, len, offset);
}

namespace cowbackup::test {
namespace {

// Writes 3 MiB + a bit in odd-sized appends, arming `fail` once the file
// holds a first direct chunk; returns the first failing status.
Status WriteWithFault(AtomicFile* f, int fail, std::vector<uint8_t>* model) {
  std::mt19937_64 rng(7);
  for (size_t total = 0; total < (3u << 20) + 999;) {
    std::vector<uint8_t> data(1 + rng() % 70000);
    for (auto& b : data) b = uint8_t(rng());
    if (total > AtomicFile::kDirectChunk && fail != 0) {
      g_fail_errno = fail;
      fail = 0;
    }
    Status s = f->append(data.data(), data.size());
    if (!s.ok()) return s;
    model->insert(model->end(), data.begin(), data.end());
    total += data.size();
  }
  return Status::OK();
}

TEST(DirectIoFaultTest, RefusedOrShortDirectWritesFallBackToThePageCache) {
  for (int fail : {EINVAL, -1}) {
    SCOPED_TRACE(fail == EINVAL ? "EINVAL" : "short write");
    TempDir dir;
    std::unique_ptr<AtomicFile> f;
    ASSERT_TRUE(AtomicFile::Create(dir / "out", false, &f).ok());
    ASSERT_TRUE(f->direct()) << "this filesystem has O_DIRECT; the test expects it";
    std::vector<uint8_t> model;
    Status s = WriteWithFault(f.get(), fail, &model);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(g_fail_errno.load(), 0) << "the fault never fired";
    EXPECT_FALSE(f->direct()) << "direct I/O should be off after the device refused it";
    ASSERT_TRUE(f->commit().ok());
    EXPECT_TRUE(ReadFile<Bytes>(dir / "out") == model);
  }
}

TEST(DirectIoFaultTest, EioAndEnospcFailTheWriteAndLeaveNothing) {
  for (int fail : {EIO, ENOSPC}) {
    SCOPED_TRACE(strerror(fail));
    TempDir dir;
    std::unique_ptr<AtomicFile> f;
    ASSERT_TRUE(AtomicFile::Create(dir / "out", false, &f).ok());
    const std::string temp = f->temp_path();
    std::vector<uint8_t> model;
    const Status s = WriteWithFault(f.get(), fail, &model);
    ASSERT_FALSE(s.ok()) << "the fault did not surface";
    EXPECT_EQ(s.code(), fail == EIO ? Status::Code::kIOError : Status::Code::kNoSpace) << s.ToString();
    EXPECT_NE(s.ToString().find(strerror(fail)), std::string::npos) << s.ToString();
    EXPECT_NE(s.ToString().find(temp), std::string::npos) << "names the file: " << s.ToString();
    f->abandon();
    EXPECT_EQ(dir.list(), std::vector<std::string>{});
  }
}

}  // namespace
}  // namespace cowbackup::test
