// Real clients: Debian's sqlite3 shell and /usr/bin/python3 load
// build/cowbackup.so. Skipped in sanitizer builds (an instrumented .so does
// not load into uninstrumented programs).
#include <stdio.h>

#include <thread>

#include "sqlite/sqlite_test_util.h"

namespace cowbackup::testing {
namespace {

constexpr const char* kShell = "/usr/bin/sqlite3";
constexpr const char* kPython = "/usr/bin/python3";  // not a pyenv one: it can load extensions

bool Sanitized() {
  const char* s = getenv("COWBACKUP_SANITIZE");
  return s != nullptr && *s != '\0';
}

// Runs `cmd` with `input` on stdin; returns its exit status, output in *out.
int RunCommand(const std::string& cmd, const std::string& input_file, std::string* out) {
  const std::string full = cmd + (input_file.empty() ? "" : " < '" + input_file + "'") + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  return pclose(p);
}

class ClientsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Sanitized()) GTEST_SKIP() << "sanitizer build: " << getenv("COWBACKUP_SANITIZE");
  }
  TempDir dir_;
};

TEST_F(ClientsTest, SqliteShellLoadsBacksUpAndRestores) {
  const std::string db = dir_ / "shell.db", archive = dir_ / "shell.cowbak";
  const std::string script = dir_ / "script.sql";
  WriteFile(script, ".bail on\n.load " + BuildDir() + "/cowbackup\n.load " + BuildDir() +
                        "/cowbackup\n.open " + db +
                        "\nCREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n"
                        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<5000) "
                        "INSERT INTO t SELECT i, hex(randomblob(200)) FROM c;\n"
                        "SELECT json_extract(cowbackup(" + Quote(archive) + "), '$.state');\n"
                        "SELECT state, pages_done = pages_total FROM cowbackup_jobs;\n"
                        "SELECT cowbackup(" + Quote(dir_ / "plain.db") + ", 'main', '{\"format\":\"plain\"}') IS NOT NULL;\n");
  std::string out;
  ASSERT_EQ(RunCommand(std::string(kShell) + " -batch", script, &out), 0) << out;
  EXPECT_NE(out.find("done\ndone|1\n"), std::string::npos) << out;
  ASSERT_TRUE(RestoreTo(archive, dir_ / "shell.restored").ok());
  EXPECT_TRUE(ReadFile(dir_ / "shell.restored") == ReadFile(db));
  EXPECT_TRUE(ReadFile(dir_ / "plain.db") == ReadFile(db));

  // The shell's first connection predates the shim: a clear refusal.
  WriteFile(script, ".load " + BuildDir() + "/cowbackup\nATTACH " + Quote(db) +
                        " AS x;\nSELECT cowbackup(" + Quote(dir_ / "no.cowbak") + ", 'x');\n");
  RunCommand(std::string(kShell) + " -batch", script, &out);
  EXPECT_NE(out.find("not opened through the cowbackup VFS"), std::string::npos) << out;
  // ...unless it is attached after loading: ATTACH opens through the shim.
  EXPECT_FALSE(Exists(dir_ / "no.cowbak"));
}

TEST_F(ClientsTest, PythonWritersInThreadsWhileCowbackupRuns) {
  const std::string py = dir_ / "writers.py";
  WriteFile(py, R"PY(
import json, sqlite3, sys, threading, time
so, d = sys.argv[1], sys.argv[2]
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(so)
path = d + "/py.db"
conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
conn.executescript("""
CREATE TABLE log(seq INTEGER PRIMARY KEY, writer INT, pad BLOB);
CREATE TABLE counter(id INTEGER PRIMARY KEY, n INT, sum INT);
INSERT INTO counter VALUES(1, 0, 0);
CREATE TABLE filler(id INTEGER PRIMARY KEY, data BLOB);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 4000)
INSERT INTO filler SELECT i, randomblob(3000) FROM c;
""")
lock = threading.Lock()
started = finished = 0
stop = False
errors = []
def writer(w):
    global started, finished
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    while not stop:
        with lock:
            started += 1
        try:
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT INTO log SELECT n + 1, ?, randomblob(50) FROM counter WHERE id = 1", (w,))
            c.execute("UPDATE counter SET n = n + 1, sum = sum + n + 1 WHERE id = 1")
            c.execute("UPDATE filler SET data = randomblob(3000) WHERE id = abs(random()) % 4000 + 1")
            c.execute("COMMIT")
        except Exception as e:
            errors.append(repr(e))
            c.execute("ROLLBACK")
            continue
        with lock:
            finished += 1
threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
for t in threads: t.start()
while finished < 20: time.sleep(0.005)
results = []
for i, fmt in enumerate(["archive", "plain"]):
    dest = d + "/py-%d.%s" % (i, "cowbak" if fmt == "archive" else "db")
    with lock: lo = finished
    summary = conn.execute("SELECT cowbackup(?, 'main', ?)",
                           (dest, json.dumps({"format": fmt, "max_rate_mb": 40, "segment_pages": 16}))).fetchone()[0]
    with lock: hi = started
    results.append({"dest": dest, "format": fmt, "lo": lo, "hi": hi, "summary": json.loads(summary)})
stop = True
for t in threads: t.join()
print(json.dumps({"errors": errors, "results": results}))
)PY");
  std::string out;
  ASSERT_EQ(RunCommand(std::string(kPython) + " '" + py + "' '" + BuildDir() + "/cowbackup' '" + dir_.path() + "'",
                "", &out),
            0)
      << out;
  // Parse the result with SQLite's JSON functions.
  sqlite3* db = Open(":memory:");
  EXPECT_EQ(Query(db, "SELECT json_array_length(json_extract(" + Quote(out) + ", '$.errors'))"), "0") << out;
  for (int i = 0; i < 2; i++) {
    const std::string r = "json_extract(" + Quote(out) + ", '$.results[" + std::to_string(i) + "]";
    const std::string dest = Query(db, "SELECT " + r + ".dest')");
    const std::string format = Query(db, "SELECT " + r + ".format')");
    const int64_t lo = QueryInt(db, "SELECT " + r + ".lo')");
    const int64_t hi = QueryInt(db, "SELECT " + r + ".hi')");
    EXPECT_EQ(Query(db, "SELECT " + r + ".summary.state')"), "done");
    std::string restored = dest;
    if (format == "archive") {
      restored = dest + ".restored";
      ASSERT_TRUE(RestoreTo(dest, restored).ok());
    }
    EXPECT_GE(CheckPrefix(restored, lo, hi), 0) << out;
  }
  sqlite3_close(db);
}

TEST_F(ClientsTest, AnotherProcessWritingDuringTheBackupFailsIt) {
  LoadExtension();  // into this process; python below does not load it
  const std::string path = dir_ / "foreign.db";
  sqlite3* db = Open(path);
  ASSERT_EQ(MakeTable(db, 3000), "");
  std::string error;
  const std::string id = Query(
      db, "SELECT cowbackup_start(" + Quote(dir_ / "f.cowbak") + ", 'main', '{\"max_rate_mb\":3}')", &error);
  ASSERT_EQ(error, "");
  std::string out;
  ASSERT_EQ(RunCommand(std::string(kPython) + " -c \"import sqlite3; c = sqlite3.connect('" + path +
                    "'); c.execute('UPDATE t SET v = zeroblob(5) WHERE id < 100'); c.commit()\"",
                "", &out),
            0)
      << out;
  Query(db, "SELECT cowbackup_wait(" + id + ")", &error);
  EXPECT_NE(error.find("bypassed the cowbackup shim"), std::string::npos) << error;
  EXPECT_FALSE(Exists(dir_ / "f.cowbak"));
  sqlite3_close(db);
}

}  // namespace
}  // namespace cowbackup::testing
