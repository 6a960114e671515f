#!/bin/bash
F='conv_layer/3d/.*(tr:0/pass:1|tr:1/pass:0)|conv_layer/2d/.*(ngf16|ndf32).*(tr:0/pass:1|tr:1/pass:0)|conv_layer/2d/(patchgan|generator)/cin:1/.*pass:1'
for r in 1 2 3; do
  for v in old new; do
    if [[ $v == old ]]; then export DICYC_COL2IM=0; else unset DICYC_COL2IM; fi
    build/test/benchmarks/bench_ops --benchmark_filter="$F" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_min_time=0.3 2>/dev/null | grep median | awk -v v=$v -v r=$r '{print v, r, $1, $2}'
  done
done
