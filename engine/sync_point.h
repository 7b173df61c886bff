// Named sync points (after RocksDB's test_util/sync_point.h): a test installs
// a callback and turns a race into an ordinary, ordered test ("the copier
// has claimed its segment" happens before "a writer enters before_write").
//
// They sit only on slow paths (never on the idle write check) and cost one
// relaxed load when no callback is installed. -DCOWBACKUP_NO_SYNC_POINTS
// compiles them out.
#pragma once

#include <atomic>
#include <functional>

namespace cowbackup::sync {

using Callback = std::function<void(const char* name)>;
// Installs `cb` (or clears it with nullptr). Not while points are running.
void SetCallback(Callback cb);
void Process(const char* name);
extern std::atomic<bool> g_enabled;

}  // namespace cowbackup::sync

#ifdef COWBACKUP_NO_SYNC_POINTS
#define COWBACKUP_SYNC_POINT(name) \
  do {                             \
  } while (0)
#else
#define COWBACKUP_SYNC_POINT(name)                                         \
  do {                                                                     \
    if (::cowbackup::sync::g_enabled.load(std::memory_order_relaxed)) {    \
      ::cowbackup::sync::Process(name);                                    \
    }                                                                      \
  } while (0)
#endif
