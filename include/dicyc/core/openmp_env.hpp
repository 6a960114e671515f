// dicyc/core/openmp_env.hpp -- shorter OpenMP spinning for programs whose oneDNN runs on GNU OpenMP.
//
// Debian's oneDNN (the one dicyc links) runs its convolution primitives on an OpenMP team; every
// other op runs on the context's Eigen thread pool. After each parallel region GNU OpenMP's
// workers spin (GOMP_SPINCOUNT, 300000 turns by default: milliseconds) before they sleep, on the
// same cores where the pool is already at work on the next op. In a training step that calls
// oneDNN hundreds of times (the DiCyc models' many small passes) that spinning was a third of the
// CPU samples on 2 cores (docs/performance.md). libgomp reads GOMP_SPINCOUNT once, when it is
// loaded, before main() runs, and offers no call to change it later; so a program that wants a
// shorter spin must have it in its environment when it starts.
//
// limit_openmp_spin(argv) does that for a program: called first thing in main(), when GNU OpenMP
// is loaded into the process and the user set neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY, it puts
// GOMP_SPINCOUNT=<spin> into the environment and executes the same program again, with the same
// arguments, once (the new image finds the variable set and returns at once; the process keeps
// its id, so mpirun, timeout and job schedulers see nothing). A user's own GOMP_SPINCOUNT or
// OMP_WAIT_POLICY always wins (GOMP_SPINCOUNT=300000 restores libgomp's default). When the
// program cannot be executed again (no /proc, the file replaced while it ran) it goes on as it
// is, with the default spin. A program started through the dynamic loader (`ld-linux-x86-64.so.2
// [--library-path DIR] program args`, as the GPU check's bundle runs the tools) is executed again
// the same way: /proc/self/exe is then the loader, so the loader's whole command line, read from
// /proc/self/cmdline, is what runs again. The dicyc tools and benchmarks call it; a program that
// includes the headers may call it too, or set GOMP_SPINCOUNT itself.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(__linux__)
#include <dlfcn.h>
#include <unistd.h>
#endif

namespace dicyc::core {

/// The spin the tools use: measured on 2 cores of an Intel Xeon through dicyc-train at the demo's
/// widths (docs/performance.md, "OpenMP spinning").
inline constexpr const char* kToolOpenmpSpin = "1000";

/// True when GNU OpenMP (libgomp) is loaded into this process (oneDNN linked with it).
inline bool gnu_openmp_loaded() {
#if defined(__linux__)
  return dlsym(RTLD_DEFAULT, "GOMP_parallel") != nullptr;
#else
  return false;
#endif
}

namespace detail {

/// The arguments the kernel executed this process with (/proc/self/cmdline), or empty.
inline std::vector<std::string> process_command_line() {
  std::vector<std::string> args;
#if defined(__linux__)
  std::FILE* f = std::fopen("/proc/self/cmdline", "rb");
  if (f == nullptr) return args;
  std::string all;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) all.append(buf, n);
  std::fclose(f);
  std::size_t start = 0;
  while (start < all.size()) {
    std::size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    args.emplace_back(all, start, end - start);
    start = end + 1;
  }
#endif
  return args;
}

/// The argument vector that runs this process again through /proc/self/exe: `argv` itself when
/// the kernel executed the program directly; the loader's whole command line when the program was
/// started through the dynamic loader (its arguments after the program's path equal argv[1..]).
/// Empty when neither fits (then nothing is executed again).
inline std::vector<std::string> command_line_to_run_again(char** argv) {
  std::vector<std::string> mine;
  for (char** a = argv; *a != nullptr; ++a) mine.emplace_back(*a);
  std::vector<std::string> kernel = process_command_line();
  if (kernel.empty() || kernel.size() < mine.size()) return {};
  const std::size_t shift = kernel.size() - mine.size();
  for (std::size_t i = 1; i < mine.size(); ++i)
    if (kernel[shift + i] != mine[i]) return {};
  if (shift == 0) return kernel[0] == mine[0] ? mine : std::vector<std::string>{};
  return kernel;
}

}  // namespace detail

/// See the file comment. Returns only when nothing was to be done or executing again failed.
inline void limit_openmp_spin(char** argv, const char* spin = kToolOpenmpSpin) {
#if defined(__linux__)
  if (argv == nullptr || argv[0] == nullptr || spin == nullptr) return;
  if (std::getenv("GOMP_SPINCOUNT") != nullptr || std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (!gnu_openmp_loaded()) return;
  std::vector<std::string> again = detail::command_line_to_run_again(argv);
  if (again.empty()) return;
  std::vector<char*> ptrs;
  for (std::string& a : again) ptrs.push_back(a.data());
  ptrs.push_back(nullptr);
  if (setenv("GOMP_SPINCOUNT", spin, 1) != 0) return;
  execv("/proc/self/exe", ptrs.data());
  // Still here: the program could not be executed again. Leave the environment as it was, so that
  // what this process starts sees what the user set.
  unsetenv("GOMP_SPINCOUNT");
#else
  (void)argv;
  (void)spin;
#endif
}

}  // namespace dicyc::core
