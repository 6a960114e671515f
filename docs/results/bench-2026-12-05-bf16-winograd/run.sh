#!/bin/bash
# Winograd-shape convs: float Winograd (winograd:1) against oneDNN bf16 (winograd:0, always, bf16; rule patched to take
# input gradients of Winograd shapes and weight gradients above 64 channels), alternating, 3 repeats
out=/tmp/wbench; mkdir -p $out
F2='conv_winograd/2d/C:(64|128|256)/size:32/'
F3='conv_winograd/3d/C:(32|64|128)/size:(16|32)/'
for r in 1 2 3; do
  /tmp/bench_ops_wbf16 --benchmark_filter="($F2|$F3).*winograd:1" --benchmark_min_time=0.3 --benchmark_format=csv > $out/wino_$r.csv 2>/dev/null
  DICYC_DNNL_CONV=always DICYC_CONV_BF16=1 /tmp/bench_ops_wbf16 --benchmark_filter="($F2|$F3).*winograd:0" --benchmark_min_time=0.3 --benchmark_format=csv > $out/bf16_$r.csv 2>/dev/null
done
