#!/usr/bin/env bash
# Fetches the real scans the demos, benchmarks and fixture scripts use (dicyc-spec section 7) into
# data/ (git-ignored): Debian packages downloaded with apt-get download and unpacked with dpkg -x,
# so no root and no install are needed. Safe to run again; it skips what is already there.
#   data/itk/BrainProtonDensitySlice.png, data/itk/BrainT1Slice.png   181x217 PD/T1, aligned
#   data/mricron/ch2.nii.gz, data/mricron/ch2bet.nii.gz               T1 head, 181x217x181
#   data/ct/Cranium.inv3                                               head CT (InVesalius)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DICYC_DATA:-data}
mkdir -p "$DATA"
fetch() {  # fetch PACKAGE SUBDIR FILE...
  local pkg=$1 sub=$2
  shift 2
  local need=0
  for f in "$@"; do [[ -s "$DATA/$sub/$(basename "$f")" ]] || need=1; done
  ((need)) || return 0
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  if ! (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1); then
    # A machine whose package lists were never downloaded (or are stale) cannot find the package;
    # refresh them once when we may (root), then try again.
    if [[ $(id -u) -eq 0 && -z "${FETCH_DATA_UPDATED:-}" ]]; then
      apt-get update -qq >/dev/null 2>&1 || true
      FETCH_DATA_UPDATED=1
    fi
    (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) || {
      echo "fetch_data: 'apt-get download $pkg' failed (no network, no package lists, or no such package)" >&2
      return 1
    }
  fi
  dpkg -x "$tmp"/"$pkg"_*.deb "$tmp/x"
  mkdir -p "$DATA/$sub"
  for f in "$@"; do
    [[ -s "$tmp/x/$f" ]] || { echo "fetch_data: $f is missing from $pkg" >&2; return 1; }
    cp "$tmp/x/$f" "$DATA/$sub/"
  done
  echo "fetch_data: $pkg -> $DATA/$sub"
}
ITK=usr/share/doc/insighttoolkit4-examples/examples/Data
fetch insighttoolkit4-examples itk "$ITK/BrainProtonDensitySlice.png" "$ITK/BrainT1Slice.png"
fetch mricron-data mricron usr/share/mricron/templates/ch2.nii.gz usr/share/mricron/templates/ch2bet.nii.gz
if [[ "${1:-}" == "--all" ]]; then
  fetch invesalius-examples ct usr/share/doc/invesalius-examples/examples/Cranium.inv3
fi
