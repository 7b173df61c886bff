// cowbackup: the result type every fallible call returns.
//
// A Status is OK, or a code plus one message of two parts: what failed and
// where ("snapshot volume write: /backups/x.cowsnap: No space left on device",
// "corrupt record: offset 8232, page 2"). Modelled on leveldb::Status; the
// codes are few on purpose. Callers branch on the code, people read the text.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace cowbackup {

class [[nodiscard]] Status {
 public:
  enum class Code : uint8_t {
    kOk = 0,
    kNotFound,
    kCorruption,       // bad bytes in an archive or snapshot volume
    kNotSupported,     // a format version, flag or mode we do not handle
    kInvalidArgument,  // the caller's fault: bad option, path, state
    kIOError,          // a system call failed (errno recorded in the text)
    kNoSpace,          // ENOSPC / EDQUOT: its own code, operators act on it
    kBusy,             // a lock or a running job is in the way
    kCancelled,        // cancel() was called
    kIncomplete,       // an archive ends before its trailer
  };

  Status() = default;
  static Status OK() { return Status(); }

  static Status NotFound(const std::string& what, const std::string& where = {}) {
    return Status(Code::kNotFound, what, where);
  }
  static Status Corruption(const std::string& what, const std::string& where = {}) {
    return Status(Code::kCorruption, what, where);
  }
  static Status NotSupported(const std::string& what, const std::string& where = {}) {
    return Status(Code::kNotSupported, what, where);
  }
  static Status InvalidArgument(const std::string& what, const std::string& where = {}) {
    return Status(Code::kInvalidArgument, what, where);
  }
  static Status Busy(const std::string& what, const std::string& where = {}) {
    return Status(Code::kBusy, what, where);
  }
  static Status Cancelled(const std::string& what = "cancelled") {
    return Status(Code::kCancelled, what, {});
  }
  static Status Incomplete(const std::string& what, const std::string& where = {}) {
    return Status(Code::kIncomplete, what, where);
  }
  // Errors without an errno (e.g. a library's own error codes, such as
  // LMDB's MDB_PANIC or MDB_MAP_FULL): the text says what happened.
  static Status IOError(const std::string& what, const std::string& where = {}) {
    return Status(Code::kIOError, what, where);
  }
  static Status NoSpace(const std::string& what, const std::string& where = {}) {
    return Status(Code::kNoSpace, what, where);
  }
  // An error from a system call: `what` names the action ("read", "fsync"),
  // `where` the path; errno `err` picks kNoSpace or kIOError and adds its text.
  static Status FromErrno(const std::string& what, const std::string& where, int err);

  // A failure of code `code` (kOk is taken as kIOError): for a status that
  // crossed a process boundary as its code and message.
  static Status FromCode(Code code, const std::string& what) {
    return Status(code == Code::kOk ? Code::kIOError : code, what, {});
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool IsNoSpace() const { return code_ == Code::kNoSpace; }
  bool IsCancelled() const { return code_ == Code::kCancelled; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsIncomplete() const { return code_ == Code::kIncomplete; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsBusy() const { return code_ == Code::kBusy; }
  bool IsNotSupported() const { return code_ == Code::kNotSupported; }

  // "what: where" (or "OK").
  const std::string& message() const { return msg_; }
  std::string ToString() const { return ok() ? std::string("OK") : msg_; }

 private:
  Status(Code code, const std::string& what, const std::string& where)
      : code_(code), msg_(where.empty() ? what : what + ": " + where) {}

  Code code_ = Code::kOk;
  std::string msg_;
};

}  // namespace cowbackup
