// Compares two safetensors checkpoints tensor by tensor (names, dtypes, shapes, every byte) and,
// with --metadata, their metadata too; prints each difference.
//   checkpoint_diff A.safetensors B.safetensors [--metadata]
// Exit 0 when identical, 1 when they differ, 2 on a usage or read error.
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include "dicyc/io/safetensors.hpp"

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4 || (argc == 4 && std::strcmp(argv[3], "--metadata") != 0)) {
    std::fprintf(stderr, "usage: checkpoint_diff A.safetensors B.safetensors [--metadata]\n");
    return 2;
  }
  try {
    const auto a = dicyc::io::SafeTensorsFile::read(argv[1]), b = dicyc::io::SafeTensorsFile::read(argv[2]);
    int diffs = 0;
    std::set<std::string> names;
    for (const auto& n : a.names()) names.insert(n);
    for (const auto& n : b.names()) names.insert(n);
    for (const auto& n : names) {
      if (!a.has(n) || !b.has(n)) {
        std::printf("tensor %s: only in %s\n", n.c_str(), a.has(n) ? argv[1] : argv[2]);
        ++diffs;
        continue;
      }
      const auto &ia = a.info(n), &ib = b.info(n);
      if (ia.dtype != ib.dtype || ia.shape != ib.shape) {
        std::printf("tensor %s: dtype or shape differs\n", n.c_str());
        ++diffs;
        continue;
      }
      const auto ra = a.raw_bytes(n), rb = b.raw_bytes(n);
      if (ra != rb) {
        std::size_t first = 0, count = 0;
        for (std::size_t i = 0; i < ra.size(); ++i)
          if (ra[i] != rb[i]) {
            if (count++ == 0) first = i;
          }
        std::printf("tensor %s: %zu of %zu bytes differ (first at byte %zu)\n", n.c_str(), count, ra.size(), first);
        ++diffs;
      }
    }
    if (argc == 4) {
      std::set<std::string> keys;
      for (const auto& kv : a.metadata()) keys.insert(kv.first);
      for (const auto& kv : b.metadata()) keys.insert(kv.first);
      for (const auto& k : keys)
        if (!a.has_metadata(k) || !b.has_metadata(k) || a.metadata(k) != b.metadata(k)) {
          std::printf("metadata %s differs\n", k.c_str());
          ++diffs;
        }
    }
    if (diffs) {
      std::printf("%d difference(s)\n", diffs);
      return 1;
    }
    std::printf("identical: %zu tensors\n", names.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint_diff: %s\n", e.what());
    return 2;
  }
}
