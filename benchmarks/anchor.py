"""The PyTorch anchor of every comparison script: checked before anything is measured, named in
every table.

check() refuses a PyTorch that runs its GEMMs on the reference (netlib) BLAS: Debian's
python3-torch calls the system's libblas.so.3 alternative for transposed convolutions, mm and bmm,
and with only the reference BLAS installed those run 10-20x slower than with OpenBLAS, so every
ratio would flatter dicyc. Set DICYC_ALLOW_REFERENCE_BLAS=1 to measure it anyway; the anchor line
then says so. describe() is the line each script prints above its table, e.g.
    anchor: PyTorch 2.9.1+cu128 (pip wheel; BLAS: MKL 2024.2, linked in; oneDNN v3.7.1), 2 threads
    anchor: PyTorch 1.13.0a0+git... (Debian; BLAS: libblas.so.3, libopenblasp-r0.3.21.so in /usr/lib/x86_64-linux-gnu/openblas-pthread; oneDNN v2.6.3), 2 threads
Run a script with the interpreter of the anchor you want: /usr/bin/python3 for Debian's 1.13,
build/torch-venv/bin/python (scripts/torch_venv.sh) for the current PyTorch from PyPI.
"""
import os
import re
import sys


def blas_libraries():
    """Paths of the BLAS libraries this process has mapped (empty where torch links MKL in)."""
    import torch
    torch.mm(torch.ones(8, 8), torch.ones(8, 8))  # make sure a dynamically loaded BLAS is mapped
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            path = parts[-1] if len(parts) >= 6 else ""
            name = os.path.basename(path)
            if name.startswith(("libblas", "libopenblas", "libblis", "libmkl", "libflexiblas")):
                libs.add(os.path.realpath(path))
    return sorted(libs)


def is_reference_blas(path):
    return "/blas/libblas.so" in path or "netlib" in path


def check(who="anchor"):
    """Exit with a message when PyTorch runs on the reference BLAS (unless explicitly allowed)."""
    ref = [p for p in blas_libraries() if is_reference_blas(p)]
    if ref and os.environ.get("DICYC_ALLOW_REFERENCE_BLAS") != "1":
        sys.exit("%s: PyTorch is using the reference BLAS (%s), not the PyTorch a user runs; every ratio against it "
                 "would flatter dicyc. Install an optimised BLAS (apt-get install libopenblas0-pthread), or use the "
                 "PyPI build (scripts/torch_venv.sh), or set DICYC_ALLOW_REFERENCE_BLAS=1 to measure it anyway."
                 % (who, ", ".join(ref)))


def check_in_child(who="anchor"):
    """check() in a child process, for a script that must stay small before it measures memory."""
    import subprocess
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--check-only", who])
    if r.returncode != 0:
        sys.exit(r.returncode)


def cpu_model():
    """The CPU's model name and its bf16/AMX flags (/proc/cpuinfo), for every table's header."""
    name, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == "unknown CPU":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return "%s (%s; %d logical CPUs)" % (name, ", ".join(have) or "no AVX-512", os.cpu_count() or 0)


def describe(threads=None):
    import torch
    cfg = torch.__config__.show()
    blas_info = re.search(r"BLAS_INFO=(\w+)", cfg)
    libs = blas_libraries()
    if libs:
        blas = ", ".join(sorted(set(os.path.basename(p) for p in libs))) + " in " + os.path.dirname(libs[0])
        if any(is_reference_blas(p) for p in libs):
            blas += " (REFERENCE BLAS, allowed by DICYC_ALLOW_REFERENCE_BLAS)"
    elif blas_info and blas_info.group(1) == "mkl":
        mkl = re.search(r"Math Kernel Library Version ([\d.]+)", cfg)
        blas = "MKL %s, linked in" % (mkl.group(1) if mkl else "(version not reported)")
    else:
        blas = blas_info.group(1) if blas_info else "not reported"
    dnnl = re.search(r"(?:oneDNN|MKL-DNN)[^\n]*?(v[\d.]+)", cfg)
    where = "Debian" if torch.__file__.startswith("/usr/lib/python3") else "pip wheel"
    n = threads if threads is not None else torch.get_num_threads()
    return "PyTorch %s (%s; BLAS: %s; oneDNN %s), %d threads" % (
        torch.__version__, where, blas, dnnl.group(1) if dnnl else "not reported", n)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--check-only":
        check(sys.argv[2])
    else:
        check()
        print("anchor:", describe())
