#!/usr/bin/env bash
# Issue 43's seed study, whole: bash docs/seed_study.sh [DATA] (default ../shared/reference/gz1_sdss_sample),
# from the repository root. ~90 minutes on 2 CPU cores; resumable: a finished grid configuration or
# evaluation is not redone when the command runs again (delete runs/seed-study-eval/<grid>/<id> of one that
# was killed while evaluating). The findings: docs/seed-findings.md.
set -euo pipefail
D=${1:-../shared/reference/gz1_sdss_sample}
S=(--data "$D" --epochs 20 --warmup-epochs 5 --fid-samples 549)  # the seed's 20 epochs; N = the val split
PY=${PY:-.venv/bin/python}

# 1. The grids: beta x latent at seed 0; SSIM against MSE at the seed's setting, seeds 0-2; the SSIM-FID
#    front's other two points (beta 3 and 10 at latent 32) at seeds 1 and 2.
$PY grid_search.py --grid docs/seed-study-grid.json "${S[@]}" --out runs/seed-study
for seed in 0 1 2; do
  $PY grid_search.py --grid docs/seed-study-loss.json "${S[@]}" --seed "$seed" --out "runs/seed-study-loss-s$seed"
done
for seed in 1 2; do
  $PY grid_search.py --grid docs/seed-study-front.json "${S[@]}" --seed "$seed" --out "runs/seed-study-front-s$seed"
done

# 2. Every finished configuration measured on the validation split (the test split is not touched): FID and
#    KID of reconstructions, N(0, I) and gmm class samples, both judges, the draws kept, morphology. Two at a
#    time, one thread each, which uses 2 cores better than one evaluation on two threads.
evaluate() {
  for record in runs/seed-study*/runs/*/grid_result.json; do
    run=$(dirname "$record"); grid=$(basename "$(dirname "$(dirname "$run")")")
    out=runs/seed-study-eval/$grid/$(basename "$run")
    grep -q '"status": "ok"' "$record" || continue
    mkdir -p "$(dirname "$out")"; mkdir "$out" 2>/dev/null || continue  # claimed by the other evaluator
    echo "evaluating $run"
    OMP_NUM_THREADS=1 $PY generate.py --checkpoint "$run/best.pt" --evaluate --split val --samplers normal gmm \
      --fid-samples 126 --sky-noise 0 --refine-steps 0 --out "$out" --quiet > "$out/evaluate.log" 2>&1 \
      || echo "failed: $run (see $out/evaluate.log)"
  done
}
evaluate & evaluate & wait

# 3. The test split, once, at the end: the configurations the validation numbers chose between (the seed's
#    beta 1, the knee beta 3, the old pick beta 10; latent 32, seeds 0-2).
P=bs64-lr0.001-ch32-z32-L4
for run in seed-study/runs/$P-beta{1.0,3.0,10.0} seed-study-loss-s{1,2}/runs/$P-beta1.0 \
    seed-study-front-s{1,2}/runs/$P-beta{3.0,10.0}; do
  out=runs/seed-study-test/${run%%/*}/${run##*/}
  [ -e "$out/evaluation.json" ] && continue
  mkdir -p "$out"; echo "testing $run"
  $PY generate.py --checkpoint "runs/$run/best.pt" --evaluate --split test --samplers normal gmm --fid-samples 126 \
    --sky-noise 0 --refine-steps 0 --out "$out" --quiet > "$out/evaluate.log" 2>&1 || echo "failed: $run (see $out/evaluate.log)"
done

# 4. The tables, the trade-off figure with the class sampler's FID, and every number kept in docs/.
$PY docs/seed_study.py runs/seed-study runs/seed-study-loss-s{0,1,2} runs/seed-study-front-s{1,2} \
  --evaluations runs/seed-study-eval --loss-weights 0.15 0.02441 --test runs/seed-study-test \
  --figure docs/seed_study_trade_off.png --json docs/seed-study-results.json
