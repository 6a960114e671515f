// dicyc/io/atomic_file.hpp -- the one way dicyc writes a file: to "<path>.tmp.<pid>" in the
// destination's directory, flushed and fsync'ed, then renamed over the destination, so a crash or
// a full disk mid-write leaves the old file or the new one, never a broken one. Checkpoints,
// NIfTI volumes, PNGs, CSV logs and reports all go through it.
//
// A process killed mid-write leaves its temporary behind: remove_stale_temporaries() deletes
// those of a folder whose writer process is gone (they are never read).
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "dicyc/core/error.hpp"

namespace dicyc::io {

/// Atomic write of what `emit` writes into the open temporary file (true: all written); throws
/// IoError, leaving `path` untouched.
template <class Emit>
void write_file_atomic_with(const std::string& path, Emit&& emit) {
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(::getpid()));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  DICYC_CHECK(f != nullptr, IoError, "cannot write '" << tmp << "': " << std::strerror(errno));
  errno = 0;
  const bool ok = emit(f) && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(tmp.c_str());
    DICYC_CHECK(false, IoError, "cannot write '" << tmp << "': " << std::strerror(err ? err : EIO));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    DICYC_CHECK(false, IoError, "cannot rename '" << tmp << "' to '" << path << "': " << std::strerror(e));
  }
}

inline void write_file_atomic(const std::string& path, const void* data, std::size_t size) {
  write_file_atomic_with(path, [&](std::FILE* f) { return size == 0 || std::fwrite(data, 1, size, f) == size; });
}
inline void write_file_atomic(const std::string& path, const std::vector<unsigned char>& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}
inline void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

/// Removes the "<name>.tmp.<pid>" files in `dir` whose writer process no longer exists.
inline void remove_stale_temporaries(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const auto at = n.rfind(".tmp.");
    if (at == std::string::npos) continue;
    const long pid = std::atol(n.c_str() + at + 5);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) fs::remove(e.path(), ec);
  }
}

}  // namespace dicyc::io
