// The real definition of a function the preload library interposes on
// (docs/PRELOAD.md): the program's own, in a library that may have been
// loaded at start or later with RTLD_LOCAL (Python's extension modules).
#pragma once

#include <atomic>

namespace cowbackup::preload {

// `name` as the library `caller` (a return address) uses it: dlsym(RTLD_NEXT)
// finds a library of the global scope; one loaded RTLD_LOCAL is found
// through the calling object's own handle (its dependencies), then by
// `soname` if it is loaded. Never one of this library's definitions;
// nullptr if there is none.
void* RealSymbol(const char* name, const void* caller, const char* soname);

// The base address of the loaded object that holds `p`, or nullptr.
void* ObjectOf(const void* p);
// True if `p` is in this library.
bool IsOurs(const void* p);

// One resolved function, cached after the first call.
template <typename Fn>
Fn Real(std::atomic<Fn>* slot, const char* name, const void* caller, const char* soname) {
  Fn f = slot->load(std::memory_order_acquire);
  if (f == nullptr) [[unlikely]] {
    f = reinterpret_cast<Fn>(RealSymbol(name, caller, soname));
    if (f != nullptr) slot->store(f, std::memory_order_release);
  }
  return f;
}

}  // namespace cowbackup::preload
