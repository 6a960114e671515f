#!/usr/bin/env bash
# The CUDA path's check, in two halves: built here (nvcc, no GPU needed), run on a machine with a
# GPU and no compiler or network.
#
#   scripts/gpu_check.sh build [--tree DIR] [--bundle DIR]
#       Builds (Release, sm_90; in DIR, default build/gpu-tree, or an existing CUDA build tree
#       given with --tree) the GPU test, dicyc-train/-synth/-eval/-bench with CUDA and NCCL, and
#       packs them with every shared library they need except the CUDA toolkit's large ones
#       (cuBLAS, cuBLASLt, NCCL: found on the GPU machine) and the small real data the runs use
#       (ch2, ch2bet) into DIR/bundle.tar.xz (default build/gpu). Fails if the bundle and the tracked
#       tree together pass 60 MiB.
#   scripts/gpu_check.sh run [OUT] [--dry-run] [--bundle DIR] [--budget SECONDS]
#       On the GPU machine, from the bundle: nvidia-smi; the GPU tests (every op, module and model
#       step against the CPU, float and half, NCCL with one rank); dicyc-train --device gpu for 200
#       iterations of CycleGAN and NMI-DiCyc in 2-D (128^2, ngf 64) and 3-D (64^3, ngf 16), checking
#       that the losses are finite and the cycle losses fall; dicyc-synth --device gpu of ch2 against
#       the CPU synthesis from the same checkpoint; --precision half once; per-iteration times
#       (dicyc-bench) beside PyTorch + cuDNN running the same networks and steps on the same GPU
#       (benchmarks/torch_reference.py --device cuda, with FLOP counts where PyTorch has them).
#       Everything goes to OUT/gpu_report.md, OUT/results.json and OUT/logs.tar.gz; every step
#       runs (a failure is reported, not fatal) within --budget seconds (default 270), and the
#       script ends non-zero if anything failed.
#       --dry-run: the same sequence on the CPU at tiny sizes (the GPU steps' CPU counterparts), so
#       that the script itself is tested without a GPU (scripts/test.sh runs it).
#
# With a GPU of one's own:  scripts/gpu_check.sh build && scripts/gpu_check.sh run gpu_out
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODE=${1:-}
shift || true
BUNDLE_DIR="$ROOT/build/gpu"
LIMIT_MIB=60

die() { echo "gpu_check: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------ build
build() {
  set -e
  local tree="$ROOT/build/gpu-tree" own_tree=1
  while (($#)); do
    case $1 in
      --tree) tree=$2; own_tree=0; shift 2 ;;
      --bundle) BUNDLE_DIR=$2; shift 2 ;;
      *) die "build: unknown argument '$1'" ;;
    esac
  done
  local nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  if ((own_tree)); then
    [[ -x $nvcc ]] || die "build needs nvcc ($nvcc not found; set CUDA_HOME)"
    cmake -S "$ROOT" -B "$tree" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDICYC_CUDA=ON \
      -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90 -DDICYC_TOOLS_VARIANTS=all >/dev/null
  fi
  grep -q "DICYC_CUDA:BOOL=ON" "$tree/CMakeCache.txt" || die "build: '$tree' is not a CUDA build tree (DICYC_CUDA=ON)"
  cmake --build "$tree" -j "$(nproc)" --target test_gpu dicyc_train dicyc_synth dicyc_eval dicyc_bench
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  mkdir -p "$stage/bin" "$stage/lib" "$stage/data"
  cp "$tree/tests/test_gpu" "$stage/bin/"
  for t in train synth eval bench; do cp "$tree/examples/dicyc-$t" "$stage/bin/"; done
  cp "$tree/examples/libdicyc-tools-gpu.so" "$stage/lib/"
  # Every shared library the binaries need, the C runtime and its loader included (the GPU
  # machine's system may be older), except the toolkit's large ones, found there.
  local skip='^(linux-vdso|libcublas|libcublasLt|libnccl|libcuda\.)'
  for f in "$stage"/bin/* "$stage"/lib/libdicyc-tools-gpu.so; do
    ldd "$f" | awk '/=>/ {print $1, $3} !/=>/ && /\// {print $1, $1}' | while read -r name path; do
      [[ $name =~ $skip || -z $path || ! -e $path ]] && continue
      [[ -e "$stage/lib/$(basename "$name")" ]] || cp -L "$path" "$stage/lib/$(basename "$name")"
    done
  done
  strip --strip-unneeded "$stage"/bin/* "$stage"/lib/*.so* 2>/dev/null || true
  local data="$ROOT/data/mricron"
  [[ -s $data/ch2.nii.gz && -s $data/ch2bet.nii.gz ]] || "$ROOT/scripts/fetch_data.sh" >/dev/null
  cp "$data/ch2.nii.gz" "$data/ch2bet.nii.gz" "$stage/data/"
  git -C "$ROOT" rev-parse HEAD > "$stage/COMMIT" 2>/dev/null || echo unknown > "$stage/COMMIT"
  mkdir -p "$BUNDLE_DIR"
  tar -C "$stage" -cf - . | xz -T0 -6 > "$BUNDLE_DIR/bundle.tar.xz.tmp"
  mv "$BUNDLE_DIR/bundle.tar.xz.tmp" "$BUNDLE_DIR/bundle.tar.xz"
  local bundle tracked total
  bundle=$(stat -c %s "$BUNDLE_DIR/bundle.tar.xz")
  tracked=$(git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 stat -c %s 2>/dev/null) | awk '{s += $1} END {print s + 0}')
  total=$((bundle + tracked))
  awk -v b="$bundle" -v u="$(du -sb "$stage" | cut -f1)" -v t="$tracked" -v s="$total" -v l="$LIMIT_MIB" -v p="$BUNDLE_DIR/bundle.tar.xz" \
    'BEGIN {printf "gpu_check: %s: %.1f MiB (unpacked %.1f MiB); with the tracked tree (%.1f MiB) %.1f MiB of the %d MiB limit\n", p, b / 1048576, u / 1048576, t / 1048576, s / 1048576, l}' 
  ((total <= LIMIT_MIB * 1048576)) || die "the bundle and the tracked tree pass $LIMIT_MIB MiB"
}

# ------------------------------------------------------------------------------------------ run
OUT="" DRY=0 BUDGET=270 UNPACKED=""
declare -a NAMES STATUS SECS NOTES
START=0

remaining() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME TIMEOUT -- CMD...: runs CMD with its output in logs/NAME.log, within TIMEOUT and the
# budget left; records ok / FAIL (exit code) / TIMEOUT / skip (77 or no time left).
step() {
  local name=$1 limit=$2; shift 3
  local left; left=$(remaining)
  ((left < limit)) && limit=$left
  if ((limit < 5)); then
    NAMES+=("$name"); STATUS+=("skip"); SECS+=(0); NOTES+=("no time left in the ${BUDGET} s budget")
    echo "skip $name (budget spent)"; return 0
  fi
  local t0 rc st
  t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  local dt; dt=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
  case $rc in
    0) st=ok ;;
    77) st=skip ;;
    124|137) st=TIMEOUT ;;
    *) st="FAIL" ;;
  esac
  NAMES+=("$name"); STATUS+=("$st"); SECS+=("$dt")
  NOTES+=("$( [[ $st == FAIL ]] && echo "exit $rc: $(tail -n 3 "$OUT/logs/$name.log" | tr '\n' ' ' | cut -c1-300)" || ([[ $st == TIMEOUT ]] && echo "stopped after $limit s") || true)")
  printf '%-7s %-28s %6.1f s\n' "$st" "$name" "$dt"
}

run() {
  local bundle_arg=""
  while (($#)); do
    case $1 in
      --dry-run) DRY=1; shift ;;
      --bundle) BUNDLE_DIR=$2; shift 2 ;;
      --budget) BUDGET=$2; shift 2 ;;
      -*) die "run: unknown flag '$1'" ;;
      *) OUT=$1; shift ;;
    esac
  done
  OUT=${OUT:-$ROOT/gpu_out}
  mkdir -p "$OUT/logs" "$OUT/runs"
  OUT=$(cd "$OUT" && pwd)
  START=$(date +%s)
  [[ -s "$BUNDLE_DIR/bundle.tar.xz" ]] || die "no bundle at $BUNDLE_DIR/bundle.tar.xz: run 'scripts/gpu_check.sh build' first"
  UNPACKED=$(mktemp -d)
  trap 'rm -rf "$UNPACKED"' EXIT
  local B=$UNPACKED
  tar -C "$B" -xJf "$BUNDLE_DIR/bundle.tar.xz" || die "cannot unpack $BUNDLE_DIR/bundle.tar.xz"
  # The toolkit's libraries on the GPU machine: the CUDA toolkit, then the nvidia-* wheels of its
  # Python (PyTorch's cuBLAS and NCCL).
  local cuda_libs="" d
  for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" "${CUDA_HOME:-/usr/local/cuda}/lib" /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -d $d ]] && cuda_libs+=":$d"
  done
  # The Python with numpy and torch (the GPU machine's PyTorch environment; Debian's python3 here).
  local py="" c
  for c in ${DICYC_PYTHON:-} python3 /usr/bin/python3; do
    if "$c" -c "import numpy, torch" >/dev/null 2>&1; then py=$c; break; fi
  done
  if [[ -z $py ]]; then
    for c in ${DICYC_PYTHON:-} python3 /usr/bin/python3; do "$c" -c "import numpy" >/dev/null 2>&1 && { py=$c; break; }; done
  fi
  [[ -n $py ]] || py=python3
  echo "gpu_check: Python: $py ($("$py" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null))"
  local wheels
  wheels=$("$py" -c 'import glob, os, site
dirs = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({os.path.dirname(p) for s in dirs for p in glob.glob(os.path.join(s, "nvidia", "*", "lib", "lib*.so*"))})))' 2>/dev/null || true)
  [[ -n $wheels ]] && cuda_libs+=":$wheels"
  local LIBPATH="$B/lib$cuda_libs"
  # The bundled loader runs the tools with the bundled C runtime.
  local LD=("$B/lib/ld-linux-x86-64.so.2" --library-path "$LIBPATH")
  [[ -x "$B/lib/ld-linux-x86-64.so.2" ]] || LD=(env "LD_LIBRARY_PATH=$LIBPATH")
  tool() { local t=$1; shift; "${LD[@]}" "$B/bin/$t" "$@"; }
  export -f tool 2>/dev/null || true
  local DEV=gpu THREADS=16 A="$B/data/ch2.nii.gz" Bd="$B/data/ch2bet.nii.gz"
  # Sizes: the issue's on a GPU; tiny on the CPU.
  local S2=128 G2=64 K2=6 D2=64 S3=64 G3=16 K3=3 D3=32 IT=200 HIT=50 BIT=10
  if ((DRY)); then
    DEV=cpu THREADS=2 S2=32 G2=4 K2=1 D2=8 S3=32 G3=4 K3=1 D3=8 IT=12 HIT=4 BIT=2
  fi
  echo "gpu_check: bundle $(cat "$B/COMMIT"), out $OUT, budget $BUDGET s$( ((DRY)) && echo ', DRY RUN on the CPU')"

  # 1. The machine.
  if ((DRY)); then
    step machine 10 -- bash -c "uname -a; lscpu | grep -E 'Model name|^CPU\(s\)'; echo 'dry run: no nvidia-smi'"
  else
    step nvidia-smi 20 -- nvidia-smi
  fi
  # 2. The GPU tests (exit 77 without a GPU: a skip in a dry run).
  step test_gpu 75 -- "${LD[@]}" "$B/bin/test_gpu" --log_level=test_suite --report_level=short
  # 3. Training on the device: 2-D and 3-D, CycleGAN and NMI-DiCyc.
  local common=(-a "$A" -b "$Bd" --max-iters "$IT" --checkpoint-every "$IT" --sample-every 0 --log-every 25
                --threads "$THREADS" --device "$DEV" --max-memory off)
  step train_2d_cyclegan 50 -- "${LD[@]}" "$B/bin/dicyc-train" "${common[@]}" --model cyclegan --dim 2 --spacing 1.5 \
    --crop "$S2" --ngf "$G2" --blocks "$K2" --ndf "$D2" --out "$OUT/runs/2d_cyclegan"
  step train_2d_nmi-dicyc 60 -- "${LD[@]}" "$B/bin/dicyc-train" "${common[@]}" --model nmi-dicyc --dim 2 --spacing 1.5 \
    --crop "$S2" --ngf "$G2" --blocks "$K2" --ndf "$D2" --out "$OUT/runs/2d_nmi-dicyc"
  step train_3d_cyclegan 50 -- "${LD[@]}" "$B/bin/dicyc-train" "${common[@]}" --model cyclegan --dim 3 --spacing 2.5 \
    --crop "$S3" --ngf "$G3" --blocks "$K3" --ndf "$D3" --out "$OUT/runs/3d_cyclegan"
  step train_3d_nmi-dicyc 60 -- "${LD[@]}" "$B/bin/dicyc-train" "${common[@]}" --model nmi-dicyc --dim 3 --spacing 2.5 \
    --crop "$S3" --ngf "$G3" --blocks "$K3" --ndf "$D3" --out "$OUT/runs/3d_nmi-dicyc"
  # A resume on the device: the checkpoint's state crosses the nvcc boundary as host buffers
  # (HostModel::state/restore), the file is read on the g++ side; 10 more iterations.
  step resume_2d_nmi-dicyc 30 -- "${LD[@]}" "$B/bin/dicyc-train" -a "$A" -b "$Bd" --resume --max-iters "$((IT + 10))" --checkpoint-every 10 \
    --device "$DEV" --threads "$THREADS" --max-memory off --out "$OUT/runs/2d_nmi-dicyc"
  # 4. Synthesis of ch2 on the device against the CPU, from the same checkpoint.
  local ck="$OUT/runs/2d_cyclegan/checkpoint.safetensors"
  step synth_device 40 -- "${LD[@]}" "$B/bin/dicyc-synth" --checkpoint "$ck" --in "$A" --out "$OUT/runs/synth_dev" \
    --device "$DEV" --threads "$THREADS"
  step synth_cpu 60 -- "${LD[@]}" "$B/bin/dicyc-synth" --checkpoint "$ck" --in "$A" --out "$OUT/runs/synth_cpu" \
    --device cpu --threads "$THREADS"
  step synth_compare 20 -- "$py" "$ROOT/scripts/gpu_report.py" compare "$OUT/runs/synth_dev/ch2.nii.gz" \
    "$OUT/runs/synth_cpu/ch2.nii.gz" "$OUT/synth_compare.json"
  # 5. Half precision once.
  step train_2d_half 40 -- "${LD[@]}" "$B/bin/dicyc-train" "${common[@]}" --max-iters "$HIT" --checkpoint-every "$HIT" \
    --model cyclegan --dim 2 --spacing 1.5 --precision half --crop "$S2" --ngf "$G2" --blocks "$K2" --ndf "$D2" \
    --out "$OUT/runs/2d_half"
  # 6. Per-iteration times: dicyc-bench beside PyTorch on the same device.
  local tdev=cpu; ((DRY)) || tdev=cuda
  for cfg in "2 $S2 $G2 $K2 $D2" "3 $S3 $G3 $K3 $D3"; do
    read -r dim size ngf blocks ndf <<< "$cfg"
    for model in cyclegan nmi-dicyc; do
      step "bench_${dim}d_$model" 40 -- "${LD[@]}" "$B/bin/dicyc-bench" --model "$model" --dim "$dim" --size "$size" \
        --ngf "$ngf" --blocks "$blocks" --ndf "$ndf" --iters "$BIT" --warmup 2 --device "$DEV" --threads "$THREADS"
    done
    local ref="$ROOT/benchmarks/torch_reference.py" only=(cyclegan dicyc)
    [[ $dim == 3 ]] && { ref="$ROOT/benchmarks/torch_reference3d.py"; only=(cyclegan dicyc); }
    step "torch_${dim}d" 60 -- env DICYC_ALLOW_REFERENCE_BLAS=1 "$py" "$ref" --device "$tdev" --size "$size" --ngf "$ngf" \
      --blocks "$blocks" --ndf "$ndf" --runs "$BIT" --threads "$THREADS" --only "${only[@]}" --flops --json "$OUT/torch_${dim}d.json"
  done
  # 7. The report.
  local table="$OUT/steps.tsv"
  : > "$table"
  local i
  for i in "${!NAMES[@]}"; do printf '%s\t%s\t%s\t%s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" "${NOTES[$i]}" >> "$table"; done
  local failed=0 rrc=0
  "$py" "$ROOT/scripts/gpu_report.py" report "$OUT" "$(cat "$B/COMMIT")" "$DRY" > "$OUT/logs/report.log" 2>&1 || rrc=$?
  if ((rrc == 3)); then
    echo "gpu_check: a training run's losses were not finite or did not fall (see $OUT/gpu_report.md)" >&2; failed=1
  elif ((rrc != 0)); then
    echo "gpu_check: the report script failed: $(tail -n 3 "$OUT/logs/report.log")" >&2; failed=1
  fi
  tar -C "$OUT" --exclude='*.safetensors' --exclude='*.nii.gz' -czf "$OUT/logs.tar.gz.tmp" logs runs 2>/dev/null
  mv "$OUT/logs.tar.gz.tmp" "$OUT/logs.tar.gz"
  rm -rf "$OUT/logs" "$OUT/runs"
  for i in "${!STATUS[@]}"; do [[ ${STATUS[$i]} == FAIL || ${STATUS[$i]} == TIMEOUT ]] && failed=$((failed + 1)); done
  # A dry run may skip the GPU tests (77); a real run may not.
  if ((!DRY)); then for i in "${!STATUS[@]}"; do [[ ${NAMES[$i]} == test_gpu && ${STATUS[$i]} == skip ]] && failed=$((failed + 1)); done; fi
  echo "gpu_check: $((${#NAMES[@]} - failed)) of ${#NAMES[@]} steps ok or skipped, $failed failed; $(($(date +%s) - START)) s; report $OUT/gpu_report.md"
  ((failed == 0))
}

case $MODE in
  build) build "$@" ;;
  run) run "$@" ;;
  *) echo "usage: scripts/gpu_check.sh build [--tree DIR] [--bundle DIR] | run [OUT] [--dry-run] [--bundle DIR] [--budget S]" >&2; exit 2 ;;
esac
