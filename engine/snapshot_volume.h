// The snapshot volume: where pre-images of pages overwritten before the
// copier reached them are kept until the copier takes them.
//
// FileSnapshotVolume lays records out by page number in a sparse file, so
// the snapshot map the job keeps is one bit per page ("preserved"), not an
// index entry per record:
//
//   offset 0                 kVolumeHeaderSize            + pgno * slot
//   +------------------------+----------------------------+--------------+
//   | volume header (4 KiB)  | slot 0 | slot 1 | ...      | slot pgno    |
//   +------------------------+----------------------------+--------------+
//   slot = | pgno u64 | len u32 | 0 u32 | page bytes | xxh3-64 of all before |
//
// Unwritten slots are holes and cost no disk. The header names the job
// (magic "COWSNAP1", page size, pid, creation time, source path) so that a
// volume left by a crashed process is recognised as stale and removed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "cowbackup/status.h"

namespace cowbackup {

// Thread-safety: put() and get() may run concurrently for distinct pages.
class SnapshotVolume {
 public:
  virtual ~SnapshotVolume() = default;
  // Stores the pre-image of `pgno` (page_size bytes).
  virtual Status put(uint64_t pgno, const uint8_t* page) = 0;
  // Reads back what put() stored for `pgno`, checking its frame.
  virtual Status get(uint64_t pgno, uint8_t* page) = 0;
  // Deletes the backing storage. Called once, when the job ends.
  virtual void remove() noexcept = 0;
};

inline constexpr uint64_t kVolumeHeaderSize = 4096;
inline constexpr uint64_t kVolumeFrameOverhead = 24;  // 16 before + 8 after
inline constexpr char kVolumeMagic[8] = {'C', 'O', 'W', 'S', 'N', 'A', 'P', '1'};
inline constexpr const char* kVolumeSuffix = ".cowsnap";

class FileSnapshotVolume final : public SnapshotVolume {
 public:
  // Creates `path` (O_EXCL|O_NOFOLLOW, mode 0600) and writes its header.
  static Status Create(const std::string& path, uint32_t page_size,
                       const std::string& source_name,
                       std::unique_ptr<FileSnapshotVolume>* out);
  // The same at a fresh name "<prefix><pid>-<random>.cowsnap" (MakeUnique:
  // a name already taken is never reused).
  static Status CreateUnique(const std::string& prefix, uint32_t page_size,
                             const std::string& source_name,
                             std::unique_ptr<FileSnapshotVolume>* out);
  // Opens the volume another process of the same job created, to put
  // pre-images in it (a shared job's participant, engine/shared_pages.h):
  // a regular file only (OpenRegular), owned by this user, mode 0600, with
  // a valid header for `page_size`. remove() on it only closes it: the
  // volume is its creator's to remove.
  static Status OpenShared(const std::string& path, uint32_t page_size,
                           std::unique_ptr<FileSnapshotVolume>* out);
  ~FileSnapshotVolume() override;

  Status put(uint64_t pgno, const uint8_t* page) override;
  Status get(uint64_t pgno, uint8_t* page) override;
  void remove() noexcept override;
  const std::string& path() const { return path_; }

  // What a stale-volume check needs from a volume header.
  struct Info {
    uint32_t page_size = 0;
    int64_t pid = 0;
    uint64_t created_unix_us = 0;
    std::string source_name;
  };
  // Reads the header of an existing volume; Corruption if it is not one.
  // Opens only a regular file (OpenRegular: never a FIFO, device or link).
  static Status ReadInfo(const std::string& path, Info* info);

 private:
  FileSnapshotVolume(std::string path, int fd, uint32_t page_size);
  static Status ReadHeader(int fd, const std::string& path, Info* info);
  // Writes the header through `fd` (just created at `path`).
  static Status Init(std::string path, int fd, uint32_t page_size, const std::string& source_name,
                     std::unique_ptr<FileSnapshotVolume>* out);
  uint64_t slot_offset(uint64_t pgno) const {
    return kVolumeHeaderSize + pgno * (page_size_ + kVolumeFrameOverhead);
  }

  const std::string path_;
  const int fd_;
  const uint32_t page_size_;
  bool removed_ = false;  // touched only by the copier thread at job end
};

}  // namespace cowbackup
