// libFuzzer target over the archive readers used by restore, verify and
// info. Built and run by tests/fuzz/run.sh (clang, -fsanitize=fuzzer,address,
// undefined); every input it finds that crashes goes to
// tests/fuzz/regressions/ and is replayed by tests/faults/fuzz_regression_test.
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "fuzz/archive_input.h"

namespace {
std::string g_scratch;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* tmp = getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/cowbackup-fuzz-XXXXXX";
  if (!mkdtemp(templ.data())) abort();
  g_scratch = templ;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cowbackup::fuzz::CheckArchiveInput(data, size, g_scratch);
  return 0;
}
