#!/bin/bash
# bf16 rule change (Winograd-shape input/weight gradients in bf16): old rule (_t) vs new (_w), bf16, plus float (new), alternating, 3 repeats
out=/tmp/passbench2; mkdir -p $out
for r in 1 2 3; do for v in old new float; do
  B=/tmp/bench_model_w; B3=/tmp/bench_model3d_w; P=1
  [ $v = old ] && B=/tmp/bench_model_t && B3=/tmp/bench_model3d_t
  [ $v = float ] && P=0
  DICYC_CONV_BF16=$P DICYC_BENCH_NGF=16 DICYC_BENCH_BLOCKS=4 DICYC_BENCH_NDF=32 DICYC_BENCH_SIZE=96 $B --benchmark_filter='^(G_fwd_bwd|D_fwd_bwd|cyclegan_step|dicyc_step)/' --benchmark_min_time=1 --benchmark_format=csv > $out/demo_${v}_$r.csv 2>/dev/null
  DICYC_CONV_BF16=$P $B --benchmark_filter='^(G_fwd_bwd|cyclegan_step)/' --benchmark_min_time=1 --benchmark_format=csv > $out/ngf64_${v}_$r.csv 2>/dev/null
  DICYC_CONV_BF16=$P DICYC_BENCH_NGF=16 DICYC_BENCH_BLOCKS=4 DICYC_BENCH_NDF=32 DICYC_BENCH_SIZE=48 $B3 --benchmark_filter='^(G3_fwd_bwd|D3_fwd_bwd|cyclegan3_step)/' --benchmark_min_time=1 --benchmark_format=csv > $out/g3demo_${v}_$r.csv 2>/dev/null
done; done
