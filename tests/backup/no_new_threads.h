// NoNewThreads: while one lives, every thread created without attributes
// (std::thread's) asks for a stack larger than the address space, so
// pthread_create fails with EAGAIN and std::thread throws std::system_error,
// as when a process runs out of threads or memory. Works under ASan and
// TSan too. Process-wide: create no other thread meanwhile.
#pragma once

#include <gtest/gtest.h>
#include <pthread.h>

#include <cstddef>

namespace cowbackup::test {

class NoNewThreads {
 public:
  NoNewThreads() {
    EXPECT_EQ(pthread_getattr_default_np(&saved_), 0);
    pthread_attr_t huge;
    pthread_attr_init(&huge);
    pthread_attr_setstacksize(&huge, size_t(1) << 47);
    EXPECT_EQ(pthread_setattr_default_np(&huge), 0);
    pthread_attr_destroy(&huge);
  }
  ~NoNewThreads() {
    pthread_setattr_default_np(&saved_);
    pthread_attr_destroy(&saved_);
  }
  NoNewThreads(const NoNewThreads&) = delete;
  NoNewThreads& operator=(const NoNewThreads&) = delete;

 private:
  pthread_attr_t saved_;
};

}  // namespace cowbackup::test
