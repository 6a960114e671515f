#!/bin/bash
# Transposed conv layers (bench_ops conv_layer, tr:1): dicyc kernels (DICYC_DNNL_CONV=0) / oneDNN float (always) /
# oneDNN bf16 (always + DICYC_CONV_BF16=1), alternating, 3 repeats. Measured with a build whose bf16 rule
# already took the transposed passes (the rule committed with these results does, from 16 channels).
out=/tmp/trbench; mkdir -p $out
F='conv_layer/.*tr:1'
for r in 1 2 3; do
  DICYC_DNNL_CONV=0 build/dev/benchmarks/bench_ops --benchmark_filter="$F" --benchmark_min_time=0.3 --benchmark_format=csv > $out/off_$r.csv 2>/dev/null
  DICYC_DNNL_CONV=always build/dev/benchmarks/bench_ops --benchmark_filter="$F" --benchmark_min_time=0.3 --benchmark_format=csv > $out/dnnl_$r.csv 2>/dev/null
  DICYC_DNNL_CONV=always DICYC_CONV_BF16=1 build/dev/benchmarks/bench_ops --benchmark_filter="$F" --benchmark_min_time=0.3 --benchmark_format=csv > $out/bf16_$r.csv 2>/dev/null
done
