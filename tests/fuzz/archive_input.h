// One hostile archive, fed to every reader a user can point at it: the
// archive reader over a regular file and over a pipe (a stream has no size
// to bound page_count by), VerifyArchive, and RestoreArchive into a scratch
// directory. Shared by the libFuzzer target (fuzz_archive.cc) and the
// regression test that replays every input in tests/fuzz/regressions.
//
// Besides what the sanitizers catch, it aborts when the readers disagree
// (verify accepts what restore refuses, or the pipe and the file disagree
// on whether the archive is valid), when restore writes anything but OUT
// into the scratch directory, or when a failed restore leaves anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cowbackup::fuzz {

// `scratch` is an empty directory the call may use; it is left empty.
void CheckArchiveInput(const uint8_t* data, size_t size, const std::string& scratch);

}  // namespace cowbackup::fuzz
