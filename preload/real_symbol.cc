#include "preload/real_symbol.h"

#include <dlfcn.h>

namespace cowbackup::preload {
namespace {

void* FromHandleOf(const char* file, const char* name) {
  void* h = dlopen(file, RTLD_LAZY | RTLD_NOLOAD);
  if (h == nullptr) return nullptr;
  void* p = dlsym(h, name);
  dlclose(h);  // still loaded: it was before
  return p != nullptr && !IsOurs(p) ? p : nullptr;
}

}  // namespace

void* ObjectOf(const void* p) {
  Dl_info info;
  return p != nullptr && dladdr(p, &info) != 0 ? info.dli_fbase : nullptr;
}

bool IsOurs(const void* p) { return ObjectOf(p) == ObjectOf(reinterpret_cast<const void*>(&ObjectOf)); }

void* RealSymbol(const char* name, const void* caller, const char* soname) {
  if (void* p = dlsym(RTLD_NEXT, name)) return p;
  Dl_info info;
  if (caller != nullptr && dladdr(caller, &info) != 0 && info.dli_fname != nullptr &&
      info.dli_fname[0] != '\0') {
    if (void* p = FromHandleOf(info.dli_fname, name)) return p;
  }
  return soname != nullptr ? FromHandleOf(soname, name) : nullptr;
}

}  // namespace cowbackup::preload
