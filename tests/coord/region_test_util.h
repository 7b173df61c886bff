// Helpers for the coordination-region tests: a database file with its
// region path, raw access to the region's bytes (to damage a field and
// re-seal its checksum, as leveldb's log_test FixChecksum does, so checks
// behind the checksum are reached), bare byte locks that stand in for
// "some other process holds this", and real processes: Spawn/Wait and a
// Pipe to signal between them.
#pragma once

#include "test_util/processes.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include "coord/region.h"
#include "engine/checksum.h"
#include "engine/encoding.h"
#include "test_util/files.h"

namespace cowbackup::coord::test {

using cowbackup::test::TempDir;
using namespace layout;

class RegionFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = dir_ / "app.db";
    cowbackup::test::WriteFile(db_, std::string(8192, 'd'));
    ASSERT_EQ(::chmod(db_.c_str(), 0644), 0);
    db_fd_ = ::open(db_.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(db_fd_, 0);
    region_ = RegionPathForSqlite(db_);
  }
  void TearDown() override { ::close(db_fd_); }

  std::unique_ptr<Region> Attach() {
    std::unique_ptr<Region> r;
    Status s = Region::Attach(region_, db_fd_, &r);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return r;
  }
  Status TryAttach(std::unique_ptr<Region>* r = nullptr) {
    std::unique_ptr<Region> local;
    return Region::Attach(region_, db_fd_, r ? r : &local);
  }

  // Raw bytes of the region file (never through a Region).
  std::string Read(size_t offset, size_t len) {
    std::string s(len, '\0');
    const int fd = ::open(region_.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pread(fd, s.data(), len, off_t(offset)), ssize_t(len));
    ::close(fd);
    return s;
  }
  void Write(size_t offset, const void* p, size_t len) {
    const int fd = ::open(region_.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, p, len, off_t(offset)), ssize_t(len));
    ::close(fd);
  }
  void Put32(size_t offset, uint32_t v) {
    uint8_t b[4];
    EncodeFixed32(b, v);
    Write(offset, b, 4);
  }
  void Put64(size_t offset, uint64_t v) {
    uint8_t b[8];
    EncodeFixed64(b, v);
    Write(offset, b, 8);
  }
  uint64_t Get64(size_t offset) { return DecodeFixed64(reinterpret_cast<const uint8_t*>(Read(offset, 8).data())); }
  uint32_t Get32(size_t offset) { return DecodeFixed32(reinterpret_cast<const uint8_t*>(Read(offset, 4).data())); }
  // Slot `slot`'s inside count (Region::Enter..Leave), from the file.
  uint32_t InsideCount(uint64_t slot) { return Get32(kOffSlots + slot * kSlotSize + kOffSlotInside); }

  // Re-seals the header's / job section's checksum over what is there now.
  void ResealHeader() {
    const std::string h = Read(0, kOffHeaderChecksum);
    Put64(kOffHeaderChecksum, Checksum::Of(h.data(), h.size()));
  }
  void ResealJob() {
    const std::string f = Read(kOffJob, kJobFieldsSize);
    const auto* p = reinterpret_cast<const uint8_t*>(f.data());
    const size_t t0_len = std::min<size_t>(DecodeFixed32(p + (kOffT0Len - kOffJob)), kMaxT0Len);
    const size_t path_len = std::min<size_t>(DecodeFixed32(p + (kOffVolumePathLen - kOffJob)), kMaxVolumePathLen);
    Checksum c;
    c.update(f.data(), f.size());
    const std::string t0 = Read(kOffT0, t0_len), path = Read(kOffVolumePath, path_len);
    c.update(t0.data(), t0.size());
    c.update(path.data(), path.size());
    Put64(kOffJobChecksum, c.digest());
  }
  // Writes `job` as a valid, sealed section (bypassing every Region).
  void PlantJob(const Job& job) {
    std::string buf(kFixedSize, '\0');
    EncodeJob(job, reinterpret_cast<uint8_t*>(buf.data()));
    Write(kOffJob, buf.data() + kOffJob, kOffSlots - kOffJob);
  }

  TempDir dir_{"cowbackup-region"};
  std::string db_, region_;
  int db_fd_ = -1;
};

// A descriptor of `path` holding an OFD lock of `type` on `byte`: what a
// process of ours (or another version) holding that byte looks like.
// Closed (and the lock dropped) when it goes.
class ByteHolder {
 public:
  ByteHolder(const std::string& path, uint64_t byte, short type) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    EXPECT_GE(fd_, 0) << path;
    struct flock fl = {};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = off_t(byte);
    fl.l_len = 1;
    EXPECT_EQ(::fcntl(fd_, F_OFD_SETLK, &fl), 0) << "byte " << byte << ": " << strerror(errno);
  }
  ~ByteHolder() {
    if (fd_ >= 0) ::close(fd_);
  }
  ByteHolder(const ByteHolder&) = delete;
  ByteHolder& operator=(const ByteHolder&) = delete;

 private:
  int fd_ = -1;
};

// Real processes: test_util/processes.h.
using cowbackup::test::Pipe;
using cowbackup::test::Spawn;
using cowbackup::test::Wait;

inline std::string StatusText(const Status& s) { return s.ToString(); }

}  // namespace cowbackup::coord::test
