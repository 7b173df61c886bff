// The backup API's internals, for tests that need to get between the
// backup and its parts (fault injection) without widening the public API.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "cowbackup/lmdb.hpp"
#include "engine/source.h"

namespace cowbackup::lmdb {

struct BackupHooks {
  // Wraps the source the engine reads data.mdb through (pre-images and
  // copies). The returned Source must live until the backup ends; the
  // hook keeps ownership.
  std::function<Source*(Source* env_source)> wrap_source;
};

// backup() / backup_to_fd() with hooks: dest_fd >= 0 streams to it.
Status BackupWithHooks(Env& env, const std::string& dest, int dest_fd, const BackupOptions& options,
                       const BackupHooks& hooks, BackupResult* result);

}  // namespace cowbackup::lmdb
