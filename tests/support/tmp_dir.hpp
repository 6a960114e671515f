// A per-process scratch folder for tests that write files; removed with everything in it.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace dt {

struct TmpDir {
  std::filesystem::path dir;
  explicit TmpDir(const std::string& tag) {
    dir = std::filesystem::temp_directory_path() / ("dicyc_test_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
  }
  ~TmpDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  TmpDir(const TmpDir&) = delete;
  TmpDir& operator=(const TmpDir&) = delete;
  std::string operator()(const std::string& name) const { return (dir / name).string(); }
};

}  // namespace dt
