// Destinations that never look complete unless they are.
//
// AtomicFile writes under a temporary name beside the destination
// ("<dest>.cowtmp-<pid>-<n>", mode 0600) and publishes with fsync, rename,
// fsync of the directory, as checkpoint_impl.cc does. abandon() unlinks the
// temporary. A StreamOutput writes to an already open descriptor (a pipe,
// stdout): it cannot be taken back, so an unfinished stream simply has no
// trailer and every reader calls it incomplete.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cowbackup/status.h"

namespace cowbackup {

// Sequential byte output used by the archive writer.
class ByteOutput {
 public:
  virtual ~ByteOutput() = default;
  virtual Status append(const uint8_t* data, size_t len) = 0;
  // Durable and visible at the destination.
  virtual Status commit() = 0;
  virtual void abandon() noexcept = 0;
  virtual const std::string& name() const = 0;
};

inline constexpr const char* kTempInfix = ".cowtmp-";

class AtomicFile final : public ByteOutput {
 public:
  // Refuses an existing destination unless `overwrite`. Fails early on an
  // unwritable directory, so a job never starts when it could not finish.
  static Status Create(const std::string& dest, bool overwrite, std::unique_ptr<AtomicFile>* out);
  ~AtomicFile() override;  // abandons unless committed

  Status append(const uint8_t* data, size_t len) override;
  Status pwrite(const uint8_t* data, size_t len, uint64_t offset);
  Status truncate(uint64_t size);
  Status commit() override;
  void abandon() noexcept override;
  const std::string& name() const override { return dest_; }
  const std::string& temp_path() const { return temp_; }
  int fd() const { return fd_; }

  // Removes temporaries of `dest` left by processes that no longer run;
  // returns their paths.
  static std::vector<std::string> RemoveStale(const std::string& dest);

  // Writeback is started every kSyncChunk bytes written and awaited one
  // chunk behind (RocksDB's bytes_per_sync): dirty pages stay bounded and
  // the final fsync is small, so the backup does not flood the disk queue
  // the application's own commits wait in.
  static constexpr uint64_t kSyncChunk = 8 << 20;

 private:
  AtomicFile(std::string dest, std::string temp, int fd, bool overwrite);
  void NoteWritten(uint64_t len);
  const std::string dest_;
  const std::string temp_;
  int fd_;
  const bool overwrite_;
  uint64_t append_offset_ = 0;
  uint64_t unsynced_ = 0;       // bytes written since the last writeback kick
  uint64_t synced_upto_ = 0;    // file offset writeback was started up to
  bool done_ = false;
};

class StreamOutput final : public ByteOutput {
 public:
  // Does not take ownership of `fd`.
  StreamOutput(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  Status append(const uint8_t* data, size_t len) override;
  Status commit() override;  // fsync if a regular file; nothing for a pipe
  void abandon() noexcept override {}
  const std::string& name() const override { return name_; }

 private:
  const int fd_;
  const std::string name_;
};

// True if `path` exists (any type).
bool PathExists(const std::string& path);

}  // namespace cowbackup
