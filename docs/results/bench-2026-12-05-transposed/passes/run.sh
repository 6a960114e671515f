#!/bin/bash
# whole passes, old (before transposed convs on oneDNN) vs new bench_model(3d), float and bf16, alternating, 3 repeats
cd /work/main; out=/tmp/passbench; mkdir -p $out
for r in 1 2 3; do for p in 0 1; do for v in old new; do
  B=build/dev/benchmarks/bench_model; B3=build/dev/benchmarks/bench_model3d
  [ $v = old ] && B=/tmp/bench_model_old && B3=/tmp/bench_model3d_old
  DICYC_CONV_BF16=$p DICYC_BENCH_NGF=16 DICYC_BENCH_BLOCKS=4 DICYC_BENCH_NDF=32 DICYC_BENCH_SIZE=96 $B --benchmark_filter='^(G_fwd_bwd|cyclegan_step)' --benchmark_min_time=1 --benchmark_format=csv > $out/demo_${v}_bf${p}_$r.csv 2>/dev/null
  DICYC_CONV_BF16=$p $B --benchmark_filter='^G_fwd_bwd' --benchmark_min_time=1 --benchmark_format=csv > $out/ngf64_${v}_bf${p}_$r.csv 2>/dev/null
  DICYC_CONV_BF16=$p $B3 --benchmark_filter='^(G3_fwd_bwd)' --benchmark_min_time=1 --benchmark_format=csv > $out/g3_${v}_bf${p}_$r.csv 2>/dev/null
done; done; done
