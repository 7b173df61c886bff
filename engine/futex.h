// Futex wait and wake on a u32 in memory that may be shared between
// processes (a MAP_SHARED file mapping: not FUTEX_PRIVATE_FLAG).
//
//   while (word.load() == seen && !timed_out) FutexWait(&word_storage, seen, 10);
//   ... word.store(new_value); FutexWakeAll(&word_storage);
//
// A wait returns on a wake, a timeout, a signal, or at once if the word no
// longer holds `expected`: callers re-check their condition in a loop.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>
#include <cstdint>

namespace cowbackup {

// Sleeps while *addr == expected, at most `timeout_ms`.
inline void FutexWait(uint32_t* addr, uint32_t expected, int timeout_ms) {
  struct timespec ts = {timeout_ms / 1000, long(timeout_ms % 1000) * 1000000L};
  ::syscall(SYS_futex, addr, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

// Wakes every waiter on `addr`, in any process.
inline void FutexWakeAll(uint32_t* addr) { ::syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

}  // namespace cowbackup
