#!/bin/bash
# alternating A/B: old (before) and new binaries, 3 rounds
cd /work/main
export DICYC_BENCH_NGF=16 DICYC_BENCH_BLOCKS=4 DICYC_BENCH_NDF=32
for r in 1 2 3; do
  for v in old new; do
    if [ $v = old ]; then B2=OLD/bench_model; B3=OLD/bench_model3d; else B2=build/dev/benchmarks/bench_model; B3=build/dev/benchmarks/bench_model3d; fi
    for bf in 1 0; do
      DICYC_BENCH_SIZE=96 DICYC_CONV_BF16=$bf $B2 --benchmark_filter='G_fwd_bwd|cyclegan_step|dicyc_step' --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>/dev/null | grep median | sed "s/^/r$r $v bf16=$bf 2d /"
    done
    DICYC_BENCH_SIZE=48 DICYC_CONV_BF16=1 $B3 --benchmark_filter='G3_fwd_bwd|cyclegan3_step' --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>/dev/null | grep median | sed "s/^/r$r $v bf16=1 3d /"
  done
done
