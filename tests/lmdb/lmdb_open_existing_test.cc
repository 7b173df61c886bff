// EnvOptions::existing_only: opening an environment only to back it up
// changes nothing in data.mdb. An empty data.mdb (which mdb_env_open would
// initialize), a missing one (which it would create), one that is not an
// LMDB file, and a symbolic link are refused before LMDB opens anything;
// during mdb_env_open, data.mdb is opened without O_CREAT and with
// O_NOFOLLOW. The CLI cases are in tests/cli/cli_lmdb_source_test.cc.
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "lmdb/env_source.h"
#include "lmdb/io_intercept.h"
#include "lmdb_test_util.h"

namespace cowbackup::lmdb::testing {
namespace {

EnvOptions ExistingOnly() {
  EnvOptions o;
  o.existing_only = true;
  return o;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  FILE* f = fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  fclose(f);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

TEST(LmdbOpenExisting, EmptyDataFileIsRefusedAndLeftEmpty) {
  TempDir dir;
  const std::string env_dir = dir.subdir("env");
  WriteBytes(env_dir + "/data.mdb", "");
  std::unique_ptr<Env> env;
  Status s = Env::Open(env_dir, ExistingOnly(), &env);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.ToString().find("data.mdb is empty"), std::string::npos) << s.ToString();
  EXPECT_EQ(FileSize(env_dir + "/data.mdb"), 0u);
  EXPECT_FALSE(Exists(env_dir + "/lock.mdb"));
  // Without the option LMDB initializes it, as it always did.
  ASSERT_OK(Env::Open(env_dir, EnvOptions{}, &env));
  EXPECT_GT(FileSize(env_dir + "/data.mdb"), 0u);
}

TEST(LmdbOpenExisting, MissingDataFileIsNotCreated) {
  TempDir dir;
  const std::string env_dir = dir.subdir("env");
  std::unique_ptr<Env> env;
  Status s = Env::Open(env_dir, ExistingOnly(), &env);
  EXPECT_EQ(s.code(), Status::Code::kNotFound) << s.ToString();
  EXPECT_FALSE(Exists(env_dir + "/data.mdb"));
  EXPECT_FALSE(Exists(env_dir + "/lock.mdb"));
}

TEST(LmdbOpenExisting, NotAnLmdbFileIsRefusedUnchanged) {
  TempDir dir;
  const std::string env_dir = dir.subdir("env");
  const std::string junk(3 * 4096, 'x');
  WriteBytes(env_dir + "/data.mdb", junk);
  std::unique_ptr<Env> env;
  Status s = Env::Open(env_dir, ExistingOnly(), &env);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.ToString().find("not an LMDB data file"), std::string::npos) << s.ToString();
  std::string out;
  ASSERT_EQ(Shell("cat '" + env_dir + "/data.mdb'", &out), 0);
  EXPECT_TRUE(out == junk);
}

TEST(LmdbOpenExisting, ValidEnvironmentOpensAndBacksUp) {
  TempDir dir;
  const std::string env_dir = dir.subdir("env");
  {
    std::unique_ptr<Env> env;
    ASSERT_OK(Env::Open(env_dir, EnvOpts(0, 8 << 20), &env));
    Txn txn;
    ASSERT_OK(Txn::Begin(*env, &txn));
    Dbi dbi;
    ASSERT_OK(Dbi::Open(txn, nullptr, 0, &dbi));
    ASSERT_OK(txn.put(dbi, "k", "v"));
    ASSERT_OK(txn.commit());
  }
  std::unique_ptr<Env> env;
  ASSERT_OK(Env::Open(env_dir, ExistingOnly(), &env));
  BackupResult r;
  ASSERT_OK(env->backup(dir.path() + "/a.cowbak", BackupOptions{}, &r));
  EXPECT_GE(r.txnid, 1u);
}

// While mdb_env_open runs under an OpenCapture naming data.mdb, an open of
// that path cannot create it nor follow a link there; other paths are as
// asked.
TEST(LmdbOpenExisting, CaptureOpensTheDataFileWithoutCreatingOrFollowing) {
  TempDir dir;
  const std::string data = dir.path() + "/data.mdb", other = dir.path() + "/other";
  {
    OpenCapture capture(data.c_str());
    errno = 0;
    EXPECT_LT(::open(data.c_str(), O_RDWR | O_CREAT, 0600), 0);
    EXPECT_EQ(errno, ENOENT);
    const int fd = ::open(other.c_str(), O_RDWR | O_CREAT, 0600);
    EXPECT_GE(fd, 0) << "only the named path is guarded";
    ::close(fd);
    ASSERT_EQ(::symlink(other.c_str(), data.c_str()), 0);
    errno = 0;
    EXPECT_LT(::open(data.c_str(), O_RDWR | O_CREAT, 0600), 0);
    EXPECT_EQ(errno, ELOOP);
  }
  const int fd = ::open(data.c_str(), O_RDONLY);  // no capture: followed as asked
  EXPECT_GE(fd, 0);
  ::close(fd);
}

}  // namespace
}  // namespace cowbackup::lmdb::testing
