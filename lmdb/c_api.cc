// The C API of include/cowbackup/lmdb.h: a thin layer over the C++
// wrapper's Env::Attach and Env::backup (no logic of its own besides
// translating options, results and errors). No exception leaves a call.
#include "cowbackup/lmdb.h"

#include <stdlib.h>
#include <string.h>

#include <memory>
#include <new>

#include "cowbackup/lmdb.hpp"

struct cowbackup_lmdb {
  std::unique_ptr<cowbackup::lmdb::Env> env;
};

namespace {

using cowbackup::Status;

static_assert(int(Status::Code::kOk) == COWBACKUP_OK && int(Status::Code::kNotFound) == COWBACKUP_NOT_FOUND &&
              int(Status::Code::kCorruption) == COWBACKUP_CORRUPTION &&
              int(Status::Code::kNotSupported) == COWBACKUP_NOT_SUPPORTED &&
              int(Status::Code::kInvalidArgument) == COWBACKUP_INVALID_ARGUMENT &&
              int(Status::Code::kIOError) == COWBACKUP_IO_ERROR && int(Status::Code::kNoSpace) == COWBACKUP_NO_SPACE &&
              int(Status::Code::kBusy) == COWBACKUP_BUSY && int(Status::Code::kCancelled) == COWBACKUP_CANCELLED &&
              int(Status::Code::kIncomplete) == COWBACKUP_INCOMPLETE);

// `s` as a return code, its message into *errmsg (malloc'd; NULL if OK or
// if even that allocation failed).
int Report(const Status& s, char** errmsg) {
  if (errmsg != nullptr) *errmsg = s.ok() ? nullptr : strdup(s.ToString().c_str());
  return int(s.code());
}

// Runs `f` (returning a Status), turning an exception (std::bad_alloc from
// a string or a vector) into an error code.
template <typename F>
int Guarded(char** errmsg, F&& f) {
  try {
    return Report(f(), errmsg);
  } catch (const std::exception& e) {
    return Report(Status::IOError(std::string("cowbackup: ") + e.what()), errmsg);
  } catch (...) {
    return Report(Status::IOError("cowbackup: unexpected exception"), errmsg);
  }
}

}  // namespace

extern "C" {

void cowbackup_lmdb_options_init(cowbackup_lmdb_options* options) {
  if (options == nullptr) return;
  const cowbackup::BackupOptions defaults;
  *options = cowbackup_lmdb_options{};
  options->max_rate_mb = defaults.max_rate_mb;
  options->segment_pages = defaults.segment_pages;
}

int cowbackup_lmdb_attach(struct MDB_env* env, cowbackup_lmdb** out, char** errmsg) {
  if (out == nullptr) return Report(Status::InvalidArgument("lmdb attach: no place for the handle (out is NULL)"), errmsg);
  *out = nullptr;
  return Guarded(errmsg, [&] {
    auto handle = std::make_unique<cowbackup_lmdb>();
    Status s = cowbackup::lmdb::Env::Attach(env, &handle->env);
    if (s.ok()) *out = handle.release();
    return s;
  });
}

int cowbackup_lmdb_backup(cowbackup_lmdb* handle, const char* dest, const cowbackup_lmdb_options* options,
                          cowbackup_lmdb_result* result, char** errmsg) {
  if (result != nullptr) *result = cowbackup_lmdb_result{};
  if (handle == nullptr) return Report(Status::InvalidArgument("lmdb backup: no handle (NULL)"), errmsg);
  if (dest == nullptr || *dest == '\0') {
    return Report(Status::InvalidArgument("lmdb backup: no destination path"), errmsg);
  }
  return Guarded(errmsg, [&] {
    cowbackup::BackupOptions o;
    if (options != nullptr) {
      o.max_rate_mb = options->max_rate_mb;
      o.segment_pages = options->segment_pages;
      if (options->snapshot_dir != nullptr) o.snapshot_dir = options->snapshot_dir;
      o.overwrite = options->overwrite != 0;
      o.format = options->plain != 0 ? cowbackup::BackupOptions::Format::kPlain
                                     : cowbackup::BackupOptions::Format::kArchive;
    }
    cowbackup::lmdb::BackupResult r;
    Status s = handle->env->backup(dest, o, &r);
    if (s.ok() && result != nullptr) {
      result->txnid = r.txnid;
      result->pages = r.t0_pages;
      result->pages_preserved = r.summary.progress.pages_preserved;
      result->bytes_written = r.summary.progress.bytes_written;
      result->begin_lock_us = r.summary.begin_lock_us;
      result->seconds = r.summary.seconds;
    }
    return s;
  });
}

int cowbackup_lmdb_coordination(const cowbackup_lmdb* handle, char** errmsg) {
  if (handle == nullptr) return Report(Status::InvalidArgument("lmdb coordination: no handle (NULL)"), errmsg);
  return Guarded(errmsg, [&] { return handle->env->coordination(); });
}

void cowbackup_lmdb_detach(cowbackup_lmdb* handle) { delete handle; }

void cowbackup_free(void* p) { free(p); }

}  // extern "C"
