// The subcommands of build/cowbackup, one file each (tools/cmd_*.cc). Each
// takes the arguments after its name and returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace cowbackup::cli {

int RunBackup(const std::vector<std::string>& args);
int RunRestore(const std::vector<std::string>& args);
int RunVerify(const std::vector<std::string>& args);
int RunInfo(const std::vector<std::string>& args);
int RunStatus(const std::vector<std::string>& args);

}  // namespace cowbackup::cli
