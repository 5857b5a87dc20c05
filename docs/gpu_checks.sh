#!/usr/bin/env bash
# The GPU measurements of issues 26 and 27 in one go, on a machine with a CUDA GPU and the FID weights:
#
#   bash docs/gpu_checks.sh OUT [bench] [default] [mse] [gz1 FOLDER] [grid]   (no phase named: bench default mse grid)
#
#   bench    python bench.py --device cuda (train.py's epoch against a tight loop and batch 256, FID features
#            against the bare network, the default run end to end)
#   default  the default run, then generate.py --evaluate --fid-samples 549 on it, timed
#   gz1      --preset vaegan-gpu on an image folder (e.g. gz1_sdss_sample), seeds 0, 1 and 2 at once, best.pt
#            by validation FID; then --evaluate of each and the test FID with and without that choice
#   mse      the default run with --recon-loss mse, CUDA-graphed and eager (GALAXY_VAE_CUDA_GRAPH=0), same seed:
#            the graphed step must train MSE as the eager one does (issue 43; the CPU has no graphs)
#   grid     36 configurations of the README's 864 (every batch size x width x depth, two betas), 30 epochs,
#            with 8 workers on the one GPU and then with 1 (configurations per hour, docs/performance.md)
#
# Everything lands in OUT (logs, bench-cuda.json, run folders); nothing in the project changes.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash docs/gpu_checks.sh OUT [bench] [default] [mse] [gz1 FOLDER] [grid]}; shift
[ $# -eq 0 ] && set -- bench default mse grid
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
t0=$(date +%s); stamp() { echo "=== +$(( $(date +%s) - t0 )) s: $*"; }

while [ $# -gt 0 ]; do
  case $1 in
  bench)
    stamp bench; python bench.py --device cuda --out "$out/bench-cuda.json"; shift ;;
  default)
    stamp "default run"; ( time python train.py --out "$out/default" > "$out/default.log" 2>&1 ) 2>&1
    stamp "generate.py --evaluate --fid-samples 549"
    ( time python generate.py --checkpoint "$out/default" --evaluate --fid-samples 549 --quiet \
        > "$out/default-evaluate.log" 2>&1 ) 2>&1; tail -25 "$out/default-evaluate.log"; shift ;;
  gz1)
    folder=${2:?gz1 needs the image folder}; stamp "gz1: --preset vaegan-gpu, seeds 0 1 2 at once"
    for s in 0 1 2; do
      OMP_NUM_THREADS=4 python train.py --data "$folder" --preset vaegan-gpu --seed $s --out "$out/gz1-s$s" \
        > "$out/gz1-s$s.log" 2>&1 &
    done; wait
    for s in 0 1 2; do grep -E "^done|^best.pt" "$out/gz1-s$s.log"; done
    stamp "gz1: --evaluate"
    for s in 0 1 2; do
      OMP_NUM_THREADS=4 python generate.py --checkpoint "$out/gz1-s$s" --evaluate --fid-samples 549 --quiet \
        > "$out/gz1-s$s-evaluate.log" 2>&1 &
    done; wait
    for s in 0 1 2; do echo "--- seed $s"; tail -28 "$out/gz1-s$s-evaluate.log"; done
    stamp "gz1: test FID with and without the FID choice"
    python docs/fid_choice_study.py "$out"/gz1-s0 "$out"/gz1-s1 "$out"/gz1-s2 --fid-samples 549; shift 2 ;;
  mse)
    for graph in 1 0; do
      stamp "--recon-loss mse, CUDA graph $graph"
      GALAXY_VAE_CUDA_GRAPH=$graph python train.py --recon-loss mse --epochs 5 --out "$out/mse-graph$graph" \
        > "$out/mse-graph$graph.log" 2>&1
      grep -oE "epoch +5 +beta.*" "$out/mse-graph$graph.log"
    done; shift ;;
  grid)
    echo '{"batch_size": [32, 64, 128], "lr": [1e-3], "base_channels": [32, 64], "latent": [32],
           "layers": [3, 4, 5], "beta": [1, 2]}' > "$out/grid36.json"
    for workers in 8 1; do
      stamp "grid: 36 configurations, $workers worker(s)"
      ( time OMP_NUM_THREADS=2 python grid_search.py --grid "$out/grid36.json" --epochs 30 --warmup-epochs 5 \
          --fid-samples 2048 --device cuda --data embedded --out "$out/grid-w$workers" \
          --workers-per-device $workers > "$out/grid-w$workers.log" 2>&1 ) 2>&1
      tail -5 "$out/grid-w$workers.log"
    done; shift ;;
  *) echo "unknown phase $1: bench, default, mse, gz1 FOLDER or grid"; exit 2 ;;
  esac
done
stamp done
