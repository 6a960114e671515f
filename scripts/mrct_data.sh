#!/usr/bin/env bash
# The unpaired MR <-> CT data of the demo and the soak run: ch2 (A) and the InVesalius head CT (B),
# converted to NIfTI once with dicyc-raw2nii, copied into OUT/mr and OUT/ct.
#   scripts/mrct_data.sh BIN_DIR OUT_DIR      (after scripts/fetch_data.sh --all)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1; OUT=$2
mkdir -p "$OUT/mr" "$OUT/ct"
# The InVesalius CT: matrix.dat (int16 LE, z,y,x = 108x256x256) out of the .inv3 tarball.
if [[ ! -s data/ct/ct.nii.gz ]]; then
  tmp=$(mktemp -d)
  tar -xzf data/ct/Cranium.inv3 -C "$tmp" --wildcards '*/matrix.dat'
  "$BIN/dicyc-raw2nii" --in "$tmp"/*/matrix.dat --dims 256,256,108 --spacing 0.9570312,0.9570312,1.5 \
    --type int16 --orientation LAS --out data/ct/ct.nii.gz
  rm -rf "$tmp"
fi
cp data/mricron/ch2.nii.gz "$OUT/mr/ch2.nii.gz"
cp data/ct/ct.nii.gz "$OUT/ct/ct.nii.gz"
