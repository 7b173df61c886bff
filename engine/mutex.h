// A mutex and condition variable that Clang's thread-safety analysis
// understands (after LevelDB's port/port_stdcxx.h and
// port/thread_annotations.h): members say which mutex guards them
// (GUARDED_BY), functions which mutex they need (REQUIRES), and
// `make test-tsa` compiles the code with -Wthread-safety -Werror, so a
// guarded member touched without its lock does not build. Other compilers
// see plain std::mutex and std::condition_variable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define COWBACKUP_TSA(x) __attribute__((x))
#else
#define COWBACKUP_TSA(x)
#endif

#define CAPABILITY(x) COWBACKUP_TSA(capability(x))
#define SCOPED_CAPABILITY COWBACKUP_TSA(scoped_lockable)
#define GUARDED_BY(x) COWBACKUP_TSA(guarded_by(x))
#define REQUIRES(...) COWBACKUP_TSA(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) COWBACKUP_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) COWBACKUP_TSA(release_capability(__VA_ARGS__))
#define NO_THREAD_SAFETY_ANALYSIS COWBACKUP_TSA(no_thread_safety_analysis)

namespace cowbackup {

class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// Waits release `mu` while blocked and hold it again when they return, as
// std::condition_variable does; the caller loops on its own condition.
class CondVar {
 public:
  void Wait(Mutex* mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  // False once `deadline` has passed.
  bool WaitUntil(Mutex* mu, std::chrono::steady_clock::time_point deadline) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool woken = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return woken;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace cowbackup
