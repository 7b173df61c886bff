// COWBACKUP_LONG=1 (make test LONG=1): the seeded, crash and torture tests
// run more seeds and schedules.
#pragma once

#include <stdlib.h>

#include <cstring>

namespace cowbackup::test {

inline bool LongRun() {
  const char* v = getenv("COWBACKUP_LONG");
  return v && *v && strcmp(v, "0") != 0;
}

}  // namespace cowbackup::test
