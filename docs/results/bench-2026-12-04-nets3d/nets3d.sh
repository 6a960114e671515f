#!/bin/bash
# 3-D nets (64^3, ngf 16, 3 blocks, ndf 32), dicyc (bench_model3d) and PyTorch 2.15 alternating.
cd /work/main
O=/work/nets3d; mkdir -p $O
build/torch-venv/bin/python -c 'import sys; sys.path.insert(0, "benchmarks"); import anchor; anchor.check(); print(anchor.describe(2))' > $O/anchor.txt 2>&1
for r in 1 2 3; do
  DICYC_BENCH_THREADS=2 DICYC_BENCH_SIZE=64 DICYC_BENCH_NGF=16 DICYC_BENCH_BLOCKS=3 DICYC_BENCH_NDF=32 \
    build/test/benchmarks/bench_model3d --benchmark_filter='^(G3_fwd|G3_fwd_bwd|D3_fwd_bwd)/' --benchmark_min_time=1 > $O/dicyc_$r.txt 2>&1
  build/torch-venv/bin/python benchmarks/torch_reference3d.py --threads 2 --only nets --runs 5 > $O/torch_$r.json 2> $O/torch_$r.log
done
