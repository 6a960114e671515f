// libFuzzer target: the NIfTI reader on arbitrary bytes, as .nii and as .nii.gz (the first input
// byte picks), with a 64 MiB voxel limit. Any dicyc::Error is a correct refusal; anything else
// (a crash, a sanitizer report, another exception, a leak) is a finding.
//   scripts/fuzz.sh builds it with clang -fsanitize=fuzzer,address,undefined.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "dicyc/io/nifti.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string base = "/tmp/dicyc_fuzz_nifti_" + std::to_string(::getpid());
  if (size == 0) return 0;
  const bool gz = data[0] & 1;
  const std::string path = base + (gz ? ".nii.gz" : ".nii");
  {
    if (gz) {
      gzFile f = gzopen(path.c_str(), "wb1");
      if (!f) return 0;
      if (size > 1) gzwrite(f, data + 1, static_cast<unsigned>(size - 1));
      gzclose(f);
    } else {
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (!f) return 0;
      if (size > 1) std::fwrite(data + 1, 1, size - 1, f);
      std::fclose(f);
    }
  }
  dicyc::io::NiftiReadOptions o;
  o.max_bytes = 64 << 20;
  o.volume = size > 2 ? static_cast<int>(data[size - 1] % 3) - 1 : -1;
  try {
    const auto v = dicyc::io::read_nifti(path, o);
    volatile float sink = v.voxels() ? v.data.data()[0] : 0.0f;
    (void)sink;
    (void)v.affine();
  } catch (const dicyc::Error&) {
  }
  try {
    (void)dicyc::io::nifti_volumes(path);
  } catch (const dicyc::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
